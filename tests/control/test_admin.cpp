// The admin socket server (control/admin/): AdminServer on a socket in a temp dir with a fake
// command handler and real clients — every request shape, malformed lines, the access rule
// (an injected group lookup: admin, viewer, nobody) and its audit lines, the client limit,
// the idle close; the request parser and the audit file on their own.
#include <catch2/catch.hpp>

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/xattr.h>
#include <grp.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <fstream>
#include <string>
#include <vector>

#include "control/admin/admin_server.hpp"

using namespace p3::admin;
using nlohmann::json;

namespace {

struct TempDir {
    std::string path;
    TempDir() {
        char t[] = "/tmp/p3-admin-XXXXXX";
        path = mkdtemp(t);
    }
    ~TempDir() { (void)std::system(("rm -rf " + path).c_str()); }
};

struct FakeHandler final : CommandHandler {
    std::vector<Request> seen;
    std::optional<Reply> next;
    Reply handle(const Request& r, const Caller&) override {
        seen.push_back(r);
        if (r.fd >= 0) (void)!::write(r.fd, "fd", 2);   // a descriptor that came along: usable here
        if (next) return *next;
        Reply rep;
        rep.result = json{{"done", json::array({1, 2})}};
        return rep;
    }
};

// A socket-file test's parts without a server: a quiet audit and options that make every
// caller an admin, the socket at dir + rel.
struct Bare {
    TempDir dir;
    p3::control::ManualClock clock;
    FakeHandler h;
    Audit audit;
    ServerOptions o;
    explicit Bare(const std::string& rel) {
        audit.to_syslog = false;
        o.socket_path = dir.path + rel;
        o.access = [](const Caller&) { return Access::admin; };
    }
};

struct Fixture {
    TempDir dir;
    p3::control::ManualClock clock;
    FakeHandler handler;
    Audit audit;
    Access access = Access::admin;
    std::unique_ptr<AdminServer> server;
    std::string sock;

    Fixture() {
        sock = dir.path + "/run/p3d.sock";
        std::string why;
        audit.to_syslog = false;
        audit.wall = [] { return std::time_t(1700000000); };
        REQUIRE(audit.open(dir.path + "/log/audit.jsonl", why));
        ServerOptions o;
        o.socket_path = sock;
        o.admin_group = "p3-test-no-such-group";
        o.access = [this](const Caller&) { return access; };
        server = std::make_unique<AdminServer>(o, handler, audit, clock);
        REQUIRE(server->open(why));
    }

