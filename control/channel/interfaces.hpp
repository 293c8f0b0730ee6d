// The narrow interfaces between a control-channel session and the rest of the appliance.
// The session never touches key slots, rings or sockets: it calls these, and tests plug in
// fakes (tests/control/channel_sim.hpp) while p3d plugs in the dataplane and the setup engine.
//
//   KeyInstaller  the dataplane's key slots for ONE session (the dataplane keeps one adapter
//                 per session): next inbound keys, switch points, promotion, outbound switch.
//   ControlLink   hands a control-layer inner packet to the dataplane, which encrypts it with
//                 the current data key and sends it like any packet.
//   SetupDriver   (secondary) starts a new setup exchange towards the primary when the session
//                 is being recovered; the result comes back as Session::setup_succeeded/failed.
//   KeySource     fresh key material: the software or hardware generator (key_generation).
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <vector>

#include "common/reasons.hpp"
#include "control/channel/framing.hpp"

namespace p3::channel {

class KeyInstaller {
public:
    virtual ~KeyInstaller() = default;
    // The lanes and their P3 IDs were fixed when the session was set up; a rekey changes keys
    // only (docs/key-slots.md). Lane n's key is derived from `data` per DESIGN.md.
    //
    // The next key of every inbound lane (lanes = the peer's lanes from setup); replaces a
    // pending next key. Ready to decrypt when it returns: the peer may switch as soon as it
    // hears we hold it. False: refused (the attempt fails).
    virtual bool install_next_rx(const KeyMaterial& data) = 0;
    // The peer announced its switch: its lane n sends under the next key from first_seq[n].
    virtual void rx_switch_at(std::span<const std::uint64_t> first_seq) = 0;
    // A packet authenticated under a pending next key on some lane (polled once a second).
    virtual bool rx_next_seen() = 0;
    // Every lane with a next key: it becomes the current key from its switch point (announced,
    // else learned, else 1); the old key is wiped after the grace period.
    virtual void promote_rx() = 0;
    // Pending next keys go (wiped after the grace period); the current keys stay.
    virtual void drop_next_rx() = 0;
    // After the next inbound keys are in, before our switch is announced (the peer switches
    // its own sending on hearing it): whether others must also hold those keys first (the
    // other members of a cluster, which receive the peer's packets too: docs/cluster.md
    // §Replicated keys). true: `ready` is called once they do, or a bound passed; false: now.
    virtual bool hold_switch(std::function<void()> ready) {
        (void)ready;
        return false;
    }
    // Every outbound lane to these keys; first_seq is resized to the local lanes and holds the
    // first sequence each lane sends under them. False: refused, nothing changed.
    virtual bool switch_tx(const KeyMaterial& data, std::vector<std::uint64_t>& first_seq) = 0;
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
