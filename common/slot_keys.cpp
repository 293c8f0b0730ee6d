// The keys of a living lane (slots.hpp): the next key of an RX slot set, announced, promoted or
// dropped, one new key state published each time; the TX switch of a session's lanes with its
// grace period and the exact first sequence. The lanes themselves (IDs, windows, counters)
// never change here. Control thread only.
#include <new>

#include "common/lanes.hpp"
#include "common/log.hpp"
#include "common/secret.hpp"
#include "common/slots.hpp"
#include "common/slots_detail.hpp"

namespace p3::wire {

using namespace slots_detail;

// ---- RX keys ----------------------------------------------------------------------------

RxSlot* SlotTable::published_rx(SlotId id) const noexcept {
    const std::uint32_t idx = id.index();
    if (idx == 0 || idx >= rx_cap_ || state_[idx].state != IndexState::published || state_[idx].gen != id.generation())
        return nullptr;
    return rx_[idx].load(std::memory_order_relaxed);
}

bool SlotTable::replace_keys(RxSlot* s, const GcmKey* cur, std::uint64_t cur_from, const GcmKey* next,
                             std::uint64_t next_from) {
    RxKeys* ks = make_rx_keys(cur, cur_from, next, next_from);
    if (!ks) {
        P3_LOG_ERROR(SLOT_NO_MEMORY, "key slots: no memory for the keys of P3 ID 0x%08x", s->id_.raw());
        return false;
    }
    const RxKeys* old = s->keys_.exchange(ks, std::memory_order_release);
    const std::uint32_t id = s->id_.raw();
    // A key leaves with the last state that holds it; a worker may hold the old state (and
    // its keys) until its next quiescent report, so all go through the FIFO together.
    for (const GcmKey* k : {old->cur, old->next})
        if (k && k != cur && k != next) defer_free(const_cast<GcmKey*>(k), FreedKind::rx_key, id, s->session_, s->lane_);
    defer_free(const_cast<RxKeys*>(old), FreedKind::rx_keys, id, s->session_, s->lane_);
    return true;
}

bool SlotTable::set_next_rx(SlotId id, std::span<const std::uint8_t> key, std::span<const std::uint8_t> salt) {
    reclaim();
    RxSlot* s = published_rx(id);
    if (!s) {
        P3_LOG_ERROR(SLOT_ID_CONFLICT, "key slots: P3 ID 0x%08x is not published, no next key for it", id.raw());
        return false;
    }
    if (!key_sizes_ok(key, salt)) {
        P3_LOG_ERROR(SLOT_BAD_KEY, "key slots: P3 ID 0x%08x: next key of %zu bytes, salt of %zu", id.raw(), key.size(),
                     salt.size());
        return false;
    }
    GcmKey* k = make_rx_key(key, salt);
    if (!k) {
        P3_LOG_ERROR(SLOT_BAD_KEY, "key slots: P3 ID 0x%08x: the next AES-GCM key could not be prepared", id.raw());
        return false;
    }
    const RxKeys* cur = s->keys_.load(std::memory_order_relaxed);
    if (!replace_keys(s, cur->cur, cur->cur_from, k, 0)) {
        discard(k, sizeof(GcmKey));
        return false;
    }
    return true;
}

void SlotTable::announce_rx(SlotId id, std::uint64_t first_seq) {
    RxSlot* s = published_rx(id);
    if (!s || first_seq == 0) return;
    const RxKeys* cur = s->keys_.load(std::memory_order_relaxed);
    if (cur->next == nullptr || cur->next_from == first_seq) return;
    replace_keys(s, cur->cur, cur->cur_from, cur->next, first_seq);
    reclaim();
}

bool SlotTable::next_seen_rx(SlotId id) const noexcept {
    const RxSlot* s = published_rx(id);
    if (!s) return false;
    const RxKeys* k = s->keys_.load(std::memory_order_relaxed);
    if (k->next == nullptr) return false;
    return k->learned.load(std::memory_order_relaxed) != 0 ||
           (k->next_from != 0 && s->replay_.top() >= k->next_from);
}

void SlotTable::promote_rx(SlotId id) {
    RxSlot* s = published_rx(id);
    if (!s) return;
    const RxKeys* k = s->keys_.load(std::memory_order_relaxed);
    if (k->next == nullptr) return;
    const std::uint64_t learned = k->learned.load(std::memory_order_relaxed);
    const std::uint64_t from = k->next_from != 0 ? k->next_from : learned != 0 ? learned : 1;
    replace_keys(s, k->next, from, nullptr, 0);
    reclaim();
}

void SlotTable::drop_next_rx(SlotId id) {
    RxSlot* s = published_rx(id);
    if (!s) return;
    const RxKeys* k = s->keys_.load(std::memory_order_relaxed);
    if (k->next == nullptr) return;
    replace_keys(s, k->cur, k->cur_from, nullptr, 0);
    reclaim();
}

bool SlotTable::set_next_rx_lanes(SlotId base, std::uint32_t lanes, std::span<const std::uint8_t> key,
                                  std::span<const std::uint8_t> salt) {
    reclaim();
    if (lanes == 0 || lanes > kMaxLanes) {
        P3_LOG_ERROR(SLOT_ID_CONFLICT, "key slots: %u lanes for P3 ID 0x%08x (1..%u)", lanes, base.raw(), kMaxLanes);
        return false;
    }
    GcmKey* built[kMaxLanes] = {};
    std::uint32_t n = 0;
    for (; n < lanes; ++n) {
        if (!published_rx(base.lane(n))) {
            P3_LOG_ERROR(SLOT_ID_CONFLICT, "key slots: P3 ID 0x%08x is not published, no next key for it",
                         base.lane(n).raw());
            break;
        }
        SecretBytes m = lane_material(key, salt, n);
        if (m.empty()) break;
        built[n] = make_rx_key(m.span().first(key.size()), m.span().subspan(key.size()));
        if (!built[n]) {
            P3_LOG_ERROR(SLOT_BAD_KEY, "key slots: P3 ID 0x%08x: the next AES-GCM key could not be prepared",
                         base.lane(n).raw());
            break;
        }
    }
    // The states too, before any is published: all or nothing.
    RxKeys* states[kMaxLanes] = {};
    if (n == lanes) {
        for (std::uint32_t k = 0; k < lanes; ++k) {
            const RxKeys* cur = published_rx(base.lane(k))->keys_.load(std::memory_order_relaxed);
            states[k] = make_rx_keys(cur->cur, cur->cur_from, built[k], 0);
            if (!states[k]) {
                P3_LOG_ERROR(SLOT_NO_MEMORY, "key slots: no memory for the keys of P3 ID 0x%08x", base.raw());
                n = k;
                for (std::uint32_t j = 0; j < k; ++j) discard(states[j], sizeof(RxKeys));
                for (std::uint32_t j = k; j < lanes; ++j) discard(built[j], sizeof(GcmKey));
                break;
            }
        }
    }
    if (n < lanes) {
        for (std::uint32_t k = 0; k < n; ++k) discard(built[k], sizeof(GcmKey));
        return false;
    }
    for (std::uint32_t k = 0; k < lanes; ++k) {
        RxSlot* s = published_rx(base.lane(k));
        const RxKeys* old = s->keys_.exchange(states[k], std::memory_order_release);
        if (old->next) defer_free(const_cast<GcmKey*>(old->next), FreedKind::rx_key, s->id_.raw(), s->session_, s->lane_);
        defer_free(const_cast<RxKeys*>(old), FreedKind::rx_keys, s->id_.raw(), s->session_, s->lane_);
    }
    reclaim();
    return true;
}

// ---- TX keys ------------------------------------------------------------------------------

bool SlotTable::switch_tx(std::uint32_t session, std::uint32_t lanes, std::span<const std::uint8_t> key,
                          std::span<const std::uint8_t> salt, std::span<std::uint64_t> first_seq_out,
                          std::uint32_t first_lane) {
    reclaim();
    if (session >= sessions_ || lanes == 0 || lanes > lanes_ || first_seq_out.size() < lanes ||
        std::uint64_t(first_lane) + lanes > kMaxLanes) {
        P3_LOG_ERROR(SLOT_ID_CONFLICT, "key slots: session %u: cannot switch %u lanes (table: %u lanes)", session, lanes,
                     lanes_);
        return false;
    }
    TxSlot* slot[kMaxLanes] = {};
    TxKey* built[kMaxLanes] = {};
    std::uint32_t n = 0;
    for (; n < lanes; ++n) {
        slot[n] = tx_[static_cast<std::size_t>(session) * lanes_ + n].load(std::memory_order_relaxed);
        if (!slot[n]) {
            P3_LOG_ERROR(SLOT_ID_CONFLICT, "key slots: session %u lane %u has no key to switch from", session, n);
            break;
        }
        SecretBytes m = lane_material(key, salt, first_lane + n);
        if (m.empty()) break;
        built[n] = build_tx_key(*slot[n], m.span().first(key.size()), m.span().subspan(key.size()));
        if (!built[n]) break;
    }
    if (n < lanes) {
        for (std::uint32_t k = 0; k < n; ++k) discard(built[k], sizeof(TxKey));
        return false;
    }
    for (std::uint32_t k = 0; k < lanes; ++k) {
        const TxKey* old = slot[k]->key_.exchange(built[k], std::memory_order_release);
        defer_free(const_cast<TxKey*>(old), FreedKind::tx_key, slot[k]->peer_id_, session, slot[k]->lane_);
    }
    // After the grace period no sender holds an old key: each lane's counter is the last
    // sequence sent under it, unless its worker took the new key meanwhile and claimed
    // counter + 1 itself (the same value: it seals what it staged under the old key first).
    wait_readers();
    for (std::uint32_t k = 0; k < lanes; ++k) {
        std::uint64_t zero = 0;
        built[k]->first_seq.compare_exchange_strong(zero, slot[k]->last_seq() + 1, std::memory_order_acq_rel);
        first_seq_out[k] = built[k]->first_seq.load(std::memory_order_acquire);
    }
    return true;
}

std::uint64_t SlotTable::tx_packets(std::uint32_t session, std::uint16_t lane) const noexcept {
    const TxSlot* s = tx(session, lane);
    return s ? s->packets() : 0;
}

}  // namespace p3::wire