    int connect_client() {
        const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_un a{};
        a.sun_family = AF_UNIX;
        std::strncpy(a.sun_path, sock.c_str(), sizeof a.sun_path - 1);
        REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
        return fd;
    }
    // One line back (without its newline), "" on EOF; the server polled meanwhile.
    std::string read_line(int fd, std::string& buf) {
        for (int i = 0; i < 2000; ++i) {
            auto nl = buf.find('\n');
            if (nl != std::string::npos) {
                std::string l = buf.substr(0, nl);
                buf.erase(0, nl + 1);
                return l;
            }
            server->poll();
            char b[65536];
            const ssize_t n = ::recv(fd, b, sizeof b, MSG_DONTWAIT);
            if (n == 0) return "";
            if (n > 0) buf.append(b, static_cast<std::size_t>(n));
            else usleep(200);
        }
        FAIL("no answer");
        return "";
    }
    bool closed_by_server(int fd) {
        for (int i = 0; i < 2000; ++i) {
            server->poll();
            char b[256];
            const ssize_t n = ::recv(fd, b, sizeof b, MSG_DONTWAIT);
            if (n == 0) return true;
            if (n < 0 && errno != EAGAIN) return true;
            usleep(200);
        }
        return false;
    }
    json ask(const std::string& line) {
        const int fd = connect_client();
        const std::string l = line + "\n";
        REQUIRE(::send(fd, l.data(), l.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(l.size()));
        std::string buf;
        const std::string r = read_line(fd, buf);
        ::close(fd);
        server->poll();
        const json j = json::parse(r, nullptr, false);
        REQUIRE(!j.is_discarded());
        return j;
    }
    std::vector<json> audit_lines() {
        std::ifstream f(dir.path + "/log/audit.jsonl");
        std::vector<json> v;
        for (std::string l; std::getline(f, l);) v.push_back(json::parse(l));
        return v;
    }
};

std::string kind_of(const json& j) { return j.at("error").at("kind").get<std::string>(); }

}  // namespace

TEST_CASE("admin request parser: every shape", "[admin]") {
    auto ok = [](std::string_view s) {
        auto r = parse_request(s);
        REQUIRE(std::holds_alternative<Request>(r));
        return std::get<Request>(r);
    };
    auto err = [](std::string_view s) {
        auto r = parse_request(s);
        REQUIRE(std::holds_alternative<Error>(r));
        return std::get<Error>(r);
    };
    CHECK(ok(R"({"v":1,"cmd":"status"})").target.kind == Target::Kind::all);
    auto r = ok(R"({"v":1,"cmd":"rekey","target":{"id":7}})");
    CHECK(r.cmd == Cmd::rekey);
    CHECK(r.target.kind == Target::Kind::id);
    CHECK(r.target.id == 7);
    CHECK(r.target.str() == "7");
    r = ok(R"({"v":1,"cmd":"keyarray.generate","target":{"group":"branch"}})");
    CHECK(r.cmd == Cmd::keyarray_generate);
    CHECK(r.target.str() == "group:branch");
    r = ok(R"({"v":1,"cmd":"keyarray.flush","target":{"all":true},"args":{"regenerate":true}})");
    CHECK(r.cmd == Cmd::keyarray_flush);
    CHECK(r.regenerate);
    r = ok(R"({"v":1,"cmd":"audit","args":{"since":1700000000}})");
    CHECK(r.since == 1700000000);
    CHECK(ok(R"({"cmd":"status","v":1,"args":{}})").cmd == Cmd::status);
    // The verbs that end or change something.
    r = ok(R"({"v":1,"cmd":"shutdown","target":{"id":3}})");
    CHECK(r.cmd == Cmd::shutdown);
    CHECK(r.target.id == 3);
    CHECK(ok(R"({"v":1,"cmd":"start","target":{"all":true}})").cmd == Cmd::start);
    r = ok(R"({"v":1,"cmd":"remote.add","args":{"text":"remotes = ( );","name":"/tmp/r.conf"}})");
    CHECK(r.cmd == Cmd::remote_add);
    CHECK(r.text == "remotes = ( );");
    CHECK(r.name == "/tmp/r.conf");
    r = ok(R"({"v":1,"cmd":"remote.set","target":{"id":2},"args":{"settings":[["rekey_wait","300"],["subnets","[\"10.3.0.0/24\"]"]]}})");
    REQUIRE(r.settings.size() == 2);
    CHECK(r.settings[1].first == "subnets");
    CHECK(r.settings[1].second == "[\"10.3.0.0/24\"]");
    CHECK(ok(R"({"v":1,"cmd":"remote.remove","target":{"id":2}})").cmd == Cmd::remote_remove);
    CHECK(ok(R"({"v":1,"cmd":"reload"})").cmd == Cmd::reload);
    CHECK(ok(R"({"v":1,"cmd":"config.save","args":{"path":"/etc/p3/p3d.conf"}})").path == "/etc/p3/p3d.conf");
    CHECK(!read_only(Cmd::shutdown));
    CHECK(!read_only(Cmd::config_save));
    // cluster: status for viewers; promote/demote for the admin group; none takes a target.
    CHECK(ok(R"({"v":1,"cmd":"cluster.status"})").cmd == Cmd::cluster_status);
    CHECK(ok(R"({"v":1,"cmd":"cluster.promote"})").cmd == Cmd::cluster_promote);
    CHECK(ok(R"({"v":1,"cmd":"cluster.demote"})").cmd == Cmd::cluster_demote);
    CHECK(read_only(Cmd::cluster_status));
    CHECK(!read_only(Cmd::cluster_promote));
    CHECK(!read_only(Cmd::cluster_demote));
    CHECK(err(R"({"v":1,"cmd":"cluster.promote","target":{"id":2}})").kind == ErrorKind::bad_request);
    // ... each with what it needs, and no more.
    CHECK(err(R"({"v":1,"cmd":"shutdown"})").kind == ErrorKind::bad_request);            // never "all" by default
    CHECK(err(R"({"v":1,"cmd":"start"})").kind == ErrorKind::bad_request);
    CHECK(err(R"({"v":1,"cmd":"remote.remove","target":{"all":true}})").kind == ErrorKind::bad_request);
    CHECK(err(R"({"v":1,"cmd":"remote.remove"})").kind == ErrorKind::bad_request);
    CHECK(err(R"({"v":1,"cmd":"remote.set","target":{"id":2}})").kind == ErrorKind::bad_request);
    CHECK(err(R"({"v":1,"cmd":"remote.set","target":{"id":2},"args":{"settings":[]}})").kind == ErrorKind::bad_request);
    CHECK(err(R"({"v":1,"cmd":"remote.set","target":{"id":2},"args":{"settings":[["k"]]}})").kind == ErrorKind::bad_request);
    CHECK(err(R"({"v":1,"cmd":"remote.set","target":{"id":2},"args":{"settings":[["","v"]]}})").kind == ErrorKind::bad_request);
    CHECK(err(R"({"v":1,"cmd":"remote.set","target":{"id":2},"args":{"settings":[[1,"v"]]}})").kind == ErrorKind::bad_request);
    CHECK(err(R"({"v":1,"cmd":"remote.add"})").kind == ErrorKind::bad_request);
    CHECK(err(R"({"v":1,"cmd":"remote.add","target":{"id":1},"args":{"text":"x"}})").kind == ErrorKind::bad_request);
    CHECK(err(R"({"v":1,"cmd":"reload","target":{"id":1}})").kind == ErrorKind::bad_request);
    CHECK(err(R"({"v":1,"cmd":"config.save","args":{"path":7}})").kind == ErrorKind::bad_request);
    CHECK(err(R"({"v":1,"cmd":"config.save","args":{"text":"x"}})").kind == ErrorKind::bad_request);

    CHECK(err("not json").kind == ErrorKind::bad_request);
    CHECK(err("").kind == ErrorKind::bad_request);
    CHECK(err("[1,2]").kind == ErrorKind::bad_request);
    CHECK(err(R"({"cmd":"status"})").kind == ErrorKind::bad_request);            // no v
    CHECK(err(R"({"v":2,"cmd":"status"})").kind == ErrorKind::bad_request);
    CHECK(err(R"({"v":"1","cmd":"status"})").kind == ErrorKind::bad_request);
    CHECK(err(R"({"v":1,"cmd":7})").kind == ErrorKind::bad_request);
    CHECK(err(R"({"v":1,"cmd":"frobnicate"})").kind == ErrorKind::bad_request);
    CHECK(err(R"({"v":1,"cmd":"stats"})").kind == ErrorKind::unsupported);   // p3ctl reads telemetry
    CHECK(err(R"({"v":1,"cmd":"status","x":1})").kind == ErrorKind::bad_request);
    CHECK(err(R"({"v":1,"cmd":"rekey","target":{"id":-1}})").kind == ErrorKind::bad_request);
    CHECK(err(R"({"v":1,"cmd":"rekey","target":{"id":0}})").kind == ErrorKind::bad_request);
    CHECK(err(R"({"v":1,"cmd":"rekey","target":{"id":4294967296}})").kind == ErrorKind::bad_request);
    CHECK(err(R"({"v":1,"cmd":"rekey","target":{"id":1.5}})").kind == ErrorKind::bad_request);
    CHECK(err(R"({"v":1,"cmd":"rekey","target":{"id":"1"}})").kind == ErrorKind::bad_request);
    CHECK(err(R"({"v":1,"cmd":"rekey","target":{"id":1,"all":true}})").kind == ErrorKind::bad_request);
    CHECK(err(R"({"v":1,"cmd":"rekey","target":{"all":false}})").kind == ErrorKind::bad_request);
    CHECK(err(R"({"v":1,"cmd":"rekey","target":{"group":""}})").kind == ErrorKind::bad_request);
    CHECK(err(R"({"v":1,"cmd":"rekey","target":{"group":7}})").kind == ErrorKind::bad_request);
    CHECK(err(R"({"v":1,"cmd":"rekey","target":[]})").kind == ErrorKind::bad_request);
    CHECK(err(R"({"v":1,"cmd":"rekey","args":{"regenerate":true}})").kind == ErrorKind::bad_request);
    CHECK(err(R"({"v":1,"cmd":"keyarray.flush","args":{"regenerate":1}})").kind == ErrorKind::bad_request);
    CHECK(err(R"({"v":1,"cmd":"audit","args":{"since":-1}})").kind == ErrorKind::bad_request);
    CHECK(err(R"({"v":1,"cmd":"audit","args":{"since":"yesterday"}})").kind == ErrorKind::bad_request);
    CHECK(err(R"({"v":1,"cmd":"audit","args":[]})").kind == ErrorKind::bad_request);
    CHECK(err(std::string(100, '[') + std::string(100, ']')).kind == ErrorKind::bad_request);
    CHECK(err(std::string(kMaxLine + 1, ' ')).kind == ErrorKind::bad_request);
    // Invalid UTF-8 in a name: refused or echoed replaced, never thrown.
    auto bad_utf8 = parse_request("{\"v\":1,\"cmd\":\"st\xff\"}");
    REQUIRE(std::holds_alternative<Error>(bad_utf8));
    CHECK(!error_line(ErrorKind::bad_request, "x\xff").empty());
}

