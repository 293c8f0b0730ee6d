// A session's control channel: sending and receiving sealed messages, requests retransmitted
// until answered, heartbeat, rekey (seed spec §2.1.6), key arrays, inbound key retirement,
// loss and (secondary) recovery with back-off (§2.1.7). See session.hpp for the states.
#include "control/channel/session.hpp"

#include <algorithm>
#include <cstring>

#include "common/log.hpp"

namespace p3::channel {

using namespace std::chrono_literals;
using std::chrono::duration_cast;
using std::chrono::milliseconds;
using std::chrono::seconds;

namespace {

const char* trigger_name(RekeyTrigger t) {
    switch (t) {
    case RekeyTrigger::timer: return "timer";
    case RekeyTrigger::admin: return "administrator";
    case RekeyTrigger::packet_limit: return "packet limit";
    case RekeyTrigger::peer_ask: return "secondary's request";
    }
    return "?";
}
const char* kind_name(ArrayKind k) { return k == ArrayKind::data ? "data" : "control"; }
std::uint8_t kind_bit(ArrayKind k) { return k == ArrayKind::data ? kFlushData : kFlushControl; }
long secs(Duration d) { return static_cast<long>(duration_cast<seconds>(d).count()); }

// Scratch buffers for plaintext that may hold keys: wiped when they go out of scope.
template <std::size_t N>
struct WipedBuf {
    std::uint8_t b[N];
    ~WipedBuf() { secure_wipe(b, N); }
};

}  // namespace

std::string_view session_state_name(SessionState s) noexcept {
    switch (s) {
    case SessionState::idle: return "idle";
    case SessionState::up: return "up";
    case SessionState::lost: return "lost";
    case SessionState::retrying: return "retrying";
    case SessionState::closed: return "closed";
    }
    return "?";
}

// ---- replay window (64 packets; control messages are few) --------------------------------

bool Session::ReplayWindow::check(std::uint64_t seq) const noexcept {
    if (seq == 0) return false;
    if (seq > top) return true;
    const std::uint64_t off = top - seq;
    return off < limits::kReplayWindow && !((bits >> off) & 1);
}

void Session::ReplayWindow::update(std::uint64_t seq) noexcept {
    if (seq > top) {
        const std::uint64_t shift = seq - top;
        bits = shift >= 64 ? 0 : bits << shift;
        top = seq;
        bits |= 1;
    } else {
        bits |= std::uint64_t{1} << (top - seq);
    }
}

// ---- life -------------------------------------------------------------------------------------

Session::Session(EventLoop& loop, SessionConfig cfg, KeyInstaller& installer, ControlLink& link, Random& rng,
                 KeySource& keys, SetupDriver* setup)
    : loop_(loop), cfg_(std::move(cfg)), installer_(installer), link_(link), rng_(rng), keys_(keys),
      setup_(setup) {}

Session::~Session() {
    teardown(false);
    loop_.cancel(backoff_timer_);
}

std::size_t Session::key_len() const noexcept {
    return cfg_.params.key_type == config::KeyType::aes256 ? limits::kAes256KeyLen : limits::kAes128KeyLen;
}

void Session::emit(Event e) {
    if (observer) observer(e);
}

void Session::start(InitialKeys&& k) {
    if (state_ == SessionState::closed) return;
    const bool was_recovering = recovering_;
    go_up(std::move(k));
    if (was_recovering) {
        ++stats_.recoveries;
        P3_LOG_NOTICE(RECOVERED, "%s: session recovered after %u failed setup attempt(s)", cfg_.name.c_str(),
                      failures_);
        emit({.kind = Event::Kind::recovered, .reason = Reason::RECOVERED});
    }
    recovering_ = false;
    failures_ = 0;
}

void Session::setup_succeeded(InitialKeys&& k) { start(std::move(k)); }

void Session::restart(InitialKeys&& k) {
    if (state_ == SessionState::up) {
        P3_LOG_WARN(PEER_RESTARTED, "%s: the peer set up a new session (it restarted): old session dropped",
                    cfg_.name.c_str());
        emit({.kind = Event::Kind::restarted, .reason = Reason::PEER_RESTARTED});
        teardown(true);
    }
    start(std::move(k));
}

void Session::go_up(InitialKeys&& k) {
    // A new setup while up (the peer restarted, or set up again): the old inbound slots are
    // still in the dataplane and go now. After a loss session_down already dropped them.
    teardown(state_ == SessionState::up);
    loop_.cancel(backoff_timer_);
    local_lanes_ = std::max<std::uint32_t>(1, k.local_lanes);
    peer_lanes_ = std::max<std::uint32_t>(1, k.peer_lanes);
    tx_ = TxKeys{0, std::move(k.control_tx), 0};
    rx_.clear();
    RxEpoch r;
    r.p3_id = k.rx_p3_id;
    r.ctl = std::move(k.control_rx);
    rx_.emplace(0, std::move(r));
    peer_tx_epoch_ = 0;
    next_epoch_ = 1;
    newest_req_epoch_ = 0;
    newest_gen_ = {};
    last_req_status_.reset();
    rekey_in_.reset();
    limit_asked_epoch_ = 0xffffffffu;
    next_msg_id_ = 1;
    std::uint8_t r8[8];
    rng_.fill(r8);
    std::memcpy(&tcp_seq_, r8, 4);
    std::memcpy(&tcp_ack_, r8 + 4, 4);
    state_ = SessionState::up;
    hb_unanswered_since_.reset();
    hb_timer_ = loop_.after(seconds(cfg_.params.heartbeat_time), [this] { heartbeat_tick(); });
    tick_timer_ = loop_.after(limits::kTick, [this] { tick(); });
    P3_LOG_INFO(CH_UP, "%s: control channel up as %s (heartbeat %u s, fail %u s, rekey %u s, arrays %u keys)",
                cfg_.name.c_str(), primary() ? "primary" : "secondary", cfg_.params.heartbeat_time,
                cfg_.params.heartbeat_fail, cfg_.params.rekey_wait, cfg_.params.array_size);
    emit({.kind = Event::Kind::up, .reason = Reason::CH_UP});
    if (primary()) {
        arm_rekey_timer();
        if (cfg_.params.array_size >= limits::kIndicesPerRekey) {
            queue({.kind = Work::Kind::deliver, .kinds = kFlushData});
            queue({.kind = Work::Kind::deliver, .kinds = kFlushControl});
        }
    }
}

// Cancels every timer and request; forgets keys and arrays. retire_slots: hand the inbound
// slots back to the dataplane one by one (a restart; a loss drops them all at once instead).
void Session::teardown(bool retire_slots) {
    for (auto& [id, o] : outstanding_) loop_.cancel(o.timer);
    outstanding_.clear();
    for (auto& [e, r] : rx_) {
        loop_.cancel(r.retire_timer);
        if (retire_slots) installer_.retire_rx(r.p3_id);
    }
    rx_.clear();
    for (TimerId* t : {&hb_timer_, &hb_fail_timer_, &rekey_timer_, &retry_timer_, &tick_timer_, &run_timer_, &array_timer_[0],
                       &array_timer_[1]}) {
        loop_.cancel(*t);
        *t = TimerId{};
    }
    queue_.clear();
    current_.reset();
    rekey_.reset();
    delivery_.reset();
    rekey_in_.reset();
    for (auto& a : arrays_) a.wipe();
    for (auto& a : incoming_) a.wipe();
    tx_ = TxKeys{};
    hb_unanswered_since_.reset();
}

void Session::lose(Reason why) {
    if (state_ != SessionState::up) return;
    ++stats_.losses;
    teardown(false);
    state_ = SessionState::lost;
    installer_.session_down(why);
    if (why == Reason::SESSION_LOST_HEARTBEAT)
        P3_LOG_ERROR(SESSION_LOST_HEARTBEAT, "%s: session lost: no heartbeat answered for %u s", cfg_.name.c_str(),
                     cfg_.params.heartbeat_fail);
    else
        P3_LOG_ERROR(SESSION_LOST_REKEY, "%s: session lost: rekey failed after %u attempts", cfg_.name.c_str(),
                     limits::kRekeyAttempts);
    emit({.kind = Event::Kind::lost, .reason = why});
    if (!primary()) {
        recovering_ = true;
        failures_ = 0;
        schedule_retry();
    }
}

// Secondary back-off (§2.1.7): 5 s, then 5 s more per failed attempt, never above 60 s.
void Session::schedule_retry() {
    Duration wait = limits::kBackoffFirst + limits::kBackoffStep * failures_;
    if (wait > limits::kBackoffMax) wait = limits::kBackoffMax;
    state_ = SessionState::lost;
    P3_LOG_INFO(RECOVERY_RETRY, "%s: next setup attempt in %ld s", cfg_.name.c_str(), secs(wait));
    emit({.kind = Event::Kind::retry_scheduled, .delay = wait, .reason = Reason::RECOVERY_RETRY});
    backoff_timer_ = loop_.after(wait, [this] {
        backoff_timer_ = TimerId{};
        state_ = SessionState::retrying;
        P3_LOG_INFO(RECOVERY_ATTEMPT, "%s: setup attempt %u", cfg_.name.c_str(), failures_ + 1);
        emit({.kind = Event::Kind::retry_started, .reason = Reason::RECOVERY_ATTEMPT});
        if (setup_) setup_->start_setup();
    });
}

void Session::setup_failed() {
    if (primary() || state_ == SessionState::closed || state_ == SessionState::up) return;
    if (!recovering_) {
        // The very first setup failed: recovery rules apply from here on.
        recovering_ = true;
        failures_ = 0;
    } else {
        ++failures_;
    }
    P3_LOG_WARN(RECOVERY_FAILED, "%s: setup attempt failed (%u so far)", cfg_.name.c_str(), failures_);
    loop_.cancel(backoff_timer_);
    schedule_retry();
}

void Session::shutdown() {
    if (state_ == SessionState::closed) return;
    const bool was_up = state_ == SessionState::up;
    teardown(false);
    loop_.cancel(backoff_timer_);
    state_ = SessionState::closed;
    if (was_up) installer_.session_down(Reason::SESSION_CLOSED);
    P3_LOG_NOTICE(SESSION_CLOSED, "%s: session shut down", cfg_.name.c_str());
}

// ---- sending ----------------------------------------------------------------------------------

bool Session::send(const Message& m) {
    if (state_ != SessionState::up || !tx_.ctl.valid()) return false;
    WipedBuf<limits::kMaxMessageLen> msg;
    const std::size_t n = encode(m, msg.b);
    if (n == 0) {
        P3_LOG_ERROR(INTERNAL, "%s: %s could not be encoded", cfg_.name.c_str(), msg_type_name(m.type).data());
        return false;
    }
    WipedBuf<limits::kMaxInnerPacket> pkt;
    std::uint8_t idb[2];
    rng_.fill(idb);
    FrameParams fp;
    fp.epoch = tx_.epoch;
    fp.seq = ++tx_.seq;
    fp.size_hiding = cfg_.params.size_hiding;
    fp.ip_id = static_cast<std::uint16_t>((idb[0] << 8) | idb[1]);
    fp.tcp_seq = tcp_seq_;
    fp.tcp_ack = tcp_ack_;
    const std::size_t len = seal_packet(cfg_.addrs, tx_.ctl, fp, {msg.b, n}, pkt.b);
    if (len == 0) {
        P3_LOG_ERROR(INTERNAL, "%s: control packet could not be sealed", cfg_.name.c_str());
        return false;
    }
    tcp_seq_ += static_cast<std::uint32_t>(len - (cfg_.addrs.local.is_v6() ? limits::kInnerV6Len : limits::kInnerV4Len) -
                                           limits::kTcpLen);
    ++stats_.sent;
    link_.send_control({pkt.b, len});
    return true;
}

void Session::request(Message&& m) {
    m.msg_id = next_id();
    const std::uint32_t id = m.msg_id;
    send(m);
    Outstanding o;
    o.req = std::move(m);
    o.deadline = loop_.clock().now() + limits::kRequestTimeout;
    o.timer = loop_.after(limits::kRetransmitInterval, [this, id] { on_retransmit(id); });
    outstanding_[id] = std::move(o);
}

void Session::respond(const Message& req, Message&& resp) {
    resp.msg_id = req.msg_id;
    send(resp);
}

void Session::on_retransmit(std::uint32_t id) {
    auto it = outstanding_.find(id);
    if (it == outstanding_.end()) return;
    if (loop_.clock().now() >= it->second.deadline) {
        Message req = std::move(it->second.req);
        outstanding_.erase(it);
        ++stats_.request_timeouts;
        P3_LOG_WARN(CH_REQUEST_TIMEOUT, "%s: %s (id %u) unanswered for %ld s", cfg_.name.c_str(),
                    msg_type_name(req.type).data(), id, secs(limits::kRequestTimeout));
        on_timeout(std::move(req));
        return;
    }
    ++stats_.retransmits;
    // Resealed with the current control key and a new sequence (never the same bytes twice).
    send(it->second.req);
    it->second.timer = loop_.after(limits::kRetransmitInterval, [this, id] { on_retransmit(id); });
}

// ---- receiving --------------------------------------------------------------------------------

void Session::log_drop(Reason r, const char* what) {
    // One line per second at most: a flood must not become a log flood (the counters say all).
    const TimePoint now = loop_.clock().now();
    if (now - last_drop_log_ < 1s) return;
    last_drop_log_ = now;
    log::write(log::Level::warning, r, "%s: control packet dropped: %s", cfg_.name.c_str(), what);
}

void Session::on_control_packet(std::span<const std::uint8_t> inner) {
    if (state_ != SessionState::up) return;
    FrameError fe;
    auto sv = parse_packet(cfg_.addrs, inner, &fe);
    if (!sv) {
        ++stats_.frame_errors;
        return log_drop(Reason::CH_MALFORMED, frame_error_name(fe).data());
    }
    auto it = rx_.find(sv->epoch);
    if (it == rx_.end()) {
        ++stats_.unknown_epoch;
        return log_drop(Reason::CH_AUTH_FAILED, "unknown control key epoch");
    }
    RxEpoch& r = it->second;
    if (!r.win.check(sv->seq)) {
        ++stats_.replays;
        return log_drop(Reason::CH_REPLAY, "replayed sequence");
    }
    WipedBuf<limits::kMaxInnerPacket> plain;
    auto n = open_sealed(r.ctl, *sv, plain.b);
    if (!n) {
        ++stats_.auth_failures;
        return log_drop(Reason::CH_AUTH_FAILED, "authentication failed");
    }
    r.win.update(sv->seq);
    const std::uint32_t epoch = sv->epoch;
    note_seen(epoch);
    ParseError pe;
    auto m = parse({plain.b, *n}, &pe, &stats_.parse);
    if (!m) {
        ++stats_.frame_errors;
        return log_drop(Reason::CH_MALFORMED, parse_error_name(pe).data());
    }
    ++stats_.received;
    dispatch(std::move(*m));
}

void Session::dispatch(Message&& m) {
    if (!is_request(m.type)) return on_response(std::move(m));
    // Who may ask what: the primary drives rekeys and arrays, the secondary asks.
    const bool for_secondary = m.type == MsgType::rekey_request || m.type == MsgType::rekey_switch ||
                               m.type == MsgType::array_chunk || m.type == MsgType::array_flush;
    const bool for_primary = m.type == MsgType::rekey_ask;
    if ((for_secondary && primary()) || (for_primary && !primary())) {
        log_drop(Reason::CH_NOT_ALLOWED, msg_type_name(m.type).data());
        Message e;
        e.type = MsgType::error;
        e.error_code = Status::not_allowed;
        return respond(m, std::move(e));
    }
    switch (m.type) {
    case MsgType::heartbeat: {
        Message a;
        a.type = MsgType::heartbeat_ack;
        return respond(m, std::move(a));
    }
    case MsgType::rekey_request: return on_rekey_request(m);
    case MsgType::rekey_switch: return on_rekey_switch(m);
    case MsgType::rekey_ask: {
        Message a;
        a.type = MsgType::rekey_ask_ack;
        a.status = Status::ok;
        respond(m, std::move(a));
        return queue({.kind = Work::Kind::rekey, .trigger = RekeyTrigger::peer_ask});
    }
    case MsgType::array_chunk: return on_chunk(m);
    case MsgType::array_flush: return on_flush(m);
    default: return;
    }
}

void Session::on_response(Message&& m) {
    if (m.type == MsgType::heartbeat_ack) {
        // Heartbeats are not retransmitted: any answer proves the peer alive.
        ++stats_.heartbeats_answered;
        return heartbeat_answered();
    }
    auto it = outstanding_.find(m.msg_id);
    if (it == outstanding_.end() ||
        (m.type != response_of(it->second.req.type) && m.type != MsgType::error)) {
        ++stats_.unexpected;
        P3_PEER_LOG(debug, Reason::CH_UNEXPECTED, "%s: %s (id %u) matches no request in flight", cfg_.name.c_str(),
                    msg_type_name(m.type).data(), m.msg_id);
        return;
    }
    loop_.cancel(it->second.timer);
    Message req = std::move(it->second.req);
    outstanding_.erase(it);
    if (m.type == MsgType::error) {
        ++stats_.peer_errors;
        P3_LOG_WARN(CH_PEER_ERROR, "%s: peer refused %s: %s", cfg_.name.c_str(), msg_type_name(req.type).data(),
                    status_name(*m.error_code).data());
        return on_timeout(std::move(req));  // handled as an unanswered request
    }
    switch (m.type) {
    case MsgType::rekey_status: return on_status(req, m);
    case MsgType::rekey_switch_ack: return on_switch_ack(m);
    case MsgType::array_chunk_ack: return on_chunk_ack(m);
    case MsgType::array_flush_ack: return end_flush();
    case MsgType::rekey_ask_ack: return;
    default: return;
    }
}

void Session::on_timeout(Message&& req) {
    switch (req.type) {
    case MsgType::rekey_request:
        if (rekey_ && !rekey_->switching && req.epoch == rekey_->epoch)
            rekey_attempt_failed(Reason::REKEY_ATTEMPT_FAILED, "request unanswered");
        return;
    case MsgType::rekey_switch:
        if (rekey_ && rekey_->switching && req.epoch == rekey_->epoch)
            rekey_attempt_failed(Reason::REKEY_ATTEMPT_FAILED, "switch unanswered");
        return;
    case MsgType::array_chunk:
        if (delivery_) {
            P3_LOG_WARN(ARRAY_DELIVERY_FAILED, "%s: %s key array generation %u not acknowledged; retried later",
                        cfg_.name.c_str(), kind_name(delivery_->kind), delivery_->array.gen);
            const ArrayKind k = delivery_->kind;
            delivery_.reset();
            finish_work();
            // Try again after a while; until then rekeys carry explicit keys.
            array_timer_[k == ArrayKind::data ? 0 : 1] = loop_.after(limits::kRequestTimeout * 4, [this, k] {
                queue({.kind = Work::Kind::deliver, .kinds = kind_bit(k)});
            });
        }
        return;
    case MsgType::array_flush:
        // Our own arrays are already gone; the peer's will be replaced by the next delivery.
        return end_flush();
    case MsgType::rekey_ask:
        limit_asked_epoch_ = 0xffffffffu;  // ask again at the next tick
        return;
    default: return;
    }
}

// ---- heartbeat --------------------------------------------------------------------------------

void Session::heartbeat_tick() {
    hb_timer_ = loop_.after(seconds(cfg_.params.heartbeat_time), [this] { heartbeat_tick(); });
    Message m;
    m.type = MsgType::heartbeat;
    m.msg_id = next_id();
    ++stats_.heartbeats_sent;
    send(m);
    if (!hb_unanswered_since_) {
        // The session is lost heartbeat_fail after the first heartbeat nobody answered.
        hb_unanswered_since_ = loop_.clock().now();
        hb_fail_timer_ = loop_.at(*hb_unanswered_since_ + seconds(cfg_.params.heartbeat_fail), [this] {
            hb_fail_timer_ = TimerId{};
            lose(Reason::SESSION_LOST_HEARTBEAT);
        });
    }
}

void Session::heartbeat_answered() {
    hb_unanswered_since_.reset();
    loop_.cancel(hb_fail_timer_);
    hb_fail_timer_ = TimerId{};
}

// ---- primary: the exchange queue ----------------------------------------------------------------

void Session::queue(Work w) {
    if (state_ != SessionState::up || !primary()) return;
    auto same = [&](const Work& o) {
        return o.kind == w.kind && (w.kind == Work::Kind::rekey || (w.kind == Work::Kind::deliver && o.kinds == w.kinds));
    };
    // Crossing rule, primary side: a trigger for work already queued or in flight joins it.
    if ((current_ && same(*current_)) || std::any_of(queue_.begin(), queue_.end(), same)) {
        if (w.kind == Work::Kind::rekey)
            P3_LOG_INFO(REKEY_COALESCED, "%s: rekey (%s) joins the rekey already under way", cfg_.name.c_str(),
                        trigger_name(w.trigger));
        return;
    }
    queue_.push_back(w);
    run_next();
}

void Session::run_next() {
    if (current_ || queue_.empty() || state_ != SessionState::up) return;
    current_ = queue_.front();
    queue_.pop_front();
    switch (current_->kind) {
    case Work::Kind::rekey: return start_rekey(current_->trigger, 1);
    case Work::Kind::deliver: {
        const ArrayKind k = (current_->kinds & kFlushData) ? ArrayKind::data : ArrayKind::control;
        return start_delivery(k);
    }
    case Work::Kind::flush: {
        // An array delivered between the command and now (its delivery was already under
        // way) goes too: the secondary is about to drop it.
        for (ArrayKind k : {ArrayKind::data, ArrayKind::control})
            if ((current_->kinds & kind_bit(k)) && active(k).gen) {
                active(k).wipe();
                loop_.cancel(array_timer_[k == ArrayKind::data ? 0 : 1]);
            }
        Message m;
        m.type = MsgType::array_flush;
        m.flush_kinds = current_->kinds;
        return request(std::move(m));
    }
    }
}

void Session::finish_work() {
    current_.reset();
    // Let the caller's stack unwind before the next exchange starts.
    loop_.cancel(run_timer_);
    run_timer_ = loop_.after(Duration::zero(), [this] {
        run_timer_ = TimerId{};
        run_next();
    });
}

void Session::end_flush() {
    if (!current_ || current_->kind != Work::Kind::flush) return;
    const Work w = *current_;
    finish_work();
    if (w.with_new) deliver_arrays(w.kinds);
}

// ---- rekey --------------------------------------------------------------------------------------

void Session::force_rekey() {
    if (state_ != SessionState::up) return;
    if (primary()) return queue({.kind = Work::Kind::rekey, .trigger = RekeyTrigger::admin});
    // An ask still in flight stands for this one too (the primary coalesces rekeys anyway):
    // repeated commands must not pile up requests.
    for (const auto& [id, o] : outstanding_)
        if (o.req.type == MsgType::rekey_ask) return;
    Message m;
    m.type = MsgType::rekey_ask;
    m.ask_reason = static_cast<std::uint8_t>(RekeyTrigger::admin);
    request(std::move(m));
}

void Session::arm_rekey_timer() {
    loop_.cancel(rekey_timer_);
    rekey_timer_ = loop_.after(seconds(cfg_.params.rekey_wait), [this] {
        rekey_timer_ = TimerId{};
        queue({.kind = Work::Kind::rekey, .trigger = RekeyTrigger::timer});
    });
}

std::optional<KeyMaterial> Session::make_key() {
    WipedBuf<limits::kKeyMaterial256> b;
    const std::size_t n = key_len() + limits::kSaltLen;
    if (!keys_.fill({b.b, n})) {
        P3_LOG_ERROR(KEY_SOURCE_FAILED, "%s: key generator failed", cfg_.name.c_str());
        return std::nullopt;
    }
    return KeyMaterial::from_wire({b.b, n});
}

// A key for a rekey: an unused index of a fresh array (marked used at once, never again), or a
// freshly generated key carried explicitly.
bool Session::choose_key(ArrayKind kind, KeyRef& ref, KeyMaterial& out) {
    KeyArray& a = active(kind);
    if (fresh(kind)) {
        std::uint8_t rb[4];
        rng_.fill(rb);
        std::uint32_t r = ((std::uint32_t(rb[0]) << 24) | (rb[1] << 16) | (rb[2] << 8) | rb[3]) % a.unused;
        for (std::uint32_t i = 0; i < a.size; ++i) {
            if (a.used[i]) continue;
            if (r-- == 0) {
                a.used[i] = true;
                --a.unused;
                ++stats_.indices_used;
                ref.index = ArrayIndex{a.gen, i};
                out = KeyMaterial::from_wire(a.keys.span().subspan(i * a.entry, a.entry));
                emit({.kind = Event::Kind::array_index_used, .array = kind, .gen = a.gen, .index = i});
                if (a.unused < limits::kIndicesPerRekey) {
                    P3_LOG_INFO(ARRAY_REPLACE, "%s: %s key array generation %u used up: replaced", cfg_.name.c_str(),
                                kind_name(kind), a.gen);
                    queue({.kind = Work::Kind::deliver, .kinds = kind_bit(kind)});
                }
                return true;
            }
        }
        return false;
    }
    auto k = make_key();
    if (!k) return false;
    ref.material = k->to_wire();
    out = std::move(*k);
    return true;
}

void Session::start_rekey(RekeyTrigger t, unsigned attempt) {
    RekeyOut r;
    r.epoch = next_epoch_++;
    r.attempt = attempt;
    r.trigger = t;
    Message m;
    m.type = MsgType::rekey_request;
    m.epoch = r.epoch;
    m.lanes = local_lanes_;
    if (!choose_key(ArrayKind::data, m.data_p2s, r.data_p2s) || !choose_key(ArrayKind::data, m.data_s2p, r.data_s2p) ||
        !choose_key(ArrayKind::control, m.ctl_p2s, r.ctl_p2s) || !choose_key(ArrayKind::control, m.ctl_s2p, r.ctl_s2p)) {
        rekey_ = std::move(r);
        return rekey_attempt_failed(Reason::KEY_SOURCE_FAILED, "no keys");
    }
    // Our inbound keys first: the secondary may switch as soon as it hears our P3 ID.
    auto id = installer_.install_rx(r.data_s2p, peer_lanes_);
    if (!id) {
        P3_LOG_ERROR(KEY_INSTALL_FAILED, "%s: rekey epoch %u: dataplane refused the inbound keys", cfg_.name.c_str(),
                     r.epoch);
        rekey_ = std::move(r);
        return rekey_attempt_failed(Reason::KEY_INSTALL_FAILED, "install refused");
    }
    r.my_rx_id = *id;
    m.p3_id = *id;
    RxEpoch rx;
    rx.p3_id = *id;
    rx.ctl = r.ctl_s2p.clone();
    rx_[r.epoch] = std::move(rx);
    enforce_rx_cap();
    P3_LOG_INFO(REKEY_START, "%s: rekey epoch %u started (%s, attempt %u, keys %s)", cfg_.name.c_str(), r.epoch,
                trigger_name(t), attempt, m.data_p2s.index ? "by array index" : "explicit");
    emit({.kind = Event::Kind::rekey_started, .epoch = r.epoch, .reason = Reason::REKEY_START});
    rekey_ = std::move(r);
    request(std::move(m));
}

void Session::rekey_attempt_failed(Reason why, const char* what) {
    if (!rekey_) return;
    ++stats_.rekey_attempts_failed;
    const unsigned attempt = rekey_->attempt;
    const RekeyTrigger t = rekey_->trigger;
    const std::uint32_t epoch = rekey_->epoch;
    // Any request of this attempt still in flight is abandoned.
    for (auto it = outstanding_.begin(); it != outstanding_.end();) {
        if (it->second.req.epoch == epoch) {
            loop_.cancel(it->second.timer);
            it = outstanding_.erase(it);
        } else {
            ++it;
        }
    }
    rekey_.reset();
    emit({.kind = Event::Kind::rekey_attempt_failed, .epoch = epoch, .reason = why});
    if (attempt >= limits::kRekeyAttempts) {
        P3_LOG_ERROR(REKEY_FAILED, "%s: rekey epoch %u: attempt %u of %u failed (%s)", cfg_.name.c_str(), epoch,
                     attempt, limits::kRekeyAttempts, what);
        return lose(Reason::SESSION_LOST_REKEY);
    }
    P3_LOG_WARN(REKEY_ATTEMPT_FAILED, "%s: rekey epoch %u: attempt %u of %u failed (%s); retrying", cfg_.name.c_str(),
                epoch, attempt, limits::kRekeyAttempts, what);
    retry_timer_ = loop_.after(limits::kRekeyRetryDelay, [this, t, attempt] {
        retry_timer_ = TimerId{};
        if (state_ == SessionState::up) start_rekey(t, attempt + 1);
    });
}

void Session::on_status(const Message& req, const Message& m) {
    if (!rekey_ || rekey_->switching || req.epoch != rekey_->epoch || m.epoch != rekey_->epoch) {
        ++stats_.unexpected;
        return;
    }
    if (*m.status != Status::ok) {
        P3_LOG_WARN(REKEY_REJECTED, "%s: rekey epoch %u refused by the secondary: %s", cfg_.name.c_str(),
                    rekey_->epoch, status_name(*m.status).data());
        return rekey_attempt_failed(Reason::REKEY_REJECTED, "refused");
    }
    // The secondary receives under the new keys: switch our sending side, then say so.
    if (!installer_.switch_tx(*m.p3_id, rekey_->data_p2s, local_lanes_)) {
        P3_LOG_ERROR(KEY_INSTALL_FAILED, "%s: rekey epoch %u: dataplane refused the outbound keys", cfg_.name.c_str(),
                     rekey_->epoch);
        return rekey_attempt_failed(Reason::KEY_INSTALL_FAILED, "switch refused");
    }
    tx_ = TxKeys{rekey_->epoch, rekey_->ctl_p2s.clone(), 0};
    rekey_->switching = true;
    limit_asked_epoch_ = 0xffffffffu;
    emit({.kind = Event::Kind::tx_switched, .epoch = rekey_->epoch, .p3_id = *m.p3_id});
    Message s;
    s.type = MsgType::rekey_switch;
    s.epoch = rekey_->epoch;
    s.first_seq = 1;
    request(std::move(s));
}

void Session::on_switch_ack(const Message& m) {
    if (!rekey_ || !rekey_->switching || m.epoch != rekey_->epoch) {
        ++stats_.unexpected;
        return;
    }
    const std::uint32_t e = rekey_->epoch;
    peer_tx_epoch_ = std::max(peer_tx_epoch_, e);
    schedule_retire_below(e, limits::kRetireTimeout);
    ++stats_.rekeys_done;
    P3_LOG_INFO(REKEY_DONE, "%s: rekey epoch %u complete (attempt %u)", cfg_.name.c_str(), e, rekey_->attempt);
    emit({.kind = Event::Kind::rekey_done, .epoch = e, .reason = Reason::REKEY_DONE});
    rekey_.reset();
    arm_rekey_timer();
    finish_work();
}

// Secondary. Idempotent per epoch: a retransmitted request gets the same answer; a request
// older than the newest one handled is stale (crossing rule, docs/control-channel.md).
void Session::on_rekey_request(const Message& m) {
    const std::uint32_t e = *m.epoch;
    Message st;
    st.type = MsgType::rekey_status;
    st.epoch = e;
    if (e < newest_req_epoch_ || (e == 0)) {
        ++stats_.rekey_stale;
        st.status = Status::stale;
        return respond(m, std::move(st));
    }
    if (e == newest_req_epoch_) {
        if (rekey_in_ && rekey_in_->epoch == e) {
            st.status = Status::ok;
            st.p3_id = rekey_in_->my_rx_id;
            st.lanes = local_lanes_;
        } else {
            st.status = last_req_status_.value_or(Status::stale);
        }
        return respond(m, std::move(st));
    }
    newest_req_epoch_ = e;
    Status s = Status::ok;
    auto data_p2s = resolve_key(ArrayKind::data, m.data_p2s, s);
    auto data_s2p = resolve_key(ArrayKind::data, m.data_s2p, s);
    auto ctl_p2s = resolve_key(ArrayKind::control, m.ctl_p2s, s);
    auto ctl_s2p = resolve_key(ArrayKind::control, m.ctl_s2p, s);
    if (s == Status::ok && ((m.data_p2s.index && m.data_p2s.index == m.data_s2p.index) ||
                            (m.ctl_p2s.index && m.ctl_p2s.index == m.ctl_s2p.index)))
        s = Status::index_reused;  // one index for both directions: that would be a reuse
    std::optional<std::uint32_t> id;
    if (s == Status::ok) {
        // Mark every index used before anything else can fail: an index named once is spent.
        for (auto [kind, ref] : {std::pair{ArrayKind::data, &m.data_p2s}, std::pair{ArrayKind::data, &m.data_s2p},
                                 std::pair{ArrayKind::control, &m.ctl_p2s}, std::pair{ArrayKind::control, &m.ctl_s2p}}) {
            if (!ref->index) continue;
            KeyArray& a = active(kind);
            a.used[ref->index->index] = true;
            --a.unused;
            ++stats_.indices_used;
            emit({.kind = Event::Kind::array_index_used, .array = kind, .gen = a.gen, .index = ref->index->index});
        }
        id = installer_.install_rx(*data_p2s, *m.lanes);
        if (!id) {
            P3_LOG_ERROR(KEY_INSTALL_FAILED, "%s: rekey epoch %u: dataplane refused the inbound keys",
                         cfg_.name.c_str(), e);
            s = Status::install_failed;
        }
    } else if (s == Status::index_reused || s == Status::unknown_array) {
        P3_LOG_ERROR(ARRAY_INDEX_REFUSED, "%s: rekey epoch %u names an array index that is %s", cfg_.name.c_str(), e,
                     s == Status::index_reused ? "already used" : "unknown");
    } else {
        P3_LOG_WARN(REKEY_REJECTED, "%s: rekey epoch %u refused: %s", cfg_.name.c_str(), e, status_name(s).data());
    }
    last_req_status_ = s;
    st.status = s;
    if (s == Status::ok) {
        RxEpoch rx;
        rx.p3_id = *id;
        rx.ctl = std::move(*ctl_p2s);
        rx_[e] = std::move(rx);
        RekeyIn in;
        in.epoch = e;
        in.data_s2p = std::move(*data_s2p);
        in.ctl_s2p = std::move(*ctl_s2p);
        in.peer_rx_id = *m.p3_id;
        in.my_rx_id = *id;
        rekey_in_ = std::move(in);
        enforce_rx_cap();
        st.p3_id = *id;
        st.lanes = local_lanes_;
        P3_LOG_INFO(REKEY_START, "%s: rekey epoch %u: new inbound keys installed", cfg_.name.c_str(), e);
        emit({.kind = Event::Kind::rekey_started, .epoch = e, .reason = Reason::REKEY_START});
    }
    respond(m, std::move(st));
}

std::optional<KeyMaterial> Session::resolve_key(ArrayKind kind, const KeyRef& ref, Status& st) {
    if (st != Status::ok) return std::nullopt;
    if (!ref.material.empty()) {
        if (ref.material.size() != key_len() + limits::kSaltLen) {
            st = Status::bad_key;
            return std::nullopt;
        }
        return KeyMaterial::from_wire(ref.material.span());
    }
    const KeyArray& a = active(kind);
    if (!ref.index || !a.complete || a.gen != ref.index->gen || ref.index->index >= a.size) {
        st = Status::unknown_array;
        return std::nullopt;
    }
    if (a.used[ref.index->index]) {
        st = Status::index_reused;
        return std::nullopt;
    }
    if (a.entry != key_len() + limits::kSaltLen) {
        st = Status::bad_key;
        return std::nullopt;
    }
    return KeyMaterial::from_wire(a.keys.span().subspan(ref.index->index * a.entry, a.entry));
}

void Session::on_rekey_switch(const Message& m) {
    const std::uint32_t e = *m.epoch;
    Message a;
    a.type = MsgType::rekey_switch_ack;
    a.epoch = e;
    a.first_seq = 1;
    if (rekey_in_ && rekey_in_->epoch == e && !rekey_in_->switched) {
        // The primary sends under epoch e (and has our inbound keys since its request): follow.
        if (!installer_.switch_tx(rekey_in_->peer_rx_id, rekey_in_->data_s2p, local_lanes_)) {
            P3_LOG_ERROR(KEY_INSTALL_FAILED, "%s: rekey epoch %u: dataplane refused the outbound keys",
                         cfg_.name.c_str(), e);
            Message err;
            err.type = MsgType::error;
            err.error_code = Status::install_failed;
            return respond(m, std::move(err));
        }
        tx_ = TxKeys{e, rekey_in_->ctl_s2p.clone(), 0};
        rekey_in_->switched = true;
        limit_asked_epoch_ = 0xffffffffu;
        peer_tx_epoch_ = std::max(peer_tx_epoch_, e);
        schedule_retire_below(e, limits::kRetireTimeout);
        ++stats_.rekeys_done;
        emit({.kind = Event::Kind::tx_switched, .epoch = e, .p3_id = rekey_in_->peer_rx_id});
        P3_LOG_INFO(REKEY_DONE, "%s: rekey epoch %u complete", cfg_.name.c_str(), e);
        emit({.kind = Event::Kind::rekey_done, .epoch = e, .reason = Reason::REKEY_DONE});
        return respond(m, std::move(a));
    }
    if (tx_.epoch == e) return respond(m, std::move(a));  // a retransmission: same answer
    ++stats_.unexpected;
    Message err;
    err.type = MsgType::error;
    err.error_code = e < tx_.epoch ? Status::stale : Status::unknown_epoch;
    respond(m, std::move(err));
}

// ---- inbound key lifetime -----------------------------------------------------------------------

void Session::note_seen(std::uint32_t epoch) {
    auto it = rx_.find(epoch);
    if (it == rx_.end() || it->second.seen) return;
    it->second.seen = true;
    peer_tx_epoch_ = std::max(peer_tx_epoch_, epoch);
    // The peer sends under `epoch` now and never goes back: older keys only serve packets
    // still in flight, so they go after a short linger.
    schedule_retire_below(epoch, limits::kRetireLinger);
}

void Session::schedule_retire_below(std::uint32_t epoch, Duration after) {
    const TimePoint at = loop_.clock().now() + after;
    for (auto& [e, r] : rx_) {
        if (e >= epoch) break;
        if (r.retire_timer && r.retire_at <= at) continue;
        loop_.cancel(r.retire_timer);
        r.retire_at = at;
        const std::uint32_t ee = e;
        r.retire_timer = loop_.at(at, [this, ee] { retire(ee); });
    }
}

void Session::retire(std::uint32_t epoch) {
    auto it = rx_.find(epoch);
    if (it == rx_.end()) return;
    const std::uint32_t id = it->second.p3_id;
    loop_.cancel(it->second.retire_timer);
    rx_.erase(it);  // the control key is wiped with it
    installer_.retire_rx(id);
    ++stats_.keys_retired;
    P3_LOG_DEBUG(KEYS_RETIRED, "%s: inbound keys of epoch %u (P3 ID 0x%x) retired", cfg_.name.c_str(), epoch, id);
    emit({.kind = Event::Kind::rx_retired, .epoch = epoch, .p3_id = id, .reason = Reason::KEYS_RETIRED});
}

// More inbound epochs than kMaxRxEpochs (attempts that never completed): drop the oldest that
// the peer is known not to use.
void Session::enforce_rx_cap() {
    while (rx_.size() > limits::kMaxRxEpochs) {
        auto victim = rx_.end();
        for (auto it = rx_.begin(); it != rx_.end(); ++it)
            if (it->first != peer_tx_epoch_) {
                victim = it;
                break;
            }
        if (victim == rx_.end()) return;
        retire(victim->first);
    }
}

void Session::tick() {
    tick_timer_ = loop_.after(limits::kTick, [this] { tick(); });
    // Traffic under newer inbound keys (the workers' flag).
    for (auto it = rx_.rbegin(); it != rx_.rend(); ++it) {
        if (it->second.seen) break;  // everything older is scheduled already
        if (installer_.rx_seen(it->second.p3_id)) {
            note_seen(it->first);
            break;
        }
    }
    // Packet-count limit of the current outbound keys.
    if (cfg_.params.rekey_packets && limit_asked_epoch_ != tx_.epoch &&
        installer_.tx_packets() >= cfg_.params.rekey_packets) {
        limit_asked_epoch_ = tx_.epoch;
        if (primary()) {
            queue({.kind = Work::Kind::rekey, .trigger = RekeyTrigger::packet_limit});
        } else {
            Message m;
            m.type = MsgType::rekey_ask;
            m.ask_reason = static_cast<std::uint8_t>(RekeyTrigger::packet_limit);
            request(std::move(m));
        }
    }
}

// ---- key arrays -------------------------------------------------------------------------------------

std::uint32_t Session::array_gen(ArrayKind k) const noexcept { return active(k).complete ? active(k).gen : 0; }
std::uint32_t Session::array_unused(ArrayKind k) const noexcept { return active(k).complete ? active(k).unused : 0; }

Duration Session::array_time(ArrayKind k) const noexcept {
    return seconds(k == ArrayKind::data ? cfg_.params.data_array_time : cfg_.params.control_array_time);
}

bool Session::fresh(ArrayKind k) const noexcept {
    const KeyArray& a = active(k);
    return a.complete && a.unused >= 1 && loop_.clock().now() < a.complete_at + array_time(k);
}

void Session::deliver_arrays(std::uint8_t kinds) {
    if (!primary() || state_ != SessionState::up) return;
    if (kinds & kFlushData) queue({.kind = Work::Kind::deliver, .kinds = kFlushData});
    if (kinds & kFlushControl) queue({.kind = Work::Kind::deliver, .kinds = kFlushControl});
}

void Session::flush_arrays(std::uint8_t kinds, bool with_new) {
    if (!primary() || state_ != SessionState::up || (kinds & 3) == 0) return;
    for (ArrayKind k : {ArrayKind::data, ArrayKind::control}) {
        if (!(kinds & kind_bit(k))) continue;
        // Ours go at once: no rekey names them from here on.
        const std::uint32_t gen = active(k).gen;
        active(k).wipe();
        loop_.cancel(array_timer_[k == ArrayKind::data ? 0 : 1]);
        P3_LOG_NOTICE(ARRAY_FLUSHED, "%s: %s key array generation %u flushed%s", cfg_.name.c_str(), kind_name(k), gen,
                      with_new ? "; a new one follows" : "");
        emit({.kind = Event::Kind::array_flushed, .array = k, .gen = gen, .reason = Reason::ARRAY_FLUSHED});
    }
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

void Session::start_delivery(ArrayKind k) {
    const std::uint32_t size = std::min(cfg_.params.array_size, limits::kMaxArraySize);
    Delivery d;
    d.kind = k;
    d.array.gen = next_gen_++;
    d.array.size = size;
    d.array.entry = key_len() + limits::kSaltLen;
    d.array.keys = SecretBytes(std::size_t{size} * d.array.entry);
    if (!keys_.fill(d.array.keys.span())) {
        P3_LOG_ERROR(KEY_SOURCE_FAILED, "%s: key generator failed: no %s key array", cfg_.name.c_str(), kind_name(k));
        return finish_work();
    }
    d.array.used.assign(size, false);
    d.array.unused = size;
    delivery_ = std::move(d);
    send_chunk();
}

void Session::send_chunk() {
    Delivery& d = *delivery_;
    const std::uint32_t n = std::min(limits::kKeysPerChunk, d.array.size - d.next_offset);
    Message m;
    m.type = MsgType::array_chunk;
    m.array_kind = d.kind;
    m.array_gen = d.array.gen;
    m.array_size = d.array.size;
    m.array_offset = d.next_offset;
    m.key_len = static_cast<std::uint8_t>(key_len());
    m.array_keys = SecretBytes(d.array.keys.span().subspan(std::size_t{d.next_offset} * d.array.entry,
                                                           std::size_t{n} * d.array.entry));
    request(std::move(m));
}

void Session::on_chunk_ack(const Message& m) {
    if (!delivery_ || m.array_gen != delivery_->array.gen || m.array_offset != delivery_->next_offset) {
        ++stats_.unexpected;
        return;
    }
    if (*m.status != Status::ok) {
        P3_LOG_WARN(ARRAY_DELIVERY_FAILED, "%s: %s key array generation %u refused: %s", cfg_.name.c_str(),
                    kind_name(delivery_->kind), delivery_->array.gen, status_name(*m.status).data());
        delivery_.reset();
        return finish_work();
    }
    Delivery& d = *delivery_;
    d.next_offset += std::min(limits::kKeysPerChunk, d.array.size - d.next_offset);
    if (d.next_offset < d.array.size) return send_chunk();
    // Complete on both sides: the new generation replaces the old one, which is wiped.
    const ArrayKind k = d.kind;
    d.array.complete = true;
    d.array.complete_at = loop_.clock().now();
    active(k) = std::move(d.array);
    delivery_.reset();
    ++stats_.arrays_delivered;
    P3_LOG_INFO(ARRAY_ACTIVE, "%s: %s key array generation %u active (%u keys)", cfg_.name.c_str(), kind_name(k),
                active(k).gen, active(k).size);
    emit({.kind = Event::Kind::array_active, .array = k, .gen = active(k).gen, .reason = Reason::ARRAY_ACTIVE});
    arm_array_timer(k);
    finish_work();
}

void Session::arm_array_timer(ArrayKind k) {
    TimerId& t = array_timer_[k == ArrayKind::data ? 0 : 1];
    loop_.cancel(t);
    t = loop_.after(array_time(k), [this, k] {
        array_timer_[k == ArrayKind::data ? 0 : 1] = TimerId{};
        P3_LOG_INFO(ARRAY_REPLACE, "%s: %s key array generation %u is %ld s old: replaced", cfg_.name.c_str(),
                    kind_name(k), active(k).gen, secs(array_time(k)));
        queue({.kind = Work::Kind::deliver, .kinds = kind_bit(k)});
    });
}

// Secondary: collect chunks of a generation; when all are in, it replaces the active array.
void Session::on_chunk(const Message& m) {
    const ArrayKind k = *m.array_kind;
    KeyArray& act = active(k);
    KeyArray& in = incoming_[k == ArrayKind::data ? 0 : 1];
    const std::uint32_t gen = *m.array_gen, off = *m.array_offset;
    Message a;
    a.type = MsgType::array_chunk_ack;
    a.array_kind = k;
    a.array_gen = gen;
    a.array_offset = off;
    a.status = Status::ok;
    if (act.complete && gen == act.gen) return respond(m, std::move(a));  // late duplicate
    std::uint32_t& newest = newest_gen_[k == ArrayKind::data ? 0 : 1];
    if ((act.complete && gen < act.gen) || (in.gen && gen < in.gen) || gen < newest) {
        a.status = Status::stale;
        return respond(m, std::move(a));
    }
    if (*m.key_len != key_len()) {
        a.status = Status::bad_key;
        return respond(m, std::move(a));
    }
    newest = gen;
    if (in.gen != gen) {
        in.wipe();
        in.gen = gen;
        in.size = *m.array_size;
        in.entry = key_len() + limits::kSaltLen;
        in.keys = SecretBytes(std::size_t{in.size} * in.entry);
        in.have.assign(in.size, false);
    }
    if (*m.array_size != in.size) {
        a.status = Status::bad_key;
        return respond(m, std::move(a));
    }
    const std::size_t n = m.array_keys.size() / in.entry;
    std::memcpy(in.keys.data() + std::size_t{off} * in.entry, m.array_keys.data(), n * in.entry);
    for (std::size_t i = off; i < off + n; ++i)
        if (!in.have[i]) {
            in.have[i] = true;
            ++in.have_count;
        }
    if (in.have_count == in.size) {
        in.complete = true;
        in.complete_at = loop_.clock().now();
        in.used.assign(in.size, false);
        in.unused = in.size;
        in.have.clear();
        act = std::move(in);
        in.wipe();
        ++stats_.arrays_delivered;
        P3_LOG_INFO(ARRAY_ACTIVE, "%s: %s key array generation %u active (%u keys)", cfg_.name.c_str(), kind_name(k),
                    act.gen, act.size);
        emit({.kind = Event::Kind::array_active, .array = k, .gen = act.gen, .reason = Reason::ARRAY_ACTIVE});
    }
    respond(m, std::move(a));
}

void Session::on_flush(const Message& m) {
    for (ArrayKind k : {ArrayKind::data, ArrayKind::control}) {
        if (!(*m.flush_kinds & kind_bit(k))) continue;
        const std::uint32_t gen = active(k).gen;
        if (gen || incoming_[k == ArrayKind::data ? 0 : 1].gen) {
            P3_LOG_NOTICE(ARRAY_FLUSHED, "%s: %s key array generation %u flushed by the primary", cfg_.name.c_str(),
                          kind_name(k), gen);
            emit({.kind = Event::Kind::array_flushed, .array = k, .gen = gen, .reason = Reason::ARRAY_FLUSHED});
        }
        active(k).wipe();
        incoming_[k == ArrayKind::data ? 0 : 1].wipe();
    }
    Message a;
    a.type = MsgType::array_flush_ack;
    a.flush_kinds = *m.flush_kinds;
    respond(m, std::move(a));
}

}  // namespace p3::channel
