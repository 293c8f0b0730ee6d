// The rekey settings, in both formats: rekey_dh (forward secrecy, on by default, overridable
// like every session parameter), rekey_packets (0 = the AES-GCM usage bound of the WAN MTU, a
// larger value refused with its line) and the warning for a rekey_wait above the spec's 600 s
// (P3-W0125, once where it is set, not once per remote that inherits it).
#include <catch2/catch.hpp>

#include "common/config.hpp"
#include "config_test_util.hpp"

using namespace p3;
using namespace p3::config;
using namespace p3test;

namespace {

std::string primary(const std::string& local, const std::string& rest = "") {
    return "role = \"primary\";\nlocal = { address = \"192.0.2.1\";\n" + local + " };\n" + rest;
}

std::string remotes(const std::string& r1, const std::string& r2 = "") {
    return "remotes = (\n { id = 1; address = \"192.0.2.2\"; subnets = [ \"10.2.0.0/24\" ]; " + r1 +
           " },\n { id = 2; address = \"192.0.2.3\"; subnets = [ \"10.3.0.0/24\" ]; " + r2 + " }\n);\n";
}

std::size_t count(const Config& c, Reason r) {
    std::size_t n = 0;
    for (const auto& w : c.warnings) n += w.reason == r;
    return n;
}

}  // namespace

TEST_CASE("aead_packet_bound: floor(2^35 / l), l = 16-byte blocks of the largest plaintext + 1") {
    // MTU 1500: 1500 - 20 (IPv4) - 16 (P3 header) - 16 (tag) = 1448 bytes = 91 blocks (90.5
    // rounded up), l = 92.
    CHECK(aead_packet_bound(1500) == 373475417u);
    CHECK(aead_packet_bound(1500) == (std::uint64_t{1} << 35) / 92);
    // MTU 9000: 8948 bytes = 560 blocks, l = 561.
    CHECK(aead_packet_bound(9000) == 61247305u);
    CHECK(aead_packet_bound(576) == 1010580540u);
    // A bigger MTU never allows more packets.
    for (std::uint32_t m = 576; m < 9600; ++m) REQUIRE(aead_packet_bound(m + 1) <= aead_packet_bound(m));
    // 0 is the bound; a value above it (a push from a primary with a smaller MTU) is cut to it.
    CHECK(rekey_packet_limit(0, 1500) == 373475417u);
    CHECK(rekey_packet_limit(1000, 1500) == 1000u);
    CHECK(rekey_packet_limit(373475417u, 1500) == 373475417u);
    CHECK(rekey_packet_limit(373475417u, 9000) == 61247305u);
}

TEST_CASE("rekey_packets: default 0 means the bound; up to the bound accepted; above it refused with its line") {
    auto def = lc_ok(primary(""));
    CHECK(def.local.defaults.rekey_packets == 0);
    // The effective form says what 0 stands for.
    CHECK(to_libconfig(def).find("# rekey_packets 0: the AES-GCM usage bound for the WAN MTU (1500), 373475417 packets per key") !=
          std::string::npos);

    auto at = lc_ok(primary("rekey_packets = 373475417;"));
    CHECK(at.local.defaults.rekey_packets == 373475417u);

    auto e = lc_err(primary("rekey_packets = 373475418;"));
    CHECK(e.reason == Reason::CFG_BAD_VALUE);
    CHECK(e.line == 3);
    CHECK(e.str() == "t.conf:3: local.rekey_packets 373475418 out of range 0..373475417: above the AES-GCM usage "
                     "bound for WAN MTU 1500 (0 = that bound)");

    // The bound follows the WAN MTU, given after the setting: 61247305 fits MTU 1500, not 9000.
    const std::string jumbo = "dataplane = { wan = { port = 1; mtu = 9000; }; lan = { port = 0; }; };\n";
    CHECK(lc_ok(primary("rekey_packets = 61247305;", jumbo)).local.defaults.rekey_packets == 61247305u);
    auto j = lc_err(primary("rekey_packets = 61247306;", jumbo));
    CHECK(j.line == 3);
    CHECK(j.what.find("out of range 0..61247305: above the AES-GCM usage bound for WAN MTU 9000") != std::string::npos);

    // In a group and in a remote: the line of that setting.
    auto g = lc_err(primary("", "groups = ( { name = \"g\";\n rekey_packets = 400000000; } );\n"));
    CHECK(g.line == 5);
    CHECK(g.what.find("groups[0].rekey_packets 400000000 out of range") != std::string::npos);
    auto r = lc_err(primary("", remotes("", "\n rekey_packets = 400000000;")));
    CHECK(r.line == 7);
    CHECK(r.what.find("remotes[1].rekey_packets 400000000") != std::string::npos);

    // The line format: the same rule, the same words.
    const std::string legacy = "localstart\nrole primary\naddress 192.0.2.1\nrekey_packets 400000000\nlocalend\n";
    auto le = legacy_err(legacy);
    CHECK(le.reason == Reason::CFG_BAD_VALUE);
    CHECK(le.line == 4);
    CHECK(le.what.find("rekey_packets 400000000 out of range 0..373475417") != std::string::npos);
    auto lok = legacy_ok("localstart\nrole primary\naddress 192.0.2.1\nrekey_packets 1000\nlocalend\n"
                         "1/address 192.0.2.2\n1/subnet1 10.2.0.0\n1/mask1 24\n1/rekey_packets 0\n");
    CHECK(lok.local.defaults.rekey_packets == 1000u);
    CHECK(lok.remotes.at(0).params.rekey_packets == 0u);
}

