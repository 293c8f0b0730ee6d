// The libconfig format: every keyword lands in the model, Appendix A defaults, groups and
// per-remote overrides resolved in order, static keys, masking of secrets, key file modes,
// and the effective configuration reloading to the same model.
#include <catch2/catch.hpp>

#include <cstdio>

#include "common/config.hpp"
#include "common/keyfile.hpp"
#include "common/log.hpp"
#include "config_test_util.hpp"

using namespace p3;
using namespace p3::config;
using namespace p3test;

namespace {

const char* kMinimalPrimary = R"(
role = "primary";
local = { address = "192.0.2.1"; };
)";

constexpr const char* kKeyA = "00112233445566778899aabbccddeeff";
constexpr const char* kKeyB = "ffeeddccbbaa99887766554433221100";
constexpr const char* kKeyC = "0f1e2d3c4b5a69788796a5b4c3d2e1f0";
constexpr const char* kKeyD = "f0e1d2c3b4a5968778695a4b3c2d1e0f";

std::string with_remote(const std::string& remote_body, const std::string& extra = "") {
    return std::string("role = \"primary\";\nlocal = { address = \"192.0.2.1\"; };\n") + extra +
           "remotes = ( { id = 1; address = \"192.0.2.2\"; subnets = [ \"10.2.0.0/24\" ];\n" + remote_body +
           " } );\n";
}

std::string hex(std::span<const std::uint8_t> b) {
    std::string s;
    char buf[3];
    for (auto c : b) {
        std::snprintf(buf, sizeof buf, "%02x", c);
        s += buf;
    }
    return s;
}

}  // namespace

TEST_CASE("libconfig: a minimal primary gets the Appendix A defaults") {
    auto cfg = lc_ok(kMinimalPrimary);
    CHECK(cfg.role == Role::primary);
    CHECK(cfg.local.address.str() == "192.0.2.1");
    CHECK(cfg.local.port == 5653);
    CHECK(cfg.local.nat_port == 4500);
    CHECK(cfg.local.key_generation == KeyGeneration::software);
    CHECK(cfg.local.cluster_state == 0);
    CHECK(cfg.local.load_balance == 0);
    const auto& p = cfg.local.defaults;
    CHECK(p.rekey_wait == 3600);
    CHECK(p.array_size == 256);
    CHECK(p.data_array_time == 86400);
    CHECK(p.control_array_time == 82800);
    CHECK(p.heartbeat_time == 15);
    CHECK(p.heartbeat_fail == 120);
    CHECK(p.key_type == KeyType::aes128);
    CHECK(p.rekey_packets == 0);
    CHECK_FALSE(p.size_hiding);
    CHECK(p.lanes == 0);
    // No dataplane section: LAN port 0, WAN port 1 carrying the local address.
    CHECK(cfg.dataplane.lan.port_id == 0);
    CHECK(cfg.dataplane.wan.port_id == 1);
    CHECK(cfg.dataplane.wan.address.str() == "192.0.2.1/32");
    CHECK(cfg.dataplane.lan.address.addr.family == 0);
    CHECK(cfg.dataplane.replay_window == 1024);
    CHECK(cfg.dataplane.idle_backoff_us == 0);
    CHECK(cfg.dataplane.idle_polls == 256);
    CHECK(cfg.dataplane.mbufs == 8191);
    CHECK(cfg.dataplane.rx_queues == 1);
    CHECK(cfg.dataplane.burst == 32);
    CHECK(cfg.remotes.empty());
    CHECK(cfg.groups.empty());
    CHECK(cfg.warnings.empty());
    CHECK(cfg.source == "t.conf");
}

