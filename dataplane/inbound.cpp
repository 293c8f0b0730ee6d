// The inbound stage: P3 and ESP packets opened under their RX slot and the inner packets
// delivered.
//
// Owns: per packet before any AES (inbound_one in fastpath.hpp): the slot by P3 ID (looked up
// once per run of one ID, with its key state), the peer check (RFC 4301 §5.2: only the
// session's peer may use its P3 IDs), the anti-replay check and the key by sequence (current
// or next, common/slots.hpp); the opening of the staged batch (each slot carries the open
// variant chosen when it was built) and, apart from it, the second try under a pending next
// key of the packets that failed under the current one while the switch point is unknown
// (learning it); after it, the window update, then the inner
// packet: to our WAN address -> the control thread (control channel); else inner source in
// the session's subnets and destination in ours -> the LAN (IPv4 through a per-burst next-hop
// cache as one TX burst). Also the table of our protected networks those checks read, and a
// UDP-encapsulated peer's move: a packet from another source opened under the slot's key and
// accepted only when authentic and newest, the control thread told (peer_moved).
#include <algorithm>
#include <cstring>

#include <rte_cycles.h>

#include "common/slots.hpp"
#include "common/wire.hpp"
#include "dataplane/fastpath.hpp"
#include "dataplane/pkt.hpp"

namespace p3::dp {

using namespace pkt;

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
        send_l3(L, S, Side::lan, m, IpAddr::v4(d), wire::kEtherTypeIpv4);
        return;
    }
    const std::uint32_t nh = on_link ? d : p.gw;
    if (!p.have || nh != p.nh) {
        rte_ether_addr mac;
        if (!S.neigh[static_cast<unsigned>(Side::lan)]->lookup(IpAddr::v4(nh), mac)) {
            send_l3(L, S, Side::lan, m, IpAddr::v4(d), wire::kEtherTypeIpv4);   // held until resolved
            return;
        }
        p.have = true;
        p.nh = nh;
        p.mac = mac;
    }
    put_eth(data(m), p.mac.addr_bytes, S.mac[static_cast<unsigned>(Side::lan)].addr_bytes, wire::kEtherTypeIpv4);
    p.bytes += m->pkt_len;
    p.ready[p.n++] = m;
}

// The packets of the batch that failed under the current key while their lane has a pending
// next key whose switch point is neither announced nor learned: each restored (the open ran
// in place) and opened once more under the next key; one that verifies teaches the lane its
// switch point (RxKeys::learn). Outside the common path: a stage with no such packet never
// comes here.
void retry_next(Lcore& L, InStage& in, wire::DecapResult* res) noexcept {
    rte_mbuf* m[kMaxBurst];
    std::uint16_t off[kMaxBurst];
    wire::RxRef ref[kMaxBurst];
    unsigned at[kMaxBurst];
    const wire::RxKeys* keys[kMaxBurst];
    unsigned n = 0;
    for (unsigned a = 0; a < in.n_alt; ++a) {
        const unsigned i = in.alt[a].i;
        if (res[i].status != wire::WireStatus::auth) continue;
        if (!wire::restore_failed(*L.wire, in.m[i], in.off[i], *in.ref[i].key)) continue;
        m[n] = in.m[i];
        off[n] = in.off[i];
        ref[n] = wire::RxRef(in.alt[a].keys->next, in.ref[i].open);
        at[n] = i;
        keys[n] = in.alt[a].keys;
        ++n;
    }
    in.n_alt = 0;
    if (n == 0) return;
    L.stats.rx_next_retries.add(n);
    wire::DecapResult again[kMaxBurst];
    wire::decap_burst(*L.wire, m, off, ref, n, wire::kEthHeaderLen, again, wire::L2::room);
    for (unsigned j = 0; j < n; ++j) {
        res[at[j]] = again[j];
        if (wire::authenticated(again[j].status)) keys[j]->learn(in.seq[at[j]]);
    }
}

