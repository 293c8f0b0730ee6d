// Wire field access for the packet path: big-endian loads and stores by memcpy (no casts to
// packed structs at odd offsets), header offsets and sizes, checksums. Header-only, inline.
#pragma once

#include <cstdint>
#include <cstring>

#include <rte_byteorder.h>
#include <rte_ip.h>
#include <rte_mbuf.h>

namespace p3::dp::pkt {

inline std::uint16_t be16(const void* p) noexcept {
    std::uint16_t v;
    std::memcpy(&v, p, 2);
    return rte_be_to_cpu_16(v);
}
inline std::uint32_t be32(const void* p) noexcept {
    std::uint32_t v;
    std::memcpy(&v, p, 4);
    return rte_be_to_cpu_32(v);
}
inline std::uint64_t be64(const void* p) noexcept {
    std::uint64_t v;
    std::memcpy(&v, p, 8);
    return rte_be_to_cpu_64(v);
}
inline void put16(void* p, std::uint16_t v) noexcept {
    v = rte_cpu_to_be_16(v);
    std::memcpy(p, &v, 2);
}
inline void put32(void* p, std::uint32_t v) noexcept {
    v = rte_cpu_to_be_32(v);
    std::memcpy(p, &v, 4);
}

inline constexpr unsigned kEthLen = 14;
inline constexpr std::uint16_t kEtherIPv4 = 0x0800, kEtherIPv6 = 0x86dd, kEtherArp = 0x0806;
inline constexpr unsigned kIPv4Len = 20, kIPv6Len = 40, kUdpLen = 8, kTcpLen = 20;
inline constexpr std::uint8_t kProtoIcmp = 1, kProtoTcp = 6, kProtoUdp = 17, kProtoEsp = 50,
                              kProtoIcmp6 = 58, kProtoIPv4 = 4, kProtoIPv6 = 41, kProtoNone = 59;
// IPv6 extension headers that may precede the upper layer.
inline constexpr std::uint8_t kV6HopByHop = 0, kV6Routing = 43, kV6Fragment = 44, kV6Dest = 60;

// Ones' complement sum helpers (RFC 1071), over unaligned bytes.
inline std::uint32_t sum16(const std::uint8_t* p, std::size_t n, std::uint32_t acc = 0) noexcept {
    for (; n >= 2; p += 2, n -= 2) acc += (std::uint32_t(p[0]) << 8) | p[1];
    if (n) acc += std::uint32_t(p[0]) << 8;
    return acc;
}
inline std::uint16_t fold(std::uint32_t acc) noexcept {
    while (acc >> 16) acc = (acc & 0xffff) + (acc >> 16);
    return static_cast<std::uint16_t>(~acc & 0xffff);
}
// IPv4 header checksum over hl bytes with the checksum field taken as zero.
inline std::uint16_t ipv4_csum(const std::uint8_t* ip, unsigned hl) noexcept {
    std::uint32_t acc = sum16(ip, 10);
    acc = sum16(ip + 12, hl - 12, acc);
    return fold(acc);
}
// True when a 20-byte IPv4 header (no options: nearly every packet) verifies: the ones'
// complement sum over it, checksum included, is all ones (RFC 1071). Five 32-bit loads summed
// in 64 bits and folded, instead of ten 16-bit steps; the sum does not depend on byte order.
inline bool ipv4_hdr20_ok(const std::uint8_t* ip) noexcept {
    // Loaded straight into registers (two 8-byte words and one 4-byte word), not through a
    // copy on the stack.
    std::uint64_t a, b;
    std::uint32_t c;
    std::memcpy(&a, ip, 8);
    std::memcpy(&b, ip + 8, 8);
    std::memcpy(&c, ip + 16, 4);
    std::uint64_t s = (a & 0xffffffffu) + (a >> 32) + (b & 0xffffffffu) + (b >> 32) + c;
    s = (s & 0xffffffffu) + (s >> 32);
    s = (s & 0xffffffffu) + (s >> 32);
    std::uint32_t t = static_cast<std::uint32_t>(s);
    t = (t & 0xffff) + (t >> 16);
    t = (t & 0xffff) + (t >> 16);
    return t == 0xffff;
}

// Upper-layer checksum with the pseudo header (v4 or v6) over len bytes at l4.
inline std::uint16_t l4_csum(bool v6, const std::uint8_t* src, const std::uint8_t* dst, std::uint8_t proto,
                             const std::uint8_t* l4, std::size_t len) noexcept {
    std::uint32_t acc = sum16(src, v6 ? 16 : 4);
    acc = sum16(dst, v6 ? 16 : 4, acc);
    acc += proto;
    acc += static_cast<std::uint32_t>(len & 0xffff) + static_cast<std::uint32_t>(len >> 16);
    acc = sum16(l4, len, acc);
    return fold(acc);
}

// The Ethernet header at e: destination, source, ethertype.
inline void put_eth(std::uint8_t* e, const std::uint8_t* dst, const std::uint8_t* src, std::uint16_t ethertype) noexcept {
    std::memcpy(e, dst, 6);
    std::memcpy(e + 6, src, 6);
    put16(e + 12, ethertype);
}

inline std::uint8_t* data(rte_mbuf* m, unsigned off = 0) noexcept { return rte_pktmbuf_mtod_offset(m, std::uint8_t*, off); }

}  // namespace p3::dp::pkt
