// How many events happened over the last window (a second), in constant memory: the count of
// the current window plus the previous window's, weighted by how much of it still overlaps
// (the sliding-window estimate rate limiters use). No per-event state, so a flood costs
// nothing here but an add.
#pragma once

#include <cstdint>

#include "control/clock.hpp"

namespace p3::setup {

class RateWindow {
public:
    explicit RateWindow(control::Duration window) : window_(window) {}

    void add(control::TimePoint now) noexcept {
        roll(now);
        ++cur_;
    }
    // Estimated events in the window that ends now.
    std::uint64_t rate(control::TimePoint now) const noexcept {
        std::uint64_t cur = cur_, prev = prev_;
        control::TimePoint start = start_;
        if (now - start >= 2 * window_) return 0;
        if (now - start >= window_) {
            prev = cur;
            cur = 0;
            start += window_;
        }
        const auto into = now - start;  // [0, window)
        const double overlap = 1.0 - double(into.count()) / double(window_.count());
        return cur + std::uint64_t(double(prev) * overlap);
    }

private:
    void roll(control::TimePoint now) noexcept {
        if (now - start_ < window_) return;
        if (now - start_ < 2 * window_) {
            prev_ = cur_;
            start_ += window_;
        } else {
            prev_ = 0;
            start_ = now;
        }
        cur_ = 0;
    }
    control::Duration window_;
    control::TimePoint start_{};
    std::uint64_t cur_ = 0, prev_ = 0;
};

}  // namespace p3::setup
