// One session's control channel on the control thread's event loop (DESIGN.md §Session life
// 2-5; docs/control-channel.md has the state machines and the crossing rule).
//
// Session states:   idle --start()--> up --lost (heartbeat / rekey)--> lost
//                   lost --(secondary) back-off timer--> retrying --setup_succeeded--> up
//                   retrying --setup_failed--> lost (next back-off: 5, 10, ... 60, 60 s)
//                   any --shutdown()--> closed;  up --restart() (primary: peer set up anew)--> up
//
// Primary exchanges, one in flight at a time (queue; a rekey already queued or in flight
// absorbs a new trigger):
//   rekey:   request_sent --status ok--> switch_sent --switch ack--> done
//            (status not ok / no answer: attempt failed; retry with fresh keys up to
//             kRekeyAttempts in all, then the session is lost and recovered)
//   deliver: chunk 0 .. chunk n-1, each acknowledged, then the array is active
//   flush:   flush --ack--> (optionally deliver)
// Secondary: answers, and asks for a rekey (rekey_ask) at its packet-count limit.
// Inbound keys per epoch stay until traffic under a newer epoch authenticated (+kRetireLinger)
// or the peer announced its switch (+kRetireTimeout); then they are retired and wiped.
#pragma once

#include <array>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "common/config.hpp"
#include "common/reasons.hpp"
#include "control/channel/framing.hpp"
#include "control/channel/interfaces.hpp"
#include "control/channel/messages.hpp"
#include "control/clock.hpp"
#include "control/event_loop.hpp"

namespace p3::channel {

using control::Duration;
using control::EventLoop;
using control::Random;
using control::TimePoint;
using control::TimerId;

struct SessionConfig {
    config::Role role = config::Role::primary;
    std::uint32_t remote_id = 0;
    std::string name;                  // for log lines ("remote 7 (192.0.2.2)")
    FrameAddrs addrs;                  // WAN addresses, session port
    config::SessionParams params;      // resolved (groups and per-remote overrides applied)
};

// The keys a setup exchange produced: epoch 0. The setup engine has already installed the
// data keys in the dataplane (setup::SessionSink), so only the P3 IDs and the control keys
// come here.
struct InitialKeys {
    std::uint32_t rx_p3_id = 0;        // we receive on
    std::uint32_t tx_p3_id = 0;        // we send with
    KeyMaterial control_tx, control_rx;
    std::uint32_t local_lanes = 1;     // lanes we send on
    std::uint32_t peer_lanes = 1;      // lanes the peer sends on
};

enum class SessionState { idle, up, lost, retrying, closed };
std::string_view session_state_name(SessionState s) noexcept;

enum class RekeyTrigger : std::uint8_t { timer = 1, admin = 2, packet_limit = 3, peer_ask = 4 };

// What happened, for tests and the admin socket (log lines say the same with reason codes).
struct Event {
    enum class Kind {
        up, rekey_started, rekey_done, rekey_attempt_failed, lost, retry_scheduled, retry_started,
        recovered, restarted, array_active, array_flushed, array_index_used, rx_retired, tx_switched
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
    std::uint64_t rekeys_done = 0, rekey_attempts_failed = 0, rekey_stale = 0;
    std::uint64_t arrays_delivered = 0, indices_used = 0, keys_retired = 0;
    std::uint64_t losses = 0, recoveries = 0;
};

class Session {
public:
    Session(EventLoop& loop, SessionConfig cfg, KeyInstaller& installer, ControlLink& link,
            Random& rng, KeySource& keys, SetupDriver* setup = nullptr);
    ~Session();
    Session(const Session&) = delete;
    Session& operator=(const Session&) = delete;

    // The setup exchange completed (first time, or after recovery on a secondary).
    void start(InitialKeys&& k);
    // A control-layer inner packet the dataplane decrypted for us.
    void on_control_packet(std::span<const std::uint8_t> inner);

