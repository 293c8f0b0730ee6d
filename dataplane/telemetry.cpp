#include "dataplane/telemetry.hpp"

#include <rte_ethdev.h>
#include <rte_pdump.h>
#include <rte_telemetry.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <optional>
#include <string>

#include "common/dp_sizes.hpp"
#include "common/log.hpp"
#include "common/slots.hpp"
#include "dataplane/dataplane.hpp"
#include "dataplane/worker.hpp"

namespace p3::dp {

namespace {

std::mutex g_mu;
Dataplane* g_dp = nullptr;
bool g_registered = false;
bool g_pdump = false;
void (*g_read_hook)(void*) = nullptr;
void* g_read_hook_ctx = nullptr;

// A command reads state the control thread changes and frees (key slots for tx_max_seq,
// sessions): it does so as a reader of the dataplane's RCU, online for the length of one
// command, so a slot retired meanwhile is freed only after the command is done. One reader
// id (Dataplane::telemetry_reader_id(), registered by attach()) serves every telemetry
// thread: commands run one at a time under g_mu, which is taken before going online.
struct RcuRead {
    rte_rcu_qsbr* q;
    unsigned id;
    explicit RcuRead(const Dataplane& dp) noexcept : q(dp.qsbr()), id(dp.telemetry_reader_id()) {
        rte_rcu_qsbr_thread_online(q, id);
    }
    ~RcuRead() { rte_rcu_qsbr_thread_offline(q, id); }
    RcuRead(const RcuRead&) = delete;
    RcuRead& operator=(const RcuRead&) = delete;
};

// What every command that answers a dict does first: one command at a time (g_mu), with the
// dataplane still attached, online on its RCU for the command's length; then the reply's dict.
class Command {
public:
    explicit Command(rte_tel_data* d) : lock_(g_mu) {
        if (!g_dp) return;
        rcu_.emplace(*g_dp);
        rte_tel_data_start_dict(d);
    }
    explicit operator bool() const noexcept { return rcu_.has_value(); }

private:
    std::lock_guard<std::mutex> lock_;
    std::optional<RcuRead> rcu_;
};

const char* state_name(SessionState s) {
    switch (s) {
        case SessionState::up: return "up";
        case SessionState::down: return "down";
        default: return "unused";
    }
}

void add_lcore_counters(rte_tel_data* d, const LcoreStats& st) {
#define P3_X(name) rte_tel_data_add_dict_u64(d, #name, st.name.get());
    P3_LCORE_COUNTERS(P3_X)
#undef P3_X
}

int cmd_stats(const char*, const char*, rte_tel_data* d) {
    Command cmd(d);
    if (!cmd) return -1;
#define P3_X(name) rte_tel_data_add_dict_u64(d, #name, g_dp->sum(&LcoreStats::name));
    P3_LCORE_COUNTERS(P3_X)
#undef P3_X
    std::uint64_t total = 0;
    for (const auto& di : kDrops) total += g_dp->drops(di.drop);
    rte_tel_data_add_dict_u64(d, "dropped", total);
    rte_tel_data_add_dict_u64(d, "workers", g_dp->workers());
    // Sessions, routes and the control thread's counters: as the control thread published them.
    const SessionsView* v = g_dp->control_port().sessions_view();
    rte_tel_data_add_dict_u64(d, "sessions", v ? v->sessions.size() : 0);
    rte_tel_data_add_dict_u64(d, "routes4", v ? v->routes4 : 0);
    rte_tel_data_add_dict_u64(d, "routes6", v ? v->routes6 : 0);
    const ControlCounters cc = g_dp->control_counters();
    rte_tel_data_add_dict_u64(d, "control_packets", cc.packets);
    // How the control thread spends its passes, by ring (trusted first), and what waits.
    rte_tel_data_add_dict_u64(d, "control_trusted", cc.trusted);
    rte_tel_data_add_dict_u64(d, "control_neigh", cc.neigh);
    rte_tel_data_add_dict_u64(d, "control_setup", cc.setup);
    rte_tel_data_add_dict_u64(d, "control_setup_waited", cc.setup_waited);
    rte_tel_data_add_dict_u64(d, "control_backlog_setup", g_dp->control_backlog(CtlClass::setup));
    std::uint64_t held = 0;
    for (unsigned i = 0; i < g_dp->workers(); ++i) held += g_dp->lcore(i).reasm_held.load(std::memory_order_relaxed);
    rte_tel_data_add_dict_u64(d, "reasm_held", held);
    rte_tel_data_add_dict_u64(d, "reasm_bound_per_worker", g_dp->reassembly_bound());
    return 0;
}

int cmd_drops(const char*, const char*, rte_tel_data* d) {
    Command cmd(d);
    if (!cmd) return -1;
    for (const auto& di : kDrops) rte_tel_data_add_dict_u64(d, std::string(di.name).c_str(), g_dp->drops(di.drop));
    return 0;
}

// The first entry a paged command returns: its parameter (empty: 0). false when it is not a
// decimal number.
bool page_offset(const char* params, unsigned& offset) {
    offset = 0;
    if (params == nullptr || *params == '\0') return true;
    char* end = nullptr;
    errno = 0;
    const unsigned long v = std::strtoul(params, &end, 10);
    if (*end != '\0' || errno != 0 || v > kMaxSessions || *params < '0' || *params > '9') return false;
    offset = static_cast<unsigned>(v);
    return true;
}

// The last entry of a page that is not the last: where the next one starts.
void add_next(rte_tel_data* d, unsigned next, unsigned total) {
    if (next < total) rte_tel_data_add_dict_u64(d, "next", next);
}

int cmd_lcores(const char*, const char* params, rte_tel_data* d) {
    unsigned first = 0;
    if (!page_offset(params, first)) return -1;
    Command cmd(d);
    if (!cmd) return -1;
    const unsigned end = std::min(g_dp->workers(), first + kLcoresPerPage);
    for (unsigned i = first; i < end; ++i) {
        const Lcore& L = g_dp->lcore(i);
        rte_tel_data* c = rte_tel_data_alloc();
        if (!c) return -1;
        rte_tel_data_start_dict(c);
        rte_tel_data_add_dict_u64(c, "lcore", L.lcore_id);
        rte_tel_data_add_dict_u64(c, "rx_queues", L.nrx);
        add_lcore_counters(c, L.stats);
        rte_tel_data_add_dict_u64(c, "reasm_held", L.reasm_held.load(std::memory_order_relaxed));
        rte_tel_data_add_dict_u64(c, "reasm_peak", L.reasm_peak.load(std::memory_order_relaxed));
        std::uint64_t dropped = 0;
        for (const auto& x : L.stats.drops) dropped += x.get();
        rte_tel_data_add_dict_u64(c, "dropped", dropped);
        char key[32];
        std::snprintf(key, sizeof key, "worker%u", i);
        rte_tel_data_add_dict_container(d, key, c, 0);
    }
    add_next(d, end, g_dp->workers());
    return 0;
}

int cmd_ports(const char*, const char*, rte_tel_data* d) {
    Command cmd(d);
    if (!cmd) return -1;
    for (unsigned s = 0; s < kSides; ++s) {
        const PortInfo& p = g_dp->port(static_cast<Side>(s));
        rte_tel_data* c = rte_tel_data_alloc();
        if (!c) return -1;
        rte_tel_data_start_dict(c);
        rte_tel_data_add_dict_u64(c, "port_id", p.port_id);
        rte_tel_data_add_dict_string(c, "device", p.name.c_str());
        rte_tel_data_add_dict_string(c, "driver", p.driver.c_str());
        rte_tel_data_add_dict_string(c, "address", g_dp->addr(static_cast<Side>(s)).addr.str().c_str());
        rte_tel_data_add_dict_u64(c, "rx_queues", p.rx_queues);
        rte_tel_data_add_dict_u64(c, "tx_queues", p.tx_queues);
        rte_tel_data_add_dict_u64(c, "mtu", g_dp->addr(static_cast<Side>(s)).mtu);
        rte_eth_stats es{};
        if (p.started && rte_eth_stats_get(p.port_id, &es) == 0) {
            rte_tel_data_add_dict_u64(c, "ipackets", es.ipackets);
            rte_tel_data_add_dict_u64(c, "opackets", es.opackets);
            rte_tel_data_add_dict_u64(c, "ibytes", es.ibytes);
            rte_tel_data_add_dict_u64(c, "obytes", es.obytes);
            rte_tel_data_add_dict_u64(c, "imissed", es.imissed);
            rte_tel_data_add_dict_u64(c, "ierrors", es.ierrors);
            rte_tel_data_add_dict_u64(c, "oerrors", es.oerrors);
            rte_tel_data_add_dict_u64(c, "rx_nombuf", es.rx_nombuf);
        }
        // The link as the control thread last read it (LinkWatch): up, speed, changes since start.
        const LinkWatch& lw = g_dp->links();
        rte_tel_data_add_dict_u64(c, "link_up", lw.up(static_cast<Side>(s)) ? 1 : 0);
        rte_tel_data_add_dict_u64(c, "link_speed_mbps", lw.speed_mbps(static_cast<Side>(s)));
        rte_tel_data_add_dict_u64(c, "link_changes", lw.changes(static_cast<Side>(s)));
        const bool lan = s == 0;
        rte_tel_data_add_dict_u64(c, "rx_pkts", g_dp->sum(lan ? &LcoreStats::rx_lan_pkts : &LcoreStats::rx_wan_pkts));
        rte_tel_data_add_dict_u64(c, "rx_bytes", g_dp->sum(lan ? &LcoreStats::rx_lan_bytes : &LcoreStats::rx_wan_bytes));
        rte_tel_data_add_dict_u64(c, "tx_pkts", g_dp->sum(lan ? &LcoreStats::tx_lan_pkts : &LcoreStats::tx_wan_pkts));
        rte_tel_data_add_dict_u64(c, "tx_bytes", g_dp->sum(lan ? &LcoreStats::tx_lan_bytes : &LcoreStats::tx_wan_bytes));
        rte_tel_data_add_dict_container(d, side_name(static_cast<Side>(s)), c, 0);
    }
    return 0;
}

// One session: what the control thread published about it (state, peer, lanes) and what the
// workers count (totals; the TX slots' sequences, read under RCU).
void add_session(rte_tel_data* c, const SessionView& s) {
    const std::uint32_t sid = s.sid.raw();
    const SessionTotals t = g_dp->session_totals(sid);
    rte_tel_data_add_dict_u64(c, "remote_id", s.remote.raw());
    rte_tel_data_add_dict_string(c, "state", state_name(s.state));
    rte_tel_data_add_dict_string(c, "peer", s.peer.str().c_str());
    rte_tel_data_add_dict_u64(c, "tx_lanes", s.tx_lanes);
    rte_tel_data_add_dict_u64(c, "static_keys", s.static_keys);
    rte_tel_data_add_dict_u64(c, "peer_moves", s.peer_moves);
    rte_tel_data_add_dict_u64(c, "tx_pkts", t.tx_pkts);
    rte_tel_data_add_dict_u64(c, "tx_bytes", t.tx_bytes);
    rte_tel_data_add_dict_u64(c, "rx_pkts", t.rx_pkts);
    rte_tel_data_add_dict_u64(c, "rx_bytes", t.rx_bytes);
    rte_tel_data_add_dict_u64(c, "tx_dropped", t.tx_dropped);
    rte_tel_data_add_dict_u64(c, "rx_auth_failed", t.rx_auth);
    rte_tel_data_add_dict_u64(c, "rx_replayed", t.rx_replay);
    rte_tel_data_add_dict_u64(c, "rx_dropped", t.rx_dropped);
    rte_tel_data_add_dict_u64(c, "rx_old_key", t.rx_old_key);
    rte_tel_data_add_dict_u64(c, "rx_policy", t.rx_policy);
    rte_tel_data_add_dict_u64(c, "tx_down", t.tx_down);
    // The highest sequence any lane has sent under its current key (rekey by packet count):
    // read from the TX slots, valid while this command is online on the RCU (RcuRead).
    std::uint64_t seq = 0;
    for (std::uint16_t l = 0; l < s.tx_lanes; ++l) {
        const wire::TxSlot* ts = g_dp->slots().tx(sid, l);
        if (!ts) continue;
        if (g_read_hook) g_read_hook(g_read_hook_ctx);
        seq = std::max(seq, ts->last_seq());
    }
    rte_tel_data_add_dict_u64(c, "tx_max_seq", seq);
}

int cmd_sessions(const char*, const char* params, rte_tel_data* d) {
    unsigned first = 0;
    if (!page_offset(params, first)) return -1;
    Command cmd(d);
    if (!cmd) return -1;
    const SessionsView* v = g_dp->control_port().sessions_view();
    if (!v) return 0;
    // One page of kSessionsPerPage sessions from the first'th, by session id; "next" when more
    // follow (a reply is cut at 16 KiB without a word: telemetry.hpp).
    const unsigned total = static_cast<unsigned>(v->sessions.size());
    const unsigned end = std::min(total, first + kSessionsPerPage);
    for (unsigned i = first; i < end; ++i) {
        const SessionView& s = v->sessions[i];
        rte_tel_data* c = rte_tel_data_alloc();
        if (!c) return -1;
        rte_tel_data_start_dict(c);
        add_session(c, s);
        rte_tel_data_add_dict_container(d, std::to_string(s.remote.raw()).c_str(), c, 0);
    }
    add_next(d, end, total);
    return 0;
}

int cmd_session(const char*, const char* params, rte_tel_data* d) {
    std::lock_guard lock(g_mu);
    if (!g_dp || !params || !*params) return -1;
    RcuRead rcu(*g_dp);
    char* end = nullptr;
    const unsigned long rid = std::strtoul(params, &end, 10);
    if (*end != '\0') return -1;
    const SessionsView* v = g_dp->control_port().sessions_view();
    const SessionView* s = v ? v->by_remote(RemoteId(static_cast<std::uint32_t>(rid))) : nullptr;
    if (!s || !s->sid) return -1;
    rte_tel_data_start_dict(d);
    add_session(d, *s);
    std::string groups, subnets;
    for (const auto& g : s->groups) {
        if (!groups.empty()) groups.push_back(' ');
        groups.append(g);
    }
    for (const auto& p : s->subnets) {
        if (!subnets.empty()) subnets.push_back(' ');
        subnets.append(p.str());
    }
    rte_tel_data_add_dict_string(d, "groups", groups.substr(0, RTE_TEL_MAX_STRING_LEN - 1).c_str());
    rte_tel_data_add_dict_string(d, "subnets", subnets.substr(0, RTE_TEL_MAX_STRING_LEN - 1).c_str());
    return 0;
}

}  // namespace

void Telemetry::attach(Dataplane* dp) {
    std::lock_guard lock(g_mu);
    if (g_dp) rte_rcu_qsbr_thread_unregister(g_dp->qsbr(), g_dp->telemetry_reader_id());
    g_dp = dp;
    if (g_dp) rte_rcu_qsbr_thread_register(g_dp->qsbr(), g_dp->telemetry_reader_id());   // offline until a command runs
    if (g_registered) return;
    const bool ok = rte_telemetry_register_cmd("/p3/stats", cmd_stats, "p3 totals: lcore counters summed, drops") == 0 &&
                    rte_telemetry_register_cmd("/p3/drops", cmd_drops, "p3 drops by reason") == 0 &&
                    rte_telemetry_register_cmd("/p3/lcores", cmd_lcores, "p3 per worker lcore counters. Parameter: first worker (paged: next)") == 0 &&
                    rte_telemetry_register_cmd("/p3/ports", cmd_ports, "p3 LAN and WAN port counters and link state") == 0 &&
                    rte_telemetry_register_cmd("/p3/sessions", cmd_sessions, "p3 sessions: state and counters. Parameter: first session (paged: next)") == 0 &&
                    rte_telemetry_register_cmd("/p3/session", cmd_session,
                                               "p3 one session. Parameter: remote id") == 0;
    if (!ok) P3_LOG_WARN(DP_TELEMETRY, "some /p3 telemetry commands could not be registered");
    g_registered = true;
}

void Telemetry::detach() {
    std::lock_guard lock(g_mu);
    if (g_dp) rte_rcu_qsbr_thread_unregister(g_dp->qsbr(), g_dp->telemetry_reader_id());
    g_dp = nullptr;
}

int telemetry_call(const char* cmd, const char* params, rte_tel_data* d) {
    const std::string c = cmd ? cmd : "";
    if (c == "/p3/stats") return cmd_stats(cmd, params, d);
    if (c == "/p3/drops") return cmd_drops(cmd, params, d);
    if (c == "/p3/lcores") return cmd_lcores(cmd, params, d);
    if (c == "/p3/ports") return cmd_ports(cmd, params, d);
    if (c == "/p3/sessions") return cmd_sessions(cmd, params, d);
    if (c == "/p3/session") return cmd_session(cmd, params, d);
    return -1;
}

void set_telemetry_read_hook(void (*hook)(void*), void* ctx) noexcept {
    g_read_hook = hook;
    g_read_hook_ctx = ctx;
}

bool register_pdump() {
    if (rte_pdump_init() != 0) {
        P3_LOG_WARN(PDUMP, "rte_pdump_init: %s; dpdk-dumpcap cannot attach to this process",
                    rte_strerror(rte_errno));
        return false;
    }
    g_pdump = true;
    return true;
}

void unregister_pdump() {
    if (g_pdump) rte_pdump_uninit();
    g_pdump = false;
}

}  // namespace p3::dp
