// Routing table: longest prefix match over overlapping prefixes (IPv4 and IPv6), 10,000
// remotes with several subnets each, and updates while workers look up.
#include <random>

#include "bench.hpp"
#include "dataplane/routes.hpp"

using namespace p3test;
using p3::IpAddr;
using p3::Prefix;

namespace {
Prefix P(const char* s) { return *Prefix::parse(s); }
std::uint32_t look(const p3::dp::RouteTable& t, const char* a) {
    auto ip = *IpAddr::parse(a);
    return ip.is_v4() ? t.lookup4(ip.v4_host()) : t.lookup6(ip.bytes.data());
}
}  // namespace

TEST_CASE("overlapping prefixes route to the longest match", "[routes]") {
    test_pool();
    p3::dp::RouteTable t;
    REQUIRE(t.create("rt_lpm", nullptr));
    REQUIRE(t.add(P("10.0.0.0/8"), 1));
    REQUIRE(t.add(P("10.2.0.0/16"), 2));
    REQUIRE(t.add(P("10.2.3.0/24"), 3));
    REQUIRE(t.add(P("10.2.3.128/25"), 4));
    REQUIRE(t.add(P("10.2.3.7/32"), 5));
    REQUIRE(t.add(P("fd00::/8"), 11));
    REQUIRE(t.add(P("fd02::/48"), 12));
    REQUIRE(t.add(P("fd02:0:0:5::/64"), 13));
    REQUIRE(t.add(P("fd02:0:0:5::9/128"), 14));
    struct {
        const char* addr;
        std::uint32_t sid;
    } table[] = {
        {"10.9.9.9", 1},      {"10.2.9.9", 2},        {"10.2.3.1", 3},       {"10.2.3.127", 3},
        {"10.2.3.128", 4},    {"10.2.3.255", 4},      {"10.2.3.7", 5},       {"10.2.3.6", 3},
        {"11.0.0.1", 0},      {"9.255.255.255", 0},   {"fd99::1", 11},       {"fd02::1", 12},
        {"fd02:0:0:5::1", 13}, {"fd02:0:0:5::9", 14}, {"fd02:0:0:6::9", 12}, {"2001:db8::1", 0},
    };
    for (const auto& r : table) {
        INFO(r.addr);
        CHECK(look(t, r.addr) == r.sid);
    }
    // Removing the most specific falls back to the next one.
    REQUIRE(t.remove(P("10.2.3.7/32")));
    REQUIRE(t.remove(P("fd02:0:0:5::/64")));
    CHECK(look(t, "10.2.3.7") == 3);
    CHECK(look(t, "fd02:0:0:5::1") == 12);
    CHECK(look(t, "fd02:0:0:5::9") == 14);
    CHECK(t.routes4() == 4);
    CHECK(t.routes6() == 3);
}

TEST_CASE("10,000 remotes with several subnets each are all routed to their session", "[routes][scale]") {
    std::vector<p3::config::Remote> remotes;
    for (std::uint32_t i = 0; i < 10000; ++i) {
        p3::config::Remote r;
        r.id = i + 1;
        r.address = *IpAddr::parse("192.0.2.2");
        const std::uint32_t a = i / 256, b = i % 256;
        // A /24 in 10/8, a /28 in 172.16/12 and a /64 in fd02::/16 for each remote.
        r.subnets.push_back(*Prefix::parse(("10." + std::to_string(a) + "." + std::to_string(b) + ".0/24").c_str()));
        r.subnets.push_back(*Prefix::parse(("172." + std::to_string(16 + a) + "." + std::to_string(b) + ".16/28").c_str()));
        char v6[64];
        std::snprintf(v6, sizeof v6, "fd02:%x:%x::/64", a, b);
        r.subnets.push_back(*Prefix::parse(v6));
        remotes.push_back(std::move(r));
    }
    Single s("r", {"10.250.0.1/24", "192.0.2.1/24", nullptr, nullptr}, std::move(remotes), {1});
    auto& dp = *s.dp;
    CHECK(dp.routes().routes4() == 20000);
    CHECK(dp.routes().routes6() == 10000);
    std::minstd_rand rng(7);
    auto R = [&] { return static_cast<unsigned>(rng()); };
    for (int k = 0; k < 3000; ++k) {
        const std::uint32_t i = R() % 10000;
        const std::uint32_t a = i / 256, b = i % 256;
        const std::uint32_t sid = dp.session_of(i + 1);
        REQUIRE(sid != 0);
        char buf[64];
        std::snprintf(buf, sizeof buf, "10.%u.%u.%u", a, b, R() % 256);
        CHECK(look(dp.routes(), buf) == sid);
        std::snprintf(buf, sizeof buf, "172.%u.%u.%u", 16 + a, b, 16 + R() % 16);
        CHECK(look(dp.routes(), buf) == sid);
        std::snprintf(buf, sizeof buf, "172.%u.%u.%u", 16 + a, b, 32 + R() % 16);
        CHECK(look(dp.routes(), buf) == 0);
        std::snprintf(buf, sizeof buf, "fd02:%x:%x::%x", a, b, R() % 65536);
        CHECK(look(dp.routes(), buf) == sid);
    }
    // Remove and re-add one remote while the worker runs.
    REQUIRE(dp.remove_remote(77));
    CHECK(look(dp.routes(), "10.0.76.1") == 0);
    CHECK(dp.session_of(77) == 0);
}
