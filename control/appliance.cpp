// p3d's control plane: the setup exchange and the control channel on the control thread
// (see appliance.hpp).
#include "control/appliance.hpp"

#include <rte_mbuf.h>

#include <array>
#include <string>

#include "common/log.hpp"
#include "control/channel/limits.hpp"

namespace p3::control {

namespace {

// Every control packet is channel::limits::kControlInnerLen bytes; anything longer is not one.
constexpr std::size_t kMaxControlPacket = 2048;
static_assert(channel::limits::kControlInnerLen <= kMaxControlPacket);
// A stop waits for the goodbyes: each ends by its answer or kGoodbyeWait, well within the grace.
static_assert(channel::limits::kGoodbyeWait + std::chrono::milliseconds(100) <= kStopGrace);

channel::KeyMaterial material(const setup::DirectionKeys& k) {
    return channel::KeyMaterial{k.key.clone(), k.salt.clone()};
}

}  // namespace

Appliance::Appliance(const config::Config& cfg, std::optional<setup::Credentials> creds, keys::KeyGenerator& gen,
                     const Clock& clock, dp::ControlPort& port)
    : cfg_(cfg.clone()), dp_(port), loop_(clock), keys_(gen), port_(port) {
    // Always an engine, even with no remote to set up yet: `remote add` may bring one. It reads
    // the running configuration, which only this object changes.
    {
        setup::Credentials c = creds ? std::move(*creds) : setup::Credentials{};
        setup_ = std::make_unique<setup::SetupControlPlane>(cfg_, std::move(c), setup::SetupOptions{}, clock,
                                                            random_, port_);
        setup_->set_on_up([this](const setup::EstablishedSession& s, SessionId sid, std::uint32_t local_lanes,
                                 std::uint32_t peer_lanes) { on_up(s, sid, local_lanes, peer_lanes); });
        setup_->set_on_failed([this](std::uint32_t remote_id, Reason) { on_failed(RemoteId(remote_id)); });
    }
}

Appliance::~Appliance() = default;

const config::Remote* Appliance::find_remote(RemoteId id) const {
    for (const auto& r : cfg_.remotes)
        if (r.id == id.raw()) return &r;
    return nullptr;
}

const channel::Session* Appliance::session(RemoteId remote) const {
    auto it = remotes_.find(remote);
    return it == remotes_.end() ? nullptr : it->second.session.get();
}

void Appliance::start() {
    started_ = true;
    if (setup_) setup_->start();
    cluster_settings_ = cluster::from_config(cfg_);
    if (cluster_settings_.enabled) cluster_start();
}

void Appliance::stop() {
    // After wind_down() every session is closed or closing; a goodbye still unanswered is not
    // waited for. Sessions first (they call into the dataplane and the setup engine), then the exchange.
    for (auto& [id, r] : remotes_)
        if (r.session) r.session->shutdown();
    by_sid_.clear();
    remotes_.clear();
    if (setup_) setup_->stop();
    if (cluster_) cluster_->stop();
    started_ = false;
}

void Appliance::wind_down() {
    stopping_ = true;
    // ESP remotes have no channel: their goodbye is our IKE DELETE, sent before the engine stops.
    unsigned esp = 0;
    if (setup_)
        for (const auto& rc : cfg_.remotes)
            if (rc.wire == config::WireMode::esp) esp += setup_->esp_close(rc.id);
    // The peers hear it now (a secondary then sets up again at once, a primary waits for its
    // secondary), not after heartbeat_fail. The setup engine stops first: a secondary's
    // attempt that arrives meanwhile is not answered, so no session comes up only to end
    // without a goodbye a moment later; it reaches this appliance again once it runs.
    if (setup_) setup_->stop();
    // A cluster member with others in the group says no goodbye: they carry its sessions on
    // (handed over, or taken over at the promote that follows), and the peers keep them.
    const unsigned kept = cluster_leaving();
    unsigned told = 0;
    for (auto& [id, r] : remotes_) {
        if (!r.session) continue;
        r.session->shutdown(channel::GoodbyeReason::stopping);
        if (r.session->state() == channel::SessionState::closing) ++told;
    }
    told += esp;
    P3_LOG_NOTICE(STOPPING, "stopping: goodbye to %u peer(s), waiting at most %lld ms for the answers%s", told,
                  static_cast<long long>(kStopGrace.count()),
                  kept ? "; the other cluster members carry the rest on" : "");
}

bool Appliance::quiet() const {
    for (const auto& [id, r] : remotes_)
        if (r.session && r.session->state() == channel::SessionState::closing) return false;
    return true;
}

void Appliance::on_packet(rte_mbuf* m) {
    const dp::PktMeta md = dp::meta(m);
    if (md.kind == dp::MsgKind::setup_udp) {
        if (setup_) {
            setup_->on_packet(m);  // owns m
            return;
        }
        ++other_;
        rte_pktmbuf_free(m);
        return;
    }
    if (md.kind != dp::MsgKind::control_in) {
        ++other_;
        rte_pktmbuf_free(m);
        return;
    }
    const SessionId sid(md.session);
    auto it = by_sid_.find(sid);
    // A cluster member holding the session only from another member's record: its control
    // session is that member's, which gets the packet over the cluster (docs/cluster.md
    // §Forwarded control messages).
    const bool live = it != by_sid_.end() && it->second->state() != channel::SessionState::closed;
    const std::uint32_t replica = !live && cluster_ ? port_.replica_remote(sid) : 0;
    if ((it == by_sid_.end() && replica == 0) || m->pkt_len > kMaxControlPacket) {
        // A session with static keys, or one whose channel is not up yet: nothing reads it.
        ++control_unclaimed_;
        rte_pktmbuf_free(m);
        return;
    }
    std::array<std::uint8_t, kMaxControlPacket> buf;
    const std::uint32_t len = m->pkt_len;
    const void* p = rte_pktmbuf_read(m, 0, len, buf.data());
    if (p != nullptr) {
        const std::span bytes(static_cast<const std::uint8_t*>(p), len);
        if (replica != 0)
            cluster_->engine().forward_control(replica, bytes);   // counted there, sent or not
        else
            it->second->on_control_packet(bytes);
    }
    rte_pktmbuf_free(m);
}

void Appliance::poll(TimePoint now) {
    if (reload_asked_.exchange(false, std::memory_order_relaxed) && !stopping_) reload_now();
    if (setup_) setup_->poll(now);
    // In a cluster the loop also watches corosync's fd (never waits: zero timeout).
    if (cluster_) loop_.run_once(Duration::zero());
    else loop_.run_due();
}

void Appliance::on_up(const setup::EstablishedSession& s, SessionId sid, std::uint32_t local_lanes,
                      std::uint32_t peer_lanes) {
    const RemoteId remote(s.remote_id);
    const config::Remote* rc = find_remote(remote);
    if (!rc || !started_) return;
    auto keys = std::make_shared<channel::InitialKeys>();
    keys->rx_p3_id = s.rx_p3_id;
    keys->tx_p3_id = s.tx_p3_id;
    keys->control_tx = material(s.control_tx);
    keys->control_rx = material(s.control_rx);
    keys->local_lanes = local_lanes;
    keys->peer_lanes = peer_lanes;

    const bool primary = cfg_.role == config::Role::primary;
    const DataplanePort::LinkIds ids{sid, remote, s.rx_p3_id, s.tx_p3_id, peer_lanes, local_lanes};
    Remote& r = remotes_[remote];
    if (r.retiring) return;   // being removed: the goodbye is under way (the peer comes back later)
    if (!primary) r.pushed = s.config.primary_subnets;
    // A new channel session when there is none, the dataplane session changed, it was shut
    // down, or the pushed parameters changed (the primary's configuration was edited): a
    // session keeps the parameters it was set up with.
    auto params = s.config.params;
    params.key_type = s.key_type;
    params.rekey_packets = config::rekey_packet_limit(params.rekey_packets, cfg_.dataplane.wan.mtu);
    const bool fresh_needed = !r.session || r.sid != sid || r.session->state() == channel::SessionState::closed ||
                              !(r.session->config().params == params);
    if (fresh_needed) {
        new_channel(remote, r, ids, session_config(*rc, s.peer_identity, params));
    } else {
        r.link->reset(ids);   // set up again: new P3 IDs for the same session
    }
    r.identity = s.peer_identity;
    r.lanes_in = peer_lanes;
    r.lanes_out = local_lanes;
    replicate_up(remote, s, local_lanes, peer_lanes);
    channel::Session* session = r.session.get();
    if (primary) {
        // The responder installs before its last message goes out: start the channel (which may
        // send at once) after that message, on this loop's next turn.
        loop_.after(Duration::zero(), [session, keys, fresh = session->state() == channel::SessionState::idle] {
            if (fresh)
                session->start(std::move(*keys));
            else
                session->restart(std::move(*keys));
        });
        return;
    }
    switch (session->state()) {
        case channel::SessionState::idle: session->start(std::move(*keys)); break;
        case channel::SessionState::up: session->restart(std::move(*keys)); break;
        default: session->setup_succeeded(std::move(*keys)); break;
    }
}

channel::SessionConfig Appliance::session_config(const config::Remote& rc, const std::string& identity,
                                                const config::SessionParams& params) const {
    const bool primary = primary_role();
    channel::SessionConfig sc;
    sc.role = cfg_.role;
    sc.remote_id = rc.id;
    sc.name = "remote " + std::to_string(rc.id) + " (" + identity + ")";
    // Inner addresses of control packets: each side's own WAN address; the session port is
    // the primary's setup port (local.port there, remote.port on the secondary).
    sc.addrs.local = cfg_.local.address;
    sc.addrs.peer = rc.address;
    sc.addrs.port = primary ? cfg_.local.port : rc.port;
    // Both sides hold the pushed parameters; the key type is what the exchange negotiated,
    // rekey_packets 0 = the AES-GCM bound, a pushed limit never above our own WAN MTU's bound.
    sc.params = params;
    return sc;
}

void Appliance::new_channel(RemoteId remote, Remote& r, const DataplanePort::LinkIds& ids, channel::SessionConfig sc) {
    if (r.session) by_sid_.erase(r.sid);
    r.session.reset();
    r.sid = ids.sid;
    r.link = port_.link(ids, sc.params.size_hiding);
    r.driver.reset();
    if (!primary_role()) {
        r.driver = std::make_unique<Driver>();
        r.driver->app = this;
        r.driver->remote = remote;
    }
    r.session = std::make_unique<channel::Session>(loop_, std::move(sc), *r.link, *r.link, random_, keys_,
                                                   r.driver.get());
    r.session->observer = [this, remote](const channel::Event& e) { on_event(remote, e); };
    by_sid_[ids.sid] = r.session.get();
}

// What status shows and the audit trail records of a session's life.
void Appliance::on_event(RemoteId remote, const channel::Event& e) {
    auto it = remotes_.find(remote);
    if (it == remotes_.end()) return;
    Remote& r = it->second;
    const TimePoint now = loop_.clock().now();
    const char* what = nullptr;
    std::string result = "ok";
    switch (e.kind) {
    case channel::Event::Kind::up:
        r.up_since = r.key_since = now;
        r.array_at[0].reset();
        r.array_at[1].reset();
        what = "event:up";
        break;
    case channel::Event::Kind::taken_over:
        r.up_since = r.key_since = now;
        what = "event:takeover";
        break;
    case channel::Event::Kind::rekey_done:
        r.last_rekey = r.key_since = now;
        r.last_rekey_ok = true;
        what = "event:rekey";
        break;
    case channel::Event::Kind::rekey_attempt_failed:
        r.last_rekey = now;
        r.last_rekey_ok = false;
        what = "event:rekey";
        result = "failed";
        break;
    case channel::Event::Kind::lost:
        what = "event:lost";
        result = std::string(reason_code(e.reason));
        break;
    case channel::Event::Kind::recovered: what = "event:recovered"; break;
    case channel::Event::Kind::closed:
        what = "event:closed";
        if (r.retiring) loop_.after(Duration::zero(), [this, remote] { finish_retire(remote); });
        break;
    case channel::Event::Kind::restarted: what = "event:restarted"; break;
    case channel::Event::Kind::array_active: r.array_at[e.array == channel::ArrayKind::data ? 0 : 1] = now; break;
    case channel::Event::Kind::array_flushed: r.array_at[e.array == channel::ArrayKind::data ? 0 : 1].reset(); break;
    default: break;
    }
    if (what && audit_) audit_->write({0, "p3d", what, std::to_string(remote.raw()), result});
    if (cluster_) cluster_channel_event(remote, e);
}

void Appliance::on_failed(RemoteId remote) {
    auto it = remotes_.find(remote);
    if (it == remotes_.end() || !it->second.session) return;  // before the first success: setup retries
    it->second.session->setup_failed();
}

void Appliance::Driver::start_setup() {
    Appliance* a = app;
    const RemoteId id = remote;
    a->loop_.after(Duration::zero(), [a, id] {
        // False while an exchange with this remote still runs: its result comes back anyway.
        if (a->setup_) a->setup_->connect(id.raw());
    });
}

}  // namespace p3::control

