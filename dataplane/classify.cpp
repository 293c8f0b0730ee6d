// Classification: every received frame, on either port, before any crypto.
//
// Owns: Ethernet checks (runt, our MAC or a group address, linearising a chain); IPv4/IPv6
// header validation (length, checksum, link padding trimmed); ARP and ND handed to the control
// thread; ICMP echo to our addresses answered in place. LAN side: source and destination
// sanity, the route (LPM) to a session, the TTL (RFC 1812), the session's state read once per
// run of one session, then the outbound stage (outbound.cpp). WAN side: outer destination =
// our WAN address, outer fragments to the reassembler, the tunnel protocols demultiplexed
// (docs/wire-format.md §Demultiplexing: on IP protocol 50 first word 0 = P3, else an ESP SPI;
// on UDP nat_port a one-byte 0xff = NAT keepalive (dropped), first word 0 = IKE behind the
// non-ESP marker (to the control thread as setup UDP), the UDP bit = P3, else ESP), setup UDP
// to the control thread, then the inbound stage (inbound.cpp: P3 and ESP). Received frames'
// lines are prefetched a few packets ahead (l3fwd).
#include <rte_cycles.h>
#include <rte_prefetch.h>

#include <cstring>

#include "dataplane/fastpath.hpp"
#include "dataplane/mtu.hpp"
#include "dataplane/pkt.hpp"

