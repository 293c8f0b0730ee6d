// What p3ctl config check finds beyond loading: the start checks p3d shares
// (config::check_start: LAN address, gateways, the WAN address, our own LAN, dataplane sizes),
// the dataplane's burst limit, the line format's guessed role, and p3d's own credential
// loading (certificates, one pre-shared key for two remotes, a remote without a credential).
// One file that fails each, with its code and line.
#include <catch2/catch.hpp>

#include <algorithm>
#include <string>
#include <vector>

#include "common/config.hpp"
#include "config_test_util.hpp"
#include "control/p3ctl/config_check.hpp"

using namespace p3;
using namespace p3::config;
using namespace p3test;

namespace {

// A primary that can forward: LAN address, WAN on a /24 with its gateway, one remote off-link.
std::string good(const std::string& local_extra = "", const std::string& dp_extra = "",
                 const std::string& remote_extra = "", const std::string& wan = "address = \"192.0.2.1/24\"; gateway = \"192.0.2.254\";",
                 const std::string& lan = "address = \"10.1.0.1/24\";") {
    return "role = \"primary\";\n"                                                  // 1
           "local = { address = \"192.0.2.1\"; " + local_extra + " };\n"           // 2
           "dataplane = {\n"                                                        // 3
           "  lan = { port = 0; " + lan + " };\n"                                   // 4
           "  wan = { port = 1; " + wan + " };\n"                                   // 5
           "  " + dp_extra + "\n"                                                   // 6
           "};\n"                                                                   // 7
           "remotes = (\n"                                                          // 8
           "  { id = 1; address = \"198.51.100.7\"; subnets = [ \"10.2.0.0/24\" ]; " + remote_extra + " }\n"  // 9
           ");\n";
}

std::vector<Error> start(const std::string& text) { return check_start(lc_ok(text)); }

void require_one(const std::vector<Error>& errs, Reason reason, int line, const std::string& says) {
    REQUIRE(errs.size() == 1);
    INFO(errs[0].str());
    CHECK(reason_code(errs[0].reason) == reason_code(reason));
    CHECK(errs[0].line == line);
    CHECK(errs[0].file == "t.conf");
    CHECK(errs[0].what.find(says) != std::string::npos);
}

}  // namespace

TEST_CASE("check_start: a configuration that can forward has no finding", "[config][check]") {
    CHECK(start(good()).empty());
    // A remote on the WAN link needs no gateway.
    auto cfg = lc_ok(good("", "", "", "address = \"192.0.2.1/16\";"));
    cfg.remotes[0].address = *IpAddr::parse("192.0.9.9");
    CHECK(check_start(cfg).empty());
}

TEST_CASE("check_start: no LAN address (P3-E0137)", "[config][check]") {
    require_one(start(good("", "", "", "address = \"192.0.2.1/24\"; gateway = \"192.0.2.254\";", "")),
                Reason::CFG_NO_LAN_ADDRESS, 4, "dataplane.lan.address missing");
    // The line format's defaults: no dataplane at all.
    auto cfg = legacy_ok("localstart\naddress 192.0.2.1\nwan_gateway 192.0.2.254\nwan_address 192.0.2.1/24\nlocalend\n"
                         "1/address 192.0.2.2\n1/subnet1 10.2.0.0\n1/mask1 255.255.255.0\n");
    auto errs = check_start(cfg);
    REQUIRE(errs.size() == 1);
    CHECK(reason_code(errs[0].reason) == "P3-E0137");
    CHECK(errs[0].file == "t.txt");
}

TEST_CASE("check_start: a remote or local subnet off its link without a gateway (P3-E0138)", "[config][check]") {
    require_one(start(good("", "", "", "address = \"192.0.2.1/24\";")), Reason::CFG_NO_GATEWAY, 9,
                "remote 1: address 198.51.100.7 is not on the WAN link 192.0.2.1/24 and dataplane.wan.gateway is not set");
    require_one(start(good("subnets = [ \"10.9.0.0/16\" ];")), Reason::CFG_NO_GATEWAY, 2,
                "local.subnets 10.9.0.0/16 is not on the LAN link 10.1.0.1/24 and dataplane.lan.gateway is not set");
    CHECK(start(good("subnets = [ \"10.9.0.0/16\" ];", "", "", "address = \"192.0.2.1/24\"; gateway = \"192.0.2.254\";",
                     "address = \"10.1.0.1/24\"; gateway = \"10.1.0.254\";"))
              .empty());
}

TEST_CASE("check_start: local.address not the WAN port's (P3-E0139)", "[config][check]") {
    require_one(start(good("", "", "", "address = \"192.0.2.5/24\"; gateway = \"192.0.2.254\";")),
                Reason::CFG_WAN_ADDRESS_MISMATCH, 2, "local.address 192.0.2.1 is not the WAN port's address 192.0.2.5/24");
}

