// Anti-replay window (replay.hpp): everything but the names is inline, on the packet path.
#include "common/replay.hpp"

namespace p3::wire {

const char* replay_result_name(ReplayResult r) noexcept {
    switch (r) {
        case ReplayResult::ok: return "ok";
        case ReplayResult::zero: return "zero";
        case ReplayResult::too_old: return "too_old";
        case ReplayResult::duplicate: return "duplicate";
    }
    return "?";
}

}  // namespace p3::wire
