// Key generation: OpenSSL's private DRBG, or the CPU's RDSEED/RDRAND (see keygen.hpp).
//
// The instructions are reached through intrinsics compiled with a per-function target
// attribute, so the build needs no global -mrdseed/-mrdrnd and the binary still runs on a
// CPU without them (CPUID decides before any is executed).
#include "common/keygen.hpp"

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>
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

KeyGenerator::~KeyGenerator() { EVP_RAND_CTX_free(drbg_); }   // OpenSSL wipes its state

bool KeyGenerator::announce() noexcept {
    if (unusable()) {
        P3_LOG_ERROR(KEYGEN_NO_HW_RNG, "key_generation = \"hardware\", but this CPU has neither RDSEED nor RDRAND");
        return false;
    }
    if (mode_ != config::KeyGeneration::hardware) return true;
    // Start-up test (SP 800-90B §4.3): 1024 bytes through the health tests, then discarded.
    for (unsigned i = 0; i < 1024 / 8; ++i) {
        std::uint64_t w = 0;
        const auto r = tested_word(&w);
        secure_wipe(&w, sizeof w);
        if (r == Reason::KEYGEN_HW_FAILED)
            P3_LOG_ERROR(KEYGEN_HW_FAILED, "the CPU random generator (%s) gave no data at start-up", source_name());
        if (r) return false;
    }
    if (!drbg_ready()) return false;
    P3_LOG_INFO(KEYGEN_HW_SOURCE, "keys come from the CPU: %s%s, health-tested and conditioned by a CTR-DRBG",
                source_name(),
                cpu_.has_rdseed && cpu_.rdseed && cpu_.has_rdrand && cpu_.rdrand ? " (RDRAND as fallback)" : "");
    return true;
}

// ---- health tests (SP 800-90B §4.4) -------------------------------------------------------

bool HealthTest::feed(std::uint64_t word) noexcept {
    // Repetition count, on whole words.
    if (run_ != 0 && word == last_) {
        if (++run_ >= kRctCutoff) return false;
    } else {
        last_ = word;
        run_ = 1;
    }
    // Adaptive proportion, on bytes.
    bool ok = true;
    for (unsigned i = 0; i < 8; ++i) {
        const auto b = static_cast<std::uint8_t>(word >> (8 * i));
        if (apt_pos_ == 0) {
            apt_ref_ = b;
            apt_seen_ = 1;
        } else if (b == apt_ref_ && ++apt_seen_ >= kAptCutoff) {
            ok = false;
        }
        if (++apt_pos_ == kAptWindow) apt_pos_ = 0;
    }
    return ok;
}

std::optional<Reason> KeyGenerator::tested_word(std::uint64_t* w) noexcept {
    if (failed_) return Reason::KEYGEN_HEALTH_FAILED;
    if (!hw_word(w)) return Reason::KEYGEN_HW_FAILED;
    if (health_.feed(*w)) return std::nullopt;
    failed_ = true;
    secure_wipe(w, sizeof *w);
    P3_LOG_ERROR(KEYGEN_HEALTH_FAILED, "the CPU random generator (%s) failed its health test: no key is made from it "
                 "until p3d restarts", source_name());
    return Reason::KEYGEN_HEALTH_FAILED;
}

// ---- the conditioning DRBG ------------------------------------------------------------------

bool KeyGenerator::drbg_ready() noexcept {
    if (drbg_) return true;
    if (drbg_broken_) return false;
    EVP_RAND* rand = EVP_RAND_fetch(nullptr, "CTR-DRBG", nullptr);
    EVP_RAND_CTX* ctx = rand ? EVP_RAND_CTX_new(rand, nullptr) : nullptr;
    EVP_RAND_free(rand);   // the context keeps its own reference
    char cipher[] = "AES-256-CTR";
    unsigned use_df = 1;
    const OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_DRBG_PARAM_CIPHER, cipher, 0),
                                 OSSL_PARAM_construct_uint(OSSL_DRBG_PARAM_USE_DF, &use_df), OSSL_PARAM_construct_end()};
    static const unsigned char pers[] = "p3 hardware key generator";
    if (!ctx || EVP_RAND_instantiate(ctx, 256, 0, pers, sizeof pers - 1, params) != 1) {
        EVP_RAND_CTX_free(ctx);
        drbg_broken_ = true;
        P3_LOG_ERROR(KEYGEN_DRBG_FAILED, "OpenSSL CTR-DRBG (AES-256-CTR) could not be instantiated");
        return false;
    }
    drbg_ = ctx;
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
    if (failed_) return Reason::KEYGEN_HEALTH_FAILED;
    // Entropy input first: a key is never made from a source that fails now.
    std::uint64_t seed[kSeedWords];
    for (auto& w : seed) {
        if (auto r = tested_word(&w)) {
            secure_wipe(seed, sizeof seed);
            secure_wipe(out.data(), out.size());
            return r;
        }
    }
    bool ok = drbg_ready() &&
              EVP_RAND_reseed(drbg_, 0, reinterpret_cast<const unsigned char*>(seed), sizeof seed, nullptr, 0) == 1;
    secure_wipe(seed, sizeof seed);
    // One generate call gives at most max_request bytes (64 KiB for CTR-DRBG).
    for (std::size_t off = 0; ok && off < out.size();) {
        const std::size_t chunk = out.size() - off > (1u << 16) ? (1u << 16) : out.size() - off;
        ok = EVP_RAND_generate(drbg_, out.data() + off, chunk, 256, 0, nullptr, 0) == 1;
        off += chunk;
    }
    if (!ok) {
        secure_wipe(out.data(), out.size());
        if (drbg_ && !drbg_broken_) {
            drbg_broken_ = true;   // log once; every later call fails the same way
            P3_LOG_ERROR(KEYGEN_DRBG_FAILED, "OpenSSL CTR-DRBG failed to reseed or generate");
        }
        return Reason::KEYGEN_DRBG_FAILED;
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
