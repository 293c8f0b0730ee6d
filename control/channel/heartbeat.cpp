// Heartbeat of one session (heartbeat.hpp).
#include "control/channel/heartbeat.hpp"

#include "control/channel/timers.hpp"

namespace p3::channel {

using std::chrono::seconds;

void Heartbeat::start() {
    unanswered_since_.reset();
    pending_.reset();
    rtt_.reset();
    c_.timers.heartbeat_due(seconds(c_.cfg.params.heartbeat_time));
}

void Heartbeat::on_due() {
    c_.timers.heartbeat_due(seconds(c_.cfg.params.heartbeat_time));
    Message m;
    m.type = MsgType::heartbeat;
    m.msg_id = link_.next_id();
    ++c_.stats.heartbeats_sent;
    if (pending_) ambiguous_ = true;
    else pending_ = c_.now();
    link_.send(m);
    if (!unanswered_since_) {
        // The session is lost heartbeat_fail after the first heartbeat nobody answered.
        unanswered_since_ = c_.now();
        c_.timers.heartbeat_fail(*unanswered_since_ + seconds(c_.cfg.params.heartbeat_fail));
    }
}

void Heartbeat::on_failed() { c_.ops.lose(Reason::SESSION_LOST_HEARTBEAT); }

void Heartbeat::on_answered() {
    // Heartbeats are not retransmitted: any answer proves the peer alive.
    ++c_.stats.heartbeats_answered;
    if (pending_ && !ambiguous_) rtt_ = c_.now() - *pending_;
    pending_.reset();
    ambiguous_ = false;
    unanswered_since_.reset();
    c_.timers.heartbeat_answered();
}

void Heartbeat::answer(const Message& req) {
    Message a;
    a.type = MsgType::heartbeat_ack;
    link_.respond(req, std::move(a));
}

}  // namespace p3::channel
