// p3ctl's admin client without a p3d: the socket path, the parsing of what a user types (ids,
// audit --since), responses turned into exit statuses and messages (malformed ones too), and
// the status table read defensively. The verbs end to end: tests/sh/11-p3ctl-admin.sh.
#include <catch2/catch.hpp>

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <string>

#include "control/p3ctl/admin_client.hpp"
#include "control/p3ctl/cluster.hpp"
#include "control/p3ctl/render.hpp"

using namespace p3::ctl;

TEST_CASE("p3ctl: the admin socket from -s, --prefix or the default", "[p3ctl]") {
    CHECK(admin_socket("", "") == "/run/p3/p3d.sock");
    CHECK(admin_socket("", "p3a") == "/run/p3/p3a.sock");
    CHECK(admin_socket("/tmp/x.sock", "") == "/tmp/x.sock");
}

TEST_CASE("p3ctl: remote ids and --since times as typed", "[p3ctl]") {
    CHECK(parse_id("0") == 0u);
    CHECK(parse_id("123456789") == 123456789u);
    for (const char* bad : {"", "-1", "1x", " 1", "1234567890", "0x10"}) CHECK_FALSE(parse_id(bad));
    CHECK(parse_since("0") == 0);
    CHECK(parse_since("1796601602") == 1796601602);
    CHECK(parse_since("2026-12-07T00:00:02Z") == 1796601602);
    CHECK(parse_since("2026-12-07t00:00:02z") == 1796601602);
    CHECK(parse_since("2026-12-07 00:00:02.999Z") == 1796601602);
    CHECK(parse_since("2026-12-07T01:30:02+01:30") == 1796601602);
    CHECK(parse_since("2026-12-06T23:00:02-01:00") == 1796601602);
    for (const char* bad : {"", "yesterday", "-5", "2026-12-07", "2026-12-07T00:00Z", "2026-13-07T00:00:00Z",
                            "2026-12-07T24:00:00Z", "2026-12-07T00:00:00", "2026-12-07T00:00:00Zx",
                            "2026-12-07T00:00:00.Z", "2026-12-07T00:00:00+1:00", "1234567890123"})
        CHECK_FALSE(parse_since(bad));
}

TEST_CASE("p3ctl: responses give the result or an exit status and a message", "[p3ctl]") {
    Outcome o = parse_response(R"({"v":1,"ok":true,"result":{"done":[1,2]}})");
    CHECK(o.exit == kOk);
    CHECK(render_done("rekey", o.result) == "rekey: done for 1 2\n");
    CHECK(render_json(o.result) == "{\"done\":[1,2]}\n");
    struct Case {
        const char* line;
        int exit;
        const char* message;
    };
    const Case cases[] = {
        {R"({"v":1,"ok":false,"error":{"kind":"denied","message":"viewer"}})", kDenied, "not allowed: viewer"},
        {R"({"v":1,"ok":false,"error":{"kind":"unknown_id","message":"no remote 9"}})", kUnknownId,
         "unknown remote id or group: no remote 9"},
        {R"({"v":1,"ok":false,"error":{"kind":"bad_request","message":"x"}})", kBadInput, "p3d refused the request: x"},
        {R"({"v":1,"ok":false,"error":{"kind":"failed","message":"busy"}})", kFailed, "failed: busy"},
        {R"({"v":1,"ok":false,"error":{"kind":"unsupported"}})", kFailed, "not supported by this p3d"},
        {R"({"v":1,"ok":false,"error":{"kind":"new_kind","message":5}})", kFailed, "failed"},
        {R"({"v":1,"ok":false})", kFailed, "failed"},
        {R"({"v":1,"ok":true})", kUnreachable, "no result object"},
        {R"({"v":1,"ok":true,"result":[1]})", kUnreachable, "no result object"},
        {R"({"v":1,"ok":"yes"})", kUnreachable, "no \"ok\""},
        {R"([1])", kUnreachable, "not a JSON object"},
        {"", kUnreachable, "not a JSON object"},
        {"{\"ok\":true,\"result\":{\"a\":\"\xff\"}}", kUnreachable, "not a JSON object"},
        {R"({"v":1,"ok":true,"result":{}} trailing)", kUnreachable, "not a JSON object"},
    };
    for (const auto& c : cases) {
        INFO(c.line);
        o = parse_response(c.line);
        CHECK(o.exit == c.exit);
        CHECK(o.message.find(c.message) != std::string::npos);
    }
}

