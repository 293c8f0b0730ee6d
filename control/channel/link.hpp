// The session's transport: control messages in and out of sealed control-layer packets
// (framing.hpp) under the keys of each epoch (epochs.hpp), message ids, the inner TCP
// sequence, the replay check, and requests resent until answered (docs/control-channel.md §3).
//
// A request: sent --every kRetransmitInterval, resealed--> sent again
//            --its response--> answered (handed to the exchange that asked)
//            --error response, or kRequestTimeout passed--> failed (handed to on_failed)
// Heartbeats go out with an id but are never held or resent: the next one is the retry.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <span>

#include "control/channel/core.hpp"
#include "control/channel/epochs.hpp"

namespace p3::channel {

class MessageLink {
public:
    struct Outstanding {
        Message req;
        TimePoint deadline;
        TimerId timer;
    };

    // out: where sealed packets go; on_failed: a request unanswered or refused by the peer.
    MessageLink(SessionCore& core, Epochs& epochs, ControlLink& out, std::function<void(Message&&)> on_failed)
        : c_(core), epochs_(epochs), out_(out), on_failed_(std::move(on_failed)) {}

    // A new session: ids from 1, a random inner TCP sequence and acknowledgement.
    void start();
    // Every request in flight is dropped.
    void stop();

    std::uint32_t next_id() noexcept {
        if (next_msg_id_ == 0) next_msg_id_ = 1;  // 0 is never a message id
        return next_msg_id_++;
    }
    // Cluster: the id the next message gets, and a new holder's first (past the old one's).
    std::uint32_t peek_next_id() const noexcept { return next_msg_id_; }
    void set_next_id(std::uint32_t id) noexcept { next_msg_id_ = id; }
    // Seals and sends m under the current outbound key. False when not up or it failed.
    bool send(const Message& m);
    // Sends m as a request with a new id and resends it until answered.
    void request(Message&& m);
    void respond(const Message& req, Message&& resp);

    // An inner packet from the dataplane: opened, replay-checked and parsed; nullopt when it
    // was dropped (counted, and logged at most once a second).
    std::optional<Message> receive(std::span<const std::uint8_t> inner);
    // A response: the request it answers, taken out of flight; nullopt when it matches none
    // or was an error (an error is counted and handed to on_failed as a failed request).
    std::optional<Message> take_request(const Message& resp);

    // Abandons every request in flight of this epoch (a rekey attempt failed).
    void abandon_epoch(std::uint32_t epoch);
    bool asking(MsgType type) const;
    const std::map<std::uint32_t, Outstanding>& outstanding() const noexcept { return outstanding_; }

    void log_drop(Reason r, const char* what);

private:
    void on_retransmit(std::uint32_t id);

    SessionCore& c_;
    Epochs& epochs_;
    ControlLink& out_;
    std::function<void(Message&&)> on_failed_;
    std::uint32_t next_msg_id_ = 1;
    std::uint32_t tcp_seq_ = 0, tcp_ack_ = 0;
    std::map<std::uint32_t, Outstanding> outstanding_;
    TimePoint last_drop_log_{};
};

}  // namespace p3::channel
