// Next inbound data keys: install, settle, promote, drop (next_keys.hpp).
#include "control/channel/next_keys.hpp"

#include "control/channel/timers.hpp"

namespace p3::channel {

void NextKeys::settle() {
    if (!pending_) return;
    if (known_ || c_.installer.rx_next_seen()) promote();
    else drop();
}

bool NextKeys::install(const KeyMaterial& data, std::uint32_t epoch) {
    settle();
    if (!c_.installer.install_next_rx(data)) return false;
    pending_ = true;
    known_ = false;
    epoch_ = epoch;
    return true;
}

void NextKeys::switch_at(std::span<const std::uint64_t> first_seq) {
    if (!pending_) return;
    c_.installer.rx_switch_at(first_seq);
    arm_promote();
}

void NextKeys::poll() {
    if (pending_ && !known_ && c_.installer.rx_next_seen()) arm_promote();
}

void NextKeys::arm_promote() {
    if (known_) return;  // whichever comes first: an armed promotion is not pushed back
    known_ = true;
    c_.timers.promote(limits::kRetireLinger);
}

void NextKeys::on_promote_due() {
    if (pending_) promote();
}

void NextKeys::promote() {
    c_.timers.cancel_promote();
    c_.installer.promote_rx();
    pending_ = known_ = false;
    ++c_.stats.rx_promotions;
    P3_LOG_DEBUG(KEYS_RETIRED, "%s: inbound data keys of epoch %u current; the old ones wiped", c_.name(), epoch_);
    c_.emit({.kind = Event::Kind::rx_promoted, .epoch = epoch_, .reason = Reason::KEYS_RETIRED});
}

void NextKeys::drop() {
    c_.timers.cancel_promote();
    c_.installer.drop_next_rx();
    pending_ = known_ = false;
    ++c_.stats.rx_next_drops;
    P3_LOG_DEBUG(KEYS_RETIRED, "%s: inbound data keys of epoch %u never used by the peer: dropped", c_.name(), epoch_);
    c_.emit({.kind = Event::Kind::rx_next_dropped, .epoch = epoch_, .reason = Reason::KEYS_RETIRED});
}

void NextKeys::clear() {
    c_.timers.cancel_promote();
    pending_ = known_ = false;
    epoch_ = 0;
}

}  // namespace p3::channel
