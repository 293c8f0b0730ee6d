// Replies the dataplane sends on behalf of a packet it cannot forward: ICMP "fragmentation
// needed" / ICMPv6 "packet too big" (tunnel MTU, DESIGN.md §Wire format), and, when a
// session is down (seed spec §2.1.7), TCP RST for TCP and ICMP/ICMPv6 destination
// unreachable for everything else.
//
// Each builder takes the offending frame's L3 bytes (bounded: nothing past the span is read)
// and its two MAC addresses, and returns a new single-segment mbuf holding a complete
// Ethernet frame addressed back to the sender, or a verdict saying why there is none. The
// offending mbuf is not touched; the caller still owns (and drops) it.
//
// Fast-path callable: no heap, no exceptions, no syscalls. Callers rate-limit with
// dataplane/ratelimit.hpp before building (building costs an mbuf and a checksum pass).
//
// What is never answered (RFC 1122 §3.2.2, RFC 1812 §4.3.2.7, RFC 4443 §2.4(e), RFC 9293
// §3.10.7.1): an ICMP error or redirect; a non-initial IPv4 fragment; a packet to a
// multicast or broadcast address (IP or link layer) — except that ICMPv6 "packet too big"
// is sent for multicast too; a packet from an address that does not name one host
// (unspecified, loopback, multicast, broadcast, class E); a TCP segment carrying RST.
// A packet whose headers are inconsistent (lengths beyond the frame) is malformed and
// not answered either: it is dropped and counted by the caller.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>

#include <rte_ether.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>

#include "common/wire_limits.hpp"

namespace p3::dp {

// Limits of what a reply quotes (RFC 1812 §4.3.2.3: the whole ICMPv4 datagram within 576
// bytes; RFC 4443 §2.4(c): the ICMPv6 packet within the IPv6 minimum MTU).
inline constexpr std::size_t kIcmp4MaxDatagram = wire::kIpv4MinMtu;
inline constexpr std::size_t kIcmp6MaxPacket = wire::kIpv6MinMtu;
inline constexpr unsigned kMaxV6ExtHeaders = 8;   // extension headers walked to find TCP

// ICMPv4 type 3 codes we send.
enum class Unreach4 : std::uint8_t { net = 0, host = 1, protocol = 2, port = 3, admin_prohibited = 13 };
// ICMPv6 type 1 codes we send.
enum class Unreach6 : std::uint8_t { no_route = 0, admin_prohibited = 1, address = 3, port = 4 };

// Why a builder returned no packet. The caller counts these (drops.def: session_down,
// too_big, mbuf_alloc) — an offending packet is dropped whatever the verdict.
enum class ReplyVerdict : std::uint8_t {
    built,        // Reply::m holds the frame to send on the LAN port
    malformed,    // lengths or version inconsistent: not answered
    not_allowed,  // the RFCs forbid an answer (see the file comment)
    no_source,    // no LAN address of that family to send from
    no_mbuf,      // the pool is empty
};

struct Reply {
    rte_mbuf* m = nullptr;
    ReplyVerdict verdict = ReplyVerdict::malformed;
};

// The frame being answered. l3 spans from the IP header to the end of the frame's data in
// the first segment (the caller passes what it holds contiguously; a shorter span only
// shortens the quote, a span cut inside a header makes the packet malformed).
struct Offending {
    std::span<const std::uint8_t> l3;
    rte_ether_addr src_mac;   // as received: becomes the reply's destination
    rte_ether_addr dst_mac;   // as received: becomes the reply's source (our LAN MAC)
};

// The appliance's LAN addresses (network byte order): the source of ICMP errors.
struct LanSource {
    bool has_v4 = false;
    std::array<std::uint8_t, 4> v4{};
    bool has_v6 = false;
    std::array<std::uint8_t, 16> v6{};
};

// ICMPv4 type 3 code 4 with the next-hop MTU (RFC 1191). Only for an IPv4 packet with DF.
Reply icmp4_frag_needed(rte_mempool* pool, const Offending& pkt, const LanSource& src,
                        std::uint16_t next_hop_mtu) noexcept;
// ICMPv6 type 2 (RFC 4443 §3.2) with the MTU.
Reply icmp6_packet_too_big(rte_mempool* pool, const Offending& pkt, const LanSource& src,
                           std::uint32_t mtu) noexcept;
// ICMPv4 type 3 with the given code.
Reply icmp4_unreachable(rte_mempool* pool, const Offending& pkt, const LanSource& src,
                        Unreach4 code = Unreach4::host) noexcept;
// ICMPv6 type 1 with the given code.
Reply icmp6_unreachable(rte_mempool* pool, const Offending& pkt, const LanSource& src,
                        Unreach6 code = Unreach6::address) noexcept;
// TCP RST for a TCP segment (IPv4 or IPv6), sent as if by the segment's destination so the
// sender's stack matches it to its connection (RFC 9293 §3.10.7.1, connection CLOSED):
// ACK set -> <SEQ=SEG.ACK><CTL=RST>; else <SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>.
// not_allowed for a segment with RST, and for fragments (SEG.LEN is unknown).
Reply tcp_reset(rte_mempool* pool, const Offending& pkt) noexcept;

// The packet does not fit the tunnel MTU: IPv4 -> fragmentation needed, IPv6 -> packet too
// big. (The caller decides that an IPv4 packet without DF is fragmented instead.)
Reply too_big_reply(rte_mempool* pool, const Offending& pkt, const LanSource& src,
                    std::uint32_t tunnel_mtu) noexcept;
// Seed spec §2.1.7, "login termination": TCP -> RST; anything else (or a TCP fragment) ->
// host / address unreachable.
Reply session_down_reply(rte_mempool* pool, const Offending& pkt, const LanSource& src) noexcept;

}  // namespace p3::dp
