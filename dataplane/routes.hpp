// Routing from remote subnets to sessions: the LAN-side lookup of every outbound packet.
//
// IPv4: one rte_lpm whose freed tbl8 groups are reclaimed through the dataplane's RCU
// (rte_lpm_rcu_qsbr_add), so routes change while workers look up, without a pause.
// IPv6: rte_lpm6 has no RCU hook in DPDK 22.11, so two copies are kept: the writer changes
// the idle copy, publishes it with one atomic store, waits for every worker's quiescent
// state, then applies the same change to the other copy. Readers see either the old or the
// new table, each consistent.
//
// Next hop = SessionId (1..kMaxSessions-1); 0 = no route. One writer: the control thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <span>

#include <rte_lpm.h>
#include <rte_lpm6.h>
#include <rte_rcu_qsbr.h>

#include "common/net.hpp"

namespace p3::dp {

class RouteTable {
public:
    RouteTable() = default;
    ~RouteTable();
    RouteTable(const RouteTable&) = delete;
    RouteTable& operator=(const RouteTable&) = delete;

    // name: unique per dataplane (DPDK object names are process-wide).
    bool create(const char* name, rte_rcu_qsbr* qsbr);

    // Writer side. Replacing the next hop of an existing prefix is an add.
    bool add(const Prefix& p, std::uint32_t session);
    bool remove(const Prefix& p);
    // Many at once (start-up, a config change): one RCU wait for IPv6 instead of one per route.
    // add_many: all or nothing for prefixes not in the table before (a failure takes them back;
    // callers add only those: set_subnets). remove_many: every one it can, false if any failed.
    bool add_many(std::span<const Prefix> prefixes, std::uint32_t session);
    bool remove_many(std::span<const Prefix> prefixes);
    // The session an exact prefix routes to (not a longest match); 0 = not in the table.
    // Writer side only.
    std::uint32_t owner(const Prefix& p) const noexcept;
    // The process is about to exit: the tables are left to it instead of freed. DPDK zeroes
    // memory it frees, which touches every untouched page of the LPM tables (about 350 MB
    // here) and made a stopping p3d take seconds. Nothing may use the table afterwards.
    void abandon() noexcept { v4_ = nullptr, v6_[0] = v6_[1] = nullptr, v6_active_.store(nullptr); }
    std::uint32_t routes4() const noexcept { return n4_; }
    std::uint32_t routes6() const noexcept { return n6_; }

    // Reader side (workers). 0 = no route.
    std::uint32_t lookup4(std::uint32_t dst_host_order) const noexcept {
        std::uint32_t nh = 0;
        return rte_lpm_lookup(v4_, dst_host_order, &nh) == 0 ? nh : 0;
    }
    std::uint32_t lookup6(const std::uint8_t* dst) const noexcept {
        std::uint32_t nh = 0;
        rte_lpm6* t = v6_active_.load(std::memory_order_acquire);
        return rte_lpm6_lookup(t, dst, &nh) == 0 ? nh : 0;
    }

private:
    bool apply6(const Prefix* p, std::size_t n, std::uint32_t session, bool add);

    rte_lpm* v4_ = nullptr;
    rte_lpm6* v6_[2] = {nullptr, nullptr};
    std::atomic<rte_lpm6*> v6_active_{nullptr};
    rte_rcu_qsbr* qsbr_ = nullptr;
    std::uint32_t n4_ = 0, n6_ = 0;
};

}  // namespace p3::dp