TEST_CASE("p3ctl: durations and the status table", "[p3ctl]") {
    CHECK(format_duration(-1) == "-");
    CHECK(format_duration(0) == "0s");
    CHECK(format_duration(59) == "59s");
    CHECK(format_duration(312) == "5m12s");
    CHECK(format_duration(3600 * 3 + 240) == "3h04m");
    CHECK(format_duration(86400 * 2 + 3600 * 3 + 59) == "2d03h");
    const Outcome o = parse_response(
        R"({"v":1,"ok":true,"result":{"role":"secondary","sessions":[)"
        R"({"id":2,"state":"up","peer":"192.0.2.2:4500","identity":"CN=b","uptime_s":61,"rekeys":3,)"
        R"("last_rekey_s":10,"last_rekey_result":"failed","key_age_s":70,"lanes":{"in":2,"out":1},)"
        R"("rx_pkts":5,"tx_pkts":6,"drops":{"auth":1,"replay":0,"other":2}},)"
        R"({"id":"odd","state":7,"lanes":[1],"drops":null,"uptime_s":"x","extra":{"deep":[1,2]}}]}})");
    REQUIRE(o.exit == kOk);
    CHECK(render_status(o.result) ==
          "role: secondary\n"
          "ID   STATE  PEER            IDENTITY  UPTIME  REKEYS  LAST REKEY      KEY AGE  LANES  RX PKTS  TX PKTS  DROPS\n"
          "2    up     192.0.2.2:4500  CN=b      1m01s   3       10s ago failed  1m10s    2/1    5        6        3\n"
          "odd  7      -               -         -       -       -               -        -      -        -        -\n");
    CHECK(render_status(Json::object()) == "role: -\nno sessions\n");
    // Shut down by an administrator: the table says so; the control plane's counters follow.
    CHECK(render_status(Json::parse(R"({"role":"primary","sessions":[{"id":4,"state":"down","admin":"down"}],)"
                                    R"("control":{"setup":{"established":2,"failed":1,"half_open":0},)"
                                    R"("channel":{"rekeys":5,"rekey_failures":0,"heartbeats_sent":9,)"
                                    R"("heartbeats_answered":8,"losses":1,"recoveries":1}}})")) ==
          "role: primary\n"
          "ID  STATE  PEER  IDENTITY  UPTIME  REKEYS  LAST REKEY  KEY AGE  LANES  RX PKTS  TX PKTS  DROPS\n"
          "4   down   -     -         -       -       -           -        -      -        -        -\n"
          "remote 4 is shut down by an administrator (p3ctl start 4 lets it up again)\n"
          "setup: 2 established, 1 failed, 0 half-open\n"
          "control: 5 rekeys (0 failed), heartbeats 8/9 answered, 1 losses, 1 recoveries\n");
    CHECK(render_diff("reload", Json::parse(R"({"added":[3],"removed":[],"changed":[{"id":2,"fields":["subnets","groups"],)"
                                            R"("reestablished":false},{"id":5,"fields":["rekey_wait"],"reestablished":true}],)"
                                            R"("restart_needed":["dataplane.wan"]})")) ==
          "reload: added 3\n"
          "reload: changed 2 (subnets, groups): applied in place\n"
          "reload: changed 5 (rekey_wait): session set up again\n"
          "reload: not applied until p3d restarts: dataplane.wan\n");
    CHECK(render_diff("reload", Json::object()) == "reload: nothing changed\n");
    CHECK(render_saved(Json::parse(R"({"path":"/etc/p3/p3d.conf","previous":"/etc/p3/p3d.conf.prev"})")) ==
          "config save: written to /etc/p3/p3d.conf (previous file kept as /etc/p3/p3d.conf.prev)\n");
    CHECK(render_saved(Json::parse(R"({"path":"/x.conf","previous":null})")) == "config save: written to /x.conf\n");
    CHECK(render_done("keyarray flush", Json::object()) == "keyarray flush: no session\n");
    CHECK(render_audit(Json::parse(R"({"lines":[{"time":"T","uid":5,"user":"u","cmd":"c","target":"id 1","result":"ok"},3]})")) ==
          "T  u(5)  c  id 1  ok\n-  -(-)  -  -  -\n");
}

