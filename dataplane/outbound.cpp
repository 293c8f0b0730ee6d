// The outbound stage: clear packets of a session sealed under the sending lcore's lane and
// sent to the WAN.
//
// Owns: per run of one session, its TX slot (this lcore's lane of the session: lane_for), the
// slot's current key (and the claim of its first sequence when this lane had not sent under
// it yet) and tunnel MTU (VPP's
// esp_encrypt: per-SA work only when the SA changes); packets over that MTU (inner
// fragmentation, or ICMP "too big" / "packet too big"); the sealing of the staged batch
// (common/wire.hpp: each slot carries the seal variant chosen when it was built); the outer
// Ethernet header, with the next-hop MAC looked up once per run of one peer; the batch to the
// WAN port as one TX burst. Classification (classify.cpp) stages packets here one at a time.
#include <cstring>

#include "common/slots.hpp"
#include "common/wire.hpp"
#include "dataplane/fastpath.hpp"
#include "dataplane/frag.hpp"
#include "dataplane/mtu.hpp"
#include "dataplane/pkt.hpp"

namespace p3::dp {

using namespace pkt;

// Seal the batch, then Ethernet per packet and the batch to the WAN port; the next-hop MAC is
// looked up once per run of packets to the same peer. Returns how many were sealed and passed
// on (compacted at the front of b.m and sent as one burst, or through send_l3 when the next
// hop is not resolved); the others are freed and counted.
// The shared runs of the stage take their sequences: each run's packets counted, then one
// atomic add on its slot's counter per run. A P3 lane may have switched keys meanwhile (another
// worker claimed the new one, or the control thread after its grace period): the packets
// whose sequences lie at or beyond the new key's first sequence are sealed under it (the key
// object stays valid until this worker's next quiescent report). Out of line: a stage without
// shared runs never comes here.
[[gnu::noinline]] static void reserve_esp(OutStage& b) noexcept {
    for (unsigned j = 0; j < b.n_esp; ++j) b.esp[j].n = 0;
    // A ref of a shared run points into b.esp (at its entry's seq); any other at a lane's counter.
    const auto lo = reinterpret_cast<std::uintptr_t>(&b.esp[0]);
    const auto hi = reinterpret_cast<std::uintptr_t>(&b.esp[b.n_esp]);
    auto run_of = [&](unsigned i) -> int {
        const auto p = reinterpret_cast<std::uintptr_t>(b.ref[i].seq);
        return p >= lo && p < hi ? static_cast<int>((p - lo) / sizeof(OutStage::EspRun)) : -1;
    };
    for (unsigned i = 0; i < b.n; ++i)
        if (const int j = run_of(i); j >= 0) ++b.esp[j].n;
    bool switched = false;
    const wire::TxKey* next[kMaxBurst];
    for (unsigned j = 0; j < b.n_esp; ++j) {
        OutStage::EspRun& r = b.esp[j];
        next[j] = nullptr;
        if (r.n == 0) continue;
        r.seq = r.slot->reserve(r.n);
        if (r.key == nullptr) continue;   // ESP: a new key is a new SA
        const wire::TxKey* cur = r.slot->current();
        if (cur == r.key) [[likely]] continue;
        if (wire::TxSlot::unclaimed(cur)) r.slot->claim_shared(cur);
        next[j] = cur;
        switched = true;
    }
    if (!switched) [[likely]] return;
    std::uint32_t at[kMaxBurst] = {};
    for (unsigned i = 0; i < b.n; ++i) {
        const int j = run_of(i);
        if (j < 0 || next[j] == nullptr) continue;
        const std::uint64_t seq = b.esp[j].seq + ++at[j];
        if (seq >= next[j]->first_seq.load(std::memory_order_relaxed)) b.ref[i].view = &next[j]->view;
    }
}

// After a flush, the current ESP run (if any) goes on in a fresh entry 0.
static void restart_esp(OutStage& b) noexcept {
    if (b.run_esp < 0) {
        b.n_esp = 0;
        return;
    }
    b.esp[0] = OutStage::EspRun{b.esp[b.run_esp].slot, 0, 0, b.esp[b.run_esp].key};
    b.run_esp = 0;
    b.n_esp = 1;
    b.run_ref.seq = &b.esp[0].seq;
}

unsigned outbound_flush(Lcore& L, const Dataplane::Shared& S, OutStage& b) noexcept {
    if (b.n == 0) return 0;
    if (b.n_esp != 0) [[unlikely]] reserve_esp(b);
    wire::WireStatus st[kMaxBurst];
    // The Ethernet header is written whole below (or by send_l3): room for it, no copy.
    const unsigned ok = wire::encap_burst(*L.wire, b.m, b.ref, b.n, wire::kEthHeaderLen, st, wire::L2::room);
    L.stats.encrypted.add(ok);
    const wire::TxView* last_view = nullptr;
    bool have_mac = false;
    rte_ether_addr mac;
    std::uint16_t et = 0;
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
        if (v != last_view) {   // per run of one slot: its EtherType and next hop
            last_view = v;
            et = v->outer_v6() ? wire::kEtherTypeIpv6 : wire::kEtherTypeIpv4;
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
    if (b.n_esp != 0) [[unlikely]] restart_esp(b);
    // The batch is the TX burst: straight to the port, without a copy into the TX buffer and
    // another pass over it.
    if (ready) tx_send(L, S, Side::wan, b.m, static_cast<std::uint16_t>(ready), tx_bytes);
    return ok;
}

// The lane this worker sends a session's packets on, of the session's lanes (0: none
// installed) among senders sending workers: as many lanes as senders, its own; fewer, lane
// (its place mod lanes), shared with the other workers of that residue when there are any;
// more, lanes place, place + senders, ... are its alone and it turns over them per stage.
static inline unsigned lane_for(unsigned place, std::uint32_t turn, unsigned senders, unsigned lanes,
                                bool& shared) noexcept {
    shared = false;
    if (lanes == senders || lanes == 0) [[likely]] return place;
    if (lanes < senders) {
        const unsigned l = place % lanes;
        shared = (senders - l + lanes - 1) / lanes > 1;   // workers l, l + lanes, ... below senders
        return l;
    }
    const unsigned mine = (lanes - place + senders - 1) / senders;
    return place + (turn % mine) * senders;
}

void outbound_slow(Lcore& L, const Dataplane::Shared& S, OutStage& o, rte_mbuf* m, std::uint32_t sid) noexcept {
    if (sid != o.run_sid) {
        // A new run of one session: its slot under this lcore's lane of it and the tunnel MTU.
        // No slot: the MTU stays 0, so every packet of the run comes here and is dropped.
        o.run_sid = sid;
        o.run_ref = {};
        o.run_mtu = 0;
        o.run_esp = -1;
        bool shared = false;
        wire::TxSlot* slot = nullptr;
        if (L.lane != kNoLane) {
            const unsigned lanes = __atomic_load_n(&S.sessions->get(sid).tx_lanes, __ATOMIC_RELAXED);
            const unsigned lane = lane_for(L.lane, o.turn, S.senders, lanes, shared);
            slot = S.slots->tx(sid, static_cast<std::uint16_t>(lane));
        }
        // A standard ESP session has one SA, lane 0's slot, whichever worker sends.
        if (slot != nullptr && (shared || slot->kind() != wire::WireKind::p3)) {
            if (o.n_esp == kMaxBurst) [[unlikely]] {   // runs without packets filled the entries
                if (o.n != 0) o.passed += outbound_flush(L, S, o);
                o.n_esp = 0;
            }
            const bool p3 = slot->kind() == wire::WireKind::p3;
            const wire::TxKey* key = slot->current();
            // A P3 key no worker has sent under yet: its first sequence is the counter now + 1
            // (what any worker reserves from now on is sent under it).
            if (p3 && wire::TxSlot::unclaimed(key)) [[unlikely]] slot->claim_shared(key);
            o.esp[o.n_esp] = OutStage::EspRun{slot, 0, 0, p3 ? key : nullptr};
            o.run_esp = static_cast<int>(o.n_esp++);
            o.run_ref = wire::TxRef{&key->view, &o.esp[o.run_esp].seq, slot->seq_limit_ptr()};
            o.run_mtu = tunnel_mtu(S.mtu[static_cast<unsigned>(Side::wan)], key->view.outer_v6(), key->view.udp());
        } else if (slot != nullptr) {
            const wire::TxKey* key = slot->current();
            if (wire::TxSlot::unclaimed(key)) [[unlikely]] {
                // The lane's first packet under a new key: what is staged (perhaps under the key
                // before it) takes its sequences first, so counter + 1 is exactly the first
                // sequence under this one (common/slots.hpp).
                if (o.n != 0) o.passed += outbound_flush(L, S, o);
                slot->claim(key);
            }
            o.run_ref = slot->ref_of(key);
            o.run_mtu = tunnel_mtu(S.mtu[static_cast<unsigned>(Side::wan)], key->view.outer_v6(), key->view.udp());
        }
    }
    if (o.run_ref.view == nullptr) {
        L.sessions[sid].tx_dropped.add();
        drop(L, m, Drop::NO_TX_SLOT);
        return;
    }
    const std::uint32_t ip_len = m->pkt_len - wire::kEthHeaderLen;
    const std::uint32_t mtu = o.run_mtu;
    if (ip_len <= mtu) {
        o.push(L, S, m, sid, ip_len);
        return;
    }
    const std::span<const std::uint8_t> l3(data(m, wire::kEthHeaderLen), m->data_len - wire::kEthHeaderLen);
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
            rte_pktmbuf_adj(m, wire::kEthHeaderLen);
            const FragOutcome fo = fragment_ipv4(m, static_cast<std::uint16_t>(mtu), frags, S.pool, nullptr);
            if (fo.error != FragError::none) {
                rte_pktmbuf_prepend(m, wire::kEthHeaderLen);
                L.sessions[sid].tx_dropped.add();
                drop(L, m, fo.error == FragError::no_mbuf ? Drop::MBUF_ALLOC
                           : fo.error == FragError::malformed ? Drop::IP_BAD_HEADER
                                                              : Drop::TOO_BIG);
                break;
            }
            L.stats.fragments_out.add(fo.count);
            for (unsigned f = 0; f < fo.count; ++f) {
                if (!rte_pktmbuf_prepend(frags[f], wire::kEthHeaderLen)) {
                    L.sessions[sid].tx_dropped.add();
                    drop(L, frags[f], Drop::NO_ROOM);
                    continue;
                }
                o.push(L, S, frags[f], sid, frags[f]->pkt_len - wire::kEthHeaderLen);
            }
            break;
        }
    }
}

unsigned outbound_crypto(Lcore& L, const Dataplane::Shared& S, rte_mbuf** pkts, const std::uint32_t* sids,
                         unsigned n) noexcept {
    OutStage o;
    o.turn = L.lane_turn++;
    for (unsigned i = 0; i < n; ++i) outbound_one(L, S, o, pkts[i], sids[i]);
    return o.passed + outbound_flush(L, S, o);
}

}  // namespace p3::dp
