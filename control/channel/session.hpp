// One session's control channel on the control thread's event loop (DESIGN.md §Session life
// 2-5; docs/control-channel.md has the state machines and the crossing rule).
//
// Session states:   idle --start()--> up --lost (heartbeat / rekey / the peer's goodbye)--> lost
//                   lost --(secondary) back-off timer--> retrying --setup_succeeded--> up
//                   retrying --setup_failed--> lost (next back-off: control/backoff.hpp)
//                   up --restart() (primary: peer set up anew)--> up
//                   up --shutdown(reason)--> closing --goodbye-ack, or kGoodbyeWait--> closed
//                   any other --shutdown()--> closed;  closed --start()--> up
// The peer's goodbye is acknowledged, then the session is lost (PEER_GOODBYE); a secondary's
// recovery then tries at once. While closing nothing is started and nothing but the goodbye's
// answer (and a goodbye crossing ours, acknowledged) is taken.
//
// The session is a small transport and tasks on it, each in its own unit:
//   link.*             seal/open, message ids, replay check, requests resent until answered
//   epochs.*           control keys by epoch; when inbound control keys retire
//   next_keys.*        inbound data keys across a rekey: install, settle, promote, drop
//   dh.*               X25519 shares and the HKDF mixing of rekey keys (forward secrecy)
//   heartbeat.*        heartbeat and loss by silence
//   rekey_initiator.*  primary: request -> status -> switch -> ack, attempts and their retries
//   rekey_responder.*  secondary: answers requests and switches, idempotent per epoch
//   arrays.*           key arrays: delivery and flush (primary), collection (secondary)
//   recovery.*         secondary: new setup exchanges after a loss, with back-off
//   timers.*           the named timers and the hooks they fire
// This class owns the units, the state, the dispatch of what arrives and, on a primary, the
// exchanges: one in flight at a time, in queue order (except that a rekey may run while a
// delivery pauses between two chunks: a trickled array must not hold rekeys back); a trigger
// for a rekey (or a delivery of the same kinds) already queued or in flight joins it, a flush
// joins one still queued:
//   rekey:   request_sent --status ok--> switch_sent --switch ack--> done
//   deliver: chunk 0 .. chunk n-1, each acknowledged and spread out, then the array is active
//   flush:   flush --ack--> (optionally deliver)
// A secondary answers, and asks for a rekey (rekey_ask) at its packet-count limit.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <optional>
#include <span>

#include "control/channel/arrays.hpp"
#include "control/channel/core.hpp"
#include "control/channel/epochs.hpp"
#include "control/channel/heartbeat.hpp"
#include "control/channel/interfaces.hpp"
#include "control/channel/link.hpp"
#include "control/channel/next_keys.hpp"
#include "control/channel/recovery.hpp"
#include "control/channel/rekey_initiator.hpp"
#include "control/channel/rekey_responder.hpp"
#include "control/channel/timers.hpp"
#include "control/channel/types.hpp"
#include "control/clock.hpp"
#include "control/event_loop.hpp"

namespace p3::channel {

class Session final : private SessionOps, private TimerHooks {
public:
    Session(EventLoop& loop, SessionConfig cfg, KeyInstaller& installer, ControlLink& link,
            Random& rng, KeySource& keys, SetupDriver* setup = nullptr);
    ~Session();
    Session(const Session&) = delete;
    Session& operator=(const Session&) = delete;

    // The setup exchange completed (first time, after recovery on a secondary, or after a
    // shutdown: an administrator started the session again; it comes up as a fresh one, its
    // counters kept).
    void start(InitialKeys&& k);
    // A control-layer inner packet the dataplane decrypted for us.
    void on_control_packet(std::span<const std::uint8_t> inner);

    // Administration.
    void force_rekey();                                 // secondary: asks the primary
    void deliver_arrays(std::uint8_t kinds);            // primary: new array(s) now
    void flush_arrays(std::uint8_t kinds, bool with_new);
    // Ends the session. none: at once, without a word to the peer. administrator / stopping:
    // when up, a goodbye tells the peer (which then recovers at once instead of after
    // heartbeat_fail); the session is closing until its ack or for kGoodbyeWait, then closed.
    // Closed either way: session_down(SESSION_CLOSED) if it had keys, Event::Kind::closed.
    // A plain shutdown() while closing closes at once.
    void shutdown(GoodbyeReason why = GoodbyeReason::none);

    // Primary: the peer set up a new session while this one exists (it restarted): the old one
    // is dropped and the new keys are used.
    void restart(InitialKeys&& k);
    // Secondary recovery results.
    void setup_succeeded(InitialKeys&& k);
    void setup_failed();

