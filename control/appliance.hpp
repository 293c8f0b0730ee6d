// The control plane of p3d: the Plane its control thread runs (control_thread.hpp).
//
//   setup UDP (MsgKind::setup_udp)  -> setup::SetupControlPlane (the IKEv2-format exchange)
//   control_in (decrypted, for us)  -> the channel::Session of its dataplane session id
//   poll()                          -> the setup engine's timers, then the channel's event loop
//
// Both reach the dataplane through one DataplanePort (dp_port.hpp): the setup engine as its
// SessionSink, each channel Session through a DataplanePort::Link.
//
// One channel Session per remote that is set up by the exchange (remotes with static keys have
// none: nothing negotiates their keys). It is created the first time the exchange with that
// remote completes and lives until stop():
//
//   no session --setup up--> Session::start
//   primary:    --setup up again (the secondary restarted)--> Session::restart
//   secondary:  session lost -> back-off -> SetupDriver::start_setup -> SetupControlPlane::connect
//               --setup up--> Session::setup_succeeded    --setup failed--> Session::setup_failed
//
// Before a secondary's first session is up, SetupControlPlane retries by itself (the back-off
// of backoff.hpp); from then on the session's recovery drives it.
//
// Administration (appliance_admin.cpp): the admin socket's commands (status, rekey, keyarray
// generate/flush, shutdown/start) by remote id, group or all, and each session's events (up,
// lost, rekey done/failed, recovered, restarted, closed) to the audit trail. Times the channel
// does not keep (up since, last rekey and its result, key and array ages) are taken from the
// session's events.
//
// The running configuration (appliance_config.cpp): this object owns it (a copy of the file
// p3d started with) and changes it only here, on the control thread: `remote add|set|remove`,
// `reload` and SIGHUP build a new Config, validated as a file is, diff it (config::diff) and
// apply only the difference: remotes added (dataplane session and routes, setup peer; a
// secondary connects), removed (goodbye, then setup peer and dataplane session go), changed in
// place (routes swapped without a gap, groups, credentials re-read) or, for anything the
// session was set up with, that one session ended with a goodbye and set up again. Settings
// outside remotes and groups are reported as needing a restart. `shutdown` ends a session
// with a goodbye and refuses its setup until `start`; `config save` writes the running
// configuration atomically, keeping the previous file.
//
// Stopping on purpose (wind_down(), p3d's SIGTERM/SIGINT through the control thread): every
// session up says goodbye (GoodbyeReason::stopping) and the setup engine stops, so no session
// comes up that would end without a word; quiet() once no goodbye is still waiting for its
// answer. stop() then ends whatever is left without a word.
//
// Control thread only (constructed and destroyed on p3d's main thread while the control thread
// does not run). Time: the control thread's clock (one for the setup engine, the channel's
// event loop and the dataplane's housekeeping); randomness: OpenSSL's DRBG; keys for rekeys and
// key arrays: the generator local.key_generation names.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <variant>
#include <vector>

#include "common/config.hpp"
#include "common/keygen.hpp"
#include "control/admin/admin_server.hpp"
#include "control/cluster/node.hpp"
#include "control/channel/session.hpp"
#include "control/clock.hpp"
#include "control/control_thread.hpp"
#include "control/dp_port.hpp"
#include "control/event_loop.hpp"
#include "control/generator_keys.hpp"
#include "control/setup/dp_control.hpp"

namespace p3::control {

class Appliance final : public Plane, public admin::CommandHandler {
public:
    // creds: nullopt = no setup exchange (every remote has static keys, or none can be set up).
    // cfg, gen, clock and port must outlive this object.
    Appliance(const config::Config& cfg, std::optional<setup::Credentials> creds, keys::KeyGenerator& gen,
              const Clock& clock, dp::ControlPort& port);
    ~Appliance() override;
    Appliance(const Appliance&) = delete;
    Appliance& operator=(const Appliance&) = delete;

    void start() override;
    void on_packet(rte_mbuf* m) override;
    void poll(TimePoint now) override;
    void stop() override;
    void wind_down() override;
    bool quiet() const override;

