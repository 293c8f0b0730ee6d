// Every class of configuration error, in both formats: the reason code, the exact line, and
// the words the administrator reads (what is wrong, the allowed range). One table row each.
#include <catch2/catch.hpp>

#include "common/config.hpp"
#include "config_test_util.hpp"

using namespace p3;
using namespace p3::config;
using namespace p3test;

namespace {

struct Row {
    const char* name;
    const char* text;
    int line;
    Reason reason;
    const char* says;  // a substring of Error::what
};

void run(const Row* rows, std::size_t n, bool legacy) {
    for (std::size_t i = 0; i < n; ++i) {
        const Row& r = rows[i];
        INFO("row " << i << ": " << r.name);
        auto res = legacy ? load_legacy_text(r.text, "t.txt") : load_libconfig_text(r.text, "t.conf");
        REQUIRE(std::holds_alternative<Error>(res));
        const auto& e = std::get<Error>(res);
        INFO("got: " << e.str() << " [" << reason_code(e.reason) << "]");
        CHECK(reason_code(e.reason) == reason_code(r.reason));
        CHECK(e.line == r.line);
        CHECK(e.what.find(r.says) != std::string::npos);
        CHECK(e.file == (legacy ? "t.txt" : "t.conf"));
        CHECK(e.str().rfind(std::string(legacy ? "t.txt:" : "t.conf:") + std::to_string(r.line) + ": ", 0) == 0);
    }
}

#define L1 "role = \"primary\";\n"
#define LOCAL "local = { address = \"192.0.2.1\"; };\n"
#define R(body) "remotes = ( { id = 1; address = \"192.0.2.2\"; subnets = [ \"10.2.0.0/24\" ]; " body " } );\n"
#define SK_OK "tx_id = 1; tx_key = \"00112233445566778899aabbccddeeff\"; tx_salt = \"01020304\"; rx_id = 2; rx_key = \"ffeeddccbbaa99887766554433221100\"; "

const Row kLibconfig[] = {
    // syntax
    {"missing value", L1 "local = {\n  port = ;\n};\n", 3, Reason::CFG_SYNTAX, "syntax error"},
    {"unclosed group", L1 LOCAL "dataplane = {\n", 4, Reason::CFG_SYNTAX, "syntax error"},
    {"duplicate setting", L1 "role = \"secondary\";\n" LOCAL, 2, Reason::CFG_SYNTAX, "syntax error"},
    {"@include", L1 "  @include \"/etc/passwd\"\n" LOCAL, 2, Reason::CFG_SYNTAX, "@include is not supported"},
    // unknown keywords, at every level
    {"top level", L1 LOCAL "colour = 1;\n", 3, Reason::CFG_UNKNOWN_KEY, "unknown keyword 'colour' in the file"},
    {"local", L1 "local = {\n address = \"192.0.2.1\";\n speed = 1; };\n", 4, Reason::CFG_UNKNOWN_KEY,
     "unknown keyword 'speed' in local (allowed: ip, address"},
    {"dataplane", L1 LOCAL "dataplane = {\n  dmz = 1; };\n", 4, Reason::CFG_UNKNOWN_KEY, "'dmz' in dataplane"},
    {"dataplane.wan", L1 LOCAL "dataplane = { wan = {\n port = 1;\n vlan = 3; }; };\n", 5, Reason::CFG_UNKNOWN_KEY,
     "'vlan' in dataplane.wan (allowed: port, address, gateway, gateway_mac, mtu)"},
    {"group", L1 LOCAL "groups = ( { name = \"g\";\n colour = \"red\"; } );\n", 4, Reason::CFG_UNKNOWN_KEY,
     "'colour' in groups[0]"},
    {"remote", L1 LOCAL "remotes = ( { id = 1; address = \"192.0.2.2\";\n subnet = \"10.0.0.0/8\"; } );\n", 4,
     Reason::CFG_UNKNOWN_KEY, "'subnet' in remotes[0]"},
    {"static_keys", L1 LOCAL R("static_keys = { " SK_OK "rx_salt = \"01020304\";\n tx_iv = 1; };"), 4,
     Reason::CFG_UNKNOWN_KEY, "'tx_iv' in remotes[0].static_keys"},
    // bad values, with the allowed range
    {"rekey_wait 0", L1 "local = { address = \"192.0.2.1\";\n rekey_wait = 0; };\n", 3, Reason::CFG_BAD_VALUE,
     "local.rekey_wait 0 out of range 1..31536000"},
    {"rekey_wait 1 year + 1", L1 "local = { address = \"192.0.2.1\";\n rekey_wait = 31536001; };\n", 3,
     Reason::CFG_BAD_VALUE, "out of range 1..31536000"},
    {"heartbeat_time", L1 "local = { address = \"192.0.2.1\";\n heartbeat_time = 3601; };\n", 3,
     Reason::CFG_BAD_VALUE, "local.heartbeat_time 3601 out of range 1..3600"},
    {"array_size", L1 "local = { address = \"192.0.2.1\";\n array_size = 65537; };\n", 3, Reason::CFG_BAD_VALUE,
     "array_size 65537 out of range 1..65536"},
    {"negative", L1 "local = { address = \"192.0.2.1\";\n data_array_time = -5; };\n", 3, Reason::CFG_BAD_VALUE,
     "data_array_time -5 out of range 1..31536000"},
    {"string for a number", L1 "local = { address = \"192.0.2.1\";\n control_array_time = \"10\"; };\n", 3,
     Reason::CFG_BAD_VALUE, "control_array_time must be an integer in 1..31536000"},
    {"float for a number", L1 "local = { address = \"192.0.2.1\";\n heartbeat_fail = 1.5; };\n", 3,
     Reason::CFG_BAD_VALUE, "heartbeat_fail must be an integer in 2..86400"},
    {"port 0", L1 "local = { address = \"192.0.2.1\";\n port = 0; };\n", 3, Reason::CFG_BAD_VALUE,
     "local.port 0 out of range 1..65535"},
    {"nat_port 65536", L1 "local = { address = \"192.0.2.1\";\n nat_port = 65536; };\n", 3, Reason::CFG_BAD_VALUE,
     "local.nat_port 65536 out of range 1..65535"},
    {"ip 5", L1 "local = { address = \"192.0.2.1\";\n ip = 5; };\n", 3, Reason::CFG_BAD_VALUE, "must be 4 or 6"},
    {"ip 7", L1 "local = { address = \"192.0.2.1\";\n ip = 7; };\n", 3, Reason::CFG_BAD_VALUE, "out of range 4..6"},
    {"ip vs address", L1 "local = {\n ip = 6;\n address = \"192.0.2.1\"; };\n", 3, Reason::CFG_BAD_VALUE,
     "ip 6 does not match address 192.0.2.1"},
    {"address", L1 "local = {\n address = \"192.0.2.300\"; };\n", 3, Reason::CFG_BAD_VALUE,
     "'192.0.2.300' is not an IPv4 or IPv6 address"},
    {"key_type", L1 "local = { address = \"192.0.2.1\";\n key_type = \"DES\"; };\n", 3, Reason::CFG_BAD_VALUE,
     "must be \"AES128\" or \"AES256\""},
    {"key_generation", L1 "local = { address = \"192.0.2.1\";\n key_generation = \"quantum\"; };\n", 3,
     Reason::CFG_BAD_VALUE, "must be \"software\" or \"hardware\""},
    {"key_generation 3", L1 "local = { address = \"192.0.2.1\";\n key_generation = 3; };\n", 3,
     Reason::CFG_BAD_VALUE, "out of range 1..2"},
    {"cluster_state", L1 "local = { address = \"192.0.2.1\";\n cluster_state = 2; };\n", 3, Reason::CFG_BAD_VALUE,
     "local.cluster_state 2 out of range 0..1"},
    {"cluster_state without cluster", L1 "local = { address = \"192.0.2.1\";\n cluster_state = 1; };\n", 3,
     Reason::CLUSTER_MISSING, "no cluster = { ... } block"},
    {"load_balance", L1 "local = { address = \"192.0.2.1\";\n load_balance = 2; };\n", 3, Reason::CFG_BAD_VALUE,
     "local.load_balance 2 out of range 0..1"},
    {"size_hiding type", L1 "local = { address = \"192.0.2.1\";\n size_hiding = 1; };\n", 3, Reason::CFG_BAD_VALUE,
     "size_hiding must be true or false"},
    {"lanes", L1 "local = { address = \"192.0.2.1\";\n lanes = 129; };\n", 3, Reason::CFG_BAD_VALUE,
     "lanes 129 out of range 0..128"},
    {"role", "role = \"tertiary\";\n" LOCAL, 1, Reason::CFG_BAD_VALUE, "must be \"primary\" or \"secondary\""},
    {"local not a group", L1 "local = 5;\n", 2, Reason::CFG_BAD_VALUE, "local must be a group"},
    {"identity empty", L1 "local = { address = \"192.0.2.1\";\n identity = \"\"; };\n", 3, Reason::CFG_BAD_VALUE,
     "local.identity must not be empty"},
    {"heartbeat_fail <= heartbeat_time", L1 "local = { address = \"192.0.2.1\"; heartbeat_time = 30; heartbeat_fail = 30; };\n",
     2, Reason::CFG_BAD_VALUE, "heartbeat_fail 30 must be greater than heartbeat_time 30"},
    {"replay_window range", L1 LOCAL "dataplane = {\n replay_window = 16384; };\n", 4, Reason::CFG_BAD_VALUE,
     "dataplane.replay_window 16384 out of range 64..8192"},
    {"replay_window multiple", L1 LOCAL "dataplane = {\n replay_window = 100; };\n", 4, Reason::CFG_BAD_VALUE,
     "must be a multiple of 64 in 64..8192"},
    {"idle_backoff_us", L1 LOCAL "dataplane = {\n idle_backoff_us = 100001; };\n", 4, Reason::CFG_BAD_VALUE,
     "out of range 0..100000"},
    {"idle_polls", L1 LOCAL "dataplane = {\n idle_polls = 0; };\n", 4, Reason::CFG_BAD_VALUE, "out of range 1..1000000"},
    {"mbufs", L1 LOCAL "dataplane = {\n mbufs = 100; };\n", 4, Reason::CFG_BAD_VALUE, "dataplane.mbufs 100 out of range 511..1048575"},
    {"rx_queues", L1 LOCAL "dataplane = {\n rx_queues = 65; };\n", 4, Reason::CFG_BAD_VALUE, "out of range 0..64"},
    {"burst", L1 LOCAL "dataplane = {\n burst = 0; };\n", 4, Reason::CFG_BAD_VALUE, "dataplane.burst 0 out of range 1..64"},
    {"mtu", L1 LOCAL "dataplane = { wan = {\n mtu = 100; }; };\n", 4, Reason::CFG_BAD_VALUE,
     "dataplane.wan.mtu 100 out of range 576..9600"},
    {"mtu IPv6", L1 LOCAL "dataplane = { lan = { address = \"fd00::1/64\";\n mtu = 1000; }; };\n", 4,
     Reason::CFG_BAD_VALUE, "dataplane.lan.mtu 1000 out of range 1280..9600 for IPv6"},
    {"port id", L1 LOCAL "dataplane = { lan = {\n port = 65535; }; };\n", 4, Reason::CFG_BAD_VALUE,
     "dataplane.lan.port 65535 out of range 0..65534"},
    {"port type", L1 LOCAL "dataplane = { lan = {\n port = 1.0; }; };\n", 4, Reason::CFG_BAD_VALUE,
     "must be a DPDK port id in 0..65534 or a device name"},
    {"same port", L1 LOCAL "dataplane = { lan = { port = 2; };\n wan = { port = 2; }; };\n", 4, Reason::CFG_BAD_VALUE,
     "name the same port (2)"},
    {"same port name", L1 LOCAL "dataplane = { lan = { port = \"net_ring0\"; };\n wan = { port = \"net_ring0\"; }; };\n", 4,
     Reason::CFG_BAD_VALUE, "name the same port (net_ring0)"},
    {"interface address", L1 LOCAL "dataplane = { wan = {\n address = \"192.0.2.1/33\"; }; };\n", 4,
     Reason::CFG_BAD_VALUE, "is not an address with prefix length"},
    {"gateway off link", L1 LOCAL "dataplane = { wan = { address = \"192.0.2.1/24\";\n gateway = \"198.51.100.1\"; }; };\n",
     4, Reason::CFG_BAD_VALUE, "gateway 198.51.100.1 is not on the link 192.0.2.1/24"},
    {"gateway family", L1 LOCAL "dataplane = { wan = { address = \"192.0.2.1/24\";\n gateway = \"2001:db8::1\"; }; };\n",
     4, Reason::CFG_BAD_VALUE, "is not of the address family"},
    {"gateway_mac", L1 LOCAL "dataplane = { wan = { address = \"192.0.2.1/24\"; gateway = \"192.0.2.254\";\n gateway_mac = \"02:00:00:00:00\"; }; };\n",
     4, Reason::CFG_BAD_VALUE, "is not a MAC address"},
    {"subnet host bits", L1 LOCAL "remotes = ( { id = 1; address = \"192.0.2.2\";\n subnets = [ \"10.2.0.1/24\" ]; } );\n",
     4, Reason::CFG_BAD_VALUE, "'10.2.0.1/24' is not a subnet"},
    {"subnets not an array", L1 LOCAL "remotes = ( { id = 1; address = \"192.0.2.2\";\n subnets = \"10.2.0.0/24\"; } );\n",
     4, Reason::CFG_BAD_VALUE, "subnets must be an array"},
    {"remote id 0", L1 LOCAL "remotes = ( {\n id = 0; address = \"192.0.2.2\"; } );\n", 4, Reason::CFG_BAD_VALUE,
     "remotes[0].id 0 out of range 1..4294967295"},
    {"remote ip vs address", L1 LOCAL "remotes = ( { id = 3; address = \"192.0.2.2\"; subnets = [ \"10.2.0.0/24\" ];\n ip = 6; } );\n",
     4, Reason::CFG_BAD_VALUE, "remote 3: ip 6 does not match address 192.0.2.2"},
    {"remote family vs WAN", L1 LOCAL "remotes = ( { id = 3; subnets = [ \"10.2.0.0/24\" ];\n address = \"2001:db8::2\"; } );\n",
     4, Reason::CFG_BAD_VALUE, "remote 3: address 2001:db8::2 is IPv6 but the WAN side is IPv4"},
    {"remote unknown group", L1 LOCAL "groups = ( { name = \"a\"; } );\nremotes = ( { id = 1; address = \"192.0.2.2\"; subnets = [ \"10.2.0.0/24\" ];\n groups = [ \"b\" ]; } );\n",
     5, Reason::CFG_BAD_VALUE, "remote 1: group 'b' is not defined (defined: a)"},
    {"remote heartbeat after resolution", L1 LOCAL "groups = ( { name = \"a\"; heartbeat_fail = 10; } );\nremotes = ( { id = 1; address = \"192.0.2.2\"; subnets = [ \"10.2.0.0/24\" ]; groups = [ \"a\" ]; } );\n",
     4, Reason::CFG_BAD_VALUE, "remote 1: heartbeat_fail 10 must be greater than heartbeat_time 15"},
    {"remote port", L1 LOCAL R("\n port = 0;"), 4, Reason::CFG_BAD_VALUE, "remotes[0].port 0 out of range 1..65535"},
    {"static key not hex", L1 LOCAL R("static_keys = {\n tx_key = \"00zz\"; };"), 4, Reason::CFG_BAD_VALUE,
     "remotes[0].static_keys.tx_key is not hex"},
    {"static key length", L1 LOCAL R("static_keys = {\n tx_key = \"0011223344556677\"; };"), 4, Reason::CFG_BAD_VALUE,
     "tx_key is 8 bytes; allowed: 16 or 32"},
    {"static salt length", L1 LOCAL R("static_keys = {\n rx_salt = \"0102030405\"; };"), 4, Reason::CFG_BAD_VALUE,
     "rx_salt is 5 bytes; allowed: 4"},
    {"static id 0", L1 LOCAL R("static_keys = {\n rx_id = 0; };"), 4, Reason::CFG_BAD_VALUE,
     "static_keys.rx_id 0 out of range 1..4294967295"},
    {"static lanes 0", L1 LOCAL R("static_keys = {\n lanes = 0; };"), 4, Reason::CFG_BAD_VALUE,
     "static_keys.lanes 0 out of range 1..128"},
    {"static ids run past 2^32", L1 LOCAL R("static_keys = {\n " SK_OK "rx_salt = \"01020304\"; lanes = 2; tx_id = 0xffffffff; };"),
     4, Reason::CFG_SYNTAX, "syntax error"},  // tx_id given twice: libconfig's duplicate-setting error
    {"static ids past 2^32", L1 LOCAL R("static_keys = {\n tx_id = 0xffffffff; tx_key = \"00112233445566778899aabbccddeeff\"; tx_salt = \"01020304\"; rx_id = 2; rx_key = \"00112233445566778899aabbccddeeff\"; rx_salt = \"01020304\"; lanes = 2; };"),
     3, Reason::CFG_BAD_VALUE, "id + lanes - 1 must stay within 1..4294967295"},
    // duplicates
    {"remote id", L1 LOCAL "remotes = ( { id = 7; address = \"192.0.2.2\"; subnets = [ \"10.2.0.0/24\" ]; },\n { id = 7; address = \"192.0.2.3\"; subnets = [ \"10.3.0.0/24\" ]; } );\n",
     4, Reason::CFG_DUPLICATE, "remote id 7 defined twice (first at line 3)"},
    {"group name", L1 LOCAL "groups = ( { name = \"a\"; },\n\n { name = \"a\"; } );\n", 5, Reason::CFG_DUPLICATE,
     "group 'a' defined twice (first at line 3)"},
    {"static rx ids", L1 LOCAL "remotes = ( { id = 1; address = \"192.0.2.2\"; subnets = [ \"10.2.0.0/24\" ]; static_keys = { " SK_OK "rx_salt = \"01020304\"; lanes = 4; }; },\n"
     " { id = 2; address = \"192.0.2.3\"; subnets = [ \"10.3.0.0/24\" ];\n static_keys = { tx_id = 1; tx_key = \"0f1e2d3c4b5a69788796a5b4c3d2e1f0\"; tx_salt = \"01020304\"; rx_id = 5; rx_key = \"f0e1d2c3b4a5968778695a4b3c2d1e0f\"; rx_salt = \"01020304\"; }; } );\n",
     5, Reason::CFG_DUPLICATE, "remote 2: static_keys.rx_id 5 (lanes 1) overlaps the rx ids of remote 1 (line 3)"},
    {"static key both ways", L1 LOCAL R("static_keys = {\n tx_id = 1; tx_key = \"00112233445566778899aabbccddeeff\"; tx_salt = \"01020304\"; rx_id = 2; rx_key = \"00112233445566778899aabbccddeeff\"; rx_salt = \"05060708\"; };"),
     3, Reason::CFG_STATIC_SAME_KEY, "remote 1: static_keys.tx_key equals rx_key"},
    {"static key of another remote", L1 LOCAL "remotes = ( { id = 1; address = \"192.0.2.2\"; subnets = [ \"10.2.0.0/24\" ]; static_keys = { " SK_OK "rx_salt = \"01020304\"; }; },\n"
     " { id = 2; address = \"192.0.2.3\"; subnets = [ \"10.3.0.0/24\" ];\n static_keys = { tx_id = 7; tx_key = \"0f1e2d3c4b5a69788796a5b4c3d2e1f0\"; tx_salt = \"01020304\"; rx_id = 9; rx_key = \"00112233445566778899aabbccddeeff\"; rx_salt = \"0a0b0c0d\"; }; } );\n",
     5, Reason::CFG_STATIC_KEY_REUSED, "remote 2: a static key of it is also a static key of remote 1 (line 3)"},
    // overlapping subnets across remotes
    {"overlap", L1 LOCAL "remotes = ( { id = 1; address = \"192.0.2.2\"; subnets = [ \"10.0.0.0/8\" ]; },\n"
     " { id = 2; address = \"192.0.2.3\"; subnets = [ \"192.168.0.0/16\",\n \"10.9.0.0/16\" ]; } );\n",
     5, Reason::CFG_OVERLAP, "subnet 10.9.0.0/16 of remote 2 overlaps 10.0.0.0/8 of remote 1 (line 3)"},
    {"overlap: equal", L1 LOCAL "remotes = ( { id = 1; address = \"192.0.2.2\"; subnets = [ \"10.1.0.0/16\" ]; },\n"
     " { id = 2; address = \"192.0.2.3\";\n subnets = [ \"10.1.0.0/16\" ]; } );\n",
     5, Reason::CFG_OVERLAP, "10.1.0.0/16 of remote 2 overlaps 10.1.0.0/16 of remote 1"},
    {"overlap: later wider", L1 LOCAL "remotes = ( { id = 1; address = \"192.0.2.2\"; subnets = [ \"10.1.2.0/24\" ]; },\n"
     " { id = 2; address = \"192.0.2.3\";\n subnets = [ \"0.0.0.0/0\" ]; } );\n",
     5, Reason::CFG_OVERLAP, "0.0.0.0/0 of remote 2 overlaps 10.1.2.0/24 of remote 1"},
    {"overlap: IPv6", L1 LOCAL "remotes = ( { id = 1; address = \"192.0.2.2\"; subnets = [ \"fd00::/16\" ]; },\n"
     " { id = 2; address = \"192.0.2.3\";\n subnets = [ \"10.0.0.0/8\", \"fd00:1::/32\" ]; } );\n",
     5, Reason::CFG_OVERLAP, "fd00:1::/32 of remote 2 overlaps fd00::/16 of remote 1"},
    {"overlap: nested inside own", L1 LOCAL "remotes = ( { id = 1; address = \"192.0.2.2\"; subnets = [ \"10.0.0.0/8\", \"10.1.0.0/16\" ]; },\n"
     " { id = 2; address = \"192.0.2.3\";\n subnets = [ \"10.1.1.0/24\" ]; } );\n",
     5, Reason::CFG_OVERLAP, "10.1.1.0/24 of remote 2 overlaps 10.1.0.0/16 of remote 1"},
    // missing required settings
    {"role", "\nlocal = { address = \"192.0.2.1\"; };\n", 1, Reason::CFG_MISSING, "role missing"},
    {"local", L1, 1, Reason::CFG_MISSING, "local section missing"},
    {"local address", L1 "\nlocal = {\n port = 1; };\n", 3, Reason::CFG_MISSING, "local address missing"},
    {"remote id", L1 LOCAL "remotes = (\n { address = \"192.0.2.2\"; } );\n", 4, Reason::CFG_MISSING, "remotes[0].id missing"},
    {"remote address", L1 LOCAL "remotes = (\n { id = 4; subnets = [ \"10.2.0.0/24\" ]; } );\n", 4, Reason::CFG_MISSING,
     "remote 4: address missing"},
    {"primary remote subnets", L1 LOCAL "remotes = (\n { id = 4; address = \"192.0.2.2\"; } );\n", 4, Reason::CFG_MISSING,
     "remote 4: subnets missing"},
    {"group name", L1 LOCAL "groups = (\n { rekey_wait = 5; } );\n", 4, Reason::CFG_MISSING, "groups[0].name missing"},
    {"static_keys field", L1 LOCAL R("\n static_keys = { " SK_OK "};"), 4, Reason::CFG_MISSING,
     "remotes[0].static_keys.rx_salt missing"},
    {"secondary without its primary", "role = \"secondary\";\n" LOCAL "\n", 3, Reason::CFG_MISSING,
     "a secondary needs its primary as a remote"},
    {"certificate without private_key", L1 "local = { address = \"192.0.2.1\";\n certificate = \"/x.pem\"; };\n", 3,
     Reason::CFG_MISSING, "certificate needs private_key"},
    {"gateway_mac without gateway", L1 LOCAL "dataplane = { wan = { address = \"192.0.2.1/24\";\n gateway_mac = \"02:00:00:00:00:01\"; }; };\n",
     4, Reason::CFG_MISSING, "gateway_mac needs dataplane.wan.gateway"},
};

}  // namespace

