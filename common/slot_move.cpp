// A UDP-encapsulated session's peer moved (NAT traversal: the NAT in front of the peer gave
// it another address or port, learnt by the dataplane from an authenticated packet): the
// slots follow it without losing a lane's state (slots.hpp). Control thread only.
//
// RX: the slot's expected peer is rewritten in place, word by word (RxSlot::move_peer): the
// window, the key state and the P3 ID stay, so a packet replayed from before the move is
// still refused. TX: the lane's counter lives in the slot, not in the key object, so the lane
// gets a new key object (the same key, a view for the new outer header) exchanged in like a
// key switch: a worker seals each run under the object it loaded, old or new, and takes every
// sequence from the one counter, so no sequence is ever sent twice under the key and nothing
// has to wait for a grace period; the old object is freed after it.
#include <new>

#include "common/log.hpp"
#include "common/slots.hpp"
#include "common/slots_detail.hpp"

namespace p3::wire {

using namespace slots_detail;

bool SlotTable::move_rx_peer(SlotId id, const IpAddr& addr, std::uint16_t port) noexcept {
    RxSlot* s = published_rx(id);
    if (!s || !s->udp() || port == 0) return false;
    s->move_peer(addr, port);
    return true;
}

bool SlotTable::move_tx(std::uint32_t session, std::uint32_t lanes, const OuterSpec& outer) {
    reclaim();
    if (session >= sessions_ || lanes == 0 || lanes > lanes_ || outer.udp_dst == 0) {
        P3_LOG_ERROR(SLOT_ID_CONFLICT, "key slots: session %u: cannot move %u lanes (table: %u lanes)", session, lanes,
                     lanes_);
        return false;
    }
    TxSlot* slot[kMaxLanes] = {};
    TxKey* built[kMaxLanes] = {};
    std::uint32_t n = 0;
    for (; n < lanes; ++n) {
        slot[n] = tx_[static_cast<std::size_t>(session) * lanes_ + n].load(std::memory_order_relaxed);
        if (!slot[n]) {
            P3_LOG_ERROR(SLOT_ID_CONFLICT, "key slots: session %u lane %u has no key to move", session, n);
            break;
        }
        void* mem = slot_alloc(sizeof(TxKey));
        if (!mem) {
            P3_LOG_ERROR(SLOT_NO_MEMORY, "key slots: no memory for a key of session %u lane %u", session, n);
            break;
        }
        const TxKey* cur = slot[n]->current();
        built[n] = new (mem) TxKey(cur->key);
        if (!built[n]->key.valid() ||
            !built[n]->view.init(slot[n]->peer_id_, &built[n]->key, outer, slot[n]->size_hiding_, slot[n]->wan_mtu_,
                                 slot[n]->kind_)) {
            discard(built[n], sizeof(TxKey));
            P3_LOG_ERROR(SLOT_BAD_KEY, "key slots: session %u lane %u: outer addresses unusable", session, n);
            break;
        }
        // The key's first sequence is the old object's: the same key, sequences from the same
        // counter. Unclaimed (a lane that has not sent yet) it stays 0 and the worker or a
        // later switch claims it as for any new key.
        built[n]->first_seq.store(cur->first_seq.load(std::memory_order_relaxed), std::memory_order_relaxed);
    }
    if (n < lanes) {
        for (std::uint32_t k = 0; k < n; ++k) discard(built[k], sizeof(TxKey));
        return false;
    }
    for (std::uint32_t k = 0; k < lanes; ++k) {
        slot[k]->outer_ = outer;   // the control thread's own: later keys' views are built from it
        const TxKey* old = slot[k]->key_.exchange(built[k], std::memory_order_release);
        defer_free(const_cast<TxKey*>(old), FreedKind::tx_key, slot[k]->peer_id_, session, slot[k]->lane_);
    }
    reclaim();
    return true;
}

}  // namespace p3::wire
