// Neighbour resolution, on the control thread: answers ARP requests and IPv6 neighbour
// solicitations for our own addresses, learns from replies (and from requests aimed at us),
// sends requests for unresolved next hops with retries, and holds packets per next hop until
// it answers.
//
// Per next hop: idle -> resolving (entry in the NeighborTable without a MAC, request sent, up
// to kHoldPerNeighbor frames held, retried every kResolveIntervalMs, kResolveRetries times)
// -> resolved (MAC published in the NeighborTable that workers read; held frames sent) or
// failed (held frames dropped and counted; the table entry erased; new packets dropped for
// kResolveHoldoffMs, then resolving again).
//
// A configured next hop (a side's gateway without gateway_mac) has states of its own, as
// Linux's NUD: incomplete (no MAC; broadcast requests from the first pass on, before any
// packet; frames held) -> reachable (an answer, good for kReachableMs) -> probe (the last
// kRefreshLeadMs: unicast requests to the MAC it has, which stays in use) -> reachable again
// on an answer, or at expiry incomplete (the MAC withdrawn: its frames are held, never sent
// to a stale MAC; P3-W0347). A round of kResolveRetries broadcasts unanswered -> failed (held
// frames dropped; P3-W0346 once until it answers): asked again after a back-off doubling from
// kResolveHoldoffMs to kGatewayBackoffMaxMs, or at once by a frame for it (held). Never erased.
//
// Bounds (traffic to on-link addresses that never answer is cheap to send, through the tunnel
// too): at most kMaxPendingNeighbors next hops resolving or held off per side (a held-off one
// gives way to a new one; the configured ones come on top), held_per_side(pool) frames held
// per side; entries are created only for next hops we ask for — an ARP/ND packet updates an
// entry that exists and creates none, so nobody on the link fills the table with addresses of
// their choosing. Failures are logged once a second at most, with the count of those not logged.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <vector>

#include <rte_ether.h>
#include <rte_mbuf.h>

#include "common/net.hpp"
#include "dataplane/limits.hpp"
#include "dataplane/ports.hpp"
#include "dataplane/stats.hpp"

namespace p3::dp {

class Dataplane;

class Resolver {
public:
    // held_bound: frames held per side (held_per_side of the pool).
    Resolver(Dataplane& dp, unsigned held_bound)
        : dp_(dp), held_bound_(held_bound), hold_per_hop_(held_bound < kHoldPerNeighbor ? held_bound : kHoldPerNeighbor) {}
    ~Resolver();

    // Installs a static neighbour (gateway_mac): resolved for good, never asked for.
    void set_static(Side side, const IpAddr& ip, const rte_ether_addr& mac);
    // A configured next hop to resolve from the first poll on and keep fresh (false: not on
    // the side's link or family, or the table is full).
    bool add_configured(Side side, const IpAddr& ip);
    void on_arp(Side side, rte_mbuf* m, std::uint64_t now_ms);
    void on_nd(Side side, rte_mbuf* m, std::uint64_t now_ms);
    void on_hold(Side side, rte_mbuf* m, std::uint64_t now_ms);
    void poll(std::uint64_t now_ms);
    // Cluster (docs/cluster.md §Realserver mode). answer false: requests for our address on
    // that side are not answered (a director owns the VIP, or this member is a backup), and
    // our own requests carry no sender address (0.0.0.0, RFC 5227's probe; IPv6: the
    // unspecified source), so no neighbour learns the VIP at this member's MAC.
    void set_answer(Side side, bool answer) noexcept { answer_[static_cast<unsigned>(side)] = answer; }
    bool answering(Side side) const noexcept { return answer_[static_cast<unsigned>(side)]; }
    // Announces our address on that side from the next poll on: kAnnounceCount gratuitous ARP
    // requests (IPv4) or unsolicited neighbour advertisements (IPv6, Override set),
    // kAnnounceIntervalMs apart, as keepalived does for a VRRP address it takes.
    void announce(Side side) noexcept;
    // Next hops that failed to answer are asked again at the next poll, their back-off over
    // (a failover member just promoted: as a backup it asked from 0.0.0.0, which a peer may
    // not answer, and the sessions it takes over must reach their peers now).
    void retry_now(Side side) noexcept;
    static constexpr unsigned kAnnounceCount = 3;
    static constexpr std::uint64_t kAnnounceIntervalMs = 1000;
    std::uint64_t announced() const noexcept { return announced_; }
    LcoreStats& stats() noexcept { return stats_; }
    const LcoreStats& stats() const noexcept { return stats_; }