TEST_CASE("libconfig: every keyword reaches the model") {
    TempDir dir;
    dir.write("psk", "a secret of 16+ bytes\n", 0600);
    dir.write("key.pem", "k\n", 0600);
    auto path = dir.write("all.conf", R"(
role = "secondary";
local = {
  ip = 6; address = "2001:db8::1"; port = 6000; nat_port = 4501; key_generation = "hardware";
  identity = "east-gw"; certificate = "/etc/p3/cert.pem"; private_key = "key.pem";
  ca = "/etc/p3/ca.pem";
  rekey_wait = 100; rekey_packets = 50000000; array_size = 64; data_array_time = 200;
  control_array_time = 300; heartbeat_time = 5; heartbeat_fail = 30; key_type = "aes256";
  size_hiding = true; lanes = 4; cluster_state = 0; load_balance = 0;
};
dataplane = {
  lan = { port = "net_ring0"; address = "fd00:1::1/64"; gateway = "fd00:1::fe"; gateway_mac = "02:00:00:00:00:01"; mtu = 9000; };
  wan = { port = 3; address = "2001:db8::1/64"; gateway = "2001:db8::fe"; gateway_mac = "02:00:00:00:00:fe"; mtu = 1400; };
  replay_window = 4096; idle_backoff_us = 100; idle_polls = 10; mbufs = 2047; rx_queues = 0; burst = 64;
};
groups = ( { name = "g"; rekey_wait = 7; rekey_packets = 8; array_size = 9; data_array_time = 10;
             control_array_time = 11; heartbeat_time = 12; heartbeat_fail = 13; key_type = "AES128";
             size_hiding = false; lanes = 2; } );
remotes = ( { id = 9; ip = 6; address = "2001:db8::2"; port = 7000; identity = "hq"; psk_file = "psk";
              subnets = [ "fd00:2::/48", "fd00:3::/64" ]; groups = [ "g" ]; heartbeat_fail = 40;
              static_keys = { tx_id = 0x101; tx_key = "00112233445566778899aabbccddeeff";
                              tx_salt = "01020304"; rx_id = 0x201;
                              rx_key = "ffeeddccbbaa99887766554433221100"; rx_salt = "0a0b0c0d"; lanes = 2; }; } );
)");
    auto cfg = must_load(load_file(path));
    CHECK(cfg.role == Role::secondary);
    const auto& l = cfg.local;
    CHECK(l.address.str() == "2001:db8::1");
    CHECK(l.port == 6000);
    CHECK(l.nat_port == 4501);
    CHECK(l.key_generation == KeyGeneration::hardware);
    CHECK(l.identity == "east-gw");
    CHECK(cfg.remotes.at(0).psk_file == dir.path + "/psk");  // relative to the configuration file
    CHECK(l.certificate == "/etc/p3/cert.pem");
    CHECK(l.private_key == dir.path + "/key.pem");
    CHECK(l.ca == "/etc/p3/ca.pem");
    CHECK(l.defaults.rekey_wait == 100);
    CHECK(l.defaults.rekey_packets == 50000000ull);
    CHECK(l.defaults.array_size == 64);
    CHECK(l.defaults.data_array_time == 200);
    CHECK(l.defaults.control_array_time == 300);
    CHECK(l.defaults.heartbeat_time == 5);
    CHECK(l.defaults.heartbeat_fail == 30);
    CHECK(l.defaults.key_type == KeyType::aes256);
    CHECK(l.defaults.size_hiding);
    CHECK(l.defaults.lanes == 4);
    const auto& dp = cfg.dataplane;
    CHECK(dp.lan.port_name == "net_ring0");
    CHECK(dp.lan.address.str() == "fd00:1::1/64");
    CHECK(dp.lan.gateway->str() == "fd00:1::fe");
    CHECK(dp.lan.gateway_mac->str() == "02:00:00:00:00:01");
    CHECK(dp.lan.mtu == 9000);
    CHECK(dp.wan.port_id == 3);
    CHECK(dp.wan.port_name.empty());
    CHECK(dp.wan.address.str() == "2001:db8::1/64");
    CHECK(dp.wan.gateway->str() == "2001:db8::fe");
    CHECK(dp.wan.gateway_mac->str() == "02:00:00:00:00:fe");
    CHECK(dp.wan.mtu == 1400);
    CHECK(dp.replay_window == 4096);
    CHECK(dp.idle_backoff_us == 100);
    CHECK(dp.idle_polls == 10);
    CHECK(dp.mbufs == 2047);
    CHECK(dp.rx_queues == 0);
    CHECK(dp.burst == 64);
    REQUIRE(cfg.groups.size() == 1);
    const auto& g = cfg.groups[0];
    CHECK(g.name == "g");
    CHECK(g.rekey_wait == 7u);
    CHECK(g.rekey_packets == 8u);
    CHECK(g.array_size == 9u);
    CHECK(g.data_array_time == 10u);
    CHECK(g.control_array_time == 11u);
    CHECK(g.heartbeat_time == 12u);
    CHECK(g.heartbeat_fail == 13u);
    CHECK(g.key_type == KeyType::aes128);
    CHECK(g.size_hiding == false);
    CHECK(g.lanes == 2u);
    CHECK(g.line == 16);
    REQUIRE(cfg.remotes.size() == 1);
    const auto& r = cfg.remotes[0];
    CHECK(r.id == 9);
    CHECK(r.address.str() == "2001:db8::2");
    CHECK(r.port == 7000);
    CHECK(r.identity == "hq");
    REQUIRE(r.subnets.size() == 2);
    CHECK(r.subnets[0].str() == "fd00:2::/48");
    CHECK(r.subnets[1].str() == "fd00:3::/64");
    CHECK(r.groups == std::vector<std::string>{"g"});
    CHECK(r.line == 19);
    // local -> group g -> own heartbeat_fail
    CHECK(r.params.rekey_wait == 7);
    CHECK(r.params.rekey_packets == 8);
    CHECK(r.params.key_type == KeyType::aes128);
    CHECK(r.params.heartbeat_time == 12);
    CHECK(r.params.heartbeat_fail == 40);
    CHECK(r.params.lanes == 2);
    REQUIRE(r.static_keys);
    const auto& k = *r.static_keys;
    CHECK(k.tx_id == 0x101);
    CHECK(k.rx_id == 0x201);
    CHECK(hex(k.tx_key.span()) == kKeyA);
    CHECK(hex(k.rx_key.span()) == kKeyB);
    CHECK(hex(k.tx_salt.span()) == "01020304");
    CHECK(hex(k.rx_salt.span()) == "0a0b0c0d");
    CHECK(k.lanes == 2);
    CHECK(k.anti_replay);   // the default
    CHECK(k.line == 21);
    // The remote's lanes (2, over local's 4) are applied: no warning about them; on static
    // keys: P3-W0109, at the static_keys line.
    REQUIRE(cfg.warnings.size() == 1);
    CHECK(cfg.warnings[0].reason == Reason::CFG_STATIC_KEYS);
    CHECK(cfg.warnings[0].line == 21);
}

TEST_CASE("libconfig: key_generation also takes Appendix A's 1 and 2") {
    auto one = lc_ok(R"(role = "primary"; local = { address = "192.0.2.1"; key_generation = 1; };)");
    CHECK(one.local.key_generation == KeyGeneration::software);
    auto two = lc_ok(R"(role = "primary"; local = { address = "192.0.2.1"; key_generation = 2; };)");
    CHECK(two.local.key_generation == KeyGeneration::hardware);
}

