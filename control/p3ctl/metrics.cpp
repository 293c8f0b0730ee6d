// See metrics.hpp. The names here are the contract of docs/metrics.md: add, never rename.
#include "control/p3ctl/metrics.hpp"

#include <cstdint>
#include <cstdio>
#include <map>
#include <string_view>
#include <utility>
#include <vector>

#include "control/admin/telemetry_client.hpp"

namespace p3::ctl {

namespace {

using Labels = std::vector<std::pair<std::string, std::string>>;

// Families in order of first use, each with its samples: OpenMetrics forbids interleaving.
class Text {
public:
    // type: counter (samples get _total) or gauge.
    void add(const std::string& family, const char* type, std::string_view help, const Labels& labels,
             const std::string& value) {
        auto it = index_.find(family);
        if (it == index_.end()) {
            it = index_.emplace(family, fams_.size()).first;
            fams_.push_back(Family{family, type, std::string(help), {}});
        }
        Family& f = fams_[it->second];
        std::string line = family;
        if (f.type == "counter") line += "_total";
        if (!labels.empty()) {
            line += '{';
            for (std::size_t i = 0; i < labels.size(); ++i) {
                if (i) line += ',';
                line += labels[i].first;
                line += "=\"";
                escape(line, labels[i].second);
                line += '"';
            }
            line += '}';
        }
        line += ' ';
        line += value;
        f.samples.push_back(std::move(line));
    }
    void counter(const std::string& f, std::string_view help, const Labels& l, std::uint64_t v) {
        add(f, "counter", help, l, std::to_string(v));
    }
    void gauge(const std::string& f, std::string_view help, const Labels& l, std::uint64_t v) {
        add(f, "gauge", help, l, std::to_string(v));
    }
    void gauge_f(const std::string& f, std::string_view help, const Labels& l, double v) {
        char buf[40];
        std::snprintf(buf, sizeof buf, "%.6g", v);
        add(f, "gauge", help, l, buf);
    }

