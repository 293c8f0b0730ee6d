// Packet capture from inside p3d (p3ctl capture, docs/capture.md): one port, one or both
// directions, copied by the workers with DPDK's rte_pcapng and written by the control thread
// into a pcapng file the operator opened. No hugepages and no secondary process are needed
// (dpdk-dumpcap's rte_pdump cannot attach to a --no-huge primary).
//
//   worker: RX burst / TX burst --(armed for that side and direction? one test per burst)-->
//           rte_pcapng_copy() each packet into the capture pool --(MP/SC ring)-->
//   control thread: drain() -> rte_pcapng_write_packets() to the file; stop() -> statistics
//           block, file closed.
//
// A full ring or an empty capture pool loses the copy (counted, per worker), never the packet
// and never a wait: forwarding goes on as if nothing were captured. At most one capture at a
// time. The pool (kCaptureMbufs copies) and the ring are made at the first capture and kept:
// a worker that read the flag just before a stop may still put a copy on the ring, which the
// next start() (or close) frees.
//
// States: idle -> running (start) -> idle (stop). Control thread only, except the CaptureTap
// and capture_burst(), which the workers read and run.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>

#include <rte_mbuf.h>
#include <rte_mempool.h>
#include <rte_ring.h>

#include "dataplane/limits.hpp"
#include "dataplane/ports.hpp"

struct rte_pcapng;

namespace p3::dp {

// Copies in flight between the workers and the file: mbufs of the capture pool (about 2 KiB
// each without hugepages: ~2.5 MiB in all) and ring slots (one less than its size).
inline constexpr unsigned kCaptureMbufs = 1024;
inline constexpr unsigned kCaptureRing = 1024;
// Copies the control thread writes per pass at most (a pass comes every millisecond or sooner).
inline constexpr unsigned kCaptureDrainPerPass = kCaptureRing;
// Bytes of each packet kept by default (a whole jumbo frame) and at least.
inline constexpr std::uint32_t kCaptureSnapDefault = 9018;
inline constexpr std::uint32_t kCaptureSnapMin = 64;

// Directions, as bits of CaptureTap::armed.
inline constexpr std::uint8_t kCaptureRx = 1, kCaptureTx = 2;

// What the workers read: which side and direction is captured (0: none), and where copies go.
// Written by the control thread only; armed is stored last (release), read first (acquire).
struct alignas(RTE_CACHE_LINE_SIZE) CaptureTap {
    std::atomic<std::uint8_t> armed[kSides] = {};
    rte_ring* ring = nullptr;
    rte_mempool* pool = nullptr;           // ring and pool: set once, before the first arming
    std::atomic<std::uint32_t> snaplen{kCaptureSnapDefault};
    // Wall clock of the TSC, taken at start(): DPDK 22.11's own conversion in rte_pcapng_copy
    // overflows a few seconds after the process started, so each copy's time is written here.
    std::uint64_t base_tsc = 0, base_ns = 0, tsc_hz = 1;
};

// One worker's counts (its own cache line; only that worker writes them).
struct alignas(RTE_CACHE_LINE_SIZE) CaptureCounts {
    std::atomic<std::uint64_t> copied{0};   // put on the ring
    std::atomic<std::uint64_t> lost{0};     // ring full or pool empty
};

// The workers' side: n packets of a burst on port/queue in direction dir (kCaptureRx or
// kCaptureTx) copied onto the ring. Call only when tap.armed says so.
void capture_burst(const CaptureTap& tap, CaptureCounts& cnt, std::uint16_t port, std::uint16_t queue,
                   std::uint8_t dir, rte_mbuf* const* pkts, unsigned n) noexcept;

struct CaptureSpec {
    Side side = Side::wan;
    std::uint8_t dirs = kCaptureRx | kCaptureTx;
    std::uint32_t snaplen = kCaptureSnapDefault;
    std::uint64_t count = 0;            // packets to write, 0: until stopped
};

struct CaptureTotals {
    std::uint64_t written = 0;          // packets in the file
    std::uint64_t seen = 0;             // packets of the port and direction while armed
    std::uint64_t lost = 0;             // copies lost (ring full, pool empty)
};

class Capture {
public:
    // name: prefix of the pool's and ring's DPDK names; port_id: the DPDK port of each side.
    Capture(std::string name, const std::uint16_t (&port_id)[kSides], int socket) noexcept;
    ~Capture();
    Capture(const Capture&) = delete;
    Capture& operator=(const Capture&) = delete;

    CaptureTap& tap() noexcept { return tap_; }
    CaptureCounts& counts(unsigned worker) noexcept { return counts_[worker]; }

    // Takes fd (a regular file open for writing) into rte_pcapng, writes the section header
    // (comment names the port) and the interfaces, and arms the workers. false: why (fd is
    // closed then too); P3-E0715 logged when the pool or ring cannot be made.
    bool start(int fd, const CaptureSpec& spec, const std::string& comment, std::string& why);
    bool running() const noexcept { return file_ != nullptr; }
    // Writes what the workers copied, at most kCaptureDrainPerPass and never past spec.count
    // (the rest is freed). Returns copies taken off the ring. false in ok: a write failed.
    unsigned drain(bool& ok) noexcept;
    bool done() const noexcept { return spec_.count != 0 && totals_.written >= spec_.count; }
    // Disarms, writes what is left (within count), the statistics block, closes the file.
    CaptureTotals stop(const char* why);
    CaptureTotals totals() const noexcept;
    const CaptureSpec& spec() const noexcept { return spec_; }

private:
    bool make_pool(std::string& why);
    void purge() noexcept;   // copies left on the ring by a previous capture
    void sum(std::uint64_t& copied, std::uint64_t& lost) const noexcept;

    std::string name_;
    std::uint16_t port_id_[kSides];
    int socket_;
    CaptureTap tap_;
    CaptureCounts counts_[kMaxWorkers];
    rte_pcapng* file_ = nullptr;
    CaptureSpec spec_;
    CaptureTotals totals_;
    std::uint64_t base_copied_ = 0, base_lost_ = 0;   // the workers' counts at start
    std::uint64_t start_ns_ = 0;
};

// The workers' test, once per burst (before RX processing, which may rewrite packets in
// place, and before TX, after which the packets are the port's).
inline void capture_tap(Capture& c, unsigned worker, Side side, std::uint8_t dir, std::uint16_t port,
                        std::uint16_t queue, rte_mbuf* const* pkts, unsigned n) noexcept {
    const CaptureTap& t = c.tap();
    if (t.armed[static_cast<unsigned>(side)].load(std::memory_order_acquire) & dir) [[unlikely]]
        capture_burst(t, c.counts(worker), port, queue, dir, pkts, n);
}

}  // namespace p3::dp
