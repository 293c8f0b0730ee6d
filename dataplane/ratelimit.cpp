// Token bucket set-up (the per-packet part is inline in ratelimit.hpp).
#include "dataplane/ratelimit.hpp"

#include <algorithm>

namespace p3::dp {

void TokenBucket::configure(std::uint64_t tsc_hz, std::uint32_t rate_per_s, std::uint32_t burst,
                            std::uint64_t now) noexcept {
    last_ = now;
    if (rate_per_s == 0 || tsc_hz == 0) {
        cost_ = cap_ = credit_ = 0;
        return;
    }
    cost_ = std::max<std::uint64_t>(1, tsc_hz / rate_per_s);
    const std::uint64_t b = std::max<std::uint32_t>(1, burst);
    // Cap the credit so burst * cost cannot overflow (2^64 cycles is centuries anyway).
    cap_ = b > UINT64_MAX / cost_ ? UINT64_MAX : b * cost_;
    credit_ = cap_;
}

}  // namespace p3::dp
