// Address parsing and prefix arithmetic, as a table of cases.
#include <catch2/catch.hpp>

#include "common/net.hpp"
#include "common/secret.hpp"

using namespace p3;

TEST_CASE("prefixes parse strictly as subnets") {
    struct Case { const char* text; bool ok; const char* canon; };
    const Case cases[] = {
        {"10.2.0.0/24", true, "10.2.0.0/24"},
        {"10.2.0.1/24", false, ""},          // host bits set
        {"10.2.0.1", true, "10.2.0.1/32"},    // bare address: host route
        {"0.0.0.0/0", true, "0.0.0.0/0"},
        {"10.0.0.0/33", false, ""},
        {"10.0.0.0/", false, ""},
        {"10.0.0.0/2x", false, ""},
        {"2001:db8::/32", true, "2001:db8::/32"},
        {"2001:db8::1/64", false, ""},
        {"2001:db8::/129", false, ""},
        {"fe80::1", true, "fe80::1/128"},
        {"", false, ""},
        {"300.1.1.1/8", false, ""},
    };
    for (const auto& c : cases) {
        INFO(c.text);
        auto p = Prefix::parse(c.text);
        CHECK(p.has_value() == c.ok);
        if (p && c.ok) CHECK(p->str() == c.canon);
    }
    // Interface addresses keep their host bits.
    auto ifa = Prefix::parse("10.1.0.1/24", false);
    REQUIRE(ifa);
    CHECK(ifa->str() == "10.1.0.1/24");
}

TEST_CASE("prefix containment and overlap") {
    auto a = *Prefix::parse("10.0.0.0/8");
    auto b = *Prefix::parse("10.2.0.0/16");
    auto c = *Prefix::parse("11.0.0.0/8");
    auto v6 = *Prefix::parse("::/0");
    CHECK(a.overlaps(b));
    CHECK(b.overlaps(a));
    CHECK_FALSE(a.overlaps(c));
    CHECK_FALSE(a.overlaps(v6));  // families never overlap
    CHECK(a.contains(*IpAddr::parse("10.255.1.1")));
    CHECK_FALSE(b.contains(*IpAddr::parse("10.3.0.1")));
}

TEST_CASE("netmasks and MAC addresses") {
    CHECK(netmask_len("255.255.255.0") == 24);
    CHECK(netmask_len("255.255.255.255") == 32);
    CHECK(netmask_len("0.0.0.0") == 0);
    CHECK_FALSE(netmask_len("255.0.255.0").has_value());
    auto m = MacAddr::parse("02:00:00:00:00:FE");
    REQUIRE(m);
    CHECK(m->str() == "02:00:00:00:00:fe");
    CHECK_FALSE(MacAddr::parse("02:00:00:00:00").has_value());
    CHECK_FALSE(MacAddr::parse("02-00-00-00-00-fe").has_value());
}

TEST_CASE("secrets are copied only on purpose and compare in constant time") {
    const std::uint8_t k[4] = {1, 2, 3, 4};
    SecretBytes s(k);
    auto t = s.clone();
    CHECK(t.equals(k));
    t.reset();
    CHECK(t.empty());
    CHECK(s.size() == 4);
}
