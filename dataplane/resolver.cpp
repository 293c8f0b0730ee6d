#include "dataplane/resolver.hpp"

#include <cstdio>
#include <cstring>

#include "common/headers.hpp"
#include "common/log.hpp"
#include "dataplane/dataplane.hpp"
#include "dataplane/fastpath.hpp"
#include "dataplane/pkt.hpp"

namespace p3::dp {

using namespace pkt;

namespace {
constexpr unsigned kArpLen = 28;

void solicited_node(const IpAddr& target, std::uint8_t out[16]) {
    static const std::uint8_t base[16] = {0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, 0, 0, 0};
    std::memcpy(out, base, 16);
    std::memcpy(out + 13, target.bytes.data() + 13, 3);
}


// Ethernet + IPv6 (hop limit 255) + ICMPv6 body of len bytes (checksum filled in).
rte_mbuf* build_icmp6(rte_mempool* mp, const rte_ether_addr& src_mac, const rte_ether_addr& dst_mac,
                      const std::uint8_t* src_ip, const std::uint8_t* dst_ip, const std::uint8_t* body,
                      unsigned len) {
    rte_mbuf* m = rte_pktmbuf_alloc(mp);
    if (!m) return nullptr;
    auto* p = reinterpret_cast<std::uint8_t*>(rte_pktmbuf_append(m, wire::kEthHeaderLen + wire::kIpv6HeaderLen + len));
    if (!p) {
        rte_pktmbuf_free(m);
        return nullptr;
    }
    put_eth(p, dst_mac.addr_bytes, src_mac.addr_bytes, wire::kEtherTypeIpv6);
    std::uint8_t* ip = p + wire::kEthHeaderLen;
    hdr::put_ipv6(ip, len, wire::kIpProtoIcmp6, 255, src_ip, dst_ip);
    std::uint8_t* icmp = ip + wire::kIpv6HeaderLen;
    std::memcpy(icmp, body, len);
    icmp[2] = icmp[3] = 0;
    be::put16(icmp + 2, csum::l4(true, src_ip, dst_ip, wire::kIpProtoIcmp6, icmp, len));
    return m;
}
}  // namespace

Resolver::~Resolver() {
    for (auto& side : pending_)
        for (auto& [ip, p] : side)
            for (auto* m : p.held) rte_pktmbuf_free(m);
}

rte_mbuf* Resolver::build_arp_request(rte_mempool* mp, const rte_ether_addr& src_mac, const IpAddr& src_ip,
                                      const IpAddr& target) {
    rte_mbuf* m = rte_pktmbuf_alloc(mp);
    if (!m) return nullptr;
    // 60 bytes: the Ethernet minimum, padded with zeros.
    auto* p = reinterpret_cast<std::uint8_t*>(rte_pktmbuf_append(m, 60));
    if (!p) {
        rte_pktmbuf_free(m);
        return nullptr;
    }
    std::memset(p, 0, 60);
    static constexpr std::uint8_t kBroadcast[6] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    put_eth(p, kBroadcast, src_mac.addr_bytes, wire::kEtherTypeArp);
    std::uint8_t* a = p + wire::kEthHeaderLen;
    be::put16(a, 1);
    be::put16(a + 2, wire::kEtherTypeIpv4);
    a[4] = 6;
    a[5] = 4;
    be::put16(a + 6, 1);
    std::memcpy(a + 8, src_mac.addr_bytes, 6);
    std::memcpy(a + 14, src_ip.bytes.data(), 4);
    std::memcpy(a + 24, target.bytes.data(), 4);
    return m;
}

rte_mbuf* Resolver::build_ns(rte_mempool* mp, const rte_ether_addr& src_mac, const IpAddr& src_ip,
                             const IpAddr& target) {
    std::uint8_t dst[16];
    solicited_node(target, dst);
    rte_ether_addr dmac{{0x33, 0x33, dst[12], dst[13], dst[14], dst[15]}};
    std::uint8_t body[32] = {135, 0};
    std::memcpy(body + 8, target.bytes.data(), 16);
    body[24] = 1;   // source link-layer address option
    body[25] = 1;   // 8 bytes
    std::memcpy(body + 26, src_mac.addr_bytes, 6);
    return build_icmp6(mp, src_mac, dmac, src_ip.bytes.data(), dst, body, sizeof body);
}

void Resolver::set_static(Side side, const IpAddr& ip, const rte_ether_addr& mac) {
    if (auto* e = dp_.neighbors(side).find_or_insert(ip)) NeighborTable::set_mac(*e, mac);
}

void Resolver::learn(Side side, const IpAddr& ip, const rte_ether_addr& mac) {
    auto* e = dp_.neighbors(side).find(ip);   // only next hops we asked for (or static)
    if (!e) return;
    const bool was = (e->mac.load(std::memory_order_relaxed) & NeighborTable::kValid) != 0;
    NeighborTable::set_mac(*e, mac);
    auto it = pending_[static_cast<unsigned>(side)].find(ip);
    if (it != pending_[static_cast<unsigned>(side)].end()) {
        held_[static_cast<unsigned>(side)] -= static_cast<unsigned>(it->second.held.size());
        for (rte_mbuf* m : it->second.held) {
            std::memcpy(pkt::data(m), mac.addr_bytes, 6);
            meta(m).kind = MsgKind::tx_frame;
            meta(m).side = side;
            transmit(m);
        }
        pending_[static_cast<unsigned>(side)].erase(it);
    }
    if (!was) {
        char buf[RTE_ETHER_ADDR_FMT_SIZE];
        rte_ether_format_addr(buf, sizeof buf, &mac);
        P3_LOG_INFO(DP_NEIGH_LEARNED, "%s next hop %s is at %s", side_name(side), ip.str().c_str(), buf);
    }
}

void Resolver::transmit(rte_mbuf* m) {
    if (!dp_.send_to_workers(m)) {
        stats_.drop(Drop::CONTROL_RING_FULL);
        rte_pktmbuf_free(m);
    }
}

void Resolver::request(Side side, const IpAddr& ip) {
    const auto& own = dp_.addr(side).addr.addr;
    const auto& mac = dp_.port(side).mac;
    rte_mbuf* m = ip.is_v4() ? build_arp_request(dp_.pool(), mac, own, ip) : build_ns(dp_.pool(), mac, own, ip);
    if (!m) {
        stats_.drop(Drop::MBUF_ALLOC);
        return;
    }
    meta(m) = PktMeta{MsgKind::tx_frame, side, 0, 0};
    transmit(m);
}

void Resolver::drop_held(Side side, Pending& p, Drop why) {
    stats_.drop(why, p.held.size());
    held_[static_cast<unsigned>(side)] -= static_cast<unsigned>(p.held.size());
    for (auto* m : p.held) rte_pktmbuf_free(m);
    p.held.clear();
}

void Resolver::fail(Side side, const IpAddr& ip, Pending& p, std::uint64_t now_ms) {
    drop_held(side, p, Drop::NEIGH_FAILED);
    p.resolving = false;
    p.failed_until_ms = now_ms + kResolveHoldoffMs;
    dp_.neighbors(side).erase_unresolved(ip, dp_.qsbr());   // never resolved: its slot goes
    if (fail_logged_ && now_ms - fail_log_ms_ < kPressureLogMs) {
        ++fail_unlogged_;
        return;
    }
    char more[64] = "";
    if (fail_unlogged_)
        std::snprintf(more, sizeof more, " (and %u other next hops since the last such line)", fail_unlogged_);
    P3_LOG_WARN(DP_NEIGH_FAILED, "%s next hop %s: no answer to %u %s requests%s", side_name(side), ip.str().c_str(),
                kResolveRetries, ip.is_v4() ? "ARP" : "neighbour solicitation", more);
    fail_logged_ = true;
    fail_log_ms_ = now_ms;
    fail_unlogged_ = 0;
}

Resolver::Pending* Resolver::make_pending(Side side, const IpAddr& nh) {
    auto& map = pending_[static_cast<unsigned>(side)];
    if (map.size() >= kMaxPendingNeighbors) {
        // A next hop held off after a failure holds nothing: it gives way to a new one.
        auto it = map.begin();
        while (it != map.end() && (it->second.resolving || !it->second.held.empty())) ++it;
        if (it == map.end()) return nullptr;
        map.erase(it);
    }
    return &map[nh];
}

void Resolver::on_hold(Side side, rte_mbuf* m, std::uint64_t now_ms) {
    // The frame is complete but for the destination MAC: find its next hop again (same rule
    // the worker used) from the IP destination.
    const std::uint8_t* p = pkt::data(m);
    IpAddr dst;
    const std::uint16_t et = be::get16(p + 12);
    if (et == wire::kEtherTypeIpv4 && m->data_len >= wire::kEthHeaderLen + wire::kIpv4HeaderLen) dst = v4_at(p + wire::kEthHeaderLen + 16);
    else if (et == wire::kEtherTypeIpv6 && m->data_len >= wire::kEthHeaderLen + wire::kIpv6HeaderLen) dst = v6_at(p + wire::kEthHeaderLen + 24);
    auto nh = dp_.shared().next_hop(side, dst);
    if (!nh) {
        stats_.drop(Drop::NO_GATEWAY);
        rte_pktmbuf_free(m);
        return;
    }
    rte_ether_addr mac;
    if (dp_.neighbors(side).lookup(*nh, mac)) {   // answered meanwhile
        std::memcpy(pkt::data(m), mac.addr_bytes, 6);
        meta(m).kind = MsgKind::tx_frame;
        transmit(m);
        return;
    }
    const unsigned s = static_cast<unsigned>(side);
    auto found = pending_[s].find(*nh);
    Pending* pd = found != pending_[s].end() ? &found->second : make_pending(side, *nh);
    if (!pd) {
        stats_.drop(Drop::NEIGH_TABLE_FULL);
        rte_pktmbuf_free(m);
        return;
    }
    if (now_ms < pd->failed_until_ms) {
        stats_.drop(Drop::NEIGH_FAILED);
        rte_pktmbuf_free(m);
        return;
    }
    if (pd->held.size() >= kHoldPerNeighbor) {
        stats_.drop(Drop::NEIGH_HOLD);
        rte_pktmbuf_free(m);
    } else if (held_[s] >= kMaxHeldFrames) {
        stats_.drop(Drop::NEIGH_HOLD_TOTAL);
        rte_pktmbuf_free(m);
    } else {
        pd->held.push_back(m);
        ++held_[s];
        stats_.held.add();
    }
    if (!pd->resolving) {
        if (!dp_.neighbors(side).find_or_insert(*nh, dp_.qsbr())) {   // table full: cannot resolve now
            drop_held(side, *pd, Drop::NEIGH_TABLE_FULL);
            pending_[s].erase(*nh);
            return;
        }
        pd->resolving = true;
        pd->retries = 1;
        pd->last_request_ms = now_ms;
        request(side, *nh);
    }
}

void Resolver::poll(std::uint64_t now_ms) {
    for (unsigned s = 0; s < kSides; ++s) {
        auto& map = pending_[s];
        for (auto it = map.begin(); it != map.end();) {
            Pending& p = it->second;
            if (p.resolving && now_ms - p.last_request_ms >= kResolveIntervalMs) {
                if (p.retries >= kResolveRetries) {
                    fail(static_cast<Side>(s), it->first, p, now_ms);
                } else {
                    ++p.retries;
                    p.last_request_ms = now_ms;
                    request(static_cast<Side>(s), it->first);
                }
            }
            if (!p.resolving && p.held.empty() && now_ms >= p.failed_until_ms) it = map.erase(it);
            else ++it;
        }
    }
}

void Resolver::on_arp(Side side, rte_mbuf* m, std::uint64_t now_ms) {
    (void)now_ms;
    const SideAddr& own = dp_.addr(side);
    std::uint8_t* p = pkt::data(m);
    if (m->data_len < wire::kEthHeaderLen + kArpLen || !own.addr.addr.is_v4()) {
        stats_.drop(Drop::ARP_BAD);
        rte_pktmbuf_free(m);
        return;
    }
    std::uint8_t* a = p + wire::kEthHeaderLen;
    const std::uint16_t op = be::get16(a + 6);
    if (be::get16(a) != 1 || be::get16(a + 2) != wire::kEtherTypeIpv4 || a[4] != 6 || a[5] != 4 || (op != 1 && op != 2)) {
        stats_.drop(Drop::ARP_BAD);
        rte_pktmbuf_free(m);
        return;
    }
    rte_ether_addr sha;
    std::memcpy(sha.addr_bytes, a + 8, 6);
    const IpAddr spa = v4_at(a + 14), tpa = v4_at(a + 24);
    const bool for_us = tpa == own.addr.addr;
    const bool sane = !rte_is_multicast_ether_addr(&sha) && !rte_is_zero_ether_addr(&sha) &&
                      own.addr.contains(spa) && spa != own.addr.addr;
    // RFC 826 updates an entry we have; it would create one for a request aimed at us, but
    // anyone on the link could then fill the table: entries are made only by our own requests.
    if (sane) learn(side, spa, sha);
    if (op == 1 && for_us && sane) {
        const auto& mac = dp_.port(side).mac;
        std::memcpy(p, sha.addr_bytes, 6);
        std::memcpy(p + 6, mac.addr_bytes, 6);
        be::put16(a + 6, 2);
        std::memcpy(a + 18, sha.addr_bytes, 6);
        std::memcpy(a + 24, spa.bytes.data(), 4);
        std::memcpy(a + 8, mac.addr_bytes, 6);
        std::memcpy(a + 14, own.addr.addr.bytes.data(), 4);
        meta(m) = PktMeta{MsgKind::tx_frame, side, 0, 0};
        transmit(m);
        return;
    }
    if (!for_us && op == 1) stats_.drop(Drop::NOT_FOR_US);
    else if (!sane) stats_.drop(Drop::ARP_BAD);
    rte_pktmbuf_free(m);
}

void Resolver::on_nd(Side side, rte_mbuf* m, std::uint64_t now_ms) {
    (void)now_ms;
    const SideAddr& own = dp_.addr(side);
    // The worker checked: Ethernet + IPv6 with next header 58, hop limit 255, type 135/136,
    // and that the frame holds the IPv6 payload length.
    std::uint8_t* p = pkt::data(m);
    std::uint8_t* ip = p + wire::kEthHeaderLen;
    const unsigned plen = be::get16(ip + 4);
    std::uint8_t* icmp = ip + wire::kIpv6HeaderLen;
    if (!own.addr.addr.is_v6() || plen < 24 ||
        csum::l4(true, ip + 8, ip + 24, wire::kIpProtoIcmp6, icmp, plen) != 0 || icmp[1] != 0) {
        stats_.drop(Drop::ND_BAD);
        rte_pktmbuf_free(m);
        return;
    }
    const std::uint8_t type = icmp[0];
    const IpAddr target = v6_at(icmp + 8);
    const IpAddr src = v6_at(ip + 8);
    // Link-layer address option (1 = source in NS, 2 = target in NA).
    const rte_ether_addr* lla = nullptr;
    rte_ether_addr opt_mac;
    for (unsigned off = 24; off + 8 <= plen;) {
        const unsigned olen = icmp[off + 1] * 8u;
        if (olen == 0 || off + olen > plen) {
            stats_.drop(Drop::ND_BAD);
            rte_pktmbuf_free(m);
            return;
        }
        if ((type == 135 && icmp[off] == 1) || (type == 136 && icmp[off] == 2)) {
            std::memcpy(opt_mac.addr_bytes, icmp + off + 2, 6);
            lla = &opt_mac;
        }
        off += olen;
    }
    const bool src_unspec = src.bytes == std::array<std::uint8_t, 16>{};
    if (type == 136) {
        if (lla && !rte_is_multicast_ether_addr(lla)) learn(side, target, *lla);
        rte_pktmbuf_free(m);
        return;
    }
    // Neighbour solicitation.
    if (target != own.addr.addr) {
        stats_.drop(Drop::NOT_FOR_US);
        rte_pktmbuf_free(m);
        return;
    }
    if (lla && !src_unspec) learn(side, src, *lla);
    rte_ether_addr dmac;
    std::memcpy(dmac.addr_bytes, p + 6, 6);
    std::uint8_t dst_ip[16];
    static const std::uint8_t all_nodes[16] = {0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
    if (src_unspec) {
        std::memcpy(dst_ip, all_nodes, 16);
        dmac = rte_ether_addr{{0x33, 0x33, 0, 0, 0, 1}};
    } else {
        std::memcpy(dst_ip, src.bytes.data(), 16);
        if (lla) dmac = *lla;
    }
    std::uint8_t body[32] = {136, 0};
    body[4] = src_unspec ? 0x20 : 0x60;   // Solicited (unless DAD) | Override
    std::memcpy(body + 8, own.addr.addr.bytes.data(), 16);
    body[24] = 2;
    body[25] = 1;
    std::memcpy(body + 26, dp_.port(side).mac.addr_bytes, 6);
    rte_mbuf* r = build_icmp6(dp_.pool(), dp_.port(side).mac, dmac, own.addr.addr.bytes.data(), dst_ip, body,
                              sizeof body);
    rte_pktmbuf_free(m);
    if (!r) {
        stats_.drop(Drop::MBUF_ALLOC);
        return;
    }
    meta(r) = PktMeta{MsgKind::tx_frame, side, 0, 0};
    transmit(r);
}

}  // namespace p3::dp
