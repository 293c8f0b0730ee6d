// This member's cluster settings (docs/cluster.md): filled from the configuration's `cluster`
// block when local.cluster_state = 1; empty (not enabled) otherwise. The cluster key file is
// read with the key-file rules of common/keyfile.hpp (owner-only, no symbolic link).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "common/secret.hpp"
#include "control/cluster/replica.hpp"

namespace p3::cluster {

struct ClusterSettings {
    bool enabled = false;
    std::uint8_t member = 0;        // 1..max_members
    std::uint8_t max_members = 4;   // 1..16
    std::string group = "p3";       // CPG group name (at most 127 bytes)
    std::string key_file = "/etc/p3/cluster.key";
    Role role = Role::backup;       // the role at start
};

// Checks the numbers and the group name; false with why.
bool check(const ClusterSettings& s, std::string& why);

// The settings from "member=1,max_members=4,group=p3,key_file=/etc/p3/cluster.key,role=backup"
// (any subset; enabled when parsed). Until the configuration file has its `cluster` block,
// p3d reads this from the environment variable P3_CLUSTER (tests only).
bool parse_spec(std::string_view spec, ClusterSettings& out, std::string& why);

// Reads the cluster key: 32 bytes, raw or as 64 hex digits (a trailing line end allowed).
bool load_key(const std::string& path, SecretBytes& out, std::string& why);

}  // namespace p3::cluster
