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

// Injected instructions: counters observe which one ran; the "broken" ones always fail. The
// good ones give well-mixed words (splitmix64 of a counter), as a working generator does,
// so they pass the health tests.
unsigned g_seed_calls = 0, g_rand_calls = 0;
std::uint64_t g_counter = 0;
std::uint64_t mix(std::uint64_t x) noexcept {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}
bool fake_rdseed_ok(std::uint64_t* out) noexcept {
    ++g_seed_calls;
    *out = mix(++g_counter);
    return true;
}
bool fake_rdrand_ok(std::uint64_t* out) noexcept {
    ++g_rand_calls;
    *out = mix(++g_counter);
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
    *out = mix(++g_counter);
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
    // kSeedWords hardware words per key: the entropy input of one DRBG reseed.
    CHECK(g.hw_use().rdseed_words + g.hw_use().rdrand_words == 6 * 4 * p3::keys::kSeedWords);
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
    const unsigned W = p3::keys::kSeedWords;   // words per key, whatever its length
    const Case cases[] = {
        {"rdseed and rdrand", {true, true, fake_rdseed_ok, fake_rdrand_ok}, true, "RDSEED", true, W, 0, 0},
        {"rdrand only", {false, true, nullptr, fake_rdrand_ok}, true, "RDRAND", true, 0, W, 0},
        {"rdseed only", {true, false, fake_rdseed_ok, nullptr}, true, "RDSEED", true, W, 0, 0},
        {"rdseed dry, rdrand fallback", {true, true, fake_fail, fake_rdrand_ok}, true, "RDSEED", true, 0, W, W * R},
        {"flaky rdseed retried", {true, true, fake_rdseed_flaky, fake_rdrand_ok}, true, "RDSEED", true, W, 0, W},
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
        auto k = g.generate(32, &why);
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

TEST_CASE("keygen: hardware words are conditioned by the DRBG, never the key bytes themselves") {
    reset_fakes();
    KeyGenerator g(KeyGeneration::hardware, CpuRng{true, false, fake_rdseed_ok, nullptr});
    auto k = g.generate(64);
    REQUIRE(k.size() == 64);
    // Every word the source gave, as the raw bytes a key would have held.
    std::vector<std::uint64_t> words;
    for (std::uint64_t i = 1; i <= g_counter; ++i) words.push_back(mix(i));
    REQUIRE(words.size() == p3::keys::kSeedWords);
    for (std::size_t off = 0; off + 4 <= k.size(); ++off) {
        for (std::uint64_t w : words) {
            INFO("key offset " << off);
            REQUIRE(std::memcmp(k.data() + off, &w, 4) != 0);   // not even half a word shows
        }
    }
    // Two generators fed the very same words still give different keys: the DRBG adds
    // OpenSSL's own seed source at every reseed.
    reset_fakes();
    KeyGenerator g2(KeyGeneration::hardware, CpuRng{true, false, fake_rdseed_ok, nullptr});
    auto k2 = g2.generate(64);
    REQUIRE(k2.size() == 64);
    CHECK_FALSE(k2.equals(k.span()));
}

TEST_CASE("keygen: a stuck hardware source is refused, logged, and stays refused") {
    struct Stuck {
        static bool step(std::uint64_t* out) noexcept {
            ++g_seed_calls;
            *out = 0x0123456789abcdefull;   // the same word every time
            return true;
        }
    };
    std::vector<std::string> lines;
    p3::log::Options o;
    o.to_stderr = false;
    p3::log::init(o);
    p3::log::set_sink([](p3::log::Level, Reason, std::string_view line, void* ctx) {
        static_cast<std::vector<std::string>*>(ctx)->emplace_back(line);
    }, &lines);
    reset_fakes();
    KeyGenerator g(KeyGeneration::hardware, CpuRng{true, false, Stuck::step, nullptr});
    Reason why = Reason::INTERNAL;
    auto k = g.generate(32, &why);
    CHECK(k.empty());
    CHECK(why == Reason::KEYGEN_HEALTH_FAILED);
    CHECK(g.failed());
    // A second call fails closed without asking the CPU again, and without a second line.
    const unsigned calls = g_seed_calls;
    CHECK(g.generate(32, &why).empty());
    CHECK(why == Reason::KEYGEN_HEALTH_FAILED);
    CHECK(g_seed_calls == calls);
    // At start-up the same source stops p3d.
    KeyGenerator g3(KeyGeneration::hardware, CpuRng{true, false, Stuck::step, nullptr});
    CHECK_FALSE(g3.announce());
    p3::log::set_sink(nullptr, nullptr);
    p3::log::init(p3::log::Options{});
    REQUIRE(lines.size() == 2);
    for (const auto& l : lines) CHECK(l.find("P3-E0813") != std::string::npos);
    CHECK(p3::reason_code(Reason::KEYGEN_HEALTH_FAILED) == "P3-E0813");
    CHECK(p3::reason_code(Reason::KEYGEN_DRBG_FAILED) == "P3-E0814");
}

TEST_CASE("keygen: health tests, one by one (SP 800-90B repetition count and adaptive proportion)") {
    using p3::keys::HealthTest;
    {   // good words pass, for a long while
        HealthTest h;
        for (std::uint64_t i = 1; i < 100000; ++i) REQUIRE(h.feed(mix(i)));
    }
    {   // repetition count: one word repeated at once fails
        HealthTest h;
        CHECK(h.feed(mix(1)));
        CHECK(h.feed(mix(2)));
        CHECK_FALSE(h.feed(mix(2)));
    }
    {   // adaptive proportion: distinct words whose bytes are mostly one value fail within a window
        HealthTest h;
        bool failed = false;
        for (std::uint64_t i = 1; i <= 64 && !failed; ++i) failed = !h.feed((i << 56) | 0x0042424242424242ull);
        CHECK(failed);
    }
    {   // a biased but not stuck source (one byte value a fifth of the time) still passes
        HealthTest h;
        bool ok = true;
        for (std::uint64_t i = 1; i < 20000 && ok; ++i) {
            std::uint64_t w = mix(i);
            if (i % 5 == 0) w = (w & ~0xffull) | 0x42;
            ok = h.feed(w);
        }
        CHECK(ok);
    }
}

TEST_CASE("keygen: failure wipes what was filled") {
    reset_fakes();
    // Two good words, then the CPU runs dry: no partial key may be left behind.
    struct Once {
        static bool step(std::uint64_t* out) noexcept {
            ++g_seed_calls;
            *out = mix(g_seed_calls);
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
