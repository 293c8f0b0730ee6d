// What the two halves of the slot table (slots.cpp: slots and their life; slot_keys.cpp: the
// keys of a living lane) share: sizes, the secret-pool allocation every slot object takes, and
// the building blocks of RX keys. Control thread only; not part of the table's interface.
#pragma once

#include <cstddef>
#include <cstdint>
#include <new>
#include <span>

#include "common/secret.hpp"
#include "common/slots.hpp"

namespace p3::wire::slots_detail {

inline std::size_t rx_bytes(std::uint32_t window) noexcept {
    return sizeof(RxSlot) + sizeof(std::uint64_t) * ReplayWindow::words_for(ReplayWindow::clamp(window));
}

inline bool key_sizes_ok(std::span<const std::uint8_t> key, std::span<const std::uint8_t> salt) noexcept {
    return (key.size() == kAes128KeyLen || key.size() == kAes256KeyLen) && salt.size() == kSaltLen;
}

// Slots hold key schedules: their memory comes from the secret pool (common/secret.hpp:
// excluded from core dumps, locked in RAM while the limit allows), cache-line aligned.
inline void* slot_alloc(std::size_t bytes) noexcept { return secure_alloc(bytes, RTE_CACHE_LINE_SIZE); }
inline void slot_free(void* p, std::size_t bytes) noexcept { secure_free(p, bytes, RTE_CACHE_LINE_SIZE); }

// An object that was built but never published: no reader can have seen it.
template <class Obj>
void discard(Obj* s, std::size_t bytes) noexcept {
    s->~Obj();
    slot_free(s, bytes);   // wipes
}

// An RX key of its own (shared by consecutive key states of one slot); nullptr: no memory or
// an unusable key (both logged by the caller).
inline GcmKey* make_rx_key(std::span<const std::uint8_t> key, std::span<const std::uint8_t> salt) noexcept {
    void* mem = slot_alloc(sizeof(GcmKey));
    if (!mem) return nullptr;
    auto* k = new (mem) GcmKey(key, salt);
    if (!k->valid()) {
        discard(k, sizeof(GcmKey));
        return nullptr;
    }
    return k;
}

inline RxKeys* make_rx_keys(const GcmKey* cur, std::uint64_t cur_from, const GcmKey* next, std::uint64_t next_from) noexcept {
    void* mem = slot_alloc(sizeof(RxKeys));
    if (!mem) return nullptr;
    auto* k = new (mem) RxKeys;
    k->cur = cur;
    k->cur_from = cur_from;
    k->next = next;
    k->next_from = next_from;
    return k;
}

}  // namespace p3::wire::slots_detail
