// The cluster on p3d's control plane (see appliance.hpp, docs/cluster.md): the member joins the
// CPG group at start when the cluster settings are enabled; `p3ctl cluster status|promote|demote`.
// promote/demote are admin-group commands (the admin socket checks), audited like every
// command, and every role change, this member's or another's, is also an audit event
// ("event:role").
#include <cstdlib>

#include "common/log.hpp"
#include "control/appliance.hpp"

namespace p3::control {

namespace {

using nlohmann::json;
using admin::Reply;
using admin::ErrorKind;

constexpr const char* kNoCluster = "this p3d runs without a cluster (local.cluster_state = 0)";

}  // namespace

void Appliance::cluster_start() {
    std::string why;
    cluster_ = cluster::Node::create(cluster_settings_, loop_, why);
    if (!cluster_) {
        P3_LOG_ERROR(CLUSTER_KEY, "cluster: %s: p3d runs without the cluster", why.c_str());
        return;
    }
    cluster_->on_member_role = [this](std::uint8_t member, cluster::Role r) {
        if (audit_) audit_->write({0, "p3d", "event:role", "member " + std::to_string(member), std::string(role_name(r))});
    };
    cluster_->engine().on_role = [this](cluster::Role r) {
        if (audit_)
            audit_->write({0, "p3d", "event:role", "member " + std::to_string(cluster_->settings().member),
                           std::string(role_name(r))});
        if (on_role) on_role(r);
    };
    cluster_->start();
}

admin::Reply Appliance::cluster_command(const admin::Request& req, const admin::Caller&) {
    if (!cluster_) {
        if (req.cmd != admin::Cmd::cluster_status) return Reply::error(ErrorKind::failed, std::string(kNoCluster) + ": no role to change");
        Reply rep;
        rep.result = {{"cluster", false}, {"message", kNoCluster}};
        return rep;
    }
    cluster::Engine& e = cluster_->engine();
    if (req.cmd != admin::Cmd::cluster_status) {
        const cluster::Role want = req.cmd == admin::Cmd::cluster_promote ? cluster::Role::primary : cluster::Role::backup;
        const bool changed = e.role() != want;
        // Again when unchanged: keepalived may repeat a notify, and the ROLE reaches a member
        // that joined since; the hook is idempotent.
        e.set_role(want);
        Reply rep;
        rep.result = {{"role", role_name(want)}, {"changed", changed}, {"member", e.member()}};
        return rep;
    }
    const std::uint64_t now = cluster_->now_ms();
    json members = json::array();
    for (const cluster::Member& m : e.members()) {
        const auto lag = e.lag_of(m);
        members.push_back({{"member", m.number},
                           {"role", role_name(m.role)},
                           {"self", m.self},
                           {"last_heard_s", m.self ? 0.0 : static_cast<double>(now - m.last_heard_ms) / 1000.0},
                           {"lag", lag.primary_known && lag.synced ? json(lag.messages) : json(nullptr)},
                           {"synced", lag.primary_known ? json(lag.synced) : json(nullptr)}});
    }
    const cluster::EngineCounters& c = e.counters();
    Reply rep;
    rep.result = {{"cluster", true},
                  {"member", e.member()},
                  {"role", role_name(e.role())},
                  {"group", cluster_->settings().group},
                  {"connected", cluster_->transport().connected()},
                  {"in_group", e.in_group()},
                  {"reconnects", cluster_->transport().reconnects()},
                  {"members", std::move(members)},
                  {"sessions_replicated", e.sessions().size()},
                  {"messages", {{"sent", c.sent}, {"received", c.received}, {"refused", c.refused_total()},
                                {"send_failed", c.send_failed}}}};
    return rep;
}

}  // namespace p3::control