TEST_CASE("rekey_dh: on by default, off in local, a group or a remote, and printed back") {
    auto def = lc_ok(primary("", remotes("")));
    CHECK(def.local.defaults.rekey_dh);
    CHECK(def.remotes[0].params.rekey_dh);

    auto cfg = lc_ok(primary("rekey_dh = false;",
                             "groups = ( { name = \"fs\"; rekey_dh = true; } );\n" +
                                 remotes("groups = [ \"fs\" ];", "")));
    CHECK_FALSE(cfg.local.defaults.rekey_dh);
    CHECK(cfg.remotes[0].params.rekey_dh);        // its group turns it back on
    CHECK_FALSE(cfg.remotes[1].params.rekey_dh);  // inherits local
    auto over = lc_ok(primary("", remotes("rekey_dh = false;")));
    CHECK_FALSE(over.remotes[0].params.rekey_dh);
    CHECK(over.remotes[1].params.rekey_dh);

    // The effective form reloads to the same model and says it where it was set.
    auto again = lc_ok(to_libconfig(cfg));
    CHECK(same_settings(cfg, again));
    CHECK(to_libconfig(cfg).find("  rekey_dh = false;") != std::string::npos);
    CHECK(to_libconfig(over).find("    rekey_dh = false;") != std::string::npos);
    CHECK_FALSE(same_settings(def.remotes[0], over.remotes[0]));

    auto e = lc_err(primary("rekey_dh = 1;"));
    CHECK(e.reason == Reason::CFG_BAD_VALUE);
    CHECK(e.what == "local.rekey_dh must be true or false");

    // The line format: a local keyword and a per-remote one.
    auto l = legacy_ok("localstart\nrole primary\naddress 192.0.2.1\nrekey_dh 0\nlocalend\n"
                       "1/address 192.0.2.2\n1/subnet1 10.2.0.0\n1/mask1 24\n1/rekey_dh 1\n");
    CHECK_FALSE(l.local.defaults.rekey_dh);
    CHECK(l.remotes.at(0).params.rekey_dh);
    auto le = legacy_err("localstart\nrole primary\naddress 192.0.2.1\nrekey_dh maybe\nlocalend\n");
    CHECK(le.line == 4);
    CHECK(le.what.find("rekey_dh 'maybe' must be 0 or 1") != std::string::npos);
}

TEST_CASE("rekey_wait above 600 s: a warning (P3-W0125) once per place it is set, none at 600 or by default") {
    auto def = lc_ok(primary("", remotes("")));
    CHECK(def.local.defaults.rekey_wait == 3600);   // Appendix A's default, not set: not warned
    CHECK(count(def, Reason::CFG_REKEY_WAIT_LONG) == 0);
    CHECK(count(lc_ok(primary("rekey_wait = 600;", remotes(""))), Reason::CFG_REKEY_WAIT_LONG) == 0);
    CHECK(count(lc_ok(primary("rekey_wait = 1;", remotes(""))), Reason::CFG_REKEY_WAIT_LONG) == 0);

    // Set in local (line 3), inherited by two remotes: one warning, at local.
    auto l = lc_ok(primary("rekey_wait = 601;", remotes("")));
    REQUIRE(count(l, Reason::CFG_REKEY_WAIT_LONG) == 1);
    const Error& w = l.warnings.at(0);
    CHECK(reason_code(w.reason) == "P3-W0125");
    CHECK(w.line == 3);
    CHECK(w.str() == "t.conf:3: local.rekey_wait 601 s is longer than the 600 s the specification asks for "
                     "(new keys at least every ten minutes)");

    // In a group and in a remote too: one each, at their lines, in file order.
    auto many = lc_ok(primary("rekey_wait = 3600;", "groups = ( { name = \"g\";\n rekey_wait = 900; } );\n" +
                                                        remotes("groups = [ \"g\" ];", "\n rekey_wait = 7200;")));
    REQUIRE(count(many, Reason::CFG_REKEY_WAIT_LONG) == 3);
    CHECK(many.warnings[0].line == 3);
    CHECK(many.warnings[1].line == 5);
    CHECK(many.warnings[1].what.find("groups[0].rekey_wait 900 s") != std::string::npos);
    CHECK(many.warnings[2].line == 9);
    CHECK(many.warnings[2].what.find("remotes[1].rekey_wait 7200 s") != std::string::npos);

    // The line format: local and per-remote keywords.
    auto lg = legacy_ok("localstart\nrole primary\naddress 192.0.2.1\nrekey_wait 3600\nlocalend\n"
                        "1/address 192.0.2.2\n1/subnet1 10.2.0.0\n1/mask1 24\n1/rekey_wait 900\n"
                        "2/address 192.0.2.3\n2/subnet1 10.3.0.0\n2/mask1 24\n");
    REQUIRE(count(lg, Reason::CFG_REKEY_WAIT_LONG) == 2);
    CHECK(lg.warnings[0].line == 4);
    CHECK(lg.warnings[0].what.find("rekey_wait 3600 s is longer than the 600 s") != std::string::npos);
    CHECK(lg.warnings[1].line == 9);
    CHECK(lg.warnings[1].what.find("1/rekey_wait 900 s") != std::string::npos);
}
