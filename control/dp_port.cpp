// The control plane's adapter over the dataplane's ControlPort (see dp_port.hpp).
#include "control/dp_port.hpp"

#include <rte_mbuf.h>

#include <algorithm>
#include <cstring>

#include "common/log.hpp"
#include "common/wire_limits.hpp"
#include "control/keylog.hpp"

namespace p3::control {

namespace {
dp::LaneKeys lane_keys(const channel::KeyMaterial& k, std::uint32_t lanes, bool size_hiding) {
    dp::LaneKeys lk;
    lk.key = k.key.span();
    lk.salt = k.salt.span();
    lk.lanes = lanes;
    lk.size_hiding = size_hiding;
    return lk;
}
}  // namespace

// ---- the setup engine's sink ------------------------------------------------------------

// This side's lanes of a session with the remote: L = the remote's lanes setting (within
// wire::kMaxLanes), or one per sending worker; in a cluster the session has max_members x L
// and this member sends on its L at (member - 1) x L (docs/cluster.md §Lanes of a member).
config::MemberLanes DataplanePort::member_lanes(std::uint32_t remote_id) const {
    std::uint32_t per = port_.tx_lanes();
    for (const auto& r : port_.config().remotes)
        if (r.id == remote_id && r.params.lanes != 0) per = std::min(r.params.lanes, wire::kMaxLanes);
    return config::member_lanes(port_.config(), per);
}

std::uint32_t DataplanePort::lanes_for(std::uint32_t remote_id) const { return member_lanes(remote_id).total; }

std::optional<std::uint32_t> DataplanePort::reserve_rx_id(std::uint32_t /*remote_id*/, std::uint32_t peer_lanes) {
    const std::uint32_t width = peer_lanes >= 1 && peer_lanes <= wire::kMaxLanes ? peer_lanes : wire::kMaxLanes;
    auto id = port_.reserve_rx_ids(width);
    if (!id) return std::nullopt;
    reserved_[id->raw()] = width;
    return id->raw();
}

std::uint32_t DataplanePort::give_back(std::uint32_t rx_id, std::uint32_t from) {
    auto it = reserved_.find(rx_id);
    const std::uint32_t width = it == reserved_.end() ? wire::kMaxLanes : it->second;
    port_.release_rx_ids(P3Id(rx_id), from, width);
    if (it != reserved_.end()) reserved_.erase(it);
    return width;
}

void DataplanePort::release_rx_id(std::uint32_t rx_id) { give_back(rx_id); }

bool DataplanePort::install(setup::EstablishedSession&& s) {
    const SessionId sid = port_.session_of(RemoteId(s.remote_id));
    if (!sid) {
        P3_LOG_ERROR(SETUP_KEYS_REJECTED, "setup with remote %u: no dataplane session for it", s.remote_id);
        return false;
    }
    if (s.wire == config::WireMode::esp) return install_esp(s, sid);
    // A cluster member that carried this session from another member's record (it took over)
    // drops that first: its inbound P3 IDs would stay taken, and its keys valid, beside the
    // new session's, and a later record from another member could not claim those IDs.
    if (replicas_.erase(s.remote_id)) port_.clear_keys(sid);
    // Who sends on how many lanes: the push says (params.lanes = the secondary's, primary_lanes
    // = the primary's); 0 means one per worker of that machine.
    // The block reserved for it is as wide as the peer announced (or the most a peer may use);
    // a secondary learns the primary's lanes from the push and gives the rest back.
    const bool primary = s.local_role == config::Role::primary;
    const auto res = reserved_.find(s.rx_p3_id);
    const std::uint32_t width = res == reserved_.end() ? wire::kMaxLanes : res->second;
    std::uint32_t peer_lanes = primary ? width : s.config.primary_lanes;
    if (peer_lanes == 0 || peer_lanes > width) peer_lanes = width;
    const bool hiding = s.config.params.size_hiding;
    const dp::LaneKeys rx{s.data_rx.key.span(), s.data_rx.salt.span(), peer_lanes, hiding};
    const config::MemberLanes ml = member_lanes(s.remote_id);
    const std::uint32_t lanes = ml.total;   // what we announced or pushed; we send on ours of them
    const dp::LaneKeys tx{s.data_tx.key.span(), s.data_tx.salt.span(), ml.per_member, hiding, true, ml.offset};
    const P3Id rx_id(s.rx_p3_id), tx_id(s.tx_p3_id);
    // Behind a NAT, P3 travels in UDP between the nat_ports (set before install_tx, which
    // builds the outer headers). The primary addresses the secondary where the NAT showed it;
    // which port the NAT maps the secondary's nat_port to is not visible in the setup
    // exchange (which runs on another port), so the primary assumes a port-preserving NAT
    // (following another mapping is not done yet: docs/setup-exchange.md §NAT detection).
    if (s.nat()) {
        const std::uint16_t port = port_.config().local.nat_port;
        if (!port_.set_peer(sid, s.peer.addr, port, port)) {
            give_back(s.rx_p3_id);
            return false;
        }
    }
    // A secondary routes by what its primary pushed (DESIGN.md §Session life 6): the primary's
    // subnets, whatever the file said (it may say nothing). Routes first: the first packet
    // either way finds them. Unchanged prefixes never leave the table.
    if (!primary && !s.config.primary_subnets.empty() &&
        !port_.set_subnets(sid, std::span<const Prefix>(s.config.primary_subnets))) {
        P3_LOG_ERROR(SETUP_KEYS_REJECTED, "setup with remote %u: the pushed subnets cannot be routed", s.remote_id);
        give_back(s.rx_p3_id);
        return false;
    }
    // Inbound first: the peer may send as soon as it has our answer.
    if (!port_.install_rx(sid, rx_id, rx)) {
        give_back(s.rx_p3_id);
        return false;
    }
    if (!port_.install_tx(sid, tx_id, tx)) {
        port_.clear_keys(sid);   // the inbound lanes just installed go with the session's keys
        give_back(s.rx_p3_id);
        return false;
    }
    keylog::write(sid.raw(), s.remote_id, keylog::Dir::rx, rx_id.raw(), peer_lanes, rx.key, rx.salt);
    keylog::write(sid.raw(), s.remote_id, keylog::Dir::tx, tx_id.raw(), lanes, tx.key, tx.salt);
    give_back(s.rx_p3_id, peer_lanes);   // the lanes the peer does not use
    ++installed_;
    if (on_up_) on_up_(s, sid, lanes, peer_lanes);
    return true;
}

void DataplanePort::adopt_replica(const cluster::SessionRecord& r) {
    if (r.rx_ids.empty() || r.tx_ids.empty()) return;
    ReplicaKeys rep;
    rep.rx_base = r.rx_ids[0];
    rep.tx_base = r.tx_ids[0];
    rep.rx_lanes = static_cast<std::uint32_t>(r.rx_ids.size());
    rep.rx_cur = r.rx_cur.clone();
    rep.rx_next = r.rx_next.clone();
    rep.tx_cur = r.tx_cur.clone();
    replicas_.insert_or_assign(r.remote_id, std::move(rep));
    // Its control packets now go to the next holder (docs/cluster.md §Forwarded control messages).
    if (const SessionId sid = port_.session_of(RemoteId(r.remote_id))) replica_sids_[sid.raw()] = r.remote_id;
}

// ---- the channel's link ---------------------------------------------------------------

bool DataplanePort::Link::install_next_rx(const channel::KeyMaterial& data) {
    if (!port_.install_next_rx(ids_.sid, lane_keys(data, ids_.rx_lanes, size_hiding_))) return false;
    if (on_keys) on_keys(KeyStep::next_rx, &data);
    keylog::write(ids_.sid.raw(), ids_.remote.raw(), keylog::Dir::rx, ids_.rx_base, ids_.rx_lanes, data.key.span(),
                  data.salt.span());
    return true;
}

bool DataplanePort::Link::switch_tx(const channel::KeyMaterial& data, std::vector<std::uint64_t>& first_seq) {
    first_seq.assign(ids_.tx_lanes, 0);
    // The other members switch their own lanes on hearing it: the peer already holds these
    // keys as its next inbound keys (it announced them before we switch).
    if (on_keys) on_keys(KeyStep::tx_switching, &data);
    // Written before the switch: a capture may hold the first packet under the key before the
    // port returns.
    keylog::write(ids_.sid.raw(), ids_.remote.raw(), keylog::Dir::tx, ids_.tx_base, ids_.tx_lanes, data.key.span(),
                  data.salt.span());
    return port_.switch_tx(ids_.sid, lane_keys(data, ids_.tx_lanes, size_hiding_), first_seq);
}

void DataplanePort::Link::send_control(std::span<const std::uint8_t> inner) {
    rte_mbuf* m = port_.alloc();
    if (m == nullptr || inner.size() > rte_pktmbuf_tailroom(m)) {
        if (m) rte_pktmbuf_free(m);
        ++send_failures_;
        return;
    }
    char* p = rte_pktmbuf_append(m, static_cast<std::uint16_t>(inner.size()));
    std::memcpy(p, inner.data(), inner.size());
    dp::PktMeta& md = dp::meta(m);
    md = dp::PktMeta{};
    md.kind = dp::MsgKind::tx_inner;
    md.side = dp::Side::wan;
    md.session = ids_.sid.raw();
    if (!port_.send(m)) {
        rte_pktmbuf_free(m);
        ++send_failures_;
    }
}

}  // namespace p3::control