TEST_CASE("libconfig: groups apply in order, then the remote's own overrides") {
    const std::string base = R"(
role = "primary";
local = { address = "192.0.2.1"; rekey_wait = 1000; heartbeat_time = 20; lanes = 3; };
groups = (
  { name = "a"; rekey_wait = 2000; key_type = "AES256"; heartbeat_fail = 200; },
  { name = "b"; rekey_wait = 3000; size_hiding = true; }
);
)";
    struct Row {
        const char* remote;
        std::uint32_t rekey_wait;
        KeyType key_type;
        bool size_hiding;
        std::uint32_t heartbeat_fail;
    };
    const Row rows[] = {
        {"groups = [];", 1000, KeyType::aes128, false, 120},
        {"groups = [ \"a\" ];", 2000, KeyType::aes256, false, 200},
        {"groups = [ \"a\", \"b\" ];", 3000, KeyType::aes256, true, 200},
        {"groups = [ \"b\", \"a\" ];", 2000, KeyType::aes256, true, 200},
        {"groups = [ \"a\", \"b\" ]; rekey_wait = 50; key_type = \"AES128\";", 50, KeyType::aes128, true, 200},
        {"rekey_wait = 60; size_hiding = true;", 60, KeyType::aes128, true, 120},
    };
    for (const auto& row : rows) {
        INFO(row.remote);
        auto cfg = lc_ok(base + "remotes = ( { id = 1; address = \"192.0.2.2\"; subnets = [ \"10.2.0.0/24\" ]; " +
                         row.remote + " } );");
        const auto& p = cfg.remotes.at(0).params;
        CHECK(p.rekey_wait == row.rekey_wait);
        CHECK(p.key_type == row.key_type);
        CHECK(p.size_hiding == row.size_hiding);
        CHECK(p.heartbeat_fail == row.heartbeat_fail);
        CHECK(p.heartbeat_time == 20);  // from local, never overridden here
        CHECK(p.lanes == 3);
        // The effective configuration reloads to the same resolved values.
        auto again = lc_ok(to_libconfig(cfg));
        CHECK(same_settings(cfg, again));
    }
}

TEST_CASE("libconfig: integers beyond 32 bits are read exactly, not wrapped") {
    // (rekey_packets is bounded by the AES-GCM limit, far below 2^32: 4294967297 is refused as
    // itself, not as 1; the bound's own tests are in "rekey_packets: ...".)
    auto big = lc_err(with_remote("rekey_packets = 4294967297;", ""));
    CHECK(big.what.find("rekey_packets 4294967297 out of range 0..373475417") != std::string::npos);
    auto id = lc_ok(R"(role = "primary"; local = { address = "192.0.2.1"; };
remotes = ( { id = 4294967295; address = "192.0.2.2"; subnets = [ "10.2.0.0/24" ]; } );)");
    CHECK(id.remotes[0].id == 4294967295u);
    auto hexid = lc_ok(with_remote(std::string("static_keys = { tx_id = 0xffffffff; rx_id = 0x80000000; tx_key = \"") +
                                   kKeyA + "\"; tx_salt = \"01020304\"; rx_key = \"" + kKeyB +
                                   "\"; rx_salt = \"01020304\"; };"));
    CHECK(hexid.remotes[0].static_keys->tx_id == 0xffffffffu);
    CHECK(hexid.remotes[0].static_keys->rx_id == 0x80000000u);
    // 2^32 as a remote id would have wrapped to 0 in libconfig 1.5: here it is out of range.
    auto e = lc_err(R"(role = "primary"; local = { address = "192.0.2.1"; };
remotes = ( { id = 4294967296; address = "192.0.2.2"; subnets = [ "10.2.0.0/24" ]; } );)");
    CHECK(e.reason == Reason::CFG_BAD_VALUE);
    CHECK(e.line == 2);
    CHECK(e.what == "remotes[0].id 4294967296 out of range 1..4294967295");
    auto h = lc_err(with_remote("rekey_wait = 0x100000001;"));
    CHECK(h.what == "remotes[0].rekey_wait 4294967297 out of range 1..31536000");
    // Numbers inside strings and comments are left alone.
    auto s = lc_ok(R"(role = "primary"; # 99999999999
local = { address = "192.0.2.1"; identity = "id-99999999999"; }; /* 4294967296 */)");
    CHECK(s.local.identity == "id-99999999999");
}

TEST_CASE("libconfig: static keys may switch anti-replay off, with a warning of its own") {
    const std::string keys = std::string("static_keys = { tx_id = 0x101; rx_id = 0x201; tx_key = \"") + kKeyA +
                             "\"; tx_salt = \"01020304\"; rx_key = \"" + kKeyB + "\"; rx_salt = \"01020304\"; ";
    auto on = lc_ok(with_remote(keys + "};"));
    CHECK(on.remotes[0].static_keys->anti_replay);
    REQUIRE(on.warnings.size() == 1);
    auto off = lc_ok(with_remote(keys + "anti_replay = false; };"));
    CHECK_FALSE(off.remotes[0].static_keys->anti_replay);
    REQUIRE(off.warnings.size() == 2);
    CHECK(off.warnings[0].reason == Reason::CFG_STATIC_KEYS);
    CHECK(off.warnings[1].reason == Reason::CFG_NO_ANTI_REPLAY);
    CHECK(reason_code(off.warnings[1].reason) == "P3-W0111");
    CHECK(off.warnings[1].line == 4);
    // A change of the setting is a change of the remote; the effective file keeps it.
    CHECK_FALSE(same_settings(on.remotes[0], off.remotes[0]));
    auto again = lc_ok(to_libconfig(off, true));
    CHECK(same_settings(again.remotes[0], off.remotes[0]));
    CHECK(to_libconfig(off).find("anti_replay = false;") != std::string::npos);
    auto e = lc_err(with_remote(keys + "anti_replay = 0; };"));
    CHECK(e.reason == Reason::CFG_BAD_VALUE);
    CHECK(e.what.find("anti_replay") != std::string::npos);
}

TEST_CASE("libconfig: dataplane port by id or by device name") {
    auto byname = lc_ok(R"(role = "primary"; local = { address = "192.0.2.1"; };
dataplane = { lan = { port = "net_ring0"; }; wan = { port = "net_ring1"; address = "192.0.2.1/24"; }; };)");
    CHECK(byname.dataplane.lan.port_name == "net_ring0");
    CHECK(byname.dataplane.wan.port_name == "net_ring1");
    CHECK(byname.dataplane.wan.address.str() == "192.0.2.1/24");
    auto byid = lc_ok(R"(role = "primary"; local = { address = "192.0.2.1"; };
dataplane = { lan = { port = 1; }; wan = { port = 0; }; };)");
    CHECK(byid.dataplane.lan.port_id == 1);
    CHECK(byid.dataplane.wan.port_id == 0);
    CHECK(byid.dataplane.lan.port_name.empty());
}