// The packets of the batch that came from another source than their slot's peer (in.mv),
// after the open: one that did not authenticate stays for the caller to drop (p3_wrong_peer);
// one that did but is not beyond its lane's window top (a copy of something older, replayed
// from elsewhere) is marked failed for the same; the others are accepted like any packet and
// the control thread is told the peer moved, at most once per slot per kPeerMovedEveryMs and
// within the worker's message rate. Nothing is decided here for the other packets.
void moved_check(Lcore& L, const Dataplane::Shared& S, InStage& in, wire::DecapResult* res) noexcept {
    const std::uint64_t now = rte_rdtsc();
    const std::uint64_t every = rte_get_tsc_hz() / 1000 * kPeerMovedEveryMs;
    for (unsigned j = 0; j < in.n_mv; ++j) {
        const InStage::Moved& mv = in.mv[j];
        const unsigned i = mv.i;
        if (!wire::authenticated(res[i].status)) continue;
        const wire::RxSlot* s = in.slot[i];
        if (in.seq[i] <= s->replay().top()) {
            res[i].status = wire::WireStatus::auth;
            continue;
        }
        Lcore::MovedNote& note = L.moved_notes[s->id().raw() % kPeerMovedNotes];
        if (note.id == s->id().raw() && now - note.tsc < every) continue;
        if (!L.moved_rate.allow(now)) continue;
        rte_mbuf* msg = rte_pktmbuf_alloc(S.pool);
        char* body = msg ? rte_pktmbuf_append(msg, sizeof(PeerMoved)) : nullptr;
        if (body == nullptr) {
            if (msg) rte_pktmbuf_free(msg);
            L.stats.drop(Drop::MBUF_ALLOC);
            continue;
        }
        const PeerMoved pm{mv.addr, rte_be_to_cpu_16(mv.port_be), s->id().raw(), in.seq[i]};
        std::memcpy(body, &pm, sizeof pm);
        meta(msg) = PktMeta{MsgKind::peer_moved, Side::wan, s->lane(), s->session()};
        note = Lcore::MovedNote{s->id().raw(), now};
        to_control(L, S, msg);
    }
    in.n_mv = 0;
}

}  // namespace

void inbound_moved(Lcore& L, const Dataplane::Shared& S, InStage& in, rte_mbuf* m, unsigned off, std::uint32_t src,
                   std::uint64_t seq, wire::RxSlot* s, const wire::RxKeys* keys) noexcept {
    SessionCounters& sc = L.sessions[s->session()];
    // Native sessions keep the strict check (RFC 4301 §5.2), and so does a packet that did not
    // come in UDP. Only a sequence beyond the window top can move the peer: the window is only
    // read here (its writer is the worker the peer's packets reach), the open decides.
    if (!s->udp() || !(src & 0x10000u) || in.n_mv == kMovedPerBurst || seq <= s->replay().top() ||
        !L.moved_open.allow(rte_rdtsc())) {
        sc.rx_dropped.add();
        drop(L, m, Drop::P3_WRONG_PEER);
        return;
    }
    const wire::GcmKey* alt = nullptr;
    const wire::GcmKey* key = keys->pick(seq, alt);
    if (key == nullptr) {
        sc.rx_old_key.add();
        drop(L, m, Drop::P3_OLD_KEY);
        return;
    }
    if (in.n == kMaxBurst) in.passed += inbound_flush(L, S, in);
    const std::uint8_t* ip = data(m, wire::kEthHeaderLen);
    const unsigned k = in.n++;
    in.m[k] = m;
    in.off[k] = static_cast<std::uint16_t>(off);
    in.ref[k] = wire::RxRef(key, s->open());
    in.slot[k] = s;
    in.seq[k] = seq;
    if (alt != nullptr) in.alt[in.n_alt++] = InStage::Alt{k, keys};
    in.moved |= std::uint64_t{1} << k;
    in.mv[in.n_mv++] = InStage::Moved{k, static_cast<std::uint16_t>(src & 0xffffu),
                                      (ip[0] >> 4) == 6 ? v6_at(ip + 8) : v4_at(ip + 12)};
}