    // Read on the control thread or after stop.
    const channel::Session* session(RemoteId remote) const;
    const config::Config& running() const noexcept { return cfg_; }

    // SIGHUP: re-read the file on the control thread's next pass. Async-signal-safe.
    void request_reload() noexcept { reload_asked_.store(true, std::memory_order_relaxed); }

    // admin::CommandHandler (control thread).
    admin::Reply handle(const admin::Request& r, const admin::Caller& who) override;
    // Session events go to this audit trail from now on (nullptr: nowhere). Before start().
    void set_audit(admin::Audit* a) noexcept { audit_ = a; }
    std::uint64_t control_unclaimed() const noexcept { return control_unclaimed_; }

    // Cluster (docs/cluster.md): this member becomes primary or backup (p3ctl cluster
    // promote|demote). Control thread only. The dataplane takes or leaves the WAN address
    // (dp::ControlPort::set_cluster_role, logged P3-I0908), the engine sends ROLE to the group,
    // on_role is called and the change is audited once ("event:role").
    // false: not a cluster member (local.cluster_state = 0), nothing changed.
    bool set_cluster_role(config::ClusterRole role);
    config::ClusterRole cluster_role() const noexcept {
        return dp_.cluster_primary() ? config::ClusterRole::primary : config::ClusterRole::backup;
    }
    // Cluster (appliance_cluster.cpp, docs/cluster.md): with local.cluster_state = 1, start()
    // joins the CPG group with the configuration's cluster block. on_role: this member's role
    // changed (after the dataplane's, through set_cluster_role).
    std::function<void(cluster::Role)> on_role;
    const cluster::Node* cluster() const noexcept { return cluster_.get(); }

private:
    // The secondary's recovery asks for a new exchange: on the next poll, not from inside the
    // session's timer (the exchange may fail at once and call back into the session).
    struct Driver final : channel::SetupDriver {
        Appliance* app = nullptr;
        RemoteId remote;
        void start_setup() override;
    };
    struct Remote {
        SessionId sid;
        std::unique_ptr<DataplanePort::Link> link;
        std::unique_ptr<Driver> driver;
        std::unique_ptr<channel::Session> session;
        // For status: what the exchange said, and when things happened (from the events).
        std::string identity;
        std::uint32_t lanes_in = 0, lanes_out = 0;
        TimePoint up_since{}, key_since{};
        std::optional<TimePoint> last_rekey;
        bool last_rekey_ok = false;
        std::optional<TimePoint> array_at[2];
        // Secondary: the primary's subnets as it pushed them (routes follow these, not the file).
        std::vector<Prefix> pushed;
        bool retiring = false;     // removed or re-established: ends when the goodbye is done
        // In a cluster: what the other members get of this session (its keys), as last sent.
        std::optional<cluster::SessionRecord> replica;
    };

