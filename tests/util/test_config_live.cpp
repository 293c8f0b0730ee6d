// Run-time changes of the configuration: diff classes (in place, re-established, restart
// needed), remote add/set/remove accepted or refused as a file would be, KEY= giving an
// inherited value back, `config save` round-tripping with its structure (groups stay groups,
// overrides stay overrides), save_file's atomicity, and the minimal secondary.
#include <catch2/catch.hpp>

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>

#include "common/config.hpp"
#include "config_test_util.hpp"

using namespace p3;
using namespace p3::config;
using namespace p3test;

namespace {

const char* kRunning = R"(role = "primary";
local = { address = "192.0.2.1"; heartbeat_time = 15; heartbeat_fail = 120; };
dataplane = { lan = { port = 0; address = "10.1.0.1/24"; };
              wan = { port = 1; address = "192.0.2.1/24"; gateway = "192.0.2.254"; }; };
groups = ( { name = "east"; heartbeat_time = 10; heartbeat_fail = 60; },
           { name = "fast"; heartbeat_time = 10; heartbeat_fail = 60; },
           { name = "strong"; key_type = "AES256"; } );
remotes = (
  { id = 1; address = "192.0.2.2"; subnets = [ "10.2.0.0/24" ]; identity = "one.example";
    groups = [ "east" ]; },
  { id = 2; address = "192.0.2.3"; subnets = [ "10.3.0.0/24" ]; identity = "two.example";
    groups = [ "east", "strong" ]; rekey_wait = 450; },
  { id = 3; address = "192.0.2.4"; subnets = [ "10.4.0.0/24" ]; identity = "three.example"; }
);
)";

Config running() { return lc_ok(kRunning); }

Config edited(const std::string& from, const std::string& to) {
    std::string t = kRunning;
    const auto at = t.find(from);
    REQUIRE(at != std::string::npos);
    t.replace(at, from.size(), to);
    return lc_ok(t);
}

using Fields = std::vector<std::string>;

Config ok(const Result<Config>& r) { return must_load(r); }
Error refused(const Result<Config>& r) { return must_fail(r); }

const Remote& remote(const Config& c, std::uint32_t id) {
    for (const auto& r : c.remotes)
        if (r.id == id) return r;
    FAIL("no remote " << id);
    throw std::logic_error("unreachable");
}

}  // namespace

TEST_CASE("diff: the same configuration is no change") {
    CHECK(diff(running(), running()).empty());
}

TEST_CASE("diff: remotes added and removed, ids ascending") {
    auto next = edited(R"(  { id = 3; address = "192.0.2.4"; subnets = [ "10.4.0.0/24" ]; identity = "three.example"; })",
                       R"(  { id = 9; address = "192.0.2.9"; subnets = [ "10.9.0.0/24" ]; },
  { id = 7; address = "192.0.2.7"; subnets = [ "10.7.0.0/24" ]; })");
    auto d = diff(running(), next);
    CHECK(d.added == std::vector<std::uint32_t>{7, 9});
    CHECK(d.removed == std::vector<std::uint32_t>{3});
    CHECK(d.changed.empty());
    CHECK(d.restart_needed.empty());
}

TEST_CASE("diff: subnets, groups with equal params and psk_file apply in place") {
    SECTION("subnets") {
        auto d = diff(running(), edited("\"10.2.0.0/24\"", "\"10.2.0.0/24\", \"10.20.0.0/16\""));
        REQUIRE(d.changed.size() == 1);
        CHECK(d.changed[0].id == 1);
        CHECK(d.changed[0].fields == Fields{"subnets"});
        CHECK_FALSE(d.changed[0].reestablish);
    }
    SECTION("groups, the resolved params the same") {
        auto d = diff(running(), edited("groups = [ \"east\" ]; }", "groups = [ \"fast\" ]; }"));
        REQUIRE(d.changed.size() == 1);
        CHECK(d.changed[0].fields == Fields{"groups"});
        CHECK_FALSE(d.changed[0].reestablish);
    }
    SECTION("psk_file") {
        auto d = diff(running(), edited("identity = \"three.example\";", "identity = \"three.example\"; psk_file = \"/etc/p3/3.psk\";"));
        REQUIRE(d.changed.size() == 1);
        CHECK(d.changed[0].id == 3);
        CHECK(d.changed[0].fields == Fields{"psk_file"});
        CHECK_FALSE(d.changed[0].reestablish);
    }
}

