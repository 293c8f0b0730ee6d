// Encryption and decryption on the packet path, and the session keys behind them.
//
// Owns: the dataplane's key slot table (common/slots.hpp: TX slots by (session, lane), RX slots
// by P3 ID, read by workers under the dataplane's RCU, wiped when freed), each worker's AES-GCM
// engine, the outbound stage (key of the sending lcore's lane, tunnel MTU, encapsulation in
// one batch, next hop, TX) and the inbound stage (slot by P3 ID, anti-replay check before
// decryption and update after, decryption in one batch, inner packet to the control thread or
// the LAN). The control-thread API (install/retire keys) is documented in control_iface.hpp.
//
// Per-session state is set up when the session changes between consecutive packets of a
// burst, not per packet (VPP's esp_encrypt): the slot lookup, its tunnel MTU, the next-hop MAC.
// Lanes: a worker sends under its own lane only (Lcore::lane), so a TX slot's sequence has one
// writer; all packets of one P3 ID reach one WAN queue, so an RX slot's window has one writer.
#include <rte_lcore.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <new>
#include <vector>

#include "common/crypto.hpp"
#include "common/log.hpp"
#include "common/slots.hpp"
#include "common/wire.hpp"
#include "dataplane/fastpath.hpp"
#include "dataplane/frag.hpp"
#include "dataplane/mtu.hpp"
#include "dataplane/pkt.hpp"
#include "dataplane/seq_reserve.hpp"

