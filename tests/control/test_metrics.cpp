// p3ctl metrics: the OpenMetrics text a scraper reads (families whole, _total on counters,
// labels escaped, # EOF last), the HTTP request heads the --listen server answers (a table of
// good and malformed ones), and the telemetry client following paged replies to their end
// against a fake telemetry socket (what p3d's /p3/sessions,N sends).
#include <catch2/catch.hpp>

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "control/admin/telemetry_client.hpp"
#include "control/p3ctl/metrics.hpp"
#include "control/p3ctl/metrics_http.hpp"

using p3::ctl::HttpVerdict;
using p3::ctl::Json;

namespace {

std::vector<std::string> lines(const std::string& text) {
    std::vector<std::string> out;
    std::size_t at = 0;
    while (at < text.size()) {
        const std::size_t nl = text.find('\n', at);
        out.push_back(text.substr(at, nl - at));
        at = nl == std::string::npos ? text.size() : nl + 1;
    }
    return out;
}

bool has(const std::vector<std::string>& ls, const std::string& l) {
    for (const auto& x : ls)
        if (x == l) return true;
    return false;
}

}  // namespace

TEST_CASE("metrics: every source rendered as OpenMetrics families", "[p3ctl][metrics]") {
    p3::ctl::MetricsInput in;
    in.telemetry_up = true;
    in.admin_up = true;
    in.stats = Json::parse(R"({"rx_lan_pkts": 5, "encrypted": 7, "busy_polls": 3, "dropped": 9, "workers": 2,
                               "sessions": 2, "routes4": 3, "routes6": 0, "control_packets": 11,
                               "control_backlog_setup": 1})");
    in.drops = Json::parse(R"({"no_route": 4, "p3_auth": 0})");
    in.ports = Json::parse(R"({"lan": {"device": "net_tap0", "ipackets": 10, "ibytes": 1000, "imissed": 2,
                                        "ierrors": 0, "link_up": 0, "link_speed_mbps": 0, "link_changes": 3,
                                        "rx_pkts": 9, "mtu": 1500}})");
    in.lcores = Json::parse(R"({"worker0": {"lcore": 1, "rx_queues": 1, "polls": 100, "busy_polls": 40,
                                             "idle_sleeps": 60}})");
    in.sessions = Json::parse(R"({"7": {"remote_id": 7, "state": "up", "peer": "192.0.2.9\"x", "tx_lanes": 4,
                                         "static_keys": 0, "peer_moves": 1, "rx_pkts": 12, "tx_bytes": 900,
                                         "rx_auth_failed": 2, "tx_down": 0},
                                  "8": {"remote_id": 8, "state": "down", "peer": "192.0.2.8"}})");
    in.status = Json::parse(R"({"role": "primary", "sessions": [{"id": 7, "rekeys": 5, "key_age_s": 42,
                                  "lanes": {"in": 4, "out": 4}, "admin": "up", "heartbeat_rtt_ms": 1.5}],
                                "control": {"setup": {"established": 3, "half_open": 1},
                                            "channel": {"rekeys": 5, "losses": 0}}})");
    const std::string text = p3::ctl::render_metrics(in);
    const auto ls = lines(text);
    REQUIRE(!ls.empty());
    CHECK(ls.back() == "# EOF");
    CHECK(text.back() == '\n');
    const std::vector<std::string> want = {
        "p3_up 1",
        "p3_admin_up 1",
        "# TYPE p3_dataplane_encrypted counter",
        "p3_dataplane_encrypted_total 7",
        "p3_workers 2",
        "p3_routes{family=\"ipv4\"} 3",
        "p3_control_packets_total 11",
        "p3_control_backlog_setup 1",
        "p3_drops_total{reason=\"no_route\"} 4",
        "p3_drops_total{reason=\"p3_auth\"} 0",
        "p3_port_ipackets_total{port=\"lan\",device=\"net_tap0\"} 10",
        "p3_port_imissed_total{port=\"lan\",device=\"net_tap0\"} 2",
        "p3_port_link_up{port=\"lan\",device=\"net_tap0\"} 0",
        "p3_port_link_changes_total{port=\"lan\",device=\"net_tap0\"} 3",
        "p3_port_rx_pkts_total{port=\"lan\",device=\"net_tap0\"} 9",
        "p3_worker_busy_polls_total{worker=\"0\",lcore=\"1\"} 40",
        "p3_worker_idle_sleeps_total{worker=\"0\",lcore=\"1\"} 60",
        "p3_worker_rx_queues{worker=\"0\",lcore=\"1\"} 1",
        "p3_session_up{remote=\"7\"} 1",
        "p3_session_up{remote=\"8\"} 0",
        "p3_session_info{remote=\"7\",state=\"up\",peer=\"192.0.2.9\\\"x\",static_keys=\"0\"} 1",
        "p3_session_rx_packets_total{remote=\"7\"} 12",
        "p3_session_drops_total{remote=\"7\",reason=\"auth\"} 2",
        "p3_session_tx_lanes{remote=\"7\"} 4",
        "p3_session_peer_moves_total{remote=\"7\"} 1",
        "p3_session_rekeys_total{remote=\"7\"} 5",
        "p3_session_key_age_seconds{remote=\"7\"} 42",
        "p3_session_rx_lanes{remote=\"7\"} 4",
        "p3_session_heartbeat_rtt_seconds{remote=\"7\"} 0.0015",
        "p3_setup_established_total 3",
        "p3_setup_half_open 1",
        "p3_channel_rekeys_total 5",
    };
    for (const auto& w : want) CHECK(has(ls, w));
    // Counted elsewhere: the per-port worker counters and the drops' sum are not repeated.
    CHECK(text.find("p3_dataplane_rx_lan_pkts") == std::string::npos);
    CHECK(text.find("p3_dataplane_dropped") == std::string::npos);
    // Every family once, its samples right after its TYPE and HELP (no interleaving).
    std::set<std::string> seen;
    std::string current;
    for (const auto& l : ls) {
        if (l.rfind("# TYPE ", 0) == 0) {
            current = l.substr(7, l.find(' ', 7) - 7);
            CHECK(seen.insert(current).second);
            continue;
        }
        if (l[0] == '#') continue;
        INFO(l);
        CHECK(l.rfind(current, 0) == 0);
    }
}

