// Key slot table (slots.hpp): building, publishing, retiring and reclaiming slots, their key
// states and key objects on the control thread. Nothing here runs on a worker except the
// inline lookups in the header.
//
// The keys of a living lane change in slot_keys.cpp.
//
// Reclamation: retired objects (slots, RX key states, RX keys, TX key objects) wait in a FIFO
// with the token rte_rcu_qsbr_start() gave at retirement. Tokens grow monotonically, so the queue is in token order and reclaim() frees
// from the head while rte_rcu_qsbr_check() says every online reader has passed that token.
// A plain vector rather than rte_rcu_qsbr_dq: it never fills up (no retire can fail or have
// to block), needs no EAL memory, and lets the free path call a hook for the tests.
#include "common/slots.hpp"

#include <ctime>
#include <new>
#include <stdexcept>

#include "common/lanes.hpp"
#include "common/log.hpp"
#include "common/secret.hpp"
#include "common/slots_detail.hpp"

namespace p3::wire {

namespace {

constexpr std::align_val_t kAlign{RTE_CACHE_LINE_SIZE};

}  // namespace

using namespace slots_detail;


// ---- construction ------------------------------------------------------------------------

SlotTable::SlotTable(const SlotTableConfig& cfg, rte_rcu_qsbr* qsbr)
    : qsbr_(qsbr), rx_cap_(cfg.rx_capacity), sessions_(cfg.sessions), lanes_(cfg.lanes) {
    if (!qsbr_) throw std::invalid_argument("slot table: no RCU variable");
    if (rx_cap_ < 2 || rx_cap_ > kSlotTableMax)
        throw std::invalid_argument("slot table: RX capacity must be 2.." + std::to_string(kSlotTableMax));
    if (sessions_ == 0 || lanes_ == 0 || lanes_ > kMaxLanes)
        throw std::invalid_argument("slot table: sessions must be > 0 and lanes 1.." + std::to_string(kMaxLanes));
    rx_.reset(new std::atomic<RxSlot*>[rx_cap_]());
    tx_.reset(new std::atomic<TxSlot*>[static_cast<std::size_t>(sessions_) * lanes_]());
    state_.resize(rx_cap_);
}

SlotTable::~SlotTable() {
    // No reader is online: everything can go now, wiped.
    for (std::uint32_t i = 1; i < rx_cap_; ++i)
        if (RxSlot* s = rx_[i].exchange(nullptr, std::memory_order_relaxed))
            free_now(Retired{0, s, FreedKind::rx_slot, s->lane_, s->id_.raw(), s->session_});
    const std::size_t ntx = static_cast<std::size_t>(sessions_) * lanes_;
    for (std::size_t i = 0; i < ntx; ++i)
        if (TxSlot* s = tx_[i].exchange(nullptr, std::memory_order_relaxed))
            free_now(Retired{0, s, FreedKind::tx_slot, s->lane_, s->peer_id_, s->session_});
    for (std::size_t i = retired_head_; i < retired_.size(); ++i) free_now(retired_[i]);
    retired_.clear();
}

// ---- RX IDs ------------------------------------------------------------------------------

bool SlotTable::range_free(std::uint32_t first, std::uint32_t n) const noexcept {
    if (first == 0 || n == 0 || first >= rx_cap_ || n > rx_cap_ - first) return false;
    for (std::uint32_t i = first; i < first + n; ++i)
        if (state_[i].state != IndexState::free) return false;
    return true;
}

void SlotTable::take_range(std::uint32_t first, std::uint32_t n, std::uint16_t gen) noexcept {
    for (std::uint32_t i = first; i < first + n; ++i) {
        state_[i].gen = gen;
        state_[i].state = IndexState::reserved;
    }
    rx_reserved_ += n;
}

std::optional<SlotId> SlotTable::reserve_rx(std::uint32_t n) {
    reclaim();
    if (n == 0 || n > kMaxLanes || n >= rx_cap_) {
        P3_LOG_ERROR(SLOT_NO_FREE_ID, "key slots: cannot reserve %u P3 IDs (1..%u)", n, kMaxLanes);
        return std::nullopt;
    }
    // Next fit: scan at most the whole table once from the cursor, jumping past any index in
    // use, so each index is looked at about once.
    std::uint32_t i = cursor_;
    std::uint64_t scanned = 0;
    while (scanned < rx_cap_) {
        if (i == 0 || i + n > rx_cap_) {
            scanned += (i == 0) ? 1 : rx_cap_ - i;
            i = 1;
            continue;
        }
        std::uint32_t busy = 0;
        bool ok = true;
        for (std::uint32_t j = i; j < i + n; ++j)
            if (state_[j].state != IndexState::free) {
                ok = false;
                busy = j;
                break;
            }
        if (ok) {
            // One generation for the block: the highest "next generation" in it, so no index
            // gets back a generation it retired lately (wraps after 2047 retirements).
            // Generations kSlotGenerationFirst..Last only (wire_limits.hpp: an ID never has
            // its top bit set and is never below 2^20), whatever reserve_rx_at left behind.
            std::uint16_t gen = kSlotGenerationFirst;
            for (std::uint32_t j = i; j < i + n; ++j) gen = state_[j].gen > gen ? state_[j].gen : gen;
            if (gen > kSlotGenerationLast) gen = kSlotGenerationFirst;
            take_range(i, n, gen);
            cursor_ = i + n < rx_cap_ ? i + n : 1;
            return SlotId::make(gen, i);
        }
        scanned += busy + 1 - i;
        i = busy + 1;
    }
    P3_LOG_ERROR(SLOT_NO_FREE_ID, "key slots: no %u consecutive free P3 IDs (%u of %u in use)", n,
                 rx_reserved_ + rx_published_, rx_cap_ - 1);
    return std::nullopt;
}

bool SlotTable::reserve_rx_at(SlotId base, std::uint32_t n) {
    reclaim();
    if (n == 0 || n > kMaxLanes || !range_free(base.index(), n)) {
        P3_LOG_ERROR(SLOT_ID_CONFLICT, "key slots: P3 IDs 0x%08x..+%u: out of range (1..%u), index 0 or in use",
                     base.raw(), n, rx_cap_ - 1);
        return false;
    }
    take_range(base.index(), n, static_cast<std::uint16_t>(base.generation()));
    return true;
}

RxSlot* SlotTable::build_rx(SlotId id, std::span<const std::uint8_t> key, std::span<const std::uint8_t> salt,
                           const RxParams& p) {
    const std::uint32_t idx = id.index();
    if (idx == 0 || idx >= rx_cap_ || state_[idx].state != IndexState::reserved ||
        state_[idx].gen != id.generation()) {
        P3_LOG_ERROR(SLOT_ID_CONFLICT, "key slots: P3 ID 0x%08x is not reserved, cannot receive on it", id.raw());
        return nullptr;
    }
    if (!key_sizes_ok(key, salt)) {
        P3_LOG_ERROR(SLOT_BAD_KEY, "key slots: P3 ID 0x%08x: key of %zu bytes, salt of %zu", id.raw(), key.size(),
                     salt.size());
        return nullptr;
    }
    if (!ReplayWindow::valid_size(p.replay_window)) {
        P3_LOG_ERROR(SLOT_BAD_KEY, "key slots: P3 ID 0x%08x: replay window %u outside %u..%u (or 0, off)", id.raw(),
                     p.replay_window, kReplayWindowMin, kReplayWindowMax);
        return nullptr;
    }
    void* mem = slot_alloc(rx_bytes(p.replay_window));
    if (!mem) {
        P3_LOG_ERROR(SLOT_NO_MEMORY, "key slots: no memory for the slot of P3 ID 0x%08x", id.raw());
        return nullptr;
    }
    auto* bits = reinterpret_cast<std::uint64_t*>(static_cast<std::uint8_t*>(mem) + sizeof(RxSlot));
    RxSlot* s = new (mem) RxSlot(id, p, bits);
    GcmKey* k = make_rx_key(key, salt);
    RxKeys* ks = k ? make_rx_keys(k, 1, nullptr, 0) : nullptr;
    if (!ks) {
        if (k) discard(k, sizeof(GcmKey));
        discard(s, rx_bytes(p.replay_window));
        P3_LOG_ERROR(SLOT_BAD_KEY, "key slots: P3 ID 0x%08x: the AES-GCM key could not be prepared", id.raw());
        return nullptr;
    }
    s->keys_.store(ks, std::memory_order_relaxed);   // published with the slot
    return s;
}

void SlotTable::install_rx(RxSlot* s) noexcept {
    const std::uint32_t idx = s->id_.index();
    // The slot is complete: one release store makes it visible, whole.
    rx_[idx].store(s, std::memory_order_release);
    state_[idx].state = IndexState::published;
    --rx_reserved_;
    ++rx_published_;
}

bool SlotTable::publish_rx(SlotId id, std::span<const std::uint8_t> key, std::span<const std::uint8_t> salt,
                           const RxParams& p) {
    reclaim();
    RxSlot* s = build_rx(id, key, salt, p);
    if (!s) return false;
    install_rx(s);
    return true;
}

void SlotTable::retire_rx(SlotId id) {
    const std::uint32_t idx = id.index();
    if (idx == 0 || idx >= rx_cap_) return;
    IndexInfo& st = state_[idx];
    if (st.state == IndexState::free || st.gen != id.generation()) return;
    if (st.state == IndexState::published) {
        RxSlot* old = rx_[idx].exchange(nullptr, std::memory_order_release);
        --rx_published_;
        if (old) defer_free(old, FreedKind::rx_slot, old->id_.raw(), old->session_, old->lane_);
    } else {
        --rx_reserved_;
    }
    st.state = IndexState::free;
    st.gen = static_cast<std::uint16_t>(next_generation(st.gen));
    reclaim();
}

// ---- TX ----------------------------------------------------------------------------------

TxKey* SlotTable::build_tx_key(const TxSlot& s, std::span<const std::uint8_t> key, std::span<const std::uint8_t> salt) {
    if (!key_sizes_ok(key, salt)) {
        P3_LOG_ERROR(SLOT_BAD_KEY, "key slots: session %u lane %u: key of %zu bytes, salt of %zu", s.session_, s.lane_,
                     key.size(), salt.size());
        return nullptr;
    }
    void* mem = slot_alloc(sizeof(TxKey));
    if (!mem) {
        P3_LOG_ERROR(SLOT_NO_MEMORY, "key slots: no memory for a key of session %u lane %u", s.session_, s.lane_);
        return nullptr;
    }
    TxKey* k = new (mem) TxKey(key, salt);
    if (!k->key.valid() || !k->view.init(s.peer_id_, &k->key, s.outer_, s.size_hiding_, s.wan_mtu_, s.kind_)) {
        discard(k, sizeof(TxKey));
        P3_LOG_ERROR(SLOT_BAD_KEY, "key slots: session %u lane %u: key or outer addresses unusable", s.session_, s.lane_);
        return nullptr;
    }
    return k;
}

TxSlot* SlotTable::build_tx(std::span<const std::uint8_t> key, std::span<const std::uint8_t> salt,
                           const TxParams& p) {
    if (p.session >= sessions_ || p.lane >= lanes_) {
        P3_LOG_ERROR(SLOT_ID_CONFLICT, "key slots: session %u lane %u outside the table (%u sessions, %u lanes)",
                     p.session, p.lane, sessions_, lanes_);
        return nullptr;
    }
    // An ESP SA is one slot, lane 0, that every sending worker shares (TxSlot::reserve).
    if (!key_sizes_ok(key, salt) || p.peer_id == 0 || p.last_seq >= kSeqHardLimit || (is_esp(p.kind) && p.lane != 0)) {
        P3_LOG_ERROR(SLOT_BAD_KEY, "key slots: session %u lane %u: key of %zu bytes, salt of %zu, peer P3 ID 0x%08x",
                     p.session, p.lane, key.size(), salt.size(), p.peer_id);
        return nullptr;
    }
    void* mem = slot_alloc(sizeof(TxSlot));
    if (!mem) {
        P3_LOG_ERROR(SLOT_NO_MEMORY, "key slots: no memory for session %u lane %u", p.session, p.lane);
        return nullptr;
    }
    TxSlot* s = new (mem) TxSlot(p);
    TxKey* k = build_tx_key(*s, key, salt);
    if (!k) {
        discard(s, sizeof(TxSlot));
        return nullptr;
    }
    // Nobody sends on a slot not yet published: its first key starts right after last_seq.
    k->first_seq.store(p.last_seq + 1, std::memory_order_relaxed);
    s->key_.store(k, std::memory_order_relaxed);   // published with the slot
    return s;
}

void SlotTable::install_tx(TxSlot* s) {
    TxSlot* old = tx_[static_cast<std::size_t>(s->session_) * lanes_ + s->lane_].exchange(s, std::memory_order_release);
    if (old) defer_free(old, FreedKind::tx_slot, old->peer_id_, old->session_, old->lane_);
    else ++tx_published_;
}

bool SlotTable::publish_tx(std::span<const std::uint8_t> key, std::span<const std::uint8_t> salt,
                           const TxParams& p) {
    reclaim();
    TxSlot* s = build_tx(key, salt, p);
    if (!s) return false;
    install_tx(s);
    reclaim();
    return true;
}

void SlotTable::retire_tx(std::uint32_t session, std::uint16_t lane) {
    if (session >= sessions_ || lane >= lanes_) return;
    TxSlot* old = tx_[static_cast<std::size_t>(session) * lanes_ + lane].exchange(nullptr, std::memory_order_release);
    if (old) {
        --tx_published_;
        defer_free(old, FreedKind::tx_slot, old->peer_id_, old->session_, old->lane_);
    }
    reclaim();
}

void SlotTable::retire_tx_session(std::uint32_t session) {
    for (std::uint32_t l = 0; l < lanes_; ++l) retire_tx(session, static_cast<std::uint16_t>(l));
}

// ---- lanes -------------------------------------------------------------------------------

// Lane n's key || salt; lane 0 is the session's material as it is.
SecretBytes SlotTable::lane_material(std::span<const std::uint8_t> key, std::span<const std::uint8_t> salt,
                                     std::uint32_t n) {
    SecretBytes m = lane_key_material(key, salt, n);
    if (m.empty()) P3_LOG_ERROR(SLOT_BAD_KEY, "key slots: lane %u key not derived (key %zu bytes, salt %zu)", n,
                                key.size(), salt.size());
    return m;
}

bool SlotTable::publish_rx_lanes(SlotId base, std::uint32_t lanes, std::span<const std::uint8_t> key,
                                 std::span<const std::uint8_t> salt, RxParams p) {
    reclaim();
    if (lanes == 0 || lanes > kMaxLanes) {
        P3_LOG_ERROR(SLOT_ID_CONFLICT, "key slots: %u lanes for P3 ID 0x%08x (1..%u)", lanes, base.raw(), kMaxLanes);
        return false;
    }
    // Build every lane first; publish only when all are ready (all or nothing).
    RxSlot* built[kMaxLanes] = {};
    std::uint32_t n = 0;
    for (; n < lanes; ++n) {
        p.lane = static_cast<std::uint16_t>(n);
        SecretBytes m = lane_material(key, salt, n);
        if (m.empty()) break;
        built[n] = build_rx(base.lane(n), m.span().first(key.size()), m.span().subspan(key.size()), p);
        if (!built[n]) break;
    }
    if (n < lanes) {
        for (std::uint32_t k = 0; k < n; ++k) {
            // Never published: its state and key go with it, wiped.
            const RxKeys* ks = built[k]->keys_.load(std::memory_order_relaxed);
            discard(const_cast<GcmKey*>(ks->cur), sizeof(GcmKey));
            discard(const_cast<RxKeys*>(ks), sizeof(RxKeys));
            discard(built[k], rx_bytes(p.replay_window));
        }
        return false;
    }
    for (std::uint32_t k = 0; k < lanes; ++k) install_rx(built[k]);
    return true;
}

bool SlotTable::publish_tx_lanes(std::uint32_t lanes, std::span<const std::uint8_t> key,
                                 std::span<const std::uint8_t> salt, TxParams p, std::uint32_t first_lane) {
    reclaim();
    if (lanes == 0 || lanes > lanes_ || std::uint64_t(first_lane) + lanes > kMaxLanes) {
        P3_LOG_ERROR(SLOT_ID_CONFLICT, "key slots: session %u: %u lanes, the table has %u", p.session, lanes, lanes_);
        return false;
    }
    TxSlot* built[kMaxLanes] = {};
    const std::uint32_t peer_base = p.peer_id;
    std::uint32_t n = 0;
    for (; n < lanes; ++n) {
        p.lane = static_cast<std::uint16_t>(n);
        p.peer_id = peer_base + first_lane + n;
        SecretBytes m = lane_material(key, salt, first_lane + n);
        if (m.empty()) break;
        built[n] = build_tx(m.span().first(key.size()), m.span().subspan(key.size()), p);
        if (!built[n]) break;
    }
    if (n < lanes) {
        for (std::uint32_t k = 0; k < n; ++k) {
            discard(const_cast<TxKey*>(built[k]->key_.load(std::memory_order_relaxed)), sizeof(TxKey));
            discard(built[k], sizeof(TxSlot));
        }
        return false;
    }
    // Each lane switches with its own store; each lane has its own sender, so no packet ever
    // mixes an old and a new key.
    for (std::uint32_t k = 0; k < lanes; ++k) install_tx(built[k]);
    reclaim();
    return true;
}

// ---- reclamation -------------------------------------------------------------------------

void SlotTable::defer_free(void* obj, FreedKind kind, std::uint32_t id, std::uint32_t session, std::uint16_t lane) {
    // The token is taken after the object was unpublished (the store above), so every reader
    // that reports quiescent past it can no longer hold it.
    const std::uint64_t token = rte_rcu_qsbr_start(qsbr_);
    retired_.push_back(Retired{token, obj, kind, lane, id, session});
    const std::size_t pending = retired_.size() - retired_head_;
    if (pending > kStallWarnPending && !stall_warned_) {
        stall_warned_ = true;
        P3_LOG_WARN(SLOT_RECLAIM_STALLED, "key slots: %zu retired slots wait for a grace period", pending);
    }
}

// One object, wiped, then the hook, then back to the pool. A slot takes what it still holds
// with it (an RX slot its key state and keys, a TX slot its key object): nobody else can
// reach them once the slot is gone.
void SlotTable::free_now(const Retired& r) noexcept {
    FreedSlot info{};
    info.kind = r.kind;
    info.rx = r.kind == FreedKind::rx_slot || r.kind == FreedKind::rx_keys || r.kind == FreedKind::rx_key;
    info.id = r.id;
    info.session = r.session;
    info.lane = r.lane;
    switch (r.kind) {
        case FreedKind::rx_slot: {
            auto* s = static_cast<RxSlot*>(r.obj);
            if (const RxKeys* ks = s->keys_.load(std::memory_order_relaxed)) {
                for (const GcmKey* k : {ks->cur, ks->next})
                    if (k) free_now(Retired{0, const_cast<GcmKey*>(k), FreedKind::rx_key, r.lane, r.id, r.session});
                free_now(Retired{0, const_cast<RxKeys*>(ks), FreedKind::rx_keys, r.lane, r.id, r.session});
            }
            info.bytes = rx_bytes(s->replay_.size());
            s->~RxSlot();
            break;
        }
        case FreedKind::tx_slot: {
            auto* s = static_cast<TxSlot*>(r.obj);
            if (const TxKey* k = s->key_.load(std::memory_order_relaxed))
                free_now(Retired{0, const_cast<TxKey*>(k), FreedKind::tx_key, r.lane, r.id, r.session});
            info.bytes = sizeof(TxSlot);
            s->~TxSlot();
            break;
        }
        case FreedKind::rx_keys:
            info.bytes = sizeof(RxKeys);
            static_cast<RxKeys*>(r.obj)->~RxKeys();
            break;
        case FreedKind::rx_key:
            info.bytes = sizeof(GcmKey);
            static_cast<GcmKey*>(r.obj)->~GcmKey();   // wipes its schedule and salt
            break;
        case FreedKind::tx_key:
            info.bytes = sizeof(TxKey);
            static_cast<TxKey*>(r.obj)->~TxKey();
            break;
    }
    // Then everything else of it (the view's template, replay state, sequence).
    secure_wipe(r.obj, info.bytes);
    info.memory = r.obj;
    if (hook_) hook_(info, hook_ctx_);
    slot_free(r.obj, info.bytes);
    if (r.kind == FreedKind::rx_slot || r.kind == FreedKind::tx_slot) ++freed_;
    else if (r.kind != FreedKind::rx_keys) ++keys_freed_;
}

std::size_t SlotTable::reclaim() noexcept {
    std::size_t n = 0;
    while (retired_head_ < retired_.size()) {
        const Retired& r = retired_[retired_head_];
        if (rte_rcu_qsbr_check(qsbr_, r.token, false) != 1) break;
        free_now(r);
        ++retired_head_;
        ++n;
    }
    const std::size_t pending = retired_.size() - retired_head_;
    if (pending == 0) {
        retired_.clear();
        retired_head_ = 0;
    } else if (retired_head_ > 1024 && retired_head_ * 2 > retired_.size()) {
        retired_.erase(retired_.begin(), retired_.begin() + static_cast<std::ptrdiff_t>(retired_head_));
        retired_head_ = 0;
    }
    if (stall_warned_ && pending < kStallWarnPending / 2) stall_warned_ = false;
    return n;
}

void SlotTable::wait_readers() noexcept {
    const std::uint64_t token = rte_rcu_qsbr_start(qsbr_);
    // Sleeping, not spinning (rte_rcu_qsbr_synchronize spins): the control thread may share a
    // CPU with a worker (several lcores on one CPU, or EAL's control cpuset), and a spin would
    // take the very time that worker needs to reach its quiescent report, while its queues fill.
    while (rte_rcu_qsbr_check(qsbr_, token, false) != 1) {
        const timespec pause{0, kReaderPollNs};
        nanosleep(&pause, nullptr);
    }
    reclaim();
}

void SlotTable::synchronize() noexcept {
    if (retired_head_ < retired_.size()) rte_rcu_qsbr_synchronize(qsbr_, RTE_QSBR_THRID_INVALID);
    reclaim();
}

SlotStats SlotTable::stats() const noexcept {
    SlotStats s;
    s.rx_reserved = rx_reserved_;
    s.rx_published = rx_published_;
    s.tx_published = tx_published_;
    s.pending = retired_.size() - retired_head_;
    s.freed = freed_;
    s.keys_freed = keys_freed_;
    return s;
}

// ---- readers -----------------------------------------------------------------------------

SlotReader::SlotReader(rte_rcu_qsbr* qsbr, unsigned thread_id) noexcept : qsbr_(qsbr), id_(thread_id) {
    rte_rcu_qsbr_thread_register(qsbr_, id_);
    rte_rcu_qsbr_thread_online(qsbr_, id_);
}

SlotReader::~SlotReader() {
    rte_rcu_qsbr_thread_offline(qsbr_, id_);
    rte_rcu_qsbr_thread_unregister(qsbr_, id_);
}

rte_rcu_qsbr* qsbr_create(unsigned max_threads) noexcept {
    const std::size_t sz = rte_rcu_qsbr_get_memsize(max_threads);
    if (sz <= 1) return nullptr;   // 1: invalid max_threads
    void* mem = ::operator new(sz, kAlign, std::nothrow);
    if (!mem) return nullptr;
    auto* q = static_cast<rte_rcu_qsbr*>(mem);
    if (rte_rcu_qsbr_init(q, max_threads) != 0) {
        ::operator delete(mem, kAlign);
        return nullptr;
    }
    return q;
}

void qsbr_free(rte_rcu_qsbr* q) noexcept {
    if (q) ::operator delete(static_cast<void*>(q), kAlign);
}

}  // namespace p3::wire
