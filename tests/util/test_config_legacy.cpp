// The seed spec's Appendix A line format: every keyword, its defaults, the role decision,
// the extension keywords, and legacy and libconfig files giving the same model.
#include <catch2/catch.hpp>

#include "common/config.hpp"
#include "config_test_util.hpp"

using namespace p3;
using namespace p3::config;
using namespace p3test;

TEST_CASE("legacy: every Appendix A keyword of a primary") {
    auto cfg = legacy_ok(R"(# primary
localstart
ip 4
address 192.0.2.1
port 6000
key_generation 2
rekey_wait 100
array_size 64
data_array_time 200
control_array_time 300
heartbeat_time 5
heartbeat_fail 30
cluster_state 0
load_balance 0
localend

7/ip 4
7/address 192.0.2.7
7/subnet1 10.7.0.0
7/mask1 255.255.0.0
7/subnet2 10.8.1.0
7/mask2 255.255.255.0
7/key_type AES256
7/rekey_wait 50
7/key_array 32
7/data_array_time 60
7/control_array_time 70
7/heartbeat_time 8
7/heartbeat_fail 80
)");
    CHECK(cfg.role == Role::primary);
    const auto& l = cfg.local;
    CHECK(l.address.str() == "192.0.2.1");
    CHECK(l.port == 6000);
    CHECK(l.key_generation == KeyGeneration::hardware);
    CHECK(l.defaults.rekey_wait == 100);
    CHECK(l.defaults.array_size == 64);
    CHECK(l.defaults.data_array_time == 200);
    CHECK(l.defaults.control_array_time == 300);
    CHECK(l.defaults.heartbeat_time == 5);
    CHECK(l.defaults.heartbeat_fail == 30);
    CHECK(l.cluster_state == 0);
    CHECK(l.load_balance == 0);
    REQUIRE(cfg.remotes.size() == 1);
    const auto& r = cfg.remotes[0];
    CHECK(r.id == 7);
    CHECK(r.line == 17);
    CHECK(r.address.str() == "192.0.2.7");
    REQUIRE(r.subnets.size() == 2);
    CHECK(r.subnets[0].str() == "10.7.0.0/16");
    CHECK(r.subnets[1].str() == "10.8.1.0/24");
    CHECK(r.params.key_type == KeyType::aes256);
    CHECK(r.params.rekey_wait == 50);
    CHECK(r.params.array_size == 32);
    CHECK(r.params.data_array_time == 60);
    CHECK(r.params.control_array_time == 70);
    CHECK(r.params.heartbeat_time == 8);
    CHECK(r.params.heartbeat_fail == 80);
    CHECK(r.port == 5653);
    CHECK(cfg.warnings.empty());
}

TEST_CASE("legacy: every Appendix A keyword of a secondary, and the defaults") {
    auto cfg = legacy_ok(R"(localstart
ip 4
address 192.0.2.2
cluster_state 0
load_balance 0
localend
1/ip 4
1/address 192.0.2.1
1/subnet1 10.1.0.0
1/mask1 255.255.255.0
1/port 6001
)");
    CHECK(cfg.role == Role::secondary);
    CHECK(cfg.local.address.str() == "192.0.2.2");
    CHECK(cfg.local.port == 5653);
    CHECK(cfg.local.key_generation == KeyGeneration::software);
    const auto& p = cfg.local.defaults;
    CHECK(p.rekey_wait == 3600);
    CHECK(p.array_size == 256);
    CHECK(p.data_array_time == 86400);
    CHECK(p.control_array_time == 82800);
    CHECK(p.heartbeat_time == 15);
    CHECK(p.heartbeat_fail == 120);
    CHECK(p.key_type == KeyType::aes128);
    REQUIRE(cfg.remotes.size() == 1);
    CHECK(cfg.remotes[0].port == 6001);
    CHECK(cfg.remotes[0].params == p);
    CHECK(cfg.dataplane.lan.port_id == 0);
    CHECK(cfg.dataplane.wan.port_id == 1);
    CHECK(cfg.dataplane.wan.address.str() == "192.0.2.2/32");
    CHECK(cfg.dataplane.replay_window == 1024);
}

TEST_CASE("legacy: the line syntax (comments, blanks, '=', trailing comments, CRLF, scattered remotes)") {
    auto cfg = legacy_ok("  # indented comment\r\n\r\n"
                         "localstart\r\n"
                         "\taddress=192.0.2.1   # ours\r\n"
                         "rekey_wait = 1200\r\n"
                         "localend\r\n"
                         "2/address 192.0.2.3\r\n"
                         "1/address 192.0.2.2\r\n"
                         "2/subnet1 10.3.0.0\r\n"
                         "1/subnet1 10.2.0.0\r\n"
                         "2/mask1 16\r\n"          // a prefix length (extension, needed for IPv6)
                         "1/mask1 255.255.255.0\r\n");
    CHECK(cfg.local.address.str() == "192.0.2.1");
    CHECK(cfg.local.defaults.rekey_wait == 1200);
    REQUIRE(cfg.remotes.size() == 2);
    CHECK(cfg.remotes[0].id == 2);  // in order of first appearance
    CHECK(cfg.remotes[0].line == 7);
    CHECK(cfg.remotes[0].subnets.at(0).str() == "10.3.0.0/16");
    CHECK(cfg.remotes[1].id == 1);
    CHECK(cfg.remotes[1].subnets.at(0).str() == "10.2.0.0/24");
}