TEST_CASE("check_start: a remote subnet overlapping our own LAN (P3-E0140)", "[config][check]") {
    auto text = good();
    text.replace(text.find("10.2.0.0/24"), 11, "10.0.0.0/8");
    require_one(start(text), Reason::CFG_SUBNET_COVERS_LAN, 9,
                "remote 1: subnet 10.0.0.0/8 overlaps our own LAN 10.1.0.1/24");
    text = good("subnets = [ \"10.2.0.0/16\" ];", "", "", "address = \"192.0.2.1/24\"; gateway = \"192.0.2.254\";",
                "address = \"10.1.0.1/24\"; gateway = \"10.1.0.254\";");
    require_one(start(text), Reason::CFG_SUBNET_COVERS_LAN, 9, "overlaps our own network 10.2.0.0/16 (local.subnets)");
}

TEST_CASE("check_start: more than the dataplane holds (P3-E0142)", "[config][check]") {
    require_one(start(good("", "mbufs = 4095;\n  rx_queues = 64;")), Reason::CFG_DP_LIMIT, 7,
                "dataplane.rx_queues 64 on both ports need at least 8192 packet buffers");
    CHECK(start(good("", "mbufs = 8191;\n  rx_queues = 16;")).empty());
    // Sessions and routes: built in memory (a file that size takes long to parse).
    auto cfg = lc_ok(good());
    const Remote r0 = cfg.remotes[0].clone();
    for (std::uint32_t id = 2; id <= 32768; ++id) {
        cfg.remotes.push_back(r0.clone());
        cfg.remotes.back().id = id;
        cfg.remotes.back().subnets.clear();
    }
    auto errs = check_start(cfg);
    REQUIRE(errs.size() == 1);
    CHECK(reason_code(errs[0].reason) == "P3-E0142");
    CHECK(errs[0].what == "32768 remotes: the dataplane holds at most 32767 sessions");
    cfg.remotes.erase(cfg.remotes.begin() + 1, cfg.remotes.end());
    for (std::uint32_t i = 0; i < (1u << 18); ++i) {
        IpAddr a = *IpAddr::parse("20.0.0.0");
        a.bytes[1] = std::uint8_t(i >> 16), a.bytes[2] = std::uint8_t(i >> 8), a.bytes[3] = std::uint8_t(i);
        cfg.remotes[0].subnets.push_back(Prefix{a, 32});
    }
    CHECK(check_start(cfg).size() == 1);   // 2^18 + 1 IPv4 routes
    cfg.remotes[0].subnets.pop_back();
    CHECK(check_start(cfg).empty());
}

TEST_CASE("dataplane.burst above what the dataplane takes is refused at its line", "[config][check]") {
    auto e = lc_err(good("", "burst = 65;"));
    CHECK(reason_code(e.reason) == "P3-E0104");
    CHECK(e.line == 6);
    CHECK(e.what.find("out of range 1..64") != std::string::npos);
    CHECK(lc_ok(good("", "burst = 64;")).dataplane.burst == 64);
}

TEST_CASE("the line format's guessed role is stated (P3-I0141)", "[config][check]") {
    auto cfg = legacy_ok("localstart\naddress 192.0.2.1\nrekey_wait 600\nlocalend\n1/address 192.0.2.2\n"
                         "1/subnet1 10.2.0.0\n1/mask1 255.255.255.0\n");
    REQUIRE(cfg.notes.size() == 1);
    CHECK(reason_code(cfg.notes[0].reason) == "P3-I0141");
    CHECK(cfg.notes[0].line == 3);
    CHECK(cfg.notes[0].what == "read as a primary ('rekey_wait' is a primary's keyword); add 'role primary' to the local section to say so");
    cfg = legacy_ok("localstart\naddress 192.0.2.2\nlocalend\n1/address 192.0.2.1\n1/subnet1 10.1.0.0\n1/mask1 255.255.255.0\n");
    REQUIRE(cfg.notes.size() == 1);
    CHECK(cfg.notes[0].what.find("read as a secondary (no role keyword, one remote)") == 0);
    // Stated in the file: nothing to say.
    CHECK(legacy_ok("localstart\nrole secondary\naddress 192.0.2.2\nlocalend\n1/address 192.0.2.1\n").notes.empty());
    CHECK(lc_ok(good()).notes.empty());
}

