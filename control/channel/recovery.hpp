// A secondary's recovery of a lost session (seed spec §2.1.7; docs/control-channel.md §4):
// new setup exchanges towards the primary, spaced by the control plane's one back-off rule
// (control/backoff.hpp: 5 s, 5 s more per failed attempt, never above 60 s).
//
//   lost --backoff--> retrying (SetupDriver::start_setup) --setup ok--> up (recovered)
//   retrying --setup failed--> lost, the next back-off
// A success resets the count; a failure of the very first setup starts the rules too.
// After the peer's goodbye the first attempt goes at once (the peer ended the session on
// purpose and may well take it back at once); its failures then back off 5 s, 10 s, ... as
// after any loss.
#pragma once

#include "control/channel/core.hpp"

namespace p3::channel {

class Recovery {
public:
    Recovery(SessionCore& core, SetupDriver* setup) : c_(core), setup_(setup) {}

    bool recovering() const noexcept { return recovering_; }
    // The session was lost: the first back-off, or (at_once: the peer said goodbye) an attempt
    // on the event loop's next turn.
    void on_lost(bool at_once = false);
    void on_setup_failed();
    void on_backoff_done();
    // The session is up again; was_recovering: it came back through recovery.
    void on_up(bool was_recovering);
    // The session was shut down: no recovery under way (a later start() is a fresh session).
    void reset() noexcept {
        recovering_ = quick_ = false;
        failures_ = attempts_ = 0;
    }

private:
    void schedule_retry();

    SessionCore& c_;
    SetupDriver* setup_;
    unsigned failures_ = 0;   // failed attempts of this recovery
    unsigned attempts_ = 0;   // attempts started in this recovery
    bool recovering_ = false;
    bool quick_ = false;      // this recovery's first attempt went without a wait
};

}  // namespace p3::channel
