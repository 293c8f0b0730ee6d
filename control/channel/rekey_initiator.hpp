// The primary's side of a rekey (seed spec §2.1.6; docs/control-channel.md §5), one attempt
// in flight, run as an exchange of the session's queue:
//
//   request_sent --status ok--> switch_sent --switch ack--> done (rekey_due re-armed, jittered)
//   request_sent --status refused / DH failed / unanswered-->  attempt failed
//   switch_sent  --unanswered-->                                attempt failed
//   attempt failed --after kRekeyRetryDelay--> a new attempt with fresh keys, shares and epoch,
//                  up to kRekeyAttempts in all; then the session is lost (SESSION_LOST_REKEY)
//
// The request carries the four delivered keys (or array indices) and, with rekey_dh, a fresh
// X25519 share; the status brings the secondary's share, and both sides mix the shared secret
// into the keys (dh.hpp). At the status (the secondary holds its next inbound keys): settle our
// pending next keys, install the new ones, switch our sending lanes (first_seq per lane), then
// announce the switch; the acknowledgement announces the secondary's.
#pragma once

#include <cstdint>
#include <optional>

#include "control/channel/arrays.hpp"
#include "control/channel/core.hpp"
#include "control/channel/dh.hpp"
#include "control/channel/epochs.hpp"
#include "control/channel/link.hpp"
#include "control/channel/next_keys.hpp"

namespace p3::channel {

class RekeyInitiator {
public:
    RekeyInitiator(SessionCore& core, MessageLink& link, Epochs& epochs, KeyArrays& arrays, NextKeys& next)
        : c_(core), link_(link), epochs_(epochs), arrays_(arrays), next_(next) {}

    void start_session() { next_epoch_ = 1; }
    // Cluster: the epoch the next attempt takes, and a new holder's (past the old one's).
    std::uint32_t next_epoch() const noexcept { return next_epoch_; }
    void set_next_epoch(std::uint32_t e) noexcept { next_epoch_ = e; }
    void clear() { rekey_.reset(); }
    bool in_flight() const noexcept { return rekey_.has_value(); }

    void start(RekeyTrigger t, unsigned attempt);
    void on_status(const Message& req, const Message& m);
    void on_switch_ack(const Message& m);
    // A request of ours unanswered or refused by an error.
    void on_request_failed(const Message& req);
    void on_retry_due(RekeyTrigger t, unsigned attempt);
    void arm_due();                        // rekey_wait x U(0.9, 1.1) from now

private:
    struct Attempt {
        std::uint32_t epoch = 0;
        unsigned attempt = 1;
        RekeyTrigger trigger = RekeyTrigger::timer;
        dh::RekeyKeys keys;                    // delivered; mixed once the status brings a share
        std::optional<dh::Ephemeral> eph;      // our X25519 pair, gone once used
        bool switching = false;
    };
    void attempt_failed(Reason why, const char* what);
    // Our outbound switch and its announcement (after the status, and any hold_switch wait).
    void switch_out();
    // The secondary's share into our keys (or its absence checked); false: the attempt failed.
    bool agree(const Message& status);

    SessionCore& c_;
    MessageLink& link_;
    Epochs& epochs_;
    KeyArrays& arrays_;
    NextKeys& next_;
    std::optional<Attempt> rekey_;
    std::uint32_t next_epoch_ = 1;
};

}  // namespace p3::channel
