// Key generation (DESIGN.md §Session life, key arrays): fresh key material from either
// - software: OpenSSL's private DRBG (RAND_priv_bytes), seeded by the operating system; or
// - hardware: the CPU's generator: RDSEED (full entropy) retried a few times per word, then
//   RDRAND (DRBG output) as the fallback, per local.key_generation = "hardware".
// A CPU with neither instruction is a clear error (P3-E0801), never a silent fall back to
// software: the administrator asked for hardware keys.
//
// Control thread only (it may log and allocate). The CPU is described by a CpuRng value so
// tests can inject one without RDSEED/RDRAND, or whose instructions fail.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>

#include "common/config.hpp"
#include "common/reasons.hpp"
#include "common/secret.hpp"

namespace p3::keys {

// One 64-bit step of a CPU instruction: true and *out set on success (carry flag set).
using RngStep = bool (*)(std::uint64_t* out) noexcept;

// What the CPU offers. detect_cpu_rng() reads CPUID; tests build their own.
struct CpuRng {
    bool has_rdseed = false;   // CPUID.(EAX=7,ECX=0):EBX bit 18
    bool has_rdrand = false;   // CPUID.(EAX=1):ECX bit 30
    RngStep rdseed = nullptr;  // used only when has_rdseed
    RngStep rdrand = nullptr;  // used only when has_rdrand
};
CpuRng detect_cpu_rng() noexcept;

// Retry budgets. RDSEED may legitimately run dry under load (Intel DRNG guide: retry with a
// pause); RDRAND failing 10 times in a row means the generator is broken.
inline constexpr unsigned kRdseedRetries = 64;
inline constexpr unsigned kRdrandRetries = 10;

// Which source produced the words of the last hardware call (tests, the I0804 message).
struct HwUse {
    std::uint64_t rdseed_words = 0;
    std::uint64_t rdrand_words = 0;
    std::uint64_t rdseed_failures = 0;   // failed RDSEED steps (retried or fell back)
};

class KeyGenerator {
public:
    explicit KeyGenerator(config::KeyGeneration mode, CpuRng cpu = detect_cpu_rng()) noexcept
        : mode_(mode), cpu_(cpu) {}

    config::KeyGeneration mode() const noexcept { return mode_; }

    // Whether this generator can work at all (at start-up, so a bad setting stops p3d before
    // any session). nullopt = usable; else the reason (KEYGEN_NO_HW_RNG).
    std::optional<Reason> unusable() const noexcept;

    // What keys come from, for the start-up message (KEYGEN_HW_SOURCE): "OpenSSL DRBG",
    // "RDSEED" (RDRAND as fallback), "RDRAND", or "none" when unusable.
    const char* source_name() const noexcept;

    // For start-up: logs where keys come from (hardware: KEYGEN_HW_SOURCE, naming RDSEED or
    // RDRAND) or why they cannot come at all (KEYGEN_NO_HW_RNG); returns !unusable().
    bool announce() const noexcept;

    // Fills out with fresh random bytes. nullopt = done; else the reason, and out is wiped.
    std::optional<Reason> fill(std::span<std::uint8_t> out) noexcept;

    // n fresh random bytes as a secret; empty on failure with *why set (when not null).
    // Failures are not logged here: the caller knows what the key was for.
    SecretBytes generate(std::size_t n, Reason* why = nullptr);

    // Counters of the hardware path since construction.
    const HwUse& hw_use() const noexcept { return use_; }

private:
    std::optional<Reason> fill_hw(std::span<std::uint8_t> out) noexcept;
    bool hw_word(std::uint64_t* w) noexcept;

    config::KeyGeneration mode_;
    CpuRng cpu_;
    HwUse use_;
};

}  // namespace p3::keys
