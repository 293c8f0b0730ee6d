// Builders of the IPv4, IPv6, UDP and TCP headers p3 writes itself: the outer template of the
// encapsulation (common/wire.cpp), the control channel's inner packets (control/channel/
// framing.cpp), setup datagrams (control/setup/setup_frame.cpp), and the dataplane's ICMP
// errors, TCP resets and neighbour discovery. One definition, so every header p3 sends has the
// same fixed fields: IPv4 without options, DSCP/ECN 0 unless given; IPv6 with traffic class 0.
// Header-only and inline (the outer template is rebuilt on the packet path's slow edge only,
// but nothing here may cost a call per packet). Addresses are raw network-order bytes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "common/bytes.hpp"
#include "common/checksum.hpp"
#include "common/wire_limits.hpp"

namespace p3::hdr {

inline constexpr std::uint16_t kIpv4DontFragment = 0x4000;

// The 20-byte IPv4 header at h, checksum field left zero: version 4, IHL 5, the given TOS,
// total length, ID, flags/fragment offset, TTL and protocol.
inline void put_ipv4_fields(std::uint8_t* h, std::size_t total, std::uint16_t id, std::uint16_t frag,
                            std::uint8_t ttl, std::uint8_t proto, const std::uint8_t* src, const std::uint8_t* dst,
                            std::uint8_t tos = 0) noexcept {
    h[0] = 0x45;
    h[1] = tos;
    be::put16(h + 2, static_cast<std::uint16_t>(total));
    be::put16(h + 4, id);
    be::put16(h + 6, frag);
    h[8] = ttl;
    h[9] = proto;
    h[10] = h[11] = 0;
    std::memcpy(h + 12, src, 4);
    std::memcpy(h + 16, dst, 4);
}

// An IPv4 header p3 originates: Don't Fragment set (p3 never fragments what it builds itself;
// RFC 6864 lets such an atomic datagram carry any ID), checksum set.
inline void put_ipv4(std::uint8_t* h, std::size_t total, std::uint8_t ttl, std::uint8_t proto,
                     const std::uint8_t* src, const std::uint8_t* dst, std::uint16_t id = 0) noexcept {
    put_ipv4_fields(h, total, id, kIpv4DontFragment, ttl, proto, src, dst);
    be::put16(h + 10, csum::ipv4_header(h, wire::kIpv4HeaderLen));
}

// The 40-byte IPv6 header at h: traffic class 0, the given flow label (20 bits), payload
// length, next header, hop limit.
inline void put_ipv6(std::uint8_t* h, std::size_t payload, std::uint8_t next, std::uint8_t hop_limit,
                     const std::uint8_t* src, const std::uint8_t* dst, std::uint32_t flow = 0) noexcept {
    be::put32(h, (6u << 28) | (flow & 0xfffff));
    be::put16(h + 4, static_cast<std::uint16_t>(payload));
    h[6] = next;
    h[7] = hop_limit;
    std::memcpy(h + 8, src, 16);
    std::memcpy(h + 24, dst, 16);
}

// The 8-byte UDP header at u, checksum zero (set it with set_udp_checksum once the payload
// is in place, or leave it zero where RFC 768 / RFC 3948 allow that over IPv4).
inline void put_udp(std::uint8_t* u, std::uint16_t sport, std::uint16_t dport, std::size_t ulen) noexcept {
    be::put16(u, sport);
    be::put16(u + 2, dport);
    be::put16(u + 4, static_cast<std::uint16_t>(ulen));
    be::put16(u + 6, 0);
}

// The UDP checksum over ulen bytes at u (header and payload, checksum field zero) with the
// pseudo header; a computed zero is sent as 0xffff (RFC 768), since zero means "none".
inline void set_udp_checksum(bool v6, const std::uint8_t* src, const std::uint8_t* dst, std::uint8_t* u,
                             std::size_t ulen) noexcept {
    const std::uint16_t c = csum::l4(v6, src, dst, wire::kIpProtoUdp, u, ulen);
    be::put16(u + 6, c == 0 ? 0xffff : c);
}

// The 20-byte TCP header at t (no options), checksum and urgent pointer zero.
inline void put_tcp(std::uint8_t* t, std::uint16_t sport, std::uint16_t dport, std::uint32_t seq, std::uint32_t ack,
                    std::uint8_t flags, std::uint16_t window) noexcept {
    be::put16(t, sport);
    be::put16(t + 2, dport);
    be::put32(t + 4, seq);
    be::put32(t + 8, ack);
    t[12] = 5 << 4;  // data offset: 5 words
    t[13] = flags;
    be::put16(t + 14, window);
    be::put16(t + 16, 0);
    be::put16(t + 18, 0);
}

}  // namespace p3::hdr