TEST_CASE("metrics: p3d not answering gives p3_up 0 and nothing else", "[p3ctl][metrics]") {
    const std::string text = p3::ctl::render_metrics({});
    CHECK(text == "# TYPE p3_up gauge\n# HELP p3_up 1 when p3d's telemetry answered this scrape\np3_up 0\n"
                  "# TYPE p3_admin_up gauge\n# HELP p3_admin_up 1 when p3d's admin socket answered this scrape "
                  "(rekeys, key age, setup, channel)\np3_admin_up 0\n# EOF\n");
}

TEST_CASE("metrics --listen: request heads, good and malformed", "[p3ctl][metrics]") {
    struct Row {
        std::string head;
        HttpVerdict want;
    };
    const std::string big(p3::ctl::kMaxRequest, 'a');
    const Row rows[] = {
        {"GET /metrics HTTP/1.1\r\nHost: h\r\nAccept: */*\r\n\r\n", HttpVerdict::metrics},         // 1 Prometheus
        {"GET /metrics?name[]=x HTTP/1.0\r\n\r\n", HttpVerdict::metrics},                          // 2 query ignored
        {"HEAD /metrics HTTP/1.1\r\n\r\n", HttpVerdict::head_metrics},                             // 3
        {"GET / HTTP/1.1\r\n\r\n", HttpVerdict::not_found},                                        // 4
        {"GET /metricsx HTTP/1.1\r\n\r\n", HttpVerdict::not_found},                                // 5
        {"POST /metrics HTTP/1.1\r\n\r\n", HttpVerdict::bad_method},                               // 6
        {"GET /metrics HTTP/1.1\r\nHost: h\r\n", HttpVerdict::incomplete},                          // 7 head not whole
        {"", HttpVerdict::incomplete},                                                             // 8
        {"GET /metrics\r\n\r\n", HttpVerdict::bad_request},                                        // 9 HTTP/0.9
        {"GET  /metrics HTTP/1.1\r\n\r\n", HttpVerdict::bad_request},                              // 10 two spaces
        {"GET /metrics HTTP/2\r\n\r\n", HttpVerdict::bad_request},                                 // 11
        {"get /metrics HTTP/1.1\r\n\r\n", HttpVerdict::bad_request},                               // 12
        {"GET metrics HTTP/1.1\r\n\r\n", HttpVerdict::bad_request},                                // 13
        {std::string("GET /me\0trics HTTP/1.1\r\n\r\n", 26), HttpVerdict::bad_request},             // 14 NUL
        {"\r\n\r\n", HttpVerdict::bad_request},                                                    // 15
        {std::string("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", 15), HttpVerdict::bad_request},  // 16 TLS
        {"GET /metrics HTTP/1.1\r\nX: " + big, HttpVerdict::too_large},                             // 17 never ends
        {"GET /metrics HTTP/1.1\r\nX: " + big + "\r\n\r\n", HttpVerdict::too_large},                // 18 ends too late
    };
    int n = 0;
    for (const Row& r : rows) {
        INFO("row " << ++n);
        CHECK(p3::ctl::parse_http_request(r.head) == r.want);
    }
    const std::string ok = p3::ctl::http_response(HttpVerdict::metrics, [] { return std::string("p3_up 1\n# EOF\n"); });
    CHECK(ok == "HTTP/1.1 200 OK\r\nContent-Type: application/openmetrics-text; version=1.0.0; charset=utf-8\r\n"
                "Content-Length: 14\r\nConnection: close\r\n\r\np3_up 1\n# EOF\n");
    const std::string head = p3::ctl::http_response(HttpVerdict::head_metrics, [] { return std::string("abc"); });
    CHECK(head.find("Content-Length: 3\r\n") != std::string::npos);
    CHECK(head.substr(head.size() - 4) == "\r\n\r\n");
    bool called = false;
    const std::string nf = p3::ctl::http_response(HttpVerdict::not_found, [&called] {
        called = true;
        return std::string();
    });
    CHECK(nf.rfind("HTTP/1.1 404 Not Found\r\n", 0) == 0);
    CHECK(!called);
}