TEST_CASE("admin server: requests reach the handler, answers are lines", "[admin]") {
    Fixture f;
    struct stat st{};
    REQUIRE(::stat(f.sock.c_str(), &st) == 0);
    CHECK((st.st_mode & 0777) == 0660);
    REQUIRE(::stat((f.dir.path + "/run").c_str(), &st) == 0);
    CHECK((st.st_mode & 0777) == 0750);

    json j = f.ask(R"({"v":1,"cmd":"status"})");
    CHECK(j["v"] == 1);
    CHECK(j["ok"] == true);
    CHECK(j["result"]["done"] == json::array({1, 2}));
    REQUIRE(f.handler.seen.size() == 1);
    CHECK(f.handler.seen[0].cmd == Cmd::status);

    f.handler.next = Reply::error(ErrorKind::unknown_id, "no remote 9");
    j = f.ask(R"({"v":1,"cmd":"rekey","target":{"id":9}})");
    CHECK(j["ok"] == false);
    CHECK(kind_of(j) == "unknown_id");
    CHECK(j["error"]["message"] == "no remote 9");

    // Several lines on one connection, answered in order; a line split over two sends.
    f.handler.next.reset();
    const int fd = f.connect_client();
    const std::string two = R"({"v":1,"cmd":"status"})" "\n" R"({"v":1,"cmd":"keyarray.flush","target":{"id":3},"args":{"regenerate":true}})" "\n" R"({"v":1,"cmd":"rek)";
    REQUIRE(::send(fd, two.data(), two.size(), MSG_NOSIGNAL) > 0);
    std::string buf;
    CHECK(json::parse(f.read_line(fd, buf))["ok"] == true);
    CHECK(json::parse(f.read_line(fd, buf))["ok"] == true);
    const std::string rest = R"(ey","target":{"group":"g"}})" "\r\n";
    REQUIRE(::send(fd, rest.data(), rest.size(), MSG_NOSIGNAL) > 0);
    CHECK(json::parse(f.read_line(fd, buf))["ok"] == true);
    REQUIRE(f.handler.seen.size() == 5);
    CHECK(f.handler.seen[3].cmd == Cmd::keyarray_flush);
    CHECK(f.handler.seen[3].regenerate);
    CHECK(f.handler.seen[4].target.group == "g");
    // The last line without a newline, then the client's half-close: still answered.
    const std::string last = R"({"v":1,"cmd":"status"})";
    REQUIRE(::send(fd, last.data(), last.size(), MSG_NOSIGNAL) > 0);
    ::shutdown(fd, SHUT_WR);
    CHECK(json::parse(f.read_line(fd, buf))["ok"] == true);
    CHECK(f.closed_by_server(fd));
    ::close(fd);
}

