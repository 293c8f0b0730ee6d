// The session's named timers: arming by name, firing into the hooks (timers.hpp).
#include "control/channel/timers.hpp"

#include "control/channel/core.hpp"

namespace p3::channel {

using detail::kind_slot;

void Timers::heartbeat_due(Duration after) {
    // Re-armed from its own callback, or early (a takeover sends one at once): never two.
    loop_.cancel(heartbeat_);
    heartbeat_ = loop_.after(after, [this] { hooks_.on_heartbeat_due(); });
}

void Timers::heartbeat_fail(TimePoint at) {
    heartbeat_fail_ = loop_.at(at, [this] {
        heartbeat_fail_ = control::TimerId{};
        hooks_.on_heartbeat_failed();
    });
}

void Timers::heartbeat_answered() {
    loop_.cancel(heartbeat_fail_);
    heartbeat_fail_ = control::TimerId{};
}

void Timers::tick(Duration after) {
    loop_.cancel(tick_);
    tick_ = loop_.after(after, [this] { hooks_.on_tick(); });
}

void Timers::rekey_due(Duration after) {
    loop_.cancel(rekey_);
    rekey_ = loop_.after(after, [this] {
        rekey_ = control::TimerId{};
        hooks_.on_rekey_due();
    });
}

void Timers::rekey_retry(Duration after, RekeyTrigger t, unsigned attempt) {
    rekey_retry_ = loop_.after(after, [this, t, attempt] {
        rekey_retry_ = control::TimerId{};
        hooks_.on_rekey_retry_due(t, attempt);
    });
}

void Timers::array_due(ArrayKind k, Duration after) {
    control::TimerId& t = array_[kind_slot(k)];
    loop_.cancel(t);
    t = loop_.after(after, [this, k] {
        array_[kind_slot(k)] = control::TimerId{};
        hooks_.on_array_due(k);
    });
}

void Timers::array_retry(ArrayKind k, Duration after) {
    array_[kind_slot(k)] = loop_.after(after, [this, k] { hooks_.on_array_retry_due(k); });
}

void Timers::cancel_array(ArrayKind k) { loop_.cancel(array_[kind_slot(k)]); }

void Timers::array_chunk(Duration after) {
    loop_.cancel(chunk_);
    chunk_ = loop_.after(after, [this] {
        chunk_ = control::TimerId{};
        hooks_.on_array_chunk_due();
    });
}

void Timers::cancel_array_chunk() {
    loop_.cancel(chunk_);
    chunk_ = control::TimerId{};
}

void Timers::promote(Duration after) {
    loop_.cancel(promote_);
    promote_ = loop_.after(after, [this] {
        promote_ = control::TimerId{};
        hooks_.on_promote_due();
    });
}

void Timers::cancel_promote() {
    loop_.cancel(promote_);
    promote_ = control::TimerId{};
}

void Timers::run_next() {
    loop_.cancel(run_);
    run_ = loop_.after(Duration::zero(), [this] {
        run_ = control::TimerId{};
        hooks_.on_run_next();
    });
}

void Timers::backoff(Duration after) {
    backoff_ = loop_.after(after, [this] {
        backoff_ = control::TimerId{};
        hooks_.on_backoff_done();
    });
}

void Timers::cancel_backoff() { loop_.cancel(backoff_); }

void Timers::goodbye(Duration after) {
    loop_.cancel(goodbye_);
    goodbye_ = loop_.after(after, [this] {
        goodbye_ = control::TimerId{};
        hooks_.on_goodbye_timeout();
    });
}

void Timers::stop_session() {
    for (control::TimerId* t : {&heartbeat_, &heartbeat_fail_, &rekey_, &rekey_retry_, &tick_, &run_, &array_[0],
                                &array_[1], &chunk_, &promote_, &goodbye_}) {
        loop_.cancel(*t);
        *t = control::TimerId{};
    }
}

}  // namespace p3::channel