namespace p3::dp {

using namespace pkt;

// The slot table and, per session, the inbound blocks it holds (so a session's keys can be
// retired as a whole). Control thread only, but for the table's lookups.
struct Dataplane::KeyState {
    struct RxBlock {
        std::uint32_t base;
        std::uint32_t lanes;
    };
    std::unique_ptr<wire::SlotTable> table;
    std::map<std::uint32_t, std::vector<RxBlock>> rx_blocks;   // session -> blocks
};

// ---- outbound ------------------------------------------------------------------------------

// Seal the batch, then Ethernet per packet and the batch to the WAN port; the next-hop MAC is
// looked up once per run of packets to the same peer.
void outbound_flush(Lcore& L, const Dataplane::Shared& S, OutStage& b) noexcept {
    if (b.n == 0) return;
    wire::WireStatus st[kMaxBurst];
    // The Ethernet header is written whole below (or by send_l3): room for it, no copy.
    const unsigned ok = wire::encap_burst(*L.wire, b.m, b.ref, b.n, kEthLen, st, wire::L2::room);
    L.stats.encrypted.add(ok);
    const wire::TxView* last_view = nullptr;
    bool have_mac = false;
    rte_ether_addr mac;
    const std::uint8_t* own_mac = S.mac[static_cast<unsigned>(Side::wan)].addr_bytes;
    SessionRun sent(L, &SessionCounters::tx_pkts, &SessionCounters::tx_bytes);
    unsigned ready = 0;
    std::uint64_t tx_bytes = 0;
    for (unsigned i = 0; i < b.n; ++i) {
        rte_mbuf* m = b.m[i];
        if (st[i] != wire::WireStatus::ok) {
            L.sessions[b.sid[i]].tx_dropped.add();
            drop(L, m, drop_of(st[i]));
            continue;
        }
        sent.add(b.sid[i], b.inner_len[i]);
        const wire::TxView* v = b.ref[i].view;
        const std::uint16_t et = v->outer_v6() ? kEtherIPv6 : kEtherIPv4;
        if (v != last_view) {
            last_view = v;
            auto nh = S.next_hop(Side::wan, v->dst);
            have_mac = nh && S.neigh[static_cast<unsigned>(Side::wan)]->lookup(*nh, mac);
        }
        if (!have_mac) {   // not resolved (or no route): the slow path holds or drops it
            send_l3(L, S, Side::wan, m, v->dst, et);
            continue;
        }
        put_eth(data(m), mac.addr_bytes, own_mac, et);
        tx_bytes += m->pkt_len;
        b.m[ready++] = m;   // compacted in place: slot i was read above
    }
    b.n = 0;
    // The batch is the TX burst: straight to the port, without a copy into the TX buffer and
    // another pass over it.
    if (ready) tx_send(L, S, Side::wan, b.m, static_cast<std::uint16_t>(ready), tx_bytes);
}

void outbound_slow(Lcore& L, const Dataplane::Shared& S, OutStage& o, rte_mbuf* m, std::uint32_t sid) noexcept {
    if (sid != o.run_sid) {
        // A new run of one session: its slot under this lcore's lane and the tunnel MTU. No
        // slot: the MTU stays 0, so every packet of the run comes here and is dropped.
        o.run_sid = sid;
        o.run_ref = {};
        o.run_mtu = 0;
        wire::TxSlot* slot = L.lane == kNoLane ? nullptr : S.slots->tx(sid, static_cast<std::uint16_t>(L.lane));
        if (slot != nullptr) {
            o.run_ref = slot->ref();
            o.run_mtu = tunnel_mtu(S.mtu[static_cast<unsigned>(Side::wan)], slot->view().outer_v6(), slot->view().udp());
        }
    }
    if (o.run_ref.view == nullptr) {
        L.sessions[sid].tx_dropped.add();
        drop(L, m, Drop::NO_TX_SLOT);
        return;
    }
    const std::uint32_t ip_len = m->pkt_len - kEthLen;
    const std::uint32_t mtu = o.run_mtu;
    if (ip_len <= mtu) {
        o.push(L, S, m, sid, ip_len);
        return;
    }
    const std::span<const std::uint8_t> l3(data(m, kEthLen), m->data_len - kEthLen);
    switch (mtu_action(l3, ip_len, mtu)) {
        case MtuAction::fits:
            o.push(L, S, m, sid, ip_len);
            break;
        case MtuAction::too_big:
            L.sessions[sid].tx_dropped.add();
            answer_too_big(L, S, m, mtu);
            break;
        case MtuAction::fragment: {
            // Inner fragments, each encrypted on its own (RFC 4459 §5.1): the receiver
            // never reassembles outer packets in the normal case.
            rte_mbuf* frags[kMaxFragmentsOut];
            rte_pktmbuf_adj(m, kEthLen);
            const FragOutcome fo = fragment_ipv4(m, static_cast<std::uint16_t>(mtu), frags, S.pool, nullptr);
            if (fo.error != FragError::none) {
                rte_pktmbuf_prepend(m, kEthLen);
                L.sessions[sid].tx_dropped.add();
                drop(L, m, fo.error == FragError::no_mbuf ? Drop::MBUF_ALLOC
                           : fo.error == FragError::malformed ? Drop::IP_BAD_HEADER
                                                              : Drop::TOO_BIG);
                break;
            }
            L.stats.fragments_out.add(fo.count);
            for (unsigned f = 0; f < fo.count; ++f) {
                if (!rte_pktmbuf_prepend(frags[f], kEthLen)) {
                    L.sessions[sid].tx_dropped.add();
                    drop(L, frags[f], Drop::NO_ROOM);
                    continue;
                }
                o.push(L, S, frags[f], sid, frags[f]->pkt_len - kEthLen);
            }
            break;
        }
    }
}

void outbound_crypto(Lcore& L, const Dataplane::Shared& S, rte_mbuf** pkts, const std::uint32_t* sids,
                     unsigned n) noexcept {
    OutStage o;
    for (unsigned i = 0; i < n; ++i) outbound_one(L, S, o, pkts[i], sids[i]);
    outbound_flush(L, S, o);
}

// ---- inbound -------------------------------------------------------------------------------

namespace {

// IPv4 delivery to the LAN with words instead of an IpAddr built per packet (whose bytes,
// written piecewise and read back as words, stall store forwarding): our WAN address, the
// LAN's on-link prefix and gateway in host order, and the last next hop with its MAC for the
// rest of the burst, and the burst of frames ready for the LAN port. Built once per inbound
// burst.
struct Lan4Path {
    bool wan_on = false, lan_on = false, gw_on = false;
    std::uint32_t wan = 0, net = 0, mask = 0, gw = 0;
    bool have = false;
    std::uint32_t nh = 0;
    rte_ether_addr mac{};
    // Delivered frames, sent as one burst at the end (past the TX buffer).
    rte_mbuf* ready[kMaxBurst];
    unsigned n = 0;
    std::uint64_t bytes = 0;

