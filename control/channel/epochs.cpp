// Control keys by epoch and the lifetime of inbound control keys (epochs.hpp).
#include "control/channel/epochs.hpp"

#include <algorithm>

namespace p3::channel {

void Epochs::start(KeyMaterial&& control_tx, KeyMaterial&& control_rx) {
    clear();
    tx_ = Tx{0, std::move(control_tx), 0};
    add_rx(0, std::move(control_rx));
    peer_tx_epoch_ = 0;
}

void Epochs::adopt(std::uint32_t tx_epoch, KeyMaterial&& tx_ctl, std::uint64_t seq, std::vector<ChannelState::Rx>&& rx,
                   std::uint32_t peer_tx_epoch) {
    clear();
    tx_ = Tx{tx_epoch, std::move(tx_ctl), seq};
    for (auto& r : rx) {
        add_rx(r.epoch, std::move(r.ctl));
        // What the old holder saw stays refused below its window; what it saw last within the
        // window (after its last record) is accepted here once, as by any window that starts.
        if (r.top) rx_[r.epoch].win->update(r.top);
    }
    peer_tx_epoch_ = 0;
    peer_switched(peer_tx_epoch, limits::kRetireTimeout);
    enforce_cap();
}

void Epochs::clear() {
    for (auto& [e, r] : rx_) c_.loop.cancel(r.retire_timer);
    rx_.clear();
}

void Epochs::switch_tx(std::uint32_t epoch, KeyMaterial&& ctl) {
    tx_ = Tx{epoch, std::move(ctl), 0};
    limit_asked = kNotAsked;
}

void Epochs::add_rx(std::uint32_t epoch, KeyMaterial&& ctl) {
    if (auto it = rx_.find(epoch); it != rx_.end()) {
        c_.loop.cancel(it->second.retire_timer);
        rx_.erase(it);
    }
    Rx& r = rx_.try_emplace(epoch).first->second;
    r.ctl = std::move(ctl);
}

Epochs::Rx* Epochs::rx(std::uint32_t epoch) {
    auto it = rx_.find(epoch);
    return it == rx_.end() ? nullptr : &it->second;
}

void Epochs::peer_switched(std::uint32_t epoch, Duration after) {
    peer_tx_epoch_ = std::max(peer_tx_epoch_, epoch);
    schedule_retire_below(epoch, after);
}

void Epochs::note_seen(std::uint32_t epoch) {
    auto it = rx_.find(epoch);
    if (it == rx_.end() || it->second.seen) return;
    it->second.seen = true;
    // The peer sends under `epoch` now and never goes back: older keys only serve packets
    // still in flight, so they go after a short linger.
    peer_switched(epoch, limits::kRetireLinger);
}

void Epochs::schedule_retire_below(std::uint32_t epoch, Duration after) {
    const TimePoint at = c_.now() + after;
    for (auto& [e, r] : rx_) {
        if (e >= epoch) break;
        if (r.retire_timer && r.retire_at <= at) continue;
        c_.loop.cancel(r.retire_timer);
        r.retire_at = at;
        const std::uint32_t ee = e;
        r.retire_timer = c_.loop.at(at, [this, ee] { retire(ee); });
    }
}

void Epochs::retire(std::uint32_t epoch) {
    auto it = rx_.find(epoch);
    if (it == rx_.end()) return;
    c_.loop.cancel(it->second.retire_timer);
    rx_.erase(it);  // the control key is wiped with it
    ++c_.stats.keys_retired;
    P3_LOG_DEBUG(KEYS_RETIRED, "%s: inbound control key of epoch %u retired", c_.name(), epoch);
    c_.emit({.kind = Event::Kind::rx_retired, .epoch = epoch, .reason = Reason::KEYS_RETIRED});
}

void Epochs::enforce_cap() {
    while (rx_.size() > limits::kMaxRxEpochs) {
        auto victim = rx_.end();
        for (auto it = rx_.begin(); it != rx_.end(); ++it)
            if (it->first != peer_tx_epoch_) {
                victim = it;
                break;
            }
        if (victim == rx_.end()) return;
        retire(victim->first);
    }
}

}  // namespace p3::channel
