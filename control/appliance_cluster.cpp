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
    cluster_->on_members_changed = [this](std::span<const cluster::Member> m) { on_cluster_members(m); };
    cluster_->on_record_ack = [this](std::uint8_t member, std::uint32_t remote, std::uint32_t epoch) {
        on_record_ack(member, RemoteId(remote), epoch);
    };
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
    r.link->on_hold = [this, remote] { return hold_switch(remote); };
    publish_replica(*r.replica);
}

// ---- a rekey's switch waits for the members (docs/cluster.md §Replicated keys) -------------

bool Appliance::hold_switch(RemoteId remote) {
    auto it = remotes_.find(remote);
    if (!cluster_ || it == remotes_.end() || !it->second.replica) return false;
    SwitchHold h;
    h.epoch = it->second.replica->epoch;   // the record with the next inbound keys, just sent
    for (const cluster::Member& m : cluster_->engine().members())
        if (!m.self) h.waiting.insert(m.number);
    if (h.waiting.empty()) return false;
    if (auto old = holds_.find(remote); old != holds_.end()) loop_.cancel(old->second.timer);
    h.since = loop_.clock().now();
    h.timer = loop_.after(kSwitchHoldMax, [this, remote] { end_hold(remote, true); });
    holds_[remote] = std::move(h);
    ++switch_holds_;
    return true;
}

void Appliance::on_record_ack(std::uint8_t member, RemoteId remote, std::uint32_t epoch) {
    auto it = holds_.find(remote);
    if (it == holds_.end() || epoch < it->second.epoch) return;
    it->second.waiting.erase(member);
    if (it->second.waiting.empty()) end_hold(remote, false);
}

void Appliance::end_hold(RemoteId remote, bool timed_out) {
    auto it = holds_.find(remote);
    if (it == holds_.end()) return;
    if (!timed_out) loop_.cancel(it->second.timer);
    if (timed_out) {
        ++switch_unconfirmed_;
        std::string who;
        for (std::uint8_t m : it->second.waiting) who += (who.empty() ? "" : ", ") + std::to_string(m);
        P3_PEER_LOG(warning, Reason::CLUSTER_SWITCH_UNCONFIRMED,
                    "cluster: remote %u: rekey switch announced without member(s) %s confirming the next keys",
                    remote.raw(), who.c_str());
    }
    holds_.erase(it);
    auto r = remotes_.find(remote);
    if (r != remotes_.end() && r->second.link) r->second.link->release_hold();
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
    // The channel's state goes with the keys once it is up: what another member takes the
    // control session over from.
    if (auto it = remotes_.find(RemoteId(rec.remote_id)); it != remotes_.end() && it->second.session) {
        if (auto st = it->second.session->replica_state()) {
            cluster::ControlRecord c;
            c.tx_epoch = st->tx_epoch;
            c.tx_seq = st->tx_seq;
            c.tx_ctl = st->tx_ctl.to_wire();
            c.peer_tx_epoch = st->peer_tx_epoch;
            c.next_epoch = st->next_epoch;
            c.next_msg_id = st->next_msg_id;
            c.next_rx_epoch = st->next_rx_epoch;
            c.key_type = static_cast<std::uint8_t>(it->second.session->config().params.key_type);
            for (auto& x : st->rx)
                if (c.rx.size() < cluster::kMaxControlEpochs) c.rx.push_back({x.epoch, x.top, x.ctl.to_wire()});
            rec.control = std::move(c);
        }
    }
    rec.holder = static_cast<std::uint8_t>(cfg_.cluster.member);
    // Epochs only grow, across members too: a record older than the stored one is ignored.
    cluster::Engine& e = cluster_->engine();
    const auto prev = e.sessions().find(rec.remote_id);
    rec.epoch = prev == e.sessions().end() ? 1 : prev->second.epoch + 1;
    e.publish(rec);
}

