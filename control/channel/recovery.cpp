// A secondary's recovery with back-off (recovery.hpp).
#include "control/channel/recovery.hpp"

#include "control/backoff.hpp"
#include "control/channel/timers.hpp"

namespace p3::channel {

using namespace detail;

void Recovery::on_lost(bool at_once) {
    recovering_ = true;
    quick_ = at_once;
    failures_ = attempts_ = 0;
    schedule_retry();
}

void Recovery::schedule_retry() {
    // After a quick first attempt the back-off runs one step behind: its first failure waits
    // 5 s, as the first attempt after any other loss does.
    Duration wait = control::Backoff::after(failures_);
    if (quick_) wait = failures_ == 0 ? Duration::zero() : control::Backoff::after(failures_ - 1);
    c_.state = SessionState::lost;
    if (wait == Duration::zero())
        P3_LOG_INFO(RECOVERY_RETRY, "%s: next setup attempt now", c_.name());
    else
        P3_LOG_INFO(RECOVERY_RETRY, "%s: next setup attempt in %ld s", c_.name(), secs(wait));
    c_.emit({.kind = Event::Kind::retry_scheduled, .delay = wait, .reason = Reason::RECOVERY_RETRY});
    c_.timers.backoff(wait);
}

void Recovery::on_backoff_done() {
    c_.state = SessionState::retrying;
    ++attempts_;
    P3_LOG_INFO(RECOVERY_ATTEMPT, "%s: setup attempt %u", c_.name(), attempts_);
    c_.emit({.kind = Event::Kind::retry_started, .reason = Reason::RECOVERY_ATTEMPT});
    if (setup_) setup_->start_setup();
}

void Recovery::on_setup_failed() {
    if (!recovering_) {
        // The very first setup failed: recovery rules apply from here on.
        recovering_ = true;
        quick_ = false;
        failures_ = attempts_ = 0;
    } else {
        ++failures_;
    }
    P3_LOG_WARN(RECOVERY_FAILED, "%s: setup attempt failed (%u so far)", c_.name(), failures_);
    c_.timers.cancel_backoff();
    schedule_retry();
}

void Recovery::on_up(bool was_recovering) {
    if (was_recovering) {
        ++c_.stats.recoveries;
        P3_LOG_NOTICE(RECOVERED, "%s: session recovered after %u failed setup attempt(s)", c_.name(), failures_);
        c_.emit({.kind = Event::Kind::recovered, .reason = Reason::RECOVERED});
    }
    reset();
}

}  // namespace p3::channel
