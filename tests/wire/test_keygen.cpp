// Key generation (common/keygen.hpp): software and hardware sources, CPUID decisions, the
// RDSEED -> RDRAND fallback and the error when the CPU has neither, with injected CPUs.
#include <catch2/catch.hpp>

#include <cstdint>
#include <cstring>
#include <set>
#include <string>
#include <vector>

#include "common/keygen.hpp"
#include "common/log.hpp"

using p3::Reason;
using p3::config::KeyGeneration;
using p3::keys::CpuRng;
using p3::keys::KeyGenerator;

namespace {

// Injected instructions: counters observe which one ran; the "broken" ones always fail.
unsigned g_seed_calls = 0, g_rand_calls = 0;
std::uint64_t g_counter = 0;
bool fake_rdseed_ok(std::uint64_t* out) noexcept {
    ++g_seed_calls;
    *out = 0x5eed000000000000ull | ++g_counter;
    return true;
}
bool fake_rdrand_ok(std::uint64_t* out) noexcept {
    ++g_rand_calls;
    *out = 0x7a4d000000000000ull | ++g_counter;
    return true;
}
bool fake_fail(std::uint64_t* out) noexcept {
    ++g_seed_calls;
    *out = 0;
    return false;
}
bool fake_rdrand_fail(std::uint64_t* out) noexcept {
    ++g_rand_calls;
    *out = 0;
    return false;
}
// RDSEED that runs dry every other step (as under load): retried, never falls back.
bool fake_rdseed_flaky(std::uint64_t* out) noexcept {
    ++g_seed_calls;
    *out = ++g_counter;
    return g_seed_calls % 2 == 0;
}
void reset_fakes() { g_seed_calls = g_rand_calls = 0; g_counter = 0; }

std::string hex(const p3::SecretBytes& s) {
    static const char* d = "0123456789abcdef";
    std::string r;
    for (auto b : s.span()) r += d[b >> 4], r += d[b & 15];
    return r;
}

}  // namespace

TEST_CASE("keygen: software keys have the asked length and differ") {
    KeyGenerator g(KeyGeneration::software);
    CHECK_FALSE(g.unusable());
    CHECK(std::string(g.source_name()) == "OpenSSL DRBG");
    std::set<std::string> seen;
    for (std::size_t n : {4u, 16u, 20u, 32u, 36u, 8u, 65u}) {   // no length short enough to collide by chance
        for (int i = 0; i < 8; ++i) {
            Reason why{};
            auto k = g.generate(n, &why);
            REQUIRE(k.size() == n);
            seen.insert(hex(k));
        }
    }
    CHECK(seen.size() == 7 * 8);   // no two outputs equal
    // The generator draws nothing from the CPU in software mode.
    CHECK(g.hw_use().rdseed_words == 0);
    CHECK(g.hw_use().rdrand_words == 0);
}

TEST_CASE("keygen: zero length is a success with nothing to do") {
    KeyGenerator g(KeyGeneration::hardware, CpuRng{});
    std::vector<std::uint8_t> none;
    CHECK_FALSE(g.fill(none));   // even without a CPU generator: nothing asked
}

TEST_CASE("keygen: CPUID detection matches /proc/cpuinfo") {
    const CpuRng c = p3::keys::detect_cpu_rng();
    std::FILE* f = std::fopen("/proc/cpuinfo", "r");
    if (!f) {
        WARN("no /proc/cpuinfo: detection not cross-checked");
        return;
    }
    std::string all;
    char buf[4096];
    std::size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) all.append(buf, n);
    std::fclose(f);
    const auto flags = all.substr(0, all.find("\n\n"));   // first CPU only
    CHECK(c.has_rdseed == (flags.find(" rdseed") != std::string::npos));
    CHECK(c.has_rdrand == (flags.find(" rdrand") != std::string::npos));
    CHECK((c.rdseed != nullptr) == c.has_rdseed);
    CHECK((c.rdrand != nullptr) == c.has_rdrand);
}

