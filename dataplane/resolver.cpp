#include "dataplane/resolver.hpp"

#include <algorithm>
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
                                      const IpAddr& target, const rte_ether_addr* dst) {
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
    put_eth(p, dst ? dst->addr_bytes : kBroadcast, src_mac.addr_bytes, wire::kEtherTypeArp);
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
                             const IpAddr& target, const rte_ether_addr* dst_mac) {
    // A unicast solicitation (RFC 4861 §7.3.3, reachability confirmation) goes to the target
    // itself; a first one to its solicited-node group.
    std::uint8_t dst[16];
    if (dst_mac) std::memcpy(dst, target.bytes.data(), 16);
    else solicited_node(target, dst);
    rte_ether_addr dmac = dst_mac ? *dst_mac : rte_ether_addr{{0x33, 0x33, dst[12], dst[13], dst[14], dst[15]}};
    std::uint8_t body[32] = {135, 0};
    std::memcpy(body + 8, target.bytes.data(), 16);
    body[24] = 1;   // source link-layer address option
    body[25] = 1;   // 8 bytes
    std::memcpy(body + 26, src_mac.addr_bytes, 6);
    // From the unspecified address the option must not be there (RFC 4861 §4.3).
    const bool unspec = src_ip.bytes == std::array<std::uint8_t, 16>{};
    return build_icmp6(mp, src_mac, dmac, src_ip.bytes.data(), dst, body, unspec ? 24 : sizeof body);
}

void Resolver::set_static(Side side, const IpAddr& ip, const rte_ether_addr& mac) {
    if (auto* e = dp_.neighbors(side).find_or_insert(ip)) NeighborTable::set_mac(*e, mac);
}

bool Resolver::add_configured(Side side, const IpAddr& ip) {
    const auto& own = dp_.addr(side).addr;
    if (!own.contains(ip) || ip == own.addr || configured(side, ip)) return false;
    if (!dp_.neighbors(side).find_or_insert(ip, dp_.qsbr())) return false;   // so that its answer is learnt
    Configured c;
    c.ip = ip;
    configured_[static_cast<unsigned>(side)].push_back(c);
    return true;
}

Resolver::Configured* Resolver::configured(Side side, const IpAddr& ip) {
    for (auto& c : configured_[static_cast<unsigned>(side)])
        if (c.ip == ip) return &c;
    return nullptr;
}

