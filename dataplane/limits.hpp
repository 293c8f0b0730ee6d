// Every fixed limit of the dataplane in one place: bursts, queues, rings, tables, timers.
// Changing one of these changes memory use or latency; nothing else in dataplane/ hard-codes
// a size.
#pragma once

#include <cstdint>

namespace p3::dp {

inline constexpr unsigned kMaxBurst = 64;            // packets per RX burst (config burst <= this)
inline constexpr unsigned kMaxWorkers = 64;          // worker lcores per dataplane
inline constexpr unsigned kMaxRxPerWorker = 16;      // (port, queue) pairs one worker polls
inline constexpr unsigned kMaxQueuesPerPort = 64;
inline constexpr std::uint16_t kRxDesc = 1024;       // upper bound; reduced to fit the pool
inline constexpr std::uint16_t kTxDesc = 1024;
inline constexpr unsigned kMbufCache = 128;          // per-lcore mempool cache (upper bound)
inline constexpr unsigned kMinMbufs = 1023;
inline constexpr unsigned kControlRingSize = 4096;   // worker -> control (multi-producer)
inline constexpr unsigned kToWorkerRingSize = 1024;  // control -> workers (drained by worker 0)
inline constexpr unsigned kTxBufSize = kMaxBurst;    // buffered TX per port per worker
inline constexpr std::uint64_t kTxDrainUs = 100;     // flush buffered TX at least this often

// Routing and sessions.
inline constexpr std::uint32_t kMaxSessions = 32768;      // session ids 1..kMaxSessions-1
inline constexpr std::uint32_t kMaxRoutes4 = 1u << 18;    // IPv4 prefixes
inline constexpr std::uint32_t kTbl8Groups4 = 1u << 15;   // /25../32 blocks (32768 x 1 KiB)
inline constexpr std::uint32_t kMaxRoutes6 = 1u << 17;    // IPv6 prefixes
inline constexpr std::uint32_t kTbl8Groups6 = 1u << 16;
inline constexpr unsigned kMaxLanes = 64;                 // lanes per session per direction

// Neighbours (ARP / IPv6 ND), per port.
inline constexpr unsigned kNeighborSlots = 1024;          // open-addressed, power of two
inline constexpr unsigned kHoldPerNeighbor = 8;           // packets held while resolving
inline constexpr unsigned kResolveRetries = 3;            // requests before giving up
inline constexpr std::uint64_t kResolveIntervalMs = 1000; // between requests
inline constexpr std::uint64_t kResolveHoldoffMs = 5000;  // after a failed resolution
inline constexpr std::uint64_t kNeighborRefreshS = 300;   // re-resolve learned entries

// Outer headers.
inline constexpr std::uint8_t kOuterTtl = 64;
inline constexpr std::uint16_t kNatPort = 4500;

static_assert((kNeighborSlots & (kNeighborSlots - 1)) == 0);
static_assert(kTxBufSize >= kMaxBurst);

}  // namespace p3::dp
