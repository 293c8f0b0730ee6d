// Builders of ICMP errors and TCP resets (see icmp_errors.hpp for what is and is not
// answered). Every read of the offending packet goes through a bounds check against the
// validated IP length, which itself never exceeds the span the caller gave; wire fields go
// through common/bytes.hpp (no casts to header structs at odd offsets), headers are built by
// common/headers.hpp and checksummed by common/checksum.hpp.
#include "dataplane/icmp_errors.hpp"

#include <algorithm>
#include <cstring>

#include <rte_ip.h>

#include "common/headers.hpp"
#include "dataplane/pkt.hpp"

namespace p3::dp {
namespace {

using be::get16;
using be::get32;
using be::put16;
using be::put32;

constexpr std::size_t kEth = RTE_ETHER_HDR_LEN;  // 14
constexpr std::size_t kV4 = wire::kIpv4HeaderLen;
constexpr std::size_t kV6 = wire::kIpv6HeaderLen;
constexpr std::size_t kIcmpHdr = 8;
constexpr std::size_t kTcpHdr = wire::kTcpHeaderLen;
constexpr std::uint8_t kProtoIcmp = wire::kIpProtoIcmp;
constexpr std::uint8_t kProtoTcp = wire::kIpProtoTcp;
constexpr std::uint8_t kProtoIcmp6 = wire::kIpProtoIcmp6;
constexpr std::uint8_t kTcpFin = 0x01, kTcpSyn = 0x02, kTcpRst = 0x04, kTcpAck = 0x10;

// What the builders need to know about the offending packet, from a bounded parse.
struct Parsed {
    unsigned version = 0;
    std::size_t total = 0;      // IP length per its header, <= l3.size()
    std::size_t upper_off = 0;  // offset of the upper-layer header (when known)
    std::uint8_t upper = 0;     // upper-layer protocol (when known)
    bool upper_known = false;   // false for a non-initial fragment or an unwalkable chain
    bool fragment = false;      // any fragment (first or not)
    bool later_fragment = false;
    const std::uint8_t* src = nullptr;
    const std::uint8_t* dst = nullptr;
};

bool parse_v4(std::span<const std::uint8_t> l3, Parsed& p) noexcept {
    if (l3.size() < kV4 || (l3[0] >> 4) != 4) return false;
    const std::size_t ihl = std::size_t(l3[0] & 0x0f) * 4;
    const std::size_t total = get16(&l3[2]);
    if (ihl < kV4 || ihl > l3.size() || total < ihl || total > l3.size()) return false;
    const std::uint16_t frag = get16(&l3[6]);
    p.version = 4;
    p.total = total;
    p.upper = l3[9];
    p.upper_off = ihl;
    p.fragment = (frag & 0x3fff) != 0;  // MF or an offset
    p.later_fragment = (frag & 0x1fff) != 0;
    p.upper_known = !p.later_fragment;
    p.src = &l3[12];
    p.dst = &l3[16];
    return true;
}

bool parse_v6(std::span<const std::uint8_t> l3, Parsed& p) noexcept {
    if (l3.size() < kV6 || (l3[0] >> 4) != 6) return false;
    const std::size_t payload = get16(&l3[4]);
    if (payload == 0) return false;  // jumbogram or nothing: not ours to answer
    const std::size_t total = kV6 + payload;
    if (total > l3.size()) return false;
    p.version = 6;
    p.total = total;
    p.src = &l3[8];
    p.dst = &l3[24];
    std::uint8_t nh = l3[6];
    std::size_t off = kV6;
    for (unsigned i = 0; i <= kMaxV6ExtHeaders; ++i) {
        if (nh == 0 || nh == 43 || nh == 60 || nh == 51) {  // hop-by-hop, routing, dest opts, AH
            if (off + 2 > total) return false;
            const std::size_t len = nh == 51 ? (std::size_t(l3[off + 1]) + 2) * 4
                                             : (std::size_t(l3[off + 1]) + 1) * 8;
            nh = l3[off];
            off += len;
            if (off > total) return false;
            continue;
        }
        if (nh == 44) {  // fragment header
            if (off + 8 > total) return false;
            const std::uint16_t fo = get16(&l3[off + 2]);
            p.fragment = true;
            if ((fo & 0xfff8) != 0) {
                p.later_fragment = true;
                return true;  // no upper-layer header in this fragment
            }
            nh = l3[off];
            off += 8;
            continue;
        }
        p.upper = nh;
        p.upper_off = off;
        p.upper_known = true;
        return true;
    }
    return true;  // chain too long to walk: upper layer unknown, still a valid packet
}

bool parse(std::span<const std::uint8_t> l3, Parsed& p) noexcept {
    if (l3.empty()) return false;
    switch (l3[0] >> 4) {
    case 4: return parse_v4(l3, p);
    case 6: return parse_v6(l3, p);
    default: return false;
    }
}

// An address that names one host (RFC 1122 §3.2.1.3, RFC 1812 §4.3.2.7).
bool v4_unicast(const std::uint8_t* a) noexcept {
    return a[0] != 0 && a[0] != 127 && a[0] < 224;
}
bool v6_is_multicast(const std::uint8_t* a) noexcept { return a[0] == 0xff; }
bool v6_unicast(const std::uint8_t* a) noexcept {
    static constexpr std::uint8_t zero[16] = {};
    static constexpr std::uint8_t loop[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
    return !v6_is_multicast(a) && std::memcmp(a, zero, 16) != 0 && std::memcmp(a, loop, 16) != 0;
}
bool mac_group(const rte_ether_addr& m) noexcept { return (m.addr_bytes[0] & 1) != 0; }

// The offending packet is itself an ICMP error (never answered, RFC 1122 §3.2.2).
bool is_icmp_error(std::span<const std::uint8_t> l3, const Parsed& p) noexcept {
    if (!p.upper_known || p.upper_off + 1 > p.total) return false;
    const std::uint8_t type = l3[p.upper_off];
    if (p.version == 4 && p.upper == kProtoIcmp)
        return type == 3 || type == 4 || type == 5 || type == 11 || type == 12;
    if (p.version == 6 && p.upper == kProtoIcmp6) return type < 128;
    return false;
}

// A new frame of len bytes (single segment), Ethernet header written; nullptr if the pool is
// empty or its buffers are too small.
rte_mbuf* new_frame(rte_mempool* pool, const Offending& pkt, std::size_t len, std::uint16_t ethertype) noexcept {
    rte_mbuf* m = rte_pktmbuf_alloc(pool);
    if (m == nullptr) return nullptr;
    if (rte_pktmbuf_tailroom(m) < len) {
        rte_pktmbuf_free(m);
        return nullptr;
    }
    auto* p = reinterpret_cast<std::uint8_t*>(rte_pktmbuf_append(m, static_cast<std::uint16_t>(len)));
    if (p == nullptr) {
        rte_pktmbuf_free(m);
        return nullptr;
    }
    pkt::put_eth(p, pkt.src_mac.addr_bytes, pkt.dst_mac.addr_bytes, ethertype);
    m->l2_len = kEth;
    return m;
}

// The ICMP or ICMPv6 error message at icmp (RFC 792, RFC 4443 §2.1): type, code, checksum
// zero (the caller sets it: ICMPv6's covers a pseudo header), the 4-byte rest of the
// header, then the quoted start of the offending packet. Returns icmp.
std::uint8_t* put_icmp_error(std::uint8_t* icmp, std::uint8_t type, std::uint8_t code, std::uint32_t rest,
                             std::span<const std::uint8_t> quote) noexcept {
    icmp[0] = type;
    icmp[1] = code;
    put16(icmp + 2, 0);
    put32(icmp + 4, rest);
    std::memcpy(icmp + kIcmpHdr, quote.data(), quote.size());
    return icmp;
}

// Common gate for ICMP errors; `multicast_ok` for ICMPv6 packet too big.
ReplyVerdict icmp_gate(const Offending& pkt, const Parsed& p, const LanSource& src, bool multicast_ok) noexcept {
    if (p.version == 4) {
        if (!src.has_v4) return ReplyVerdict::no_source;
        if (p.later_fragment || !v4_unicast(p.src) || !v4_unicast(p.dst) || mac_group(pkt.dst_mac) ||
            is_icmp_error(pkt.l3, p))
            return ReplyVerdict::not_allowed;
        return ReplyVerdict::built;
    }
    if (!src.has_v6) return ReplyVerdict::no_source;
    if (!v6_unicast(p.src) || is_icmp_error(pkt.l3, p)) return ReplyVerdict::not_allowed;
    if (!multicast_ok && (v6_is_multicast(p.dst) || mac_group(pkt.dst_mac))) return ReplyVerdict::not_allowed;
    return ReplyVerdict::built;
}

Reply icmp4_error(rte_mempool* pool, const Offending& pkt, const LanSource& src, std::uint8_t type,
                  std::uint8_t code, std::uint32_t rest) noexcept {
    Parsed p;
    if (!parse(pkt.l3, p) || p.version != 4) return {nullptr, ReplyVerdict::malformed};
    if (const auto v = icmp_gate(pkt, p, src, false); v != ReplyVerdict::built) return {nullptr, v};
    const std::size_t quote = std::min(p.total, kIcmp4MaxDatagram - kV4 - kIcmpHdr);
    const std::size_t ip_len = kV4 + kIcmpHdr + quote;
    rte_mbuf* m = new_frame(pool, pkt, kEth + ip_len, RTE_ETHER_TYPE_IPV4);
    if (m == nullptr) return {nullptr, ReplyVerdict::no_mbuf};
    std::uint8_t* h = rte_pktmbuf_mtod_offset(m, std::uint8_t*, kEth);
    hdr::put_ipv4(h, ip_len, wire::kTtl, kProtoIcmp, src.v4.data(), p.src);
    std::uint8_t* icmp = put_icmp_error(h + kV4, type, code, rest, pkt.l3.first(quote));
    put16(icmp + 2, csum::finish(csum::partial(icmp, kIcmpHdr + quote)));
    m->l3_len = kV4;
    m->packet_type = RTE_PTYPE_L2_ETHER | RTE_PTYPE_L3_IPV4 | RTE_PTYPE_L4_ICMP;
    return {m, ReplyVerdict::built};
}

Reply icmp6_error(rte_mempool* pool, const Offending& pkt, const LanSource& src, std::uint8_t type,
                  std::uint8_t code, std::uint32_t rest) noexcept {
    Parsed p;
    if (!parse(pkt.l3, p) || p.version != 6) return {nullptr, ReplyVerdict::malformed};
    if (const auto v = icmp_gate(pkt, p, src, type == 2); v != ReplyVerdict::built) return {nullptr, v};
    // A packet too big for a multicast destination is answered to the sender's unicast MAC
    // only if the frame came from one; a group source MAC is never a destination.
    if (mac_group(pkt.src_mac)) return {nullptr, ReplyVerdict::not_allowed};
    std::size_t quote = std::min(p.total, kIcmp6MaxPacket - kV6 - kIcmpHdr);
    // Small buffers shorten the quote rather than lose the reply (room as rte_pktmbuf_alloc
    // leaves it: data room minus the default headroom).
    const std::size_t data_room = rte_pktmbuf_data_room_size(pool);
    const std::size_t room = data_room - std::min<std::size_t>(RTE_PKTMBUF_HEADROOM, data_room);
    if (room < kEth + kV6 + kIcmpHdr) return {nullptr, ReplyVerdict::no_mbuf};
    quote = std::min(quote, room - (kEth + kV6 + kIcmpHdr));
    const std::size_t payload = kIcmpHdr + quote;
    rte_mbuf* m = new_frame(pool, pkt, kEth + kV6 + payload, RTE_ETHER_TYPE_IPV6);
    if (m == nullptr) return {nullptr, ReplyVerdict::no_mbuf};
    std::uint8_t* h = rte_pktmbuf_mtod_offset(m, std::uint8_t*, kEth);
    hdr::put_ipv6(h, payload, kProtoIcmp6, wire::kTtl, src.v6.data(), p.src);
    std::uint8_t* icmp = put_icmp_error(h + kV6, type, code, rest, pkt.l3.first(quote));
    put16(icmp + 2, csum::l4(true, h + 8, h + 24, kProtoIcmp6, icmp, payload));
    m->l3_len = kV6;
    m->packet_type = RTE_PTYPE_L2_ETHER | RTE_PTYPE_L3_IPV6 | RTE_PTYPE_L4_ICMP;
    return {m, ReplyVerdict::built};
}

}  // namespace

Reply icmp4_frag_needed(rte_mempool* pool, const Offending& pkt, const LanSource& src,
                        std::uint16_t next_hop_mtu) noexcept {
    return icmp4_error(pool, pkt, src, 3, 4, next_hop_mtu);
}

Reply icmp6_packet_too_big(rte_mempool* pool, const Offending& pkt, const LanSource& src,
                           std::uint32_t mtu) noexcept {
    // RFC 8201 §4: a node never lowers its path MTU below the IPv6 minimum; advertising less
    // only gets the value ignored.
    return icmp6_error(pool, pkt, src, 2, 0, std::max<std::uint32_t>(mtu, kIcmp6MaxPacket));
}

Reply icmp4_unreachable(rte_mempool* pool, const Offending& pkt, const LanSource& src, Unreach4 code) noexcept {
    return icmp4_error(pool, pkt, src, 3, static_cast<std::uint8_t>(code), 0);
}

Reply icmp6_unreachable(rte_mempool* pool, const Offending& pkt, const LanSource& src, Unreach6 code) noexcept {
    return icmp6_error(pool, pkt, src, 1, static_cast<std::uint8_t>(code), 0);
}

Reply tcp_reset(rte_mempool* pool, const Offending& pkt) noexcept {
    Parsed p;
    if (!parse(pkt.l3, p)) return {nullptr, ReplyVerdict::malformed};
    // Not TCP (or a fragment, whose SEG.LEN is unknown): no reset; session_down_reply
    // answers those with ICMP instead.
    if (!p.upper_known || p.upper != kProtoTcp || p.fragment) return {nullptr, ReplyVerdict::not_allowed};
    if (p.upper_off + kTcpHdr > p.total) return {nullptr, ReplyVerdict::malformed};
    const std::uint8_t* t = pkt.l3.data() + p.upper_off;
    const std::size_t doff = std::size_t(t[12] >> 4) * 4;
    if (doff < kTcpHdr || p.upper_off + doff > p.total) return {nullptr, ReplyVerdict::malformed};
    const std::uint8_t flags = t[13];
    if (flags & kTcpRst) return {nullptr, ReplyVerdict::not_allowed};
    if (mac_group(pkt.dst_mac) || mac_group(pkt.src_mac)) return {nullptr, ReplyVerdict::not_allowed};
    if (p.version == 4 ? !(v4_unicast(p.src) && v4_unicast(p.dst)) : !(v6_unicast(p.src) && v6_unicast(p.dst)))
        return {nullptr, ReplyVerdict::not_allowed};

    const std::uint32_t seg_len = static_cast<std::uint32_t>(p.total - p.upper_off - doff) +
                                  ((flags & kTcpSyn) ? 1 : 0) + ((flags & kTcpFin) ? 1 : 0);
    std::uint32_t seq = 0, ack = 0;
    std::uint8_t out_flags = kTcpRst;
    if (flags & kTcpAck) {
        seq = get32(t + 8);
    } else {
        ack = get32(t + 4) + seg_len;
        out_flags |= kTcpAck;
    }

    const std::size_t l3h = p.version == 4 ? kV4 : kV6;
    rte_mbuf* m = new_frame(pool, pkt, kEth + l3h + kTcpHdr,
                            p.version == 4 ? RTE_ETHER_TYPE_IPV4 : RTE_ETHER_TYPE_IPV6);
    if (m == nullptr) return {nullptr, ReplyVerdict::no_mbuf};
    std::uint8_t* h = rte_pktmbuf_mtod_offset(m, std::uint8_t*, kEth);
    std::uint8_t* r = h + l3h;
    // Our source port = their destination port; window 0.
    hdr::put_tcp(r, get16(t + 2), get16(t), seq, ack, out_flags, 0);
    const bool v6 = p.version == 6;
    if (!v6) {
        hdr::put_ipv4(h, kV4 + kTcpHdr, wire::kTtl, kProtoTcp, p.dst, p.src);
        m->packet_type = RTE_PTYPE_L2_ETHER | RTE_PTYPE_L3_IPV4 | RTE_PTYPE_L4_TCP;
    } else {
        hdr::put_ipv6(h, kTcpHdr, kProtoTcp, wire::kTtl, p.dst, p.src);
        m->packet_type = RTE_PTYPE_L2_ETHER | RTE_PTYPE_L3_IPV6 | RTE_PTYPE_L4_TCP;
    }
    put16(r + 16, csum::l4(v6, v6 ? h + 8 : h + 12, v6 ? h + 24 : h + 16, kProtoTcp, r, kTcpHdr));
    m->l3_len = static_cast<std::uint16_t>(l3h);
    m->l4_len = kTcpHdr;
    return {m, ReplyVerdict::built};
}

Reply too_big_reply(rte_mempool* pool, const Offending& pkt, const LanSource& src, std::uint32_t tunnel_mtu) noexcept {
    if (pkt.l3.empty()) return {nullptr, ReplyVerdict::malformed};
    switch (pkt.l3[0] >> 4) {
    case 4: return icmp4_frag_needed(pool, pkt, src, static_cast<std::uint16_t>(std::min<std::uint32_t>(tunnel_mtu, 0xffff)));
    case 6: return icmp6_packet_too_big(pool, pkt, src, tunnel_mtu);
    default: return {nullptr, ReplyVerdict::malformed};
    }
}

Reply session_down_reply(rte_mempool* pool, const Offending& pkt, const LanSource& src) noexcept {
    Parsed p;
    if (!parse(pkt.l3, p)) return {nullptr, ReplyVerdict::malformed};
    if (p.upper_known && p.upper == kProtoTcp && !p.fragment) return tcp_reset(pool, pkt);
    return p.version == 4 ? icmp4_unreachable(pool, pkt, src) : icmp6_unreachable(pool, pkt, src);
}

}  // namespace p3::dp
