// Sessions as the workers see them: one fixed slot per session id (1..kMaxSessions-1),
// O(1) by the id the routing table returns. A session says where its packets go (the peer's
// WAN address, native or UDP-encapsulated) and whether it is up; its keys are the lane
// slots of keys.cpp (one outbound slot per sending lcore). The control thread is the only
// writer; a field a worker reads is either immutable while the session is in use or an
// atomic published with release order.
//
// State: unused -> down (installed, routes in place, no keys: traffic is answered with
// RST/unreachable) -> up (keys published) -> down -> ... -> unused (routes removed first).
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include <rte_common.h>

#include "common/net.hpp"
#include "dataplane/limits.hpp"

namespace p3::dp {

enum class SessionState : std::uint8_t { unused = 0, down = 1, up = 2 };

struct alignas(RTE_CACHE_LINE_SIZE) Session {
    std::atomic<SessionState> state{SessionState::unused};
    bool udp_encap = false;              // P3 inside UDP (NAT traversal)
    std::uint16_t udp_src = 0, udp_dst = 0;
    std::uint32_t id = 0;                // remote id from the configuration
    std::uint16_t tx_lanes = 0;          // lanes we send on (workers read it per run, relaxed)
    std::uint16_t tx_lane_offset = 0;    // the session lane our TX lane 0 is (a cluster member's)
    // Standard ESP (an outbound ESP SA was installed; set before the session goes up, and
    // kept while it lives): what status shows. Workers do not read it: a slot's kind tells.
    bool esp = false;
    IpAddr peer;                         // outer destination
};

// What the administration side knows about a session. Control thread only: the workers never
// read it, and every other thread sees it through the published sessions view (control_port.hpp).
struct SessionInfo {
    std::uint32_t remote_id = 0;
    std::vector<std::string> groups;
    std::vector<Prefix> subnets;
    bool static_keys = false;
    std::uint64_t peer_moves = 0;        // moves of a UDP-encapsulated peer applied (NAT rebinding)
    IpAddr moved_from;                   // where the last move came from, and when
    std::uint16_t moved_from_port = 0;
    std::uint64_t moved_at_ms = 0;
};

// A session's counters summed over lcores (stats.hpp SessionCounters says what each means).
struct SessionTotals {
    std::uint64_t tx_pkts = 0, tx_bytes = 0, rx_pkts = 0, rx_bytes = 0;
    std::uint64_t tx_dropped = 0, rx_auth = 0, rx_replay = 0, rx_dropped = 0;
    std::uint64_t rx_old_key = 0, rx_policy = 0, tx_down = 0;
};

class SessionTable {
public:
    SessionTable() : sessions_(kMaxSessions), info_(kMaxSessions) {}

    const Session& get(std::uint32_t sid) const noexcept { return sessions_[sid < kMaxSessions ? sid : 0]; }
    Session& at(std::uint32_t sid) noexcept { return sessions_[sid]; }
    SessionInfo& info(std::uint32_t sid) noexcept { return info_[sid]; }
    const SessionInfo& info(std::uint32_t sid) const noexcept { return info_[sid]; }

    // Session ids are the remotes' ids when they fit and are free, so logs, telemetry and
    // p3ctl agree (Dataplane::add_remote); an id is free again only after the grace period that
    // follows its removal (its slots reclaimed, its counters zeroed).
    static bool valid_id(std::uint32_t sid) noexcept { return sid > 0 && sid < kMaxSessions; }
    void set_state(std::uint32_t sid, SessionState s) noexcept { sessions_[sid].state.store(s, std::memory_order_release); }
    SessionState state(std::uint32_t sid) const noexcept { return get(sid).state.load(std::memory_order_acquire); }

    // Ids in use (control thread).
    std::vector<std::uint32_t> ids() const {
        std::vector<std::uint32_t> v;
        for (std::uint32_t i = 1; i < kMaxSessions; ++i)
            if (sessions_[i].state.load(std::memory_order_relaxed) != SessionState::unused) v.push_back(i);
        return v;
    }

private:
    std::vector<Session> sessions_;   // index 0: never used (the "no route" value)
    std::vector<SessionInfo> info_;
};

}  // namespace p3::dp