TEST_CASE("config check loads the credentials as p3d does", "[config][check]") {
    TempDir dir;
    dir.write("a.psk", "0123456789abcdef-a\n");
    dir.write("b.psk", "0123456789abcdef-a\n");
    dir.write("c.psk", "0123456789abcdef-c\n");
    dir.write("cert.pem", "not a certificate\n", 0644);
    dir.write("key.pem", "not a key\n");
    dir.write("ca.pem", "not a certificate\n", 0644);
    const std::string remotes =
        "remotes = (\n"                                                                               // 8
        "  { id = 1; address = \"192.0.2.2\"; subnets = [ \"10.2.0.0/24\" ]; psk_file = \"a.psk\"; },\n"  // 9
        "  { id = 2; address = \"192.0.2.3\"; subnets = [ \"10.3.0.0/24\" ]; psk_file = \"%s\"; },\n"     // 10
        "  { id = 3; address = \"192.0.2.4\"; subnets = [ \"10.4.0.0/24\" ]; }\n"                       // 11
        ");\n";
    auto file = [&](const std::string& local, const std::string& psk2) {
        std::string r = remotes;
        r.replace(r.find("%s"), 2, psk2);
        return dir.write("t.conf", "role = \"primary\";\nlocal = { address = \"192.0.2.1\";\n" + local +
                                       " };\ndataplane = {\n  lan = { port = 0; address = \"10.1.0.1/24\"; };\n"
                                       "  wan = { port = 1; address = \"192.0.2.1/24\"; };\n};\n" + r);
    };
    auto codes = [](const p3::ctl::CheckResult& r) {
        std::string s;
        for (const auto& f : r.findings)
            s += std::string(reason_code(f.what.reason)) + "@" + std::to_string(f.what.line) + " ";
        return s;
    };
    // One key for two remotes: p3d's P3-E0412 at the later remote; a remote with no credential: P3-W0418.
    auto r = p3::ctl::check_config_file(file("", "b.psk"));
    INFO(p3::ctl::render_findings(r.findings));
    CHECK(!r.ok());
    CHECK(codes(r) == "P3-E0412@10 ");
    r = p3::ctl::check_config_file(file("", "c.psk"));
    CHECK(r.ok());
    CHECK(codes(r) == "P3-W0418@11 ");
    // A certificate that is not one: at its line.
    r = p3::ctl::check_config_file(file("certificate = \"cert.pem\";\nprivate_key = \"key.pem\";\nca = \"ca.pem\";", "c.psk"));
    CHECK(!r.ok());
    CHECK(codes(r) == "P3-E0412@3 ");
    CHECK(r.findings[0].what.what.find("cert.pem: no PEM certificate") != std::string::npos);
    // JSON: ok false and the finding with its code, severity, file and line.
    const std::string j = p3::ctl::render_findings_json("t.conf", r);
    CHECK(j.rfind("{\"ok\":false,\"file\":\"t.conf\",\"role\":\"primary\",\"findings\":[{\"code\":\"P3-E0412\","
                  "\"severity\":\"error\",\"file\":\"" + dir.path + "/t.conf\",\"line\":3,",
                  0) == 0);
}

TEST_CASE("config check: a hardware key generator the CPU does not have (P3-E0801)", "[config][check]") {
    auto cfg = lc_ok(good("key_generation = \"hardware\";"));
    std::vector<p3::ctl::Finding> out;
    p3::ctl::check_key_generator(cfg, keys::CpuRng{}, out);
    REQUIRE(out.size() == 1);
    CHECK(reason_code(out[0].what.reason) == "P3-E0801");
    CHECK(out[0].what.line == 2);
    out.clear();
    p3::ctl::check_key_generator(lc_ok(good()), keys::CpuRng{}, out);   // software: no CPU needed
    CHECK(out.empty());
}

TEST_CASE("config check: a state_dir the static keys could not use (P3-E0810)", "[config][check]") {
    TempDir dir;
    ::mkdir((dir.path + "/state").c_str(), 0700);
    ::chmod((dir.path + "/state").c_str(), 0777);
    const std::string sk =
        "static_keys = { tx_id = 1; tx_key = \"00112233445566778899aabbccddeeff\"; tx_salt = \"01020304\"; "
        "rx_id = 2; rx_key = \"ffeeddccbbaa99887766554433221100\"; rx_salt = \"0a0b0c0d\"; };";
    auto text = good("state_dir = \"" + dir.path + "/state\";", "", sk);
    auto r = p3::ctl::check_config_file(dir.write("t.conf", text));
    std::string codes;
    for (const auto& f : r.findings)
        if (f.severity == p3::ctl::Severity::error) codes += std::string(reason_code(f.what.reason)) + "@" + std::to_string(f.what.line);
    CHECK(codes == "P3-E0810@2");
    CHECK(!r.ok());
    ::chmod((dir.path + "/state").c_str(), 0700);
    CHECK(p3::ctl::check_config_file(dir.write("t.conf", text)).ok());
    // Not there yet: p3d makes it.
    text = good("state_dir = \"" + dir.path + "/new\";", "", sk);
    CHECK(p3::ctl::check_config_file(dir.write("t.conf", text)).ok());
    text = good("state_dir = \"" + dir.path + "/none/new\";", "", sk);
    CHECK(!p3::ctl::check_config_file(dir.write("t.conf", text)).ok());
}
