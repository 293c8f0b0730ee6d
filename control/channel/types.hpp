// The values a control-channel session shows the rest of the appliance: its configuration, the
// keys a setup exchange hands it, its states, the events it reports and its counters. The
// session's units (session.hpp lists them) share these; nothing here has behaviour.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/config.hpp"
#include "common/reasons.hpp"
#include "control/channel/framing.hpp"
#include "control/channel/messages.hpp"
#include "control/clock.hpp"

namespace p3::channel {

using control::Duration;
using control::TimePoint;

struct SessionConfig {
    config::Role role = config::Role::primary;
    std::uint32_t remote_id = 0;
    std::string name;                  // for log lines ("remote 7 (192.0.2.2)")
    FrameAddrs addrs;                  // WAN addresses, session port
    config::SessionParams params;      // resolved (groups and per-remote overrides applied)
    // Rekey instants and array chunks are jittered by draws from the session's Random (a test
    // seeds it); false makes every jitter factor 1 (tests that step exact times).
    bool jitter = true;
};

// The keys a setup exchange produced: epoch 0. The setup engine has already installed the
// data keys of every lane in the dataplane (setup::SessionSink), so only the control keys and
// the lane counts matter here; the P3 IDs (fixed for the session's life) are for log lines.
struct InitialKeys {
    std::uint32_t rx_p3_id = 0;        // we receive on
    std::uint32_t tx_p3_id = 0;        // we send with
    KeyMaterial control_tx, control_rx;
    std::uint32_t local_lanes = 1;     // lanes we send on
    std::uint32_t peer_lanes = 1;      // lanes the peer sends on
};

// A control channel as another cluster member needs it to carry the session on without a new
// setup exchange (Session::replica_state and take_over; docs/cluster.md §Taking over a control
// session). Key material is in KeyMaterial (SecretBytes: wiped when freed).
struct ChannelState {
    struct Rx {
        std::uint32_t epoch = 0;
        KeyMaterial ctl;
        std::uint64_t top = 0;           // the highest sequence authenticated under it
    };
    std::uint32_t tx_epoch = 0;
    KeyMaterial tx_ctl;
    std::uint64_t tx_seq = 0;            // the last sequence sent under tx_epoch
    std::vector<Rx> rx;                  // inbound control keys, by epoch
    std::uint32_t peer_tx_epoch = 0;
    std::uint32_t next_epoch = 1;        // the epoch of the next rekey attempt
    std::uint32_t next_msg_id = 1;
    std::uint32_t next_rx_epoch = 0;     // next inbound data keys pending under this epoch (0: none)
    std::uint32_t local_lanes = 1, peer_lanes = 1;
    std::uint32_t rx_p3_id = 0, tx_p3_id = 0;   // for log lines
};

// closing: a goodbye went out (Session::shutdown with a reason); closed follows at its ack or
// after limits::kGoodbyeWait.
enum class SessionState { idle, up, lost, retrying, closed, closing };
std::string_view session_state_name(SessionState s) noexcept;

enum class RekeyTrigger : std::uint8_t { timer = 1, admin = 2, packet_limit = 3, peer_ask = 4 };

// What happened, for tests and the admin socket (log lines say the same with reason codes).
struct Event {
    enum class Kind {
        up, rekey_started, rekey_done, rekey_attempt_failed, lost, retry_scheduled, retry_started,
        recovered, restarted, array_active, array_flushed, array_index_used, rx_retired, tx_switched,
        rx_promoted,      // the next inbound data keys became the current ones (old wiped)
        rx_next_dropped,  // pending next inbound data keys dropped (the peer never switched)
        closed,           // shut down (Session::shutdown): at once, or when the goodbye ended
        taken_over,       // up from another cluster member's replicated state (Session::take_over)
        replica_due,      // cluster: the sequences sent since the last replica_state() near the margin
    };
    Kind kind;
    std::uint32_t epoch = 0;
    ArrayKind array = ArrayKind::data;
    std::uint32_t gen = 0, index = 0;
    std::uint32_t p3_id = 0;
    Duration delay{};
    Reason reason = Reason::INTERNAL;
};

struct SessionStats {
    std::uint64_t sent = 0, received = 0, retransmits = 0, request_timeouts = 0;
    std::uint64_t frame_errors = 0, auth_failures = 0, replays = 0, unknown_epoch = 0;
    std::uint64_t unexpected = 0, peer_errors = 0;
    ParseStats parse;
    std::uint64_t heartbeats_sent = 0, heartbeats_answered = 0;
    std::uint64_t rekeys_done = 0, rekey_attempts_failed = 0, rekey_stale = 0, dh_failures = 0;
    std::uint64_t rx_promotions = 0, rx_next_drops = 0;
    std::uint64_t arrays_delivered = 0, indices_used = 0, keys_retired = 0;
    std::uint64_t losses = 0, recoveries = 0;
};

}  // namespace p3::channel
