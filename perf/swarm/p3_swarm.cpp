// p3-swarm: N secondaries against one real p3d primary over a veth (perf/swarm/README-swarm.md).
//
//   p3-swarm config --n N --psk-dir DIR --gateway-mac MAC [--rekey-wait S] [--heartbeat-time S]
//                   [--heartbeat-fail S] [--lan-gateway-mac MAC]          (p3d's configuration, stdout)
//   p3-swarm run --iface IF --mac MAC --peer-mac MAC --n N [--p3d-pid PID --p3d-prefix PREFIX]
//                [--rekey-wait S] [--duration S] [--trickle S] [--connect-rate R] [--setup-timeout S]
//                [--primary-lanes L] [--json FILE]
//
// run: all N secondaries start their setup exchange at once (or --connect-rate per second),
// then, once all are up, a steady window of --duration seconds (default 1.15 x rekey_wait, so
// every session's first rekey falls in it) with heartbeats, the primary's rekeys and one data
// packet per secondary every --trickle seconds. The primary's RSS (/proc/PID/statm), its
// control thread's CPU (thread "p3-ctl", /proc/PID/task/TID/stat) and its counters (DPDK
// telemetry /p3/stats, /p3/drops) are read before the bring-up, when all are up and at the
// window's edges. Exit status: 0 all up and nothing lost, 1 otherwise, 2 usage, 3 set-up.
#include <rte_eal.h>

#include <poll.h>
#include <sched.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "common/log.hpp"
#include "perf/swarm/swarm.hpp"

