// Counters of the dataplane. Every counter has exactly one writer (the lcore that owns it),
// so an increment is a relaxed load + store (a plain add on x86), never a locked RMW; readers
// (telemetry, tests, the control thread) sum over lcores with relaxed loads.
//
// Drop reasons are one X-macro list (drops.def): adding a reason is one line there.
#pragma once

#include <atomic>
#include <cstdint>
#include <string_view>

#include <rte_common.h>

namespace p3::dp {

enum class Drop : std::uint16_t {
#define P3_DROP(ident, name, meaning) ident,
#include "dataplane/drops.def"
#undef P3_DROP
};
inline constexpr unsigned kDropCount = 0
#define P3_DROP(ident, name, meaning) +1
#include "dataplane/drops.def"
#undef P3_DROP
    ;

struct DropInfo {
    Drop drop;
    std::string_view name;
    std::string_view meaning;
};
inline constexpr DropInfo kDrops[kDropCount] = {
#define P3_DROP(ident, name, meaning) {Drop::ident, name, meaning},
#include "dataplane/drops.def"
#undef P3_DROP
};

class Counter {
public:
    void add(std::uint64_t n = 1) noexcept { v_.store(v_.load(std::memory_order_relaxed) + n, std::memory_order_relaxed); }
    std::uint64_t get() const noexcept { return v_.load(std::memory_order_relaxed); }
    void reset() noexcept { v_.store(0, std::memory_order_relaxed); }

private:
    std::atomic<std::uint64_t> v_{0};
};

// The named counters of one lcore (besides drops). X-macro so telemetry and docs list them.
// rx_next_retries: packets opened a second time, under a lane's pending next key, after their
// tag failed under the current one (at most one per packet, only while the switch point is
// neither announced nor learned).
#define P3_LCORE_COUNTERS(X)                                                          \
    X(rx_lan_pkts) X(rx_lan_bytes) X(rx_wan_pkts) X(rx_wan_bytes)                     \
    X(tx_lan_pkts) X(tx_lan_bytes) X(tx_wan_pkts) X(tx_wan_bytes)                     \
    X(encrypted) X(decrypted) X(to_control) X(from_control)                           \
    X(arp_in) X(nd_in) X(echo_replies) X(icmp_errors) X(resets) X(fragments_out)      \
    X(reassembled) X(held) X(polls) X(busy_polls) X(idle_sleeps) X(rx_next_retries)

struct alignas(RTE_CACHE_LINE_SIZE) LcoreStats {
#define P3_X(name) Counter name;
    P3_LCORE_COUNTERS(P3_X)
#undef P3_X
    Counter drops[kDropCount];

    void drop(Drop d, std::uint64_t n = 1) noexcept { drops[static_cast<unsigned>(d)].add(n); }
};

// Per session, per lcore (single writer each); the session's totals are the sum over lcores.
// tx/rx bytes are inner (clear) bytes. The drops are also counted by reason per lcore; these
// say which session they hit: tx_dropped (no key for the lane, too big, no room),
// rx_auth (tag did not verify), rx_replay (replayed or too old), rx_dropped (anything else
// after the slot was found: bad inner packet, inner source outside the session's subnets).
struct SessionCounters {
    Counter tx_pkts, tx_bytes, rx_pkts, rx_bytes;
    Counter tx_dropped, rx_auth, rx_replay, rx_dropped;
};

}  // namespace p3::dp
