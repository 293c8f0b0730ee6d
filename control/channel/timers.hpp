// The named timers of one session (in the manner of WireGuard's timers.c): a unit arms a timer
// by its name, and when it fires the hook of the same name runs on the session, which hands it
// to the unit that owns the concern. The timers of one request (retransmission, link.cpp) and
// of one inbound epoch (retirement, epochs.cpp) live with what they time.
//
//   heartbeat_due      every heartbeat_time: send a heartbeat          -> on_heartbeat_due
//   heartbeat_fail     heartbeat_fail after the first unanswered one   -> on_heartbeat_failed
//   tick               every second: rx-seen polling, packet limit     -> on_tick
//   rekey_due          primary, rekey_wait after the last rekey        -> on_rekey_due
//   rekey_retry        primary, after a failed attempt                 -> on_rekey_retry_due
//   array_due          primary, an array's lifetime is over            -> on_array_due
//   array_retry        primary, an unacknowledged delivery's next try  -> on_array_retry_due
//   array_chunk        primary, the next chunk of a trickled delivery  -> on_array_chunk_due
//   promote            kRetireLinger after the peer's switch was known -> on_promote_due
//   run_next           the next queued exchange, once the stack unwound -> on_run_next
//   backoff            secondary, the next setup attempt after a loss  -> on_backoff_done
//   goodbye            kGoodbyeWait after a goodbye went out unanswered -> on_goodbye_timeout
//
// Each fired timer's id is cleared before its hook runs, except heartbeat_due and tick (the
// hook re-arms them first) and array_retry: an array slot's id is overwritten, never cancelled,
// by array_retry, and array_due clears the slot when it fires, as the channel has always done.
#pragma once

#include <array>

#include "control/channel/types.hpp"
#include "control/event_loop.hpp"

namespace p3::channel {

class TimerHooks {
public:
    virtual void on_heartbeat_due() = 0;
    virtual void on_heartbeat_failed() = 0;
    virtual void on_tick() = 0;
    virtual void on_rekey_due() = 0;
    virtual void on_rekey_retry_due(RekeyTrigger t, unsigned attempt) = 0;
    virtual void on_array_due(ArrayKind k) = 0;
    virtual void on_array_retry_due(ArrayKind k) = 0;
    virtual void on_array_chunk_due() = 0;
    virtual void on_promote_due() = 0;
    virtual void on_run_next() = 0;
    virtual void on_backoff_done() = 0;
    virtual void on_goodbye_timeout() = 0;

protected:
    ~TimerHooks() = default;
};

class Timers {
public:
    Timers(control::EventLoop& loop, TimerHooks& hooks) : loop_(loop), hooks_(hooks) {}
    Timers(const Timers&) = delete;
    Timers& operator=(const Timers&) = delete;

    void heartbeat_due(Duration after);
    void heartbeat_fail(TimePoint at);
    void heartbeat_answered();             // cancels heartbeat_fail
    void tick(Duration after);
    void rekey_due(Duration after);        // re-arms
    void rekey_retry(Duration after, RekeyTrigger t, unsigned attempt);
    void array_due(ArrayKind k, Duration after);  // re-arms
    void array_retry(ArrayKind k, Duration after);
    void cancel_array(ArrayKind k);
    void array_chunk(Duration after);
    void cancel_array_chunk();
    void promote(Duration after);
    void cancel_promote();
    void run_next();                       // re-arms, at once
    void backoff(Duration after);
    void cancel_backoff();
    void goodbye(Duration after);

    // Every timer of an up or closing session (all but backoff): it is torn down.
    void stop_session();

private:
    control::EventLoop& loop_;
    TimerHooks& hooks_;
    control::TimerId heartbeat_, heartbeat_fail_, tick_, rekey_, rekey_retry_, run_, backoff_, chunk_, promote_, goodbye_;
    std::array<control::TimerId, 2> array_{};
};

}  // namespace p3::channel
