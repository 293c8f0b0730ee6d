// A session's control channel in a cluster: the state it publishes for the other members, and
// taking over one another member held (session.hpp; docs/cluster.md §Taking over a control
// session).
#include <algorithm>

#include "control/channel/session.hpp"

namespace p3::channel {

using namespace detail;

std::optional<ChannelState> Session::replica_state() {
    if (state_ != SessionState::up) return std::nullopt;
    ChannelState s;
    Epochs::Tx& tx = epochs_.tx();
    s.tx_epoch = tx.epoch;
    s.tx_ctl = tx.ctl.clone();
    s.tx_seq = tx.seq;
    tx.published = tx.seq;
    tx.replicated = true;
    for (const auto& [e, r] : epochs_.rx_all())
        s.rx.push_back(ChannelState::Rx{e, r.ctl.clone(), r.win->top()});
    s.peer_tx_epoch = epochs_.peer_tx_epoch();
    s.next_epoch = rekey_out_.next_epoch();
    s.next_msg_id = link_.peek_next_id();
    s.next_rx_epoch = next_.pending() ? next_.pending_epoch() : 0;
    s.local_lanes = core_.local_lanes;
    s.peer_lanes = core_.peer_lanes;
    return s;
}

void Session::take_over(ChannelState&& s) {
    recovery_.reset();
    prepare(s.local_lanes, s.peer_lanes);
    std::uint32_t newest_rx = 0;
    for (const auto& r : s.rx) newest_rx = std::max(newest_rx, r.epoch);
    const std::uint32_t epoch = s.tx_epoch;
    epochs_.adopt(s.tx_epoch, std::move(s.tx_ctl), s.tx_seq + limits::kTakeoverSeqJump, std::move(s.rx),
                  s.peer_tx_epoch);
    start_units();
    rekey_out_.set_next_epoch(std::max(s.next_epoch, newest_rx + 1) + limits::kTakeoverEpochJump);
    rekey_in_.adopt(newest_rx);
    link_.set_next_id(s.next_msg_id + limits::kTakeoverIdJump);
    if (s.next_rx_epoch != 0) next_.adopt(s.next_rx_epoch);
    run_up();
    P3_LOG_INFO(CLUSTER_TAKEOVER,
                "%s: control channel taken over as %s from the replicated state, no new setup (control epoch %u, "
                "lanes in: P3 ID 0x%x + %u, out: 0x%x + %u)",
                core_.name(), core_.primary() ? "primary" : "secondary", epoch, s.rx_p3_id, core_.peer_lanes,
                s.tx_p3_id, core_.local_lanes);
    core_.emit({.kind = Event::Kind::taken_over, .epoch = epoch, .reason = Reason::CLUSTER_TAKEOVER});
    // The peer hears the new holder now, well within its heartbeat_fail.
    heartbeat_.on_due();
    if (!core_.primary()) return;
    rekey_out_.arm_due();
    if (cfg_.params.array_size >= limits::kIndicesPerRekey) flush_arrays(kFlushData | kFlushControl, true);
}

}  // namespace p3::channel