// Open the staged batch, then each packet's window, inner checks and delivery. Returns how
// many were opened and passed on (to the control thread or the LAN); the others are freed and
// counted.
unsigned inbound_flush(Lcore& L, const Dataplane::Shared& S, InStage& in) noexcept {
    const unsigned k = in.n;
    if (k == 0) return 0;
    in.n = 0;

    wire::DecapResult res[kMaxBurst];
    // send_l3 writes the whole Ethernet header; the control path strips it: room, no copy.
    wire::decap_burst(*L.wire, in.m, in.off, in.ref, k, wire::kEthHeaderLen, res, wire::L2::room, in.seq);
    if (in.n_alt != 0) [[unlikely]] retry_next(L, in, res);
    const std::uint64_t moved = in.moved;
    if (moved != 0) [[unlikely]] {
        moved_check(L, S, in, res);
        in.moved = 0;
    }

    const IpAddr& own_wan = S.own(Side::wan);
    NextHopCache lan_nh;
    Lan4Path lan4(S);
    SessionRun recv(L, &SessionCounters::rx_pkts, &SessionCounters::rx_bytes);
    std::uint64_t decrypted = 0;
    unsigned passed = 0;
    for (unsigned i = 0; i < k; ++i) {
        rte_mbuf* m = in.m[i];
        wire::RxSlot* s = in.slot[i];
        SessionCounters& sc = L.sessions[s->session()];
        const wire::WireStatus st = res[i].status;
        if (!wire::authenticated(st)) {
            if ((moved >> i) & 1) [[unlikely]] {   // from another source: a spoofed or old copy
                sc.rx_dropped.add();
                drop(L, m, Drop::P3_WRONG_PEER);
                continue;
            }
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
        const std::uint8_t* ip = data(m, wire::kEthHeaderLen);
        const bool v6 = (ip[0] >> 4) == 6;
        const std::uint32_t d4 = v6 ? 0 : be::get32(ip + 16);
        const std::uint32_t inner_len = m->pkt_len - wire::kEthHeaderLen;
        if (v6 ? same_v6(ip + 24, own_wan) : lan4.wan_on && d4 == lan4.wan) {
            if (s->kind() != wire::WireKind::p3) [[unlikely]] {   // an ESP SA carries no control channel
                sc.rx_policy.add();
                drop(L, m, Drop::ESP_INNER_TO_US);
                continue;
            }
            // The control channel (DESIGN.md §Control channel): the control thread opens it.
            recv.add(s->session(), inner_len);
            rte_pktmbuf_adj(m, wire::kEthHeaderLen);
            meta(m) = PktMeta{MsgKind::control_in, Side::wan, s->lane(), s->session()};
            to_control(L, S, m);
            ++passed;
            continue;
        }
        // A peer speaks only for its own subnets: the inner source must route back to the
        // session that sent it.
        const std::uint32_t src_sid = v6 ? S.routes->lookup6(ip + 8) : S.routes->lookup4(be::get32(ip + 12));
        if (src_sid != s->session()) {
            sc.rx_policy.add();
            drop(L, m, Drop::P3_INNER_SRC);
            continue;
        }
        // ... and only towards ours: not to a third party, not into another peer's tunnel.
        if (!(v6 ? S.local_dst6(ip + 24) : S.local_dst4(d4))) [[unlikely]] {
            sc.rx_policy.add();
            drop(L, m, Drop::P3_INNER_DST);
            continue;
        }
        recv.add(s->session(), inner_len);
        ++passed;
        if (v6) send_l3(L, S, Side::lan, m, v6_at(ip + 24), wire::kEtherTypeIpv6, &lan_nh);
        else deliver4(L, S, lan4, m, d4);
    }
    L.stats.decrypted.add(decrypted);
    if (lan4.n) tx_send(L, S, Side::lan, lan4.ready, static_cast<std::uint16_t>(lan4.n), lan4.bytes);
    return passed;
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

}  // namespace p3::dp
