// The setup engine on a kernel UDP socket, driven by the control thread's EventLoop: used
// where the setup exchange does not come through the dataplane's rings (tests over loopback,
// the interoperability responder, appliances whose WAN is a kernel interface).
//
// It owns a socket bound to local.address:local.port and, on a primary, a second one on
// local.nat_port (RFC 7296 §2.23: an initiator that detects a NAT, or that always encapsulates,
// moves the exchange to port 4500 after IKE_SA_INIT). It feeds every datagram to the engine
// with the address it arrived on, sends what the engine sends from the socket of the engine's
// chosen local port, and keeps one loop timer armed at the engine's next deadline.
//
// RFC 3948 framing: a peer that floated to NAT-T sends IKE with a 4-byte zero "non-ESP
// marker" in front. The marker is stripped on receipt and the engine told (Framing); what it
// sends back to that exchange carries the marker again. Nothing is kept here per peer. A 1-byte 0xff datagram is a NAT keepalive (ignored).
// Anything else that does not start with the marker on a peer that uses it would be ESP; ESP
// in UDP is the dataplane's, not ours: it fails to decode as IKE and is counted as malformed.
#pragma once

#include <memory>
#include <string>

#include "control/event_loop.hpp"
#include "control/setup/setup_engine.hpp"

namespace p3::setup {

class UdpSetup final : private Transport {
public:
    UdpSetup(control::EventLoop& loop, const config::Config& cfg, Credentials creds, SetupOptions opts,
             control::Random& random, SessionSink& sink);
    ~UdpSetup() override;
    UdpSetup(const UdpSetup&) = delete;
    UdpSetup& operator=(const UdpSetup&) = delete;

    // Binds the socket and registers it with the loop. False with error set on failure.
    bool open(std::string& error);
    // Secondary: start the exchange with every configured remote (its primary).
    void connect_all();
    SetupEngine& engine() noexcept { return *engine_; }
    std::uint64_t send_errors() const noexcept { return send_errors_; }

private:
    void send(const Endpoint& from, const Endpoint& to, ByteView datagram, Framing framing) override;
    struct Socket {
        int fd = -1;
        Endpoint local;
    };
    bool open_one(const Endpoint& local, std::string& error);
    void on_readable(const Socket& s);
    void rearm();

    control::EventLoop& loop_;
    Endpoint local_;
    std::uint16_t nat_port_ = 0;         // 0: no second socket
    std::vector<std::uint32_t> remotes_;
    std::unique_ptr<SetupEngine> engine_;
    std::vector<Socket> sockets_;
    control::TimerId timer_{};
    control::TimePoint timer_at_{};
    std::uint64_t send_errors_ = 0;
};

}  // namespace p3::setup