TEST_CASE("static keys: parsed into secret storage, sizes follow key_type") {
    const std::string aes256a(64, 'a'), aes256b(64, 'b');
    auto cfg = lc_ok(with_remote("key_type = \"AES256\"; static_keys = { tx_id = 5; tx_key = \"" + aes256a +
                                 "\"; tx_salt = \"0x01020304\"; rx_id = 6; rx_key = \"" + aes256b +
                                 "\"; rx_salt = \"AABBCCDD\"; };"));
    const auto& k = *cfg.remotes[0].static_keys;
    CHECK(k.tx_key.size() == 32);
    CHECK(k.rx_key.size() == 32);
    CHECK(hex(k.rx_salt.span()) == "aabbccdd");
    CHECK(k.lanes == 1);
    // A 16-byte key for an AES256 remote (via a group) is refused at the static_keys line.
    auto e = lc_err(with_remote(std::string("groups = [ \"big\" ];\n static_keys = { tx_id = 5; tx_key = \"") + kKeyA +
                                    "\"; tx_salt = \"01020304\"; rx_id = 6; rx_key = \"" + kKeyB +
                                    "\"; rx_salt = \"01020304\"; };",
                                "groups = ( { name = \"big\"; key_type = \"AES256\"; } );\n"));
    CHECK(e.reason == Reason::CFG_BAD_VALUE);
    CHECK(e.line == 6);
    CHECK(e.what == "remote 1: static_keys.tx_key is 16 bytes; key_type AES256 needs 32");
}

TEST_CASE("masking: the effective configuration never shows key bytes unless asked") {
    auto cfg = lc_ok(with_remote(std::string("static_keys = { tx_id = 5; tx_key = \"") + kKeyA +
                                 "\"; tx_salt = \"deadbeef\"; rx_id = 6; rx_key = \"" + kKeyB +
                                 "\"; rx_salt = \"cafef00d\"; };"));
    auto masked = to_libconfig(cfg);
    CHECK(masked.find(kKeyA) == std::string::npos);
    CHECK(masked.find(kKeyB) == std::string::npos);
    CHECK(masked.find("deadbeef") == std::string::npos);
    CHECK(masked.find("cafef00d") == std::string::npos);
    CHECK(masked.find("tx_key = \"<secret: 16 bytes>\";") != std::string::npos);
    CHECK(masked.find("rx_salt = \"<secret: 4 bytes>\";") != std::string::npos);
    // Masked output is for reading, not for loading: the placeholder is not hex.
    CHECK(lc_err(masked).reason == Reason::CFG_BAD_VALUE);

    auto revealed = to_libconfig(cfg, true);
    CHECK(revealed.find(kKeyA) != std::string::npos);
    CHECK(revealed.find("cafef00d") != std::string::npos);
    auto again = lc_ok(revealed);
    CHECK(same_settings(cfg, again));
    // A different key is a different configuration.
    std::string other = revealed;
    other.replace(other.find(kKeyA), 2, "01");
    CHECK_FALSE(same_settings(cfg, lc_ok(other)));
}

TEST_CASE("key files: owner-only accepted, group/other readable refused, absent only warned") {
    TempDir dir;
    const std::string body = "role = \"primary\";\nlocal = {\n  address = \"192.0.2.1\";\n";
    // A remote whose psk_file is on line 5.
    auto with_psk = [&](const std::string& file) {
        return body + "};\nremotes = ( { id = 1; address = \"192.0.2.2\"; subnets = [ \"10.2.0.0/24\" ];\n"
                      "  psk_file = \"" + file + "\"; } );\n";
    };
    const std::string key = "sixteen bytes ok\n";
    SECTION("0600 psk_file: accepted without warning") {
        dir.write("psk", key, 0600);
        auto cfg = must_load(load_file(dir.write("a.conf", with_psk("psk"))));
        CHECK(cfg.warnings.empty());
    }
    SECTION("0644 psk_file: refused at its line") {
        dir.write("psk", key, 0644);
        auto p = dir.write("a.conf", with_psk("psk"));
        auto e = must_fail(load_file(p));
        CHECK(e.reason == Reason::CFG_KEY_FILE_MODE);
        CHECK(e.line == 6);
        CHECK(e.file == p);
        CHECK(e.what.find("mode 0644") != std::string::npos);
        CHECK(e.what.find(dir.path + "/psk") != std::string::npos);
        CHECK(e.what.find("remote 1") != std::string::npos);
    }
    SECTION("0640 private_key: refused at its line") {
        dir.write("key.pem", "x", 0640);
        auto p = dir.write("a.conf", body + "  certificate = \"cert.pem\";\n  private_key = \"key.pem\";\n};\n");
        auto e = must_fail(load_file(p));
        CHECK(e.reason == Reason::CFG_KEY_FILE_MODE);
        CHECK(e.line == 5);
    }
    SECTION("0604 (others only) is refused too") {
        dir.write("psk", key, 0604);
        CHECK(must_fail(load_file(dir.write("a.conf", with_psk("psk")))).reason == Reason::CFG_KEY_FILE_MODE);
    }
    SECTION("absent psk_file: loads, with warning P3-W0110 at its line") {
        auto cfg = must_load(load_file(dir.write("a.conf", with_psk("nothere"))));
        REQUIRE(cfg.warnings.size() == 1);
        CHECK(cfg.warnings[0].reason == Reason::CFG_KEY_FILE_ABSENT);
        CHECK(reason_code(cfg.warnings[0].reason) == "P3-W0110");
        CHECK(cfg.warnings[0].line == 6);
    }
    SECTION("a certificate (public) may be world-readable") {
        dir.write("cert.pem", "x", 0644);
        dir.write("key.pem", "x", 0600);
        auto p = dir.write("a.conf", body + "  certificate = \"cert.pem\";\n  private_key = \"key.pem\";\n};\n");
        CHECK(must_load(load_file(p)).warnings.empty());
    }
    SECTION("a directory is not a key file") {
        auto e = must_fail(load_file(dir.write("a.conf", with_psk("/"))));
        CHECK(e.reason == Reason::CFG_BAD_VALUE);
        CHECK(e.line == 6);
    }
    SECTION("a symbolic link to an owner-only key is refused, not followed (P3-E0116)") {
        dir.write("psk", key, 0600);
        REQUIRE(::symlink((dir.path + "/psk").c_str(), (dir.path + "/link").c_str()) == 0);
        auto e = must_fail(load_file(dir.write("a.conf", with_psk("link"))));
        CHECK(e.reason == Reason::CFG_KEY_FILE_LINK);
        CHECK(reason_code(e.reason) == "P3-E0116");
        CHECK(e.line == 6);
        CHECK(e.what.find("symbolic link") != std::string::npos);
    }
    SECTION("a private key behind a symbolic link is refused too") {
        dir.write("key.pem", "x", 0600);
        REQUIRE(::symlink((dir.path + "/key.pem").c_str(), (dir.path + "/key-link").c_str()) == 0);
        auto p = dir.write("a.conf", body + "  certificate = \"cert.pem\";\n  private_key = \"key-link\";\n};\n");
        CHECK(must_fail(load_file(p)).reason == Reason::CFG_KEY_FILE_LINK);
    }
}

