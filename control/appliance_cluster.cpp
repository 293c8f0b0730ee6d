// The cluster on p3d's control plane (see appliance.hpp, docs/cluster.md): the member joins the
// CPG group at start when the cluster settings are enabled; `p3ctl cluster status|promote|demote`.
// promote/demote are admin-group commands (the admin socket checks), audited like every
// command, and every role change, this member's or another's, is also an audit event
// ("event:role").
#include <cstdlib>

#include "common/log.hpp"
#include "common/slots.hpp"
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
    // This member's own changes go through set_cluster_role (dataplane, ROLE, one audit line).
    cluster_->engine().on_role = [this](cluster::Role r) {
        if (on_role) on_role(r);
    };
    cluster_->on_session_record = [this](const cluster::SessionRecord& rec) { apply_replica(rec); };
    // Another member received a control packet of a session whose control session is ours:
    // the channel takes it as if our dataplane had delivered it (its replay window refuses
    // one that also came directly).
    cluster_->on_control_message = [this](std::uint32_t remote, std::span<const std::uint8_t> bytes) {
        auto it = remotes_.find(RemoteId(remote));
        if (it == remotes_.end() || !it->second.session ||
            it->second.session->state() == channel::SessionState::closed)
            return false;
        it->second.session->on_control_packet(bytes);
        return true;
    };
    cluster_->start();
}

// ---- replicated keys (docs/cluster.md §Replicated keys) ----------------------------------

void Appliance::replicate_up(RemoteId remote, const setup::EstablishedSession& s, std::uint32_t local_lanes,
                             std::uint32_t peer_lanes) {
    port_.forget_replica(remote.raw());   // our own keys now, whatever a record installed
    if (!cluster_ || s.wire != config::WireMode::p3) return;
    auto it = remotes_.find(remote);
    if (it == remotes_.end() || !it->second.link) return;
    Remote& r = it->second;
    cluster::SessionRecord rec;
    rec.remote_id = remote.raw();
    rec.peer_v6 = s.peer.addr.is_v6();
    rec.peer_addr = s.peer.addr.bytes;
    rec.peer_port = s.nat() ? cfg_.local.nat_port : 0;
    rec.wire = static_cast<std::uint8_t>(s.wire);
    rec.lanes = static_cast<std::uint16_t>(local_lanes);
    for (std::uint32_t n = 0; n < peer_lanes && n < cluster::kMaxIds; ++n)
        rec.rx_ids.push_back(wire::SlotId(s.rx_p3_id).lane(n).raw());
    for (std::uint32_t n = 0; n < local_lanes && n < cluster::kMaxIds; ++n)
        rec.tx_ids.push_back(wire::SlotId(s.tx_p3_id).lane(n).raw());
    rec.rx_cur = channel::KeyMaterial{s.data_rx.key.clone(), s.data_rx.salt.clone()}.to_wire();
    rec.tx_cur = channel::KeyMaterial{s.data_tx.key.clone(), s.data_tx.salt.clone()}.to_wire();
    r.replica = std::move(rec);
    r.link->on_keys = [this, remote](DataplanePort::KeyStep step, const channel::KeyMaterial* k) {
        replicate_keys(remote, step, k);
    };
    publish_replica(*r.replica);
}

void Appliance::replicate_keys(RemoteId remote, DataplanePort::KeyStep step, const channel::KeyMaterial* k) {
    auto it = remotes_.find(remote);
    if (!cluster_ || it == remotes_.end() || !it->second.replica) return;
    cluster::SessionRecord& rec = *it->second.replica;
    using Step = DataplanePort::KeyStep;
    switch (step) {
        case Step::next_rx: rec.rx_next = k->to_wire(); break;
        case Step::tx_switching: rec.tx_cur = k->to_wire(); break;
        case Step::rx_promoted:
            if (!rec.rx_next.empty()) rec.rx_cur = std::move(rec.rx_next);
            rec.rx_next = SecretBytes();
            break;
        case Step::rx_dropped: rec.rx_next = SecretBytes(); break;
    }
    publish_replica(rec);
}

