// The Internet checksum (RFC 1071), one definition for both planes: IPv4 headers, the
// pseudo-header sums of UDP, TCP and ICMPv6, and the whole-header check the workers run on
// every IPv4 packet. Header-only and inline, since the packet path calls it per packet.
//
// A sum is carried unfolded in 32 bits (`partial`) and folded once at the end (`finish`, which
// also inverts). Folding sooner or later gives the same ones' complement value, so callers may
// add partial sums in any order. Inputs are at most one IP packet (< 64 KiB): the 32-bit
// accumulator cannot overflow.
//
// Why not rte_ipv4_cksum: it writes 0xffff where the sum is 0xffff (RFC 1624's -0), where p3
// has always sent 0x0000; both verify, but the bytes on the wire would change. DPDK's
// rte_raw_cksum is used where a whole mbuf chain is summed (common/wire.cpp).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace p3::csum {

// Ones' complement sum of n bytes at p (big-endian 16-bit words; an odd last byte is padded
// with zero), added to acc. Unaligned bytes are fine.
inline std::uint32_t partial(const std::uint8_t* p, std::size_t n, std::uint32_t acc = 0) noexcept {
    for (; n >= 2; p += 2, n -= 2) acc += (std::uint32_t(p[0]) << 8) | p[1];
    if (n) acc += std::uint32_t(p[0]) << 8;
    return acc;
}

// The checksum of a sum: folded to 16 bits and inverted.
inline std::uint16_t finish(std::uint32_t acc) noexcept {
    while (acc >> 16) acc = (acc & 0xffff) + (acc >> 16);
    return static_cast<std::uint16_t>(~acc & 0xffff);
}

// Sum of the pseudo header of an upper-layer checksum (RFC 768 / 793 for IPv4, RFC 8200
// §8.1 for IPv6): source, destination, protocol, upper-layer length.
inline std::uint32_t pseudo(bool v6, const std::uint8_t* src, const std::uint8_t* dst, std::uint8_t proto,
                            std::size_t len) noexcept {
    std::uint32_t acc = partial(src, v6 ? 16 : 4);
    acc = partial(dst, v6 ? 16 : 4, acc);
    return acc + proto + static_cast<std::uint32_t>(len & 0xffff) + static_cast<std::uint32_t>(len >> 16);
}

// Upper-layer checksum (UDP, TCP, ICMPv6) over len bytes at l4 with its pseudo header; the
// checksum field inside data must be zero (or, to verify, as received: 0 means it verifies).
inline std::uint16_t l4(bool v6, const std::uint8_t* src, const std::uint8_t* dst, std::uint8_t proto,
                        const std::uint8_t* data, std::size_t len) noexcept {
    return finish(partial(data, len, pseudo(v6, src, dst, proto, len)));
}

// IPv4 header checksum over hl bytes, the checksum field (bytes 10-11) taken as zero.
inline std::uint16_t ipv4_header(const std::uint8_t* ip, unsigned hl) noexcept {
    return finish(partial(ip + 12, hl - 12, partial(ip, 10)));
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

}  // namespace p3::csum
