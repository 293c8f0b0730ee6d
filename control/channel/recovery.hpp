// A secondary's recovery of a lost session (seed spec §2.1.7; docs/control-channel.md §4):
// new setup exchanges towards the primary, spaced by the control plane's one back-off rule
// (control/backoff.hpp: 5 s, 5 s more per failed attempt, never above 60 s).
//
//   lost --backoff--> retrying (SetupDriver::start_setup) --setup ok--> up (recovered)
//   retrying --setup failed--> lost, the next back-off
// A success resets the count; a failure of the very first setup starts the rules too.
#pragma once

#include "control/channel/core.hpp"

namespace p3::channel {

class Recovery {
public:
    Recovery(SessionCore& core, SetupDriver* setup) : c_(core), setup_(setup) {}

    bool recovering() const noexcept { return recovering_; }
    void on_lost();                        // the session was lost: the first back-off
    void on_setup_failed();
    void on_backoff_done();
    // The session is up again; was_recovering: it came back through recovery.
    void on_up(bool was_recovering);

private:
    void schedule_retry();

    SessionCore& c_;
    SetupDriver* setup_;
    unsigned failures_ = 0;
    bool recovering_ = false;
};

}  // namespace p3::channel