void Appliance::publish_replica(cluster::SessionRecord& rec) {
    // Epochs only grow, across members too: a record older than the stored one is ignored.
    cluster::Engine& e = cluster_->engine();
    const auto prev = e.sessions().find(rec.remote_id);
    rec.epoch = prev == e.sessions().end() ? 1 : prev->second.epoch + 1;
    e.publish(rec);
}

void Appliance::apply_replica(const cluster::SessionRecord& rec) {
    const RemoteId remote(rec.remote_id);
    // A session whose control session this member holds keeps its own keys.
    if (auto it = remotes_.find(remote); it != remotes_.end() && it->second.session &&
                                         it->second.session->state() != channel::SessionState::closed)
        return;
    const char* why = nullptr;
    switch (port_.apply_replica(rec)) {
        case DataplanePort::Replica::applied:
            ++replicas_installed_;
            P3_PEER_LOG(info, Reason::CLUSTER_RECORD_APPLIED, "cluster: remote %u: replicated keys installed (epoch %u)",
                        rec.remote_id, rec.epoch);
            return;
        case DataplanePort::Replica::unchanged: return;
        case DataplanePort::Replica::unknown_remote: why = "no such remote here"; break;
        case DataplanePort::Replica::mismatch: why = "its lanes or wire differ from this member's"; break;
        case DataplanePort::Replica::refused: why = "the dataplane refused its keys"; break;
    }
    ++replicas_dropped_;
    P3_PEER_LOG(warning, Reason::CLUSTER_RECORD_DROPPED, "cluster: record of remote %u (epoch %u) not installed: %s",
                rec.remote_id, rec.epoch, why);
}

// A failover member that becomes backup reaches no peer any more (nothing leaves by its WAN),
// and the peers set their sessions up again with the new primary at heartbeat_fail. Its
// channels would only lose their sessions then and clear the keys, and while they run they
// make this member ignore the new primary's records. So they go now, without a goodbye (it
// could not leave) and without clearing: the keys stay as a replica of the record this member
// published last, which the new primary's records then move on or replace.
void Appliance::release_control_sessions() {
    for (auto& [id, r] : remotes_) {
        if (!r.session || r.retiring) continue;
        by_sid_.erase(r.sid);
        r.session.reset();   // no event, no session_down: the dataplane's lanes stay
        r.link.reset();
        r.driver.reset();
        if (r.replica) port_.adopt_replica(*r.replica);
        r.replica.reset();
        P3_LOG_INFO(CLUSTER_ROLE, "cluster: remote %u: control session let go (this member "
                    "is backup now); its keys stay installed and follow the primary's records", id.raw());
    }
}

admin::Reply Appliance::cluster_command(const admin::Request& req, const admin::Caller&) {
    if (req.cmd != admin::Cmd::cluster_status) {
        const bool promote = req.cmd == admin::Cmd::cluster_promote;
        const bool changed = dp_.cluster_primary() != promote;
        // Again when unchanged: keepalived may repeat a notify, and the ROLE reaches a member
        // that joined since; every step is idempotent.
        if (!set_cluster_role(promote ? config::ClusterRole::primary : config::ClusterRole::backup))
            return Reply::error(ErrorKind::failed, std::string(kNoCluster) + ": no role to change");
        Reply rep;
        rep.result = {{"role", promote ? "primary" : "backup"}, {"changed", changed}, {"member", cfg_.cluster.member}};
        return rep;
    }
    if (!cluster_) {
        Reply rep;
        rep.result = {{"cluster", false}, {"message", kNoCluster}};
        return rep;
    }
    cluster::Engine& e = cluster_->engine();
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
                  {"records", {{"installed", replicas_installed_}, {"dropped", replicas_dropped_}}},
                  {"messages", {{"sent", c.sent}, {"received", c.received}, {"refused", c.refused_total()},
                                {"send_failed", c.send_failed}}},
                  {"control", {{"forwarded", c.control_forwarded}, {"delivered", c.control_delivered},
                               {"dropped_rate", c.control_dropped_rate}, {"dropped", c.control_dropped}}}};
    return rep;
}

}  // namespace p3::control
