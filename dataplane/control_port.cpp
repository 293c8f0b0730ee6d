// The control plane's port into the dataplane (see control_port.hpp): thin calls into the
// Dataplane's rings, resolver and key slots, and the two published views for telemetry.
#include "dataplane/control_port.hpp"

#include <rte_rcu_qsbr.h>
#include <rte_ring.h>

#include <algorithm>
#include <cstring>

#include "common/slots.hpp"
#include "dataplane/dataplane.hpp"
#include "dataplane/pressure.hpp"
#include "dataplane/resolver.hpp"
#include "dataplane/seq_reserve.hpp"

namespace p3::dp {

ControlPort::~ControlPort() {
    // No reader is left (telemetry detaches and the workers stop before the dataplane goes).
    delete view_.load(std::memory_order_relaxed);
    for (const auto& r : retired_) delete r.view;
}

// ---- rings ------------------------------------------------------------------------------

unsigned ControlPort::dequeue(CtlClass c, std::span<rte_mbuf*> out) noexcept {
    rte_ring* r = dp_.to_control_[static_cast<unsigned>(c)];
    if (!r) return 0;
    return rte_ring_sc_dequeue_burst(r, reinterpret_cast<void**>(out.data()), static_cast<unsigned>(out.size()),
                                     nullptr);
}

unsigned ControlPort::backlog(CtlClass c) const noexcept { return dp_.control_backlog(c); }

bool ControlPort::send(rte_mbuf* m) noexcept { return dp_.send_to_workers(m); }

rte_mbuf* ControlPort::alloc() noexcept { return rte_pktmbuf_alloc(dp_.pool()); }

bool ControlPort::to_resolver(rte_mbuf* m, std::uint64_t now_ms) {
    const PktMeta md = meta(m);
    switch (md.kind) {
        case MsgKind::arp: dp_.resolver_->on_arp(md.side, m, now_ms); return true;
        case MsgKind::nd: dp_.resolver_->on_nd(md.side, m, now_ms); return true;
        case MsgKind::hold: dp_.resolver_->on_hold(md.side, m, now_ms); return true;
        case MsgKind::peer_moved: {   // not the resolver's, but the dataplane's own all the same
            PeerMoved pm;   // one segment, as the worker wrote it (inbound.cpp)
            const bool whole = m->data_len == sizeof pm && m->pkt_len == sizeof pm;
            if (whole) std::memcpy(&pm, rte_pktmbuf_mtod(m, const void*), sizeof pm);
            if (whole && dp_.move_peer(md.session, pm, now_ms)) sessions_changed_ = true;
            rte_pktmbuf_free(m);
            return true;
        }
        default: return false;
    }
}

// ---- once per pass ----------------------------------------------------------------------

void ControlPort::reclaim() {
    dp_.slots().reclaim();
    std::size_t done = 0;
    while (done < retired_.size() && rte_rcu_qsbr_check(dp_.qsbr_, retired_[done].token, false) == 1)
        delete retired_[done++].view;
    retired_.erase(retired_.begin(), retired_.begin() + static_cast<std::ptrdiff_t>(done));
}

void ControlPort::housekeeping(std::uint64_t now_ms) {
    dp_.resolver_->poll(now_ms);
    dp_.seq_->poll(dp_.slots(), now_ms);   // static keys: the next sequence block on disk before it is needed
    dp_.pressure_->poll(now_ms);
    dp_.links_.poll(dp_.ports_, now_ms);
}

void ControlPort::publish(const ControlCounters& c, std::uint64_t now_ms) {
    std::uint64_t w[kWords];
    std::memcpy(w, &c, sizeof w);
    const std::uint64_t s = seq_.load(std::memory_order_relaxed);
    seq_.store(s + 1, std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_release);
    for (unsigned i = 0; i < kWords; ++i) words_[i].store(w[i], std::memory_order_relaxed);
    seq_.store(s + 2, std::memory_order_release);
    if (sessions_changed_ || now_ms - sessions_at_ms_ >= kSessionsEveryMs) {
        publish_sessions();
        sessions_changed_ = false;
        sessions_at_ms_ = now_ms;
    }
}

ControlCounters ControlPort::counters() const noexcept {
    std::uint64_t w[kWords];
    for (;;) {
        const std::uint64_t s = seq_.load(std::memory_order_acquire);
        for (unsigned i = 0; i < kWords; ++i) w[i] = words_[i].load(std::memory_order_relaxed);
        std::atomic_thread_fence(std::memory_order_acquire);
        if (!(s & 1) && seq_.load(std::memory_order_relaxed) == s) break;
    }
    ControlCounters c;
    std::memcpy(&c, w, sizeof w);
    return c;
}

// The control thread is the only writer of the session table, so it reads it here without
// further care; readers elsewhere get the copy, swapped in with one store and the old one
// freed after the grace period.
void ControlPort::publish_sessions() {
    if (!dp_.sessions_) return;   // not initialised: nothing to show
    auto* v = new SessionsView;
    const SessionTable& st = *dp_.sessions_;
    for (std::uint32_t sid : st.ids()) {
        const Session& s = st.get(sid);
        const SessionInfo& info = st.info(sid);
        v->sessions.push_back(SessionView{SessionId(sid), RemoteId(info.remote_id), st.state(sid), s.peer, s.tx_lanes,
                                          info.static_keys, s.esp, info.groups, info.subnets,
                                          dp_.session_totals(sid), info.peer_moves});
    }
    v->routes4 = dp_.routes_.routes4();
    v->routes6 = dp_.routes_.routes6();
    const SessionsView* old = view_.exchange(v, std::memory_order_acq_rel);
    if (old) retired_.push_back({rte_rcu_qsbr_start(dp_.qsbr_), old});
}

// ---- key slots --------------------------------------------------------------------------

std::optional<P3Id> ControlPort::reserve_rx_ids(std::uint32_t lanes) {
    auto base = dp_.reserve_rx_ids(lanes);
    if (!base) return std::nullopt;
    return P3Id(*base);
}

bool ControlPort::reserve_rx_ids_at(P3Id base, std::uint32_t lanes) {
    return dp_.slots().reserve_rx_at(wire::SlotId(base.raw()), lanes);
}

void ControlPort::release_rx_ids(P3Id base, std::uint32_t from, std::uint32_t to) {
    // Retiring an ID that is only reserved frees it; one that is free stays free.
    for (std::uint32_t n = from; n < to; ++n) dp_.slots().retire_rx(wire::SlotId(base.raw()).lane(n));
}

bool ControlPort::install_rx(SessionId sid, P3Id base, const LaneKeys& k) {
    return dp_.install_rx(sid.raw(), base.raw(), k);
}

bool ControlPort::install_tx(SessionId sid, P3Id peer_base, const LaneKeys& k) {
    sessions_changed_ = true;   // up, and its lanes
    return dp_.install_tx(sid.raw(), peer_base.raw(), k);
}

bool ControlPort::install_tx_from(SessionId sid, P3Id peer_base, const LaneKeys& k, std::uint64_t last_seq) {
    sessions_changed_ = true;
    return dp_.install_tx_at(sid.raw(), peer_base.raw(), k, last_seq, wire::kSeqLast);
}

bool ControlPort::install_next_rx(SessionId sid, const LaneKeys& k) { return dp_.install_next_rx(sid.raw(), k); }

void ControlPort::rx_switch_at(SessionId sid, std::span<const std::uint64_t> first_seq) {
    dp_.rx_switch_at(sid.raw(), first_seq);
}

bool ControlPort::rx_next_seen(SessionId sid) const noexcept { return dp_.rx_next_seen(sid.raw()); }

void ControlPort::promote_rx(SessionId sid) { dp_.promote_rx(sid.raw()); }

void ControlPort::drop_next_rx(SessionId sid) { dp_.drop_next_rx(sid.raw()); }

bool ControlPort::switch_tx(SessionId sid, const LaneKeys& k, std::span<std::uint64_t> first_seq_out) {
    return dp_.switch_tx(sid.raw(), k, first_seq_out);
}

std::uint64_t ControlPort::tx_packets(SessionId sid) const noexcept { return dp_.tx_packets(sid.raw()); }

bool ControlPort::esp_install_rx(SessionId sid, const EspSa& sa) { return dp_.esp_install_rx(sid.raw(), sa); }

bool ControlPort::esp_install_tx(SessionId sid, const EspSa& sa) {
    sessions_changed_ = true;   // up, and ESP
    return dp_.esp_install_tx(sid.raw(), sa);
}

void ControlPort::esp_remove_rx(SessionId sid, std::uint32_t spi) { dp_.esp_remove_rx(sid.raw(), spi); }

void ControlPort::clear_keys(SessionId sid) {
    sessions_changed_ = true;
    dp_.clear_keys(sid.raw());
}

std::uint64_t ControlPort::tx_last_seq(SessionId sid, std::uint16_t lane) const noexcept {
    return dp_.tx_last_seq(sid.raw(), lane);
}

unsigned ControlPort::tx_lanes() const noexcept { return dp_.tx_lanes(); }
bool ControlPort::set_cluster_role(bool primary) {
    return dp_.set_cluster_role(primary);
}
bool ControlPort::cluster_primary() const noexcept { return dp_.cluster_primary(); }

// ---- sessions ---------------------------------------------------------------------------

SessionId ControlPort::session_of(RemoteId r) const noexcept { return SessionId(dp_.session_of(r.raw())); }

SessionState ControlPort::state(SessionId sid) const noexcept { return dp_.sessions_->state(sid.raw()); }

bool ControlPort::set_peer(SessionId sid, const IpAddr& peer, std::uint16_t udp_src, std::uint16_t udp_dst) {
    sessions_changed_ = true;
    return dp_.set_peer(sid.raw(), peer, udp_src, udp_dst);
}

const config::Config& ControlPort::config() const noexcept { return dp_.config(); }
Capture& ControlPort::capture() noexcept { return dp_.capture(); }
std::uint16_t ControlPort::port_id(Side s) const noexcept { return dp_.port(s).port_id; }
const std::string& ControlPort::port_name(Side s) const noexcept { return dp_.port(s).name; }

// ---- remotes ----------------------------------------------------------------------------

SessionId ControlPort::add_remote(const config::Remote& r) {
    const std::uint32_t sid = dp_.add_remote(r);
    if (sid) sessions_changed_ = true;
    return SessionId(sid);
}

bool ControlPort::remove_remote(RemoteId r) {
    if (!dp_.remove_remote(r.raw())) return false;
    sessions_changed_ = true;
    return true;
}

bool ControlPort::set_subnets(SessionId sid, std::span<const Prefix> subnets) {
    if (!dp_.set_subnets(sid.raw(), subnets)) return false;
    sessions_changed_ = true;
    return true;
}

void ControlPort::set_groups(SessionId sid, std::vector<std::string> groups) {
    dp_.set_groups(sid.raw(), std::move(groups));
    sessions_changed_ = true;
}

std::vector<std::pair<std::string, std::uint64_t>> ControlPort::drops() const {
    std::vector<std::pair<std::string, std::uint64_t>> out;
    for (const auto& d : kDrops)
        if (const std::uint64_t n = dp_.drops(d.drop)) out.emplace_back(std::string(d.name), n);
    return out;
}

}  // namespace p3::dp
