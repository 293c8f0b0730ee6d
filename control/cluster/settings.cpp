// Cluster settings (see settings.hpp).
#include "control/cluster/settings.hpp"

namespace p3::cluster {

bool check(const ClusterSettings& s, std::string& why) {
    if (s.max_members < 1 || s.max_members > kMaxMembers) return why = "cluster.max_members: 1 to 16", false;
    if (s.member < 1 || s.member > s.max_members) return why = "cluster.member: 1 to max_members", false;
    if (s.group.empty() || s.group.size() > 127) return why = "cluster.group: 1 to 127 characters", false;
    return true;
}

ClusterSettings from_config(const config::Config& cfg) {
    ClusterSettings s;
    if (!cfg.local.cluster_state) return s;
    const config::Cluster& c = cfg.cluster;
    s.enabled = true;
    s.member = static_cast<std::uint8_t>(c.member);
    s.max_members = static_cast<std::uint8_t>(c.max_members);
    s.group = c.group;
    s.key_file = c.key_file;
    s.role = c.role == config::ClusterRole::primary ? Role::primary : Role::backup;
    return s;
}

}  // namespace p3::cluster
