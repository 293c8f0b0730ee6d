// What the cluster replicates and what it tells the rest of p3d (docs/cluster.md
// §Membership and replication): the records carried by the engine (engine.hpp) and the sink
// that receives them on every member. Secrets (lane key material) are SecretBytes: wiped when
// freed, never formatted.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

#include "common/secret.hpp"

namespace p3::cluster {

enum class Role : std::uint8_t { backup = 0, primary = 1 };
inline std::string_view role_name(Role r) noexcept { return r == Role::primary ? "primary" : "backup"; }

inline constexpr unsigned kMaxMembers = 16;
inline constexpr std::size_t kMaxIds = 64;          // P3 IDs per direction in one record
inline constexpr std::size_t kMaxKeyMaterial = 64;  // key||salt: 36 bytes for AES-256
inline constexpr std::size_t kMaxControlEpochs = 8; // inbound control keys in one record (channel::limits::kMaxRxEpochs)

// A session's control channel as the holder last published it (channel::ChannelState, key
// material as key||salt): what another member takes the control session over from
// (docs/cluster.md §Taking over a control session).
struct ControlRecord {
    struct Rx {
        std::uint32_t epoch = 0;
        std::uint64_t top = 0;
        SecretBytes ctl;
    };
    std::uint32_t tx_epoch = 0;
    std::uint64_t tx_seq = 0;
    SecretBytes tx_ctl;
    std::uint32_t peer_tx_epoch = 0, next_epoch = 0, next_msg_id = 0, next_rx_epoch = 0;
    std::uint8_t key_type = 0;     // config::KeyType the setup negotiated
    std::vector<Rx> rx;

    ControlRecord clone() const {
        ControlRecord c;
        c.tx_epoch = tx_epoch;
        c.tx_seq = tx_seq;
        c.tx_ctl = tx_ctl.clone();
        c.peer_tx_epoch = peer_tx_epoch;
        c.next_epoch = next_epoch;
        c.next_msg_id = next_msg_id;
        c.next_rx_epoch = next_rx_epoch;
        c.key_type = key_type;
        for (const auto& r : rx) c.rx.push_back(Rx{r.epoch, r.top, r.ctl.clone()});
        return c;
    }
};

// One session's state as every member needs it to take the session over: key material is
// what HKDF derives all lanes from (common/lanes.hpp), so one record serves every member.
struct SessionRecord {
    std::uint32_t remote_id = 0;
    std::uint32_t epoch = 0;
    std::array<std::uint8_t, 16> peer_addr{};   // IPv4 in the first 4 bytes when !peer_v6
    bool peer_v6 = false;
    std::uint16_t peer_port = 0;
    std::uint8_t wire = 0;                       // config::WireMode
    std::uint16_t lanes = 0;
    std::vector<std::uint32_t> rx_ids, tx_ids;   // P3 IDs
    SecretBytes rx_cur, rx_next, tx_cur, tx_next;
    std::uint64_t rx_switch = 0, tx_switch = 0;  // switch points (sequence numbers)
    std::uint8_t holder = 0;     // the member holding the control session (it publishes the record)
    std::uint8_t handover = 0;   // load balancing: the member asked to take the control session over
    std::optional<ControlRecord> control;   // once the holder's channel is up
    // The session went down at its holder (lost, or shut by an administrator): every member
    // drops its keys. No keys, no channel state travel with it.
    bool withdrawn = false;

    SessionRecord clone() const {
        SessionRecord r;
        r.remote_id = remote_id;
        r.epoch = epoch;
        r.peer_addr = peer_addr;
        r.peer_v6 = peer_v6;
        r.peer_port = peer_port;
        r.wire = wire;
        r.lanes = lanes;
        r.rx_ids = rx_ids;
        r.tx_ids = tx_ids;
        r.rx_cur = rx_cur.clone();
        r.rx_next = rx_next.clone();
        r.tx_cur = tx_cur.clone();
        r.tx_next = tx_next.clone();
        r.rx_switch = rx_switch;
        r.tx_switch = tx_switch;
        r.holder = holder;
        r.handover = handover;
        r.withdrawn = withdrawn;
        if (control) r.control = control->clone();
        return r;
    }
};

// A member as the engine knows it (from its HELLOs and the group's membership).
struct Member {
    std::uint8_t number = 0;
    Role role = Role::backup;
    bool self = false;
    std::uint64_t boot_id = 0;
    std::uint64_t applied = 0;         // state version it has applied (HELLO)
    std::uint64_t last_heard_ms = 0;   // engine clock, ms
    bool config_differs = false;       // its HELLO's configuration digest is not ours
};

struct ReplicaSink {
    virtual ~ReplicaSink() = default;
    virtual void on_session(const SessionRecord&) = 0;
    virtual void on_role(std::uint8_t member, Role role) = 0;
    virtual void on_members(std::span<const Member>) = 0;
    // A control-channel packet another member received for a session whose control session
    // this member holds: fed to the session's channel as if this dataplane had delivered it.
    // false: no such session here (dropped, counted by the engine).
    virtual bool on_control(std::uint32_t /*remote_id*/, std::span<const std::uint8_t> /*bytes*/) { return false; }
    // Member `member` applied this member's record `epoch` of the remote (AckMsg).
    virtual void on_ack(std::uint8_t /*member*/, std::uint32_t /*remote_id*/, std::uint32_t /*epoch*/) {}
};

}  // namespace p3::cluster
