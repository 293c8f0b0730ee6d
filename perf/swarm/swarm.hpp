// p3-swarm: N secondaries in one process against one real p3d primary over a veth
// (perf/swarm/README-swarm.md). Each secondary is the project's own setup engine (initiator),
// then the project's control-channel Session (secondary) whose KeyInstaller / ControlLink is
// implemented here on one SlotTable that holds every secondary's key slots (session = the
// secondary's index, one outbound lane each): what a p3 secondary's dataplane does with its
// keys, without its workers. Packets are sealed and opened with the project's wire core.
#pragma once

#include <rte_mbuf.h>

#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "common/config.hpp"
#include "common/crypto.hpp"
#include "common/keygen.hpp"
#include "common/slots.hpp"
#include "control/channel/session.hpp"
#include "control/clock.hpp"
#include "control/event_loop.hpp"
#include "control/generator_keys.hpp"
#include "control/setup/setup_engine.hpp"
#include "perf/swarm/swarm_io.hpp"

namespace swarm {

namespace ch = p3::channel;

// Addresses and names: one place, used by the tool and by the configuration it writes for p3d.
struct Plan {
    std::uint32_t n = 20;
    std::uint32_t primary = (192u << 24) | (0u << 16) | (2u << 8) | 1;    // 192.0.2.1 (WAN)
    std::uint32_t gateway = (192u << 24) | (0u << 16) | (2u << 8) | 254;  // the "router" = the tool
    std::uint16_t port = 5653;
    std::string primary_identity = "primary.swarm.p3";
    std::uint32_t lan_dst = (10u << 24) | (100u << 16) | 1;               // 10.100.0.1: behind p3d's LAN gateway
    std::uint32_t primary_lanes = 1;   // p3d's worker lcores (lanes it sends on)
    std::string psk_seed = "p3-swarm";
    // Secondary i: WAN 198.18.0.0/15 from .1 (each its own /32 behind the router), LAN
    // 10.(64 + i / 256).(i % 256).0/24, identity s<i>.swarm.p3, its own pre-shared key.
    static std::uint32_t addr(std::uint32_t i) { return ((198u << 24) | (18u << 16)) + 1 + i; }
    static std::uint32_t lan(std::uint32_t i) { return (10u << 24) | ((64u + i / 256) << 16) | ((i % 256) << 8); }
    static std::string identity(std::uint32_t i) {
        char b[32];
        std::snprintf(b, sizeof b, "s%u.swarm.p3", i);
        return b;
    }
    std::string psk(std::uint32_t i) const { return psk_seed + " pre-shared key of secondary " + std::to_string(i); }
};

std::string ip_str(std::uint32_t host);

class Swarm;

// One secondary: setup engine, its SessionSink, the channel session and what the channel
// needs of a dataplane.
class Secondary final : public p3::setup::SessionSink,
                        public ch::KeyInstaller,
                        public ch::ControlLink,
                        public ch::SetupDriver {
public:
    Secondary(Swarm& s, std::uint32_t idx);
    ~Secondary() override;

    // setup::SessionSink
    std::optional<std::uint32_t> reserve_rx_id(std::uint32_t remote_id, std::uint32_t peer_lanes) override;
    std::uint32_t local_lanes() const override { return 1; }
    void release_rx_id(std::uint32_t rx_id) override;
    bool install(p3::setup::EstablishedSession&& s) override;
    void setup_failed(std::uint32_t remote_id, p3::Reason reason) override;
    // channel::KeyInstaller
    bool install_next_rx(const ch::KeyMaterial& data) override;
    void rx_switch_at(std::span<const std::uint64_t> first_seq) override;
    bool rx_next_seen() override;
    void promote_rx() override;
    void drop_next_rx() override;
    bool switch_tx(const ch::KeyMaterial& data, std::vector<std::uint64_t>& first_seq) override;
    std::uint64_t tx_packets() override;
    void session_down(p3::Reason why) override;
    // channel::ControlLink
    void send_control(std::span<const std::uint8_t> inner) override;
    // channel::SetupDriver
    void start_setup() override;

    // A data packet (the trickle): one UDP datagram from our LAN to the primary's.
    bool send_data();
    // An inner packet the wire core opened for us.
    void on_inner(const std::uint8_t* p, std::size_t len);

    std::uint32_t idx;
    std::uint32_t addr;
    std::unique_ptr<p3::setup::SetupEngine> engine;
    std::unique_ptr<ch::Session> session;
    bool keys = false;           // data slots installed
    double t_up = -1;            // seconds after the start of the bring-up (first setup)
    std::uint64_t data_sent = 0, data_seq = 0, ctl_in = 0, data_in = 0;
    std::uint64_t rekeys = 0, rekey_failures = 0, losses = 0, recoveries = 0, setup_failures = 0;

private:
    void drop_slots();
    bool seal_and_send(const std::uint8_t* inner, std::size_t len);

    Swarm& S_;
    std::uint32_t rx_base_ = 0, rx_width_ = 0;   // reserved, not yet published
    std::uint32_t keys_base_ = 0, peer_lanes_ = 0; // published (keys)
};

// What every secondary shares: the slot table, the wire engine, the raw port, the loops.
class Swarm final : public p3::setup::Transport {
public:
    Swarm(const Plan& plan, RawPort& port, const std::uint8_t our_mac[6], const std::uint8_t peer_mac[6]);
    ~Swarm() override;

    // setup::Transport: a setup datagram from a secondary's endpoint to the primary's.
    void send(const p3::setup::Endpoint& from, const p3::setup::Endpoint& to, p3::setup::ByteView d,
              p3::setup::Framing framing) override;
    // One frame off the veth.
    void on_frame(const std::uint8_t* f, std::size_t len);
    // Sends a sealed frame (mbuf: [14 room][outer IP ...]) and frees it.
    bool send_mbuf(rte_mbuf* m);
    double now_s() const;   // seconds since the bring-up started

    Plan plan;
    RawPort& port;
    std::uint8_t mac[6], peer_mac[6];
    p3::control::SteadyClock clock;
    p3::control::EventLoop loop{clock};
    p3::control::SystemRandom rng;
    p3::keys::KeyGenerator gen{p3::config::KeyGeneration::software};
    ch::GeneratorKeys keysrc{gen};
    rte_rcu_qsbr* qsbr = nullptr;
    std::unique_ptr<p3::wire::SlotTable> table;
    p3::wire::GcmEngine::Ptr gcm;
    rte_mempool* pool = nullptr;
    std::vector<std::unique_ptr<Secondary>> secs;
    p3::control::TimePoint t0{};
    std::uint32_t up = 0;   // secondaries whose first setup completed

    // what came in and went out
    std::uint64_t rx_frames = 0, rx_setup = 0, rx_p3 = 0, rx_other = 0;
    std::uint64_t rx_auth = 0, rx_replay = 0, rx_unknown_id = 0, rx_bad = 0, rx_next_retries = 0;
    std::uint64_t tx_setup = 0, tx_p3 = 0, tx_seal_failed = 0, no_mbuf = 0;
};

}  // namespace swarm
