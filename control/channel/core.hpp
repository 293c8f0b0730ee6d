// What every unit of one session's control channel shares (session.hpp lists the units): the
// session's configuration and plumbing (event loop, dataplane, random and key sources), its
// state, counters and observer, its lane counts, and the three ways a unit reaches back into
// the session: lose it, queue an exchange (primary), end the exchange in flight.
//
// An exchange (Work) is a rekey, an array delivery or an array flush; the primary runs one at
// a time in queue order (session.cpp keeps the queue and its crossing rule).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>

#include "common/log.hpp"
#include "common/secret.hpp"
#include "control/channel/interfaces.hpp"
#include "control/channel/limits.hpp"
#include "control/channel/types.hpp"
#include "control/event_loop.hpp"

namespace p3::channel {

using control::EventLoop;
using control::Random;
using control::TimerId;

struct Work {
    enum class Kind { rekey, deliver, flush } kind;
    RekeyTrigger trigger = RekeyTrigger::timer;
    std::uint8_t kinds = 0;
    bool with_new = false;
};

// The session as its units see it (Session implements it).
class SessionOps {
public:
    virtual void lose(Reason why) = 0;
    virtual void queue(Work w) = 0;        // primary: a new exchange (joins one like it)
    virtual void finish_work(Work::Kind k) = 0;  // the exchange of this kind in flight is over
    // A delivery waits between two chunks: a queued rekey may run meanwhile (session.cpp).
    virtual void delivery_paused() = 0;
    virtual bool rekey_beside() const = 0;       // a rekey runs beside a paused delivery
protected:
    ~SessionOps() = default;
};

class Timers;

struct SessionCore {
    EventLoop& loop;
    const SessionConfig& cfg;
    KeyInstaller& installer;
    Random& rng;
    KeySource& keys;
    SessionState& state;
    SessionStats& stats;
    const std::function<void(const Event&)>& observer;
    Timers& timers;
    SessionOps& ops;
    std::uint32_t local_lanes = 1, peer_lanes = 1;

    bool primary() const noexcept { return cfg.role == config::Role::primary; }
    bool up() const noexcept { return state == SessionState::up; }
    // Control messages go out while up and, for the goodbye and its answers, while closing.
    bool sending() const noexcept { return state == SessionState::up || state == SessionState::closing; }
    const char* name() const noexcept { return cfg.name.c_str(); }
    std::size_t key_len() const noexcept {
        return cfg.params.key_type == config::KeyType::aes256 ? limits::kAes256KeyLen : limits::kAes128KeyLen;
    }
    TimePoint now() const { return loop.clock().now(); }
    void emit(Event e) const {
        if (observer) observer(e);
    }
    // A draw from U(lo, hi) off the session's Random; the midpoint when jitter is off or the
    // source failed (a timer then fires at its nominal time rather than not at all).
    double uniform(double lo, double hi) const {
        std::uint8_t b[4];
        if (!cfg.jitter || !rng.fill(b)) return (lo + hi) / 2;
        const std::uint32_t x = (std::uint32_t(b[0]) << 24) | (std::uint32_t(b[1]) << 16) | (std::uint32_t(b[2]) << 8) | b[3];
        return lo + (hi - lo) * (double(x) / 4294967296.0);
    }
    // d x factor, in the loop's duration.
    static Duration scaled(Duration d, double factor) {
        return Duration(static_cast<Duration::rep>(double(d.count()) * factor));
    }
};

// Small helpers of the units (kept out of p3::channel, where the tests bring their own).
namespace detail {

// Scratch buffers for plaintext that may hold keys: wiped when they go out of scope.
template <std::size_t N>
struct WipedBuf {
    std::uint8_t b[N];
    ~WipedBuf() { secure_wipe(b, N); }
};

inline long secs(Duration d) {
    return static_cast<long>(std::chrono::duration_cast<std::chrono::seconds>(d).count());
}
inline const char* trigger_name(RekeyTrigger t) {
    switch (t) {
    case RekeyTrigger::timer: return "timer";
    case RekeyTrigger::admin: return "administrator";
    case RekeyTrigger::packet_limit: return "packet limit";
    case RekeyTrigger::peer_ask: return "secondary's request";
    }
    return "?";
}
inline const char* kind_name(ArrayKind k) { return k == ArrayKind::data ? "data" : "control"; }
inline std::uint8_t kind_bit(ArrayKind k) { return k == ArrayKind::data ? kFlushData : kFlushControl; }
inline std::size_t kind_slot(ArrayKind k) { return k == ArrayKind::data ? 0 : 1; }

}  // namespace detail

}  // namespace p3::channel
