// Key generation (DESIGN.md §Session life, key arrays): fresh key material from either
// - software: OpenSSL's private DRBG (RAND_priv_bytes), seeded by the operating system; or
// - hardware: the CPU's generator: RDSEED (full entropy) retried a few times per word, then
//   RDRAND (DRBG output) as the fallback, per local.key_generation = "hardware".
// A CPU with neither instruction is a clear error (P3-E0801), never a silent fall back to
// software: the administrator asked for hardware keys.
//
// Hardware words never become key bytes as they are. Each one passes the SP 800-90B health
// tests (repetition count on 64-bit words, adaptive proportion on bytes; HealthTest below);
// kSeedWords of them are then the entropy input of a reseed of this generator's own OpenSSL
// CTR-DRBG (AES-256, derivation function on; OpenSSL adds its own seed source at every
// reseed), and keys are that DRBG's output. A failed health test latches: the generator
// refuses every later key (P3-E0813, logged once) until p3d restarts — it fails closed.
//
// Control thread only (it may log and allocate). The CPU is described by a CpuRng value so
// tests can inject one without RDSEED/RDRAND, or whose instructions fail.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>

#include <openssl/types.h>

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

// Hardware words drawn per key (per fill() call): the entropy input of one DRBG reseed,
// twice the DRBG's 256-bit strength.
inline constexpr unsigned kSeedWords = 8;

// SP 800-90B §4.4 continuous health tests on the raw words, with an assessed min-entropy of
// 4 bits per byte (half of what RDSEED claims) and a false-alarm rate of 2^-20:
//  - repetition count: a 64-bit word equal to the one before fails (C = 1 + ceil(20/32) = 2);
//  - adaptive proportion: in a window of 512 bytes, the window's first byte value seen 62
//    times or more fails (C = 1 + CRITBINOM(512, 2^-4, 1 - 2^-20)).
class HealthTest {
public:
    static constexpr unsigned kRctCutoff = 2;
    static constexpr unsigned kAptWindow = 512;
    static constexpr unsigned kAptCutoff = 62;
    // false: the source failed (the caller latches).
    bool feed(std::uint64_t word) noexcept;

private:
    std::uint64_t last_ = 0;
    unsigned run_ = 0;            // 0: no word yet
    std::uint8_t apt_ref_ = 0;
    unsigned apt_seen_ = 0, apt_pos_ = 0;   // apt_pos_ 0: a new window starts
};

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
    ~KeyGenerator();
    KeyGenerator(const KeyGenerator&) = delete;
    KeyGenerator& operator=(const KeyGenerator&) = delete;

    config::KeyGeneration mode() const noexcept { return mode_; }

    // Whether this generator can work at all (at start-up, so a bad setting stops p3d before
    // any session). nullopt = usable; else the reason (KEYGEN_NO_HW_RNG).
    std::optional<Reason> unusable() const noexcept;

    // What keys come from, for the start-up message (KEYGEN_HW_SOURCE): "OpenSSL DRBG",
    // "RDSEED" (RDRAND as fallback), "RDRAND", or "none" when unusable.
    const char* source_name() const noexcept;

    // For start-up: logs where keys come from (hardware: KEYGEN_HW_SOURCE, naming RDSEED or
    // RDRAND) or why they cannot come at all (KEYGEN_NO_HW_RNG). Hardware: also the start-up
    // health test (SP 800-90B §4.3: 1024 bytes of words through the tests, then discarded)
    // and the DRBG; a failure is logged (KEYGEN_HEALTH_FAILED, KEYGEN_DRBG_FAILED). Returns
    // whether keys can be made.
    bool announce() noexcept;

    // A health test failed: no key comes from this generator any more.
    bool failed() const noexcept { return failed_; }

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
    // One health-tested word; nullopt = ok, else HW_FAILED or HEALTH_FAILED (latched, logged).
    std::optional<Reason> tested_word(std::uint64_t* w) noexcept;
    bool drbg_ready() noexcept;

    config::KeyGeneration mode_;
    CpuRng cpu_;
    HwUse use_;
    HealthTest health_;
    bool failed_ = false;
    bool drbg_broken_ = false;
    EVP_RAND_CTX* drbg_ = nullptr;   // made on first hardware use
};

}  // namespace p3::keys
