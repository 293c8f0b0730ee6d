// Token bucket on the TSC, one per lcore and purpose (ICMP errors, TCP resets): rate-limits
// what the dataplane sends on its own initiative (RFC 1812 §4.3.2.8, RFC 4443 §2.4(f)).
// Owned by one lcore: no locks, no atomics, no syscalls; the caller passes the current TSC
// (rte_rdtsc() once per burst is enough), which also lets tests step time by hand.
//
// The bucket holds credit in TSC cycles, not tokens, so no precision is lost for any rate up
// to the TSC frequency: each allowed packet costs cycles_per_token; credit grows with elapsed
// cycles and is capped at burst * cycles_per_token. A new bucket starts full.
#pragma once

#include <cstdint>

#include <rte_common.h>

namespace p3::dp {

inline constexpr std::uint32_t kDefaultReplyRate = 100;   // replies per second per lcore
inline constexpr std::uint32_t kDefaultReplyBurst = 50;

class alignas(RTE_CACHE_LINE_SIZE) TokenBucket {
public:
    TokenBucket() noexcept = default;
    // rate_per_s = 0 allows nothing; burst is at least 1 when rate > 0.
    TokenBucket(std::uint64_t tsc_hz, std::uint32_t rate_per_s, std::uint32_t burst, std::uint64_t now) noexcept {
        configure(tsc_hz, rate_per_s, burst, now);
    }

    void configure(std::uint64_t tsc_hz, std::uint32_t rate_per_s, std::uint32_t burst, std::uint64_t now) noexcept;

    // Takes one token if there is one. Time going backwards (another TSC domain) adds nothing.
    bool allow(std::uint64_t now) noexcept {
        refill(now);
        if (cost_ == 0 || credit_ < cost_) {
            ++denied_;
            return false;
        }
        credit_ -= cost_;
        ++allowed_;
        return true;
    }

    // Tokens available now (for tests and stats).
    std::uint64_t tokens(std::uint64_t now) noexcept {
        refill(now);
        return cost_ == 0 ? 0 : credit_ / cost_;
    }

    std::uint64_t allowed() const noexcept { return allowed_; }
    std::uint64_t denied() const noexcept { return denied_; }
    std::uint64_t cycles_per_token() const noexcept { return cost_; }

private:
    void refill(std::uint64_t now) noexcept {
        if (now > last_) {
            const std::uint64_t room = cap_ - credit_;
            const std::uint64_t add = now - last_;
            credit_ = add >= room ? cap_ : credit_ + add;
            last_ = now;
        }
    }

    std::uint64_t cost_ = 0;     // TSC cycles per token; 0 = nothing allowed
    std::uint64_t cap_ = 0;      // burst * cost_
    std::uint64_t credit_ = 0;   // cycles of credit, <= cap_
    std::uint64_t last_ = 0;     // TSC of the last refill
    std::uint64_t allowed_ = 0;
    std::uint64_t denied_ = 0;
};

}  // namespace p3::dp
