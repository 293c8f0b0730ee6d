// Remotes on the dataplane: a session and its routes installed, changed and removed, at start
// and while workers forward traffic (the control thread's run-time configuration changes).
//
// Order is what keeps traffic whole while it changes:
//   add      session (down) -> its routes -> static keys (up). A packet routed before the keys
//            is answered (RST/unreachable), never sent to a half-built session.
//   subnets  new routes first, then the old ones go; a prefix in both never leaves the table,
//            so a packet to it never misses a route (IPv4: one rte_lpm change each, RCU-safe;
//            IPv6: one copy swap for the lot, routes.hpp).
//   remove   routes -> keys retired -> session unused -> one RCU grace period (no worker holds
//            the session id, its slots or its P3 IDs any more) -> slots freed and wiped, the
//            per-lcore counters zeroed -> only then the id is free for another remote.
// A session id is the remote's id when that fits and is free (logs, telemetry and p3ctl then
// agree), else the lowest free one.
#include <algorithm>

#include <rte_rcu_qsbr.h>

#include "common/log.hpp"
#include "common/slots.hpp"
#include "dataplane/dataplane.hpp"
#include "dataplane/worker.hpp"

namespace p3::dp {

namespace {

std::string list(std::span<const Prefix> ps) {
    std::string s;
    for (const auto& p : ps) {
        if (!s.empty()) s.push_back(' ');
        s.append(p.str());
    }
    return s.empty() ? "none" : s;
}

}  // namespace

std::uint32_t Dataplane::free_session(std::uint32_t remote_id) const noexcept {
    auto is_free = [&](std::uint32_t i) {
        return sessions_->state(i) == SessionState::unused && sessions_->info(i).remote_id == 0;
    };
    if (SessionTable::valid_id(remote_id) && is_free(remote_id)) return remote_id;
    for (std::uint32_t i = 1; i < kMaxSessions; ++i)
        if (is_free(i)) return i;
    return 0;
}

// A prefix routed to a session other than `sid` (0: any session) is refused, with the change.
bool Dataplane::routes_free(std::span<const Prefix> ps, std::uint32_t sid, std::uint32_t remote_id) const {
    for (const auto& p : ps) {
        const std::uint32_t o = routes_.owner(p);
        if (o != 0 && o != sid) {
            P3_LOG_ERROR(DP_ROUTE_TAKEN, "remote %u: subnet %s is routed to session %u (remote %u)", remote_id,
                         p.str().c_str(), o, sessions_->info(o).remote_id);
            return false;
        }
    }
    return true;
}

std::uint32_t Dataplane::add_remote(const config::Remote& r) {
    const IpAddr& wan = addr_[1].addr.addr;
    if (r.address.family != wan.family) {
        P3_LOG_ERROR(DP_CONFIG, "%s:%d: remote %u: address %s is IPv%u but the WAN address %s is IPv%u",
                     cfg_.source.c_str(), r.line, r.id, r.address.str().c_str(), r.address.family,
                     wan.str().c_str(), wan.family);
        return 0;
    }
    if (const std::uint32_t had = session_of(r.id)) {
        P3_LOG_ERROR(DP_SESSION, "remote %u is installed already (session %u)", r.id, had);
        return 0;
    }
    if (!routes_free(r.subnets, 0, r.id)) return 0;
    const std::uint32_t sid = free_session(r.id);
    if (!sid) {
        P3_LOG_ERROR(DP_SESSION, "remote %u: all %u sessions in use", r.id, kMaxSessions - 1);
        return 0;
    }
    Session& s = sessions_->at(sid);
    s.id = r.id;
    s.peer = r.address;
    s.udp_encap = false;
    s.udp_src = s.udp_dst = 0;
    s.tx_lanes = static_cast<std::uint16_t>(tx_lanes_);
    SessionInfo& info = sessions_->info(sid);
    info.remote_id = r.id;
    info.groups = r.groups;
    info.subnets = r.subnets;
    info.static_keys = r.static_keys.has_value();
    sessions_->set_state(sid, SessionState::down);
    if (!routes_.add_many(r.subnets, sid)) {
        // Nothing routes to it (add_many took its routes back) and it has no keys.
        sessions_->set_state(sid, SessionState::unused);
        info = SessionInfo{};
        return 0;
    }
    if (r.static_keys && !install_static(r, sid)) {
        retire_session(sid);
        return 0;
    }
    if (started_)
        P3_LOG_INFO(DP_REMOTE_CHANGED, "remote %u: session %u installed (%s), subnets %s", r.id, sid,
                    r.static_keys ? "static keys" : "down until keys arrive", list(r.subnets).c_str());
    return sid;
}

std::uint32_t Dataplane::session_of(std::uint32_t remote_id) const noexcept {
    if (remote_id == 0) return 0;
    for (std::uint32_t i = 1; i < kMaxSessions; ++i)
        if (sessions_->info(i).remote_id == remote_id && sessions_->state(i) != SessionState::unused) return i;
    return 0;
}

bool Dataplane::remove_remote(std::uint32_t remote_id) {
    const std::uint32_t sid = session_of(remote_id);
    if (!sid) return false;
    const std::string subnets = list(sessions_->info(sid).subnets);
    retire_session(sid);
    P3_LOG_INFO(DP_REMOTE_CHANGED, "remote %u: session %u removed with its routes (%s)", remote_id, sid,
                subnets.c_str());
    return true;
}

// Routes first (no new packet picks the session), then its keys and the session; after the
// grace period nothing of it is in use: slots freed, counters zeroed, the id free again.
void Dataplane::retire_session(std::uint32_t sid) {
    SessionInfo& info = sessions_->info(sid);
    routes_.remove_many(info.subnets);   // a failure is logged; the rest still goes
    clear_keys(sid);
    sessions_->set_state(sid, SessionState::unused);
    rte_rcu_qsbr_synchronize(qsbr_, RTE_QSBR_THRID_INVALID);
    slots().reclaim();
    // No worker counts for this id any more (no route, no slot, state unused): the next
    // remote to get it starts from zero.
    for (Lcore* L : lcores_) {
        SessionCounters& c = L->sessions[sid];
        for (Counter* x : {&c.tx_pkts, &c.tx_bytes, &c.rx_pkts, &c.rx_bytes, &c.tx_dropped, &c.rx_auth, &c.rx_replay,
                           &c.rx_dropped, &c.rx_old_key, &c.rx_policy, &c.tx_down})
            x->reset();
    }
    info = SessionInfo{};
}

bool Dataplane::set_subnets(std::uint32_t sid, std::span<const Prefix> subnets) {
    if (!SessionTable::valid_id(sid) || sessions_->state(sid) == SessionState::unused) {
        P3_LOG_ERROR(DP_ROUTE, "subnets for session %u, which is not installed", sid);
        return false;
    }
    SessionInfo& info = sessions_->info(sid);
    std::vector<Prefix> next, add, gone;
    for (const auto& p : subnets)
        if (std::find(next.begin(), next.end(), p) == next.end()) next.push_back(p);
    for (const auto& p : next)
        if (std::find(info.subnets.begin(), info.subnets.end(), p) == info.subnets.end()) add.push_back(p);
    for (const auto& p : info.subnets)
        if (std::find(next.begin(), next.end(), p) == next.end()) gone.push_back(p);
    if (!routes_free(add, sid, info.remote_id)) return false;
    if (!routes_.add_many(add, sid)) return false;   // logged; nothing changed
    routes_.remove_many(gone);                         // a failure is logged; the new ones stand
    info.subnets = std::move(next);
    P3_LOG_INFO(DP_REMOTE_CHANGED, "remote %u: session %u routes %s (added %s, removed %s)", info.remote_id, sid,
                list(info.subnets).c_str(), list(add).c_str(), list(gone).c_str());
    return true;
}

void Dataplane::set_groups(std::uint32_t sid, std::vector<std::string> groups) {
    if (!SessionTable::valid_id(sid) || sessions_->state(sid) == SessionState::unused) return;
    sessions_->info(sid).groups = std::move(groups);
}

}  // namespace p3::dp
