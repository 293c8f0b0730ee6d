// A worker lcore: its state (one cache-aligned struct, written only by that lcore) and the
// loop. Each pass of the loop:
//   quiescent state (RCU) -> RX bursts from its queues -> per burst: classify, then the
//   outbound (LAN) or inbound (WAN) path -> worker 0 drains the control->worker ring ->
//   TX buffers (what is not sent as a whole sealed/opened batch) flushed when full or every
//   kTxDrainUs -> idle back-off after idle_polls
//   empty passes (offline for RCU while asleep).
#pragma once

#include <atomic>
#include <cstdint>

#include <rte_ether.h>
#include <rte_ip_frag.h>
#include <rte_mbuf.h>

#include "dataplane/frag.hpp"
#include "dataplane/limits.hpp"
#include "dataplane/ratelimit.hpp"
#include "dataplane/ports.hpp"
#include "dataplane/stats.hpp"

namespace p3::wire {
class GcmEngine;
}

namespace p3::dp {

inline constexpr unsigned kNoLane = ~0u;

struct RxQueue {
    std::uint16_t port;
    std::uint16_t queue;
    Side side;
};

struct TxBuffer {
    std::uint16_t n = 0;
    rte_mbuf* pkts[kTxBufSize];
};


// Packets of one receiving burst for one other worker's handoff ring, enqueued as one burst
// when the burst ends.
struct HandoffBuffer {
    std::uint16_t n = 0;
    rte_mbuf* pkts[kMaxBurst];
};

struct alignas(RTE_CACHE_LINE_SIZE) Lcore {
    unsigned lcore_id = 0;
    unsigned index = 0;                 // worker index = TX queue on both ports
    unsigned lane = 0;                  // its place among the sending workers (kNoLane: it
                                        // sends nothing); a session's lane follows from it
    std::uint32_t lane_turn = 0;        // bursts sent: which of its lanes (a session with
                                        // more lanes than senders) the next burst uses
    unsigned nrx = 0;
    RxQueue rx[kMaxRxPerWorker];
    std::uint64_t last_drain_tsc = 0;
    std::uint32_t idle = 0;
    TxBuffer tx[kSides];
    rte_ring* handoff = nullptr;        // packets other workers hand it (nullptr: none do)
    std::uint64_t handoff_dirty = 0;    // bit d: hand[d] holds packets (workers < 64)
    LcoreStats stats;
    SessionCounters* sessions = nullptr;   // [kMaxSessions], this lcore's share
    wire::GcmEngine* wire = nullptr;       // this lcore's AES-GCM engine (worker.cpp)
    TokenBucket replies;                   // ICMP errors and TCP resets we originate
    TokenBucket setup_rate;                // setup datagrams to the control thread
    TokenBucket neigh_rate;                // ARP/ND frames to the control thread
    TokenBucket hold_rate;                 // frames for unresolved next hops
    TokenBucket moved_open;                // packets from another source than their peer, opened
    TokenBucket moved_rate;                // peer_moved messages to the control thread
    struct MovedNote {
        std::uint32_t id = 0;              // P3 ID told about (0: none)
        std::uint64_t tsc = 0;             // when
    };
    MovedNote moved_notes[kPeerMovedNotes];   // by P3 ID modulo: at most one per slot per interval
    Reassembler reasm;                     // outer fragments (WAN)
    ReassemblyStats reasm_seen{};          // what reasm.stats() said when last counted
    std::atomic<std::uint32_t> reasm_held{0};   // fragments it holds (as of its last count)
    std::atomic<std::uint32_t> reasm_peak{0};   // the most it ever held
    HandoffBuffer hand[kMaxWorkers];       // by destination worker (cold unless lanes are handed)
};
static_assert(kMaxWorkers <= 64, "Lcore::handoff_dirty has a bit per worker");

}  // namespace p3::dp
