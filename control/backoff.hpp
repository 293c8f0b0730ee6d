// The one back-off rule of the control plane (DESIGN.md §Session life 5, functional spec
// §2.1.7): a secondary that cannot reach its primary waits 5 s before the next setup attempt,
// 5 s more for every consecutive failure, never more than 60 s. Both places that retry a setup
// exchange use it: the setup control plane before a session was ever up, and the control
// channel's recovery after it was lost.
#pragma once

#include <chrono>

#include "control/clock.hpp"

namespace p3::control {

struct Backoff {
    static constexpr std::chrono::seconds first{5};
    static constexpr std::chrono::seconds step{5};
    static constexpr std::chrono::seconds max{60};

    // The wait before the next attempt after `failures` consecutive failed attempts (0: the
    // first retry).
    static constexpr Duration after(unsigned failures) noexcept {
        const Duration d = first + step * failures;
        return d > Duration(max) ? Duration(max) : d;
    }
};

static_assert(Backoff::after(0) == std::chrono::seconds(5));
static_assert(Backoff::after(11) == std::chrono::seconds(60));
static_assert(Backoff::after(100) == std::chrono::seconds(60));

}  // namespace p3::control
