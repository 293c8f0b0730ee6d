// The control thread's key API of the dataplane: the key slot table and what goes in it.
//
// Owns: the slot table (common/slots.hpp: TX slots by (session, lane), RX slots by P3 ID, read
// by workers under the dataplane's RCU, wiped when freed), the inbound ID blocks each session
// holds (so its keys retire as a whole), the rekey of a session's lanes (next inbound keys,
// their switch points, promotion; the outbound switch and its first sequences: only keys
// change, never IDs or sequences), the session's peer (address, UDP ports) the slots are
// built for, and static-key sessions with their persisted sequence marks. The contract of the
// calls is in control_port.hpp; nothing here runs on a worker.
//
// A slot is built whole here and published with one store: everything a worker would otherwise
// decide per packet from the keys (key size, size hiding, outer family, UDP) is resolved into
// the slot when it is built (common/wire.hpp: TxView, RxRef).
// Lanes: a worker sends under its own lane only (Lcore::lane), so a TX slot's sequence has one
// writer; all packets of one P3 ID reach one WAN queue, so an RX slot's window has one writer.
#include <algorithm>
#include <cstdio>
#include <map>
#include <new>
#include <vector>

#include "common/log.hpp"
#include "common/slots.hpp"
#include "common/wire.hpp"
#include "dataplane/fastpath.hpp"
#include "dataplane/seq_reserve.hpp"

