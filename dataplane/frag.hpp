// IP fragmentation on both sides of the tunnel (docs/dataplane-mtu.md), with DPDK's
// rte_ip_frag:
//  - outbound, an inner IPv4 packet without DF that does not fit the tunnel MTU is cut into
//    fragments BEFORE encryption (RFC 4459 §5.1), so every outer packet fits the WAN MTU and
//    the receiver never reassembles outer packets in the normal case;
//  - inbound, outer packets that a router on the path fragmented anyway are reassembled
//    before decryption, in a per-lcore table (Reassembler).
// An inner IPv6 packet is never fragmented: it gets ICMPv6 "packet too big" (icmp_errors).
//
// Reassembler state machine, per flow (src, dst, id): first fragment -> entry in the table
// -> more fragments -> complete: the whole packet is returned; or the entry outlives the
// timeout -> its fragments go to the death row and are counted as expired. The death row is
// freed once per burst (end_burst), as rte_ip_frag expects.
//
// Bounds (anyone can send fragments that never complete): the reassembler holds at most
// `max_held` fragments (its share of the packet pool, dataplane.cpp), at most `per_source`
// of them from one source address (counted per hash bucket of the source), each for at most
// the timeout. A fragment over a source's quota is dropped (over_source). A fragment that
// finds the share full makes room by dropping the oldest flows first (evicted; those
// younger than kReassemblyMinAgeMs are kept, so a packet whose fragments arrive together
// still completes under a flood); when even that leaves no room it is dropped (over_share).
//
// Fast-path callable: no heap (the table is allocated at init), no exceptions, no locks; one
// Reassembler per worker lcore, never shared.
#pragma once

#include <cstdint>
#include <span>

#include <rte_common.h>
#include <rte_ip_frag.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>

#include "common/wire_limits.hpp"

namespace p3::dp {

// Limits (per worker lcore).
inline constexpr std::uint32_t kReassemblyFlows = 1024;        // fragments held at most (any share)
inline constexpr std::uint32_t kReassemblyBucketEntries = 16;  // rte_ip_frag associativity
inline constexpr std::uint64_t kReassemblyTimeoutMs = 500;     // incomplete flows are dropped after
inline constexpr std::uint64_t kReassemblyMinAgeMs = 1;        // never evicted younger than this
inline constexpr std::uint32_t kReassemblyShareDiv = 8;        // all workers: <= 1/8 of the pool
inline constexpr std::uint32_t kReassemblySourceDiv = 8;       // one source: <= 1/8 of a worker's
inline constexpr unsigned kReassemblySourceBuckets = 1024;     // per-source counts (hashed)
inline constexpr unsigned kMaxFragmentsOut = RTE_LIBRTE_IP_FRAG_MAX_FRAG;  // per inner packet
inline constexpr std::uint16_t kMinTunnelMtu4 = wire::kIpv4MinMtu;  // every host accepts it
inline constexpr std::uint16_t kMinTunnelMtu6 = wire::kIpv6MinMtu;  // every link carries it

// Outer-header bytes the tunnel adds (DESIGN.md §Wire format): outer IPv4 20 / IPv6 40,
// UDP 8 when NAT traversal is on, P3 header 16 (flags, id, sequence), trailer 2 (pad
// length, next header), ICV 16. Tunnel MTU: the largest inner packet whose outer packet fits
// the WAN MTU unfragmented. The plaintext (inner + pad + trailer) is padded to a multiple of 4,
// so that is floor4(WAN MTU - outer - header - ICV) - trailer: 1446 for IPv4 at 1500, not
// 1500 - 54 whatever the MTU (at 1499 the 1445-byte inner packet would pad to a 1500-byte one).
inline constexpr std::uint32_t tunnel_overhead(bool outer_v6, bool nat) noexcept {
    return (outer_v6 ? 40u : 20u) + (nat ? 8u : 0u) + 16u + 2u + 16u;
}
inline constexpr std::uint32_t tunnel_mtu(std::uint32_t wan_mtu, bool outer_v6, bool nat) noexcept {
    const std::uint32_t fixed = tunnel_overhead(outer_v6, nat) - 2u;   // all but the trailer
    return wan_mtu >= fixed + 4u ? ((wan_mtu - fixed) & ~3u) - 2u : 0;
}
static_assert(tunnel_mtu(1500, false, false) == 1446 && tunnel_mtu(1499, false, false) == 1442 &&
              tunnel_mtu(1500, true, false) == 1426 && tunnel_mtu(1500, true, true) == 1418);

// What to do with an inner packet of a given size (the caller has validated its header).
enum class MtuAction : std::uint8_t {
    fits,        // encapsulate as is
    fragment,    // IPv4 without DF: fragment_ipv4() first
    too_big,     // IPv4 with DF, or IPv6: answer with too_big_reply(), drop
};
// l3: the inner packet from its IP header (at least the first 8 bytes).
MtuAction mtu_action(std::span<const std::uint8_t> l3, std::uint32_t ip_len, std::uint32_t tunnel_mtu) noexcept;

enum class FragError : std::uint8_t { none, malformed, dont_fragment, too_many, no_mbuf };

struct FragOutcome {
    std::uint16_t count = 0;       // fragments written to out (0 on error)
    FragError error = FragError::none;
};

// Fragments the IPv4 packet m (data starts at the IPv4 header; trailing link padding beyond
// the IP total length is ignored) so that every fragment is at most mtu bytes. On success m
// is consumed and out[0..count) hold single-segment fragments from `direct` (default
// headroom, so the outer headers can be prepended; data at the IPv4 header; checksums set;
// l3_len set), ready to be sealed in place. On error m is untouched and still the caller's.
// `indirect` (a pool of zero-data-room mbufs) is used only for a multi-segment m, whose
// fragments are then linearised.
FragOutcome fragment_ipv4(rte_mbuf* m, std::uint16_t mtu, std::span<rte_mbuf*> out, rte_mempool* direct,
                          rte_mempool* indirect) noexcept;

struct ReassemblyStats {
    std::uint64_t fragments_in = 0;    // fragments handed to the table
    std::uint64_t reassembled = 0;     // whole packets returned
    std::uint64_t expired = 0;         // fragments freed because their flow timed out
    std::uint64_t dropped = 0;         // fragments freed by the table (overlap, too many, table full, stale)
    std::uint64_t malformed = 0;       // fragments with inconsistent lengths
    std::uint64_t too_big = 0;         // reassembled packets that fit no single buffer
    std::uint64_t evicted = 0;         // fragments of older flows dropped to make room
    std::uint64_t over_share = 0;      // fragments refused: the share full of young flows
    std::uint64_t over_source = 0;     // fragments refused: their source holds its quota
    std::uint32_t held = 0;            // fragments held now
    std::uint32_t held_peak = 0;       // most ever held at once
};

class alignas(RTE_CACHE_LINE_SIZE) Reassembler {
public:
    Reassembler() noexcept = default;
    ~Reassembler() { destroy(); }
    Reassembler(const Reassembler&) = delete;
    Reassembler& operator=(const Reassembler&) = delete;