    // Cluster (session_cluster.cpp, docs/cluster.md §Taking over a control session): the state
    // another member needs to carry this channel on (nullopt unless up); taking it marks the
    // outbound sequence as published (replica_due comes kReplicaSeqMargin messages later).
    std::optional<ChannelState> replica_state();
    // Up at once from the state another member published (it failed, was demoted, or handed
    // the session over): its control keys and epochs, sequences, epochs and ids past its own
    // (limits.hpp), the next inbound data keys pending if it had some. A rekey it had under
    // way is abandoned (its keys went with it): the peer's next request or our own rekey
    // follows. A heartbeat goes out at once; a primary replaces the key arrays the peer holds
    // (their keys went with the old holder) by a flush and new ones.
    void take_over(ChannelState&& s);

    SessionState state() const noexcept { return state_; }
    const SessionStats& stats() const noexcept { return stats_; }
    std::uint32_t tx_epoch() const noexcept { return epochs_.tx().epoch; }
    std::uint32_t peer_tx_epoch() const noexcept { return epochs_.peer_tx_epoch(); }
    std::size_t rx_epochs() const noexcept { return epochs_.rx_count(); }
    bool rekey_in_flight() const noexcept { return rekey_out_.in_flight(); }
    // Active array generation of a kind (0 = none) and its unused indices.
    std::uint32_t array_gen(ArrayKind k) const noexcept { return arrays_.gen(k); }
    std::uint32_t array_unused(ArrayKind k) const noexcept { return arrays_.unused(k); }
    const SessionConfig& config() const noexcept { return cfg_; }
    // The last heartbeat round trip measured (heartbeat.hpp); nullopt: none yet.
    std::optional<Duration> heartbeat_rtt() const noexcept { return heartbeat_.rtt(); }

    std::function<void(const Event&)> observer;

private:
    // tests/control/fuzz_channel_session.cpp: seals bytes with this session's control key, as
    // a peer holding it could send them, and reads the state it must keep bounded.
    friend struct SessionTestAccess;
    // tests/control/channel_sim.hpp: opens what this session sealed, to tell the tests which
    // message a control packet carried.
    friend struct ChannelProbe;

    void go_up(InitialKeys&& k);
    // The steps of coming up (go_up from a setup, take_over from another member's state):
    // what was held goes and the lanes are set; the units start afresh; up, heartbeat, tick.
    void prepare(std::uint32_t local_lanes, std::uint32_t peer_lanes);
    void start_units();
    void run_up();
    void teardown();
    // Every exchange, timer and request stops; the control keys stay (a goodbye still goes
    // out and its answer still opens). teardown() = quiesce() and the keys go.
    void quiesce();
    // The loss itself; peer: the peer's goodbye reason (PEER_GOODBYE), for the log line.
    void lost(Reason why, GoodbyeReason peer);
    // closing (or any state) -> closed; how: the end of the log line.
    void close(const char* how);

    // SessionOps
    void lose(Reason why) override;
    void queue(Work w) override;
    void finish_work(Work::Kind k) override;
    void delivery_paused() override { timers_.run_next(); }
    bool rekey_beside() const override { return beside_; }

    // receiving
    void dispatch(Message&& m);
    void on_response(Message&& m);
    void on_request_failed(Message&& req);
    void on_goodbye(const Message& m);     // up: the peer ends the session
    void while_closing(Message&& m);       // what is still taken while closing

    // the exchanges (primary)
    void run_next();
    // The flush in progress is over (acknowledged, or unanswered: ours are gone either way):
    // the next work, and the new arrays when the flush was the first half of a replacement.
    void end_flush();

    // TimerHooks
    void on_heartbeat_due() override { heartbeat_.on_due(); }
    void on_heartbeat_failed() override { heartbeat_.on_failed(); }
    void on_tick() override;
    void on_rekey_due() override { queue({.kind = Work::Kind::rekey, .trigger = RekeyTrigger::timer}); }
    void on_rekey_retry_due(RekeyTrigger t, unsigned attempt) override { rekey_out_.on_retry_due(t, attempt); }
    void on_array_due(ArrayKind k) override { arrays_.on_due(k); }
    void on_array_retry_due(ArrayKind k) override {
        queue({.kind = Work::Kind::deliver, .kinds = detail::kind_bit(k)});
    }
    void on_array_chunk_due() override { arrays_.on_chunk_due(); }
    void on_promote_due() override { next_.on_promote_due(); }
    void on_run_next() override { run_next(); }
    void on_backoff_done() override { recovery_.on_backoff_done(); }
    void on_goodbye_timeout() override;

    SessionConfig cfg_;
    SessionState state_ = SessionState::idle;
    SessionStats stats_;
    Timers timers_;
    SessionCore core_;
    Epochs epochs_;
    NextKeys next_;
    MessageLink link_;
    Heartbeat heartbeat_;
    KeyArrays arrays_;
    RekeyInitiator rekey_out_;
    RekeyResponder rekey_in_;
    Recovery recovery_;

    // primary: the exchanges
    std::deque<Work> queue_;
    std::optional<Work> current_;
    bool beside_ = false;   // a rekey runs while the current delivery pauses between chunks
    bool down_pending_ = false;   // lost by a goodbye: the dataplane is told after kGoodbyeAckFlush
};

}  // namespace p3::channel