namespace p3::dp {

// The slot table and, per session, the inbound blocks it holds (so a session's keys can be
// retired as a whole). Control thread only, but for the table's lookups.
struct Dataplane::KeyState {
    struct RxBlock {
        std::uint32_t base;
        std::uint32_t lanes;
    };
    std::unique_ptr<wire::SlotTable> table;
    std::map<std::uint32_t, std::vector<RxBlock>> rx_blocks;   // session -> blocks
    std::map<std::uint32_t, std::vector<std::uint32_t>> esp_rx;   // session -> its inbound ESP SPIs
    const RxBlock* block_of(std::uint32_t sid) const noexcept;
};

bool Dataplane::keys_create(unsigned lanes) {
    keys_ = new (std::nothrow) KeyState;
    if (keys_ == nullptr) return false;
    try {
        wire::SlotTableConfig c;
        c.sessions = kMaxSessions;
        c.lanes = std::max(1u, lanes);
        keys_->table = std::make_unique<wire::SlotTable>(c, qsbr_);
    } catch (const std::exception& e) {
        P3_LOG_ERROR(DP_TABLES, "key slot table: %s", e.what());
        return false;
    }
    return true;
}

void Dataplane::keys_destroy() noexcept {
    delete keys_;   // the table frees (and wipes) every slot: no reader is online any more
    keys_ = nullptr;
}

wire::SlotTable& Dataplane::slots() noexcept { return *keys_->table; }

void Dataplane::clear_keys_now(std::uint32_t) {}

std::optional<std::uint32_t> Dataplane::reserve_rx_ids(std::uint32_t lanes) {
    auto id = keys_->table->reserve_rx(lanes);
    if (!id) return std::nullopt;
    return id->raw();
}

bool Dataplane::install_rx(std::uint32_t sid, std::uint32_t base_id, const LaneKeys& k) {
    if (!SessionTable::valid_id(sid) || sessions_->state(sid) == SessionState::unused) {
        P3_LOG_ERROR(DP_KEYS, "inbound keys for session %u, which is not installed", sid);
        return false;
    }
    wire::RxParams p;
    p.session = sid;
    p.size_hiding = k.size_hiding ? wire::SizeHiding::on : wire::SizeHiding::off;
    p.replay_window = k.anti_replay ? cfg_.dataplane.replay_window : wire::kReplayOff;
    // Packets under these keys come from the session's peer only (set_peer before this call):
    // one from elsewhere would reach another queue and race this lane's replay window.
    const Session& ses = sessions_->get(sid);
    p.peer = ses.peer;
    p.peer_port = ses.udp_encap ? ses.udp_dst : 0;
    if (!keys_->table->publish_rx_lanes(wire::SlotId(base_id), k.lanes, k.key, k.salt, p)) {
        P3_LOG_ERROR(DP_KEYS, "session %u: inbound keys for P3 IDs 0x%x..+%u refused", sid, base_id, k.lanes);
        // The block was reserved for these keys: give it back (retiring a free ID is a no-op).
        for (std::uint32_t l = 0; l < k.lanes && l < wire::kMaxLanes; ++l)
            keys_->table->retire_rx(wire::SlotId(base_id).lane(l));
        return false;
    }
    keys_->rx_blocks[sid].push_back({base_id, k.lanes});
    return true;
}

bool Dataplane::install_tx(std::uint32_t sid, std::uint32_t peer_base_id, const LaneKeys& k) {
    return install_tx_at(sid, peer_base_id, k, 0, wire::kSeqLast);
}

// last_seq: the lanes count it as sent (static keys resume above their persisted mark);
// seq_limit: the last they may send until raised.
bool Dataplane::install_tx_at(std::uint32_t sid, std::uint32_t peer_base_id, const LaneKeys& k,
                              std::uint64_t last_seq, std::uint64_t seq_limit) {
    if (!SessionTable::valid_id(sid) || sessions_->state(sid) == SessionState::unused) {
        P3_LOG_ERROR(DP_KEYS, "outbound keys for session %u, which is not installed", sid);
        return false;
    }
    Session& ses = sessions_->at(sid);
    // Every lane the keys cover is sent on (docs/dataplane.md §Lanes: fewer lanes than sending
    // workers are shared, more are spread over them), as far as the slot table reaches.
    const std::uint32_t lanes = std::min(k.lanes, keys_->table->lanes());
    if (lanes < k.lanes) {
        P3_LOG_WARN(DP_LANES_CAPPED, "session %u (remote %u): %u lanes, of which the first %u are sent on (the "
                    "lanes of the remotes at start, or wire::kMaxLanes)", sid, ses.id, k.lanes, lanes);
    }
    wire::TxParams p;
    p.session = sid;
    p.peer_id = peer_base_id;
    p.outer.src = addr_[1].addr.addr;
    p.outer.dst = ses.peer;
    if (ses.udp_encap) {
        p.outer.udp_src = ses.udp_src;
        p.outer.udp_dst = ses.udp_dst;
    }
    p.size_hiding = k.size_hiding ? wire::SizeHiding::on : wire::SizeHiding::off;
    p.wan_mtu = addr_[1].mtu;
    p.last_seq = last_seq;
    p.seq_limit = seq_limit;
    // Lanes the new keys do not cover must not keep sending under the old ones.
    for (std::uint32_t l = lanes; l < keys_->table->lanes(); ++l) keys_->table->retire_tx(sid, static_cast<std::uint16_t>(l));
    if (lanes == 0 || !keys_->table->publish_tx_lanes(lanes, k.key, k.salt, p, k.lane_offset)) {
        P3_LOG_ERROR(DP_KEYS, "session %u: outbound keys for peer P3 IDs 0x%x..+%u refused", sid, peer_base_id, lanes);
        return false;
    }
    __atomic_store_n(&ses.tx_lanes, static_cast<std::uint16_t>(lanes), __ATOMIC_RELAXED);   // workers read it per run
    ses.tx_lane_offset = static_cast<std::uint16_t>(k.lane_offset);
    ses.esp = false;
    sessions_->set_state(sid, SessionState::up);
    return true;
}

// ---- standard ESP ----------------------------------------------------------------------------
// An inbound SA is an RX slot of kind ESP under its SPI (one lane, one key, its own window);
// the outbound SA is the TX slot of lane 0, every sending worker's (outbound.cpp reserves
// sequences per burst from its counter). A rekey is a new SA beside the old one, so nothing
// here changes a key in place.

static wire::WireKind esp_kind(const EspSa& sa) noexcept { return sa.esn ? wire::WireKind::esp_esn : wire::WireKind::esp; }

// A refused SPI that was only reserved goes back to the table; a published one (another SA's,
// the caller's mistake) is left alone.
static void release_spi(wire::SlotTable& t, std::uint32_t spi) {
    if (t.rx(spi) == nullptr) t.retire_rx(wire::SlotId(spi));
}

bool Dataplane::esp_install_rx(std::uint32_t sid, const EspSa& sa) {
    if (!SessionTable::valid_id(sid) || sessions_->state(sid) == SessionState::unused) {
        P3_LOG_ERROR(DP_KEYS, "inbound ESP SA for session %u, which is not installed", sid);
        release_spi(*keys_->table, sa.spi);
        return false;
    }
    wire::RxParams p;
    p.session = sid;
    p.kind = esp_kind(sa);
    p.replay_window = cfg_.dataplane.replay_window;
    const Session& ses = sessions_->get(sid);
    p.peer = ses.peer;
    p.peer_port = ses.udp_encap ? ses.udp_dst : 0;
    if (!keys_->table->publish_rx(wire::SlotId(sa.spi), sa.key, sa.salt, p)) {
        P3_LOG_ERROR(DP_KEYS, "session %u: inbound ESP SA under SPI 0x%08x refused", sid, sa.spi);
        release_spi(*keys_->table, sa.spi);
        return false;
    }
    keys_->esp_rx[sid].push_back(sa.spi);
    return true;
}

bool Dataplane::esp_install_tx(std::uint32_t sid, const EspSa& sa) {
    if (!SessionTable::valid_id(sid) || sessions_->state(sid) == SessionState::unused) {
        P3_LOG_ERROR(DP_KEYS, "outbound ESP SA for session %u, which is not installed", sid);
        return false;
    }
    Session& ses = sessions_->at(sid);
    wire::TxParams p;
    p.session = sid;
    p.lane = 0;
    p.peer_id = sa.spi;
    p.kind = esp_kind(sa);
    p.outer.src = addr_[1].addr.addr;
    p.outer.dst = ses.peer;
    if (ses.udp_encap) {
        p.outer.udp_src = ses.udp_src;
        p.outer.udp_dst = ses.udp_dst;
    }
    p.wan_mtu = addr_[1].mtu;
    if (!keys_->table->publish_tx(sa.key, sa.salt, p)) {
        P3_LOG_ERROR(DP_KEYS, "session %u: outbound ESP SA under SPI 0x%08x refused", sid, sa.spi);
        return false;
    }
    // P3 lanes of an earlier setup must not keep sending beside the SA.
    for (std::uint32_t l = 1; l < keys_->table->lanes(); ++l) keys_->table->retire_tx(sid, static_cast<std::uint16_t>(l));
    ses.tx_lanes = 1;
    ses.esp = true;
    sessions_->set_state(sid, SessionState::up);
    return true;
}

void Dataplane::esp_remove_rx(std::uint32_t sid, std::uint32_t spi) {
    if (!keys_) return;
    auto it = keys_->esp_rx.find(sid);
    if (it == keys_->esp_rx.end()) return;
    auto& v = it->second;
    auto at = std::find(v.begin(), v.end(), spi);
    if (at == v.end()) return;
    keys_->table->retire_rx(wire::SlotId(spi));
    v.erase(at);
    if (v.empty()) keys_->esp_rx.erase(it);
}

// A rekey changes only keys: the session's inbound block (the newest, if it was set up more
// than once without going down) keeps its IDs, windows and lanes.
const Dataplane::KeyState::RxBlock* Dataplane::KeyState::block_of(std::uint32_t sid) const noexcept {
    auto it = rx_blocks.find(sid);
    return it == rx_blocks.end() || it->second.empty() ? nullptr : &it->second.back();
}

bool Dataplane::install_next_rx(std::uint32_t sid, const LaneKeys& k) {
    const KeyState::RxBlock* b = keys_->block_of(sid);
    if (!b) {
        P3_LOG_ERROR(DP_KEYS, "session %u: next inbound keys refused: no inbound lanes installed", sid);
        return false;
    }
    if (!keys_->table->set_next_rx_lanes(wire::SlotId(b->base), b->lanes, k.key, k.salt)) {
        P3_LOG_ERROR(DP_KEYS, "session %u: next inbound keys for P3 IDs 0x%x..+%u refused", sid, b->base, b->lanes);
        return false;
    }
    return true;
}

void Dataplane::rx_switch_at(std::uint32_t sid, std::span<const std::uint64_t> first_seq) {
    const KeyState::RxBlock* b = keys_->block_of(sid);
    if (!b) return;
    for (std::uint32_t l = 0; l < b->lanes && l < first_seq.size(); ++l)
        keys_->table->announce_rx(wire::SlotId(b->base).lane(l), first_seq[l]);
}

bool Dataplane::rx_next_seen(std::uint32_t sid) const noexcept {
    const KeyState::RxBlock* b = keys_ ? keys_->block_of(sid) : nullptr;
    if (!b) return false;
    for (std::uint32_t l = 0; l < b->lanes; ++l)
        if (keys_->table->next_seen_rx(wire::SlotId(b->base).lane(l))) return true;
    return false;
}

void Dataplane::promote_rx(std::uint32_t sid) {
    const KeyState::RxBlock* b = keys_->block_of(sid);
    if (!b) return;
    for (std::uint32_t l = 0; l < b->lanes; ++l) keys_->table->promote_rx(wire::SlotId(b->base).lane(l));
}

void Dataplane::drop_next_rx(std::uint32_t sid) {
    const KeyState::RxBlock* b = keys_->block_of(sid);
    if (!b) return;
    for (std::uint32_t l = 0; l < b->lanes; ++l) keys_->table->drop_next_rx(wire::SlotId(b->base).lane(l));
}

bool Dataplane::switch_tx(std::uint32_t sid, const LaneKeys& k, std::span<std::uint64_t> first_seq_out) {
    if (!SessionTable::valid_id(sid) || sessions_->state(sid) != SessionState::up) {
        P3_LOG_ERROR(DP_KEYS, "session %u: outbound keys cannot switch: the session is not up", sid);
        return false;
    }
    const std::uint32_t lanes = sessions_->get(sid).tx_lanes, off = sessions_->get(sid).tx_lane_offset;
    // Our lanes' first sequences go where the session's lanes are (a cluster member's lie at
    // its offset); the other members' lanes stay 0: not announced, the receiver learns them.
    std::uint64_t mine[wire::kMaxLanes] = {};
    if (lanes == 0 || first_seq_out.size() < off + lanes ||
        !keys_->table->switch_tx(sid, lanes, k.key, k.salt, std::span<std::uint64_t>(mine, lanes), off)) {
        P3_LOG_ERROR(DP_KEYS, "session %u: outbound key switch on %u lane(s) refused", sid, lanes);
        return false;
    }
    for (std::size_t l = 0; l < first_seq_out.size(); ++l)
        first_seq_out[l] = l >= off && l < off + lanes ? mine[l - off] : 0;
    return true;
}

std::uint64_t Dataplane::tx_packets(std::uint32_t sid) const noexcept {
    if (!keys_ || !SessionTable::valid_id(sid)) return 0;
    std::uint64_t most = 0;
    for (std::uint32_t l = 0; l < keys_->table->lanes(); ++l)
        most = std::max(most, keys_->table->tx_packets(sid, static_cast<std::uint16_t>(l)));
    return most;
}

void Dataplane::clear_keys(std::uint32_t sid) {
    if (!keys_ || !SessionTable::valid_id(sid)) return;
    if (seq_) seq_->close(sid);
    if (sessions_->state(sid) == SessionState::up) sessions_->set_state(sid, SessionState::down);
    keys_->table->retire_tx_session(sid);
    auto it = keys_->rx_blocks.find(sid);
    if (it != keys_->rx_blocks.end()) {
        for (const auto& b : it->second)
            for (std::uint32_t l = 0; l < b.lanes; ++l) keys_->table->retire_rx(wire::SlotId(b.base).lane(l));
        keys_->rx_blocks.erase(it);
    }
    auto e = keys_->esp_rx.find(sid);
    if (e != keys_->esp_rx.end()) {
        for (std::uint32_t spi : e->second) keys_->table->retire_rx(wire::SlotId(spi));
        keys_->esp_rx.erase(e);
    }
}

bool Dataplane::set_peer(std::uint32_t sid, const IpAddr& peer, std::uint16_t udp_src, std::uint16_t udp_dst) {
    if (!SessionTable::valid_id(sid) || sessions_->state(sid) == SessionState::unused ||
        peer.family != addr_[1].addr.addr.family) {
        P3_LOG_ERROR(DP_KEYS, "session %u: peer %s refused (no such session, or not the WAN's family)", sid,
                     peer.str().c_str());
        return false;
    }
    Session& s = sessions_->at(sid);
    s.peer = peer;
    s.udp_encap = udp_dst != 0;
    s.udp_src = udp_dst != 0 ? udp_src : 0;
    s.udp_dst = udp_dst;
    return true;
}

// A worker authenticated a packet of the session from a new outer source, beyond its lane's
// window top (inbound.cpp): the peer moved (a NAT rebinding). Checked again here, since the
// session may have changed since the worker looked: still up, UDP-encapsulated, the P3 ID
// still one of its live slots, the address of the WAN's family. Outbound lanes first (a new
// key object each, same key and counter: SlotTable::move_tx), so a refusal changes nothing
// and the worker's next report tries again; then every inbound slot's expected peer (windows
// and keys stay). Reports of a move already applied (other lanes, other workers) are no-ops,
// and so is one back to where the session just came from within kMoveBackHoldMs: another
// lane's packet of the old mapping, delayed (the worker reports the slot again after
// kPeerMovedEveryMs if the peer really went back).
bool Dataplane::move_peer(std::uint32_t sid, const PeerMoved& pm, std::uint64_t now_ms) {
    if (!SessionTable::valid_id(sid) || sessions_->state(sid) != SessionState::up || pm.port == 0) return false;
    Session& ses = sessions_->at(sid);
    const wire::RxSlot* by = keys_->table->rx(pm.p3_id);
    if (!ses.udp_encap || by == nullptr || by->session() != sid || pm.addr.family != addr_[1].addr.addr.family)
        return false;
    if (addr_eq(pm.addr, ses.peer) && pm.port == ses.udp_dst) return false;
    SessionInfo& info = sessions_->info(sid);
    if (info.peer_moves != 0 && addr_eq(pm.addr, info.moved_from) && pm.port == info.moved_from_port &&
        now_ms - info.moved_at_ms < kMoveBackHoldMs)
        return false;
    wire::OuterSpec o;
    o.src = addr_[1].addr.addr;
    o.dst = pm.addr;
    o.udp_src = ses.udp_src;
    o.udp_dst = pm.port;
    if (ses.tx_lanes != 0 && !keys_->table->move_tx(sid, ses.tx_lanes, o)) return false;
    auto it = keys_->rx_blocks.find(sid);
    if (it != keys_->rx_blocks.end())
        for (const auto& b : it->second)
            for (std::uint32_t l = 0; l < b.lanes; ++l) keys_->table->move_rx_peer(wire::SlotId(b.base).lane(l), pm.addr, pm.port);
    if (auto e = keys_->esp_rx.find(sid); e != keys_->esp_rx.end())   // every live inbound ESP SA
        for (std::uint32_t spi : e->second) keys_->table->move_rx_peer(wire::SlotId(spi), pm.addr, pm.port);
    // ADDR:PORT, [v6]:PORT
    auto ep = [](const IpAddr& a, std::uint16_t port) {
        char buf[64];
        std::snprintf(buf, sizeof buf, a.is_v6() ? "[%s]:%u" : "%s:%u", a.str().c_str(), unsigned{port});
        return std::string(buf);
    };
    const std::string from = ep(ses.peer, ses.udp_dst), to = ep(pm.addr, pm.port);
    info.moved_from = ses.peer;
    info.moved_from_port = ses.udp_dst;
    info.moved_at_ms = now_ms;
    ses.peer = pm.addr;
    ses.udp_dst = pm.port;
    const std::uint64_t n = ++info.peer_moves;
    // A peer (or whoever controls the path to it) can cause this line: rate-limited.
    P3_PEER_LOG(info, Reason::DP_PEER_MOVED,
                "session %u (remote %u): the peer moved from %s to %s (authenticated packet, P3 ID 0x%08x, "
                "sequence %llu); move %llu of the session",
                sid, ses.id, from.c_str(), to.c_str(), pm.p3_id,
                static_cast<unsigned long long>(pm.seq), static_cast<unsigned long long>(n));
    return true;
}

std::uint64_t Dataplane::tx_last_seq(std::uint32_t sid, std::uint16_t lane) const noexcept {
    const wire::TxSlot* s = keys_ ? keys_->table->tx(sid, lane) : nullptr;
    return s ? s->last_seq() : 0;
}

bool Dataplane::install_static(const config::Remote& r, std::uint32_t sid) {
    const config::StaticKeys& k = *r.static_keys;
    const char* kt = r.params.key_type == config::KeyType::aes256 ? "AES-256" : "AES-128";
    P3_LOG_WARN(DP_STATIC_KEYS, "%s:%d: remote %u runs on static keys (%s, %u lane(s), tx P3 ID 0x%x, rx P3 ID 0x%x%s)",
                cfg_.source.c_str(), k.line ? k.line : r.line, r.id, kt, k.lanes, k.tx_id, k.rx_id,
                k.anti_replay ? "" : ", no anti-replay");
    const bool sh = r.params.size_hiding;
    // In a cluster (docs/cluster.md §Lanes of a member) lanes is each member's: the session
    // has max_members x lanes each way; this member sends on its own, receives on all.
    const config::MemberLanes ml = config::member_lanes(cfg_, k.lanes);
    const std::uint32_t rx_lanes = ml.total;
    if (!keys_->table->reserve_rx_at(wire::SlotId(k.rx_id), rx_lanes)) {
        P3_LOG_ERROR(DP_SESSION, "%s:%d: remote %u: static rx_id 0x%x..+%u cannot be used", cfg_.source.c_str(),
                     k.line ? k.line : r.line, r.id, k.rx_id, rx_lanes);
        return false;
    }
    // The keys never change: each start resumes above the key's persisted sequence mark, and
    // the lanes never send past what is on disk (seq_reserve.hpp). Without a usable state the
    // session is not started (unless the configuration opts out for throwaway keys).
    std::optional<SeqReserve::Lease> lease;
    if (k.persist_sequence) {
        lease = seq_->open(sid, r.id, k.tx_key.span(), k.tx_salt.span());
        if (!lease) {
            for (std::uint32_t l = 0; l < rx_lanes; ++l) keys_->table->retire_rx(wire::SlotId(k.rx_id).lane(l));
            return false;
        }
    }
    const std::uint64_t start = lease ? lease->start_after : 0, limit = lease ? lease->limit : wire::kSeqLast;
    if (!install_rx(sid, k.rx_id, LaneKeys{k.rx_key.span(), k.rx_salt.span(), rx_lanes, sh, k.anti_replay}) ||
        !install_tx_at(sid, k.tx_id, LaneKeys{k.tx_key.span(), k.tx_salt.span(), ml.per_member, sh, true, ml.offset},
                       start, limit)) {
        clear_keys(sid);
        for (std::uint32_t l = 0; l < rx_lanes; ++l) keys_->table->retire_rx(wire::SlotId(k.rx_id).lane(l));
        return false;
    }
    if (ml.offset || ml.total != ml.per_member)
        P3_LOG_INFO(DP_STATIC_SESSION, "remote %u: session %u up on static keys, sending on lanes %u..%u (P3 IDs "
                    "0x%x..) of %u, receiving on all", r.id, sid, ml.offset, ml.offset + ml.per_member - 1,
                    k.tx_id + ml.offset, ml.total);
    else
        P3_LOG_INFO(DP_STATIC_SESSION, "remote %u: session %u up on static keys, %u lane(s) each way", r.id, sid, k.lanes);
    return true;
}

}  // namespace p3::dp
