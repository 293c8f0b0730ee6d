// Realserver mode (docs/cluster.md): several appliances share the WAN address (the VIP).
//   director = "lvs": a director (LVS direct routing, or nftables) owns the VIP on the wire and
//     rewrites the destination MAC to a member's; no member answers ARP/ND for the VIP, each
//     receives and sends from it (its own lanes: keys.cpp, lane_offset).
//   director = "none": failover; the primary answers ARP/ND and announces the VIP when it
//     becomes primary (gratuitous ARP / unsolicited NA); a backup forwards nothing on the
//     WAN: what its WAN port receives and what would leave by it is dropped (cluster_backup),
//     one relaxed load per RX burst and per TX batch (fastpath: wan_blocked).
// Off (cluster_state = 0) nothing here runs and wan_blocked stays false.
#include <algorithm>

#include "common/log.hpp"
#include "dataplane/dataplane.hpp"
#include "dataplane/fastpath.hpp"
#include "dataplane/resolver.hpp"

namespace p3::dp {

bool Dataplane::cluster_init() {
    if (!cfg_.local.cluster_state) return true;
    const config::Cluster& c = cfg_.cluster;
    // A remote without its own lanes sends one lane per worker: the file could not know how
    // many, so the product with max_members is checked here.
    for (const auto& r : cfg_.remotes) {
        const std::uint32_t per_member = r.static_keys ? r.static_keys->lanes : r.params.lanes ? r.params.lanes : tx_lanes_;
        if (std::uint64_t(per_member) * c.max_members > wire::kMaxLanes) {
            P3_LOG_ERROR(CLUSTER_LANES, "remote %u: %u lanes per member x max_members %u is more than the %u lanes a "
                         "session has: run fewer worker lcores or give the remote fewer lanes", r.id, per_member,
                         c.max_members, wire::kMaxLanes);
            return false;
        }
    }
    if (c.director == config::ClusterDirector::lvs) {
        resolver_->set_answer(Side::wan, false);
        P3_LOG_INFO(CLUSTER_ROLE, "cluster member %u of %u behind a director: %s is not answered for on the WAN, "
                    "lanes %u.. of each session are this member's", c.member, c.max_members,
                    addr_[1].addr.addr.str().c_str(), (c.member - 1) * std::max(1u, tx_lanes_));
        return true;
    }
    apply_cluster_role(c.role == config::ClusterRole::primary);
    return true;
}

void Dataplane::apply_cluster_role(bool primary) {
    cluster_primary_ = primary;
    resolver_->set_answer(Side::wan, primary);
    // The LAN address is shared too (the LAN hosts' gateway, the same on every member): only
    // the primary answers for it and announces it, so the hosts' replies follow the primary;
    // a backup asks for LAN neighbours from 0.0.0.0 and poisons no host's cache.
    resolver_->set_answer(Side::lan, primary);
    // Blocked before the announcement can go out; unblocked before it is queued (the
    // control thread's frames to the WAN pass the same test on the worker).
    wan_blocked_.store(!primary, std::memory_order_relaxed);
    if (primary) {
        resolver_->announce(Side::wan);
        resolver_->announce(Side::lan);
        resolver_->retry_now(Side::wan);
        resolver_->retry_now(Side::lan);
    }
}

bool Dataplane::set_cluster_role(bool primary) {
    if (!cfg_.local.cluster_state) {
        P3_LOG_ERROR(CLUSTER_BAD_ROLE, "cluster role change refused: local.cluster_state is 0");
        return false;
    }
    const config::Cluster& c = cfg_.cluster;
    if (c.director == config::ClusterDirector::lvs) {
        // Every member is active behind a director: the role is the control plane's (who
        // holds control sessions); the WAN is the same either way.
        cluster_primary_ = primary;
        P3_LOG_INFO(CLUSTER_ROLE, "cluster member %u is now %s (behind a director: the WAN is unchanged)", c.member,
                    primary ? "primary" : "backup");
        return true;
    }
    const bool was = cluster_primary_;
    apply_cluster_role(primary);
    P3_LOG_INFO(CLUSTER_ROLE, "cluster member %u is now %s%s", c.member, primary ? "primary" : "backup",
                primary ? (was ? " (again: the address is announced once more)" : ": the WAN address is announced")
                        : ": nothing is forwarded on the WAN");
    if (primary) P3_LOG_INFO(CLUSTER_ANNOUNCE, "cluster address %s announced on the WAN port",
                             addr_[1].addr.addr.str().c_str());
    return true;
}

}  // namespace p3::dp