TEST_CASE("legacy: IPv6 remotes take a prefix length as mask") {
    auto cfg = legacy_ok("localstart\nip 6\naddress 2001:db8::1\nlocalend\n"
                         "1/ip 6\n1/address 2001:db8::2\n1/subnet1 fd00:2::\n1/mask1 48\n"
                         "1/subnet2 fd00:3::\n1/mask2 /64\n");
    CHECK(cfg.remotes.at(0).subnets.at(0).str() == "fd00:2::/48");
    CHECK(cfg.remotes.at(0).subnets.at(1).str() == "fd00:3::/64");
    auto e = legacy_err("localstart\nip 6\naddress 2001:db8::1\nlocalend\n"
                        "1/address 2001:db8::2\n1/subnet1 fd00:2::\n1/mask1 255.255.0.0\n");
    CHECK(e.reason == Reason::CFG_BAD_VALUE);
    CHECK(e.line == 7);
    CHECK(e.what.find("0..128") != std::string::npos);
}

TEST_CASE("legacy: the role is inferred from the keywords only one role uses") {
    struct Row {
        const char* name;
        const char* text;
        Role role;
    };
    const Row rows[] = {
        {"local port -> primary", "localstart\naddress 192.0.2.1\nport 5653\nlocalend\n1/address 192.0.2.2\n1/subnet1 10.2.0.0\n1/mask1 255.255.255.0\n", Role::primary},
        {"local timer -> primary", "localstart\naddress 192.0.2.1\nheartbeat_fail 100\nlocalend\n1/address 192.0.2.2\n1/subnet1 10.2.0.0\n1/mask1 255.255.255.0\n", Role::primary},
        {"remote key_type -> primary", "localstart\naddress 192.0.2.1\nlocalend\n1/address 192.0.2.2\n1/subnet1 10.2.0.0\n1/mask1 255.255.255.0\n1/key_type AES128\n", Role::primary},
        {"remote key_array -> primary", "localstart\naddress 192.0.2.1\nlocalend\n1/address 192.0.2.2\n1/subnet1 10.2.0.0\n1/mask1 255.255.255.0\n1/key_array 16\n", Role::primary},
        {"remote port -> secondary", "localstart\naddress 192.0.2.2\nlocalend\n1/address 192.0.2.1\n1/port 5653\n", Role::secondary},
        {"nothing decides, one remote -> secondary", "localstart\naddress 192.0.2.2\nlocalend\n1/address 192.0.2.1\n1/subnet1 10.1.0.0\n1/mask1 255.255.255.0\n", Role::secondary},
        {"nothing decides, two remotes -> primary", "localstart\naddress 192.0.2.1\nlocalend\n1/address 192.0.2.2\n1/subnet1 10.2.0.0\n1/mask1 255.255.255.0\n2/address 192.0.2.3\n2/subnet1 10.3.0.0\n2/mask1 255.255.255.0\n", Role::primary},
        {"nothing decides, no remote -> primary", "localstart\naddress 192.0.2.1\nlocalend\n", Role::primary},
        {"explicit role wins", "localstart\nrole primary\naddress 192.0.2.1\nlocalend\n1/address 192.0.2.2\n1/port 5653\n1/subnet1 10.2.0.0\n1/mask1 255.255.255.0\n", Role::primary},
        {"explicit secondary", "localstart\nrole secondary\naddress 192.0.2.2\nrekey_wait 10\nlocalend\n1/address 192.0.2.1\n", Role::secondary},
    };
    for (const auto& row : rows) {
        INFO(row.name);
        CHECK(legacy_ok(row.text).role == row.role);
    }
}

