// The secondary's side of a rekey (seed spec §2.1.6; docs/control-channel.md §5 and its
// crossing rule). Idempotent per epoch: a retransmitted request or switch gets the same answer
// (the same status and X25519 share, the same first sequences) and changes nothing; a request
// older than the newest one handled is stale.
//
//   request e (e > newest) --keys resolved, DH mixed, pending next settled, next installed-->
//                             accepted e (status ok, lanes, our share)
//                          --refused--> status (stale, bad key, index reused, dh-failed,
//                                        install failed, not-allowed: lanes differ)
//   accepted e --switch e (first_seq per peer lane)--> rx_switch_at; we switch our lanes
//                and answer with our first_seq per lane; older control keys retire
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "control/channel/arrays.hpp"
#include "control/channel/core.hpp"
#include "control/channel/dh.hpp"
#include "control/channel/epochs.hpp"
#include "control/channel/link.hpp"
#include "control/channel/next_keys.hpp"

namespace p3::channel {

class RekeyResponder {
public:
    RekeyResponder(SessionCore& core, MessageLink& link, Epochs& epochs, KeyArrays& arrays, NextKeys& next)
        : c_(core), link_(link), epochs_(epochs), arrays_(arrays), next_(next) {}

    void start_session();
    void clear() { start_session(); }
    // Cluster: a new holder refuses requests of epochs up to `newest` as stale.
    void adopt(std::uint32_t newest) noexcept { newest_req_epoch_ = newest; }

    void on_request(const Message& m);
    void on_switch(const Message& m);

private:
    struct Accepted {                    // the newest request accepted
        std::uint32_t epoch = 0;
        KeyMaterial data_s2p, ctl_s2p;   // as mixed
        std::optional<dh::Share> share;  // ours, for a retransmitted request's answer
        bool switched = false;
    };
    struct Switched {                    // our answer to the newest switch, for retransmissions
        std::uint32_t epoch = 0;
        std::vector<std::uint64_t> first_seq;
    };
    // The request of the newest epoch again (a retransmission): the same answer.
    void reply_again(const Message& m);
    // Keys named by the request, checked; Status::ok or why not.
    Status resolve(const Message& m, dh::RekeyKeys& keys);
    // The DH part: our share into `share`, the secret mixed into keys; ok or dh_failed.
    Status agree(const Message& m, dh::RekeyKeys& keys, std::optional<dh::Share>& share);

    SessionCore& c_;
    MessageLink& link_;
    Epochs& epochs_;
    KeyArrays& arrays_;
    NextKeys& next_;
    std::optional<Accepted> rekey_in_;
    std::optional<Switched> switched_;
    std::uint32_t newest_req_epoch_ = 0;
    std::optional<Status> last_req_status_;
};

}  // namespace p3::channel