TEST_CASE("libconfig errors: reason, line, message") { run(kLibconfig, std::size(kLibconfig), false); }

namespace {

#define LS "localstart\naddress 192.0.2.1\nlocalend\n"

const Row kLegacy[] = {
    // syntax / structure
    {"no localstart", "# only a comment\n\n", 1, Reason::CFG_MISSING, "localstart missing"},
    {"keyword before localstart", "# c\naddress 192.0.2.1\n", 2, Reason::CFG_SYNTAX, "must begin with localstart"},
    {"no localend", "localstart\naddress 192.0.2.1\nport 5653\n", 3, Reason::CFG_SYNTAX,
     "localend missing (local section opened at line 1)"},
    {"localend twice", LS "localend\n", 4, Reason::CFG_SYNTAX, "localend without localstart"},
    {"second local section", LS "\nlocalstart\n", 5, Reason::CFG_SYNTAX, "a second local section"},
    {"nested localstart", "localstart\nlocalstart\n", 2, Reason::CFG_SYNTAX, "localstart inside the local section"},
    {"remote inside local", "localstart\naddress 192.0.2.1\n1/address 192.0.2.2\nlocalend\n", 3, Reason::CFG_SYNTAX,
     "inside the local section"},
    {"local keyword after localend", LS "port 5653\n", 4, Reason::CFG_SYNTAX, "'port' after localend"},
    {"two values", "localstart\naddress 192.0.2.1 192.0.2.9\nlocalend\n", 2, Reason::CFG_SYNTAX, "takes one value"},
    {"no value", "localstart\naddress\nlocalend\n", 2, Reason::CFG_SYNTAX, "'address' has no value"},
    {"keyword twice", "localstart\naddress 192.0.2.1\n\nrekey_wait 10\nrekey_wait 20\nlocalend\n", 5, Reason::CFG_SYNTAX,
     "keyword 'rekey_wait' given twice (first at line 4)"},
    {"remote keyword twice", LS "1/address 192.0.2.2\n1/subnet1 10.2.0.0\n1/mask1 255.255.255.0\n1/address 192.0.2.3\n", 7,
     Reason::CFG_SYNTAX, "keyword '1/address' given twice (first at line 4)"},
    // unknown keywords
    {"local", "localstart\naddress 192.0.2.1\nspeed 10\nlocalend\n", 3, Reason::CFG_UNKNOWN_KEY,
     "unknown keyword 'speed' in the local section"},
    {"remote", LS "2/address 192.0.2.2\n2/colour red\n", 5, Reason::CFG_UNKNOWN_KEY, "unknown keyword 'colour' in '2/colour'"},
    {"subnet without number", LS "2/address 192.0.2.2\n2/subnet 10.0.0.0\n", 5, Reason::CFG_UNKNOWN_KEY, "'subnet'"},
    // bad values
    {"rekey_wait 0", "localstart\naddress 192.0.2.1\nrekey_wait 0\nlocalend\n", 3, Reason::CFG_BAD_VALUE,
     "rekey_wait 0 out of range 1..31536000"},
    {"rekey_wait text", "localstart\naddress 192.0.2.1\nrekey_wait soon\nlocalend\n", 3, Reason::CFG_BAD_VALUE,
     "rekey_wait 'soon' must be a number in 1..31536000"},
    {"huge number", "localstart\naddress 192.0.2.1\nheartbeat_fail 99999999999999999999\nlocalend\n", 3,
     Reason::CFG_BAD_VALUE, "out of range 2..86400"},
    {"key_generation 3", "localstart\naddress 192.0.2.1\nkey_generation 3\nlocalend\n", 3, Reason::CFG_BAD_VALUE,
     "key_generation '3' must be 1 (software) or 2 (hardware)"},
    {"cluster_state", "localstart\naddress 192.0.2.1\ncluster_state 2\nlocalend\n", 3, Reason::CFG_BAD_VALUE,
     "cluster_state 2 out of range 0..1"},
    {"cluster_state 1: no cluster block in this format", "localstart\naddress 192.0.2.1\ncluster_state 1\nlocalend\n", 3,
     Reason::CLUSTER_MISSING, "no cluster"},
    {"ip", "localstart\nip 5\naddress 192.0.2.1\nlocalend\n", 2, Reason::CFG_BAD_VALUE, "must be 4 or 6"},
    {"ip vs address", "localstart\nip 6\naddress 192.0.2.1\nlocalend\n", 2, Reason::CFG_BAD_VALUE,
     "ip 6 does not match address 192.0.2.1"},
    {"address", "localstart\naddress 192.0.2\nlocalend\n", 2, Reason::CFG_BAD_VALUE, "is not an IPv4 or IPv6 address"},
    {"port", "localstart\naddress 192.0.2.1\nport 70000\nlocalend\n", 3, Reason::CFG_BAD_VALUE,
     "port 70000 out of range 1..65535"},
    {"remote number 0", LS "0/address 192.0.2.2\n", 4, Reason::CFG_BAD_VALUE, "remote number in '0/address'"},
    {"remote number text", LS "a/address 192.0.2.2\n", 4, Reason::CFG_BAD_VALUE, "must be a number in 1..4294967295"},
    {"key_type", LS "1/address 192.0.2.2\n1/subnet1 10.2.0.0\n1/mask1 255.255.255.0\n1/key_type AES192\n", 7,
     Reason::CFG_BAD_VALUE, "1/key_type 'AES192' must be AES128 or AES256"},
    {"key_array", LS "1/address 192.0.2.2\n1/key_array 0\n", 5, Reason::CFG_BAD_VALUE,
     "1/key_array 0 out of range 1..65536"},
    {"mask not contiguous", LS "1/address 192.0.2.2\n1/subnet1 10.2.0.0\n1/mask1 255.0.255.0\n", 6, Reason::CFG_BAD_VALUE,
     "1/mask1 '255.0.255.0' is not a contiguous netmask"},
    {"subnet host bits", LS "1/address 192.0.2.2\n1/subnet1 10.2.0.1\n1/mask1 255.255.255.0\n", 5, Reason::CFG_BAD_VALUE,
     "1/subnet1 10.2.0.1 has host bits set under 1/mask1 255.255.255.0"},
    {"subnet not an address", LS "1/address 192.0.2.2\n1/subnet1 10.2.0\n1/mask1 255.255.255.0\n", 5, Reason::CFG_BAD_VALUE,
     "1/subnet1 '10.2.0' is not an IPv4 or IPv6 address"},
    {"wan mtu", "localstart\naddress 192.0.2.1\nwan_mtu 50\nlocalend\n", 3, Reason::CFG_BAD_VALUE,
     "wan_mtu 50 out of range 576..9600"},
    {"replay_window", "localstart\naddress 192.0.2.1\nreplay_window 65\nlocalend\n", 3, Reason::CFG_BAD_VALUE,
     "replay_window 65 must be a multiple of 64"},
    {"role", "localstart\nrole tertiary\naddress 192.0.2.1\nlocalend\n", 2, Reason::CFG_BAD_VALUE,
     "role 'tertiary' must be primary or secondary"},
    {"heartbeat order", LS "1/address 192.0.2.2\n1/subnet1 10.2.0.0\n1/mask1 255.255.255.0\n1/heartbeat_fail 10\n", 4,
     Reason::CFG_BAD_VALUE, "remote 1: heartbeat_fail 10 must be greater than heartbeat_time 15"},
    // duplicates and overlaps (remote numbers are merged, so a duplicate id cannot occur)
    {"overlap", LS "1/address 192.0.2.2\n1/subnet1 10.0.0.0\n1/mask1 255.0.0.0\n2/address 192.0.2.3\n2/subnet1 10.5.0.0\n2/mask1 255.255.0.0\n", 8,
     Reason::CFG_OVERLAP, "subnet 10.5.0.0/16 of remote 2 overlaps 10.0.0.0/8 of remote 1 (line 5)"},
    // missing
    {"local address", "localstart\nip 4\nlocalend\n", 1, Reason::CFG_MISSING, "local address missing"},
    {"subnet without mask", LS "1/address 192.0.2.2\n1/subnet2 10.2.0.0\n", 5, Reason::CFG_MISSING,
     "1/subnet2 has no 1/mask2"},
    {"mask without subnet", LS "1/address 192.0.2.2\n1/mask3 255.255.255.0\n", 5, Reason::CFG_MISSING,
     "1/mask3 has no 1/subnet3"},
    {"remote address", LS "\n5/subnet1 10.2.0.0\n5/mask1 255.255.255.0\n", 5, Reason::CFG_MISSING,
     "remote 5: address missing"},
    {"primary remote without subnets", "localstart\naddress 192.0.2.1\nrekey_wait 100\nlocalend\n1/address 192.0.2.2\n", 5,
     Reason::CFG_MISSING, "remote 1: subnets missing"},
    {"role undecidable", "localstart\naddress 192.0.2.1\nheartbeat_time 10\nlocalend\n1/address 192.0.2.2\n1/port 5653\n", 6,
     Reason::CFG_MISSING, "cannot tell the role: 'heartbeat_time' (line 3) is a primary's keyword, '1/port' (line 6) a secondary's"},
    {"secondary without remotes", "localstart\nrole secondary\naddress 192.0.2.1\nlocalend\n", 4, Reason::CFG_MISSING,
     "a secondary needs its primary"},
};

}  // namespace

TEST_CASE("legacy errors: reason, line, message") { run(kLegacy, std::size(kLegacy), true); }

TEST_CASE("a refused file is refused as a whole: nothing of it is returned") {
    // One bad value at the end spoils a file that is otherwise complete.
    std::string text = std::string(L1 LOCAL R("")) + "dataplane = { burst = 1000; };\n";
    auto r = load_libconfig_text(text, "t.conf");
    REQUIRE(std::holds_alternative<Error>(r));
    CHECK(std::get<Error>(r).line == 4);
}