    // Administration.
    void force_rekey();                                 // secondary: asks the primary
    void deliver_arrays(std::uint8_t kinds);            // primary: new array(s) now
    void flush_arrays(std::uint8_t kinds, bool with_new);
    void shutdown();

    // Primary: the peer set up a new session while this one exists (it restarted): the old one
    // is dropped and the new keys are used.
    void restart(InitialKeys&& k);
    // Secondary recovery results.
    void setup_succeeded(InitialKeys&& k);
    void setup_failed();

    SessionState state() const noexcept { return state_; }
    const SessionStats& stats() const noexcept { return stats_; }
    std::uint32_t tx_epoch() const noexcept { return tx_.epoch; }
    std::uint32_t peer_tx_epoch() const noexcept { return peer_tx_epoch_; }
    std::size_t rx_epochs() const noexcept { return rx_.size(); }
    bool rekey_in_flight() const noexcept { return rekey_.has_value(); }
    // Active array generation of a kind (0 = none) and its unused indices.
    std::uint32_t array_gen(ArrayKind k) const noexcept;
    std::uint32_t array_unused(ArrayKind k) const noexcept;
    const SessionConfig& config() const noexcept { return cfg_; }

    std::function<void(const Event&)> observer;

private:
    // tests/control/fuzz_channel_session.cpp: seals bytes with this session's control key, as
    // a peer holding it could send them, and reads the state it must keep bounded.
    friend struct SessionTestAccess;

    struct ReplayWindow {
        std::uint64_t top = 0, bits = 0;
        bool check(std::uint64_t seq) const noexcept;
        void update(std::uint64_t seq) noexcept;
    };
    struct RxEpoch {
        std::uint32_t p3_id = 0;
        KeyMaterial ctl;
        bool seen = false;
        ReplayWindow win;
        TimerId retire_timer;
        TimePoint retire_at{};
    };
    struct TxKeys {
        std::uint32_t epoch = 0;
        KeyMaterial ctl;
        std::uint64_t seq = 0;
    };
    struct Outstanding {
        Message req;
        TimePoint deadline;
        TimerId timer;
    };
    struct KeyArray {
        std::uint32_t gen = 0, size = 0;
        std::size_t entry = 0;           // key length + salt
        SecretBytes keys;                // size x entry
        std::vector<bool> used, have;
        std::uint32_t have_count = 0, unused = 0;
        bool complete = false;
        TimePoint complete_at{};
        void wipe() { *this = KeyArray{}; }
    };
    struct Work {
        enum class Kind { rekey, deliver, flush } kind;
        RekeyTrigger trigger = RekeyTrigger::timer;
        std::uint8_t kinds = 0;
        bool with_new = false;
    };
    struct RekeyOut {                    // primary: the attempt in flight
        std::uint32_t epoch = 0;
        unsigned attempt = 1;
        RekeyTrigger trigger = RekeyTrigger::timer;
        KeyMaterial data_p2s, data_s2p, ctl_p2s, ctl_s2p;
        std::uint32_t my_rx_id = 0;
        bool switching = false;
    };
    struct RekeyIn {                     // secondary: the newest request accepted
        std::uint32_t epoch = 0;
        KeyMaterial data_s2p, ctl_s2p;
        std::uint32_t peer_rx_id = 0, my_rx_id = 0;
        bool switched = false;
    };
    struct Delivery {                    // primary: array being delivered
        ArrayKind kind = ArrayKind::data;
        KeyArray array;
        std::uint32_t next_offset = 0;
    };

    bool primary() const noexcept { return cfg_.role == config::Role::primary; }
    std::size_t key_len() const noexcept;
    void emit(Event e);
    void go_up(InitialKeys&& k);
    void teardown(bool retire_slots);
    void lose(Reason why);
    void schedule_retry();

    // sending
    std::uint32_t next_id() noexcept {
        if (next_msg_id_ == 0) next_msg_id_ = 1;  // 0 is never a message id
        return next_msg_id_++;
    }
    bool send(const Message& m);
    void request(Message&& m);
    void respond(const Message& req, Message&& resp);
    void on_retransmit(std::uint32_t id);

