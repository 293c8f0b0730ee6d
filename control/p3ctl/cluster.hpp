// p3ctl cluster status|promote|demote: the human output of p3d's cluster results
// (docs/cluster.md §p3ctl cluster). Every field is read defensively, as in render.hpp.
#pragma once

#include <string>

#include "control/p3ctl/admin_client.hpp"

namespace p3::ctl {

// "cluster: group p3, this member 1 (primary), 3 sessions replicated" then one row per member.
// Without a cluster: the message p3d gave.
std::string render_cluster_status(const Json& result);
// "cluster promote: member 1 is now primary" (or "was already primary").
std::string render_cluster_role(const char* verb, const Json& result);

}  // namespace p3::ctl
