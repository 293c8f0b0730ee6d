// Heartbeat of one session (docs/control-channel.md §4): each side sends one every
// heartbeat_time and answers the peer's; the session is lost heartbeat_fail after the first
// heartbeat nobody answered. Any heartbeat-ack proves the peer alive.
//
//   answered --heartbeat sent--> unanswered since t --any ack--> answered
//   unanswered since t --t + heartbeat_fail--> the session is lost (SESSION_LOST_HEARTBEAT)
//
// Round trip (for status): from a heartbeat sent to the answer that follows, measured only when
// that heartbeat was the one outstanding (an answer after two sends could be to either).
#pragma once

#include <optional>

#include "control/channel/core.hpp"
#include "control/channel/link.hpp"

namespace p3::channel {

class Heartbeat {
public:
    Heartbeat(SessionCore& core, MessageLink& link) : c_(core), link_(link) {}

    void start();                          // the session is up
    void stop() {
        unanswered_since_.reset();
        pending_.reset();
    }
    void on_due();                         // timer: send one
    void on_failed();                      // timer: heartbeat_fail passed unanswered
    void on_answered();                    // a heartbeat-ack arrived
    void answer(const Message& req);       // the peer's heartbeat
    // The last round trip measured this session (nullopt: none yet).
    std::optional<Duration> rtt() const noexcept { return rtt_; }

private:
    SessionCore& c_;
    MessageLink& link_;
    std::optional<TimePoint> unanswered_since_;
    std::optional<TimePoint> pending_;     // the one heartbeat outstanding, sent then
    bool ambiguous_ = false;               // more than one outstanding: no measurement
    std::optional<Duration> rtt_;
};

}  // namespace p3::channel