TEST_CASE("keygen: hardware path on this CPU uses RDSEED when CPUID says so") {
    const CpuRng c = p3::keys::detect_cpu_rng();
    KeyGenerator g(KeyGeneration::hardware, c);
    if (!c.has_rdseed && !c.has_rdrand) {
        CHECK(g.unusable() == Reason::KEYGEN_NO_HW_RNG);
        WARN("this CPU has neither RDSEED nor RDRAND: only the error path is checked here");
        return;
    }
    CHECK_FALSE(g.unusable());
    std::set<std::string> seen;
    for (std::size_t n : {16u, 32u, 20u, 36u, 4u, 7u}) {
        for (int i = 0; i < 4; ++i) {
            Reason why{};
            auto k = g.generate(n, &why);
            REQUIRE(k.size() == n);
            seen.insert(hex(k));
        }
    }
    CHECK(seen.size() == 6 * 4);
    if (c.has_rdseed) {
        CHECK(std::string(g.source_name()) == "RDSEED");
        CHECK(g.hw_use().rdseed_words > 0);   // RDRAND only as a fallback, if RDSEED ran dry
    } else {
        CHECK(std::string(g.source_name()) == "RDRAND");
        CHECK(g.hw_use().rdseed_words == 0);
        CHECK(g.hw_use().rdrand_words > 0);
    }
    // Words used = ceil(len / 8) per key.
    const std::uint64_t words = 4 * (2 + 4 + 3 + 5 + 1 + 1);
    CHECK(g.hw_use().rdseed_words + g.hw_use().rdrand_words == words);
}

TEST_CASE("keygen: injected CPUs choose the right instruction") {
    struct Case {
        const char* name;
        CpuRng cpu;
        bool usable;
        const char* source;
        bool ok;                 // generate succeeds
        unsigned seed_words, rand_words;
        std::uint64_t seed_failures;
    };
    const unsigned R = p3::keys::kRdseedRetries;
    const Case cases[] = {
        {"rdseed and rdrand", {true, true, fake_rdseed_ok, fake_rdrand_ok}, true, "RDSEED", true, 4, 0, 0},
        {"rdrand only", {false, true, nullptr, fake_rdrand_ok}, true, "RDRAND", true, 0, 4, 0},
        {"rdseed only", {true, false, fake_rdseed_ok, nullptr}, true, "RDSEED", true, 4, 0, 0},
        {"rdseed dry, rdrand fallback", {true, true, fake_fail, fake_rdrand_ok}, true, "RDSEED", true, 0, 4, 4ull * R},
        {"flaky rdseed retried", {true, true, fake_rdseed_flaky, fake_rdrand_ok}, true, "RDSEED", true, 4, 0, 4},
        {"rdseed only, dry", {true, false, fake_fail, nullptr}, true, "RDSEED", false, 0, 0, R},
        {"both broken", {true, true, fake_fail, fake_rdrand_fail}, true, "RDSEED", false, 0, 0, R},
        {"neither (CPUID says no)", {false, false, fake_rdseed_ok, fake_rdrand_ok}, false, "none", false, 0, 0, 0},
        {"neither (no functions)", {true, true, nullptr, nullptr}, false, "none", false, 0, 0, 0},
    };
    for (const Case& c : cases) {
        INFO(c.name);
        reset_fakes();
        KeyGenerator g(KeyGeneration::hardware, c.cpu);
        CHECK(static_cast<bool>(g.unusable()) == !c.usable);
        CHECK(std::string(g.source_name()) == c.source);
        Reason why = Reason::INTERNAL;
        auto k = g.generate(32, &why);   // 4 words
        CHECK((k.size() == 32) == c.ok);
        if (!c.ok) {
            CHECK(k.empty());
            CHECK(why == (c.usable ? Reason::KEYGEN_HW_FAILED : Reason::KEYGEN_NO_HW_RNG));
        }
        CHECK(g.hw_use().rdseed_words == c.seed_words);
        CHECK(g.hw_use().rdrand_words == c.rand_words);
        CHECK(g.hw_use().rdseed_failures == c.seed_failures);
        if (!c.usable) {
            CHECK(g_seed_calls == 0);   // CPUID said no: no instruction executed
            CHECK(g_rand_calls == 0);
        }
    }
}

