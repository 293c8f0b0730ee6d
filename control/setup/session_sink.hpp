// The narrow interface between the setup exchange and the dataplane. The setup engine never
// touches key slots: when a session is established it hands an EstablishedSession (negotiated
// parameters and the first data and control keys, both directions) to a SessionSink, which the
// dataplane implements by building key slots for every lane and publishing them (RCU).
// Tests implement it with a recorder.
//
// P3 IDs are chosen by the receiver (DESIGN.md): before proposing or accepting a child SA the
// engine asks the sink to reserve the P3 ID this side will receive on; that ID is the child
// SA's SPI. Lane n uses ID base + n (the dataplane reserves the block). A reservation is
// released if the exchange fails.
#pragma once

#include <optional>
#include <string>

#include "common/config.hpp"
#include "common/net.hpp"
#include "common/reasons.hpp"
#include "common/secret.hpp"
#include "control/setup/config_push.hpp"
#include "control/setup/ike_types.hpp"

namespace p3::setup {

struct Endpoint {
    IpAddr addr;
    std::uint16_t port = 0;
    bool operator==(const Endpoint&) const = default;
    std::string str() const;
};

// How a datagram is framed on its UDP port: plain IKE, or behind RFC 3948's 4-byte zero
// non-ESP marker (a peer that floated to a port shared with ESP or P3 in UDP). The engine
// answers a peer the way its request came.
enum class Framing : std::uint8_t { plain, non_esp_marker };

struct DirectionKeys {
    SecretBytes key;   // 16 (AES-128) or 32 (AES-256) bytes
    SecretBytes salt;  // 4 bytes
};

struct EstablishedSession {
    std::uint32_t remote_id = 0;       // the configured remote (on a secondary: its primary)
    std::string peer_identity;         // as authenticated, printable
    config::Role local_role = config::Role::secondary;
    Endpoint local, peer;              // setup exchange endpoints as seen by this side
    bool local_behind_nat = false;     // NAT detection (RFC 7296 §2.23)
    bool peer_behind_nat = false;
    config::KeyType key_type = config::KeyType::aes128;
    std::uint32_t rx_p3_id = 0;        // we receive on this P3 ID (our child SA SPI)
    std::uint32_t tx_p3_id = 0;        // we send with this P3 ID (the peer's child SA SPI)
    DirectionKeys data_tx, data_rx, control_tx, control_rx;
    PushedConfig config;               // what the primary pushed (both sides hold the same)
    Spi ike_spi_i, ike_spi_r;
    // wire = "esp": rx_p3_id / tx_p3_id are the child SA's SPIs (ours, the peer's), data_* its
    // keys; no control keys are used and nothing is pushed.
    config::WireMode wire = config::WireMode::p3;
    bool esn = false;                  // ESP: extended sequence numbers negotiated
    Framing framing{};                 // how the peer frames IKE (behind the marker: it floated to nat_port)

    bool nat() const noexcept { return local_behind_nat || peer_behind_nat; }
};

class SessionSink {
public:
    virtual ~SessionSink() = default;
    // The first of a block of P3 IDs this side will receive on for the remote, one per lane
    // the peer sends on: peer_lanes as the peer announced it (notify p3_lanes), 0 = not
    // announced (the sink reserves for the most lanes a peer may use). nullopt: none free.
    virtual std::optional<std::uint32_t> reserve_rx_id(std::uint32_t remote_id, std::uint32_t peer_lanes) = 0;
    // Lanes this side sends on, announced to the responder in IKE_AUTH; 0 = do not announce.
    virtual std::uint32_t local_lanes() const { return 0; }
    // The same for one remote: its lanes setting when it has one (remotes[].lanes), else
    // local_lanes(). What is announced (notify p3_lanes) and pushed (primary_lanes) for it.
    virtual std::uint32_t lanes_for(std::uint32_t remote_id) const {
        (void)remote_id;
        return local_lanes();
    }
    virtual void release_rx_id(std::uint32_t rx_id) = 0;
    // Install the session's inbound and outbound keys. Called before the last message of the
    // exchange is sent (responder) or as soon as it is received (initiator), so inbound keys
    // are in place before the peer can send under them. False: refused (setup fails).
    virtual bool install(EstablishedSession&& s) = 0;
    // The exchange for this remote failed (after logging). remote_id 0: not yet known.
    virtual void setup_failed(std::uint32_t remote_id, Reason reason) { (void)remote_id; (void)reason; }

    // ESP remotes after setup (CREATE_CHILD_SA, INFORMATIONAL): one SA per direction under
    // SPIs reserved with reserve_rx_id(remote, 1). esp_install_rx: another inbound SA (the old
    // ones keep decrypting); esp_install_tx: the outbound SA replaced as a whole;
    // esp_remove_rx: one inbound SA retired; esp_down: every key of the session cleared (the
    // IKE SA is gone: peer's DELETE, dead peer). The defaults refuse / do nothing.
    virtual bool esp_install_rx(std::uint32_t remote_id, std::uint32_t spi, const DirectionKeys& k, bool esn) {
        (void)remote_id, (void)spi, (void)k, (void)esn;
        return false;
    }
    virtual bool esp_install_tx(std::uint32_t remote_id, std::uint32_t spi, const DirectionKeys& k, bool esn) {
        (void)remote_id, (void)spi, (void)k, (void)esn;
        return false;
    }
    virtual void esp_remove_rx(std::uint32_t remote_id, std::uint32_t spi) { (void)remote_id, (void)spi; }
    virtual void esp_down(std::uint32_t remote_id, Reason reason) { (void)remote_id, (void)reason; }
    // Packets sent under the current outbound SA (no ESN: rekey before 2^32).
    virtual std::uint64_t esp_tx_packets(std::uint32_t remote_id) { (void)remote_id; return 0; }
};


// Where the engine's datagrams go (UDP socket, or a test queue).
class Transport {
public:
    virtual ~Transport() = default;
    virtual void send(const Endpoint& from, const Endpoint& to, ByteView datagram, Framing framing) = 0;
};

}  // namespace p3::setup