TEST_CASE("diff: anything else re-establishes that one session") {
    SECTION("groups that change the params") {
        auto d = diff(running(), edited("groups = [ \"east\" ]; }", "groups = [ \"strong\" ]; }"));
        REQUIRE(d.changed.size() == 1);
        CHECK(d.changed[0].fields == Fields{"groups", "heartbeat_time", "heartbeat_fail", "key_type"});
        CHECK(d.changed[0].reestablish);
    }
    SECTION("address") {
        auto d = diff(running(), edited("\"192.0.2.4\"", "\"192.0.2.44\""));
        REQUIRE(d.changed.size() == 1);
        CHECK(d.changed[0].fields == Fields{"address"});
        CHECK(d.changed[0].reestablish);
    }
    SECTION("an override") {
        auto d = diff(running(), edited("rekey_wait = 450;", "rekey_wait = 500;"));
        REQUIRE(d.changed.size() == 1);
        CHECK(d.changed[0].id == 2);
        CHECK(d.changed[0].fields == Fields{"rekey_wait"});
        CHECK(d.changed[0].reestablish);
    }
    SECTION("a group's definition: each of its remotes") {
        auto d = diff(running(), edited("{ name = \"strong\"; key_type = \"AES256\"; }",
                                        "{ name = \"strong\"; key_type = \"AES256\"; array_size = 64; }"));
        REQUIRE(d.changed.size() == 1);
        CHECK(d.changed[0].id == 2);
        CHECK(d.changed[0].fields == Fields{"array_size"});
        CHECK(d.changed[0].reestablish);
        CHECK(d.restart_needed.empty());
    }
    SECTION("a local default: every remote that inherits it, no restart") {
        auto d = diff(running(), edited("heartbeat_time = 15; heartbeat_fail = 120;", "heartbeat_time = 20; heartbeat_fail = 120;"));
        REQUIRE(d.changed.size() == 1);   // 1 and 2 take it from "east"
        CHECK(d.changed[0].id == 3);
        CHECK(d.changed[0].fields == Fields{"heartbeat_time"});
        CHECK(d.restart_needed.empty());
    }
    SECTION("an override equal to what was inherited is named, nothing to re-establish") {
        auto d = diff(running(), edited("identity = \"three.example\";", "identity = \"three.example\"; rekey_wait = 3600;"));
        REQUIRE(d.changed.size() == 1);
        CHECK(d.changed[0].fields == Fields{"rekey_wait"});
        CHECK_FALSE(d.changed[0].reestablish);
    }
}