TEST_CASE("admin server: malformed lines", "[admin]") {
    Fixture f;
    CHECK(kind_of(f.ask("hello")) == "bad_request");
    CHECK(kind_of(f.ask(R"({"v":1,"cmd":["status"]})")) == "bad_request");
    CHECK(kind_of(f.ask(R"({"v":1,"cmd":"dance"})")) == "bad_request");
    CHECK(kind_of(f.ask(R"({"v":1,"cmd":"metrics"})")) == "unsupported");
    CHECK(f.handler.seen.empty());

    // A line past 64 KiB: bad_request, then closed.
    const int fd = f.connect_client();
    const std::string big(kMaxLine + 100, 'a');
    std::size_t sent = 0;
    std::string buf;
    while (sent < big.size()) {
        const ssize_t n = ::send(fd, big.data() + sent, big.size() - sent, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) sent += static_cast<std::size_t>(n);
        f.server->poll();
        if (n <= 0) break;   // the server stopped reading: it answered
    }
    const std::string l = f.read_line(fd, buf);
    CHECK(kind_of(json::parse(l)) == "bad_request");
    CHECK(f.closed_by_server(fd));
    ::close(fd);
    CHECK(f.server->clients() == 0);
}

TEST_CASE("admin server: access rule and its audit lines", "[admin]") {
    Fixture f;
    f.access = Access::viewer;
    CHECK(f.ask(R"({"v":1,"cmd":"status"})")["ok"] == true);
    CHECK(kind_of(f.ask(R"({"v":1,"cmd":"rekey","target":{"id":4}})")) == "denied");
    CHECK(kind_of(f.ask(R"({"v":1,"cmd":"keyarray.flush","target":{"id":4}})")) == "denied");
    CHECK(f.ask(R"({"v":1,"cmd":"audit"})")["ok"] == true);
    f.access = Access::none;
    CHECK(kind_of(f.ask(R"({"v":1,"cmd":"status"})")) == "denied");
    CHECK(kind_of(f.ask(R"({"v":1,"cmd":"audit"})")) == "denied");
    f.access = Access::admin;
    CHECK(f.ask(R"({"v":1,"cmd":"rekey","target":{"group":"east"}})")["ok"] == true);
    REQUIRE(f.handler.seen.size() == 2);   // status (viewer) and rekey (admin) only

    const auto lines = f.audit_lines();
    REQUIRE(lines.size() == 7);
    const json& d = lines[1];
    CHECK(d["time"] == "2023-11-14T22:13:20Z");
    CHECK(d["uid"] == getuid());
    CHECK(d["user"].is_string());
    CHECK(d["cmd"] == "rekey");
    CHECK(d["target"] == "4");
    CHECK(d["result"] == "denied");
    CHECK(lines[4]["result"] == "denied");
    CHECK(lines[4]["cmd"] == "status");
    CHECK(lines[6]["target"] == "group:east");
    CHECK(lines[6]["result"] == "ok");
    for (const auto& l : lines) CHECK(l.size() == 6);

    // The audit verb reads them back, newest last, since a time.
    const json all = f.ask(R"({"v":1,"cmd":"audit"})");
    REQUIRE(all["result"]["lines"].size() == 7);
    CHECK(all["result"]["lines"][6]["target"] == "group:east");
    CHECK(f.ask(R"({"v":1,"cmd":"audit","args":{"since":1700000001}})")["result"]["lines"].empty());
    CHECK(f.ask(R"({"v":1,"cmd":"audit","args":{"since":1700000000}})")["result"]["lines"].size() == 9);
}