TEST_CASE("metrics --listen: the address", "[p3ctl][metrics]") {
    std::string h, p, e;
    CHECK(p3::ctl::parse_listen("127.0.0.1:9105", h, p, e));
    CHECK((h == "127.0.0.1" && p == "9105"));
    CHECK(p3::ctl::parse_listen("[::1]:9105", h, p, e));
    CHECK(h == "::1");
    for (const char* bad : {"127.0.0.1", "127.0.0.1:", ":9105", "localhost:9105", "127.0.0.1:0", "127.0.0.1:65536",
                            "127.0.0.1:9x", "::1:9105", "1.2.3.4:123456"}) {
        INFO(bad);
        CHECK(!p3::ctl::parse_listen(bad, h, p, e));
        CHECK(!e.empty());
    }
}

namespace {

// A telemetry socket that answers "/p3/sessions[,N]" with pages of `per` entries out of `total`
// (the "next" rule of dataplane/telemetry.cpp), or, when stuck, a "next" that stays at the
// second page.
struct FakeTelemetry {
    std::string path;
    int fd = -1;
    std::thread th;
    std::vector<std::string> asked;
    FakeTelemetry(unsigned total, unsigned per, bool stuck) {
        path = "/tmp/p3-test-tel-" + std::to_string(::getpid()) + ".sock";
        ::unlink(path.c_str());
        fd = ::socket(AF_UNIX, SOCK_SEQPACKET, 0);
        sockaddr_un sun{};
        sun.sun_family = AF_UNIX;
        std::strcpy(sun.sun_path, path.c_str());
        REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&sun), sizeof sun) == 0);
        REQUIRE(::listen(fd, 1) == 0);
        th = std::thread([this, total, per, stuck] {
            const int c = ::accept(fd, nullptr, nullptr);
            if (c < 0) return;
            const std::string hello = R"({"version": "DPDK 22.11", "pid": 1, "max_output_len": 16384})";
            ::send(c, hello.data(), hello.size(), 0);
            char buf[256];
            ssize_t n;
            while ((n = ::recv(c, buf, sizeof buf, 0)) > 0) {
                const std::string cmd(buf, static_cast<std::size_t>(n));
                asked.push_back(cmd);
                const auto comma = cmd.find(',');
                const unsigned first = comma == std::string::npos ? 0 : std::stoul(cmd.substr(comma + 1));
                Json body = Json::object();
                for (unsigned i = first; i < std::min(total, first + per); ++i)
                    body[std::to_string(i + 1)] = Json{{"state", "up"}};
                if (first + per < total) body["next"] = stuck ? per : first + per;
                const std::string r = Json{{"/p3/sessions", body}}.dump();
                ::send(c, r.data(), r.size(), 0);
            }
            ::close(c);
        });
    }
    ~FakeTelemetry() {   // every case connects and closes: the thread has ended or is ending
        if (th.joinable()) th.join();
        ::close(fd);
        ::unlink(path.c_str());
    }
};

}  // namespace

TEST_CASE("telemetry: a paged reply is followed to its end on one connection", "[p3ctl][metrics]") {
    std::string reply, error;
    {
        FakeTelemetry t(150, 24, false);
        REQUIRE(p3::admin::telemetry_query_all(t.path, "/p3/sessions", reply, error));
        t.th.join();   // the client closed: the fake is done
        CHECK(t.asked == std::vector<std::string>{"/p3/sessions", "/p3/sessions,24", "/p3/sessions,48",
                                                  "/p3/sessions,72", "/p3/sessions,96", "/p3/sessions,120",
                                                  "/p3/sessions,144"});
    }
    const Json j = Json::parse(reply);
    REQUIRE(j.contains("/p3/sessions"));
    CHECK(j["/p3/sessions"].size() == 150);
    CHECK(!j["/p3/sessions"].contains("next"));
    CHECK(j["/p3/sessions"]["150"]["state"] == "up");
    {
        FakeTelemetry t(150, 24, true);
        CHECK(!p3::admin::telemetry_query_all(t.path, "/p3/sessions", reply, error));
        CHECK(error.find("does not move forward") != std::string::npos);
    }
}
