// The control plane of p3d: what runs on the dataplane's control thread (one dp::ControlPlane).
//
//   setup UDP (MsgKind::setup_udp)  -> setup::SetupControlPlane (the IKEv2-format exchange)
//   control_in (decrypted, for us)  -> the channel::Session of its dataplane session id
//   poll()                          -> the setup engine's timers, then the channel's event loop
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
// Before a secondary's first session is up, SetupControlPlane retries by itself (5 s, +5 s per
// failure, at most 60 s); from then on the session's recovery drives it.
//
// Control thread only (constructed and destroyed on p3d's main thread while the control thread
// does not run). Time: the monotonic clock; randomness: OpenSSL's DRBG; keys for rekeys and key
// arrays: the generator local.key_generation names.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>

#include "common/config.hpp"
#include "common/keygen.hpp"
#include "control/channel/dp_link.hpp"
#include "control/channel/session.hpp"
#include "control/clock.hpp"
#include "control/event_loop.hpp"
#include "control/setup/dp_control.hpp"
#include "dataplane/control_iface.hpp"

namespace p3::control {

class Appliance final : public dp::ControlPlane {
public:
    // creds: nullopt = no setup exchange (every remote has static keys, or none can be set up).
    // cfg and gen must outlive this object.
    Appliance(const config::Config& cfg, std::optional<setup::Credentials> creds, keys::KeyGenerator& gen);
    ~Appliance() override;
    Appliance(const Appliance&) = delete;
    Appliance& operator=(const Appliance&) = delete;

    void start(dp::Dataplane& dp) override;
    void on_packet(dp::Dataplane& dp, rte_mbuf* m) override;
    void poll(dp::Dataplane& dp, std::uint64_t now_ms) override;
    void stop(dp::Dataplane& dp) override;

    // Read on the control thread or after stop.
    const channel::Session* session(std::uint32_t remote_id) const;
    std::uint64_t control_unclaimed() const noexcept { return control_unclaimed_; }

private:
    // The secondary's recovery asks for a new exchange: on the next poll, not from inside the
    // session's timer (the exchange may fail at once and call back into the session).
    struct Driver final : channel::SetupDriver {
        Appliance* app = nullptr;
        std::uint32_t remote_id = 0;
        void start_setup() override;
    };
    struct Remote {
        std::uint32_t sid = 0;
        std::unique_ptr<channel::DataplaneLink> link;
        std::unique_ptr<Driver> driver;
        std::unique_ptr<channel::Session> session;
    };

    void on_up(const setup::EstablishedSession& s, std::uint32_t sid, std::uint32_t local_lanes,
               std::uint32_t peer_lanes);
    void on_failed(std::uint32_t remote_id);
    const config::Remote* find_remote(std::uint32_t id) const;

    const config::Config& cfg_;
    SteadyClock clock_;
    SystemRandom random_;
    EventLoop loop_;
    channel::GeneratorKeys keys_;
    std::unique_ptr<setup::SetupControlPlane> setup_;
    dp::Dataplane* dp_ = nullptr;
    std::map<std::uint32_t, Remote> remotes_;          // by remote id
    std::map<std::uint32_t, channel::Session*> by_sid_;  // dataplane session id -> its session
    std::uint64_t control_unclaimed_ = 0, other_ = 0;
};

}  // namespace p3::control