TEST_CASE("admin server: client limit and idle close", "[admin]") {
    Fixture f;
    std::vector<int> fds;
    for (unsigned i = 0; i < kMaxClients; ++i) fds.push_back(f.connect_client());
    for (int i = 0; i < 10 && f.server->clients() < kMaxClients; ++i) f.server->poll();
    CHECK(f.server->clients() == kMaxClients);
    // One more: told so and closed.
    const int extra = f.connect_client();
    std::string buf;
    const std::string l = f.read_line(extra, buf);
    CHECK(kind_of(json::parse(l)) == "failed");
    CHECK(f.closed_by_server(extra));
    ::close(extra);
    CHECK(f.server->refused_clients() == 1);

    // Idle 5 s: closed.
    f.clock.advance(std::chrono::seconds(4));
    f.server->poll();
    CHECK(f.server->clients() == kMaxClients);
    f.clock.advance(std::chrono::seconds(2));
    f.server->poll();
    CHECK(f.server->clients() == 0);
    for (int fd : fds) {
        CHECK(f.closed_by_server(fd));
        ::close(fd);
    }
}

TEST_CASE("admin server: the socket file", "[admin]") {
    Bare b("/p3d.sock");
    auto& [dir, clock, h, audit, o] = b;
    std::string why;
    {
        AdminServer a(o, h, audit, clock);
        REQUIRE(a.open(why));
        // A second server on the same path is refused while the first serves it.
        AdminServer b(o, h, audit, clock);
        CHECK_FALSE(b.open(why));
        CHECK(why.find("another") != std::string::npos);
    }
    struct stat st{};
    CHECK(::stat(o.socket_path.c_str(), &st) != 0);   // unlinked on close
    // Not a socket there: refused, the file left alone.
    { std::ofstream(o.socket_path) << "x"; }
    AdminServer c(o, h, audit, clock);
    CHECK_FALSE(c.open(why));
    CHECK(::stat(o.socket_path.c_str(), &st) == 0);
    o.socket_path = "relative.sock";
    AdminServer d(o, h, audit, clock);
    CHECK_FALSE(d.open(why));
}

