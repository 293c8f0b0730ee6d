// The cluster block (docs/cluster.md §Configuration): read with local.cluster_state = 1,
// ignored (warned about) without it, every refusal with its code and line, the key file
// owner-only and of 32 bytes (config check), written back by to_libconfig, a restart setting.
#include <catch2/catch.hpp>

#include <string>

#include "common/config.hpp"
#include "config_test_util.hpp"

using namespace p3;
using namespace p3::config;
using namespace p3test;

namespace {

std::string conf(const std::string& local, const std::string& cluster, const std::string& remote = "") {
    return "role = \"primary\";\n"                                                          // 1
           "local = { address = \"192.0.2.1\"; " + local + " };\n"                         // 2
           "dataplane = { lan = { port = 0; address = \"10.1.0.1/24\"; };\n"               // 3
           "  wan = { port = 1; address = \"192.0.2.1/24\"; gateway = \"192.0.2.254\"; }; };\n"  // 4
           + cluster + "\n"                                                                 // 5
           "remotes = ( { id = 1; address = \"198.51.100.7\"; subnets = [ \"10.2.0.0/24\" ]; " + remote + " } );\n";  // 6
}

void require_error(const std::string& text, Reason reason, int line, const std::string& says) {
    const Error e = lc_err(text);
    INFO(e.str());
    CHECK(reason_code(e.reason) == reason_code(reason));
    CHECK(e.line == line);
    CHECK(e.what.find(says) != std::string::npos);
}

}  // namespace

TEST_CASE("cluster: the block is read with cluster_state = 1 and written back", "[config][cluster]") {
    TempDir d;
    const std::string key = d.write("cluster.key", std::string(64, 'a') + "\n");
    const Config c = lc_ok(conf("cluster_state = 1; load_balance = 1;",
                                "cluster = { member = 2; max_members = 4; director = \"lvs\"; group = \"east\"; key_file = \"" +
                                    key + "\"; role = \"primary\"; };"));
    CHECK(c.local.cluster_state == 1);
    CHECK(c.local.load_balance == 1);
    CHECK(c.cluster.member == 2);
    CHECK(c.cluster.max_members == 4);
    CHECK(c.cluster.director == ClusterDirector::lvs);
    CHECK(c.cluster.group == "east");
    CHECK(c.cluster.key_file == key);
    CHECK(c.cluster.role == ClusterRole::primary);
    CHECK(check_start(c).empty());
    const Config again = lc_ok(to_libconfig(c, true));
    CHECK(same_settings(c, again));
    // A change of the block needs a restart.
    Config other = c.clone();
    other.cluster.member = 3;
    const Diff df = diff(c, other);
    CHECK(std::find(df.restart_needed.begin(), df.restart_needed.end(), "cluster") != df.restart_needed.end());
    // The key: 32 raw bytes also; anything else is refused by the start checks.
    d.write("cluster.key", std::string(32, '\x07'));
    CHECK(check_start(c).empty());
    d.write("cluster.key", std::string(31, '\x07'));
    const auto errs = check_start(c);
    REQUIRE(errs.size() == 1);
    CHECK(reason_code(errs[0].reason) == reason_code(Reason::CLUSTER_KEY));
    CHECK(errs[0].line == 5);
    ::unlink(key.c_str());
    REQUIRE(check_start(c).size() == 1);
}

TEST_CASE("cluster: refusals with their codes and lines", "[config][cluster]") {
    TempDir d;
    const std::string key = d.write("k", std::string(64, 'b'));
    const std::string kf = "key_file = \"" + key + "\";";
    require_error(conf("cluster_state = 1;", ""), Reason::CLUSTER_MISSING, 2, "no cluster");
    require_error(conf("cluster_state = 1;", "cluster = { member = 1; };"), Reason::CLUSTER_MISSING, 5, "key_file");
    require_error(conf("cluster_state = 1;", "cluster = { member = 3; max_members = 2; " + kf + " };"),
                  Reason::CLUSTER_MEMBER, 5, "above cluster.max_members 2");
    require_error(conf("cluster_state = 1;", "cluster = { max_members = 17; " + kf + " };"), Reason::CFG_BAD_VALUE, 5,
                  "1..16");
    require_error(conf("cluster_state = 2;", ""), Reason::CFG_BAD_VALUE, 2, "0..1");
    require_error(conf("cluster_state = 1;", "cluster = { director = \"dr\"; " + kf + " };"), Reason::CFG_BAD_VALUE, 5,
                  "\"lvs\"");
    require_error(conf("cluster_state = 1;", "cluster = { role = \"master\"; " + kf + " };"), Reason::CFG_BAD_VALUE, 5,
                  "\"backup\"");
    require_error(conf("cluster_state = 1;", "cluster = { vip = 1; " + kf + " };"), Reason::CFG_UNKNOWN_KEY, 5, "vip");
    require_error(conf("cluster_state = 1;", "cluster = { max_members = 16; " + kf + " };", "lanes = 5;"),
                  Reason::CLUSTER_LANES, 6, "5 lanes per member x max_members 16");
    require_error(conf("cluster_state = 1;", "cluster = { max_members = 2; " + kf + " };", "wire = \"esp\";"),
                  Reason::CLUSTER_ESP, 6, "esp");
    require_error(conf("cluster_state = 1;\nload_balance = 1;", "cluster = { director = \"none\"; " + kf + " };"),
                  Reason::CLUSTER_LOAD_BALANCE, 3, "failover");
    require_error(conf("load_balance = 1;", ""), Reason::CLUSTER_LOAD_BALANCE, 2, "without local.cluster_state");
    // The key file is owner-only, like a pre-shared key's.
    const std::string open = d.write("open.key", std::string(64, 'c'), 0644);
    require_error(conf("cluster_state = 1;", "cluster = { key_file = \"" + open + "\"; };"), Reason::CFG_KEY_FILE_MODE, 5,
                  "owner only");
}

TEST_CASE("cluster: a block without cluster_state is ignored and warned about", "[config][cluster]") {
    const Config c = lc_ok(conf("", "cluster = { member = 2; max_members = 2; key_file = \"/nonexistent\"; };"));
    CHECK(c.local.cluster_state == 0);
    CHECK(c.cluster.member == 1);   // not applied
    REQUIRE(c.warnings.size() == 1);
    CHECK(reason_code(c.warnings[0].reason) == reason_code(Reason::CLUSTER_IGNORED));
    CHECK(c.warnings[0].line == 5);
    CHECK(to_libconfig(c).find("cluster = {") == std::string::npos);
}
