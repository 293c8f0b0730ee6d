// Cluster settings (see settings.hpp).
#include "control/cluster/settings.hpp"

#include <openssl/evp.h>

#include <algorithm>
#include <string>
#include <vector>

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
    std::string shared = "p3 cluster configuration v1\n" + cfg.local.address.str() + " " +
                         std::to_string(cfg.local.port) + " " + std::to_string(cfg.local.nat_port) + " " +
                         std::to_string(c.max_members) + " " + std::to_string(static_cast<int>(c.director)) + " " +
                         std::to_string(cfg.local.load_balance) + "\n";
    std::vector<const config::Remote*> remotes;
    for (const auto& r : cfg.remotes) remotes.push_back(&r);
    std::sort(remotes.begin(), remotes.end(), [](auto* a, auto* b) { return a->id < b->id; });
    for (const config::Remote* r : remotes)
        shared += std::to_string(r->id) + " " + r->address.str() + " " + std::to_string(r->port) + " " +
                  std::to_string(static_cast<int>(r->wire)) + " " + std::to_string(r->params.lanes) + "\n";
    unsigned len = 0;
    if (EVP_Digest(shared.data(), shared.size(), s.config_digest.data(), &len, EVP_sha256(), nullptr) != 1)
        s.config_digest = {};
    return s;
}

}  // namespace p3::cluster