TEST_CASE("audit file: appended, read back bounded", "[admin]") {
    TempDir dir;
    Audit a;
    a.to_syslog = false;
    std::string why;
    const std::string path = dir.path + "/a/b/audit.jsonl";
    REQUIRE(a.open(path, why));
    struct stat st{};
    REQUIRE(::stat(path.c_str(), &st) == 0);
    CHECK((st.st_mode & 0777) == 0640);
    std::time_t t = 1000;
    a.wall = [&] { return t++; };
    for (int i = 0; i < 1200; ++i) a.write({0, "p3d", "event:up", std::to_string(i), "ok"});
    { std::ofstream(path, std::ios::app) << "garbage line\n"; }
    auto v = a.read(std::nullopt);
    REQUIRE(v.size() == kMaxRead);
    CHECK(v.back()["target"] == "1199");
    CHECK(v.front()["target"] == "200");
    v = a.read(std::int64_t(2195));
    REQUIRE(v.size() == 5);
    CHECK(v.front()["target"] == "1195");
    // Reopened: appended, never truncated.
    REQUIRE(a.open(path, why));
    a.write({1, "x", "status", "all", "ok"});
    CHECK(a.read(std::nullopt).back()["user"] == "x");
    CHECK(Audit::parse_rfc3339(Audit::rfc3339(1700000000)) == 1700000000);
    Audit b;
    CHECK_FALSE(b.open("relative/audit", why));
}