TEST_CASE("pre-shared keys are per remote: shared local.psk_file, short keys and duplicate identities refused") {
    TempDir dir;
    dir.write("a.psk", "remote A's own key, 32 bytes....\n", 0600);
    dir.write("b.psk", "remote B's own key, 32 bytes....\n", 0600);
    const std::string head = "role = \"primary\";\nlocal = {\n  address = \"192.0.2.1\";\n";
    auto remote = [](int id, const char* addr, const char* ident, const char* psk, const char* subnet) {
        return std::string("  { id = ") + std::to_string(id) + "; address = \"" + addr + "\"; identity = \"" + ident +
               "\"; psk_file = \"" + psk + "\"; subnets = [ \"" + subnet + "\" ]; }";
    };
    SECTION("each remote its own psk_file: accepted, paths resolved, printed back per remote") {
        auto cfg = must_load(load_file(dir.write("a.conf", head + "};\nremotes = (\n" +
                                                          remote(1, "192.0.2.2", "a.test", "a.psk", "10.2.0.0/24") + ",\n" +
                                                          remote(2, "192.0.2.3", "b.test", "b.psk", "10.3.0.0/24") + "\n);\n")));
        CHECK(cfg.warnings.empty());
        REQUIRE(cfg.remotes.size() == 2);
        CHECK(cfg.remotes[0].psk_file == dir.path + "/a.psk");
        CHECK(cfg.remotes[1].psk_file == dir.path + "/b.psk");
        const std::string text = to_libconfig(cfg);
        CHECK(text.find("psk_file = \"" + dir.path + "/b.psk\"") != std::string::npos);
        CHECK(same_settings(cfg, lc_ok(text)));
    }
    SECTION("local.psk_file, one key for every remote: refused with P3-E0113, saying what to write instead") {
        auto p = dir.write("a.conf", head + "  psk_file = \"a.psk\";\n};\nremotes = (\n" +
                                         remote(1, "192.0.2.2", "a.test", "a.psk", "10.2.0.0/24") + "\n);\n");
        auto e = must_fail(load_file(p));
        CHECK(e.reason == Reason::CFG_SHARED_PSK);
        CHECK(reason_code(e.reason) == "P3-E0113");
        CHECK(e.line == 4);
        CHECK(e.what.find("psk_file") != std::string::npos);
        CHECK(reason_info(e.reason).action.find("remotes") != std::string_view::npos);
        CHECK(reason_info(e.reason).action.find("psk_file") != std::string_view::npos);
    }
    SECTION("a pre-shared key under 16 bytes: refused with P3-E0114 at its remote") {
        dir.write("short.psk", "fifteen bytes!!\n", 0600);  // 15 after the newline
        auto e = must_fail(load_file(dir.write("a.conf", head + "};\nremotes = (\n" +
                                                             remote(3, "192.0.2.2", "a.test", "short.psk", "10.2.0.0/24") +
                                                             "\n);\n")));
        CHECK(e.reason == Reason::CFG_PSK_SHORT);
        CHECK(reason_code(e.reason) == "P3-E0114");
        CHECK(e.line == 6);
        CHECK(e.what.find("remote 3") != std::string::npos);
        CHECK(e.what.find("15 bytes") != std::string::npos);
        dir.write("ok.psk", "sixteen bytes ok\n", 0600);
        must_load(load_file(dir.write("b.conf", head + "};\nremotes = (\n" +
                                                    remote(3, "192.0.2.2", "a.test", "ok.psk", "10.2.0.0/24") + "\n);\n")));
    }
    struct Dup { const char* what; std::string a, b; };
    const Dup dups[] = {
        {"the same name", remote(1, "192.0.2.2", "a.test", "a.psk", "10.2.0.0/24"),
         remote(2, "192.0.2.3", "a.test", "b.psk", "10.3.0.0/24")},
        {"names differing only in case", remote(1, "192.0.2.2", "gw.Example", "a.psk", "10.2.0.0/24"),
         remote(2, "192.0.2.3", "GW.example", "b.psk", "10.3.0.0/24")},
        {"an empty identity (the address) and that address written out",
         "  { id = 1; address = \"192.0.2.2\"; psk_file = \"a.psk\"; subnets = [ \"10.2.0.0/24\" ]; }",
         remote(2, "192.0.2.3", "192.0.2.2", "b.psk", "10.3.0.0/24")},
        {"two empty identities on one address", "  { id = 1; address = \"192.0.2.2\"; psk_file = \"a.psk\"; subnets = [ \"10.2.0.0/24\" ]; }",
         "  { id = 2; address = \"192.0.2.2\"; psk_file = \"b.psk\"; subnets = [ \"10.3.0.0/24\" ]; }"},
    };
    for (const auto& d : dups) {
        INFO(d.what);
        auto e = must_fail(load_file(dir.write("d.conf", head + "};\nremotes = (\n" + d.a + ",\n" + d.b + "\n);\n")));
        CHECK(e.reason == Reason::CFG_DUPLICATE_IDENTITY);
        CHECK(reason_code(e.reason) == "P3-E0115");
        CHECK(e.line == 7);
        CHECK(e.what.find("remote 1") != std::string::npos);
    }
}

