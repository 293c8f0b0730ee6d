// Every fixed limit of the dataplane's own tuning in one place: bursts, queues, rings, tables,
// timers. Changing one of these changes memory use or latency; nothing else in dataplane/
// hard-codes a size. Protocol limits the planes share (lanes, header sizes, TTLs, MTU floors)
// are in common/wire_limits.hpp.
#pragma once

#include "common/dp_sizes.hpp"   // kMinMbufs, kMaxSessions, kMaxRoutes4, kMaxRoutes6

#include <cstdint>

namespace p3::dp {

inline constexpr unsigned kMaxBurst = 64;            // packets per RX burst (config burst <= this)
inline constexpr unsigned kMaxWorkers = 64;          // worker lcores per dataplane
inline constexpr unsigned kMaxRxPerWorker = 16;      // (port, queue) pairs one worker polls
inline constexpr unsigned kMaxQueuesPerPort = 64;
inline constexpr std::uint16_t kRxDesc = 1024;       // upper bound; reduced to fit the pool
inline constexpr std::uint16_t kTxDesc = 1024;
inline constexpr unsigned kMbufCache = 128;          // per-lcore mempool cache (upper bound)
// Worker -> control thread: one ring per class of message (multi-producer), drained in this
// order of priority (docs/dataplane.md "Rings between the planes").
inline constexpr unsigned kTrustedRingSize = 1024;   // control_in: authenticated, decrypted
inline constexpr unsigned kNeighRingSize = 1024;     // ARP, ND, frames held for a next hop
inline constexpr unsigned kSetupRingSize = 1024;     // setup UDP (anyone on the Internet)
// Per worker, token buckets on the TSC: what one worker may hand to the control thread.
inline constexpr std::uint32_t kSetupRate = 2000;    // setup datagrams per second
inline constexpr std::uint32_t kSetupBurst = 256;
inline constexpr std::uint32_t kNeighRate = 1000;    // ARP / ND frames per second
inline constexpr std::uint32_t kNeighBurst = 128;
inline constexpr std::uint32_t kHoldRate = 2000;     // frames for unresolved next hops per second
inline constexpr std::uint32_t kHoldBurst = 256;
// A UDP-encapsulated P3 packet from another source than its slot's peer (a NAT rebinding, or
// a spoofed copy) is opened to see whether the peer moved: at most this many per second per
// worker (each costs what a forged packet from the peer's own source costs), and a worker
// tells the control thread about a slot at most once per kPeerMovedEveryMs, within its
// messages' own rate (docs/dataplane.md "The peer moved").
inline constexpr std::uint32_t kMovedOpenRate = 20000;
inline constexpr std::uint32_t kMovedOpenBurst = 256;
inline constexpr unsigned kMovedPerBurst = 16;        // such packets staged per inbound batch
inline constexpr std::uint32_t kPeerMovedRate = 50;   // peer_moved messages per second
inline constexpr std::uint32_t kPeerMovedBurst = 8;
inline constexpr std::uint64_t kPeerMovedEveryMs = 50;
inline constexpr unsigned kPeerMovedNotes = 16;       // slots a worker remembers telling about
// A report of a move back to where the session just came from, this soon after, is a packet of
// the old mapping that was still on its way (another lane's): not followed.
inline constexpr std::uint64_t kMoveBackHoldMs = 200;
inline constexpr std::uint64_t kPressureLogMs = 1000;   // a pressure line at most this often
inline constexpr unsigned kHandoffRingSize = 1024;   // worker -> the owner of an inbound lane (each)
inline constexpr unsigned kToWorkerRingSize = 1024;  // control -> workers (drained by worker 0)
inline constexpr unsigned kTxBufSize = kMaxBurst;    // buffered TX per port per worker
inline constexpr std::uint64_t kTxDrainUs = 100;     // flush buffered TX at least this often

// Routing and sessions.
inline constexpr std::uint32_t kTbl8Groups4 = 1u << 15;   // /25../32 blocks (32768 x 1 KiB)
inline constexpr std::uint32_t kTbl8Groups6 = 1u << 16;

// Neighbours (ARP / IPv6 ND), per port.
inline constexpr unsigned kNeighborSlots = 1024;          // open-addressed, power of two
// Frames held per unresolved next hop: a first burst of a flow (Linux holds what fits in
// unres_qlen_bytes, about 100 full frames).
inline constexpr unsigned kHoldPerNeighbor = 100;
inline constexpr unsigned kResolveRetries = 3;            // requests before giving up
inline constexpr std::uint64_t kResolveIntervalMs = 1000; // between requests
inline constexpr std::uint64_t kResolveHoldoffMs = 5000;  // after a failed resolution
inline constexpr unsigned kMaxPendingNeighbors = 256;     // next hops resolving or held off, per side
// Frames held for all next hops of one side: 1/kHoldShareDiv of the packet pool (both sides
// together 1/8, as outer reassembly), so a flood of unresolved next hops never holds the
// buffers the ports receive into: 511 for the default 8191 buffers, 63 for the minimum.
inline constexpr unsigned kHoldShareDiv = 16;
constexpr unsigned held_per_side(unsigned nmbufs) noexcept { return nmbufs / kHoldShareDiv; }
// Configured next hops (a side's gateway without gateway_mac): asked for at start, and an
// answer is good for kReachableMs (Linux's base_reachable_time); from kRefreshLeadMs before
// that, asked again by unicast every kResolveIntervalMs; unanswered by then, the MAC is
// withdrawn and it is asked for by broadcast again. A round of kResolveRetries broadcasts
// that fails is followed by another after a back-off from kResolveHoldoffMs doubling up to
// kGatewayBackoffMaxMs, for as long as it is configured.
inline constexpr std::uint64_t kReachableMs = 30000;
inline constexpr std::uint64_t kRefreshLeadMs = 3000;
inline constexpr std::uint64_t kGatewayBackoffMaxMs = 60000;

static_assert((kNeighborSlots & (kNeighborSlots - 1)) == 0);
static_assert(kTxBufSize >= kMaxBurst);
static_assert(kHoldBurst >= kHoldPerNeighbor);   // a first burst passes the worker's policer whole
static_assert(kRefreshLeadMs >= kResolveRetries * kResolveIntervalMs && kRefreshLeadMs < kReachableMs);

}  // namespace p3::dp
