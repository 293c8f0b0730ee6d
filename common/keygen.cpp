// Key generation: OpenSSL's private DRBG, or the CPU's RDSEED/RDRAND (see keygen.hpp).
//
// The instructions are reached through intrinsics compiled with a per-function target
// attribute, so the build needs no global -mrdseed/-mrdrnd and the binary still runs on a
// CPU without them (CPUID decides before any is executed).
#include "common/keygen.hpp"

#include <openssl/rand.h>

#include "common/log.hpp"

#include <cstring>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#include <immintrin.h>
#define P3_KEYGEN_X86 1
#endif

namespace p3::keys {

#ifdef P3_KEYGEN_X86
namespace {

__attribute__((target("rdseed"))) bool rdseed_step(std::uint64_t* out) noexcept {
    unsigned long long v = 0;
    const bool ok = _rdseed64_step(&v) != 0;
    *out = v;
    return ok;
}

__attribute__((target("rdrnd"))) bool rdrand_step(std::uint64_t* out) noexcept {
    unsigned long long v = 0;
    const bool ok = _rdrand64_step(&v) != 0;
    *out = v;
    return ok;
}

}  // namespace

CpuRng detect_cpu_rng() noexcept {
    CpuRng c;
    unsigned a = 0, b = 0, cx = 0, d = 0;
    if (__get_cpuid(1, &a, &b, &cx, &d)) c.has_rdrand = (cx & (1u << 30)) != 0;
    if (__get_cpuid_max(0, nullptr) >= 7 && __get_cpuid_count(7, 0, &a, &b, &cx, &d))
        c.has_rdseed = (b & (1u << 18)) != 0;
    if (c.has_rdseed) c.rdseed = rdseed_step;
    if (c.has_rdrand) c.rdrand = rdrand_step;
    return c;
}
#else
CpuRng detect_cpu_rng() noexcept { return {}; }
#endif

std::optional<Reason> KeyGenerator::unusable() const noexcept {
    if (mode_ == config::KeyGeneration::software) return std::nullopt;
    const bool seed = cpu_.has_rdseed && cpu_.rdseed;
    const bool rand = cpu_.has_rdrand && cpu_.rdrand;
    if (!seed && !rand) return Reason::KEYGEN_NO_HW_RNG;
    return std::nullopt;
}

const char* KeyGenerator::source_name() const noexcept {
    if (mode_ == config::KeyGeneration::software) return "OpenSSL DRBG";
    if (cpu_.has_rdseed && cpu_.rdseed) return "RDSEED";
    if (cpu_.has_rdrand && cpu_.rdrand) return "RDRAND";
    return "none";
}

bool KeyGenerator::announce() const noexcept {
    if (unusable()) {
        P3_LOG_ERROR(KEYGEN_NO_HW_RNG, "key_generation = \"hardware\", but this CPU has neither RDSEED nor RDRAND");
        return false;
    }
    if (mode_ == config::KeyGeneration::hardware)
        P3_LOG_INFO(KEYGEN_HW_SOURCE, "keys come from the CPU: %s%s", source_name(),
                    cpu_.has_rdseed && cpu_.rdseed && cpu_.has_rdrand && cpu_.rdrand ? " (RDRAND as fallback)" : "");
    return true;
}

// One 64-bit word: RDSEED with retries, then RDRAND with retries.
bool KeyGenerator::hw_word(std::uint64_t* w) noexcept {
    if (cpu_.has_rdseed && cpu_.rdseed) {
        for (unsigned i = 0; i < kRdseedRetries; ++i) {
            if (cpu_.rdseed(w)) {
                ++use_.rdseed_words;
                return true;
            }
            ++use_.rdseed_failures;
#ifdef P3_KEYGEN_X86
            _mm_pause();   // give the entropy source time to refill
#endif
        }
    }
    if (cpu_.has_rdrand && cpu_.rdrand) {
        for (unsigned i = 0; i < kRdrandRetries; ++i) {
            if (cpu_.rdrand(w)) {
                ++use_.rdrand_words;
                return true;
            }
        }
    }
    return false;
}

std::optional<Reason> KeyGenerator::fill_hw(std::span<std::uint8_t> out) noexcept {
    if (auto r = unusable()) return r;
    std::size_t off = 0;
    while (off < out.size()) {
        std::uint64_t w = 0;
        if (!hw_word(&w)) {
            secure_wipe(out.data(), out.size());
            return Reason::KEYGEN_HW_FAILED;
        }
        const std::size_t n = out.size() - off < sizeof w ? out.size() - off : sizeof w;
        std::memcpy(out.data() + off, &w, n);
        secure_wipe(&w, sizeof w);
        off += n;
    }
    return std::nullopt;
}

std::optional<Reason> KeyGenerator::fill(std::span<std::uint8_t> out) noexcept {
    if (out.empty()) return std::nullopt;
    if (mode_ == config::KeyGeneration::hardware) return fill_hw(out);
    // RAND_priv_bytes takes an int length; keys are tiny, but stay correct for any span.
    std::size_t off = 0;
    while (off < out.size()) {
        const std::size_t chunk = out.size() - off > (1u << 20) ? (1u << 20) : out.size() - off;
        if (RAND_priv_bytes(out.data() + off, static_cast<int>(chunk)) != 1) {
            secure_wipe(out.data(), out.size());
            return Reason::KEYGEN_SW_FAILED;
        }
        off += chunk;
    }
    return std::nullopt;
}

SecretBytes KeyGenerator::generate(std::size_t n, Reason* why) {
    SecretBytes s(n);
    if (auto r = fill(s.span())) {
        if (why) *why = *r;
        return SecretBytes{};
    }
    return s;
}

}  // namespace p3::keys
