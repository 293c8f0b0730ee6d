// The control thread's report of resources at their bound: rings to the control thread full,
// workers' policers dropping, outer reassembly at its share of the buffers, the neighbour
// table or its hold queues full, the packet pool empty, a port losing frames, setup traffic
// waiting on the control thread. Workers only count (drops.def); this reads the counters at
// most once every kPressureLogMs and logs one line per kind of pressure that grew meanwhile,
// with its reason code and the counts. So a flood costs at most a few log lines a second,
// whatever its rate.
#pragma once

#include <array>
#include <cstdint>

#include "dataplane/ports.hpp"
#include "dataplane/stats.hpp"

namespace p3::dp {

class Dataplane;

class PressureLog {
public:
    explicit PressureLog(const Dataplane& dp) noexcept : dp_(dp) {}
    // Control thread, every pass; now_ms from a monotonic clock.
    void poll(std::uint64_t now_ms);

private:
    struct Snapshot {
        std::array<std::uint64_t, kDropCount> drops{};
        std::uint64_t setup_waited = 0, setup = 0, trusted = 0;
        std::uint64_t rx_nombuf[kSides] = {}, imissed[kSides] = {};
    };
    Snapshot take() const;

    const Dataplane& dp_;
    Snapshot last_{};
    std::uint64_t last_ms_ = 0;
    bool started_ = false;
};

}  // namespace p3::dp