TEST_CASE("admin lines keep the contract's field order", "[admin]") {
    CHECK(ok_line(json{{"done", json::array({7})}}) == "{\"v\":1,\"ok\":true,\"result\":{\"done\":[7]}}\n");
    CHECK(error_line(ErrorKind::unknown_id, "no \"x\"") ==
          "{\"v\":1,\"ok\":false,\"error\":{\"kind\":\"unknown_id\",\"message\":\"no \\\"x\\\"\"}}\n");
    TempDir dir;
    Audit a;
    a.to_syslog = false;
    a.wall = [] { return std::time_t(0); };
    std::string why;
    REQUIRE(a.open(dir.path + "/audit.jsonl", why));
    a.write({5, "eve", "rekey", "group:g", "denied"});
    std::ifstream f(dir.path + "/audit.jsonl");
    std::string l;
    std::getline(f, l);
    CHECK(l == R"({"time":"1970-01-01T00:00:00Z","uid":5,"user":"eve","cmd":"rekey","target":"group:g","result":"denied"})");
}

TEST_CASE("admin socket: the viewer group gets an ACL entry on the socket and the directory made for it", "[admin]") {
    Bare b("/run/p3d.sock");
    auto& [dir, clock, h, audit, o] = b;
    o.admin_group = "p3-test-no-such-group";
    o.viewer_group = "daemon";   // a group every Debian system has
    if (!getgrnam("daemon")) return;
    AdminServer a(o, h, audit, clock);
    std::string why;
    REQUIRE(a.open(why));
    char buf[256];
    const ssize_t n = getxattr(o.socket_path.c_str(), "system.posix_acl_access", buf, sizeof buf);
    if (!a.note().empty()) {
        WARN("no ACL support here: " << a.note());
        return;
    }
    REQUIRE(n == 4 + 5 * 8);
    const ssize_t d = getxattr((dir.path + "/run").c_str(), "system.posix_acl_access", buf, sizeof buf);
    CHECK(d == 4 + 5 * 8);
    struct stat st{};
    REQUIRE(::stat(o.socket_path.c_str(), &st) == 0);
    CHECK((st.st_mode & 0777) == 0660);   // the mask keeps the group bits at rw
}

namespace {

// A command that runs on: counts its polls, ends when told the client left.
struct FakeStream final : Stream {
    unsigned polls = 0;
    bool told_gone = false;
    std::optional<Reply> poll(p3::control::TimePoint, bool client_gone, unsigned& work) override {
        ++polls;
        work = 1;
        if (!client_gone) return std::nullopt;
        told_gone = true;
        Reply r;
        r.result = json{{"ended", "client"}};
        return r;
    }
};

// The request line with a descriptor attached (SCM_RIGHTS), as p3ctl capture sends it.
void send_with_fd(int sock, const std::string& line, int fd) {
    iovec iov{const_cast<char*>(line.data()), line.size()};
    alignas(cmsghdr) char ctl[CMSG_SPACE(sizeof(int))] = {};
    msghdr mh{};
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    mh.msg_control = ctl;
    mh.msg_controllen = sizeof ctl;
    cmsghdr* h = CMSG_FIRSTHDR(&mh);
    h->cmsg_level = SOL_SOCKET;
    h->cmsg_type = SCM_RIGHTS;
    h->cmsg_len = CMSG_LEN(sizeof(int));
    std::memcpy(CMSG_DATA(h), &fd, sizeof fd);
    REQUIRE(::sendmsg(sock, &mh, MSG_NOSIGNAL) == static_cast<ssize_t>(line.size()));
}

}  // namespace

