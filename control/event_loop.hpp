// The control thread's event loop: file descriptors watched with epoll, timers kept in a
// min-heap ordered by the injected Clock. One thread runs it; callbacks run on that thread
// and may add or cancel fds and timers (also their own) from inside a callback.
//
// Timers are one-shot (a periodic timer re-arms itself in its callback). run_once() waits
// for the earlier of the next timer and fd activity; with a ManualClock, tests call
// run_due() after ManualClock::advance() and never sleep.
//
// States of a timer: armed -> fired | cancelled. A cancelled or fired id is never reused.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <queue>
#include <unordered_map>
#include <vector>

#include "control/clock.hpp"

namespace p3::control {

struct TimerId {
    std::uint64_t v = 0;
    explicit operator bool() const noexcept { return v != 0; }
    bool operator==(const TimerId&) const = default;
};

class EventLoop {
public:
    using FdCallback = std::function<void(std::uint32_t epoll_events)>;
    using TimerCallback = std::function<void()>;

    explicit EventLoop(const Clock& clock);
    ~EventLoop();
    EventLoop(const EventLoop&) = delete;
    EventLoop& operator=(const EventLoop&) = delete;

    const Clock& clock() const noexcept { return clock_; }

    // Watches fd for events (EPOLLIN by default). Returns false if epoll refused it.
    bool add_fd(int fd, FdCallback cb, std::uint32_t events = 0x001 /* EPOLLIN */);
    void remove_fd(int fd);

    TimerId at(TimePoint when, TimerCallback cb);
    TimerId after(Duration d, TimerCallback cb) { return at(clock_.now() + d, std::move(cb)); }
    // True if the timer was armed (and is now cancelled).
    bool cancel(TimerId id);
    std::size_t timers_armed() const noexcept { return timers_.size(); }
    // The next deadline, if any timer is armed.
    bool next_deadline(TimePoint& out) const;

    // Runs every timer whose time has come (by the clock), in deadline order; timers a
    // callback arms for "now or earlier" run in the same call. Returns how many ran.
    std::size_t run_due();
    // Waits up to max_wait (less if a timer is due earlier) for fd events, dispatches
    // them, then runs due timers. Returns the number of callbacks run.
    std::size_t run_once(Duration max_wait);
    // Loops run_once until stop() (from a callback or another thread via a wake fd).
    void run();
    void stop() noexcept;

private:
    struct Entry {
        TimePoint when;
        std::uint64_t seq;  // arming order breaks ties: FIFO for equal deadlines
        bool operator>(const Entry& o) const noexcept {
            return when != o.when ? when > o.when : seq > o.seq;
        }
    };
    const Clock& clock_;
    int epfd_ = -1;
    int wakefd_ = -1;
    std::atomic<bool> stop_{false};
    std::uint64_t next_id_ = 1;
    std::priority_queue<Entry, std::vector<Entry>, std::greater<>> heap_;
    std::unordered_map<std::uint64_t, TimerCallback> timers_;  // id (== seq) -> callback
    std::map<int, std::shared_ptr<FdCallback>> fds_;
};

}  // namespace p3::control
