// Packet capture (see capture.hpp): the workers' copy into the ring, the control thread's
// file (rte_pcapng: section header, one interface block per DPDK port, enhanced packet
// blocks, a statistics block at the end).
#include "dataplane/capture.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>

#include <rte_cycles.h>
#include <rte_errno.h>
#include <rte_pcapng.h>

#include "common/log.hpp"

#ifndef P3_VERSION
#define P3_VERSION "unknown"
#endif

namespace p3::dp {

namespace {

// Bytes of a capture mbuf: a standard frame and rte_pcapng's block header and options fit in
// one; a larger frame is copied into a chain.
constexpr std::uint32_t kCaptureFrame = 2048;
constexpr unsigned kPoolCache = 32;

std::uint64_t wall_ns() noexcept {
    timespec ts{};
    clock_gettime(CLOCK_REALTIME, &ts);
    return static_cast<std::uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<std::uint64_t>(ts.tv_nsec);
}

}  // namespace

void capture_burst(const CaptureTap& tap, CaptureCounts& cnt, std::uint16_t port, std::uint16_t queue,
                   std::uint8_t dir, rte_mbuf* const* pkts, unsigned n) noexcept {
    const std::uint32_t snap = tap.snaplen.load(std::memory_order_relaxed);
    const auto dn = dir == kCaptureRx ? RTE_PCAPNG_DIRECTION_IN : RTE_PCAPNG_DIRECTION_OUT;
    const std::uint64_t ts = rte_get_tsc_cycles();
    // The burst's time in ns (whole seconds apart so that nothing overflows), written into
    // each copy's enhanced packet block (timestamp high and low words at bytes 12 and 16).
    const std::uint64_t d = ts - tap.base_tsc;
    const std::uint64_t ns = tap.base_ns + d / tap.tsc_hz * 1000000000ull + d % tap.tsc_hz * 1000000000ull / tap.tsc_hz;
    const std::uint32_t hi = static_cast<std::uint32_t>(ns >> 32), lo = static_cast<std::uint32_t>(ns);
    std::uint64_t copied = 0, lost = 0;
    rte_mbuf* c[kMaxBurst];
    while (n) {
        const unsigned chunk = std::min(n, kMaxBurst);
        unsigned k = 0;
        for (unsigned i = 0; i < chunk; ++i) {
            rte_mbuf* m = rte_pcapng_copy(port, queue, pkts[i], tap.pool, snap, ts, dn);
            if (!m) continue;
            std::memcpy(rte_pktmbuf_mtod_offset(m, char*, 12), &hi, 4);
            std::memcpy(rte_pktmbuf_mtod_offset(m, char*, 16), &lo, 4);
            c[k++] = m;
        }
        lost += chunk - k;
        const unsigned put = rte_ring_mp_enqueue_burst(tap.ring, reinterpret_cast<void* const*>(c), k, nullptr);
        if (put < k) rte_pktmbuf_free_bulk(c + put, k - put);
        copied += put;
        lost += k - put;
        pkts += chunk;
        n -= chunk;
    }
    // Only this worker writes its counts: plain read-add-store, no locked instruction.
    cnt.copied.store(cnt.copied.load(std::memory_order_relaxed) + copied, std::memory_order_relaxed);
    if (lost) cnt.lost.store(cnt.lost.load(std::memory_order_relaxed) + lost, std::memory_order_relaxed);
}

Capture::Capture(std::string name, const std::uint16_t (&port_id)[kSides], int socket) noexcept
    : name_(std::move(name)), port_id_{port_id[0], port_id[1]}, socket_(socket) {}

Capture::~Capture() {
    if (running()) stop("p3d stopping");
    purge();
    if (tap_.ring) rte_ring_free(tap_.ring);
    if (tap_.pool) rte_mempool_free(tap_.pool);
}

bool Capture::make_pool(std::string& why) {
    if (tap_.pool && tap_.ring) return true;
    const std::string pn = name_ + "_cap", rn = name_ + "_capr";
    if (!tap_.pool)
        tap_.pool = rte_pktmbuf_pool_create(pn.c_str(), kCaptureMbufs - 1, kPoolCache, 0,
                                            static_cast<std::uint16_t>(rte_pcapng_mbuf_size(kCaptureFrame)), socket_);
    if (!tap_.ring) tap_.ring = rte_ring_create(rn.c_str(), kCaptureRing, socket_, RING_F_SC_DEQ);
    if (tap_.pool && tap_.ring) return true;
    why = std::string("no memory for the capture pool or ring: ") + rte_strerror(rte_errno);
    P3_LOG_ERROR(ADMIN_CAPTURE_FAILED, "capture: %s (%u mbufs of %u bytes)", why.c_str(), kCaptureMbufs,
                 rte_pcapng_mbuf_size(kCaptureFrame));
    return false;
}

void Capture::purge() noexcept {
    if (!tap_.ring) return;
    rte_mbuf* m[64];
    unsigned n;
    while ((n = rte_ring_sc_dequeue_burst(tap_.ring, reinterpret_cast<void**>(m), 64, nullptr)) != 0)
        rte_pktmbuf_free_bulk(m, n);
}

void Capture::sum(std::uint64_t& copied, std::uint64_t& lost) const noexcept {
    copied = lost = 0;
    for (unsigned i = 0; i < kMaxWorkers; ++i) {
        copied += counts_[i].copied.load(std::memory_order_relaxed);
        lost += counts_[i].lost.load(std::memory_order_relaxed);
    }
}

bool Capture::start(int fd, const CaptureSpec& spec, const std::string& comment, std::string& why) {
    if (running()) {
        ::close(fd);
        why = "a capture is running already";
        return false;
    }
    if (!make_pool(why)) {
        ::close(fd);
        return false;
    }
    purge();
    const std::string app = "p3d " P3_VERSION;
    file_ = rte_pcapng_fdopen(fd, nullptr, nullptr, app.c_str(), comment.c_str());
    if (!file_) {
        why = std::string("cannot write the capture file: ") + rte_strerror(rte_errno);
        ::close(fd);
        return false;
    }
    spec_ = spec;
    totals_ = {};
    sum(base_copied_, base_lost_);
    start_ns_ = wall_ns();
    tap_.base_tsc = rte_get_tsc_cycles();
    tap_.base_ns = wall_ns();
    tap_.tsc_hz = std::max<std::uint64_t>(1, rte_get_tsc_hz());
    tap_.snaplen.store(spec.snaplen, std::memory_order_relaxed);
    tap_.armed[static_cast<unsigned>(spec.side)].store(spec.dirs, std::memory_order_release);
    return true;
}

unsigned Capture::drain(bool& ok) noexcept {
    ok = true;
    if (!running()) return 0;
    rte_mbuf* m[64];
    unsigned taken = 0;
    while (taken < kCaptureDrainPerPass) {
        const unsigned n = rte_ring_sc_dequeue_burst(tap_.ring, reinterpret_cast<void**>(m), 64, nullptr);
        if (n == 0) break;
        taken += n;
        unsigned keep = n;
        if (spec_.count) keep = static_cast<unsigned>(std::min<std::uint64_t>(n, spec_.count - std::min(spec_.count, totals_.written)));
        if (keep < n) rte_pktmbuf_free_bulk(m + keep, n - keep);
        if (keep == 0) continue;
        // DPDK 22.11's rte_pcapng_write_packets leaves the mbufs to the caller (its header
        // says otherwise; dpdk-dumpcap of 22.11 frees them after the call too).
        const ssize_t w = rte_pcapng_write_packets(file_, m, static_cast<std::uint16_t>(keep));
        rte_pktmbuf_free_bulk(m, keep);
        if (w < 0) {
            ok = false;
            break;
        }
        totals_.written += keep;
    }
    // The count is reached: the workers stop copying at once.
    if (done()) tap_.armed[static_cast<unsigned>(spec_.side)].store(0, std::memory_order_relaxed);
    return taken;
}

CaptureTotals Capture::totals() const noexcept {
    CaptureTotals t = totals_;
    std::uint64_t copied, lost;
    sum(copied, lost);
    t.lost = lost - base_lost_;
    t.seen = (copied - base_copied_) + t.lost;
    return t;
}

CaptureTotals Capture::stop(const char* why) {
    if (!running()) return totals_;
    tap_.armed[static_cast<unsigned>(spec_.side)].store(0, std::memory_order_relaxed);
    bool ok = true;
    while (ok && drain(ok) != 0 && !done()) {
    }
    const CaptureTotals t = totals();
    rte_pcapng_write_stats(file_, port_id_[static_cast<unsigned>(spec_.side)], why, start_ns_, wall_ns(), t.seen, t.lost);
    rte_pcapng_close(file_);   // closes the file descriptor too
    file_ = nullptr;
    totals_ = t;
    return t;
}

}  // namespace p3::dp
