// The packet path's view of a frame: the mbuf data pointer and the Ethernet header. The
// shared wire blocks have their homes in common/ and the stages call them there: byte order
// common/bytes.hpp (be::), the Internet checksum common/checksum.hpp (csum::), header sizes
// and protocol numbers common/wire_limits.hpp (wire::); all inline, no call per packet.
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

inline constexpr std::uint8_t kV6Fragment = 44;  // the IPv6 fragment header

// The Ethernet header at e: destination, source, ethertype.
inline void put_eth(std::uint8_t* e, const std::uint8_t* dst, const std::uint8_t* src, std::uint16_t ethertype) noexcept {
    std::memcpy(e, dst, 6);
    std::memcpy(e + 6, src, 6);
    be::put16(e + 12, ethertype);
}

inline std::uint8_t* data(rte_mbuf* m, unsigned off = 0) noexcept { return rte_pktmbuf_mtod_offset(m, std::uint8_t*, off); }

}  // namespace p3::dp::pkt