namespace {

using swarm::Plan;
using nlohmann::json;

struct Opts {
    std::map<std::string, std::string> kv;
    std::string get(const std::string& k, const std::string& d = "") const {
        auto it = kv.find(k);
        return it == kv.end() ? d : it->second;
    }
    double num(const std::string& k, double d) const {
        auto it = kv.find(k);
        return it == kv.end() ? d : std::strtod(it->second.c_str(), nullptr);
    }
};

int usage() {
    std::fputs("usage: p3-swarm config --n N --psk-dir DIR --gateway-mac MAC [--rekey-wait S] [--heartbeat-time S]\n"
               "                       [--heartbeat-fail S] [--lan-gateway-mac MAC]\n"
               "       p3-swarm run --iface IF --mac MAC --peer-mac MAC --n N [--p3d-pid PID --p3d-prefix PREFIX]\n"
               "                    [--rekey-wait S] [--duration S] [--trickle S] [--connect-rate R]\n"
               "                    [--setup-timeout S] [--primary-lanes L] [--json FILE]\n",
               stderr);
    return 2;
}

// ---- p3d's configuration: one remote per secondary, each with its own key file ------------------

int write_config(const Opts& o) {
    Plan p;
    p.n = std::uint32_t(o.num("n", 20));
    const std::string dir = o.get("psk-dir"), gw_mac = o.get("gateway-mac");
    if (dir.empty() || gw_mac.empty() || p.n == 0 || p.n > 60000) return usage();
    const unsigned rekey = unsigned(o.num("rekey-wait", 600)), hb = unsigned(o.num("heartbeat-time", 15)),
                   hbf = unsigned(o.num("heartbeat-fail", 120));
    std::printf("# p3d primary for p3-swarm: %u secondaries (perf/swarm/README-swarm.md)\nrole = \"primary\";\n", p.n);
    std::printf("local = { ip = 4; address = \"%s\"; port = %u; identity = \"%s\"; subnets = [ \"10.100.0.0/16\" ];\n"
                "  rekey_wait = %u; heartbeat_time = %u; heartbeat_fail = %u; };\n",
                swarm::ip_str(p.primary).c_str(), p.port, p.primary_identity.c_str(), rekey, hb, hbf);
    std::printf("dataplane = { wan = { port = 0; address = \"%s/24\"; gateway = \"%s\"; gateway_mac = \"%s\"; };\n"
                "  lan = { port = 1; address = \"10.1.0.1/24\"; gateway = \"10.1.0.254\"; gateway_mac = \"%s\"; };\n"
                "  mbufs = 16383; idle_backoff_us = 50; };\nremotes = (\n",
                swarm::ip_str(p.primary).c_str(), swarm::ip_str(p.gateway).c_str(), gw_mac.c_str(),
                o.get("lan-gateway-mac", "02:00:00:00:01:fe").c_str());
    std::filesystem::create_directories(dir);
    for (std::uint32_t i = 0; i < p.n; ++i) {
        const std::string path = dir + "/s" + std::to_string(i) + ".psk";
        {
            std::ofstream f(path, std::ios::trunc);
            f << p.psk(i);
        }
        std::filesystem::permissions(path, std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
        std::printf("  { id = %u; ip = 4; address = \"%s\"; identity = \"%s\"; psk_file = \"%s\"; subnets = [ \"%s/24\" ]; }%s\n",
                    i + 1, swarm::ip_str(Plan::addr(i)).c_str(), Plan::identity(i).c_str(), path.c_str(),
                    swarm::ip_str(Plan::lan(i)).c_str(), i + 1 < p.n ? "," : "");
    }
    std::printf(");\n");
    return 0;
}

// ---- the primary, as seen from outside -----------------------------------------------------------

struct Probe {
    double t = 0, rss = -1, ctl_cpu = -1, took = 0;
    json stats, drops, ports;
};

Probe probe(swarm::Swarm& S, int pid, const std::string& prefix) {
    Probe p;
    p.t = S.now_s();
    if (pid > 0) {
        p.rss = swarm::rss_bytes(pid);
        p.ctl_cpu = swarm::thread_cpu_s(pid, "p3-ctl");
    }
    if (!prefix.empty()) {
        p.stats = swarm::telemetry(prefix, "/p3/stats");
        p.drops = swarm::telemetry(prefix, "/p3/drops");
        p.ports = swarm::telemetry(prefix, "/p3/ports");
    }
    p.took = S.now_s() - p.t;
    return p;
}

// ---- the loop -----------------------------------------------------------------------------------

struct Pump {
    swarm::Swarm& S;
    double trickle_s = 5;
    bool trickle = false;
    double trickle_t0 = 0;
    std::uint64_t trickle_done = 0;   // sends due so far (round robin over the secondaries)
    double next_engine_scan = 0, next_reclaim = 0;
    std::vector<std::uint8_t> buf = std::vector<std::uint8_t>(65536);

    void start_trickle() {
        trickle = true;
        trickle_t0 = S.now_s();
        trickle_done = 0;
    }
    double longest = 0, last = -1;   // the longest time between two steps: a stall of the swarm itself
    void step() {
        const double b = S.now_s();
        if (last >= 0) longest = std::max(longest, b - last);
        last = b;
        pollfd pf{S.port.fd(), POLLIN, 0};
        ::poll(&pf, 1, 1);
        for (int k = 0; k < 4096; ++k) {
            const ssize_t n = S.port.recv(buf.data(), buf.size());
            if (n <= 0) break;
            S.on_frame(buf.data(), std::size_t(n));
            if ((k & 63) == 63) S.loop.run_due();
        }
        S.loop.run_due();
        const double t = S.now_s();
        if (t >= next_engine_scan) {   // the setup engines' retransmissions (50 ms granularity)
            next_engine_scan = t + 0.05;
            const auto now = S.clock.now();
            for (auto& s : S.secs)
                if (auto d = s->engine->next_deadline(); d && *d <= now) s->engine->on_timer();
        }
        if (t >= next_reclaim) {
            next_reclaim = t + 0.1;
            S.table->reclaim();
        }
        if (trickle && trickle_s > 0 && !S.secs.empty()) {
            const auto due = std::uint64_t((t - trickle_t0) * double(S.secs.size()) / trickle_s);
            for (; trickle_done < due; ++trickle_done) S.secs[trickle_done % S.secs.size()]->send_data();
        }
    }
    void run_for(double secs) {
        const double end = S.now_s() + secs;
        while (S.now_s() < end) step();
    }
};

double pct(std::vector<double> v, double q) {
    if (v.empty()) return -1;
    std::sort(v.begin(), v.end());
    const std::size_t i = std::min(v.size() - 1, std::size_t(std::ceil(q * double(v.size())) - (q > 0 ? 1 : 0)));
    return v[i];
}

struct LogCount {
    std::uint64_t warnings = 0, errors = 0;
    std::vector<std::string> first;
    static void on_line(p3::log::Level l, p3::Reason, std::string_view line, void* ctx) {
        auto* c = static_cast<LogCount*>(ctx);
        if (l == p3::log::Level::error) ++c->errors;
        else if (l == p3::log::Level::warning) ++c->warnings;
        else return;
        if (c->first.size() < 10) c->first.emplace_back(line);
    }
};

json probe_json(const Probe& p) {
    return json{{"t_s", p.t}, {"rss_bytes", p.rss}, {"ctl_cpu_s", p.ctl_cpu}, {"probe_s", p.took}};
}

// What the secondaries and the primary's probes say about one point: the JSON sample (ok set).
struct Marks {
    Probe before, at_up, w0, w1, drained;
    std::vector<std::uint64_t> rekeys0;   // per secondary, at the window's start
    std::uint64_t hb_sent0 = 0, hb_ans0 = 0, sent0 = 0;
};

json account(swarm::Swarm& S, const Pump& P, const Marks& M, double rekey_wait, double connect_rate,
             const LogCount& logs) {
    const Plan& plan = S.plan;
    swarm::RawPort& port = S.port;
    const Probe &before = M.before, &at_up = M.at_up, &w0 = M.w0, &w1 = M.w1, &drained = M.drained;
    const auto& rekeys0 = M.rekeys0;
    const std::uint64_t hb_sent0 = M.hb_sent0, hb_ans0 = M.hb_ans0, sent0 = M.sent0;
    std::vector<double> ups;
    std::uint64_t rekeys = 0, rekey_failures = 0, losses = 0, not_up = 0, no_rekey = 0, setup_failures = 0;
    std::uint64_t sent = 0, hb_sent = 0, hb_ans = 0, ctl_in = 0, data_in = 0, timeouts = 0;
    std::uint64_t retransmits = 0, since_up = 0;
    double exp_min = 0, exp_max = 0;
    for (auto& s : S.secs) {
        retransmits += s->engine->counters().retransmits;
        since_up += s->rekeys;
        if (s->t_up >= 0) {
            ups.push_back(s->t_up);
            // The primary's timer fires rekey_wait x U(0.9, 1.1) after the last one: between
            // these many rekeys fit from this session's start to the window's end (the
            // minimum allows each exchange a second).
            exp_min += std::floor((w1.t - s->t_up) / (1.1 * rekey_wait + 1.0));
            exp_max += std::floor((w1.t - s->t_up) / (0.9 * rekey_wait));
        }
        const std::uint64_t r = s->rekeys - rekeys0[s->idx];
        rekeys += r;
        no_rekey += r == 0;
        rekey_failures += s->rekey_failures;
        losses += s->losses;
        setup_failures += s->setup_failures;
        sent += s->data_sent;
        ctl_in += s->ctl_in;
        data_in += s->data_in;
        if (!s->session || s->session->state() != p3::channel::SessionState::up) ++not_up;
        if (s->session) {
            hb_sent += s->session->stats().heartbeats_sent;
            hb_ans += s->session->stats().heartbeats_answered;
            timeouts += s->session->stats().request_timeouts;
        }
    }
    sent -= sent0;
    const std::uint64_t delivered = swarm::jnum(drained.stats, "tx_lan_pkts") - swarm::jnum(w0.stats, "tx_lan_pkts");
    const std::uint64_t decrypted = swarm::jnum(drained.stats, "decrypted") - swarm::jnum(w0.stats, "decrypted");
    const std::uint64_t drops = swarm::drops_total(drained.drops) - swarm::drops_total(w0.drops);
    const bool have_tel = drained.stats.is_object();
    const double window = w1.t - w0.t;
    const double expected = double(S.up) * window / rekey_wait;
    const double hb_unanswered = double(hb_sent - hb_sent0) - double(hb_ans - hb_ans0);
    const double wall_up = ups.size() == plan.n ? pct(ups, 1.0) : -1;

    json j;
    j["suite"] = "swarm";
    j["n"] = plan.n;
    j["rekey_wait_s"] = rekey_wait;
    j["duration_s"] = window;
    j["trickle_s"] = P.trickle_s;
    j["connect_rate"] = connect_rate;
    j["up"] = S.up;
    j["setup"] = {{"wall_s", wall_up}, {"setups_per_s", wall_up > 0 ? plan.n / wall_up : 0.0},
                  {"t_first_s", pct(ups, 0)}, {"t50_s", pct(ups, 0.5)}, {"t99_s", pct(ups, 0.99)},
                  {"setup_failures", setup_failures}, {"retransmits", retransmits},
                  {"primary_drops", swarm::nonzero(at_up.drops, before.drops)},
                  {"primary_ctl_cpu_s", at_up.ctl_cpu - before.ctl_cpu}};
    j["primary"] = {{"before", probe_json(before)}, {"all_up", probe_json(at_up)}, {"window_start", probe_json(w0)},
                    {"window_end", probe_json(w1)}};
    j["rss_bytes_per_session_up"] = (at_up.rss - before.rss) / plan.n;
    j["rss_bytes_per_session_end"] = (w1.rss - before.rss) / plan.n;
    j["ctl_cpu_s_window"] = w1.ctl_cpu - w0.ctl_cpu;
    j["ctl_cpu_share_window"] = window > 0 ? (w1.ctl_cpu - w0.ctl_cpu) / window : 0.0;
    j["rekeys"] = {{"done", rekeys}, {"rate_expected", expected}, {"sessions_without", no_rekey},
                   {"attempts_failed", rekey_failures}, {"since_up", since_up}, {"expected_min", exp_min},
                   {"expected_max", exp_max}};
    j["heartbeats"] = {{"sent", hb_sent - hb_sent0}, {"answered", hb_ans - hb_ans0}, {"unanswered", hb_unanswered},
                       {"request_timeouts", timeouts}};
    j["sessions"] = {{"lost", losses}, {"not_up_at_end", not_up}};
    j["packets"] = {{"sent", sent}, {"delivered_lan", have_tel ? json(delivered) : json(nullptr)},
                    {"decrypted", have_tel ? json(decrypted) : json(nullptr)},
                    {"primary_drops", have_tel ? json(drops) : json(nullptr)},
                    {"primary_drops_by_reason", swarm::nonzero(drained.drops, w0.drops)},
                    {"control_in", ctl_in}, {"data_in", data_in}};
    j["tool"] = {{"rx_frames", S.rx_frames}, {"rx_setup", S.rx_setup}, {"rx_p3", S.rx_p3}, {"rx_other", S.rx_other},
                 {"rx_auth_failed", S.rx_auth}, {"rx_replayed", S.rx_replay}, {"rx_unknown_id", S.rx_unknown_id},
                 {"rx_bad", S.rx_bad}, {"rx_next_retries", S.rx_next_retries}, {"tx_setup", S.tx_setup},
                 {"tx_p3", S.tx_p3}, {"tx_seal_failed", S.tx_seal_failed}, {"no_mbuf", S.no_mbuf},
                 {"socket_drops", port.drops()}, {"send_failed", port.send_failed},
                 {"log_warnings", logs.warnings}, {"log_errors", logs.errors}, {"first_log_lines", logs.first}};
    json chs = json::object();
    {
        std::map<std::string, std::uint64_t> t;
        for (auto& sec : S.secs) {
            if (!sec->session) continue;
            const auto& st = sec->session->stats();
            t["sent"] += st.sent, t["received"] += st.received, t["retransmits"] += st.retransmits;
            t["request_timeouts"] += st.request_timeouts, t["frame_errors"] += st.frame_errors;
            t["auth_failures"] += st.auth_failures, t["replays"] += st.replays, t["unknown_epoch"] += st.unknown_epoch;
            t["unexpected"] += st.unexpected, t["peer_errors"] += st.peer_errors;
            t["parse_rejected"] += st.parse.total_rejected(), t["arrays_delivered"] += st.arrays_delivered;
            t["rx_promotions"] += st.rx_promotions, t["rx_next_drops"] += st.rx_next_drops;
        }
        for (auto& [k, v] : t) chs[k] = v;
    }
    j["channel"] = chs;
    j["tool"]["longest_step_s"] = P.longest;
    if (drained.ports.is_object() || drained.ports.is_array()) j["primary_ports_end"] = drained.ports;
    const bool lost_pkts = have_tel && delivered != sent;
    const bool ok = S.up == plan.n && losses == 0 && not_up == 0 && !lost_pkts && S.rx_auth == 0 &&
                    double(since_up) >= exp_min && (window < 1.1 * rekey_wait || no_rekey == 0);
    j["ok"] = ok;
    return j;
}

int run(const Opts& o) {
    Plan plan;
    plan.n = std::uint32_t(o.num("n", 20));
    plan.primary_lanes = std::uint32_t(o.num("primary-lanes", 1));
    std::uint8_t mac[6], peer_mac[6];
    if (!swarm::parse_mac(o.get("mac"), mac) || !swarm::parse_mac(o.get("peer-mac"), peer_mac) || plan.n == 0 ||
        plan.n > 60000 || o.get("iface").empty())
        return usage();
    const double rekey_wait = o.num("rekey-wait", 600), duration = o.num("duration", 1.15 * rekey_wait);
    const double setup_timeout = o.num("setup-timeout", 300), connect_rate = o.num("connect-rate", 0);
    const int pid = int(o.num("p3d-pid", 0));
    const std::string prefix = o.get("p3d-prefix");

    const std::string eal_prefix = "p3swarm-" + std::to_string(getpid());
    cpu_set_t cpus;
    CPU_ZERO(&cpus);
    const bool have_cpus = sched_getaffinity(0, sizeof cpus, &cpus) == 0;
    const char* eal[] = {"p3-swarm", "--no-huge", "-m", "256", "--no-pci", "--no-shconf", "--no-telemetry",
                         "--file-prefix", eal_prefix.c_str(), "--log-level", "error"};
    if (rte_eal_init(int(std::size(eal)), const_cast<char**>(eal)) < 0) {
        std::fputs("p3-swarm: rte_eal_init failed\n", stderr);
        return 3;
    }
    if (have_cpus) sched_setaffinity(0, sizeof cpus, &cpus);
    LogCount logs;
    p3::log::init({.ident = "p3-swarm", .to_stderr = false, .to_syslog = false, .min_level = p3::log::Level::warning});
    p3::log::set_sink(&LogCount::on_line, &logs);

    swarm::RawPort port;
    if (!port.open(o.get("iface"))) {
        std::fprintf(stderr, "p3-swarm: cannot open a raw socket on %s: %s\n", o.get("iface").c_str(), std::strerror(errno));
        return 3;
    }
    int rc = 0;
    {
        swarm::Swarm S(plan, port, mac, peer_mac);
        if (!S.gcm || !S.pool) {
            std::fputs("p3-swarm: no AES-GCM engine or mbuf pool\n", stderr);
            return 3;
        }
        Pump P{S, o.num("trickle", 5)};
        port.drops();
        S.t0 = S.clock.now();
        const Probe before = probe(S, pid, prefix);
        // ---- bring-up
        std::uint32_t started = 0;
        double connect_s = 0;   // the tool's time in connect(): its key pairs and first messages
        std::fprintf(stderr, "p3-swarm: %u secondaries starting%s\n", plan.n, connect_rate > 0 ? " (paced)" : " at once");
        while (S.up < plan.n && S.now_s() < setup_timeout) {
            const std::uint32_t due =
                connect_rate > 0 ? std::min<std::uint32_t>(plan.n, std::uint32_t(S.now_s() * connect_rate) + 1) : plan.n;
            const double c0 = S.now_s();
            for (; started < due; ++started) S.secs[started]->engine->connect(1);
            connect_s += S.now_s() - c0;
            P.step();
        }
        const Probe at_up = probe(S, pid, prefix);
        std::fprintf(stderr, "p3-swarm: %u/%u up after %.2f s\n", S.up, plan.n, at_up.t);
        // ---- steady window: heartbeats, the primary's rekeys, the trickle
        std::vector<std::uint64_t> rekeys0(plan.n);
        std::uint64_t hb_sent0 = 0, hb_ans0 = 0;
        for (auto& s : S.secs) {
            rekeys0[s->idx] = s->rekeys;
            if (s->session) hb_sent0 += s->session->stats().heartbeats_sent, hb_ans0 += s->session->stats().heartbeats_answered;
        }
        P.start_trickle();
        const Probe w0 = probe(S, pid, prefix);
        std::uint64_t sent0 = 0;
        for (auto& s : S.secs) sent0 += s->data_sent;
        P.run_for(duration);
        P.trickle = false;
        const Probe w1 = probe(S, pid, prefix);
        P.run_for(1.0);   // what is in flight arrives
        const Probe drained = probe(S, pid, prefix);

        Marks M{before, at_up, w0, w1, drained, std::move(rekeys0), hb_sent0, hb_ans0, sent0};
        json j = account(S, P, M, rekey_wait, connect_rate, logs);
        j["tool"]["connect_s"] = connect_s;
        const bool ok = j["ok"].get<bool>();
        const std::string out = j.dump(1);
        if (!o.get("json").empty()) std::ofstream(o.get("json")) << out << "\n";
        std::printf("%s\n", out.c_str());
        rc = ok ? 0 : 1;
    }
    p3::log::set_sink(nullptr, nullptr);
    rte_eal_cleanup();
    std::filesystem::remove_all("/var/run/dpdk/" + eal_prefix);
    return rc;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 2) return usage();
    const std::string cmd = argv[1];
    Opts o;
    for (int i = 2; i < argc; ++i) {
        std::string a = argv[i];
        if (a.rfind("--", 0) != 0 || i + 1 >= argc) return usage();
        o.kv[a.substr(2)] = argv[++i];
    }
    if (cmd == "config") return write_config(o);
    if (cmd == "run") return run(o);
    return usage();
}