    void on_up(const setup::EstablishedSession& s, SessionId sid, std::uint32_t local_lanes, std::uint32_t peer_lanes);
    channel::SessionConfig session_config(const config::Remote& rc, const std::string& identity,
                                          const config::SessionParams& params) const;
    // A new channel session for r (the old one, if any, goes without a word to the peer).
    void new_channel(RemoteId remote, Remote& r, const DataplanePort::LinkIds& ids, channel::SessionConfig sc);
    void on_failed(RemoteId remote);
    const config::Remote* find_remote(RemoteId id) const;
    bool primary_role() const noexcept { return cfg_.role == config::Role::primary; }
    void on_event(RemoteId remote, const channel::Event& e);
    // appliance_admin.cpp
    nlohmann::json status_of(const config::Remote& rc, TimePoint now) const;
    nlohmann::json control_status() const;
    std::variant<std::vector<const config::Remote*>, admin::Reply> targets(const admin::Target& t) const;
    admin::Reply session_command(const admin::Request& r, const std::vector<const config::Remote*>& list);
    void shut(RemoteId id);
    void unshut(RemoteId id);
    // appliance_cluster.cpp
    void cluster_start();
    // This member holds the session's control session: the others get its keys
    // (docs/cluster.md §Replicated keys), at setup and at each step of a rekey.
    void replicate_up(RemoteId remote, const setup::EstablishedSession& s, std::uint32_t local_lanes,
                      std::uint32_t peer_lanes);
    void replicate_keys(RemoteId remote, DataplanePort::KeyStep step, const channel::KeyMaterial* k);
    void publish_replica(cluster::SessionRecord& rec);
    void apply_replica(const cluster::SessionRecord& rec);
    // A failover member become backup lets go of its control sessions, keeping their keys.
    void release_control_sessions();
    // One control session let go (no goodbye, no session_down): its keys stay as a replica of
    // the record this member published last.
    void release_one(RemoteId id, Remote& r);
    // Taking a control session over from the replicated state (docs/cluster.md §Taking over a
    // control session); false when it cannot (logged P3-W0934).
    bool take_over(RemoteId remote, const char* why);
    // The member that should hold a session's control session among `members`: the primary
    // (the lowest number without one), or with load_balance a rendezvous hash.
    std::uint8_t designated_holder(std::uint32_t remote, std::span<const cluster::Member> members) const;
    void on_cluster_members(std::span<const cluster::Member> members);
    std::set<std::uint8_t> members_seen_;   // in view at the last membership change
    void cluster_channel_event(RemoteId remote, const channel::Event& e);
    void hand_over(RemoteId remote, bool leaving = false);
    void withdraw(RemoteId remote);
    // Stopping with other members in the group: behind a director each held session goes to
    // the member designated among the others; in failover it is let go (the member promoted
    // next takes it over). Returns how many.
    unsigned cluster_leaving();
    std::uint64_t takeovers_ = 0, handovers_ = 0, releases_ = 0;
    // A rekey's switch held until the other members confirm the next inbound keys' record
    // (docs/cluster.md §Replicated keys): by remote.
    struct SwitchHold {
        std::uint32_t epoch = 0;               // the record they are to confirm (or a later one)
        std::set<std::uint8_t> waiting;        // members not yet heard from
        TimerId timer;
        TimePoint since{};
    };
    std::map<RemoteId, SwitchHold> holds_;
    static constexpr Duration kSwitchHoldMax = std::chrono::seconds(1);
    std::uint64_t switch_holds_ = 0, switch_unconfirmed_ = 0;
    bool hold_switch(RemoteId remote);
    void on_record_ack(std::uint8_t member, RemoteId remote, std::uint32_t epoch);
    void end_hold(RemoteId remote, bool timed_out);
    std::uint64_t replicas_installed_ = 0, replicas_dropped_ = 0;
    admin::Reply cluster_command(const admin::Request& r, const admin::Caller& who);
    // appliance_capture.cpp: p3ctl capture (docs/capture.md)
    admin::Reply capture_command(const admin::Request& r, const admin::Caller& who);
    // appliance_config.cpp
    admin::Reply config_command(const admin::Request& r, const admin::Caller& who);
    admin::Reply apply(config::Config next, bool reload);
    void end_session(RemoteId id, bool then_remove);
    void finish_retire(RemoteId id);
    void reload_now();

    config::Config cfg_;   // the running configuration (see above)
    dp::ControlPort& dp_;
    admin::Audit* audit_ = nullptr;
    SystemRandom random_;
    EventLoop loop_;
    channel::GeneratorKeys keys_;
    DataplanePort port_;
    std::unique_ptr<setup::SetupControlPlane> setup_;
    cluster::ClusterSettings cluster_settings_;
    std::unique_ptr<cluster::Node> cluster_;
    bool started_ = false;
    std::map<RemoteId, Remote> remotes_;
    std::map<SessionId, channel::Session*> by_sid_;   // the channel session of a dataplane session
    std::set<RemoteId> shut_;                          // shut down by an administrator
    std::atomic<bool> reload_asked_{false};
    bool stopping_ = false;   // wound down: no reload, no new session
    std::uint64_t control_unclaimed_ = 0, other_ = 0;
};

}  // namespace p3::control