    // Frame builders (also used by tests as the reference of what goes on the wire).
    // dst: the MAC of a unicast request (a refresh), nullptr for broadcast / multicast.
    static rte_mbuf* build_arp_request(rte_mempool* mp, const rte_ether_addr& src_mac, const IpAddr& src_ip,
                                       const IpAddr& target, const rte_ether_addr* dst = nullptr);
    static rte_mbuf* build_ns(rte_mempool* mp, const rte_ether_addr& src_mac, const IpAddr& src_ip,
                              const IpAddr& target, const rte_ether_addr* dst = nullptr);

private:
    struct Pending {
        std::vector<rte_mbuf*> held;
        unsigned retries = 0;
        std::uint64_t last_request_ms = 0;
        std::uint64_t failed_until_ms = 0;
        bool resolving = false;
    };
    enum class Nud : std::uint8_t { incomplete, reachable, probe, failed };
    struct Configured {
        IpAddr ip;
        Nud state = Nud::incomplete;
        unsigned sent = 0;              // requests of the current round
        std::uint64_t next_ms = 0;      // next step (request, probe, expiry check); 0 = first poll
        std::uint64_t expires_ms = 0;   // reachable / probe: the MAC is good until then
        std::uint64_t backoff_ms = 0;   // failed: the wait before the next round
        std::uint64_t lost_ms = 0;      // when it was withdrawn or found silent (lost)
        bool lost = false;              // withdrawn or silent since it last answered
        bool warned = false;            // a silent round already logged (until it answers)
        rte_ether_addr mac{};
    };
    void learn(Side side, const IpAddr& ip, const rte_ether_addr& mac, std::uint64_t now_ms);
    // A frame (meta set) to the workers for TX; counted and freed when their ring is full.
    void transmit(rte_mbuf* m);
    void request(Side side, const IpAddr& ip, const rte_ether_addr* dst = nullptr);
    Configured* configured(Side side, const IpAddr& ip);
    void step(Side side, Configured& c, std::uint64_t now_ms);   // the configured next hop's timers
    void answered(Side side, Configured& c, const rte_ether_addr& mac, std::uint64_t now_ms);
    // Holds m for nh (pd its pending state) within both bounds, else drops it counted.
    void hold(Side side, Pending& pd, rte_mbuf* m);
    void fail(Side side, const IpAddr& ip, Pending& p, std::uint64_t now_ms);
    void drop_held(Side side, Pending& p, Drop why);
    // The pending state of a new next hop, or nullptr when all kMaxPendingNeighbors are busy.
    Pending* make_pending(Side side, const IpAddr& nh);

    void send_announce(Side side);

    Dataplane& dp_;
    bool answer_[kSides] = {true, true};
    unsigned announce_left_[kSides] = {};
    std::uint64_t announce_next_ms_[kSides] = {};
    std::uint64_t announced_ = 0;          // announcements sent (frames)
    std::map<IpAddr, Pending> pending_[kSides];
    std::vector<Configured> configured_[kSides];
    const unsigned held_bound_;            // frames held per side
    const unsigned hold_per_hop_;          // frames held per next hop
    unsigned held_[kSides] = {};           // frames held over all next hops of a side
    std::uint64_t fail_log_ms_ = 0;        // when a failure was last logged
    bool fail_logged_ = false;
    unsigned fail_unlogged_ = 0;           // failures since, not logged
    LcoreStats stats_;

public:
    unsigned held(Side side) const noexcept { return held_[static_cast<unsigned>(side)]; }
    std::size_t pending(Side side) const noexcept { return pending_[static_cast<unsigned>(side)].size(); }
    unsigned held_bound() const noexcept { return held_bound_; }
    unsigned hold_per_hop() const noexcept { return hold_per_hop_; }
};

}  // namespace p3::dp
