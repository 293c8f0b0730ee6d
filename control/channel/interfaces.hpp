// The narrow interfaces between a control-channel session and the rest of the appliance.
// The session never touches key slots, rings or sockets: it calls these, and tests plug in
// fakes (tests/control/channel_sim.hpp) while p3d plugs in the dataplane and the setup engine.
//
//   KeyInstaller  the dataplane's key slots for ONE session (the dataplane keeps one adapter
//                 per session): build inbound slots, switch outbound, retire, report traffic.
//   ControlLink   hands a control-layer inner packet to the dataplane, which encrypts it with
//                 the current data key and sends it like any packet.
//   SetupDriver   (secondary) starts a new setup exchange towards the primary when the session
//                 is being recovered; the result comes back as Session::setup_succeeded/failed.
//   KeySource     fresh key material: the software or hardware generator (key_generation).
#pragma once

#include <cstdint>
#include <optional>
#include <span>

#include "common/reasons.hpp"
#include "control/channel/framing.hpp"

namespace p3::channel {

class KeyInstaller {
public:
    virtual ~KeyInstaller() = default;
    // Builds inbound slots for `lanes` lanes (lane n derived from `data` per DESIGN.md) and
    // publishes them (RCU). Returns the base P3 ID the peer must put on its packets (lane n
    // uses base + n), or nullopt when refused (no free slot). Must be ready to decrypt when it
    // returns: the peer may switch as soon as it hears of the ID.
    virtual std::optional<std::uint32_t> install_rx(const KeyMaterial& data, std::uint32_t lanes) = 0;
    // From now on, send under these keys with P3 ID base peer_p3_id (lane n: + n), sequences
    // from 1. False when refused (the session then counts a failed rekey attempt).
    virtual bool switch_tx(std::uint32_t peer_p3_id, const KeyMaterial& data, std::uint32_t lanes) = 0;
    // Unpublish the inbound slots of this base ID; free and wipe them after the RCU grace period.
    virtual void retire_rx(std::uint32_t p3_id) = 0;
    // True once a packet authenticated under the inbound slots of this base ID (a flag the
    // workers set; polled once per second).
    virtual bool rx_seen(std::uint32_t p3_id) = 0;
    // Packets sent under the current outbound keys (the busiest lane): the packet-count limit.
    virtual std::uint64_t tx_packets() = 0;
    // The session is lost: drop every slot of it and answer LAN traffic towards its subnets
    // with TCP RST / ICMP unreachable (rate limited) until it is set up again.
    virtual void session_down(Reason why) = 0;
};

class ControlLink {
public:
    virtual ~ControlLink() = default;
    virtual void send_control(std::span<const std::uint8_t> inner_packet) = 0;
};

class SetupDriver {
public:
    virtual ~SetupDriver() = default;
    virtual void start_setup() = 0;
};

class KeySource {
public:
    virtual ~KeySource() = default;
    // Fills out with fresh key material; false when the generator failed (nothing is sent then).
    virtual bool fill(std::span<std::uint8_t> out) noexcept = 0;
};

}  // namespace p3::channel
