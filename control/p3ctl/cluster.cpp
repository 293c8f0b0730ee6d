// p3ctl cluster: rendering (see cluster.hpp).
#include "control/p3ctl/cluster.hpp"

#include <cstdio>

namespace p3::ctl {

namespace {

const Json* field(const Json& j, const char* k) {
    if (!j.is_object()) return nullptr;
    auto it = j.find(k);
    return it == j.end() ? nullptr : &*it;
}

std::string str(const Json& j, const char* k) {
    const Json* v = field(j, k);
    if (v == nullptr || v->is_null()) return "-";
    if (v->is_string()) return v->get<std::string>();
    if (v->is_boolean()) return v->get<bool>() ? "yes" : "no";
    if (v->is_number_float()) {
        char b[32];
        std::snprintf(b, sizeof b, "%.1f s", v->get<double>());
        return b;
    }
    if (v->is_number()) return v->dump();
    return "-";
}

}  // namespace

std::string render_cluster_status(const Json& result) {
    const Json* on = field(result, "cluster");
    if (on == nullptr || !on->is_boolean() || !on->get<bool>()) return "cluster: " + str(result, "message") + "\n";
    std::string out = "cluster: group " + str(result, "group") + ", this member " + str(result, "member") + " (" +
                      str(result, "role") + "), " + str(result, "sessions_replicated") + " sessions replicated";
    const Json* in = field(result, "in_group");
    if (in == nullptr || !in->is_boolean() || !in->get<bool>()) out += ", NOT in the group (corosync unreachable)";
    out += "\n";
    char line[160];
    std::snprintf(line, sizeof line, "%-7s %-8s %-11s %s\n", "MEMBER", "ROLE", "LAST HEARD", "LAG (MESSAGES)");
    out += line;
    const Json* members = field(result, "members");
    if (members != nullptr && members->is_array())
        for (const Json& m : *members) {
            const Json* self = field(m, "self");
            const Json* synced = field(m, "synced");
            const bool unsynced = synced != nullptr && synced->is_boolean() && !synced->get<bool>();
            const bool me = self != nullptr && self->is_boolean() && self->get<bool>();
            std::snprintf(line, sizeof line, "%-7s %-8s %-11s %s\n", (str(m, "member") + (me ? "*" : "")).c_str(),
                          str(m, "role").c_str(), me ? "(this)" : str(m, "last_heard_s").c_str(),
                          unsynced ? "not synced" : str(m, "lag").c_str());
            out += line;
        }
    return out;
}

std::string render_cluster_role(const char* verb, const Json& result) {
    const Json* changed = field(result, "changed");
    const bool was = changed != nullptr && changed->is_boolean() && !changed->get<bool>();
    return std::string(verb) + ": member " + str(result, "member") + (was ? " was already " : " is now ") +
           str(result, "role") + "\n";
}

}  // namespace p3::ctl