TEST_CASE("keygen: hardware bytes are the instruction's words, in order") {
    reset_fakes();
    KeyGenerator g(KeyGeneration::hardware, CpuRng{true, false, fake_rdseed_ok, nullptr});
    auto k = g.generate(12);
    REQUIRE(k.size() == 12);
    std::uint64_t w1, w2 = 0;
    std::memcpy(&w1, k.data(), 8);
    std::memcpy(&w2, k.data() + 8, 4);
    CHECK(w1 == (0x5eed000000000000ull | 1));
    CHECK(w2 == ((0x5eed000000000000ull | 2) & 0xffffffffull));   // little-endian tail of word 2
}

TEST_CASE("keygen: failure wipes what was filled") {
    reset_fakes();
    // Two good words, then the CPU runs dry: no partial key may be left behind.
    struct Once {
        static bool step(std::uint64_t* out) noexcept {
            ++g_seed_calls;
            *out = 0xffffffffffffffffull;
            return g_seed_calls <= 2;
        }
    };
    KeyGenerator g(KeyGeneration::hardware, CpuRng{true, false, Once::step, nullptr});
    std::vector<std::uint8_t> buf(32, 0xaa);
    CHECK(g.fill(buf) == Reason::KEYGEN_HW_FAILED);
    for (auto b : buf) REQUIRE(b == 0);
}

TEST_CASE("keygen: reason codes of the key area") {
    CHECK(p3::reason_code(Reason::KEYGEN_NO_HW_RNG) == "P3-E0801");
    CHECK(p3::reason_code(Reason::KEYGEN_HW_FAILED) == "P3-E0802");
    CHECK(p3::reason_code(Reason::KEYGEN_SW_FAILED) == "P3-E0803");
}

TEST_CASE("keygen: the start-up message names the source, or the reason it has none") {
    struct Capture {
        std::vector<std::pair<Reason, std::string>> lines;
    } cap;
    p3::log::Options o;
    o.to_stderr = false;
    p3::log::init(o);
    p3::log::set_sink([](p3::log::Level, Reason r, std::string_view line, void* ctx) {
        static_cast<Capture*>(ctx)->lines.emplace_back(r, std::string(line));
    }, &cap);
    CHECK(KeyGenerator(KeyGeneration::hardware, CpuRng{true, true, fake_rdseed_ok, fake_rdrand_ok}).announce());
    CHECK(KeyGenerator(KeyGeneration::hardware, CpuRng{false, true, nullptr, fake_rdrand_ok}).announce());
    CHECK_FALSE(KeyGenerator(KeyGeneration::hardware, CpuRng{}).announce());
    CHECK(KeyGenerator(KeyGeneration::software, CpuRng{}).announce());   // nothing to say
    p3::log::set_sink(nullptr, nullptr);
    p3::log::init(p3::log::Options{});
    REQUIRE(cap.lines.size() == 3);
    CHECK(cap.lines[0].first == Reason::KEYGEN_HW_SOURCE);
    CHECK(cap.lines[0].second.find("P3-I0804") != std::string::npos);
    CHECK(cap.lines[0].second.find("RDSEED (RDRAND as fallback)") != std::string::npos);
    CHECK(cap.lines[1].second.find("RDRAND") != std::string::npos);
    CHECK(cap.lines[2].first == Reason::KEYGEN_NO_HW_RNG);
    CHECK(cap.lines[2].second.find("P3-E0801") != std::string::npos);
}
