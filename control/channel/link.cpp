// The session's transport: seal/open, ids, replay, retransmission (link.hpp).
#include "control/channel/link.hpp"

#include <cstring>

namespace p3::channel {

using namespace detail;

using namespace std::chrono_literals;

void MessageLink::start() {
    next_msg_id_ = 1;
    std::uint8_t r8[8];
    c_.rng.fill(r8);
    std::memcpy(&tcp_seq_, r8, 4);
    std::memcpy(&tcp_ack_, r8 + 4, 4);
}

void MessageLink::stop() {
    for (auto& [id, o] : outstanding_) c_.loop.cancel(o.timer);
    outstanding_.clear();
}

bool MessageLink::send(const Message& m) {
    Epochs::Tx& tx = epochs_.tx();
    if (!c_.sending() || !tx.ctl.valid()) return false;
    WipedBuf<limits::kMaxMessageLen> msg;
    const std::size_t n = encode(m, msg.b);
    if (n == 0) {
        P3_LOG_ERROR(INTERNAL, "%s: %s could not be encoded", c_.name(), msg_type_name(m.type).data());
        return false;
    }
    WipedBuf<limits::kMaxInnerPacket> pkt;
    std::uint8_t idb[2];
    c_.rng.fill(idb);
    FrameParams fp;
    fp.epoch = tx.epoch;
    fp.seq = ++tx.seq;
    if (tx.replicated && tx.seq - tx.published >= limits::kReplicaSeqMargin) {
        // The other members' copy must stay ahead of what we send (limits.hpp): publish again.
        tx.replicated = false;
        c_.emit({.kind = Event::Kind::replica_due, .epoch = tx.epoch});
    }
    fp.ip_id = static_cast<std::uint16_t>((idb[0] << 8) | idb[1]);
    fp.tcp_seq = tcp_seq_;
    fp.tcp_ack = tcp_ack_;
    const std::size_t len = seal_packet(c_.cfg.addrs, tx.ctl, fp, {msg.b, n}, pkt.b);
    if (len == 0) {
        P3_LOG_ERROR(INTERNAL, "%s: control packet could not be sealed", c_.name());
        return false;
    }
    const std::size_t ip_len = c_.cfg.addrs.local.is_v6() ? limits::kInnerV6Len : limits::kInnerV4Len;
    tcp_seq_ += static_cast<std::uint32_t>(len - ip_len - limits::kTcpLen);
    ++c_.stats.sent;
    out_.send_control({pkt.b, len});
    return true;
}

void MessageLink::request(Message&& m) {
    m.msg_id = next_id();
    const std::uint32_t id = m.msg_id;
    send(m);
    Outstanding o;
    o.req = std::move(m);
    o.deadline = c_.now() + limits::kRequestTimeout;
    o.timer = c_.loop.after(limits::kRetransmitInterval, [this, id] { on_retransmit(id); });
    outstanding_[id] = std::move(o);
}

void MessageLink::respond(const Message& req, Message&& resp) {
    resp.msg_id = req.msg_id;
    send(resp);
}

void MessageLink::on_retransmit(std::uint32_t id) {
    auto it = outstanding_.find(id);
    if (it == outstanding_.end()) return;
    if (c_.now() >= it->second.deadline) {
        Message req = std::move(it->second.req);
        outstanding_.erase(it);
        ++c_.stats.request_timeouts;
        P3_LOG_WARN(CH_REQUEST_TIMEOUT, "%s: %s (id %u) unanswered for %ld s", c_.name(),
                    msg_type_name(req.type).data(), id, secs(limits::kRequestTimeout));
        on_failed_(std::move(req));
        return;
    }
    ++c_.stats.retransmits;
    // Resealed with the current control key and a new sequence (never the same bytes twice).
    send(it->second.req);
    it->second.timer = c_.loop.after(limits::kRetransmitInterval, [this, id] { on_retransmit(id); });
}

void MessageLink::log_drop(Reason r, const char* what) {
    // One line per second at most: a flood must not become a log flood (the counters say all).
    const TimePoint now = c_.now();
    if (now - last_drop_log_ < 1s) return;
    last_drop_log_ = now;
    log::write(log::Level::warning, r, "%s: control packet dropped: %s", c_.name(), what);
}

std::optional<Message> MessageLink::receive(std::span<const std::uint8_t> inner) {
    FrameError fe;
    auto sv = parse_packet(c_.cfg.addrs, inner, &fe);
    if (!sv) {
        ++c_.stats.frame_errors;
        log_drop(Reason::CH_MALFORMED, frame_error_name(fe).data());
        return std::nullopt;
    }
    Epochs::Rx* r = epochs_.rx(sv->epoch);
    if (!r) {
        ++c_.stats.unknown_epoch;
        log_drop(Reason::CH_AUTH_FAILED, "unknown control key epoch");
        return std::nullopt;
    }
    // Checked before the tag (a forged packet must not move the window), recorded after it.
    if (r->win->check(sv->seq) != wire::ReplayResult::ok) {
        ++c_.stats.replays;
        log_drop(Reason::CH_REPLAY, "replayed sequence");
        return std::nullopt;
    }
    WipedBuf<limits::kMaxInnerPacket> plain;
    auto n = open_sealed(r->ctl, *sv, plain.b);
    if (!n) {
        ++c_.stats.auth_failures;
        log_drop(Reason::CH_AUTH_FAILED, "authentication failed");
        return std::nullopt;
    }
    r->win->update(sv->seq);  // ok: one thread, nothing recorded since the check
    epochs_.note_seen(sv->epoch);
    ParseError pe;
    auto m = parse({plain.b, *n}, &pe, &c_.stats.parse);
    if (!m) {
        ++c_.stats.frame_errors;
        log_drop(Reason::CH_MALFORMED, parse_error_name(pe).data());
        return std::nullopt;
    }
    ++c_.stats.received;
    return m;
}

std::optional<Message> MessageLink::take_request(const Message& m) {
    auto it = outstanding_.find(m.msg_id);
    if (it == outstanding_.end() || (m.type != response_of(it->second.req.type) && m.type != MsgType::error)) {
        ++c_.stats.unexpected;
        P3_PEER_LOG(debug, Reason::CH_UNEXPECTED, "%s: %s (id %u) matches no request in flight", c_.name(),
                    msg_type_name(m.type).data(), m.msg_id);
        return std::nullopt;
    }
    c_.loop.cancel(it->second.timer);
    Message req = std::move(it->second.req);
    outstanding_.erase(it);
    if (m.type == MsgType::error) {
        ++c_.stats.peer_errors;
        P3_LOG_WARN(CH_PEER_ERROR, "%s: peer refused %s: %s", c_.name(), msg_type_name(req.type).data(),
                    status_name(*m.error_code).data());
        on_failed_(std::move(req));  // handled as an unanswered request
        return std::nullopt;
    }
    return req;
}

void MessageLink::abandon_epoch(std::uint32_t epoch) {
    for (auto it = outstanding_.begin(); it != outstanding_.end();) {
        if (it->second.req.epoch == epoch) {
            c_.loop.cancel(it->second.timer);
            it = outstanding_.erase(it);
        } else {
            ++it;
        }
    }
}

bool MessageLink::asking(MsgType type) const {
    for (const auto& [id, o] : outstanding_)
        if (o.req.type == type) return true;
    return false;
}

}  // namespace p3::channel
