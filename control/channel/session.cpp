// A session's control channel: its life (up, lost, restarted, closing, closed), the goodbye
// both ways, the dispatch of what arrives to the unit that handles it, and the primary's exchanges, one in flight at a time.
// See session.hpp for the states and the units.
#include "control/channel/session.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>

namespace p3::channel {

using namespace detail;

std::string_view session_state_name(SessionState s) noexcept {
    switch (s) {
    case SessionState::idle: return "idle";
    case SessionState::up: return "up";
    case SessionState::lost: return "lost";
    case SessionState::retrying: return "retrying";
    case SessionState::closed: return "closed";
    case SessionState::closing: return "closing";
    }
    return "?";
}

// ---- life -------------------------------------------------------------------------------------

Session::Session(EventLoop& loop, SessionConfig cfg, KeyInstaller& installer, ControlLink& link, Random& rng,
                 KeySource& keys, SetupDriver* setup)
    : cfg_(std::move(cfg)),
      timers_(loop, *this),
      core_{loop, cfg_, installer, rng, keys, state_, stats_, observer, timers_, *this},
      epochs_(core_),
      next_(core_),
      link_(core_, epochs_, link, [this](Message&& req) { on_request_failed(std::move(req)); }),
      heartbeat_(core_, link_),
      arrays_(core_, link_),
      rekey_out_(core_, link_, epochs_, arrays_, next_),
      rekey_in_(core_, link_, epochs_, arrays_, next_),
      recovery_(core_, setup) {}

Session::~Session() {
    teardown();
    timers_.cancel_backoff();
}

void Session::start(InitialKeys&& k) {
    // From any state, closed included: a session an administrator shut down and started
    // again comes up like a fresh one (go_up drops whatever was left; the counters stay).
    const bool was_recovering = recovery_.recovering();
    go_up(std::move(k));
    recovery_.on_up(was_recovering);
}

void Session::setup_succeeded(InitialKeys&& k) { start(std::move(k)); }

void Session::restart(InitialKeys&& k) {
    if (state_ == SessionState::up) {
        P3_LOG_WARN(PEER_RESTARTED, "%s: the peer set up a new session (it restarted): old session dropped",
                    core_.name());
        core_.emit({.kind = Event::Kind::restarted, .reason = Reason::PEER_RESTARTED});
        teardown();
    }
    start(std::move(k));
}

void Session::go_up(InitialKeys&& k) {
    // A new setup while up (the peer restarted, or set up again): the setup exchange has
    // installed the new session's lanes in the dataplane already; what we held goes.
    prepare(k.local_lanes, k.peer_lanes);
    epochs_.start(std::move(k.control_tx), std::move(k.control_rx));
    start_units();
    run_up();
    P3_LOG_INFO(CH_UP,
                "%s: control channel up as %s (lanes in: P3 ID 0x%x + %u, out: 0x%x + %u, fixed for the session; "
                "heartbeat %u s, fail %u s, rekey %u s%s, arrays %u keys)",
                core_.name(), core_.primary() ? "primary" : "secondary", k.rx_p3_id, core_.peer_lanes, k.tx_p3_id,
                core_.local_lanes, cfg_.params.heartbeat_time, cfg_.params.heartbeat_fail, cfg_.params.rekey_wait,
                cfg_.params.rekey_dh ? " with X25519" : "", cfg_.params.array_size);
    core_.emit({.kind = Event::Kind::up, .reason = Reason::CH_UP});
    if (core_.primary()) {
        rekey_out_.arm_due();
        if (cfg_.params.array_size >= limits::kIndicesPerRekey) {
            queue({.kind = Work::Kind::deliver, .kinds = kFlushData});
            queue({.kind = Work::Kind::deliver, .kinds = kFlushControl});
        }
    }
}

void Session::prepare(std::uint32_t local_lanes, std::uint32_t peer_lanes) {
    teardown();
    timers_.cancel_backoff();
    down_pending_ = false;   // the new keys are installed already: nothing of the old to drop
    core_.local_lanes = std::max<std::uint32_t>(1, local_lanes);
    core_.peer_lanes = std::max<std::uint32_t>(1, peer_lanes);
}

void Session::start_units() {
    rekey_out_.start_session();
    rekey_in_.start_session();
    arrays_.start();
    epochs_.limit_asked = Epochs::kNotAsked;
    link_.start();
}

void Session::run_up() {
    state_ = SessionState::up;
    heartbeat_.start();
    timers_.tick(limits::kTick);
}

// Cancels every timer and request; forgets keys and arrays. (The dataplane's lanes belong to
// the setup: a new setup replaces them, a loss drops them through session_down.)
void Session::teardown() {
    quiesce();
    epochs_.clear();
    epochs_.tx() = Epochs::Tx{};
}

void Session::quiesce() {
    link_.stop();
    next_.clear();
    timers_.stop_session();
    queue_.clear();
    current_.reset();
    beside_ = false;
    rekey_out_.clear();
    rekey_in_.clear();
    arrays_.clear();
    heartbeat_.stop();
}

void Session::lose(Reason why) { lost(why, GoodbyeReason::none); }

void Session::lost(Reason why, GoodbyeReason peer) {
    if (state_ != SessionState::up) return;
    ++stats_.losses;
    teardown();
    state_ = SessionState::lost;
    if (why == Reason::PEER_GOODBYE) {
        // Our ack is on its way to a worker: the keys go once it has left (or at the next up).
        down_pending_ = true;
        timers_.goodbye(limits::kGoodbyeAckFlush);
    } else {
        core_.installer.session_down(why);
    }
    switch (why) {
    case Reason::SESSION_LOST_HEARTBEAT:
        P3_LOG_ERROR(SESSION_LOST_HEARTBEAT, "%s: session lost: no heartbeat answered for %u s", core_.name(),
                     cfg_.params.heartbeat_fail);
        break;
    case Reason::PEER_GOODBYE:
        P3_LOG_WARN(PEER_GOODBYE, "%s: session lost: the peer ended it on purpose (%s)", core_.name(),
                    goodbye_reason_name(peer).data());
        break;
    default:
        P3_LOG_ERROR(SESSION_LOST_REKEY, "%s: session lost: rekey failed after %u attempts", core_.name(),
                     limits::kRekeyAttempts);
        break;
    }
    core_.emit({.kind = Event::Kind::lost, .reason = why});
    // A peer that said goodbye may take the session back at once (it stopped and started, or
    // its administrator changed the remote): no reason to wait out a back-off first.
    if (!core_.primary()) recovery_.on_lost(why == Reason::PEER_GOODBYE);
}

void Session::setup_failed() {
    if (core_.primary() || state_ == SessionState::closed || state_ == SessionState::closing ||
        state_ == SessionState::up)
        return;
    recovery_.on_setup_failed();
}

void Session::shutdown(GoodbyeReason why) {
    if (state_ == SessionState::closed) return;
    if (state_ == SessionState::closing) {
        // A goodbye is under way; a plain shutdown (the appliance stopping, the remote going)
        // does not wait for its answer.
        if (why == GoodbyeReason::none) close(" (goodbye not waited for)");
        return;
    }
    recovery_.reset();
    timers_.cancel_backoff();
    if (state_ != SessionState::up || why == GoodbyeReason::none) return close("");
    // Up: tell the peer, which then recovers at once instead of after heartbeat_fail. Nothing
    // else runs meanwhile; the control keys stay for the goodbye and its answer.
    quiesce();
    state_ = SessionState::closing;
    Message m;
    m.type = MsgType::goodbye;
    m.goodbye_reason = why;
    link_.request(std::move(m));
    timers_.goodbye(limits::kGoodbyeWait);
}

void Session::close(const char* how) {
    const bool had_keys = state_ == SessionState::up || state_ == SessionState::closing;
    teardown();
    state_ = SessionState::closed;
    if (had_keys) core_.installer.session_down(Reason::SESSION_CLOSED);
    P3_LOG_NOTICE(SESSION_CLOSED, "%s: session shut down%s", core_.name(), how);
    core_.emit({.kind = Event::Kind::closed, .reason = Reason::SESSION_CLOSED});
}

void Session::on_goodbye_timeout() {
    if (down_pending_) {
        down_pending_ = false;
        if (state_ != SessionState::up) core_.installer.session_down(Reason::PEER_GOODBYE);
        return;
    }
    if (state_ != SessionState::closing) return;
    char how[64];
    std::snprintf(how, sizeof how, " (goodbye unanswered for %ld ms)",
                  static_cast<long>(std::chrono::duration_cast<std::chrono::milliseconds>(limits::kGoodbyeWait).count()));
    close(how);
}

// ---- receiving --------------------------------------------------------------------------------

void Session::on_control_packet(std::span<const std::uint8_t> inner) {
    if (state_ != SessionState::up && state_ != SessionState::closing) return;
    auto m = link_.receive(inner);
    if (!m) return;
    if (state_ == SessionState::closing) return while_closing(std::move(*m));
    dispatch(std::move(*m));
}

void Session::on_goodbye(const Message& m) {
    Message a;
    a.type = MsgType::goodbye_ack;
    link_.respond(m, std::move(a));
    lost(Reason::PEER_GOODBYE, m.goodbye_reason.value_or(GoodbyeReason::none));
}

void Session::while_closing(Message&& m) {
    if (m.type == MsgType::goodbye) {
        // Both ends shut down at once: each acknowledges the other's goodbye, so both close
        // on the answer rather than on the wait.
        Message a;
        a.type = MsgType::goodbye_ack;
        return link_.respond(m, std::move(a));
    }
    if (m.type != MsgType::goodbye_ack && m.type != MsgType::error) return;  // nothing else matters now
    // An error answer ends the goodbye too (on_request_failed), as its ack does.
    if (link_.take_request(m)) close(" (goodbye acknowledged)");
}

void Session::dispatch(Message&& m) {
    if (!is_request(m.type)) return on_response(std::move(m));
    // Who may ask what: the primary drives rekeys and arrays, the secondary asks.
    const bool for_secondary = m.type == MsgType::rekey_request || m.type == MsgType::rekey_switch ||
                               m.type == MsgType::array_chunk || m.type == MsgType::array_flush;
    const bool for_primary = m.type == MsgType::rekey_ask;
    if ((for_secondary && core_.primary()) || (for_primary && !core_.primary())) {
        link_.log_drop(Reason::CH_NOT_ALLOWED, msg_type_name(m.type).data());
        Message e;
        e.type = MsgType::error;
        e.error_code = Status::not_allowed;
        return link_.respond(m, std::move(e));
    }
    switch (m.type) {
    case MsgType::heartbeat: return heartbeat_.answer(m);
    case MsgType::rekey_request: return rekey_in_.on_request(m);
    case MsgType::rekey_switch: return rekey_in_.on_switch(m);
    case MsgType::rekey_ask: {
        Message a;
        a.type = MsgType::rekey_ask_ack;
        a.status = Status::ok;
        link_.respond(m, std::move(a));
        return queue({.kind = Work::Kind::rekey, .trigger = RekeyTrigger::peer_ask});
    }
    case MsgType::array_chunk: return arrays_.on_chunk(m);
    case MsgType::array_flush: return arrays_.on_flush(m);
    case MsgType::goodbye: return on_goodbye(m);
    default: return;
    }
}

void Session::on_response(Message&& m) {
    if (m.type == MsgType::heartbeat_ack) return heartbeat_.on_answered();
    auto req = link_.take_request(m);
    if (!req) return;
    switch (m.type) {
    case MsgType::rekey_status: return rekey_out_.on_status(*req, m);
    case MsgType::rekey_switch_ack: return rekey_out_.on_switch_ack(m);
    case MsgType::array_chunk_ack: return arrays_.on_chunk_ack(m);
    case MsgType::array_flush_ack: return end_flush();
    case MsgType::rekey_ask_ack: return;
    default: return;
    }
}

// A request unanswered for kRequestTimeout, or refused with an error: its exchange decides.
void Session::on_request_failed(Message&& req) {
    switch (req.type) {
    case MsgType::rekey_request:
    case MsgType::rekey_switch: return rekey_out_.on_request_failed(req);
    case MsgType::array_chunk: return arrays_.on_chunk_failed();
    case MsgType::array_flush:
        // Our own arrays are already gone; the peer's will be replaced by the next delivery.
        return end_flush();
    case MsgType::rekey_ask:
        epochs_.limit_asked = Epochs::kNotAsked;  // ask again at the next tick
        return;
    case MsgType::goodbye:
        if (state_ == SessionState::closing) close(" (the peer refused the goodbye)");
        return;
    default: return;
    }
}

void Session::on_tick() {
    timers_.tick(limits::kTick);
    // Traffic under the pending next inbound keys (the workers' flag): promotion follows.
    next_.poll();
    // Packet-count limit of the current outbound keys.
    const std::uint32_t tx_epoch = epochs_.tx().epoch;
    if (cfg_.params.rekey_packets && epochs_.limit_asked != tx_epoch &&
        core_.installer.tx_packets() >= cfg_.params.rekey_packets) {
        epochs_.limit_asked = tx_epoch;
        if (core_.primary()) {
            queue({.kind = Work::Kind::rekey, .trigger = RekeyTrigger::packet_limit});
        } else {
            Message m;
            m.type = MsgType::rekey_ask;
            m.ask_reason = static_cast<std::uint8_t>(RekeyTrigger::packet_limit);
            link_.request(std::move(m));
        }
    }
}

// ---- administration ------------------------------------------------------------------------------

void Session::force_rekey() {
    if (state_ != SessionState::up) return;
    if (core_.primary()) return queue({.kind = Work::Kind::rekey, .trigger = RekeyTrigger::admin});
    // An ask still in flight stands for this one too (the primary coalesces rekeys anyway):
    // repeated commands must not pile up requests.
    if (link_.asking(MsgType::rekey_ask)) return;
    Message m;
    m.type = MsgType::rekey_ask;
    m.ask_reason = static_cast<std::uint8_t>(RekeyTrigger::admin);
    link_.request(std::move(m));
}

void Session::deliver_arrays(std::uint8_t kinds) {
    if (!core_.primary() || state_ != SessionState::up) return;
    if (kinds & kFlushData) queue({.kind = Work::Kind::deliver, .kinds = kFlushData});
    if (kinds & kFlushControl) queue({.kind = Work::Kind::deliver, .kinds = kFlushControl});
}

void Session::flush_arrays(std::uint8_t kinds, bool with_new) {
    if (!core_.primary() || state_ != SessionState::up || (kinds & 3) == 0) return;
    for (ArrayKind k : {ArrayKind::data, ArrayKind::control})
        if (kinds & kind_bit(k)) arrays_.flush_ours(k, with_new);  // no rekey names them from here on
    // A flush still waiting in the queue absorbs this one (as a queued rekey or delivery
    // does), so repeated commands cannot grow the queue.
    for (Work& w : queue_) {
        if (w.kind != Work::Kind::flush) continue;
        w.kinds = static_cast<std::uint8_t>(w.kinds | (kinds & 3));
        w.with_new = w.with_new || with_new;
        return run_next();
    }
    queue_.push_back({.kind = Work::Kind::flush, .kinds = static_cast<std::uint8_t>(kinds & 3), .with_new = with_new});
    run_next();
}

// ---- primary: the exchanges, one in flight ----------------------------------------------------------

void Session::queue(Work w) {
    if (state_ != SessionState::up || !core_.primary()) return;
    auto same = [&](const Work& o) {
        return o.kind == w.kind &&
               (w.kind == Work::Kind::rekey || (w.kind == Work::Kind::deliver && o.kinds == w.kinds));
    };
    // Crossing rule, primary side: a trigger for work already queued or in flight joins it.
    if ((current_ && same(*current_)) || (beside_ && w.kind == Work::Kind::rekey) ||
        std::any_of(queue_.begin(), queue_.end(), same)) {
        if (w.kind == Work::Kind::rekey)
            P3_LOG_INFO(REKEY_COALESCED, "%s: rekey (%s) joins the rekey already under way", core_.name(),
                        trigger_name(w.trigger));
        return;
    }
    queue_.push_back(w);
    run_next();
}

void Session::run_next() {
    if (queue_.empty() || state_ != SessionState::up) return;
    if (current_) {
        // A delivery pausing between chunks lets a queued rekey run meanwhile; its next chunk
        // waits for the rekey to end (arrays.hpp).
        if (current_->kind != Work::Kind::deliver || beside_ || !arrays_.between_chunks()) return;
        auto it = std::find_if(queue_.begin(), queue_.end(), [](const Work& w) { return w.kind == Work::Kind::rekey; });
        if (it == queue_.end()) return;
        const RekeyTrigger t = it->trigger;
        queue_.erase(it);
        beside_ = true;
        return rekey_out_.start(t, 1);
    }
    current_ = queue_.front();
    queue_.pop_front();
    switch (current_->kind) {
    case Work::Kind::rekey: return rekey_out_.start(current_->trigger, 1);
    case Work::Kind::deliver:
        return arrays_.start_delivery((current_->kinds & kFlushData) ? ArrayKind::data : ArrayKind::control);
    case Work::Kind::flush: {
        // An array delivered between the command and now (its delivery was already under
        // way) goes too: the secondary is about to drop it.
        arrays_.drop_before_flush(current_->kinds);
        Message m;
        m.type = MsgType::array_flush;
        m.flush_kinds = current_->kinds;
        return link_.request(std::move(m));
    }
    }
}

void Session::finish_work(Work::Kind k) {
    if (k == Work::Kind::rekey && beside_) {
        beside_ = false;
        arrays_.resume();  // the delivery's next chunk, if its pause is over
    } else {
        current_.reset();
    }
    // Let the caller's stack unwind before the next exchange starts.
    timers_.run_next();
}

void Session::end_flush() {
    if (!current_ || current_->kind != Work::Kind::flush) return;
    const Work w = *current_;
    finish_work(Work::Kind::flush);
    if (w.with_new) deliver_arrays(w.kinds);
}

}  // namespace p3::channel