    // receiving
    void dispatch(Message&& m);
    void on_response(Message&& m);
    void on_timeout(Message&& req);

    // heartbeat
    void heartbeat_tick();
    void heartbeat_answered();

    // rekey
    void queue(Work w);
    void run_next();
    void finish_work();
    // The flush in progress is over (acknowledged, or unanswered: ours are gone either way):
    // the next work, and the new arrays when the flush was the first half of a replacement.
    void end_flush();
    void start_rekey(RekeyTrigger t, unsigned attempt);
    void rekey_attempt_failed(Reason why, const char* what);
    void on_status(const Message& req, const Message& m);
    void on_switch_ack(const Message& m);
    void on_rekey_request(const Message& m);
    void on_rekey_switch(const Message& m);
    void arm_rekey_timer();
    std::optional<KeyMaterial> make_key();
    bool choose_key(ArrayKind kind, KeyRef& ref, KeyMaterial& out);
    std::optional<KeyMaterial> resolve_key(ArrayKind kind, const KeyRef& ref, Status& st);

    // inbound key lifetime
    void note_seen(std::uint32_t epoch);
    void schedule_retire_below(std::uint32_t epoch, Duration after);
    void retire(std::uint32_t epoch);
    void enforce_rx_cap();
    void tick();

    // arrays
    KeyArray& active(ArrayKind k) noexcept { return arrays_[k == ArrayKind::data ? 0 : 1]; }
    const KeyArray& active(ArrayKind k) const noexcept { return arrays_[k == ArrayKind::data ? 0 : 1]; }
    bool fresh(ArrayKind k) const noexcept;
    Duration array_time(ArrayKind k) const noexcept;
    void start_delivery(ArrayKind k);
    void send_chunk();
    void on_chunk_ack(const Message& m);
    void on_chunk(const Message& m);
    void on_flush(const Message& m);
    void arm_array_timer(ArrayKind k);

    void log_drop(Reason r, const char* what);

    EventLoop& loop_;
    SessionConfig cfg_;
    KeyInstaller& installer_;
    ControlLink& link_;
    Random& rng_;
    KeySource& keys_;
    SetupDriver* setup_;

    SessionState state_ = SessionState::idle;
    SessionStats stats_;
    std::uint32_t local_lanes_ = 1, peer_lanes_ = 1;
    std::uint32_t next_msg_id_ = 1;
    std::uint32_t tcp_seq_ = 0, tcp_ack_ = 0;
    TxKeys tx_;
    std::map<std::uint32_t, RxEpoch> rx_;
    std::uint32_t peer_tx_epoch_ = 0;
    std::map<std::uint32_t, Outstanding> outstanding_;

    // heartbeat
    TimerId hb_timer_, hb_fail_timer_;
    std::optional<TimePoint> hb_unanswered_since_;

    // primary
    std::deque<Work> queue_;
    std::optional<Work> current_;
    std::optional<RekeyOut> rekey_;
    std::optional<Delivery> delivery_;
    std::uint32_t next_epoch_ = 1, next_gen_ = 1;
    TimerId rekey_timer_, retry_timer_, tick_timer_, run_timer_;
    std::array<TimerId, 2> array_timer_{};
    std::uint32_t limit_asked_epoch_ = 0xffffffffu;

    // secondary
    std::optional<RekeyIn> rekey_in_;
    std::uint32_t newest_req_epoch_ = 0;
    std::optional<Status> last_req_status_;
    std::array<KeyArray, 2> incoming_{};
    std::array<std::uint32_t, 2> newest_gen_{};  // never accept an older generation again
    unsigned failures_ = 0;
    TimerId backoff_timer_;
    bool recovering_ = false;

    std::array<KeyArray, 2> arrays_{};
    TimePoint last_drop_log_{};
};

}  // namespace p3::channel
