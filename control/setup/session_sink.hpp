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
    virtual void release_rx_id(std::uint32_t rx_id) = 0;
    // Install the session's inbound and outbound keys. Called before the last message of the
    // exchange is sent (responder) or as soon as it is received (initiator), so inbound keys
    // are in place before the peer can send under them. False: refused (setup fails).
    virtual bool install(EstablishedSession&& s) = 0;
    // The exchange for this remote failed (after logging). remote_id 0: not yet known.
    virtual void setup_failed(std::uint32_t remote_id, Reason reason) { (void)remote_id; (void)reason; }
};

// How a datagram is framed on its UDP port: plain IKE, or behind RFC 3948's 4-byte zero
// non-ESP marker (a peer that floated to a port shared with ESP or P3 in UDP). The engine
// answers a peer the way its request came.
enum class Framing : std::uint8_t { plain, non_esp_marker };

// Where the engine's datagrams go (UDP socket, or a test queue).
class Transport {
public:
    virtual ~Transport() = default;
    virtual void send(const Endpoint& from, const Endpoint& to, ByteView datagram, Framing framing) = 0;
};

}  // namespace p3::setup
