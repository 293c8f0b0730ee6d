// The outbound stage: clear packets of a session sealed under the sending lcore's lane and
// sent to the WAN.
//
// Owns: per run of one session, its TX slot (this lcore's lane), the slot's current key (and
// the claim of its first sequence when this lane had not sent under it yet) and tunnel MTU (VPP's
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
// The ESP runs of the stage take their sequences: each run's packets counted, then one
// atomic add on its SA's counter per run. Out of line: a stage without ESP never comes here.
[[gnu::noinline]] static void reserve_esp(OutStage& b) noexcept {
    for (unsigned j = 0; j < b.n_esp; ++j) b.esp[j].n = 0;
    // A ref of an ESP run points into b.esp (at its entry's seq); any other at a P3 lane's counter.
    const auto lo = reinterpret_cast<std::uintptr_t>(&b.esp[0]);
    const auto hi = reinterpret_cast<std::uintptr_t>(&b.esp[b.n_esp]);
    for (unsigned i = 0; i < b.n; ++i) {
        const auto p = reinterpret_cast<std::uintptr_t>(b.ref[i].seq);
        if (p >= lo && p < hi) ++b.esp[(p - lo) / sizeof(OutStage::EspRun)].n;
    }
    for (unsigned j = 0; j < b.n_esp; ++j)
        if (b.esp[j].n) b.esp[j].seq = b.esp[j].slot->reserve(b.esp[j].n);
}

// After a flush, the current ESP run (if any) goes on in a fresh entry 0.
static void restart_esp(OutStage& b) noexcept {
    if (b.run_esp < 0) {
        b.n_esp = 0;
        return;
    }
    b.esp[0] = OutStage::EspRun{b.esp[b.run_esp].slot, 0, 0};
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

void outbound_slow(Lcore& L, const Dataplane::Shared& S, OutStage& o, rte_mbuf* m, std::uint32_t sid) noexcept {
    if (sid != o.run_sid) {
        // A new run of one session: its slot under this lcore's lane and the tunnel MTU. No
        // slot: the MTU stays 0, so every packet of the run comes here and is dropped.
        o.run_sid = sid;
        o.run_ref = {};
        o.run_mtu = 0;
        o.run_esp = -1;
        wire::TxSlot* slot = L.lane == kNoLane ? nullptr : S.slots->tx(sid, static_cast<std::uint16_t>(L.lane));
        // A standard ESP session has one SA, lane 0's slot, whichever worker sends.
        if (slot == nullptr && L.lane != 0) {
            wire::TxSlot* s0 = S.slots->tx(sid, 0);
            if (s0 != nullptr && s0->kind() != wire::WireKind::p3) slot = s0;
        }
        if (slot != nullptr && slot->kind() != wire::WireKind::p3) {
            if (o.n_esp == kMaxBurst) [[unlikely]] {   // runs without packets filled the entries
                if (o.n != 0) o.passed += outbound_flush(L, S, o);
                o.n_esp = 0;
            }
            const wire::TxKey* key = slot->current();
            o.esp[o.n_esp] = OutStage::EspRun{slot, 0, 0};
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
    for (unsigned i = 0; i < n; ++i) outbound_one(L, S, o, pkts[i], sids[i]);
    return o.passed + outbound_flush(L, S, o);
}

}  // namespace p3::dp