TEST_CASE("p3ctl: cluster status and role changes as printed", "[p3ctl]") {
    using p3::ctl::Json;
    const Json st = Json::parse(R"({"cluster":true,"member":1,"role":"backup","group":"p3","in_group":true,
        "sessions_replicated":3,"members":[{"member":1,"role":"backup","self":true,"last_heard_s":0.0,"lag":0},
        {"member":2,"role":"primary","self":false,"last_heard_s":0.42,"lag":0},
        {"member":3,"role":"backup","self":false,"last_heard_s":1.0,"lag":null},
        {"member":4,"role":"backup","self":false,"last_heard_s":0.1,"lag":null,"synced":false}]})");
    const std::string out = p3::ctl::render_cluster_status(st);
    CHECK(out.find("cluster: group p3, this member 1 (backup), 3 sessions replicated\n") == 0);
    CHECK(out.find("\n1*      backup   (this)      0\n") != std::string::npos);
    CHECK(out.find("\n2       primary  0.4 s       0\n") != std::string::npos);
    CHECK(out.find("\n3       backup   1.0 s       -\n") != std::string::npos);
    CHECK(out.find("\n4       backup   0.1 s       not synced\n") != std::string::npos);
    Json off = st;
    off["in_group"] = false;
    CHECK(p3::ctl::render_cluster_status(off).find("NOT in the group") != std::string::npos);
    CHECK(p3::ctl::render_cluster_status(Json::parse(R"({"cluster":false,"message":"no cluster here"})")) ==
          "cluster: no cluster here\n");
    CHECK(p3::ctl::render_cluster_status(Json::parse("[1]")) == "cluster: -\n");   // never a throw
    CHECK(p3::ctl::render_cluster_role("cluster promote", Json::parse(R"({"member":2,"role":"primary","changed":true})")) ==
          "cluster promote: member 2 is now primary\n");
    CHECK(p3::ctl::render_cluster_role("cluster demote", Json::parse(R"({"member":2,"role":"backup","changed":false})")) ==
          "cluster demote: member 2 was already backup\n");
}

TEST_CASE("p3ctl: no p3d at the socket is exit 1 and names the socket", "[p3ctl]") {
    const Outcome o = admin_call("/nonexistent/p3d.sock", Json{{"v", 1}, {"cmd", "status"}}, 100);
    CHECK(o.exit == kUnreachable);
    CHECK(o.message.find("p3d is not reachable at /nonexistent/p3d.sock") != std::string::npos);
    CHECK(admin_call(std::string(200, 'x'), Json::object(), 100).exit == kBadInput);
}

TEST_CASE("p3ctl: a p3d that listens but does not answer is given up after the timeout", "[p3ctl]") {
    char dir[] = "/tmp/p3ctl-test-XXXXXX";
    REQUIRE(::mkdtemp(dir) != nullptr);
    const std::string path = std::string(dir) + "/p3d.sock";
    const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
    REQUIRE(fd >= 0);
    sockaddr_un sun{};
    sun.sun_family = AF_UNIX;
    std::memcpy(sun.sun_path, path.c_str(), path.size() + 1);
    REQUIRE(::bind(fd, reinterpret_cast<const sockaddr*>(&sun), sizeof sun) == 0);
    REQUIRE(::listen(fd, 4) == 0);   // the kernel accepts; nobody reads or answers
    const Outcome o = admin_call(path, Json{{"v", 1}, {"cmd", "status"}}, 200);
    CHECK(o.exit == kUnreachable);
    CHECK(o.message == "p3d at " + path + ": no answer within the time allowed");
    ::close(fd);
    ::unlink(path.c_str());
    ::rmdir(dir);
}
