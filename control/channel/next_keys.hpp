// The inbound data keys' life across a rekey, for one session (docs/control-channel.md §5).
// The dataplane holds, per inbound lane, a current key and at most one next key and picks by
// sequence; this unit decides when a next key is installed, promoted or dropped:
//
//   none --install (after settle)--> pending --switch announced (rx_switch_at) or seen-->
//        known --kRetireLinger, or the next settle--> promoted (none)
//   pending --settle: the peer never used it--> dropped (none)
//
// "Settle" runs before a new next key goes in: a pending key the peer did switch to (its
// switch was announced, or a packet authenticated under it) is promoted, else dropped. So a
// failed attempt whose switch did happen (only its acknowledgement was lost) keeps working,
// and one that never switched leaves nothing behind.
#pragma once

#include <cstdint>
#include <span>

#include "control/channel/core.hpp"

namespace p3::channel {

class NextKeys {
public:
    explicit NextKeys(SessionCore& core) : c_(core) {}

    // Before installing a new next key: promote a pending one the peer used, else drop it.
    void settle();
    // The next key of every inbound lane (after settle()). False: the dataplane refused.
    bool install(const KeyMaterial& data, std::uint32_t epoch);
    // The peer announced its switch point per lane: promotion follows kRetireLinger later.
    void switch_at(std::span<const std::uint64_t> first_seq);
    // The tick: traffic under the pending key seen -> promotion kRetireLinger later.
    void poll();
    // The promotion timer fired.
    void on_promote_due();
    // Cluster: a new holder finds next inbound keys of `epoch` installed (from the replicated
    // state): pending, promoted once the peer is seen using them.
    void adopt(std::uint32_t epoch) noexcept {
        pending_ = true;
        known_ = false;
        epoch_ = epoch;
    }
    // The session is torn down: forget (the dataplane's slots go with the session).
    void clear();

    bool pending() const noexcept { return pending_; }
    std::uint32_t pending_epoch() const noexcept { return epoch_; }

private:
    void promote();
    void drop();
    void arm_promote();

    SessionCore& c_;
    bool pending_ = false;
    bool known_ = false;          // the peer switched (announced or seen): promotion armed
    std::uint32_t epoch_ = 0;
};

}  // namespace p3::channel