TEST_CASE("diff: settings outside remotes and groups need a restart") {
    auto d = diff(running(), edited(R"(role = "primary";
local = { address = "192.0.2.1";)",
                                    R"(role = "primary";
local = { address = "192.0.2.1"; port = 6000; admin = { group = "wheel"; };)"));
    CHECK(d.restart_needed == Fields{"local.port", "local.admin"});
    CHECK(d.changed.empty());
    auto w = diff(running(), edited("gateway = \"192.0.2.254\"", "gateway = \"192.0.2.253\""));
    CHECK(w.restart_needed == Fields{"dataplane.wan"});
    CHECK_FALSE(w.empty());
    auto a = running();
    auto b = a.clone();
    b.role = Role::secondary;
    b.local.address = *IpAddr::parse("192.0.2.9");
    b.dataplane.replay_window = 2048;
    CHECK(diff(a, b).restart_needed == Fields{"role", "local.address", "dataplane.replay_window"});
}

TEST_CASE("remote add: the new remotes join, validated with the running configuration") {
    auto run = running();
    auto next = ok(with_added_remotes(run, R"(# two branches
remotes = (
  { id = 5; address = "192.0.2.5"; subnets = [ "10.5.0.0/24" ]; groups = [ "strong" ]; heartbeat_time = 5; },
  { id = 4; address = "192.0.2.6"; subnets = [ "10.6.0.0/24" ]; }
);
)", "add.conf"));
    CHECK(next.remotes.size() == 5);
    const auto& r5 = remote(next, 5);
    CHECK(r5.params.key_type == KeyType::aes256);   // from the group
    CHECK(r5.params.heartbeat_time == 5);            // its own
    CHECK(r5.params.heartbeat_fail == 120);          // local
    CHECK(r5.overrides.heartbeat_time == 5u);
    CHECK_FALSE(r5.overrides.key_type.has_value());
    CHECK(r5.line == 3);
    auto d = diff(run, next);
    CHECK(d.added == std::vector<std::uint32_t>{4, 5});
    CHECK(d.changed.empty());
    CHECK(d.removed.empty());
    CHECK(same_settings(remote(next, 2), remote(run, 2)));
    CHECK(next.source == run.source);
}

TEST_CASE("remote add: refusals name the added text and its line") {
    auto run = running();
    struct Case {
        const char* name;
        const char* text;
        int line;
        Reason reason;
        const char* words;
    } cases[] = {
        {"bad value", "remotes = (\n { id = 5; address = \"192.0.2.5\"; subnets = [ \"10.5.0.0/24\" ];\n   rekey_wait = 0; } );\n",
         3, Reason::CFG_BAD_VALUE, "remotes[0].rekey_wait 0 out of range"},
        {"unknown key", "remotes = (\n { id = 5; address = \"192.0.2.5\"; subnets = [ \"10.5.0.0/24\" ]; colour = 1; } );\n",
         2, Reason::CFG_UNKNOWN_KEY, "unknown keyword 'colour'"},
        {"unknown group", "remotes = (\n { id = 5; address = \"192.0.2.5\"; subnets = [ \"10.5.0.0/24\" ];\n   groups = [ \"west\" ]; } );\n",
         3, Reason::CFG_BAD_VALUE, "group 'west' is not defined"},
        {"duplicate id", "remotes = (\n { id = 2; address = \"192.0.2.5\"; subnets = [ \"10.5.0.0/24\" ]; } );\n",
         2, Reason::CFG_DUPLICATE, "remote id 2 defined twice"},
        {"duplicate identity", "remotes = (\n { id = 5; address = \"192.0.2.5\"; subnets = [ \"10.5.0.0/24\" ];\n identity = \"ONE.example\"; } );\n",
         2, Reason::CFG_DUPLICATE_IDENTITY, "is also remote 1's"},
        {"overlap", "remotes = (\n { id = 5; address = \"192.0.2.5\";\n subnets = [ \"10.2.0.0/16\" ]; } );\n",
         3, Reason::CFG_OVERLAP, "overlaps 10.2.0.0/24 of remote 1"},
        {"no id on a primary", "remotes = (\n { address = \"192.0.2.5\"; subnets = [ \"10.5.0.0/24\" ]; } );\n",
         2, Reason::CFG_MISSING, "remotes[0].id missing"},
        {"not only remotes", "remotes = ();\nrole = \"secondary\";\n", 2, Reason::CFG_UNKNOWN_KEY, "unknown keyword 'role'"},
        {"nothing", "# empty\n", 0, Reason::CFG_MISSING, "no remote to add"},
        {"syntax", "remotes = (\n { id = 5; address = ; } );\n", 2, Reason::CFG_SYNTAX, "syntax error"},
    };
    for (const auto& c : cases) {
        INFO(c.name);
        auto e = refused(with_added_remotes(run, c.text, "add.conf"));
        CHECK(e.file == "add.conf");
        CHECK(e.line == c.line);
        CHECK(e.reason == c.reason);
        CHECK_THAT(e.what, Catch::Contains(c.words));
    }
    CHECK(same_settings(run, running()));   // the running one is never touched
}

TEST_CASE("remote set: a remote's own keys, bare words, KEY= gives the inherited value back") {
    auto run = running();
    auto next = ok(with_remote_settings(run, 2, {{"subnets", "10.3.0.0/24, 10.30.0.0/16"},
                                                 {"key_type", "aes128"},
                                                 {"heartbeat_time", "12"},
                                                 {"identity", "deux.example"}}));
    const auto& r = remote(next, 2);
    CHECK(r.subnets.size() == 2);
    CHECK(r.subnets[1].str() == "10.30.0.0/16");
    CHECK(r.params.key_type == KeyType::aes128);
    CHECK(r.params.heartbeat_time == 12);
    CHECK(r.identity == "deux.example");
    CHECK(r.params.rekey_wait == 450);   // untouched
    auto d = diff(run, next);
    REQUIRE(d.changed.size() == 1);
    CHECK(d.changed[0].fields == Fields{"identity", "subnets", "heartbeat_time", "key_type"});
    CHECK(d.changed[0].reestablish);

    // rekey_wait= : the remote's own 450 goes, local's 3600 applies again.
    auto back = ok(with_remote_settings(run, 2, {{"rekey_wait", ""}}));
    CHECK(remote(back, 2).params.rekey_wait == 3600);
    CHECK_FALSE(remote(back, 2).overrides.rekey_wait.has_value());
    CHECK(to_libconfig(back).find("rekey_wait = 450") == std::string::npos);
    // groups= : the group's heartbeat goes too.
    auto nogroups = ok(with_remote_settings(run, 1, {{"groups", ""}}));
    CHECK(remote(nogroups, 1).params.heartbeat_time == 15);
    // libconfig syntax is taken as it is.
    auto lists = ok(with_remote_settings(run, 1, {{"groups", "[ \"fast\", \"strong\" ]"}, {"size_hiding", "true"}}));
    CHECK(remote(lists, 1).groups == Fields{"fast", "strong"});
    CHECK(remote(lists, 1).params.size_hiding);
    // subnets only: in place.
    auto moved = ok(with_remote_settings(run, 3, {{"subnets", "10.44.0.0/24"}}));
    auto dm = diff(run, moved);
    REQUIRE(dm.changed.size() == 1);
    CHECK_FALSE(dm.changed[0].reestablish);
}

TEST_CASE("remote set: refusals name the key; nothing is half applied") {
    auto run = running();
    struct Case {
        const char* name;
        std::vector<std::pair<std::string, std::string>> kv;
        Reason reason;
        const char* what;
    } cases[] = {
        {"bad value", {{"subnets", "10.9.0.0/24"}, {"rekey_wait", "0"}}, Reason::CFG_BAD_VALUE, "rekey_wait 0 out of range 1..31536000"},
        {"wrong type", {{"size_hiding", "maybe"}}, Reason::CFG_BAD_VALUE, "size_hiding must be true or false"},
        {"unknown key", {{"colour", "blue"}}, Reason::CFG_UNKNOWN_KEY, "unknown keyword 'colour' for a remote"},
        {"id", {{"id", "9"}}, Reason::CFG_UNKNOWN_KEY, "'id' cannot be set"},
        {"static_keys", {{"static_keys", "{}"}}, Reason::CFG_UNKNOWN_KEY, "'static_keys' cannot be set"},
        {"unknown group", {{"groups", "west"}}, Reason::CFG_BAD_VALUE, "group 'west' is not defined"},
        {"duplicate identity", {{"identity", "two.example"}}, Reason::CFG_DUPLICATE_IDENTITY, "identity 'two.example' is also remote 2's"},
        {"heartbeat", {{"heartbeat_fail", "5"}}, Reason::CFG_BAD_VALUE, "heartbeat_fail 5 must be greater than heartbeat_time 10"},
        {"address removed", {{"address", ""}}, Reason::CFG_MISSING, "address missing"},
        {"overlap", {{"subnets", "10.3.0.0/16"}}, Reason::CFG_OVERLAP, "subnet 10.3.0.0/16 of remote 1 overlaps"},
    };
    for (const auto& c : cases) {
        INFO(c.name);
        auto e = refused(with_remote_settings(run, 1, c.kv));
        CHECK(e.file == "remote 1");
        CHECK(e.line == 0);
        CHECK(e.reason == c.reason);
        CHECK_THAT(e.what, Catch::StartsWith(c.what) || Catch::Contains(c.what));
        CHECK(e.str().rfind("remote 1: ", 0) == 0);
    }
    auto e = refused(with_remote_settings(run, 42, {{"rekey_wait", "300"}}));
    CHECK(e.reason == Reason::CFG_UNKNOWN_REMOTE);
    CHECK(std::string(reason_code(e.reason)) == "P3-E0126");
    CHECK_THAT(e.what, Catch::Contains("remote 42 is not configured (configured: 1, 2, 3)"));
    CHECK(same_settings(run, running()));
}

TEST_CASE("remote remove: exactly that remote; an unknown id refused") {
    auto run = running();
    auto next = ok(without_remote(run, 2));
    CHECK(next.remotes.size() == 2);
    auto d = diff(run, next);
    CHECK(d.removed == std::vector<std::uint32_t>{2});
    CHECK(d.added.empty());
    CHECK(d.changed.empty());
    CHECK(refused(without_remote(run, 4)).reason == Reason::CFG_UNKNOWN_REMOTE);
    // A secondary keeps its primary.
    auto sec = lc_ok("role = \"secondary\";\ndataplane = { wan = { port = 1; address = \"192.0.2.2/24\"; }; };\n"
                     "local = { };\nremotes = ( { address = \"192.0.2.1\"; } );\n");
    CHECK(refused(without_remote(sec, 1)).reason == Reason::CFG_MISSING);
}

TEST_CASE("config save: every example round-trips through a saved file") {
    TempDir dir;
    for (const char* name : {"primary.conf", "secondary.conf", "static-a.conf", "static-b.conf",
                             "legacy-primary.txt", "legacy-secondary.txt"}) {
        INFO(name);
        auto cfg = must_load(load_file(dir.write(name, slurp(std::string(P3_SOURCE_ROOT "/config/") + name))));
        const std::string saved = dir.path + "/saved-" + name + ".conf";
        std::string why;
        REQUIRE(save_file(saved, to_libconfig(cfg, true), why));
        CHECK(why.empty());
        auto again = must_load(load_file(saved));
        CHECK(same_settings(cfg, again));
        REQUIRE(again.groups.size() == cfg.groups.size());
        for (std::size_t i = 0; i < cfg.groups.size(); ++i) {
            auto a = again.groups[i], b = cfg.groups[i];
            a.line = b.line = 0;
            CHECK(a == b);
        }
        for (std::size_t i = 0; i < cfg.remotes.size(); ++i) {
            CHECK(again.remotes[i].groups == cfg.remotes[i].groups);
            CHECK(again.remotes[i].overrides == cfg.remotes[i].overrides);
        }
    }
}

TEST_CASE("config save keeps groups and overrides: a group edited in the saved file applies to its remotes") {
    TempDir dir;
    auto run = running();
    const std::string text = to_libconfig(run, true);
    // Remote 1 inherits its heartbeat from "east": not written into the remote.
    const auto r1 = text.find("id = 1;");
    const auto r2 = text.find("id = 2;");
    REQUIRE(r1 != std::string::npos);
    REQUIRE(r2 != std::string::npos);
    CHECK(text.substr(r1, r2 - r1).find("heartbeat_time") == std::string::npos);
    CHECK(text.substr(r2).find("rekey_wait = 450;") != std::string::npos);   // an override stays one
    const std::string path = dir.path + "/p3.conf";
    std::string why;
    REQUIRE(save_file(path, text, why));
    auto again = must_load(load_file(path));
    CHECK(same_settings(run, again));

    std::string edited_text = slurp(path);
    const auto at = edited_text.find("heartbeat_time = 10;");
    REQUIRE(at != std::string::npos);   // the first group, "east"
    edited_text.replace(at, 20, "heartbeat_time = 11;");
    auto after = lc_ok(edited_text);
    CHECK(remote(after, 1).params.heartbeat_time == 11);
    CHECK(remote(after, 2).params.heartbeat_time == 11);
    CHECK(remote(after, 3).params.heartbeat_time == 15);
    auto d = diff(again, after);
    REQUIRE(d.changed.size() == 2);
    CHECK(d.changed[0].fields == Fields{"heartbeat_time"});

    // An explicit override equal to the inherited value stays explicit.
    auto pinned = ok(with_remote_settings(run, 1, {{"heartbeat_time", "10"}}));
    CHECK(remote(pinned, 1).overrides.heartbeat_time == 10u);
    auto reloaded = lc_ok(to_libconfig(pinned, true));
    CHECK(remote(reloaded, 1).overrides.heartbeat_time == 10u);
    CHECK_FALSE(same_settings(run, pinned));
}

TEST_CASE("save_file: atomic, the previous file kept, the mode kept") {
    TempDir dir;
    const std::string path = dir.path + "/p3.conf";
    std::string why;
    REQUIRE(save_file(path, "first\n", why));
    struct stat st{};
    REQUIRE(::stat(path.c_str(), &st) == 0);
    CHECK((st.st_mode & 07777) == 0600);   // a new file: owner only
    CHECK(::access((path + ".prev").c_str(), F_OK) != 0);

    REQUIRE(::chmod(path.c_str(), 0640) == 0);
    REQUIRE(save_file(path, "second\n", why));
    CHECK(slurp(path) == "second\n");
    CHECK(slurp(path + ".prev") == "first\n");
    REQUIRE(::stat(path.c_str(), &st) == 0);
    CHECK((st.st_mode & 07777) == 0640);
    CHECK(::access((path + ".tmp").c_str(), F_OK) != 0);

    REQUIRE(save_file(path, "third\n", why));
    CHECK(slurp(path + ".prev") == "second\n");
    REQUIRE(::stat(path.c_str(), &st) == 0);
    CHECK((st.st_mode & 07777) == 0640);

    // A text with secrets (static keys) is for the owner only, whatever the old file's mode.
    SECTION("owner_only") {
        REQUIRE(save_file(path, "static\n", why, true));
        REQUIRE(::stat(path.c_str(), &st) == 0);
        CHECK((st.st_mode & 07777) == 0600);
        CHECK(slurp(path) == "static\n");
    }

    SECTION("a write that cannot happen leaves PATH as it was") {
        REQUIRE(::mkdir((path + ".tmp").c_str(), 0700) == 0);   // PATH.tmp cannot be created
        CHECK_FALSE(save_file(path, "fourth\n", why));
        CHECK_THAT(why, Catch::Contains(path + ".tmp"));
        CHECK(slurp(path) == "third\n");
        CHECK(slurp(path + ".prev") == "second\n");
    }
    SECTION("a directory without write permission") {
        if (::geteuid() == 0) return;   // root writes anyway; the case above covers it
        REQUIRE(::chmod(dir.path.c_str(), 0500) == 0);
        CHECK_FALSE(save_file(path, "fourth\n", why));
        ::chmod(dir.path.c_str(), 0700);
        CHECK_FALSE(why.empty());
        CHECK(slurp(path) == "third\n");
    }
    SECTION("a path that is a directory, or a symbolic link") {
        CHECK_FALSE(save_file(dir.path, "x\n", why));
        CHECK_THAT(why, Catch::Contains("is a directory"));
        REQUIRE(::symlink(path.c_str(), (dir.path + "/link.conf").c_str()) == 0);
        CHECK_FALSE(save_file(dir.path + "/link.conf", "x\n", why));
        CHECK_THAT(why, Catch::Contains("symbolic link"));
        CHECK(slurp(path) == "third\n");
    }
}

TEST_CASE("minimal secondary: no local address, a lone remote without id or subnets") {
    auto cfg = lc_ok(R"(role = "secondary";
local = { };
dataplane = { lan = { port = 0; address = "10.2.0.1/24"; };
              wan = { port = 1; address = "192.0.2.2/24"; gateway = "192.0.2.254"; }; };
remotes = ( { address = "192.0.2.1"; } );
)");
    CHECK(cfg.local.address.str() == "192.0.2.2");   // the WAN port's host part
    REQUIRE(cfg.remotes.size() == 1);
    CHECK(cfg.remotes[0].id == 1);
    CHECK(cfg.remotes[0].subnets.empty());
    CHECK(same_settings(cfg, lc_ok(to_libconfig(cfg, true))));

    // No local section at all: the primary's address and the key are the whole file.
    auto bare = lc_ok(R"(role = "secondary";
dataplane = { wan = { port = 0; address = "192.0.2.3/24"; }; lan = { port = 1; address = "10.3.0.1/24"; }; };
remotes = ( { address = "192.0.2.1"; } );
)");
    CHECK(bare.local.address.str() == "192.0.2.3");
    CHECK(same_settings(bare, lc_ok(to_libconfig(bare, true))));
    auto e0 = lc_err("role = \"primary\";\ndataplane = { wan = { port = 0; address = \"192.0.2.1/24\"; }; };\n");
    CHECK_THAT(e0.what, Catch::Contains("local section missing"));

    TempDir dir;
    for (const char* name : {"primary.conf", "branch-b.conf", "branch-c.conf"}) {   // the demo's
        INFO(name);
        auto demo = must_load(load_file(dir.write(name, slurp(std::string(P3_SOURCE_ROOT "/config/demo/") + name))));
        for (const auto& w : demo.warnings) CHECK(w.reason == Reason::CFG_KEY_FILE_ABSENT);
        CHECK(same_settings(demo, lc_ok(to_libconfig(demo, true))));
    }
    auto example = must_load(load_file(dir.write("secondary.conf", slurp(P3_SOURCE_ROOT "/config/secondary.conf"))));
    CHECK(example.role == Role::secondary);
    CHECK(example.local.address.str() == "192.0.2.2");
    CHECK(example.remotes.at(0).id == 1);
    CHECK(example.remotes.at(0).subnets.empty());

    // Only a secondary, only with a WAN address, only one remote.
    auto e1 = lc_err("role = \"secondary\";\nlocal = { };\nremotes = ( { address = \"192.0.2.1\"; } );\n");
    CHECK_THAT(e1.what, Catch::Contains("local address missing"));
    auto e2 = lc_err("role = \"primary\";\nlocal = { address = \"192.0.2.1\"; };\n"
                     "remotes = ( { address = \"192.0.2.2\"; subnets = [ \"10.2.0.0/24\" ]; } );\n");
    CHECK(e2.line == 3);
    CHECK_THAT(e2.what, Catch::Contains("remotes[0].id missing"));
    auto e3 = lc_err("role = \"secondary\";\nlocal = { address = \"192.0.2.2\"; };\n"
                     "remotes = ( { id = 1; address = \"192.0.2.1\"; },\n { address = \"192.0.2.3\"; } );\n");
    CHECK(e3.line == 4);
    CHECK_THAT(e3.what, Catch::Contains("remotes[1].id missing"));
}
