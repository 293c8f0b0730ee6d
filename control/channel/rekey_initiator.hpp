// The primary's side of a rekey (seed spec §2.1.6; docs/control-channel.md §5), one attempt
// in flight, run as an exchange of the session's queue:
//
//   request_sent --status ok--> switch_sent --switch ack--> done (rekey_due re-armed)
//   request_sent --status refused / unanswered-->  attempt failed
//   switch_sent  --unanswered-->                    attempt failed
//   attempt failed --after kRekeyRetryDelay--> a new attempt with fresh keys and epoch,
//                  up to kRekeyAttempts in all; then the session is lost (SESSION_LOST_REKEY)
//
// Our inbound keys are installed before the request goes out (the secondary may switch as soon
// as it hears our P3 ID); our outbound keys switch when the secondary's status says it
// receives under the new ones.
#pragma once

#include <cstdint>
#include <optional>

#include "control/channel/arrays.hpp"
#include "control/channel/core.hpp"
#include "control/channel/epochs.hpp"
#include "control/channel/link.hpp"

namespace p3::channel {

class RekeyInitiator {
public:
    RekeyInitiator(SessionCore& core, MessageLink& link, Epochs& epochs, KeyArrays& arrays)
        : c_(core), link_(link), epochs_(epochs), arrays_(arrays) {}

    void start_session() { next_epoch_ = 1; }
    void clear() { rekey_.reset(); }
    bool in_flight() const noexcept { return rekey_.has_value(); }

    void start(RekeyTrigger t, unsigned attempt);
    void on_status(const Message& req, const Message& m);
    void on_switch_ack(const Message& m);
    // A request of ours unanswered or refused by an error.
    void on_request_failed(const Message& req);
    void on_retry_due(RekeyTrigger t, unsigned attempt);
    void arm_due();                        // rekey_wait from now

private:
    struct Attempt {
        std::uint32_t epoch = 0;
        unsigned attempt = 1;
        RekeyTrigger trigger = RekeyTrigger::timer;
        KeyMaterial data_p2s, data_s2p, ctl_p2s, ctl_s2p;
        std::uint32_t my_rx_id = 0;
        bool switching = false;
    };
    void attempt_failed(Reason why, const char* what);

    SessionCore& c_;
    MessageLink& link_;
    Epochs& epochs_;
    KeyArrays& arrays_;
    std::optional<Attempt> rekey_;
    std::uint32_t next_epoch_ = 1;
};

}  // namespace p3::channel