TEST_CASE("legacy: extension keywords (credentials, dataplane, later session parameters)") {
    TempDir dir;
    dir.write("psk", "a key of sixteen bytes or more", 0600);
    auto path = dir.write("ext.txt", R"(localstart
role secondary
ip 4
address 192.0.2.2
nat_port 4600
identity branch-7
ca /etc/p3/ca.pem
rekey_packets 1000000
key_type AES256
size_hiding 1
lanes 2
lan_port net_tap0
lan_address 10.2.0.1/24
lan_gateway 10.2.0.254
lan_gateway_mac 02:00:00:00:01:fe
lan_mtu 9000
wan_port 3
wan_address 192.0.2.2/24
wan_gateway 192.0.2.254
wan_gateway_mac 02:00:00:00:00:fe
wan_mtu 1400
replay_window 2048
idle_backoff_us 20
idle_polls 64
mbufs 1023
rx_queues 2
burst 16
localend
1/address 192.0.2.1
1/identity hq
1/psk_file psk
1/rekey_packets 5000
1/size_hiding 0
1/lanes 1
)");
    auto cfg = must_load(load_file(path));
    // 1/lanes is read and applied: nothing to warn about.
    CHECK(cfg.warnings.empty());
    CHECK(cfg.remotes.at(0).params.lanes == 1);
    CHECK(cfg.role == Role::secondary);
    CHECK(cfg.local.nat_port == 4600);
    CHECK(cfg.local.identity == "branch-7");
    CHECK(cfg.remotes.at(0).psk_file == dir.path + "/psk");
    CHECK(cfg.local.ca == "/etc/p3/ca.pem");
    CHECK(cfg.local.defaults.rekey_packets == 1000000);
    CHECK(cfg.local.defaults.key_type == KeyType::aes256);
    CHECK(cfg.local.defaults.size_hiding);
    CHECK(cfg.local.defaults.lanes == 2);
    const auto& dp = cfg.dataplane;
    CHECK(dp.lan.port_name == "net_tap0");
    CHECK(dp.lan.address.str() == "10.2.0.1/24");
    CHECK(dp.lan.gateway->str() == "10.2.0.254");
    CHECK(dp.lan.gateway_mac->str() == "02:00:00:00:01:fe");
    CHECK(dp.lan.mtu == 9000);
    CHECK(dp.wan.port_id == 3);
    CHECK(dp.wan.address.str() == "192.0.2.2/24");
    CHECK(dp.wan.gateway->str() == "192.0.2.254");
    CHECK(dp.wan.gateway_mac->str() == "02:00:00:00:00:fe");
    CHECK(dp.wan.mtu == 1400);
    CHECK(dp.replay_window == 2048);
    CHECK(dp.idle_backoff_us == 20);
    CHECK(dp.idle_polls == 64);
    CHECK(dp.mbufs == 1023);
    CHECK(dp.rx_queues == 2);
    CHECK(dp.burst == 16);
    const auto& r = cfg.remotes.at(0);
    CHECK(r.identity == "hq");
    CHECK(r.params.rekey_packets == 5000);
    CHECK_FALSE(r.params.size_hiding);
    CHECK(r.params.lanes == 1);
    CHECK(r.params.key_type == KeyType::aes256);  // from the local default
}

TEST_CASE("legacy and libconfig files saying the same thing give the same model") {
    auto legacy = must_load(load_file(P3_SOURCE_ROOT "/config/legacy-primary.txt"));
    auto lc = lc_ok(R"(
role = "primary";
local = { ip = 4; address = "192.0.2.1"; port = 5653; key_generation = "software";
          rekey_wait = 600; array_size = 256; data_array_time = 86400; control_array_time = 82800;
          heartbeat_time = 15; heartbeat_fail = 120; cluster_state = 0; load_balance = 0; };
dataplane = { lan = { port = 0; address = "10.1.0.1/24"; };
              wan = { port = 1; address = "192.0.2.1/24"; gateway = "192.0.2.254"; }; };
remotes = (
  { id = 1; ip = 4; address = "192.0.2.2"; subnets = [ "10.2.0.0/24" ]; key_type = "AES128";
    psk_file = "/etc/p3/branch1.psk"; },
  { id = 2; ip = 4; address = "198.51.100.7"; subnets = [ "10.3.0.0/24", "10.3.8.0/22" ];
    key_type = "AES256"; rekey_wait = 300; array_size = 128; data_array_time = 43200;
    control_array_time = 41400; heartbeat_time = 10; heartbeat_fail = 60; psk_file = "/etc/p3/branch2.psk"; },
  { id = 3; ip = 4; address = "203.0.113.9"; subnets = [ "203.0.113.9/32" ]; psk_file = "/etc/p3/host3.psk"; }
);
)");
    CHECK(same_settings(legacy, lc));
    // and any difference shows
    auto changed = lc.clone();
    changed.remotes[1].params.array_size = 129;
    CHECK_FALSE(same_settings(legacy, changed));

    auto legacy2 = must_load(load_file(P3_SOURCE_ROOT "/config/legacy-secondary.txt"));
    auto lc2 = lc_ok(R"(
role = "secondary";
local = { ip = 4; address = "192.0.2.2"; cluster_state = 0; load_balance = 0; };
dataplane = { lan = { port = 0; address = "10.2.0.1/24"; };
              wan = { port = 1; address = "192.0.2.2/24"; gateway = "192.0.2.254"; }; };
remotes = ( { id = 1; ip = 4; address = "192.0.2.1"; port = 5653; subnets = [ "10.1.0.0/24" ];
              psk_file = "/etc/p3/branch1.psk"; } );
)");
    CHECK(same_settings(legacy2, lc2));
}

TEST_CASE("legacy: convert output is libconfig that loads to the same model") {
    for (const char* name : {"legacy-primary.txt", "legacy-secondary.txt"}) {
        INFO(name);
        auto legacy = must_load(load_file(std::string(P3_SOURCE_ROOT "/config/") + name));
        auto text = to_libconfig(legacy, true);
        CHECK(text.find("localstart") == std::string::npos);
        auto lc = lc_ok(text);
        CHECK(same_settings(legacy, lc));
    }
}
