// Event loop of the control thread: epoll + a timer heap on the injected clock.
// Cancelled timers stay in the heap as tombstones (their id is gone from timers_) and are
// skipped when they reach the top: cancel is O(1), the heap never needs a search.
#include "control/event_loop.hpp"

#include <openssl/rand.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <climits>

namespace p3::control {

bool SystemRandom::fill(std::span<std::uint8_t> out) noexcept {
    if (out.empty()) return true;
    return out.size() <= INT_MAX && RAND_bytes(out.data(), static_cast<int>(out.size())) == 1;
}

EventLoop::EventLoop(const Clock& clock) : clock_(clock) {
    epfd_ = epoll_create1(EPOLL_CLOEXEC);
    wakefd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (epfd_ >= 0 && wakefd_ >= 0) {
        epoll_event ev{};
        ev.events = EPOLLIN;
        ev.data.fd = wakefd_;
        epoll_ctl(epfd_, EPOLL_CTL_ADD, wakefd_, &ev);
    }
}

EventLoop::~EventLoop() {
    if (wakefd_ >= 0) close(wakefd_);
    if (epfd_ >= 0) close(epfd_);
}

bool EventLoop::add_fd(int fd, FdCallback cb, std::uint32_t events) {
    if (epfd_ < 0 || fd < 0) return false;
    epoll_event ev{};
    ev.events = events;
    ev.data.fd = fd;
    const bool known = fds_.count(fd) != 0;
    if (epoll_ctl(epfd_, known ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, fd, &ev) != 0) return false;
    fds_[fd] = std::make_shared<FdCallback>(std::move(cb));
    return true;
}

void EventLoop::remove_fd(int fd) {
    if (fds_.erase(fd) != 0 && epfd_ >= 0) epoll_ctl(epfd_, EPOLL_CTL_DEL, fd, nullptr);
}

TimerId EventLoop::at(TimePoint when, TimerCallback cb) {
    const std::uint64_t id = next_id_++;
    heap_.push(Entry{when, id});
    timers_.emplace(id, std::move(cb));
    return TimerId{id};
}

bool EventLoop::cancel(TimerId id) { return timers_.erase(id.v) != 0; }

bool EventLoop::next_deadline(TimePoint& out) const {
    // The top may be a tombstone; that only makes us wake early, never late.
    if (timers_.empty() || heap_.empty()) return false;
    out = heap_.top().when;
    return true;
}

std::size_t EventLoop::run_due() {
    std::size_t ran = 0;
    while (!heap_.empty()) {
        const Entry top = heap_.top();
        auto it = timers_.find(top.seq);
        if (it == timers_.end()) {  // cancelled
            heap_.pop();
            continue;
        }
        if (top.when > clock_.now()) break;
        heap_.pop();
        TimerCallback cb = std::move(it->second);
        timers_.erase(it);
        cb();
        ++ran;
    }
    // Drop tombstones left when everything was cancelled.
    if (timers_.empty()) heap_ = {};
    return ran;
}

std::size_t EventLoop::run_once(Duration max_wait) {
    TimePoint next;
    Duration wait = max_wait;
    if (next_deadline(next)) wait = std::min(wait, std::max(Duration::zero(), next - clock_.now()));
    int timeout_ms = static_cast<int>(
        std::chrono::duration_cast<std::chrono::milliseconds>(wait + std::chrono::microseconds(999)).count());
    std::size_t ran = 0;
    epoll_event evs[32];
    const int n = epfd_ >= 0 ? epoll_wait(epfd_, evs, 32, timeout_ms) : 0;
    for (int i = 0; i < n; ++i) {
        const int fd = evs[i].data.fd;
        if (fd == wakefd_) {
            std::uint64_t v;
            [[maybe_unused]] auto r = read(wakefd_, &v, sizeof v);
            continue;
        }
        auto it = fds_.find(fd);
        if (it == fds_.end()) continue;  // removed by an earlier callback of this batch
        auto cb = it->second;            // keeps the callback alive if it removes itself
        (*cb)(evs[i].events);
        ++ran;
    }
    return ran + run_due();
}

void EventLoop::run() {
    stop_ = false;
    while (!stop_) run_once(std::chrono::seconds(1));
}

void EventLoop::stop() noexcept {
    stop_ = true;
    if (wakefd_ >= 0) {
        std::uint64_t one = 1;
        [[maybe_unused]] auto r = write(wakefd_, &one, sizeof one);
    }
}

}  // namespace p3::control
