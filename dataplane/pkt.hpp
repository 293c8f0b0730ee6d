// The packet path's view of a frame: the mbuf data pointer, the Ethernet header, and short
// names for the shared wire blocks. Byte order is common/bytes.hpp's, the Internet checksum
// common/checksum.hpp's, header sizes and protocol numbers common/wire_limits.hpp's; the names
// below forward to them (inline, no call per packet) so the stages read as they always have.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

#include <rte_byteorder.h>
#include <rte_ip.h>  // rte_raw_cksum, for the stages that sum with DPDK's
#include <rte_mbuf.h>

#include "common/bytes.hpp"
#include "common/checksum.hpp"
#include "common/wire_limits.hpp"

namespace p3::dp::pkt {

// Big-endian wire fields at any offset (common/bytes.hpp).
inline std::uint16_t be16(const void* p) noexcept { return be::get16(p); }
inline std::uint32_t be32(const void* p) noexcept { return be::get32(p); }
inline std::uint64_t be64(const void* p) noexcept { return be::get64(p); }
inline void put16(void* p, std::uint16_t v) noexcept { be::put16(p, v); }
inline void put32(void* p, std::uint32_t v) noexcept { be::put32(p, v); }

inline constexpr unsigned kEthLen = wire::kEthHeaderLen;
inline constexpr std::uint16_t kEtherIPv4 = wire::kEtherTypeIpv4, kEtherIPv6 = wire::kEtherTypeIpv6,
                               kEtherArp = wire::kEtherTypeArp;
inline constexpr unsigned kIPv4Len = wire::kIpv4HeaderLen, kIPv6Len = wire::kIpv6HeaderLen,
                          kUdpLen = wire::kUdpHeaderLen;
inline constexpr std::uint8_t kProtoIcmp = wire::kIpProtoIcmp, kProtoTcp = wire::kIpProtoTcp,
                              kProtoUdp = wire::kIpProtoUdp, kProtoEsp = wire::kIpProtoEsp,
                              kProtoIcmp6 = wire::kIpProtoIcmp6;
inline constexpr std::uint8_t kV6Fragment = 44;  // the IPv6 fragment header

// The Internet checksum (common/checksum.hpp): an unfolded sum, its checksum, an IPv4 header's
// checksum (field taken as zero), the 20-byte header check, an upper layer with its pseudo header.
inline std::uint32_t sum16(const std::uint8_t* p, std::size_t n, std::uint32_t acc = 0) noexcept {
    return csum::partial(p, n, acc);
}
inline std::uint16_t fold(std::uint32_t acc) noexcept { return csum::finish(acc); }
inline std::uint16_t ipv4_csum(const std::uint8_t* ip, unsigned hl) noexcept { return csum::ipv4_header(ip, hl); }
using csum::ipv4_hdr20_ok;
inline std::uint16_t l4_csum(bool v6, const std::uint8_t* src, const std::uint8_t* dst, std::uint8_t proto,
                             const std::uint8_t* l4, std::size_t len) noexcept {
    return csum::l4(v6, src, dst, proto, l4, len);
}

// The Ethernet header at e: destination, source, ethertype.
inline void put_eth(std::uint8_t* e, const std::uint8_t* dst, const std::uint8_t* src, std::uint16_t ethertype) noexcept {
    std::memcpy(e, dst, 6);
    std::memcpy(e + 6, src, 6);
    be::put16(e + 12, ethertype);
}

inline std::uint8_t* data(rte_mbuf* m, unsigned off = 0) noexcept { return rte_pktmbuf_mtod_offset(m, std::uint8_t*, off); }

}  // namespace p3::dp::pkt
