// The control thread's loop (see control_thread.hpp).
#include "control/control_thread.hpp"

#include <rte_cycles.h>
#include <rte_lcore.h>

#include <algorithm>
#include <cstring>
#include <thread>

#include "common/log.hpp"
#include "dataplane/limits.hpp"

namespace p3::control {

namespace {
constexpr unsigned kBurst = dp::kMaxBurst;   // messages taken off a ring at once, as a worker's burst
}

ControlThread::ControlThread(dp::ControlPort& port, Plane* plane, const Clock& clock)
    : port_(port), plane_(plane), clock_(clock) {
    // Telemetry reads only what this thread published: publish once before anyone asks.
    port_.publish(ctl_, ms_of(clock_.now()));
}

ControlThread::~ControlThread() { stop(); }

// Messages of one class, at most `max`: ARP/ND/hold to the resolver, the rest to the plane.
unsigned ControlThread::drain(dp::CtlClass c, unsigned max, std::uint64_t now_ms) {
    rte_mbuf* pkts[kBurst];
    unsigned total = 0;
    while (total < max) {
        const unsigned want = std::min(max - total, kBurst);
        const unsigned n = port_.dequeue(c, std::span(pkts, want));
        for (unsigned i = 0; i < n; ++i) {
            rte_mbuf* m = pkts[i];
            if (port_.to_resolver(m, now_ms)) continue;
            if (plane_) {
                plane_->on_packet(m);
            } else {
                ++unclaimed_;
                rte_pktmbuf_free(m);
            }
        }
        total += n;
        if (n < want) break;
    }
    return total;
}

// A stop on purpose: begin (the plane winds down) at the top of a pass, so what it sends is
// on its way at once; end after the plane's poll, once it is quiet or kStopGrace is over.
void ControlThread::wind(TimePoint now, bool begin) {
    if (begin) {
        winding_ = true;
        wind_from_ = now;
        if (plane_) plane_->wind_down();
        return;
    }
    const bool quiet = !plane_ || plane_->quiet();
    if (!quiet && now - wind_from_ < kStopGrace) return;
    wound_ = true;
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now - wind_from_).count();
    if (quiet)
        P3_LOG_NOTICE(STOPPING, "stopping: the control plane is done after %lld ms; the workers stop", static_cast<long long>(ms));
    else
        P3_LOG_NOTICE(STOPPING, "stopping: the control plane is not done after %lld ms; the workers stop anyway",
                      static_cast<long long>(ms));
    if (on_stopped_) on_stopped_();
}

unsigned ControlThread::pass(TimePoint now) {
    const std::uint64_t now_ms = ms_of(now);
    if (!winding_ && stop_asked_.load(std::memory_order_relaxed)) wind(now, true);
    unsigned trusted = drain(dp::CtlClass::trusted, kTrustedPerPass, now_ms);
    const unsigned neigh = drain(dp::CtlClass::neigh, kNeighPerPass, now_ms);
    const std::uint64_t t0 = rte_rdtsc();
    const std::uint64_t budget = rte_get_tsc_hz() / 1000000 * kSetupPassBudgetUs;
    unsigned setup = 0;
    while (setup < kSetupPerPass && rte_rdtsc() - t0 < budget) {
        if (drain(dp::CtlClass::setup, 1, now_ms) == 0) break;
        ++setup;
        trusted += drain(dp::CtlClass::trusted, kTrustedPerPass, now_ms);
    }
    if (setup && port_.backlog(dp::CtlClass::setup) != 0) ++ctl_.setup_waited;
    // The admin socket after the trusted ring; what it handled counts as work (no idle sleep).
    const unsigned admin = admin_ ? admin_(now) : 0;
    ctl_.trusted += trusted;
    ctl_.neigh += neigh;
    ctl_.setup += setup;
    const unsigned n = trusted + neigh + setup;
    ctl_.packets += n;
    port_.reclaim();
    port_.publish(ctl_, now_ms);      // before the pressure log, which reads what was published
    port_.housekeeping(now_ms);
    if (plane_) plane_->poll(now);
    if (winding_ && !wound_) wind(now, false);
    return n + admin;
}

void ControlThread::run() {
    if (plane_) plane_->start();
    while (!stop_.load(std::memory_order_relaxed)) {
        if (pass() == 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    if (plane_) plane_->stop();
}

bool ControlThread::start(const std::string& name) {
    if (running_) return true;
    stop_.store(false, std::memory_order_relaxed);
    const int rc = rte_ctrl_thread_create(
        &tid_, name.substr(0, 15).c_str(), nullptr,
        [](void* p) -> void* {
            static_cast<ControlThread*>(p)->run();
            return nullptr;
        },
        this);
    if (rc != 0) {
        P3_LOG_ERROR(DP_CONFIG, "control thread: %s", std::strerror(rc));
        return false;
    }
    running_ = true;
    return true;
}

void ControlThread::stop() {
    if (!running_) return;
    stop_.store(true, std::memory_order_relaxed);
    pthread_join(tid_, nullptr);
    running_ = false;
}

}  // namespace p3::control
