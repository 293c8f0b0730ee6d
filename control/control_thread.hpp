// The control thread: the control plane's one thread on the dataplane, its loop and its clock.
//
// One pass (pass()): trusted first — the authenticated control messages waiting (up to
// kTrustedPerPass), then neighbour work (kNeighPerPass: ARP/ND/held frames, handed back to
// the dataplane's resolver through the port), then setup datagrams one at a time with the
// trusted ring emptied again after each (a setup datagram may cost a key pair), within
// kSetupPerPass and kSetupPassBudgetUs; what is left on the setup ring waits for the next
// pass, which comes at once. Then the admin socket's turn (set_admin: bounded by the admin
// server itself, a few requests per pass), after the trusted ring. Then, in this order: RCU reclamation (key slots and published
// views whose grace period is over), the dataplane's housekeeping (neighbour retries, static
// keys' sequence marks), the counters and sessions published for telemetry, the pressure log,
// and the Plane's timers.
//
// Time: one Clock for everything on this thread. The Plane's timers read it; the dataplane's
// housekeeping gets the same instant in milliseconds (ms_of(now)). Tests construct the
// object on a ManualClock (or pass the instant) and call pass() by hand; p3d calls start(),
// which runs plane.start(), passes until stop(), then plane.stop(), on its own thread
// (rte_ctrl_thread_create: an EAL control thread, off the worker lcores).
//
// Stopping on purpose (request_stop(), p3d's SIGTERM/SIGINT): the next pass calls the plane's
// wind_down() (p3d: every session up says goodbye, no new setup is taken), passes go on while
// the workers still run (a goodbye leaves through worker 0) until the plane is quiet() or
// kStopGrace has passed, then the callback of set_on_stopped() runs once (p3d: the dataplane
// is asked to stop; its workers end, then stop() joins this thread).
//
// States: constructed (the first view published) -> [running (start) -> stopped (stop/join)];
// within a run: passing --request_stop--> winding down --quiet or kStopGrace--> wound down.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <string>

#include <pthread.h>
#include <rte_mbuf.h>

#include "control/clock.hpp"
#include "dataplane/control_port.hpp"

namespace p3::control {

// Per pass: every trusted message waiting (up to this many), then neighbour work, then setup
// datagrams within a count and a time budget, then timers.
inline constexpr unsigned kTrustedPerPass = 4 * 64;
inline constexpr unsigned kNeighPerPass = 64;
inline constexpr unsigned kSetupPerPass = 32;
inline constexpr std::uint64_t kSetupPassBudgetUs = 5000;
// Stopping on purpose waits at most this long for the plane to be quiet (p3d: each goodbye
// answered or given up after the channel's kGoodbyeWait, 300 ms), so a stop is never held up.
inline constexpr std::chrono::milliseconds kStopGrace{500};

// A clock's instant in whole milliseconds (the dataplane's housekeeping counts in these), and
// back (tests that count time in milliseconds).
inline std::uint64_t ms_of(TimePoint t) noexcept {
    return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count());
}
inline TimePoint at_ms(std::uint64_t ms) noexcept { return TimePoint(std::chrono::milliseconds(ms)); }

// What the control plane proper does on this thread (p3d: Appliance; tests: recorders).
class Plane {
public:
    virtual ~Plane() = default;
    virtual void start() {}
    // Owns m (free it or send it back). dp::meta(m) says what it is: control_in or setup_udp.
    virtual void on_packet(rte_mbuf* m) = 0;
    // Once per pass, at least every few milliseconds.
    virtual void poll(TimePoint /*now*/) {}
    // Stopping on purpose: end what the peers should hear about, start nothing new. Passes
    // (on_packet, poll) go on until quiet() or kStopGrace, then stop() follows later.
    virtual void wind_down() {}
    virtual bool quiet() const { return true; }
    virtual void stop() {}
};

class ControlThread {
public:
    // plane nullptr: every message that is not for the resolver is counted and freed.
    // port, plane and clock must outlive this object.
    ControlThread(dp::ControlPort& port, Plane* plane, const Clock& clock);
    ~ControlThread();
    ControlThread(const ControlThread&) = delete;
    ControlThread& operator=(const ControlThread&) = delete;

    // One pass at `now` (tests), or at the clock's now. Returns messages handled.
    unsigned pass(TimePoint now);
    unsigned pass() { return pass(clock_.now()); }

    // The thread (named `name`, cut to 15 characters): false if it could not be made (logged).
    bool start(const std::string& name);
    // Asks the loop to end and joins it (the plane's stop() has run when this returns).
    void stop();
    bool running() const noexcept { return running_; }

    // Stop on purpose (see the top of this file). Async-signal-safe: one lock-free atomic store.
    void request_stop() noexcept { stop_asked_.store(true, std::memory_order_relaxed); }
    // Runs once on this thread when the wind-down is over (set before start()).
    void set_on_stopped(std::function<void()> f) { on_stopped_ = std::move(f); }
    bool winding_down() const noexcept { return winding_; }
    bool wound_down() const noexcept { return wound_; }

    // The admin socket's turn in each pass (returns requests handled); set before start().
    void set_admin(std::function<unsigned(TimePoint)> f) { admin_ = std::move(f); }

    const dp::ControlCounters& counters() const noexcept { return ctl_; }
    std::uint64_t unclaimed() const noexcept { return unclaimed_; }   // freed: no plane

private:
    unsigned drain(dp::CtlClass c, unsigned max, std::uint64_t now_ms);
    void wind(TimePoint now, bool begin);
    void run();

    dp::ControlPort& port_;
    Plane* plane_;
    const Clock& clock_;
    std::function<unsigned(TimePoint)> admin_;
    std::function<void()> on_stopped_;
    dp::ControlCounters ctl_;
    std::uint64_t unclaimed_ = 0;
    std::atomic<bool> stop_{false};
    std::atomic<bool> stop_asked_{false};   // request_stop(): set from a signal handler
    static_assert(std::atomic<bool>::is_always_lock_free, "request_stop() must be async-signal-safe");
    bool winding_ = false, wound_ = false;
    TimePoint wind_from_{};
    pthread_t tid_{};
    bool running_ = false;
};

}  // namespace p3::control
