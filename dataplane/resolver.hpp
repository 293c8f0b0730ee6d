// Neighbour resolution, on the control thread: answers ARP requests and IPv6 neighbour
// solicitations for our own addresses, learns from replies (and from requests aimed at us),
// sends requests for unresolved next hops with retries, and holds a few packets per next hop
// until it answers.
//
// Per next hop: idle -> resolving (entry in the NeighborTable without a MAC, request sent, up
// to kHoldPerNeighbor frames held, retried every kResolveIntervalMs, kResolveRetries times)
// -> resolved (MAC published in the NeighborTable that workers read; held frames sent) or
// failed (held frames dropped and counted; the table entry erased; new packets dropped for
// kResolveHoldoffMs, then resolving again).
//
// Bounds (traffic to on-link addresses that never answer is cheap to send, through the tunnel
// too): at most kMaxPendingNeighbors next hops resolving or held off per side (a held-off one
// gives way to a new one), kMaxHeldFrames frames held per side; entries are created only for
// next hops we ask for — an ARP/ND packet updates an entry that exists and creates none, so
// nobody on the link fills the table with addresses of their choosing. Failures are logged
// once a second at most, with the count of those not logged.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <vector>

#include <rte_ether.h>
#include <rte_mbuf.h>

#include "common/net.hpp"
#include "dataplane/ports.hpp"
#include "dataplane/stats.hpp"

namespace p3::dp {

class Dataplane;

class Resolver {
public:
    explicit Resolver(Dataplane& dp) : dp_(dp) {}
    ~Resolver();

    // Installs a static neighbour (gateway_mac): resolved for good, never asked for.
    void set_static(Side side, const IpAddr& ip, const rte_ether_addr& mac);
    void on_arp(Side side, rte_mbuf* m, std::uint64_t now_ms);
    void on_nd(Side side, rte_mbuf* m, std::uint64_t now_ms);
    void on_hold(Side side, rte_mbuf* m, std::uint64_t now_ms);
    void poll(std::uint64_t now_ms);
    LcoreStats& stats() noexcept { return stats_; }
    const LcoreStats& stats() const noexcept { return stats_; }

    // Frame builders (also used by tests as the reference of what goes on the wire).
    static rte_mbuf* build_arp_request(rte_mempool* mp, const rte_ether_addr& src_mac, const IpAddr& src_ip,
                                       const IpAddr& target);
    static rte_mbuf* build_ns(rte_mempool* mp, const rte_ether_addr& src_mac, const IpAddr& src_ip,
                              const IpAddr& target);

private:
    struct Pending {
        std::vector<rte_mbuf*> held;
        unsigned retries = 0;
        std::uint64_t last_request_ms = 0;
        std::uint64_t failed_until_ms = 0;
        bool resolving = false;
    };
    void learn(Side side, const IpAddr& ip, const rte_ether_addr& mac);
    // A frame (meta set) to the workers for TX; counted and freed when their ring is full.
    void transmit(rte_mbuf* m);
    void request(Side side, const IpAddr& ip);
    void fail(Side side, const IpAddr& ip, Pending& p, std::uint64_t now_ms);
    void drop_held(Side side, Pending& p, Drop why);
    // The pending state of a new next hop, or nullptr when all kMaxPendingNeighbors are busy.
    Pending* make_pending(Side side, const IpAddr& nh);

    Dataplane& dp_;
    std::map<IpAddr, Pending> pending_[kSides];
    unsigned held_[kSides] = {};           // frames held over all next hops of a side
    std::uint64_t fail_log_ms_ = 0;        // when a failure was last logged
    bool fail_logged_ = false;
    unsigned fail_unlogged_ = 0;           // failures since, not logged
    LcoreStats stats_;

public:
    unsigned held(Side side) const noexcept { return held_[static_cast<unsigned>(side)]; }
    std::size_t pending(Side side) const noexcept { return pending_[static_cast<unsigned>(side)].size(); }
};

}  // namespace p3::dp
