// The secondary's side of a rekey (seed spec §2.1.6; docs/control-channel.md §5 and its
// crossing rule). Idempotent per epoch: a retransmitted request or switch gets the same answer
// and changes nothing; a request older than the newest one handled is stale.
//
//   request e (e > newest) --keys resolved, inbound installed--> accepted e (status ok + P3 ID)
//                          --refused--> status (stale, bad key, index reused, install failed)
//   accepted e --switch e--> switched: we send under epoch e, older inbound keys retire
#pragma once

#include <cstdint>
#include <optional>

#include "control/channel/arrays.hpp"
#include "control/channel/core.hpp"
#include "control/channel/epochs.hpp"
#include "control/channel/link.hpp"

namespace p3::channel {

class RekeyResponder {
public:
    RekeyResponder(SessionCore& core, MessageLink& link, Epochs& epochs, KeyArrays& arrays)
        : c_(core), link_(link), epochs_(epochs), arrays_(arrays) {}

    void start_session();
    void clear() { rekey_in_.reset(); }

    void on_request(const Message& m);
    void on_switch(const Message& m);

private:
    struct Accepted {                    // the newest request accepted
        std::uint32_t epoch = 0;
        KeyMaterial data_s2p, ctl_s2p;
        std::uint32_t peer_rx_id = 0, my_rx_id = 0;
        bool switched = false;
    };
    // The request of the newest epoch again (a retransmission): the same answer.
    void reply_again(const Message& m);

    SessionCore& c_;
    MessageLink& link_;
    Epochs& epochs_;
    KeyArrays& arrays_;
    std::optional<Accepted> rekey_in_;
    std::uint32_t newest_req_epoch_ = 0;
    std::optional<Status> last_req_status_;
};

}  // namespace p3::channel