    // Allocates the table on `socket` (control thread, at start) for at most max_held
    // fragments held at once (as many flows), a source's quota max_held / kReassemblySourceDiv
    // (at least two packets' worth). `copy_pool` gives the buffer a reassembled packet is
    // copied into when it does not fit its first fragment's. false when the memory is not there.
    bool init(std::uint32_t max_held, std::uint64_t timeout_ms, int socket, rte_mempool* copy_pool,
              std::uint64_t tsc_hz) noexcept;
    std::uint32_t max_held() const noexcept { return max_held_; }
    std::uint32_t per_source() const noexcept { return per_source_; }
    void destroy() noexcept;

    // m: a WAN frame, data at the Ethernet header, m->l2_len = bytes before the IP header.
    // Not a fragment -> m itself. A fragment -> nullptr (held, or dropped and counted) or,
    // when it completes its flow, the whole packet: one segment, the first fragment's L2
    // header, a valid IP header (total/payload length, checksum), l2_len/l3_len set.
    rte_mbuf* process(rte_mbuf* m, std::uint64_t now_tsc) noexcept;

    // Once per burst: drops flows older than the timeout and frees the death row.
    void end_burst(std::uint64_t now_tsc) noexcept;

    const ReassemblyStats& stats() const noexcept { return stats_; }

private:
    rte_mbuf* finish(rte_mbuf* whole) noexcept;
    void make_room() noexcept;
    // Accepts one more fragment from source bucket b, or says why not (false: m is freed).
    bool admit(rte_mbuf* m, unsigned b, std::uint64_t now) noexcept;
    void evict_oldest(std::uint64_t now) noexcept;
    // Mbufs leaving the table (a whole packet, death-row entries): their fragments no longer held.
    void release(const rte_mbuf* m) noexcept;
    std::uint32_t flush_death_row() noexcept;   // returns fragments freed

    rte_ip_frag_tbl* tbl_ = nullptr;
    rte_mempool* copy_pool_ = nullptr;
    ReassemblyStats stats_{};
    rte_ip_frag_death_row dr_{};
    std::uint64_t max_cycles_ = 0, min_age_cycles_ = 0;
    std::uint32_t max_held_ = 0, per_source_ = 0;
    std::uint16_t per_src_[kReassemblySourceBuckets] = {};
};

}  // namespace p3::dp