    std::string str() const {
        std::string out;
        for (const Family& f : fams_) {
            out += "# TYPE " + f.name + " " + f.type + "\n";
            out += "# HELP " + f.name + " ";
            escape(out, f.help, false);
            out += '\n';
            for (const auto& s : f.samples) out += s + "\n";
        }
        out += "# EOF\n";
        return out;
    }

private:
    struct Family {
        std::string name, type, help;
        std::vector<std::string> samples;
    };
    // OpenMetrics escapes: \\ and \n everywhere, \" in label values.
    static void escape(std::string& out, std::string_view v, bool quote = true) {
        for (char c : v) {
            if (c == '\\') out += "\\\\";
            else if (c == '\n') out += "\\n";
            else if (c == '"' && quote) out += "\\\"";
            else out += c;
        }
    }
    std::vector<Family> fams_;
    std::map<std::string, std::size_t> index_;
};

const Json* member(const Json& j, const char* key) {
    if (!j.is_object()) return nullptr;
    const auto it = j.find(key);
    return it == j.end() ? nullptr : &*it;
}

bool u64(const Json* v, std::uint64_t& out) {
    if (v == nullptr || !v->is_number_unsigned()) return false;
    out = v->get<std::uint64_t>();
    return true;
}

std::string str(const Json* v) { return v != nullptr && v->is_string() ? v->get<std::string>() : std::string(); }

// A metric name part from a telemetry key: [a-z0-9_] only (p3d's keys already are).
std::string name_part(std::string_view k) {
    std::string s;
    for (char c : k) s += (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ? c : '_';
    return s;
}

// /p3/stats members that are levels (not counts), and those other families carry already.
bool stats_gauge(std::string_view k) {
    return k == "workers" || k == "sessions" || k == "routes4" || k == "routes6" || k == "control_backlog_setup" ||
           k == "reasm_held" || k == "reasm_bound_per_worker";
}
bool stats_elsewhere(std::string_view k) {   // per port (p3_port_rx_*), or the sum of p3_drops
    return k.starts_with("rx_lan_") || k.starts_with("rx_wan_") || k.starts_with("tx_lan_") ||
           k.starts_with("tx_wan_") || k == "dropped";
}

void render_stats(Text& t, const Json& stats) {
    if (!stats.is_object()) return;
    for (const auto& [k, v] : stats.items()) {
        std::uint64_t n = 0;
        if (!u64(&v, n) || stats_elsewhere(k)) continue;
        if (k == "routes4" || k == "routes6")
            t.gauge("p3_routes", "routes to remote subnets in the dataplane", {{"family", k == "routes4" ? "ipv4" : "ipv6"}}, n);
        else if (k.starts_with("control_") && !stats_gauge(k))
            t.counter("p3_" + name_part(k), "control thread: " + k + " (docs/metrics.md)", {}, n);
        else if (stats_gauge(k))
            t.gauge("p3_" + name_part(k), "dataplane level: " + k + " (docs/metrics.md)", {}, n);
        else
            t.counter("p3_dataplane_" + name_part(k), "every worker's " + k + " summed (docs/metrics.md)", {}, n);
    }
}

void render_drops(Text& t, const Json& drops) {
    if (!drops.is_object()) return;
    for (const auto& [k, v] : drops.items()) {
        std::uint64_t n = 0;
        if (u64(&v, n)) t.counter("p3_drops", "packets the dataplane dropped, by reason (dataplane/drops.def)", {{"reason", k}}, n);
    }
}

void render_ports(Text& t, const Json& ports) {
    if (!ports.is_object()) return;
    // DPDK's rte_eth_stats names as they are, then what our workers counted, then the link.
    static const std::pair<const char*, const char*> counters[] = {
        {"ipackets", "frames the device received (rte_eth_stats)"},
        {"opackets", "frames the device sent (rte_eth_stats)"},
        {"ibytes", "bytes the device received (rte_eth_stats)"},
        {"obytes", "bytes the device sent (rte_eth_stats)"},
        {"imissed", "frames the device dropped: its RX queues were full (rte_eth_stats)"},
        {"ierrors", "erroneous frames the device received (rte_eth_stats)"},
        {"oerrors", "frames the device failed to send (rte_eth_stats)"},
        {"rx_nombuf", "frames not received for want of a packet buffer (rte_eth_stats)"},
        {"rx_pkts", "packets the workers took from the port"},
        {"rx_bytes", "bytes the workers took from the port"},
        {"tx_pkts", "packets the workers sent on the port"},
        {"tx_bytes", "bytes the workers sent on the port"},
        {"link_changes", "link state changes since start (P3-I0213, P3-W0214)"},
    };
    for (const auto& [side, p] : ports.items()) {
        const Labels l = {{"port", side}, {"device", str(member(p, "device"))}};
        std::uint64_t n = 0;
        for (const auto& [k, help] : counters)
            if (u64(member(p, k), n)) t.counter(std::string("p3_port_") + k, help, l, n);
        if (u64(member(p, "link_up"), n)) t.gauge("p3_port_link_up", "1 when the port's link is up", l, n);
        if (u64(member(p, "link_speed_mbps"), n))
            t.gauge("p3_port_link_speed_bits_per_second", "the link's speed (0: down or unknown)", l, n * 1000000);
        if (u64(member(p, "mtu"), n)) t.gauge("p3_port_mtu_bytes", "the port's IP MTU", l, n);
    }
}

void render_lcores(Text& t, const Json& lcores) {
    if (!lcores.is_object()) return;
    for (const auto& [name, w] : lcores.items()) {
        std::uint64_t lcore = 0;
        if (!u64(member(w, "lcore"), lcore)) continue;
        const std::string idx = name.starts_with("worker") ? name.substr(6) : name;
        const Labels l = {{"worker", idx}, {"lcore", std::to_string(lcore)}};
        for (const auto& [k, v] : w.items()) {
            std::uint64_t n = 0;
            if (k == "lcore" || !u64(&v, n)) continue;
            if (k == "rx_queues" || k == "reasm_held" || k == "reasm_peak")
                t.gauge("p3_worker_" + name_part(k), "one worker's " + k + " (docs/metrics.md)", l, n);
            else
                t.counter("p3_worker_" + name_part(k), "one worker's " + k + " (docs/metrics.md)", l, n);
        }
    }
}

void render_sessions(Text& t, const Json& sessions) {
    if (!sessions.is_object()) return;
    for (const auto& [rid, s] : sessions.items()) {
        const Labels l = {{"remote", rid}};
        const std::string state = str(member(s, "state"));
        t.gauge("p3_session_up", "1 when the session has keys and carries traffic", l, state == "up" ? 1 : 0);
        t.gauge("p3_session_info", "the session's peer and key kind (value 1)",
                {{"remote", rid}, {"state", state}, {"peer", str(member(s, "peer"))},
                 {"static_keys", member(s, "static_keys") && member(s, "static_keys")->is_number() &&
                                         member(s, "static_keys")->get<std::uint64_t>() ? "1" : "0"}},
                1);
        std::uint64_t n = 0;
        static const std::pair<const char*, const char*> counters[] = {
            {"rx_pkts", "p3_session_rx_packets"}, {"rx_bytes", "p3_session_rx_bytes"},
            {"tx_pkts", "p3_session_tx_packets"}, {"tx_bytes", "p3_session_tx_bytes"},
            {"peer_moves", "p3_session_peer_moves"}};
        for (const auto& [k, f] : counters)
            if (u64(member(s, k), n)) t.counter(f, std::string("the session's ") + k + " (inner bytes)", l, n);
        static const std::pair<const char*, const char*> drops[] = {
            {"rx_auth_failed", "auth"}, {"rx_replayed", "replay"}, {"rx_old_key", "old_key"}, {"rx_policy", "policy"},
            {"rx_dropped", "rx_other"}, {"tx_down", "down"},       {"tx_dropped", "tx_other"}};
        for (const auto& [k, reason] : drops)
            if (u64(member(s, k), n))
                t.counter("p3_session_drops", "packets of the session dropped, by reason", {{"remote", rid}, {"reason", reason}}, n);
        if (u64(member(s, "tx_lanes"), n)) t.gauge("p3_session_tx_lanes", "lanes the session sends on", l, n);
        if (u64(member(s, "tx_max_seq"), n))
            t.gauge("p3_session_tx_max_seq", "highest sequence sent under the current key (rekey by count)", l, n);
    }
}

// What only the control plane knows: per session rekeys, key age, receive lanes; the setup
// exchange and the control channel.
void render_status(Text& t, const Json& status) {
    const Json* ss = member(status, "sessions");
    if (ss != nullptr && ss->is_array())
        for (const Json& s : *ss) {
            std::uint64_t id = 0, n = 0;
            if (!u64(member(s, "id"), id)) continue;
            const Labels l = {{"remote", std::to_string(id)}};
            if (u64(member(s, "rekeys"), n)) t.counter("p3_session_rekeys", "rekeys the session completed", l, n);
            if (u64(member(s, "rekey_failures"), n)) t.counter("p3_session_rekey_failures", "rekey attempts that failed", l, n);
            if (u64(member(s, "key_age_s"), n)) t.gauge("p3_session_key_age_seconds", "age of the session's data key (0: down)", l, n);
            if (u64(member(s, "uptime_s"), n)) t.gauge("p3_session_uptime_seconds", "time since the session came up (0: down)", l, n);
            if (u64(member(member(s, "lanes") ? *member(s, "lanes") : Json(), "in"), n))
                t.gauge("p3_session_rx_lanes", "lanes the session receives on", l, n);
            t.gauge("p3_session_admin_up", "0 when an administrator shut the session down", l,
                    str(member(s, "admin")) == "down" ? 0 : 1);
            const Json* rtt = member(s, "heartbeat_rtt_ms");
            if (rtt != nullptr && rtt->is_number())
                t.gauge_f("p3_session_heartbeat_rtt_seconds", "the control channel's last heartbeat round trip", l,
                          rtt->get<double>() / 1000.0);
        }
    const Json* control = member(status, "control");
    for (const char* part : {"setup", "channel"}) {
        const Json* c = control ? member(*control, part) : nullptr;
        if (c == nullptr || !c->is_object()) continue;
        for (const auto& [k, v] : c->items()) {
            std::uint64_t n = 0;
            if (!u64(&v, n)) continue;
            const std::string f = std::string("p3_") + part + "_" + name_part(k);
            const std::string help = std::string(part == std::string_view("setup") ? "setup exchange" : "control channels") +
                                     ": " + k + " (docs/metrics.md)";
            if (k == "half_open" || k == "exchanges") t.gauge(f, help, {}, n);
            else t.counter(f, help, {}, n);
        }
    }
}

}  // namespace

std::string render_metrics(const MetricsInput& in) {
    Text t;
    t.gauge("p3_up", "1 when p3d's telemetry answered this scrape", {}, in.telemetry_up ? 1 : 0);
    t.gauge("p3_admin_up", "1 when p3d's admin socket answered this scrape (rekeys, key age, setup, channel)", {},
            in.admin_up ? 1 : 0);
    render_stats(t, in.stats);
    render_drops(t, in.drops);
    render_ports(t, in.ports);
    render_lcores(t, in.lcores);
    render_sessions(t, in.sessions);
    if (in.admin_up) render_status(t, in.status);
    return t.str();
}

namespace {

// The object under "/p3/X" of a (merged) telemetry reply; null when absent.
bool ask(const std::string& sock, const char* cmd, Json& out, std::string& error) {
    std::string reply;
    if (!admin::telemetry_query_all(sock, cmd, reply, error)) return false;
    Json j = Json::parse(reply, nullptr, false);   // already checked by telemetry_query_all
    const Json* body = member(j, cmd);
    out = body ? *body : Json();
    return true;
}

}  // namespace

bool collect_metrics(const MetricsSources& src, MetricsInput& in, std::string& error) {
    in = MetricsInput{};
    in.telemetry_up = ask(src.telemetry_socket, "/p3/stats", in.stats, error) &&
                      ask(src.telemetry_socket, "/p3/drops", in.drops, error) &&
                      ask(src.telemetry_socket, "/p3/ports", in.ports, error) &&
                      ask(src.telemetry_socket, "/p3/lcores", in.lcores, error) &&
                      ask(src.telemetry_socket, "/p3/sessions", in.sessions, error);
    if (!in.telemetry_up) in.stats = in.drops = in.ports = in.lcores = in.sessions = Json();
    if (!src.admin_socket.empty()) {
        const Outcome o = admin_call(src.admin_socket, Json{{"v", 1}, {"cmd", "status"}, {"target", {{"all", true}}}});
        in.admin_up = o.exit == kOk && o.result.is_object();
        if (in.admin_up) in.status = o.result;
    }
    return in.telemetry_up;
}

}  // namespace p3::ctl
