// The setup exchange inside p3d: the control thread's Plane for setup UDP. It takes the
// datagrams the workers hand to the control thread (MsgKind::setup_udp: Ethernet frames to
// local.port on the WAN), runs the SetupEngine, sends its datagrams back as IP packets the
// workers route out of the WAN (MsgKind::tx_ip), and installs established sessions through the
// DataplanePort (control/dp_port.hpp). Runs on the control thread only.
//
// A secondary connects to each remote at start, and after a failed attempt again after the
// back-off (control/backoff.hpp: 5 s, 5 s more per consecutive failure, at most 60 s;
// DESIGN.md §Session life 5), until the session is up once. From then on the control channel
// detects a loss and asks for a new exchange itself (connect(), from its SetupDriver), with
// the same back-off.
//
// The running configuration changes at run time (update(), set_enabled(): the Appliance, on
// the control thread): peers and keys follow in the engine, the retry state per remote here.
//
// IKE arrives on local.port and on local.nat_port: there the dataplane hands over the UDP
// datagrams whose first word is 0 (the non-ESP marker; P3 in UDP sets the flags' UDP bit,
// DESIGN.md §Wire format), so a standard initiator may float to 4500 (RFC 7296 §2.23). The
// framing goes with the datagram into the engine (setup_frame.hpp), which answers from the
// port and with the framing the request came with; nothing is kept here per peer.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <set>
#include <span>
#include <string>

#include "control/clock.hpp"
#include "control/control_thread.hpp"
#include "control/dp_port.hpp"
#include "control/setup/setup_engine.hpp"

namespace p3::setup {

class SetupControlPlane final : public control::Plane, private Transport, private SessionSink {
public:
    // cfg, clock, random and port must outlive this object.
    SetupControlPlane(const config::Config& cfg, Credentials creds, SetupOptions opts, const control::Clock& clock,
                      control::Random& random, control::DataplanePort& port);
    ~SetupControlPlane() override;

    // control::Plane (the control thread; p3d's Appliance forwards to these)
    void start() override;
    void on_packet(rte_mbuf* m) override;
    void poll(control::TimePoint now) override;
    void stop() override;

    // Wiring to the control channel (set before start; called on the control thread):
    // up = a session's data keys are installed (see DataplanePort::UpHook); failed = an
    // exchange failed (remote 0: not yet identified).
    void set_on_up(control::DataplanePort::UpHook h) { on_up_ = std::move(h); }
    void set_on_failed(std::function<void(std::uint32_t remote_id, Reason)> h) { on_failed_ = std::move(h); }
    // Secondary: set up the session with this remote again now (the channel's recovery, via
    // its SetupDriver). False while an exchange with it runs, or on a primary.
    bool connect(std::uint32_t remote_id);

    // The running configuration changed (cfg: the object this plane was built on, already
    // changed by its owner; nothing here keeps references into it across calls). Peers of the
    // `upsert` ids are added or replaced from cfg (their exchanges aborted), those of `removed`
    // dropped with their keys; every setup remote's psk_file is read again (the keys count
    // from the next exchange). Secondary: a new remote connects now, a removed one is
    // forgotten, a changed one not up yet connects now with its new settings (one that was up
    // stays with the control channel). False: some remote's key file is unusable, or an id is
    // not in cfg; why names them, everything else is applied (an old key stays in place).
    // Before start() only the keys are touched (start() reads cfg).
    bool update(const config::Config& cfg, std::span<const std::uint32_t> upsert,
                std::span<const std::uint32_t> removed, std::string& why);
    // The administrator's shutdown (off) and start (on) of a remote. Off: no setup exchange
    // with it in either role (SetupEngine::set_enabled). Secondary: on = connect now, then the
    // back-off until the session is up. Kept across start(); forgotten when the remote is removed.
    void set_enabled(std::uint32_t remote_id, bool on);

    // ESP remotes (wire = "esp"): their IKE SA stays up instead of a control channel.
    // close: our IKE DELETE (shutdown, removal, stop) and the session's keys cleared; false: no
    // ESP session with it. rekey: a child SA rekey now. up: its IKE SA and child SA are up.
    bool esp_close(std::uint32_t remote_id);
    bool esp_rekey(std::uint32_t remote_id) { return engine_ && engine_->esp_rekey(remote_id); }
    bool esp_up(std::uint32_t remote_id) const { return engine_ && engine_->esp_up(remote_id); }
    void set_on_esp_down(std::function<void(std::uint32_t remote_id, Reason)> h) { on_esp_down_ = std::move(h); }

    // Read from the control thread (or after stop).
    const SetupEngine* engine() const noexcept { return engine_.get(); }
    std::uint64_t not_setup() const noexcept { return not_setup_; }    // setup_udp frames we could not read
    std::uint64_t send_failed() const noexcept { return send_failed_; }
    std::uint64_t sessions_up() const noexcept { return up_; }

private:
    // Transport
    void send(const Endpoint& from, const Endpoint& to, ByteView datagram, Framing framing) override;
    // SessionSink: forwards to the DataplanePort, keeps the retry state of a secondary.
    std::optional<std::uint32_t> reserve_rx_id(std::uint32_t remote_id, std::uint32_t peer_lanes) override;
    std::uint32_t local_lanes() const override;
    std::uint32_t lanes_for(std::uint32_t remote_id) const override;
    void release_rx_id(std::uint32_t rx_id) override;
    bool install(EstablishedSession&& s) override;
    void setup_failed(std::uint32_t remote_id, Reason reason) override;
    bool esp_install_rx(std::uint32_t remote_id, std::uint32_t spi, const DirectionKeys& k, bool esn) override;
    bool esp_install_tx(std::uint32_t remote_id, std::uint32_t spi, const DirectionKeys& k, bool esn) override;
    void esp_remove_rx(std::uint32_t remote_id, std::uint32_t spi) override;
    void esp_down(std::uint32_t remote_id, Reason reason) override;
    std::uint64_t esp_tx_packets(std::uint32_t remote_id) override;

    void connect_due();
    Credentials& creds() noexcept { return engine_ ? engine_->credentials() : creds_; }

    const config::Config& cfg_;
    Credentials creds_;
    SetupOptions opts_;
    const control::Clock& clock_;
    control::Random& random_;
    control::DataplanePort& port_;
    bool started_ = false;
    control::DataplanePort::UpHook on_up_;
    std::function<void(std::uint32_t, Reason)> on_failed_;
    std::function<void(std::uint32_t, Reason)> on_esp_down_;
    std::unique_ptr<SetupEngine> engine_;

    struct Retry {
        unsigned failures = 0;
        control::TimePoint next{};
        bool up = false;
    };
    std::map<std::uint32_t, Retry> retry_;                       // secondary: per remote
    std::set<std::uint32_t> disabled_;                           // shut down by the administrator
    std::uint64_t not_setup_ = 0, send_failed_ = 0, up_ = 0;
    control::TimePoint timers_checked_{};
};

}  // namespace p3::setup
