// A cluster member installs the sessions another member replicated (see dp_port.hpp,
// docs/cluster.md §Replicated keys): one record carries the key material every lane is derived
// from (HKDF with the lane number, in the dataplane), so the member publishes the peer's lanes
// under the P3 IDs the record names and sends on its own lanes at its offset. Key material is
// split into key and salt inside SecretBytes (channel::KeyMaterial) and wiped with them.
#include "control/dp_port.hpp"

#include <ctime>

#include "common/log.hpp"
#include "control/keylog.hpp"

namespace p3::control {

namespace {

const config::Remote* remote_of(const config::Config& cfg, std::uint32_t id) {
    for (const auto& r : cfg.remotes)
        if (r.id == id) return &r;
    return nullptr;
}

dp::LaneKeys keys_of(const channel::KeyMaterial& k, std::uint32_t lanes, bool hiding, std::uint32_t offset = 0) {
    return dp::LaneKeys{k.key.span(), k.salt.span(), lanes, hiding, true, offset};
}

}  // namespace

DataplanePort::Replica DataplanePort::apply_replica(const cluster::SessionRecord& r) {
    const SessionId sid = port_.session_of(RemoteId(r.remote_id));
    const config::Remote* rc = remote_of(port_.config(), r.remote_id);
    if (!sid || !rc) return Replica::unknown_remote;
    // The same lanes on every member: max_members x L, the peer's inbound lanes within a
    // session's, P3 and not ESP (an ESP SA has one sequence: not shared by members).
    const config::MemberLanes ml = member_lanes(r.remote_id);
    if (rc->wire != config::WireMode::p3 || r.wire != static_cast<std::uint8_t>(config::WireMode::p3) ||
        r.lanes != ml.total || r.tx_ids.size() != ml.total || r.rx_ids.empty() || r.rx_ids.size() > wire::kMaxLanes)
        return Replica::mismatch;
    if (!channel::KeyMaterial::from_wire(r.rx_cur.span()).valid() ||
        !channel::KeyMaterial::from_wire(r.tx_cur.span()).valid())
        return Replica::mismatch;
    auto it = replicas_.find(r.remote_id);
    if (it == replicas_.end() || it->second.rx_base != r.rx_ids[0] || it->second.tx_base != r.tx_ids[0] ||
        it->second.rx_lanes != r.rx_ids.size()) {
        if (it != replicas_.end()) {   // set up again: the old lanes go
            port_.clear_keys(sid);
            replicas_.erase(it);
            replica_sids_.erase(sid.raw());
        }
        ReplicaKeys rep;
        const Replica res = replica_fresh(r, sid, rep);
        if (res == Replica::applied) {
            replicas_.emplace(r.remote_id, std::move(rep));
            replica_sids_[sid.raw()] = r.remote_id;
        }
        return res;
    }
    return replica_move(r, sid, it->second);
}

// The session as the record has it: inbound lanes at the record's P3 IDs with the current key
// (and the next one when a rekey is under way), this member's outbound lanes from sequence 1.
DataplanePort::Replica DataplanePort::replica_fresh(const cluster::SessionRecord& r, SessionId sid, ReplicaKeys& rep) {
    const config::Remote* rc = remote_of(port_.config(), r.remote_id);
    const bool hiding = rc->params.size_hiding;
    const config::MemberLanes ml = member_lanes(r.remote_id);
    const auto rx = channel::KeyMaterial::from_wire(r.rx_cur.span());
    const auto tx = channel::KeyMaterial::from_wire(r.tx_cur.span());
    const std::uint32_t rx_lanes = static_cast<std::uint32_t>(r.rx_ids.size());
    const P3Id rx_base(r.rx_ids[0]), tx_base(r.tx_ids[0]);
    if (r.peer_port != 0) {   // behind a NAT: P3 in UDP where the holder found the peer
        IpAddr a;
        a.family = r.peer_v6 ? 6 : 4;
        a.bytes = r.peer_addr;
        if (!port_.set_peer(sid, a, port_.config().local.nat_port, r.peer_port)) return Replica::refused;
    }
    if (!port_.reserve_rx_ids_at(rx_base, rx_lanes)) return Replica::refused;
    if (!port_.install_rx(sid, rx_base, keys_of(rx, rx_lanes, hiding))) return Replica::refused;   // IDs released
    // The peer keeps one replay window per lane, across keys and across this member's lives:
    // a member that restarts (and so installs the session from a record again) must not send
    // below what it sent before. A lane sends fewer than 2^24 packets a second (over 16 Mpps),
    // so starting at the clock's seconds << 24 always lands above an earlier life's sequences.
    const std::uint64_t from = static_cast<std::uint64_t>(std::time(nullptr)) << 24;
    if (!port_.install_tx_from(sid, tx_base, keys_of(tx, ml.per_member, hiding, ml.offset), from)) {
        port_.clear_keys(sid);
        return Replica::refused;
    }
    keylog::write(sid.raw(), r.remote_id, keylog::Dir::rx, rx_base.raw(), rx_lanes, rx.key.span(), rx.salt.span());
    keylog::write(sid.raw(), r.remote_id, keylog::Dir::tx, tx_base.raw(), ml.total, tx.key.span(), tx.salt.span());
    rep.rx_base = rx_base.raw();
    rep.tx_base = tx_base.raw();
    rep.rx_lanes = rx_lanes;
    rep.rx_cur = r.rx_cur.clone();
    rep.tx_cur = r.tx_cur.clone();
    const auto next = channel::KeyMaterial::from_wire(r.rx_next.span());
    if (next.valid() && port_.install_next_rx(sid, keys_of(next, rx_lanes, hiding))) {
        keylog::write(sid.raw(), r.remote_id, keylog::Dir::rx, rx_base.raw(), rx_lanes, next.key.span(), next.salt.span());
        rep.rx_next = r.rx_next.clone();
    }
    return Replica::applied;
}

// A later record of the same session: what changed since, in the order the holder did it.
DataplanePort::Replica DataplanePort::replica_move(const cluster::SessionRecord& r, SessionId sid, ReplicaKeys& rep) {
    const bool hiding = remote_of(port_.config(), r.remote_id)->params.size_hiding;
    const config::MemberLanes ml = member_lanes(r.remote_id);
    bool changed = false;
    auto next_rx = [&](const SecretBytes& material) {
        const auto k = channel::KeyMaterial::from_wire(material.span());
        if (!k.valid() || !port_.install_next_rx(sid, keys_of(k, rep.rx_lanes, hiding))) return false;
        keylog::write(sid.raw(), r.remote_id, keylog::Dir::rx, rep.rx_base, rep.rx_lanes, k.key.span(), k.salt.span());
        rep.rx_next = material.clone();
        return true;
    };
    if (!r.rx_cur.equals(rep.rx_cur.span())) {
        // The holder promoted its next inbound key (or this member missed the record that
        // brought it: it becomes next now). Promoted, packets under the old key are refused.
        if (!rep.rx_next.equals(r.rx_cur.span()) && !next_rx(r.rx_cur)) return Replica::refused;
        port_.promote_rx(sid);
        rep.rx_cur = r.rx_cur.clone();
        rep.rx_next = SecretBytes();
        changed = true;
    }
    if (!r.rx_next.empty() && !r.rx_next.equals(rep.rx_next.span())) {
        if (!next_rx(r.rx_next)) return Replica::refused;
        changed = true;
    } else if (r.rx_next.empty() && !rep.rx_next.empty()) {
        port_.drop_next_rx(sid);
        rep.rx_next = SecretBytes();
        changed = true;
    }
    if (!r.tx_cur.equals(rep.tx_cur.span())) {
        // The holder switches its outbound lanes: the peer holds these keys as its next ones
        // for every lane, so this member's lanes switch too, their sequences carried on.
        const auto tx = channel::KeyMaterial::from_wire(r.tx_cur.span());
        std::vector<std::uint64_t> first(ml.total, 0);
        keylog::write(sid.raw(), r.remote_id, keylog::Dir::tx, rep.tx_base, ml.total, tx.key.span(), tx.salt.span());
        if (!port_.switch_tx(sid, keys_of(tx, ml.per_member, hiding, ml.offset), first)) return Replica::refused;
        rep.tx_cur = r.tx_cur.clone();
        changed = true;
    }
    return changed ? Replica::applied : Replica::unchanged;
}

}  // namespace p3::control