namespace p3::dp {

using namespace pkt;

// ---- helpers ------------------------------------------------------------------------

namespace {

// Multicast (224/4) or limited broadcast, on an address in host order.
bool v4_group_or_bcast(std::uint32_t a) noexcept { return (a >> 28) == 0xe || a == 0xffffffffu; }

// Frame checks shared by both sides. true with the ethertype in et; false after dropping the
// frame. (Every 16-bit value is a possible ethertype, 0 included, so none can mean "dropped".)
bool check_l2(Lcore& L, const Dataplane::Shared& S, Side side, rte_mbuf* m, std::uint16_t& et) noexcept {
    if (m->nb_segs > 1 && rte_pktmbuf_linearize(m) != 0) {
        drop(L, m, Drop::IP_TRUNCATED);
        return false;
    }
    if (m->data_len < wire::kEthHeaderLen) {
        drop(L, m, Drop::RX_RUNT);
        return false;
    }
    const std::uint8_t* e = data(m);
    const bool group = (e[0] & 1) != 0;
    if (!group && std::memcmp(e, S.mac[static_cast<unsigned>(side)].addr_bytes, 6) != 0) {
        drop(L, m, Drop::NOT_OUR_MAC);
        return false;
    }
    et = be::get16(e + 12);
    return true;
}

// Validates the IPv4 header at offset 14 and trims Ethernet padding. false = dropped.
[[gnu::always_inline]] inline bool check_v4(Lcore& L, rte_mbuf* m) noexcept {
    const std::uint8_t* ip = data(m, wire::kEthHeaderLen);
    const unsigned avail = m->data_len - wire::kEthHeaderLen;
    if (avail < wire::kIpv4HeaderLen) return drop(L, m, Drop::IP_TRUNCATED), false;
    const unsigned hl = (ip[0] & 0x0f) * 4u;
    if ((ip[0] >> 4) != 4 || hl < wire::kIpv4HeaderLen) return drop(L, m, Drop::IP_BAD_HEADER), false;
    const unsigned tot = be::get16(ip + 2);
    if (hl > avail || tot > avail) return drop(L, m, Drop::IP_TRUNCATED), false;
    if (tot < hl) return drop(L, m, Drop::IP_BAD_HEADER), false;
    if (hl == wire::kIpv4HeaderLen ? !csum::ipv4_hdr20_ok(ip) : rte_raw_cksum(ip, hl) != 0xffff) return drop(L, m, Drop::IP_BAD_HEADER), false;
    if (tot < avail) rte_pktmbuf_trim(m, static_cast<std::uint16_t>(avail - tot));
    return true;
}

bool check_v6(Lcore& L, rte_mbuf* m) noexcept {
    const std::uint8_t* ip = data(m, wire::kEthHeaderLen);
    const unsigned avail = m->data_len - wire::kEthHeaderLen;
    if (avail < wire::kIpv6HeaderLen) return drop(L, m, Drop::IP_TRUNCATED), false;
    if ((ip[0] >> 4) != 6) return drop(L, m, Drop::IP_BAD_HEADER), false;
    const unsigned tot = wire::kIpv6HeaderLen + be::get16(ip + 4);
    if (tot > avail) return drop(L, m, Drop::IP_TRUNCATED), false;
    if (tot < avail) rte_pktmbuf_trim(m, static_cast<std::uint16_t>(avail - tot));
    return true;
}

// An echo answered in place goes back the way it came: Ethernet destination and source
// swapped, and the IP source and destination (alen bytes each, the source at addrs).
inline void turn_around(std::uint8_t* eth, std::uint8_t* addrs, unsigned alen) noexcept {
    std::uint8_t tmp[16];
    std::memcpy(tmp, eth, 6);
    std::memcpy(eth, eth + 6, 6);
    std::memcpy(eth + 6, tmp, 6);
    std::memcpy(tmp, addrs, alen);
    std::memcpy(addrs, addrs + alen, alen);
    std::memcpy(addrs + alen, tmp, alen);
}

// ICMP echo request to one of our addresses: answered in place, back where it came from.
void echo_v4(Lcore& L, const Dataplane::Shared& S, Side side, rte_mbuf* m) noexcept {
    std::uint8_t* e = data(m);
    std::uint8_t* ip = e + wire::kEthHeaderLen;
    const unsigned hl = (ip[0] & 0x0f) * 4u;
    const unsigned tot = be::get16(ip + 2);
    std::uint8_t* icmp = ip + hl;
    const unsigned len = tot - hl;
    if (len < 8 || csum::finish(csum::partial(icmp, len)) != 0 || (be::get16(ip + 6) & 0x3fff) != 0) {
        drop(L, m, Drop::ICMP_BAD);
        return;
    }
    if (icmp[0] != 8 || icmp[1] != 0) {
        drop(L, m, Drop::NOT_FOR_US);
        return;
    }
    turn_around(e, ip + 12, 4);
    ip[8] = wire::kTtl;
    ip[10] = ip[11] = 0;
    be::put16(ip + 10, csum::ipv4_header(ip, hl));
    icmp[0] = 0;
    icmp[2] = icmp[3] = 0;
    be::put16(icmp + 2, csum::finish(csum::partial(icmp, len)));
    L.stats.echo_replies.add();
    tx_enqueue(L, S, side, m);
}

void echo_v6(Lcore& L, const Dataplane::Shared& S, Side side, rte_mbuf* m) noexcept {
    std::uint8_t* e = data(m);
    std::uint8_t* ip = e + wire::kEthHeaderLen;
    const unsigned len = be::get16(ip + 4);
    std::uint8_t* icmp = ip + wire::kIpv6HeaderLen;
    if (len < 8 || csum::l4(true, ip + 8, ip + 24, wire::kIpProtoIcmp6, icmp, len) != 0) {
        drop(L, m, Drop::ICMP_BAD);
        return;
    }
    turn_around(e, ip + 8, 16);
    ip[7] = wire::kTtl;
    icmp[0] = 129;
    icmp[2] = icmp[3] = 0;
    be::put16(icmp + 2, csum::l4(true, ip + 8, ip + 24, wire::kIpProtoIcmp6, icmp, len));
    L.stats.echo_replies.add();
    tx_enqueue(L, S, side, m);
}

// ICMPv6 to us or ND: true when handled (consumed).
bool local_icmp6(Lcore& L, const Dataplane::Shared& S, Side side, rte_mbuf* m, bool to_own) noexcept {
    const std::uint8_t* ip = data(m, wire::kEthHeaderLen);
    if (ip[6] != wire::kIpProtoIcmp6) return false;
    const unsigned len = be::get16(ip + 4);
    if (len < 4) return drop(L, m, Drop::ICMP_BAD), true;
    const std::uint8_t type = ip[wire::kIpv6HeaderLen];
    if (type == 135 || type == 136) {
        if (ip[7] != 255) return drop(L, m, Drop::ND_BAD), true;
        L.stats.nd_in.add();
        meta(m) = PktMeta{MsgKind::nd, side, 0, 0};
        to_control(L, S, m);
        return true;
    }
    if (type >= 133 && type <= 137) return drop(L, m, Drop::NOT_FOR_US), true;   // RS, RA, redirect
    if (!to_own) return false;
    if (type == 128) echo_v6(L, S, side, m);
    else drop(L, m, Drop::NOT_FOR_US);
    return true;
}

// Received frames' first lines are asked for kAhead packets before they are classified (as
// l3fwd does); the first kAhead before the loop starts.
constexpr unsigned kAhead = 3;
inline void prefetch_first(rte_mbuf* const* pkts, unsigned n) noexcept {
    for (unsigned j = 0; j < kAhead && j < n; ++j) rte_prefetch0(rte_pktmbuf_mtod(pkts[j], void*));
}

// TTL / hop limit minus one (RFC 1624 incremental checksum). false = would expire.
bool dec_ttl_v4(std::uint8_t* ip) noexcept {
    if (ip[8] <= 1) return false;
    --ip[8];
    std::uint32_t c = be::get16(ip + 10) + 0x0100u;
    be::put16(ip + 10, static_cast<std::uint16_t>(c + (c >> 16)));
    return true;
}

}  // namespace

// ---- LAN side: clear packets in -----------------------------------------------------------

// Returns how many packets the outbound stage sealed and passed on.
static unsigned process_lan(Lcore& L, const Dataplane::Shared& S, rte_mbuf** pkts, unsigned n) noexcept {
    OutStage out;
    out.turn = L.lane_turn++;
    const IpAddr& own = S.own(Side::lan);
    const IpAddr& own_wan = S.own(Side::wan);
    const struct {
        bool on, wan_on;
        std::uint32_t lan, wan;
    } own4{own.is_v4(), own_wan.is_v4(), own.is_v4() ? own.v4_host() : 0, own_wan.is_v4() ? own_wan.v4_host() : 0};
    std::uint64_t rx_bytes = 0;

    // One pass: each packet is classified, routed, checked and staged for encryption while its
    // lines are in cache. Route (LPM) -> a router's duties (RFC 1812: the TTL) -> the session's
    // state, read once per run of one session -> the outbound stage.
    std::uint32_t state_sid = 0;
    bool state_up = false;
    auto admit = [&](rte_mbuf* m, std::uint8_t* ip, std::uint32_t s, bool is_v4) {
        if (s == 0) {
            drop(L, m, Drop::NO_ROUTE);
            return;
        }
        if (is_v4 ? ip[8] <= 1 : ip[7] <= 1) {
            drop(L, m, Drop::TTL_EXCEEDED);
            return;
        }
        if (s != state_sid) {
            state_sid = s;
            state_up = S.sessions->get(s).state.load(std::memory_order_acquire) == SessionState::up;
        }
        if (!state_up) {
            L.sessions[s].tx_down.add();
            answer_session_down(L, S, m);
            return;
        }
        if (is_v4) dec_ttl_v4(ip);
        else --ip[7];
        outbound_one(L, S, out, m, s);
    };

    prefetch_first(pkts, n);
    for (unsigned i = 0; i < n; ++i) {
        if (i + kAhead < n) rte_prefetch0(rte_pktmbuf_mtod(pkts[i + kAhead], void*));
        rte_mbuf* m = pkts[i];
        // Encapsulation writes the outer headers into the headroom line in front of the frame
        // and the trailer + ICV behind it: cold lines the PMD never touched. Asked for now,
        // they are there when the burst is sealed. The trailer starts in the frame's last line;
        // the line asked for is the one the ICV ends in. (A single-segment packet never reads
        // the mbuf's second line, so that one is not asked for.)
        rte_prefetch0(rte_pktmbuf_mtod_offset(m, char*, -RTE_CACHE_LINE_SIZE));
        rte_prefetch0(rte_pktmbuf_mtod_offset(m, char*, m->data_len + wire::kMaxAlignPad + wire::kTrailerFixed +
                                                            wire::kIcvLen - 1));
        rx_bytes += m->pkt_len;
        std::uint16_t et;
        if (!check_l2(L, S, Side::lan, m, et)) continue;
        if (et == wire::kEtherTypeIpv4) {
            if (!check_v4(L, m)) continue;
            std::uint8_t* ip = data(m, wire::kEthHeaderLen);
            // Both addresses as words, compared with ours once converted (not per packet).
            const std::uint32_t dst = be::get32(ip + 16), src = be::get32(ip + 12);
            const bool to_lan = own4.on && dst == own4.lan;
            if (to_lan || (own4.wan_on && dst == own4.wan)) {
                if (ip[9] == wire::kIpProtoIcmp && to_lan) echo_v4(L, S, Side::lan, m);
                else drop(L, m, Drop::NOT_FOR_US);
                continue;
            }
            if ((own4.on && src == own4.lan) || v4_group_or_bcast(src)) {
                drop(L, m, Drop::IP_SRC_BAD);
                continue;
            }
            if (v4_group_or_bcast(dst)) {
                drop(L, m, Drop::NOT_FOR_US);
                continue;
            }
            admit(m, ip, S.routes->lookup4(dst), true);
        } else if (et == wire::kEtherTypeIpv6) {
            if (!check_v6(L, m)) continue;
            std::uint8_t* ip = data(m, wire::kEthHeaderLen);
            const bool to_own = same_v6(ip + 24, own) || same_v6(ip + 24, own_wan);
            if (local_icmp6(L, S, Side::lan, m, same_v6(ip + 24, own))) continue;
            if (to_own || ip[24] == 0xff) {
                drop(L, m, Drop::NOT_FOR_US);
                continue;
            }
            if (same_v6(ip + 8, own) || ip[8] == 0xff) {
                drop(L, m, Drop::IP_SRC_BAD);
                continue;
            }
            admit(m, ip, S.routes->lookup6(ip + 24), false);
        } else if (et == wire::kEtherTypeArp) {
            L.stats.arp_in.add();
            meta(m) = PktMeta{MsgKind::arp, Side::lan, 0, 0};
            to_control(L, S, m);
        } else {
            drop(L, m, Drop::ETHERTYPE);
        }
    }
    L.stats.rx_lan_bytes.add(rx_bytes);
    return out.passed + outbound_flush(L, S, out);
}

// ---- WAN side: tunnel packets in ----------------------------------------------------------

// The reassembler keeps its own counts; fold what is new into this lcore's drop reasons.
void count_reassembly(Lcore& L) noexcept {
    const ReassemblyStats& now = L.reasm.stats();
    ReassemblyStats& was = L.reasm_seen;
    const std::uint64_t lost = (now.expired - was.expired) + (now.dropped - was.dropped) +
                               (now.malformed - was.malformed) + (now.too_big - was.too_big);
    if (lost) L.stats.drop(Drop::REASSEMBLY, lost);
    const std::uint64_t share = (now.evicted - was.evicted) + (now.over_share - was.over_share);
    if (share) L.stats.drop(Drop::REASM_SHARE, share);
    if (now.over_source != was.over_source) L.stats.drop(Drop::REASM_SOURCE, now.over_source - was.over_source);
    if (now.reassembled != was.reassembled) L.stats.reassembled.add(now.reassembled - was.reassembled);
    L.reasm_held.store(now.held, std::memory_order_relaxed);
    L.reasm_peak.store(now.held_peak, std::memory_order_relaxed);
    was = now;
}

// Outer IPv4/IPv6 addressed to us: P3 (native or UDP 4500), setup UDP, ICMP echo. The outer
// header starts at offset 14; fragments were reassembled before this.
// The layer above the outer IP header at l4_off: P3 (native or UDP 4500) returns the offset
// of its P3 header for the inbound stage; anything else is handled or dropped here (0).
static unsigned wan_l4(Lcore& L, const Dataplane::Shared& S, rte_mbuf* m, bool v6, unsigned l4_off,
                       std::uint8_t proto) noexcept {
    const unsigned end = m->data_len;
    if (proto == wire::kIpProtoEsp) [[likely]] return l4_off;
    if (proto == wire::kIpProtoUdp) {
        if (end < l4_off + wire::kUdpHeaderLen) return drop(L, m, Drop::IP_TRUNCATED), 0;
        const std::uint8_t* u = data(m, l4_off);
        const unsigned ulen = be::get16(u + 4);
        if (ulen < wire::kUdpHeaderLen || l4_off + ulen > end) return drop(L, m, Drop::IP_TRUNCATED), 0;
        const std::uint16_t dport = be::get16(u + 2);
        if (dport == S.nat_port) {
            if (ulen == wire::kUdpHeaderLen + 1 && u[8] == 0xff) return drop(L, m, Drop::NAT_KEEPALIVE), 0;
            if (ulen < wire::kUdpHeaderLen + 4) return drop(L, m, Drop::ESP_TRUNCATED), 0;
            if (be::get32(u + wire::kUdpHeaderLen) == wire::kNonEspMarker) {
                // IKE floated to the NAT port (RFC 7296 §2.23): the control thread strips the marker.
                if (ulen == wire::kUdpHeaderLen + wire::kNonEspMarkerLen) return drop(L, m, Drop::ESP_TRUNCATED), 0;
                meta(m) = PktMeta{MsgKind::setup_udp, Side::wan, 0, 0};
                to_control(L, S, m);
                return 0;
            }
            return l4_off + wire::kUdpHeaderLen;
        }
        if (dport == S.setup_port) {
            meta(m) = PktMeta{MsgKind::setup_udp, Side::wan, 0, 0};
            to_control(L, S, m);
            return 0;
        }
        return drop(L, m, Drop::WAN_NOT_P3), 0;
    }
    if (!v6 && proto == wire::kIpProtoIcmp) return echo_v4(L, S, Side::wan, m), 0;
    if (v6 && proto == wire::kIpProtoIcmp6) {
        if (data(m, l4_off)[0] == 128) return echo_v6(L, S, Side::wan, m), 0;
        return drop(L, m, Drop::NOT_FOR_US), 0;
    }
    return drop(L, m, Drop::WAN_NOT_P3), 0;
}

// How a P3 packet whose header wan_l4 found at off past the layer at l4 was carried, for the
// slot's peer check: native (off == l4) or UDP from its source port (network order).
static inline std::uint32_t p3_src(rte_mbuf* m, unsigned l4, unsigned off) noexcept {
    std::uint16_t p = 0;
    if (off != l4) std::memcpy(&p, data(m, l4), 2);
    return wire::RxSlot::src_tag(off != l4, p);
}

// A tunnel packet whose first word (P3 Flags or an ESP SPI) is at off: native (src 0) P3 has
// Flags 0, UDP P3 the UDP bit (wan_l4 took the non-ESP marker away); anything else is ESP.
static inline void wan_tunnel(Lcore& L, const Dataplane::Shared& S, InStage& in, rte_mbuf* m, unsigned off,
                              std::uint32_t src) noexcept {
    if (m->data_len < off + 4) [[unlikely]] return drop(L, m, Drop::ESP_TRUNCATED);
    const std::uint32_t w = be::get32(data(m, off));
    const bool p3 = src == 0 ? w == 0 : (w & wire::kFlagUdp) != 0;
    if (p3) [[likely]] inbound_one(L, S, in, m, off, src);
    else inbound_esp_one(L, S, in, m, off, src);
}

// Returns how many packets the inbound stage opened and passed on.
static unsigned process_wan(Lcore& L, const Dataplane::Shared& S, rte_mbuf** pkts, unsigned n) noexcept {
    InStage in;
    const IpAddr& own = S.own(Side::wan);
    const std::uint64_t now = rte_rdtsc();
    std::uint64_t rx_bytes = 0;

    prefetch_first(pkts, n);
    for (unsigned i = 0; i < n; ++i) {
        if (i + kAhead < n) rte_prefetch0(rte_pktmbuf_mtod(pkts[i + kAhead], void*));
        rte_mbuf* m = pkts[i];
        rx_bytes += m->pkt_len;
        std::uint16_t et;
        if (!check_l2(L, S, Side::wan, m, et)) continue;
        if (et == wire::kEtherTypeArp) {
            L.stats.arp_in.add();
            meta(m) = PktMeta{MsgKind::arp, Side::wan, 0, 0};
            to_control(L, S, m);
        } else if (et == wire::kEtherTypeIpv4) {
            if (!check_v4(L, m)) continue;
            std::uint8_t* ip = data(m, wire::kEthHeaderLen);
            if (!same_v4(ip + 16, own)) {
                drop(L, m, Drop::WAN_NOT_P3);
                continue;
            }
            if ((be::get16(ip + 6) & 0x3fff) != 0) {   // MF or offset: an outer fragment
                m->l2_len = wire::kEthHeaderLen;
                m = L.reasm.process(m, now);
                if (!m) continue;
                ip = data(m, wire::kEthHeaderLen);
            }
            // Native P3 inline; the rest (UDP 4500 among it) through wan_l4.
            const unsigned l4 = wire::kEthHeaderLen + (ip[0] & 0x0f) * 4u;
            const unsigned off = ip[9] == wire::kIpProtoEsp ? l4 : wan_l4(L, S, m, false, l4, ip[9]);
            if (off) wan_tunnel(L, S, in, m, off, p3_src(m, l4, off));
        } else if (et == wire::kEtherTypeIpv6) {
            if (!check_v6(L, m)) continue;
            std::uint8_t* ip = data(m, wire::kEthHeaderLen);
            if (local_icmp6(L, S, Side::wan, m, same_v6(ip + 24, own))) continue;
            if (!same_v6(ip + 24, own)) {
                drop(L, m, Drop::WAN_NOT_P3);
                continue;
            }
            if (ip[6] == kV6Fragment) {
                m->l2_len = wire::kEthHeaderLen;
                m = L.reasm.process(m, now);
                if (!m) continue;
                ip = data(m, wire::kEthHeaderLen);
            }
            const unsigned off = wan_l4(L, S, m, true, wire::kEthHeaderLen + wire::kIpv6HeaderLen, ip[6]);
            if (off) wan_tunnel(L, S, in, m, off, p3_src(m, wire::kEthHeaderLen + wire::kIpv6HeaderLen, off));
        } else {
            drop(L, m, Drop::ETHERTYPE);
        }
    }
    L.stats.rx_wan_bytes.add(rx_bytes);
    L.reasm.end_burst(now);
    count_reassembly(L);
    const unsigned passed = in.passed + inbound_flush(L, S, in);
    if (L.handoff_dirty != 0) [[unlikely]] handoff_flush(L, S);
    return passed;
}

// ---- handoff: lanes another worker owns -------------------------------------------------

void handoff_flush(Lcore& L, const Dataplane::Shared& S) noexcept {
    std::uint64_t dirty = L.handoff_dirty;
    L.handoff_dirty = 0;
    while (dirty != 0) {
        const unsigned to = static_cast<unsigned>(__builtin_ctzll(dirty));
        dirty &= dirty - 1;
        HandoffBuffer& b = L.hand[to];
        rte_ring* r = S.handoff[to];
        const unsigned k = r ? rte_ring_enqueue_burst(r, reinterpret_cast<void* const*>(b.pkts), b.n, nullptr) : 0;
        L.stats.handoff_out.add(k);
        if (k < b.n) {
            L.stats.drop(Drop::HANDOFF_FULL, b.n - k);
            rte_pktmbuf_free_bulk(b.pkts + k, b.n - k);
        }
        b.n = 0;
    }
}

// The packets were classified by the worker that received them (outer headers checked,
// reassembled, the P3 header found); the slot is looked up again here by P3 ID (the sender's
// RCU read section is over), and being the lane's owner this worker opens them.
unsigned handoff_in(Lcore& L, const Dataplane::Shared& S, rte_mbuf** pkts, unsigned burst) noexcept {
    const unsigned n = rte_ring_dequeue_burst(L.handoff, reinterpret_cast<void**>(pkts), burst, nullptr);
    if (n == 0) return 0;
    L.stats.handoff_in.add(n);
    InStage in;
    prefetch_first(pkts, n);
    for (unsigned i = 0; i < n; ++i) {
        if (i + kAhead < n) rte_prefetch0(rte_pktmbuf_mtod(pkts[i + kAhead], void*));
        const PktMeta pm = meta(pkts[i]);
        inbound_one(L, S, in, pkts[i], pm.lane, pm.session);
    }
    inbound_flush(L, S, in);
    if (L.handoff_dirty != 0) [[unlikely]] handoff_flush(L, S);   // only if the owners changed
    return n;
}

unsigned rx_burst(Lcore& L, const Dataplane::Shared& S, Side side, rte_mbuf** pkts, unsigned n) noexcept {
    if (side == Side::lan) {
        L.stats.rx_lan_pkts.add(n);
        return process_lan(L, S, pkts, n);
    }
    L.stats.rx_wan_pkts.add(n);
    return process_wan(L, S, pkts, n);
}

}  // namespace p3::dp