void Resolver::learn(Side side, const IpAddr& ip, const rte_ether_addr& mac, std::uint64_t now_ms) {
    auto* e = dp_.neighbors(side).find(ip);   // only next hops we asked for (or static)
    if (!e) return;
    const bool was = (e->mac.load(std::memory_order_relaxed) & NeighborTable::kValid) != 0;
    NeighborTable::set_mac(*e, mac);
    if (Configured* c = configured(side, ip)) answered(side, *c, mac, now_ms);
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

void Resolver::request(Side side, const IpAddr& ip, const rte_ether_addr* dst) {
    const auto& mac = dp_.port(side).mac;
    // Not answering for our address: ask without it (a zero sender), else the neighbour would
    // learn the shared address at this member's MAC and bypass the director.
    IpAddr own = dp_.addr(side).addr.addr;
    if (!answer_[static_cast<unsigned>(side)]) own.bytes = {};
    rte_mbuf* m = ip.is_v4() ? build_arp_request(dp_.pool(), mac, own, ip, dst) : build_ns(dp_.pool(), mac, own, ip, dst);
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
    if (map.size() >= kMaxPendingNeighbors + configured_[static_cast<unsigned>(side)].size()) {
        // A next hop held off after a failure holds nothing: it gives way to a new one.
        auto it = map.begin();
        while (it != map.end() && (it->second.resolving || !it->second.held.empty() || configured(side, it->first))) ++it;
        if (it == map.end()) return nullptr;
        map.erase(it);
    }
    return &map[nh];
}

void Resolver::hold(Side side, Pending& pd, rte_mbuf* m) {
    const unsigned s = static_cast<unsigned>(side);
    if (pd.held.size() >= hold_per_hop_) {
        stats_.drop(Drop::NEIGH_HOLD);
        rte_pktmbuf_free(m);
    } else if (held_[s] >= held_bound_) {
        stats_.drop(Drop::NEIGH_HOLD_TOTAL);
        rte_pktmbuf_free(m);
    } else {
        pd.held.push_back(m);
        ++held_[s];
        stats_.held.add();
    }
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
    if (Configured* c = configured(side, *nh)) {
        // Held whatever its state (its own entry, beyond kMaxPendingNeighbors); one that failed
        // is asked again at once, as Linux does for a packet to a FAILED neighbour.
        hold(side, pending_[s][*nh], m);
        if (c->state == Nud::failed) {
            c->state = Nud::incomplete;
            c->sent = 0;
            c->next_ms = now_ms;
            step(side, *c, now_ms);
        }
        return;
    }
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
    hold(side, *pd, m);
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

void Resolver::announce(Side side) noexcept {
    announce_left_[static_cast<unsigned>(side)] = kAnnounceCount;
    announce_next_ms_[static_cast<unsigned>(side)] = 0;
}

void Resolver::retry_now(Side side) noexcept {
    for (Configured& c : configured_[static_cast<unsigned>(side)]) {
        if (c.state != Nud::failed && c.state != Nud::incomplete) continue;
        c.state = Nud::incomplete;
        c.sent = 0;
        c.next_ms = 0;
    }
    for (auto& [ip, p] : pending_[static_cast<unsigned>(side)]) p.failed_until_ms = 0;
}

// A gratuitous ARP request (sender = target = our address, broadcast; RFC 5227 §3), or an
// unsolicited neighbour advertisement to all nodes with Override (RFC 4861 §7.2.6).
void Resolver::send_announce(Side side) {
    const IpAddr& own = dp_.addr(side).addr.addr;
    const auto& mac = dp_.port(side).mac;
    rte_mbuf* m;
    if (own.is_v4()) {
        m = build_arp_request(dp_.pool(), mac, own, own);
    } else {
        static const std::uint8_t all_nodes[16] = {0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
        std::uint8_t body[32] = {136, 0};
        body[4] = 0x20;   // Override
        std::memcpy(body + 8, own.bytes.data(), 16);
        body[24] = 2;     // target link-layer address option
        body[25] = 1;
        std::memcpy(body + 26, mac.addr_bytes, 6);
        m = build_icmp6(dp_.pool(), mac, rte_ether_addr{{0x33, 0x33, 0, 0, 0, 1}}, own.bytes.data(), all_nodes, body,
                        sizeof body);
    }
    if (!m) {
        stats_.drop(Drop::MBUF_ALLOC);
        return;
    }
    meta(m) = PktMeta{MsgKind::tx_frame, side, 0, 0};
    ++announced_;
    transmit(m);
}

void Resolver::poll(std::uint64_t now_ms) {
    for (unsigned s = 0; s < kSides; ++s)
        if (announce_left_[s] && now_ms >= announce_next_ms_[s]) [[unlikely]] {
            --announce_left_[s];
            announce_next_ms_[s] = now_ms + kAnnounceIntervalMs;
            send_announce(static_cast<Side>(s));
        }
    for (unsigned s = 0; s < kSides; ++s)
        for (auto& c : configured_[s])
            if (now_ms >= c.next_ms) step(static_cast<Side>(s), c, now_ms);
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

// ---- configured next hops (resolver.hpp) ---------------------------------------------

// Due (now_ms >= next_ms): the next request, the refresh, the expiry or the end of a round.
void Resolver::step(Side side, Configured& c, std::uint64_t now_ms) {
    const char* kind = c.ip.is_v4() ? "ARP" : "neighbour solicitation";
    switch (c.state) {
        case Nud::reachable:   // kRefreshLeadMs before expiry: confirm by unicast
            c.state = Nud::probe;
            c.sent = 0;
            [[fallthrough]];
        case Nud::probe:
            if (now_ms >= c.expires_ms) {   // unconfirmed: the MAC may be stale, frames wait instead
                if (auto* e = dp_.neighbors(side).find(c.ip)) NeighborTable::clear_mac(*e);
                const unsigned probes = c.sent;
                c.state = Nud::incomplete;
                c.sent = 0;
                c.lost = true;
                c.lost_ms = now_ms;
                P3_LOG_WARN(DP_GATEWAY_STALE, "%s gateway %s stopped answering: no reply to %u unicast %s requests "
                            "in the %llu ms before its entry went stale; its MAC is withdrawn, its frames are held "
                            "while it is asked for by broadcast", side_name(side), c.ip.str().c_str(), probes, kind, static_cast<unsigned long long>(kRefreshLeadMs));
                step(side, c, now_ms);
                return;
            }
            request(side, c.ip, &c.mac);
            ++c.sent;
            c.next_ms = std::min(now_ms + kResolveIntervalMs, c.expires_ms);
            return;
        case Nud::incomplete:
            if (c.sent >= kResolveRetries) {   // a round unanswered
                auto it = pending_[static_cast<unsigned>(side)].find(c.ip);
                if (it != pending_[static_cast<unsigned>(side)].end()) drop_held(side, it->second, Drop::NEIGH_FAILED);
                c.state = Nud::failed;
                c.backoff_ms = c.backoff_ms ? std::min(c.backoff_ms * 2, kGatewayBackoffMaxMs) : kResolveHoldoffMs;
                c.next_ms = now_ms + c.backoff_ms;
                if (!c.lost) c.lost_ms = now_ms;
                c.lost = true;
                if (!c.warned)
                    P3_LOG_WARN(DP_GATEWAY_SILENT, "%s gateway %s: no answer to %u %s requests; its frames are dropped "
                                "until it answers, and it is asked again after %llu s, then less often (every %llu s at most)",
                                side_name(side), c.ip.str().c_str(), kResolveRetries, kind,
                                static_cast<unsigned long long>(c.backoff_ms / 1000),
                                static_cast<unsigned long long>(kGatewayBackoffMaxMs / 1000));
                c.warned = true;
                return;
            }
            request(side, c.ip);
            ++c.sent;
            c.next_ms = now_ms + kResolveIntervalMs;
            return;
        case Nud::failed:   // the back-off is over: another round
            c.state = Nud::incomplete;
            c.sent = 0;
            step(side, c, now_ms);
            return;
    }
}

// Any ARP / ND from it with its MAC (learn()): good for kReachableMs.
void Resolver::answered(Side side, Configured& c, const rte_ether_addr& mac, std::uint64_t now_ms) {
    if (c.lost) {
        char buf[RTE_ETHER_ADDR_FMT_SIZE];
        rte_ether_format_addr(buf, sizeof buf, &mac);
        P3_LOG_INFO(DP_GATEWAY_BACK, "%s gateway %s answers again, at %s, after %llu ms", side_name(side),
                    c.ip.str().c_str(), buf, static_cast<unsigned long long>(now_ms - c.lost_ms));
    }
    c.state = Nud::reachable;
    c.mac = mac;
    c.sent = 0;
    c.backoff_ms = 0;
    c.lost = c.warned = false;
    c.expires_ms = now_ms + kReachableMs;
    c.next_ms = c.expires_ms - kRefreshLeadMs;
}

void Resolver::on_arp(Side side, rte_mbuf* m, std::uint64_t now_ms) {
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
    if (sane) learn(side, spa, sha, now_ms);
    if (op == 1 && for_us && sane && answer_[static_cast<unsigned>(side)]) {
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
    if (op == 1 && for_us && sane) stats_.drop(Drop::CLUSTER_NO_ANSWER);
    else if (!for_us && op == 1) stats_.drop(Drop::NOT_FOR_US);
    else if (!sane) stats_.drop(Drop::ARP_BAD);
    rte_pktmbuf_free(m);
}

void Resolver::on_nd(Side side, rte_mbuf* m, std::uint64_t now_ms) {
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
        if (lla && !rte_is_multicast_ether_addr(lla)) learn(side, target, *lla, now_ms);
        rte_pktmbuf_free(m);
        return;
    }
    // Neighbour solicitation.
    if (target != own.addr.addr || !answer_[static_cast<unsigned>(side)]) {
        stats_.drop(target != own.addr.addr ? Drop::NOT_FOR_US : Drop::CLUSTER_NO_ANSWER);
        rte_pktmbuf_free(m);
        return;
    }
    if (lla && !src_unspec) learn(side, src, *lla, now_ms);
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