namespace p3::control {

// The one path of a role change (p3ctl cluster promote|demote, keepalived's notify): the
// dataplane takes or leaves the WAN address, the group hears ROLE (a new primary also sends
// its records), and the change is audited once.
bool Appliance::set_cluster_role(config::ClusterRole role) {
    const bool primary = role == config::ClusterRole::primary;
    const std::string target = "member " + std::to_string(cfg_.cluster.member);
    if (!dp_.set_cluster_role(primary)) {
        if (audit_) audit_->write({0, "p3d", "event:role", target, "refused: not a cluster member"});
        return false;
    }
    if (!primary && cfg_.cluster.director == config::ClusterDirector::none) release_control_sessions();
    const cluster::Role r = primary ? cluster::Role::primary : cluster::Role::backup;
    if (cluster_) cluster_->engine().set_role(r);   // its on_role calls our hook
    else if (on_role) on_role(r);
    if (audit_) audit_->write({0, "p3d", "event:role", target, std::string(cluster::role_name(r))});
    // A new primary carries on the control sessions other members held (failover: the old
    // primary can no longer reach the peers; without load balancing the primary holds them
    // all): from the replicated state, without a new setup exchange.
    if (primary && cluster_ && !cfg_.local.load_balance) {
        std::vector<std::uint32_t> ids;
        for (const auto& [id, rec] : cluster_->engine().sessions())
            if (rec.control && cluster_->engine().holder_of(id) != cfg_.cluster.member) ids.push_back(id);
        for (std::uint32_t id : ids) take_over(RemoteId(id), "this member became primary");
    }
    return true;
}

}  // namespace p3::control
