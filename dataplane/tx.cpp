// TX and the hand-offs of the worker: buffered TX per port, whole batches to a port, frames
// to a next hop (Ethernet header, neighbour lookup, held by the control thread while
// unresolved), packets to the control thread's rings (policed per class), and the
// control->worker ring drained by worker 0 (frames, IP packets and the control channel's inner
// packets, which go through the outbound stage like data).
//
// TX buffers: what is not sent as a whole sealed/opened batch waits in Lcore::tx[side] until
// it is full (tx_enqueue) or the loop's TSC timer flushes it; a port that does not take a
// frame drops it (TX_FULL). Bytes are counted for what the port took.
#include <rte_cycles.h>
#include <rte_ethdev.h>

#include <cstring>

#include "dataplane/capture.hpp"
#include "dataplane/fastpath.hpp"
#include "dataplane/pkt.hpp"

namespace p3::dp {

using namespace pkt;

namespace {

// n frames (bytes in all) to the port; what it does not take is dropped and counted.
std::uint16_t port_send(Lcore& L, const Dataplane::Shared& S, Side side, rte_mbuf** pkts, std::uint16_t n,
                        std::uint64_t bytes) noexcept {
    if (side == Side::wan && S.wan_blocked->load(std::memory_order_relaxed)) [[unlikely]] {
        L.stats.drop(Drop::CLUSTER_BACKUP, n);
        rte_pktmbuf_free_bulk(pkts, n);
        return 0;
    }
    capture_tap(*S.capture, L.index, side, kCaptureTx, S.port_id[static_cast<unsigned>(side)],
                static_cast<std::uint16_t>(L.index), pkts, n);
    const std::uint16_t sent = rte_eth_tx_burst(S.port_id[static_cast<unsigned>(side)],
                                                static_cast<std::uint16_t>(L.index), pkts, n);
    if (sent < n) {
        for (std::uint16_t i = sent; i < n; ++i) bytes -= pkts[i]->pkt_len;
        L.stats.drop(Drop::TX_FULL, n - sent);
        rte_pktmbuf_free_bulk(pkts + sent, n - sent);
    }
    if (side == Side::lan) {
        L.stats.tx_lan_pkts.add(sent);
        L.stats.tx_lan_bytes.add(bytes);
    } else {
        L.stats.tx_wan_pkts.add(sent);
        L.stats.tx_wan_bytes.add(bytes);
    }
    return sent;
}

}  // namespace

unsigned tx_flush(Lcore& L, const Dataplane::Shared& S, Side side) noexcept {
    TxBuffer& b = L.tx[static_cast<unsigned>(side)];
    if (b.n == 0) return 0;
    // Bytes of what the port took, read before the PMD may free the mbufs.
    std::uint64_t bytes = 0;
    for (std::uint16_t i = 0; i < b.n; ++i) bytes += b.pkts[i]->pkt_len;
    const unsigned sent = port_send(L, S, side, b.pkts, b.n, bytes);
    b.n = 0;
    return sent;
}

unsigned tx_send(Lcore& L, const Dataplane::Shared& S, Side side, rte_mbuf** pkts, std::uint16_t n,
                 std::uint64_t bytes) noexcept {
    tx_flush(L, S, side);   // what the buffer holds was queued earlier: it goes first
    return port_send(L, S, side, pkts, n, bytes);
}

void to_control(Lcore& L, const Dataplane::Shared& S, rte_mbuf* m) noexcept {
    CtlClass c;
    Drop full;
    switch (meta(m).kind) {
        case MsgKind::control_in:
        case MsgKind::peer_moved:   // rate-limited where it is made (inbound.cpp)
            c = CtlClass::trusted;
            full = Drop::RING_FULL_CONTROL;
            break;
        case MsgKind::setup_udp:
            if (!L.setup_rate.allow(rte_rdtsc())) return drop(L, m, Drop::SETUP_POLICED);
            c = CtlClass::setup;
            full = Drop::RING_FULL_SETUP;
            break;
        case MsgKind::hold:
            if (!L.hold_rate.allow(rte_rdtsc())) return drop(L, m, Drop::HOLD_POLICED);
            c = CtlClass::neigh;
            full = Drop::RING_FULL_HOLD;
            break;
        default:   // arp, nd
            if (!L.neigh_rate.allow(rte_rdtsc())) return drop(L, m, Drop::NEIGH_POLICED);
            c = CtlClass::neigh;
            full = Drop::RING_FULL_NEIGH;
            break;
    }
    if (rte_ring_mp_enqueue(S.to_control[static_cast<unsigned>(c)], m) != 0) return drop(L, m, full);
    L.stats.to_control.add();
}

void send_l3(Lcore& L, const Dataplane::Shared& S, Side side, rte_mbuf* m, const IpAddr& dst,
             std::uint16_t ethertype, NextHopCache* cache) noexcept {
    const unsigned i = static_cast<unsigned>(side);
    std::uint8_t* e = data(m);
    std::memcpy(e + 6, S.mac[i].addr_bytes, 6);
    be::put16(e + 12, ethertype);
    auto nh = S.next_hop(side, dst);
    if (!nh) {
        drop(L, m, Drop::NO_GATEWAY);
        return;
    }
    if (cache && cache->valid && addr_eq(cache->nh, *nh)) {
        std::memcpy(e, cache->mac.addr_bytes, 6);
        tx_enqueue(L, S, side, m);
        return;
    }
    rte_ether_addr mac;
    if (S.neigh[i]->lookup(*nh, mac)) {
        std::memcpy(e, mac.addr_bytes, 6);
        if (cache) *cache = NextHopCache{*nh, mac, true};
        tx_enqueue(L, S, side, m);
        return;
    }
    meta(m) = PktMeta{MsgKind::hold, side, 0, 0};
    to_control(L, S, m);
}

// ---- control -> worker ring (worker 0) ------------------------------------------------------

unsigned drain_control(Lcore& L, const Dataplane::Shared& S) noexcept {
    rte_mbuf* pkts[kMaxBurst];
    const unsigned n = rte_ring_sc_dequeue_burst(S.to_workers, reinterpret_cast<void**>(pkts), kMaxBurst, nullptr);
    if (n == 0) return 0;
    L.stats.from_control.add(n);
    rte_mbuf* inner[kMaxBurst];
    std::uint32_t sid[kMaxBurst];
    unsigned ni = 0;
    for (unsigned i = 0; i < n; ++i) {
        rte_mbuf* m = pkts[i];
        const PktMeta md = meta(m);
        switch (md.kind) {
            case MsgKind::tx_frame:
                tx_enqueue(L, S, md.side, m);
                break;
            case MsgKind::tx_ip: {
                // IP packet without Ethernet header: prepend one, find the next hop.
                if (m->data_len < 1 || !rte_pktmbuf_prepend(m, wire::kEthHeaderLen)) {
                    drop(L, m, Drop::NO_ROOM);
                    break;
                }
                const std::uint8_t* ip = data(m, wire::kEthHeaderLen);
                const bool v6 = (ip[0] >> 4) == 6;
                if (v6 ? m->data_len < wire::kEthHeaderLen + wire::kIpv6HeaderLen : m->data_len < wire::kEthHeaderLen + wire::kIpv4HeaderLen) {
                    drop(L, m, Drop::IP_TRUNCATED);
                    break;
                }
                const IpAddr dst = v6 ? v6_at(ip + 24) : v4_at(ip + 16);
                send_l3(L, S, md.side, m, dst, v6 ? wire::kEtherTypeIpv6 : wire::kEtherTypeIpv4);
                break;
            }
            case MsgKind::tx_inner: {
                // The control channel's inner packet: encrypted with the data key like data.
                const Session& ses = S.sessions->get(md.session);
                if (ses.state.load(std::memory_order_acquire) != SessionState::up ||
                    !rte_pktmbuf_prepend(m, wire::kEthHeaderLen)) {
                    drop(L, m, Drop::SESSION_DOWN);
                    break;
                }
                be::put16(data(m, 12), (data(m, wire::kEthHeaderLen)[0] >> 4) == 6 ? wire::kEtherTypeIpv6 : wire::kEtherTypeIpv4);
                inner[ni] = m;
                sid[ni++] = md.session;
                break;
            }
            default:
                drop(L, m, Drop::LOOP);
        }
    }
    if (ni) outbound_crypto(L, S, inner, sid, ni);
    return n;
}

unsigned drain_once(Lcore& L, const Dataplane::Shared& S) noexcept {
    const unsigned n = drain_control(L, S);
    tx_flush(L, S, Side::lan);
    tx_flush(L, S, Side::wan);
    return n;
}
}  // namespace p3::dp