TEST_CASE("legacy format: psk_file is a per-remote keyword; in the local section it is refused") {
    TempDir dir;
    dir.write("a.psk", "remote A's own key, 32 bytes....\n", 0600);
    const std::string local = "localstart\nrole primary\naddress 192.0.2.1\n";
    const std::string remote = "1/address 192.0.2.2\n1/subnet1 10.2.0.0\n1/mask1 255.255.255.0\n1/psk_file a.psk\n";
    auto cfg = must_load(load_file(dir.write("ok.txt", local + "localend\n" + remote)));
    REQUIRE(cfg.remotes.size() == 1);
    CHECK(cfg.remotes[0].psk_file == dir.path + "/a.psk");
    auto e = must_fail(load_file(dir.write("shared.txt", local + "psk_file a.psk\nlocalend\n" + remote)));
    CHECK(e.reason == Reason::CFG_SHARED_PSK);
    CHECK(e.line == 4);
}

namespace {
struct Captured {
    std::vector<std::string> lines;
};
void capture(log::Level, Reason, std::string_view line, void* ctx) {
    static_cast<Captured*>(ctx)->lines.emplace_back(line);
}
}  // namespace

TEST_CASE("load_file logs P3-W0109 once per remote on static keys, and no key bytes") {
    TempDir dir;
    auto sk = [](const char* tx, const char* rx, int rx_id) {
        return std::string("static_keys = { tx_id = 5; tx_key = \"") + tx + "\"; tx_salt = \"01020304\"; rx_id = " +
               std::to_string(rx_id) + "; rx_key = \"" + rx + "\"; rx_salt = \"01020304\"; }; },";
    };
    auto p = dir.write("s.conf", R"(role = "primary";
local = { address = "192.0.2.1"; };
remotes = (
  { id = 1; address = "192.0.2.2"; subnets = [ "10.2.0.0/24" ];
    )" + sk(kKeyA, kKeyB, 6) + R"(
  { id = 2; address = "192.0.2.3"; subnets = [ "10.3.0.0/24" ];
    )" + sk(kKeyC, kKeyD, 7) + R"(
  { id = 3; address = "192.0.2.4"; subnets = [ "10.4.0.0/24" ]; }
);
)");
    Captured c;
    log::init({.ident = "p3test", .to_stderr = false, .to_syslog = false, .min_level = log::Level::info});
    log::set_sink(capture, &c);
    auto cfg = must_load(load_file(p));
    log::set_sink(nullptr, nullptr);
    REQUIRE(c.lines.size() == 2);
    CHECK(c.lines[0] == "p3test: warning P3-W0109: " + p + ":5: remote 1 uses static keys: no setup exchange, no rekey");
    CHECK(c.lines[1] == "p3test: warning P3-W0109: " + p + ":7: remote 2 uses static keys: no setup exchange, no rekey");
    for (const auto& l : c.lines) {
        CHECK(l.find(kKeyA) == std::string::npos);
        CHECK(l.find(kKeyB) == std::string::npos);
    }
    // The text loaders themselves do not log.
    Captured quiet;
    log::set_sink(capture, &quiet);
    auto again = must_load(load_libconfig_text(slurp(p), p));
    log::set_sink(nullptr, nullptr);
    CHECK(quiet.lines.empty());
    CHECK(again.warnings.size() == 2);
}

TEST_CASE("load_file: format detection and unreadable files") {
    TempDir dir;
    auto legacy = dir.write("l.txt", "# comment\n\n  localstart\naddress 192.0.2.1\nlocalend\n");
    CHECK(must_load(load_file(legacy)).local.address.str() == "192.0.2.1");
    auto lc = dir.write("l.conf", "# localstart is only a comment here\nrole = \"primary\";\nlocal = { address = \"192.0.2.1\"; };\n");
    CHECK(must_load(load_file(lc)).role == Role::primary);
    // "localstartx" is not the legacy keyword: libconfig reports the syntax error.
    auto notlegacy = dir.write("x.conf", "localstartx\n");
    CHECK(must_fail(load_file(notlegacy)).reason == Reason::CFG_SYNTAX);
    auto e = must_fail(load_file(dir.path + "/missing.conf"));
    CHECK(e.reason == Reason::CFG_OPEN);
    CHECK(e.file == dir.path + "/missing.conf");
    CHECK(e.str().rfind(dir.path + "/missing.conf: cannot open", 0) == 0);
}

TEST_CASE("every example in config/ loads cleanly and its effective form reloads to the same model") {
    const char* examples[] = {"primary.conf", "secondary.conf", "static-a.conf", "static-b.conf",
                              "legacy-primary.txt", "legacy-secondary.txt"};
    TempDir dir;
    for (const char* name : examples) {
        INFO(name);
        // As installed: owner-only (a checkout makes them 0644; static keys refuse that).
        std::string path = dir.write(name, slurp(std::string(P3_SOURCE_ROOT "/config/") + name));
        auto cfg = must_load(load_file(path));
        for (const auto& w : cfg.warnings)  // only "not created yet" and "static keys" are expected
            CHECK((w.reason == Reason::CFG_KEY_FILE_ABSENT || w.reason == Reason::CFG_STATIC_KEYS));
        auto again = lc_ok(to_libconfig(cfg, true));
        CHECK(same_settings(cfg, again));
        auto body = [](std::string t) { return t.substr(t.find('\n')); };  // past the "from FILE" line
        CHECK(body(to_libconfig(again)) == body(to_libconfig(cfg)));
    }
}

TEST_CASE("the static-keys example pair mirrors each other") {
    TempDir dir;
    auto a = must_load(load_file(dir.write("a.conf", slurp(P3_SOURCE_ROOT "/config/static-a.conf"))));
    auto b = must_load(load_file(dir.write("b.conf", slurp(P3_SOURCE_ROOT "/config/static-b.conf"))));
    const auto& ka = *a.remotes.at(0).static_keys;
    const auto& kb = *b.remotes.at(0).static_keys;
    CHECK(ka.tx_id == kb.rx_id);
    CHECK(ka.rx_id == kb.tx_id);
    CHECK(ka.tx_key.equals(kb.rx_key.span()));
    CHECK(ka.rx_key.equals(kb.tx_key.span()));
    CHECK(ka.tx_salt.equals(kb.rx_salt.span()));
    CHECK(ka.rx_salt.equals(kb.tx_salt.span()));
    CHECK(a.remotes[0].address == b.local.address);
    CHECK(b.remotes[0].address == a.local.address);
    CHECK(a.remotes[0].subnets[0].contains(b.dataplane.lan.address.addr));
    CHECK(b.remotes[0].subnets[0].contains(a.dataplane.lan.address.addr));
    CHECK(a.dataplane.wan.port_id == 0);
    CHECK(a.dataplane.lan.port_id == 1);
}

TEST_CASE("clone and same_settings") {
    TempDir dir;
    auto cfg = must_load(load_file(dir.write("a.conf", slurp(P3_SOURCE_ROOT "/config/static-a.conf"))));
    auto copy = cfg.clone();
    CHECK(same_settings(cfg, copy));
    copy.remotes[0].params.rekey_wait += 1;
    CHECK_FALSE(same_settings(cfg, copy));
    auto copy2 = cfg.clone();
    copy2.dataplane.wan.mtu = 1400;
    CHECK_FALSE(same_settings(cfg, copy2));
    auto copy3 = cfg.clone();
    copy3.remotes[0].static_keys->rx_salt.data()[0] ^= 1;
    CHECK_FALSE(same_settings(cfg, copy3));
    // Lines and source do not matter.
    auto copy4 = cfg.clone();
    copy4.remotes[0].line = 99;
    copy4.source = "elsewhere";
    CHECK(same_settings(cfg, copy4));
}

TEST_CASE("keyfile: what may hold a secret, decided on the opened file") {
    TempDir dir;
    std::string why;
    SecretBytes k;
    SECTION("a FIFO in the key's place is refused at once, not waited on") {
        const std::string p = dir.path + "/fifo";
        REQUIRE(::mkfifo(p.c_str(), 0600) == 0);
        CHECK(keyfile::read_psk(p, k, why) == keyfile::Status::not_regular);
    }
    SECTION("larger than 64 KiB: refused") {
        CHECK(keyfile::read_psk(dir.write("big", std::string(keyfile::kMaxFile + 1, 'x')), k, why) ==
              keyfile::Status::too_long);
    }
    SECTION("line ends are not part of the key; 16 bytes is enough, 15 is not") {
        REQUIRE(keyfile::read_psk(dir.write("crlf", "sixteen bytes ok\r\n"), k, why) == keyfile::Status::ok);
        CHECK(k.size() == 16);
        CHECK(keyfile::read_psk(dir.write("short", "fifteen bytes!!\n"), k, why) == keyfile::Status::too_short);
        CHECK(why.find("15 bytes") != std::string::npos);
    }
    SECTION("a link, absent, open modes") {
        dir.write("real", "sixteen bytes ok");
        REQUIRE(::symlink((dir.path + "/real").c_str(), (dir.path + "/link").c_str()) == 0);
        CHECK(keyfile::read_psk(dir.path + "/link", k, why) == keyfile::Status::link);
        CHECK(keyfile::read_psk(dir.path + "/none", k, why) == keyfile::Status::absent);
        CHECK(keyfile::read_psk(dir.write("open", "sixteen bytes ok", 0640), k, why) == keyfile::Status::mode);
        CHECK(keyfile::read_psk(dir.write("ro", "sixteen bytes ok", 0400), k, why) == keyfile::Status::ok);
    }
}

// ---- static keys never repeat a nonce ------------------------------------------------

TEST_CASE("static keys: the same key both ways, or a key of another remote, is refused") {
    auto keys = [](const char* tx, const char* txs, const char* rx, const char* rxs, int rx_id = 6) {
        return std::string("static_keys = { tx_id = 5; tx_key = \"") + tx + "\"; tx_salt = \"" + txs +
               "\"; rx_id = " + std::to_string(rx_id) + "; rx_key = \"" + rx + "\"; rx_salt = \"" + rxs + "\"; };";
    };
    // Same key, same salt: a packet sent could be reflected back and decrypt.
    auto e = lc_err(with_remote(keys(kKeyA, "01020304", kKeyA, "01020304")));
    CHECK(e.reason == Reason::CFG_STATIC_SAME_KEY);
    CHECK(std::string(reason_code(e.reason)) == "P3-E0120");
    CHECK(e.what.find("tx_key equals rx_key") != std::string::npos);
    // Same key, other salt: still one key used by both senders.
    CHECK(lc_err(with_remote(keys(kKeyA, "01020304", kKeyA, "05060708"))).reason == Reason::CFG_STATIC_SAME_KEY);
    // Two remotes: B's tx key is A's rx key.
    auto two = lc_err(std::string(R"(role = "primary";
local = { address = "192.0.2.1"; };
remotes = (
  { id = 1; address = "192.0.2.2"; subnets = [ "10.2.0.0/24" ]; )") + keys(kKeyA, "01020304", kKeyB, "01020304") + R"( },
  { id = 2; address = "192.0.2.3"; subnets = [ "10.3.0.0/24" ]; )" + keys(kKeyB, "0a0b0c0d", kKeyC, "01020304", 7) + R"( }
);
)");
    CHECK(two.reason == Reason::CFG_STATIC_KEY_REUSED);
    CHECK(two.line == 5);
    CHECK(two.what.find("remote 1") != std::string::npos);
    // The secret itself never appears in the message.
    CHECK(two.what.find(kKeyB) == std::string::npos);
    CHECK(e.what.find(kKeyA) == std::string::npos);
    // Distinct keys load, persisted sequence on by default; off is warned.
    auto ok = lc_ok(with_remote(keys(kKeyA, "01020304", kKeyB, "01020304")));
    CHECK(ok.remotes[0].static_keys->persist_sequence);
    CHECK(ok.local.state_dir == "/var/lib/p3");
    auto off = lc_ok(with_remote(keys(kKeyA, "01020304", kKeyB, "01020304").insert(15, "persist_sequence = false; ")));
    CHECK_FALSE(off.remotes[0].static_keys->persist_sequence);
    bool warned = false;
    for (const auto& w : off.warnings) warned |= w.reason == Reason::CFG_NO_SEQ_STATE;
    CHECK(warned);
    CHECK(same_settings(off, lc_ok(to_libconfig(off, true))));
}

TEST_CASE("static keys: a configuration file readable by group or others is refused, by its open mode") {
    TempDir dir;
    const std::string text = slurp(P3_SOURCE_ROOT "/config/static-a.conf");
    for (mode_t mode : {0640, 0604, 0644}) {
        INFO("mode " << mode);
        auto p = dir.write("s.conf", text, mode);
        auto e = must_fail(load_file(p));
        CHECK(e.reason == Reason::CFG_STATIC_FILE_MODE);
        CHECK(std::string(reason_code(e.reason)) == "P3-E0122");
        CHECK(e.line == 26);   // the static_keys group
        CHECK(e.str().find("chmod 600") != std::string::npos);
    }
    CHECK(std::holds_alternative<Config>(load_file(dir.write("s.conf", text, 0600))));
    CHECK(std::holds_alternative<Config>(load_file(dir.write("s.conf", text, 0400))));
    // Without static keys the file's mode is the administrator's business.
    CHECK(std::holds_alternative<Config>(load_file(dir.write("p.conf", slurp(P3_SOURCE_ROOT "/config/primary.conf"), 0644))));
}

TEST_CASE("local.state_dir must be absolute; local.subnets are parsed and printed") {
    auto base = std::string("role = \"primary\";\nlocal = { address = \"192.0.2.1\"; ");
    auto e = lc_err(base + "state_dir = \"var/p3\"; };\n");
    CHECK(e.reason == Reason::CFG_STATE_DIR);
    auto c = lc_ok(base + "state_dir = \"/srv/p3\"; subnets = [ \"10.1.5.0/24\", \"fd01:5::/64\" ]; };\n");
    CHECK(c.local.state_dir == "/srv/p3");
    REQUIRE(c.local.subnets.size() == 2);
    CHECK(c.local.subnets[1].str() == "fd01:5::/64");
    CHECK(same_settings(c, lc_ok(to_libconfig(c))));
    CHECK(lc_err(base + "subnets = [ \"10.1.5.1/24\" ]; };\n").reason == Reason::CFG_BAD_VALUE);
}

TEST_CASE("legacy format: state_dir and local_subnets in the local section") {
    auto c = legacy_ok("localstart\naddress 192.0.2.1\nstate_dir /srv/p3\nlocal_subnets 10.1.5.0/24,fd01:5::/64\n"
                       "localend\n");
    CHECK(c.local.state_dir == "/srv/p3");
    REQUIRE(c.local.subnets.size() == 2);
    CHECK(c.local.subnets[0].str() == "10.1.5.0/24");
    CHECK(same_settings(c, lc_ok(to_libconfig(c))));   // what config convert prints loads the same
    CHECK(legacy_err("localstart\naddress 192.0.2.1\nlocal_subnets 10.1.5.1/24\nlocalend\n").reason ==
          Reason::CFG_BAD_VALUE);
    CHECK(legacy_err("localstart\naddress 192.0.2.1\nstate_dir p3\nlocalend\n").reason == Reason::CFG_STATE_DIR);
}

TEST_CASE("local.admin: defaults, every key, printed and read back, unknown keys refused") {
    auto base = std::string("role = \"primary\";\nlocal = { address = \"192.0.2.1\"; ");
    auto d = lc_ok(base + "};\n");
    CHECK(d.local.admin.socket.empty());
    CHECK(d.local.admin.group == "p3");
    CHECK(d.local.admin.viewer_group == "p3view");
    CHECK(d.local.admin.audit == "/var/log/p3/audit.jsonl");
    auto c = lc_ok(base + "admin = { socket = \"/run/x.sock\"; group = \"ops\"; viewer_group = \"noc\"; "
                          "audit = \"/srv/audit.jsonl\"; }; };\n");
    CHECK(c.local.admin.socket == "/run/x.sock");
    CHECK(c.local.admin.group == "ops");
    CHECK(c.local.admin.viewer_group == "noc");
    CHECK(c.local.admin.audit == "/srv/audit.jsonl");
    CHECK(same_settings(c, lc_ok(to_libconfig(c))));
    CHECK(lc_ok(to_libconfig(c)).local.admin == c.local.admin);
    CHECK(lc_err(base + "admin = { sock = \"/x\"; }; };\n").reason == Reason::CFG_UNKNOWN_KEY);
    CHECK(lc_err(base + "admin = 1; };\n").reason == Reason::CFG_BAD_VALUE);
}

TEST_CASE("libconfig: a remote's lanes are applied, more than a session has are warned about") {
    const std::string base = R"(role = "primary"; local = { address = "192.0.2.1"; };
remotes = ( { id = 1; address = "192.0.2.2"; subnets = [ "10.2.0.0/24" ]; )";
    auto four = lc_ok(base + "lanes = 4; } );");
    CHECK(four.remotes.at(0).params.lanes == 4);
    CHECK(four.warnings.empty());
    auto many = lc_ok(base + "lanes = 65; } );");
    REQUIRE(many.warnings.size() == 1);
    CHECK(many.warnings[0].reason == Reason::CFG_LANES_CAPPED);
    CHECK(reason_code(many.warnings[0].reason) == "P3-W0134");
    CHECK(many.warnings[0].what.find("lanes = 65") != std::string::npos);
}