void Appliance::apply_replica(const cluster::SessionRecord& rec) {
    const RemoteId remote(rec.remote_id);
    const auto me = static_cast<std::uint8_t>(cfg_.cluster.member);
    if (auto it = remotes_.find(remote); it != remotes_.end() && it->second.session &&
                                         it->second.session->state() != channel::SessionState::closed) {
        // A session whose control session this member holds keeps its own keys, unless
        // another member holds it now: it took it over (the engine let its record win), or
        // the peer set the session up with it. Ours goes; its keys follow that member's records.
        if (rec.holder == me || rec.holder == 0 || it->second.retiring) return;
        release_one(remote, it->second);
        ++releases_;
        P3_LOG_INFO(CLUSTER_RELEASED, "cluster: remote %u: control session let go: member %u holds it now", rec.remote_id,
                    rec.holder);
    }
    if (rec.withdrawn) {
        if (port_.drop_replica(rec.remote_id))
            P3_PEER_LOG(info, Reason::CLUSTER_WITHDRAWN,
                        "cluster: remote %u: session withdrawn by member %u (down there): its keys dropped here",
                        rec.remote_id, rec.holder);
        return;
    }
    const char* why = nullptr;
    switch (port_.apply_replica(rec)) {
        case DataplanePort::Replica::applied:
            ++replicas_installed_;
            P3_PEER_LOG(info, Reason::CLUSTER_RECORD_APPLIED, "cluster: remote %u: replicated keys installed (epoch %u)",
                        rec.remote_id, rec.epoch);
            [[fallthrough]];
        case DataplanePort::Replica::unchanged:
            // Load balancing: the holder hands this session's control session to this member.
            if (rec.handover == me && rec.holder != me) take_over(remote, "handed over by its holder");
            return;
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
void Appliance::release_one(RemoteId id, Remote& r) {
    if (auto h = holds_.find(id); h != holds_.end()) {   // its switch will not happen here
        loop_.cancel(h->second.timer);
        holds_.erase(h);
    }
    by_sid_.erase(r.sid);
    r.session.reset();   // no event, no session_down: the dataplane's lanes stay
    r.link.reset();
    r.driver.reset();
    if (r.replica) port_.adopt_replica(*r.replica);
    r.replica.reset();
}

void Appliance::release_control_sessions() {
    for (auto& [id, r] : remotes_) {
        if (!r.session || r.retiring) continue;
        release_one(id, r);
        P3_LOG_INFO(CLUSTER_ROLE, "cluster: remote %u: control session let go (this member "
                    "is backup now); its keys stay installed and follow the primary's records", id.raw());
    }
}

// ---- taking over control sessions (docs/cluster.md §Taking over a control session) ----------

bool Appliance::take_over(RemoteId remote, const char* why) {
    if (!cluster_ || stopping_) return false;
    auto held = remotes_.find(remote);
    if (held != remotes_.end() && held->second.session &&
        held->second.session->state() != channel::SessionState::closed)
        return true;   // ours already
    const auto& sessions = cluster_->engine().sessions();
    const auto it = sessions.find(remote.raw());
    const config::Remote* rc = find_remote(remote);
    const SessionId sid = port_.session_of(remote);
    const char* missing = nullptr;
    if (it == sessions.end() || !it->second.control) missing = "no replicated channel state for it";
    else if (!rc || !sid) missing = "no such remote here";
    else if (port_.replica_remote(sid) != remote.raw()) missing = "its keys are not installed here";
    else if (shut_.count(remote) || (held != remotes_.end() && held->second.retiring)) missing = "it is shut down here";
    channel::ChannelState st;
    if (!missing) {
        const cluster::SessionRecord& rec = it->second;
        const cluster::ControlRecord& c = *rec.control;
        st.tx_epoch = c.tx_epoch;
        st.tx_ctl = channel::KeyMaterial::from_wire(c.tx_ctl.span());
        st.tx_seq = c.tx_seq;
        for (const auto& x : c.rx) {
            st.rx.push_back({x.epoch, channel::KeyMaterial::from_wire(x.ctl.span()), x.top});
            if (!st.rx.back().ctl.valid()) missing = "its control keys are malformed";
        }
        if (!st.tx_ctl.valid() || rec.rx_ids.empty() || rec.tx_ids.empty()) missing = "its control keys are malformed";
        st.peer_tx_epoch = c.peer_tx_epoch;
        st.next_epoch = c.next_epoch;
        st.next_msg_id = c.next_msg_id;
        st.next_rx_epoch = c.next_rx_epoch;
        st.local_lanes = rec.lanes;
        st.peer_lanes = static_cast<std::uint32_t>(rec.rx_ids.size());
        if (!missing) {
            st.rx_p3_id = rec.rx_ids[0];
            st.tx_p3_id = rec.tx_ids[0];
        }
    }
    if (missing) {
        P3_PEER_LOG(warning, Reason::CLUSTER_TAKEOVER_FAILED, "cluster: remote %u: control session not taken over (%s): %s",
                    remote.raw(), why, missing);
        return false;
    }
    const cluster::SessionRecord& rec = it->second;
    auto params = rc->params;
    params.key_type = static_cast<config::KeyType>(rec.control->key_type);
    params.rekey_packets = config::rekey_packet_limit(params.rekey_packets, cfg_.dataplane.wan.mtu);
    Remote& r = remotes_[remote];
    if (r.identity.empty()) r.identity = rc->address.str();
    const DataplanePort::LinkIds ids{sid, remote, st.rx_p3_id, st.tx_p3_id, st.peer_lanes, st.local_lanes};
    new_channel(remote, r, ids, session_config(*rc, r.identity, params));
    r.lanes_in = st.peer_lanes;
    r.lanes_out = st.local_lanes;
    port_.forget_replica(remote.raw());   // our own keys from now on
    r.replica = rec.clone();
    r.replica->handover = 0;
    r.replica->control.reset();
    r.link->on_keys = [this, remote](DataplanePort::KeyStep step, const channel::KeyMaterial* k) {
        replicate_keys(remote, step, k);
    };
    r.link->on_hold = [this, remote] { return hold_switch(remote); };
    ++takeovers_;
    P3_LOG_INFO(CLUSTER_TAKEOVER, "cluster: remote %u: taking the control session over (%s), from member %u's record",
                remote.raw(), why, rec.holder);
    r.session->take_over(std::move(st));   // its taken_over event publishes our record
    return true;
}

std::uint8_t Appliance::designated_holder(std::uint32_t remote, std::span<const cluster::Member> members) const {
    std::uint8_t lowest = 0, best = 0;
    std::uint64_t best_w = 0;
    for (const cluster::Member& m : members) {
        if (!cfg_.local.load_balance && m.role == cluster::Role::primary) return m.number;
        if (lowest == 0 || m.number < lowest) lowest = m.number;
        // Rendezvous hashing: each member's weight for the session; the highest wins, so a
        // member leaving moves only its own sessions (splitmix64 of remote and member).
        std::uint64_t z = (static_cast<std::uint64_t>(remote) << 8 | m.number) + 0x9e3779b97f4a7c15ULL;
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        z ^= z >> 31;
        if (best == 0 || z > best_w) best = m.number, best_w = z;
    }
    return cfg_.local.load_balance ? best : lowest;
}

// Behind a director every member reaches the peers: a session whose holder left the group is
// taken over by the member designated among those still there (failover members take over on
// promote instead: a backup reaches nobody).
void Appliance::on_cluster_members(std::span<const cluster::Member> members) {
    // A member that left confirms nothing: a switch waiting only for it goes ahead.
    std::vector<RemoteId> done;
    for (auto& [remote, h] : holds_) {
        std::erase_if(h.waiting, [&](std::uint8_t n) {
            for (const cluster::Member& m : members)
                if (m.number == n) return false;
            return true;
        });
        if (h.waiting.empty()) done.push_back(remote);
    }
    for (RemoteId r : done) end_hold(r, false);
    // Only members seen leaving count: a member that joins hears the others' HELLOs one by
    // one, and a holder it has not heard yet is not gone.
    std::set<std::uint8_t> now, left;
    for (const cluster::Member& m : members) now.insert(m.number);
    for (std::uint8_t n : members_seen_)
        if (!now.count(n)) left.insert(n);
    members_seen_ = std::move(now);
    // A member that lost its own corosync sees everyone leave: it is the one cut off, and the
    // others take its sessions over; it takes nothing.
    if (cfg_.cluster.director != config::ClusterDirector::lvs || stopping_ || left.empty() ||
        !cluster_->engine().in_group())
        return;
    const auto me = static_cast<std::uint8_t>(cfg_.cluster.member);
    std::vector<std::uint32_t> mine;
    for (const auto& [id, rec] : cluster_->engine().sessions()) {
        const std::uint8_t holder = cluster_->engine().holder_of(id);
        if (rec.control && left.count(holder) && designated_holder(id, members) == me) mine.push_back(id);
    }
    for (std::uint32_t id : mine) take_over(RemoteId(id), "its holder left the cluster");
}

// The channel of a session this member holds changed what another member would need to take
// it over: publish again. Once up after a setup, a session the cluster assigns to another
// member is handed to it (load balancing, or a setup that reached a member other than the primary).
void Appliance::cluster_channel_event(RemoteId remote, const channel::Event& e) {
    using K = channel::Event::Kind;
    if (e.kind == K::lost || e.kind == K::closed) return withdraw(remote);
    if (e.kind != K::up && e.kind != K::taken_over && e.kind != K::tx_switched && e.kind != K::rekey_started &&
        e.kind != K::replica_due)
        return;
    auto it = remotes_.find(remote);
    if (it == remotes_.end() || !it->second.replica) return;
    publish_replica(*it->second.replica);
    if (e.kind == K::up && cfg_.cluster.director == config::ClusterDirector::lvs) {
        const auto members = cluster_->engine().members();
        if (designated_holder(remote.raw(), members) != cfg_.cluster.member)
            loop_.after(Duration::zero(), [this, remote] { hand_over(remote); });   // not inside the channel's call
    }
}

unsigned Appliance::cluster_leaving() {
    if (!cluster_ || !cluster_->engine().in_group() || cluster_->engine().members().size() < 2) return 0;
    unsigned n = 0;
    std::vector<RemoteId> held;
    for (auto& [id, r] : remotes_)
        if (r.session && r.replica && !r.retiring && r.session->state() == channel::SessionState::up) held.push_back(id);
    for (RemoteId id : held) {
        Remote& r = remotes_[id];
        if (cfg_.cluster.director == config::ClusterDirector::lvs) {
            hand_over(id, true);
        } else {
            publish_replica(*r.replica);   // the latest state, for the member promoted next
            release_one(id, r);
        }
        ++n;
    }
    return n;
}

// The session went down here (lost, or shut by an administrator): the members drop its keys
// too rather than keep sending under keys the peer no longer holds.
void Appliance::withdraw(RemoteId remote) {
    auto it = remotes_.find(remote);
    if (it == remotes_.end() || !it->second.replica) return;
    cluster::SessionRecord& rec = *it->second.replica;
    rec.withdrawn = true;
    rec.control.reset();
    for (SecretBytes* k : {&rec.rx_cur, &rec.rx_next, &rec.tx_cur, &rec.tx_next}) *k = SecretBytes();
    cluster::Engine& e = cluster_->engine();
    const auto prev = e.sessions().find(rec.remote_id);
    rec.holder = static_cast<std::uint8_t>(cfg_.cluster.member);
    rec.epoch = prev == e.sessions().end() ? 1 : prev->second.epoch + 1;
    e.publish(rec);
    it->second.replica.reset();
}

void Appliance::hand_over(RemoteId remote, bool leaving) {
    auto it = remotes_.find(remote);
    if (!cluster_ || it == remotes_.end() || !it->second.replica || !it->second.session ||
        it->second.session->state() != channel::SessionState::up || it->second.retiring || (stopping_ && !leaving))
        return;
    auto members = cluster_->engine().members();
    if (leaving) std::erase_if(members, [](const cluster::Member& m) { return m.self; });
    const std::uint8_t to = designated_holder(remote.raw(), members);
    if (to == 0 || to == cfg_.cluster.member) return;
    cluster::SessionRecord& rec = *it->second.replica;
    rec.handover = to;
    publish_replica(rec);   // with the channel's state: `to` takes over from it
    cluster_->engine().handed_over(remote.raw(), to);
    rec.handover = 0;
    ++handovers_;
    P3_LOG_INFO(CLUSTER_HANDOVER, "cluster: remote %u: control session handed to member %u", remote.raw(), to);
    release_one(remote, it->second);
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
                           {"config_differs", m.config_differs},
                           {"last_heard_s", m.self ? 0.0 : static_cast<double>(now - m.last_heard_ms) / 1000.0},
                           {"lag", lag.primary_known && lag.synced ? json(lag.messages) : json(nullptr)},
                           {"synced", lag.primary_known ? json(lag.synced) : json(nullptr)}});
    }
    const cluster::EngineCounters& c = e.counters();
    std::uint64_t held = 0;
    for (const auto& [id, r] : remotes_)
        if (r.session && r.session->state() == channel::SessionState::up && r.replica) ++held;
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
                               {"dropped_rate", c.control_dropped_rate}, {"dropped", c.control_dropped}}},
                  {"control_sessions", {{"held", held}, {"taken_over", takeovers_}, {"handed_over", handovers_},
                                        {"released", releases_}}},
                  {"rekey_switch", {{"held", switch_holds_}, {"unconfirmed", switch_unconfirmed_}}}};
    return rep;
}

}  // namespace p3::control