    explicit Lan4Path(const Dataplane::Shared& S) noexcept {
        const IpAddr& w = S.own(Side::wan);
        wan_on = w.is_v4();
        wan = wan_on ? w.v4_host() : 0;
        const Prefix& p = S.prefix[static_cast<unsigned>(Side::lan)];
        lan_on = p.addr.is_v4();
        mask = p.len == 0 ? 0 : ~std::uint32_t{0} << (32 - p.len);
        net = lan_on ? p.addr.v4_host() & mask : 0;
        const auto& g = S.gateway[static_cast<unsigned>(Side::lan)];
        gw_on = g && g->is_v4();
        gw = gw_on ? g->v4_host() : 0;
    }
};

// An inner IPv4 packet (frame, IP at 14) to the LAN host d: its Ethernet header written, it
// joins p's batch for the LAN port. Falls back to send_l3 for what is not the common case (no
// IPv4 LAN, off-link without a gateway, next hop not resolved).
void deliver4(Lcore& L, const Dataplane::Shared& S, Lan4Path& p, rte_mbuf* m, std::uint32_t d) noexcept {
    const bool on_link = (d & p.mask) == p.net;
    if (!p.lan_on || (!on_link && !p.gw_on)) {
        send_l3(L, S, Side::lan, m, IpAddr::v4(d), kEtherIPv4);
        return;
    }
    const std::uint32_t nh = on_link ? d : p.gw;
    if (!p.have || nh != p.nh) {
        rte_ether_addr mac;
        if (!S.neigh[static_cast<unsigned>(Side::lan)]->lookup(IpAddr::v4(nh), mac)) {
            send_l3(L, S, Side::lan, m, IpAddr::v4(d), kEtherIPv4);   // held until resolved
            return;
        }
        p.have = true;
        p.nh = nh;
        p.mac = mac;
    }
    put_eth(data(m), p.mac.addr_bytes, S.mac[static_cast<unsigned>(Side::lan)].addr_bytes, kEtherIPv4);
    p.bytes += m->pkt_len;
    p.ready[p.n++] = m;
}

}  // namespace

void inbound_flush(Lcore& L, const Dataplane::Shared& S, InStage& in) noexcept {
    const unsigned k = in.n;
    if (k == 0) return;
    in.n = 0;

    wire::DecapResult res[kMaxBurst];
    // send_l3 writes the whole Ethernet header; the control path strips it: room, no copy.
    wire::decap_burst(*L.wire, in.m, in.off, in.ref, k, kEthLen, res, wire::L2::room);

    const IpAddr& own_wan = S.own(Side::wan);
    NextHopCache lan_nh;
    Lan4Path lan4(S);
    SessionRun recv(L, &SessionCounters::rx_pkts, &SessionCounters::rx_bytes);
    std::uint64_t decrypted = 0;
    for (unsigned i = 0; i < k; ++i) {
        rte_mbuf* m = in.m[i];
        wire::RxSlot* s = in.slot[i];
        SessionCounters& sc = L.sessions[s->session()];
        const wire::WireStatus st = res[i].status;
        if (!wire::authenticated(st)) {
            sc.rx_auth.add();
            drop(L, m, drop_of(st));
            continue;
        }
        // The tag verified: the window learns the sequence. A second copy of a packet in the
        // same burst passed check() too; update() refuses it.
        if (s->replay().update(in.seq[i]) != wire::ReplayResult::ok) {
            sc.rx_replay.add();
            drop(L, m, Drop::P3_REPLAY);
            continue;
        }
        if (st != wire::WireStatus::ok) {
            if (st != wire::WireStatus::dummy) sc.rx_dropped.add();
            drop(L, m, drop_of(st));
            continue;
        }
        ++decrypted;
        const std::uint8_t* ip = data(m, kEthLen);
        const bool v6 = (ip[0] >> 4) == 6;
        const std::uint32_t d4 = v6 ? 0 : be32(ip + 16);
        const std::uint32_t inner_len = m->pkt_len - kEthLen;
        if (v6 ? same_v6(ip + 24, own_wan) : lan4.wan_on && d4 == lan4.wan) {
            // The control channel (DESIGN.md §Control channel): the control thread opens it.
            recv.add(s->session(), inner_len);
            rte_pktmbuf_adj(m, kEthLen);
            meta(m) = PktMeta{MsgKind::control_in, Side::wan, s->lane(), s->session()};
            to_control(L, S, m);
            continue;
        }
        // A peer speaks only for its own subnets: the inner source must route back to the
        // session that sent it.
        const std::uint32_t src_sid = v6 ? S.routes->lookup6(ip + 8) : S.routes->lookup4(be32(ip + 12));
        if (src_sid != s->session()) {
            sc.rx_dropped.add();
            drop(L, m, Drop::P3_INNER_SRC);
            continue;
        }
        // ... and only towards ours: not to a third party, not into another peer's tunnel.
        if (!(v6 ? S.local_dst6(ip + 24) : S.local_dst4(d4))) [[unlikely]] {
            sc.rx_dropped.add();
            drop(L, m, Drop::P3_INNER_DST);
            continue;
        }
        recv.add(s->session(), inner_len);
        if (v6) send_l3(L, S, Side::lan, m, v6_at(ip + 24), kEtherIPv6, &lan_nh);
        else deliver4(L, S, lan4, m, d4);
    }
    L.stats.decrypted.add(decrypted);
    if (lan4.n) tx_send(L, S, Side::lan, lan4.ready, static_cast<std::uint16_t>(lan4.n), lan4.bytes);
}

void Dataplane::Shared::add_local(const Prefix& p) noexcept {
    if (p.addr.is_v4() && n_local4 < kMaxLocalNets) {
        const std::uint32_t mask = p.len == 0 ? 0 : ~std::uint32_t{0} << (32 - p.len);
        local4[n_local4++] = Net4{p.addr.v4_host() & mask, mask};
    } else if (p.addr.is_v6() && n_local6 < kMaxLocalNets) {
        std::uint8_t m[16] = {};
        for (unsigned i = 0; i < 16; ++i) {
            const int bits = std::max(0, std::min(8, int(p.len) - int(i * 8)));
            m[i] = static_cast<std::uint8_t>(0xff00 >> bits);
        }
        Net6 n;
        std::memcpy(n.mask, m, 16);
        std::memcpy(n.net, p.addr.bytes.data(), 16);
        n.net[0] &= n.mask[0];
        n.net[1] &= n.mask[1];
        local6[n_local6++] = n;
    }
}

// ---- per-lcore engines ------------------------------------------------------------------------

bool wire_engine_create(Lcore& L, const Dataplane::Shared&) {
    L.wire = wire::GcmEngine::create(static_cast<int>(rte_lcore_to_socket_id(L.lcore_id)));
    if (L.wire == nullptr) {
        P3_LOG_ERROR(DP_CRYPTO_ENGINE, "AES-GCM engine of lcore %u could not be created", L.lcore_id);
        return false;
    }
    return true;
}

void wire_engine_free(Lcore& L) {
    wire::GcmEngine::destroy(L.wire);
    L.wire = nullptr;
}

// ---- keys (control thread) --------------------------------------------------------------------

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
    const std::uint32_t lanes = std::min(k.lanes, tx_lanes_);
    if (k.lanes < tx_lanes_) {
        P3_LOG_WARN(DP_LANES, "session %u (remote %u): %u lane(s) for %u sending workers; workers on lanes %u..%u "
                    "drop its traffic", sid, ses.id, k.lanes, tx_lanes_, k.lanes, tx_lanes_ - 1);
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
    if (lanes == 0 || !keys_->table->publish_tx_lanes(lanes, k.key, k.salt, p)) {
        P3_LOG_ERROR(DP_KEYS, "session %u: outbound keys for peer P3 IDs 0x%x..+%u refused", sid, peer_base_id, lanes);
        return false;
    }
    ses.tx_lanes = static_cast<std::uint16_t>(lanes);
    sessions_->set_state(sid, SessionState::up);
    return true;
}

void Dataplane::retire_rx(std::uint32_t sid, std::uint32_t base_id) {
    auto it = keys_->rx_blocks.find(sid);
    if (it == keys_->rx_blocks.end()) return;
    auto& blocks = it->second;
    for (auto b = blocks.begin(); b != blocks.end(); ++b) {
        if (b->base != base_id) continue;
        for (std::uint32_t l = 0; l < b->lanes; ++l) keys_->table->retire_rx(wire::SlotId(base_id).lane(l));
        blocks.erase(b);
        break;
    }
    if (blocks.empty()) keys_->rx_blocks.erase(it);
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
    if (!keys_->table->reserve_rx_at(wire::SlotId(k.rx_id), k.lanes)) {
        P3_LOG_ERROR(DP_SESSION, "%s:%d: remote %u: static rx_id 0x%x..+%u cannot be used", cfg_.source.c_str(),
                     k.line ? k.line : r.line, r.id, k.rx_id, k.lanes);
        return false;
    }
    // The keys never change: each start resumes above the key's persisted sequence mark, and
    // the lanes never send past what is on disk (seq_reserve.hpp). Without a usable state the
    // session is not started (unless the configuration opts out for throwaway keys).
    std::optional<SeqReserve::Lease> lease;
    if (k.persist_sequence) {
        lease = seq_->open(sid, r.id, k.tx_key.span(), k.tx_salt.span());
        if (!lease) {
            for (std::uint32_t l = 0; l < k.lanes; ++l) keys_->table->retire_rx(wire::SlotId(k.rx_id).lane(l));
            return false;
        }
    }
    const std::uint64_t start = lease ? lease->start_after : 0, limit = lease ? lease->limit : wire::kSeqLast;
    if (!install_rx(sid, k.rx_id, LaneKeys{k.rx_key.span(), k.rx_salt.span(), k.lanes, sh, k.anti_replay}) ||
        !install_tx_at(sid, k.tx_id, LaneKeys{k.tx_key.span(), k.tx_salt.span(), k.lanes, sh}, start, limit)) {
        clear_keys(sid);
        for (std::uint32_t l = 0; l < k.lanes; ++l) keys_->table->retire_rx(wire::SlotId(k.rx_id).lane(l));
        return false;
    }
    P3_LOG_INFO(DP_STATIC_SESSION, "remote %u: session %u up on static keys, %u lane(s) each way", r.id, sid, k.lanes);
    return true;
}

}  // namespace p3::dp
