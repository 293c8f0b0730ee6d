// This member's cluster settings (docs/cluster.md): filled from the configuration's `cluster`
// block when local.cluster_state = 1 (from_config); empty (not enabled) otherwise. The cluster
// key file is read by config::read_cluster_key (common/config.hpp), the one reader of it.
#pragma once

#include <array>
#include <cstdint>
#include <string>

#include "common/config.hpp"
#include "control/cluster/replica.hpp"

namespace p3::cluster {

struct ClusterSettings {
    bool enabled = false;
    std::uint8_t member = 0;        // 1..max_members
    std::uint8_t max_members = 4;   // 1..16
    std::string group = "p3";       // CPG group name (at most 127 bytes)
    std::string key_file = "/etc/p3/cluster.key";
    Role role = Role::backup;       // the role at start
    // SHA-256 of what every member must share (the VIP and its ports, max_members, director,
    // load_balance, and each remote's id, address, port, wire and lanes), sent in HELLO: a
    // member whose configuration differs is reported at join (P3-W0938), not only by the
    // records it cannot install.
    std::array<std::uint8_t, 32> config_digest{};
};

// Checks the numbers and the group name; false with why.
bool check(const ClusterSettings& s, std::string& why);

// The settings of a parsed configuration: enabled when local.cluster_state = 1.
ClusterSettings from_config(const config::Config& cfg);

}  // namespace p3::cluster
