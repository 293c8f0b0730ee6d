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
// handoff_out / handoff_in: WAN packets of a P3 lane this worker does not own, put on the
// owner's handoff ring / taken from its own ring and opened (docs/dataplane.md §Lanes).
#define P3_LCORE_COUNTERS(X)                                                          \
    X(rx_lan_pkts) X(rx_lan_bytes) X(rx_wan_pkts) X(rx_wan_bytes)                     \
    X(tx_lan_pkts) X(tx_lan_bytes) X(tx_wan_pkts) X(tx_wan_bytes)                     \
    X(encrypted) X(decrypted) X(to_control) X(from_control)                           \
    X(arp_in) X(nd_in) X(echo_replies) X(icmp_errors) X(resets) X(fragments_out)      \
    X(reassembled) X(held) X(polls) X(busy_polls) X(idle_sleeps) X(rx_next_retries)     \
    X(handoff_out) X(handoff_in)

struct alignas(RTE_CACHE_LINE_SIZE) LcoreStats {
#define P3_X(name) Counter name;
    P3_LCORE_COUNTERS(P3_X)
#undef P3_X
    Counter drops[kDropCount];

    void drop(Drop d, std::uint64_t n = 1) noexcept { drops[static_cast<unsigned>(d)].add(n); }
};

// Per session, per lcore (single writer each); the session's totals are the sum over lcores.
// tx/rx bytes are inner (clear) bytes. The drops are also counted by reason per lcore; these
// say which session they hit:
//   rx_auth     tag did not verify (p3_auth)
//   rx_replay   replayed or left of the window (p3_replay)
//   rx_old_key  below the switch point of the lane's current key (p3_old_key)
//   rx_policy   inner source not in the session's subnets, or inner destination not in ours
//               (p3_inner_src, p3_inner_dst)
//   rx_dropped  the rest after the slot was found: bad inner packet, wrong outer peer, ...
//   tx_down     routed to the session while it has no keys: answered with RST/unreachable
//               (session_down)
//   tx_dropped  the rest on the way out: no key for the lane, too big, no room, crypto
// Each session's counters sit on their own two cache lines of the lcore's array: the four
// counted per packet run on the first, the drops (touched only when a packet is dropped) on
// the second.
struct alignas(RTE_CACHE_LINE_SIZE) SessionCounters {
    Counter tx_pkts, tx_bytes, rx_pkts, rx_bytes;
    alignas(RTE_CACHE_LINE_SIZE) Counter tx_dropped;   // (alignas binds one declarator only)
    Counter rx_auth, rx_replay, rx_dropped, rx_old_key, rx_policy, tx_down;
};
static_assert(alignof(SessionCounters) == RTE_CACHE_LINE_SIZE);
static_assert(sizeof(SessionCounters) == 2 * RTE_CACHE_LINE_SIZE);

}  // namespace p3::dp