TEST_CASE("admin request parser: capture", "[admin]") {
    auto req = [](const std::string& l) { return parse_request(l); };
    auto ok = req(R"({"v":1,"cmd":"capture","args":{"port":"wan","direction":"rx","count":20,"duration_s":5,"snaplen":128}})");
    REQUIRE(std::holds_alternative<Request>(ok));
    const Request& r = std::get<Request>(ok);
    CHECK(r.cmd == Cmd::capture);
    CHECK(r.capture.port == "wan");
    CHECK(r.capture.direction == "rx");
    CHECK(r.capture.count == 20);
    CHECK(r.capture.duration_s == 5);
    CHECK(r.capture.snaplen == 128);
    CHECK(r.fd == -1);
    CHECK_FALSE(read_only(Cmd::capture));   // the admin group only: a LAN capture is clear traffic
    for (const char* bad : {R"({"v":1,"cmd":"capture"})", R"({"v":1,"cmd":"capture","args":{"port":""}})",
                            R"({"v":1,"cmd":"capture","args":{"port":"wan","direction":"up"}})",
                            R"({"v":1,"cmd":"capture","args":{"port":"wan","count":0}})",
                            R"({"v":1,"cmd":"capture","args":{"port":"wan","snaplen":10}})",
                            R"({"v":1,"cmd":"capture","args":{"port":"wan","duration_s":-1}})",
                            R"({"v":1,"cmd":"capture","args":{"port":"wan","filter":"udp"}})",
                            R"({"v":1,"cmd":"capture","target":{"id":1},"args":{"port":"wan"}})"}) {
        INFO(bad);
        auto e = req(bad);
        REQUIRE(std::holds_alternative<Error>(e));
        CHECK(std::get<Error>(e).kind == ErrorKind::bad_request);
    }
}

TEST_CASE("admin server: a command that runs on gets its file, two answers, and stops at the client's end", "[admin]") {
    Fixture f;
    auto stream = std::make_shared<FakeStream>();
    Reply first;
    first.result = json{{"port", "wan"}};
    first.stream = stream;
    f.handler.next = first;
    int pipefd[2];
    REQUIRE(::pipe(pipefd) == 0);
    const int fd = f.connect_client();
    send_with_fd(fd, R"({"v":1,"cmd":"capture","args":{"port":"wan"}})" "\n", pipefd[1]);
    ::close(pipefd[1]);
    std::string buf;
    const json a = json::parse(f.read_line(fd, buf));
    CHECK(a["ok"] == true);
    CHECK(a["result"]["port"] == "wan");
    REQUIRE(f.handler.seen.size() == 1);
    CHECK(f.handler.seen[0].fd >= 0);
    char got[2] = {};
    CHECK(::read(pipefd[0], got, 2) == 2);   // the handler wrote through the descriptor passed
    CHECK(std::string(got, 2) == "fd");
    // The server's copy is closed after the answer: the pipe's last writer is gone.
    CHECK(::read(pipefd[0], got, 2) == 0);
    ::close(pipefd[0]);
    // It runs on past the idle limit; what the client sends meanwhile is not a request.
    f.clock.advance(std::chrono::seconds(30));
    const std::string more = R"({"v":1,"cmd":"status"})" "\n";
    REQUIRE(::send(fd, more.data(), more.size(), MSG_NOSIGNAL) > 0);
    for (int i = 0; i < 5; ++i) f.server->poll();
    CHECK(f.server->clients() == 1);
    CHECK(f.handler.seen.size() == 1);
    CHECK(stream->polls >= 5);
    CHECK_FALSE(stream->told_gone);
    // The client's end of input ends it: the last answer, then the connection closes.
    ::shutdown(fd, SHUT_WR);
    const json b = json::parse(f.read_line(fd, buf));
    CHECK(b["ok"] == true);
    CHECK(b["result"]["ended"] == "client");
    CHECK(stream->told_gone);
    CHECK(f.closed_by_server(fd));
    ::close(fd);
    const auto lines = f.audit_lines();
    REQUIRE_FALSE(lines.empty());
    CHECK(lines.back()["cmd"] == "capture");
    CHECK(lines.back()["target"] == "port:wan");
}
