// Key slot table (DESIGN.md §Process and threads, §Wire format; docs/key-slots.md).
//
// Owns every key slot of one dataplane. A slot lives as long as its lane (from setup, or
// static keys, until the session is set up again or goes); a rekey changes only its keys:
//  - inbound (RX) slots, found by the P3 ID of a packet: P3 ID = generation (high
//    kSlotGenerationBits) | index (low kSlotIndexBits), index = O(1) position in the table,
//    index 0 never used. Each holds the session and lane it belongs to, the peer its packets
//    must come from, the open variant (size hiding), the lane's anti-replay window (it runs on
//    across rekeys) and an RCU-published key state RxKeys {cur, cur_from, next, next_from}
//    with one worker-written field, learned;
//  - outbound (TX) slots, found by (session, lane): the lane's sequence counter and limit
//    (sequences never restart), the outer spec, and an RCU-published key object TxKey {GcmKey,
//    the TxView built for it, first_seq}.
//
// One writer, the control thread: it builds a slot, a key state or a key object completely,
// then publishes it with one atomic store (release). Readers are worker lcores registered with
// the dataplane's rte_rcu_qsbr: a pointer they load is valid until their next quiescent
// report, which they make once per loop iteration, holding no pointer (SlotReader).
// Retiring stores nullptr (or the replacement), bumps the generation of an RX index, and
// queues the old object with an RCU token; reclaim() frees it, secrets wiped, once every
// online reader has reported a quiescent state after the retirement. So a P3 ID of a retired
// slot never finds a key again, even after its index is reused (generation differs), and a
// reader never touches freed memory.
//
// Key choice per received packet (RxKeys::pick, before any AES), sequence s:
//   s < cur_from -> dropped (its key is gone); no next -> cur; next_from known ->
//   s >= next_from ? next : cur; else learned && s >= learned -> next; else cur, with next as
//   the alternative the dataplane retries a failed tag under (restoring the ciphertext
//   first), lowering learned to s when it verifies.
// Key switch per sent packet: none. The worker that first takes a ref of a key object whose
// first_seq is 0 sets it (CAS) to its counter + 1; the control thread's switch_tx exchanges
// the object in, waits one grace period, then does the same CAS with the counter it reads:
// whichever wins, first_seq is the exact first sequence sent under the key.
//
// Mutable parts, each with exactly one writer and no locks:
//  - an RX slot's replay window and its key state's learned: the worker that owns the slot's
//    lane (a packet of it received by another worker is handed to the owner, docs/dataplane.md
//    §Lanes; an ESP SA's: the worker its one queue reaches);
//  - a TX slot's sequence counter: the worker that sends on that lane; a lane several workers
//    share (fewer lanes than sending workers) and an ESP SA take their sequences by atomic
//    reservation (TxSlot::reserve), never by a plain write;
//  - a TX slot's sequence limit: the control thread, which only raises it;
//  - a TX key's first_seq: set once, 0 -> first sequence, by a CAS (worker or control).
//
// RX index states (control thread): free -> reserved (ID handed to the peer, nothing to
// decrypt yet) -> published -> free (retired: generation + 1). Reserving takes a block of
// consecutive indices with one generation, so lane n of a session receives on base + n.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <span>
#include <vector>

#include <rte_byteorder.h>
#include <rte_common.h>
#include <rte_rcu_qsbr.h>

#include "common/crypto.hpp"
#include "common/reasons.hpp"
#include "common/replay.hpp"
#include "common/wire.hpp"
#include "common/wire_limits.hpp"

namespace p3::wire {

// A P3 ID as this side's table reads it: generation | index.
class SlotId {
public:
    constexpr SlotId() noexcept = default;
    constexpr explicit SlotId(std::uint32_t raw) noexcept : raw_(raw) {}
    static constexpr SlotId make(std::uint32_t generation, std::uint32_t index) noexcept {
        return SlotId(((generation & kSlotGenerationMax) << kSlotIndexBits) | (index & kSlotIndexMask));
    }
    constexpr std::uint32_t raw() const noexcept { return raw_; }
    constexpr std::uint32_t index() const noexcept { return raw_ & kSlotIndexMask; }
    constexpr std::uint32_t generation() const noexcept { return raw_ >> kSlotIndexBits; }
    constexpr bool valid() const noexcept { return index() != 0; }
    // The ID of lane n of a block reserved at this base (same generation, index + n).
    constexpr SlotId lane(std::uint32_t n) const noexcept { return make(generation(), index() + n); }
    constexpr bool operator==(const SlotId&) const noexcept = default;

private:
    std::uint32_t raw_ = 0;
};

// ---- slots ------------------------------------------------------------------------------

struct RxParams {
    std::uint32_t session = 0;
    std::uint16_t lane = 0;
    SizeHiding size_hiding = SizeHiding::off;
    std::uint32_t replay_window = kReplayWindowDefault;   // 64..8192
    // Where the slot's packets must come from (RFC 4301 §5.2: the SA's peer): the peer's WAN
    // address and, for UDP encapsulation, its UDP source port (0 = native P3). Family 0: any.
    IpAddr peer;
    std::uint16_t peer_port = 0;
    // P3, or an inbound ESP SA (one lane, its SPI = the slot's ID, no size hiding, one key).
    WireKind kind = WireKind::p3;
};

struct TxParams {
    std::uint32_t session = 0;
    std::uint16_t lane = 0;
    std::uint32_t peer_id = 0;          // the P3 ID to write: chosen by the peer (receiver)
    OuterSpec outer;                    // our and the peer's WAN addresses, UDP ports if NAT
    SizeHiding size_hiding = SizeHiding::off;
    std::uint16_t wan_mtu = 0;          // caps size-hiding padding (0 = none)
    std::uint64_t last_seq = 0;         // last sequence the lane already sent (0 = a new lane)
    std::uint64_t seq_limit = kSeqLast; // the last sequence the lane may send until raised
    // P3, or an outbound ESP SA (peer_id = the peer's SPI; lane 0 only, shared by every
    // sending worker through TxSlot::reserve; no size hiding; without ESN the limit is 2^32-1).
    WireKind kind = WireKind::p3;
};

// The keys an RX slot opens under, immutable once published but for learned: replaced as a
// whole (one store) when a next key comes, its switch point is announced, it is promoted or
// dropped. A key object may be shared by two states in turn; it is retired with the state
// that last holds it.
struct alignas(RTE_CACHE_LINE_SIZE) RxKeys {
    const GcmKey* cur = nullptr;
    std::uint64_t cur_from = 1;        // sequences below were sent under a key now wiped
    const GcmKey* next = nullptr;      // the peer's next key, nullptr: none pending
    std::uint64_t next_from = 0;       // the peer's announced switch point, 0: not announced
    // Lowest sequence that authenticated under next (0: none). Written by the receiving
    // worker only (relaxed, only lowered once set); lives here so a new next key starts
    // with none, whatever a worker still holding the old state writes.
    mutable std::atomic<std::uint64_t> learned{0};

    // The key sequence s opens under; nullptr: below cur_from (drop without AES). alt is set
    // to the key to retry under when the tag fails (left alone otherwise).
    const GcmKey* pick(std::uint64_t s, const GcmKey*& alt) const noexcept {
        if (s < cur_from) [[unlikely]] return nullptr;
        if (next == nullptr) [[likely]] return cur;
        if (next_from != 0) return s >= next_from ? next : cur;
        const std::uint64_t l = learned.load(std::memory_order_relaxed);
        if (l != 0 && s >= l) return next;
        alt = next;
        return cur;
    }
    // The receiving worker, after a packet of sequence s verified under next.
    void learn(std::uint64_t s) const noexcept {
        const std::uint64_t l = learned.load(std::memory_order_relaxed);
        if (l == 0 || s < l) learned.store(s, std::memory_order_relaxed);
    }
};

// Inbound slot. Immutable after publication except the replay window and the key state.
class alignas(RTE_CACHE_LINE_SIZE) RxSlot {
public:
    SlotId id() const noexcept { return id_; }
    std::uint32_t session() const noexcept { return session_; }
    std::uint16_t lane() const noexcept { return lane_; }
    SizeHiding size_hiding() const noexcept { return size_hiding_; }
    WireKind kind() const noexcept { return kind_; }
    OpenRunFn open() const noexcept { return open_; }
    // The key state (RCU: valid until the reader's next quiescent report).
    const RxKeys* keys() const noexcept { return keys_.load(std::memory_order_acquire); }
    // The current key, and a ref to open under it (control thread, tests, tools).
    const GcmKey& key() const noexcept { return *keys()->cur; }
    RxRef ref() const noexcept { return RxRef(keys()->cur, open_); }

    // The packet's outer header comes from the slot's peer: IP at outer_ip, and how it was
    // carried: src_tag(udp, port) (native P3, or UDP from that source port). A few
    // instructions on line 0, which the lookup read already; the peer's family was resolved
    // when the slot was built (where its source address lies in the header, which bytes of
    // the 16 read there count, and none for a slot that takes any peer), so no packet
    // branches on it. outer_ip must have 28 bytes (an IPv4 header and the P3 header's start,
    // or an IPv6 header's first 24).
    static constexpr std::uint32_t src_tag(bool udp, std::uint16_t sport_be) noexcept {
        return udp ? 0x10000u | sport_be : 0u;   // UDP from port 0 is not native P3
    }
    // The peer's address and port are relaxed atomic loads (plain moves): the control thread
    // may move a UDP-encapsulated slot's peer while workers read it (SlotTable::move_rx_peer).
    bool from_peer(const std::uint8_t* outer_ip, std::uint32_t src) const noexcept {
        std::uint64_t a[2];
        std::memcpy(a, outer_ip + peer_off_, 16);
        return (((a[0] & peer_mask_[0]) ^ __atomic_load_n(&peer_[0], __ATOMIC_RELAXED)) |
                ((a[1] & peer_mask_[1]) ^ __atomic_load_n(&peer_[1], __ATOMIC_RELAXED)) |
                std::uint64_t{(src & src_mask_) ^ __atomic_load_n(&peer_src_, __ATOMIC_RELAXED)}) == 0;
    }
    // The slot's packets come inside UDP (NAT traversal): only then may its peer move.
    bool udp() const noexcept { return (__atomic_load_n(&peer_src_, __ATOMIC_RELAXED) & 0x10000u) != 0; }

    // The receiving worker only: check() before decryption, update() after the tag verifies.
    ReplayWindow& replay() noexcept { return replay_; }
    const ReplayWindow& replay() const noexcept { return replay_; }

private:
    friend class SlotTable;
    RxSlot(SlotId id, const RxParams& p, std::uint64_t* bits) noexcept
        : id_(id), session_(p.session), lane_(p.lane), size_hiding_(p.size_hiding), replay_(p.replay_window, bits) {
        // The peer check by family (RFC 4301 §5.2), resolved once: IPv4 compares the source
        // at 12 (4 bytes of 16), IPv6 the source at 8 (all 16), any other family nothing.
        const bool v4 = p.peer.family == 4, v6 = p.peer.family == 6;
        peer_off_ = v6 ? 8 : 12;
        std::uint8_t mask[16] = {};
        std::memset(mask, 0xff, v6 ? 16 : v4 ? 4 : 0);
        std::memcpy(peer_mask_, mask, 16);
        std::memcpy(peer_, p.peer.bytes.data(), 16);
        peer_[0] &= peer_mask_[0];
        peer_[1] &= peer_mask_[1];
        src_mask_ = v4 || v6 ? ~0u : 0u;
        peer_src_ = src_tag(p.peer_port != 0, rte_cpu_to_be_16(p.peer_port)) & src_mask_;
        kind_ = p.kind;
        open_ = RxRef(nullptr, size_hiding_, kind_).open;
    }
    // The control thread: the peer now sends from addr (same family) and UDP port (host
    // order). Each word is one store: a worker between two of them sees the old address with
    // the new port or the reverse, matching neither peer (its packet takes the wrong-peer
    // path for those few nanoseconds).
    void move_peer(const IpAddr& addr, std::uint16_t port) noexcept {
        std::uint64_t a[2];
        std::memcpy(a, addr.bytes.data(), 16);
        __atomic_store_n(&peer_src_, src_tag(true, rte_cpu_to_be_16(port)) & src_mask_, __ATOMIC_RELAXED);
        __atomic_store_n(&peer_[0], a[0] & peer_mask_[0], __ATOMIC_RELAXED);
        __atomic_store_n(&peer_[1], a[1] & peer_mask_[1], __ATOMIC_RELAXED);
    }

    // line 0: what the lookup reads, the peer the packets must come from (network order; moved
    // only by the control thread, for a UDP-encapsulated slot) and the open variant
    SlotId id_;
    std::uint32_t session_;
    std::uint16_t lane_;
    SizeHiding size_hiding_;
    std::uint8_t peer_off_;           // where the outer source address starts
    std::uint32_t peer_src_;          // src_tag of the peer's packets (masked)
    std::uint32_t src_mask_;          // ~0, or 0 for a slot that takes any peer
    WireKind kind_;                   // P3 or ESP: a packet of the other kind never finds it
    std::uint64_t peer_[2];           // the peer's address, masked
    std::uint64_t peer_mask_[2];      // which bytes of the 16 at peer_off_ count
    OpenRunFn open_;
    // line 1: the key state beside the window the worker reads per packet anyway, so the state
    // costs no line of its own in the slot; the control thread writes it only on a key change.
    alignas(RTE_CACHE_LINE_SIZE) std::atomic<const RxKeys*> keys_{nullptr};
    ReplayWindow replay_;             // the receiving worker's; words follow the slot
};

// One outbound key of a lane: the key, the view encapsulation takes (built for this key and
// the lane's outer spec), and the first sequence sent under it (0: not used yet).
struct alignas(RTE_CACHE_LINE_SIZE) TxKey {
    explicit TxKey(std::span<const std::uint8_t> k, std::span<const std::uint8_t> salt) noexcept : key(k, salt) {}
    // The same key again, for a view with another outer header (SlotTable::move_tx).
    explicit TxKey(const GcmKey& k) noexcept : key(k, GcmKey::Copy{}) {}
    GcmKey key;                                      // own cache lines
    // Beside the view's head, which sealing reads anyway: set once by a CAS.
    mutable std::atomic<std::uint64_t> first_seq{0};
    TxView view;                                     // points at key
};

// Outbound slot. Immutable after publication except the sequence counter, its limit and the
// key object.
class alignas(RTE_CACHE_LINE_SIZE) TxSlot {
public:
    std::uint32_t session() const noexcept { return session_; }
    std::uint16_t lane() const noexcept { return lane_; }
    std::uint32_t peer_id() const noexcept { return peer_id_; }
    // The current key object (RCU: valid until the reader's next quiescent report).
    const TxKey* current() const noexcept { return key_.load(std::memory_order_acquire); }
    const GcmKey& key() const noexcept { return current()->key; }
    const TxView& view() const noexcept { return current()->view; }

    // The sending worker only. A ref for key object k (current()); before its first use the
    // worker claims k's first sequence (claim()), after sealing whatever it staged under the
    // key before it, so the counter it reads is the last sequence sent under that one.
    TxRef ref_of(const TxKey* k) noexcept { return TxRef{&k->view, &last_seq_, &seq_limit_}; }
    static bool unclaimed(const TxKey* k) noexcept { return k->first_seq.load(std::memory_order_relaxed) == 0; }
    // true: this claim set it (false: the control thread's after its grace period did).
    bool claim(const TxKey* k) noexcept {
        std::uint64_t zero = 0;
        return k->first_seq.compare_exchange_strong(zero, last_seq_ + 1, std::memory_order_relaxed);
    }
    // A lane several workers send on (fewer lanes than sending workers: each run takes its
    // sequences with reserve()): k's first sequence is the counter as it is now + 1, so every
    // sequence reserved before is sent under the key before k and every one reserved after
    // under k (outbound.cpp reserve_runs). true: this claim set it.
    bool claim_shared(const TxKey* k) noexcept {
        std::uint64_t zero = 0;
        return k->first_seq.compare_exchange_strong(zero, __atomic_load_n(&last_seq_, __ATOMIC_SEQ_CST) + 1,
                                                    std::memory_order_seq_cst);
    }
    // Both in one (a sender with nothing staged: tests, tools).
    TxRef ref() noexcept {
        const TxKey* k = current();
        if (unclaimed(k)) claim(k);
        return ref_of(k);
    }
    // ESP (one SA for every sending worker), or a P3 lane shared by several workers: no
    // single writer, so reserves n sequences with one atomic add and returns the last one
    // before them; the caller sends under returned + 1 .. returned + n (a sequence reserved
    // and not sent is a gap, which receivers accept). A P3 lane with one writer never calls it.
    std::uint64_t reserve(std::uint32_t n) noexcept { return __atomic_fetch_add(&last_seq_, n, __ATOMIC_SEQ_CST); }
    const std::uint64_t* seq_limit_ptr() const noexcept { return &seq_limit_; }
    WireKind kind() const noexcept { return kind_; }
    // Any thread (statistics, packet-count rekey): the last sequence sent, possibly stale.
    std::uint64_t last_seq() const noexcept { return __atomic_load_n(&last_seq_, __ATOMIC_RELAXED); }
    // Packets sent under the current key: last_seq - first_seq + 1 (0 before its first).
    // Control thread (or an RCU reader).
    std::uint64_t packets() const noexcept {
        const std::uint64_t f = current()->first_seq.load(std::memory_order_relaxed), l = last_seq();
        return f != 0 && l >= f ? l - f + 1 : 0;
    }
    // The last sequence the lane may send. Raised by the control thread only (static keys:
    // after the next block's mark is persisted), never lowered; at most kSeqLast.
    std::uint64_t seq_limit() const noexcept { return __atomic_load_n(&seq_limit_, __ATOMIC_RELAXED); }
    void raise_seq_limit(std::uint64_t v) noexcept {
        if (v > kSeqLast) v = kSeqLast;
        if (v > seq_limit()) __atomic_store_n(&seq_limit_, v, __ATOMIC_RELAXED);
    }

private:
    friend class SlotTable;
    explicit TxSlot(const TxParams& p) noexcept
        : session_(p.session), lane_(p.lane), peer_id_(p.peer_id), size_hiding_(p.size_hiding), kind_(p.kind),
          wan_mtu_(p.wan_mtu), outer_(p.outer), last_seq_(p.last_seq),
          seq_limit_(std::min(p.seq_limit, p.kind == WireKind::esp ? kEspSeqLastNoEsn : kSeqLast)) {}

    // line 0 (read once per run of the lane's packets: the key object)
    std::atomic<const TxKey*> key_{nullptr};
    std::uint32_t session_;
    std::uint16_t lane_;
    std::uint32_t peer_id_;
    SizeHiding size_hiding_;
    WireKind kind_;
    std::uint16_t wan_mtu_;
    OuterSpec outer_;                              // kept to build the views of later keys
    alignas(RTE_CACHE_LINE_SIZE) std::uint64_t last_seq_;   // the sending worker's
    std::uint64_t seq_limit_;                      // the control thread's; same line, read per packet
};

// ---- the table --------------------------------------------------------------------------

struct SlotTableConfig {
    // RX indices 1..rx_capacity-1 (index 0 is never used). Default: 10,000 remotes x 13 lanes
    // fit (a rekey takes no ID). At most kSlotTableMax. 8 bytes each while empty.
    std::uint32_t rx_capacity = 1u << 17;
    // TX: sessions 0..sessions-1, lanes 0..lanes-1 each; 8 bytes per (session, lane).
    std::uint32_t sessions = 32768;
    std::uint32_t lanes = 8;
};

// What a free hook sees: the object's memory right after the wipe, before it goes back to
// the allocator (tests check it is all zero).
enum class FreedKind : std::uint8_t { rx_slot, tx_slot, rx_keys, rx_key, tx_key };
struct FreedSlot {
    bool rx;                   // an RX slot (or its state / key) or a TX one
    FreedKind kind;
    std::uint32_t id;          // RX: the slot's P3 ID; TX: the peer's P3 ID it writes
    std::uint32_t session;
    std::uint16_t lane;
    const void* memory;        // wiped (for keys: the GcmKey / TxKey that was there)
    std::size_t bytes;
};
using FreeHook = void (*)(const FreedSlot& freed, void* ctx);

struct SlotStats {
    std::uint32_t rx_reserved = 0;    // reserved, not yet published
    std::uint32_t rx_published = 0;
    std::uint32_t tx_published = 0;
    std::size_t pending = 0;          // retired, waiting for the grace period
    std::uint64_t freed = 0;          // slots freed and wiped since creation
    std::uint64_t keys_freed = 0;     // keys (RX GcmKey, TX key objects) freed and wiped
};

class SlotTable {
public:
    // qsbr: the dataplane's RCU variable its workers report to (the table never registers
    // anyone). Memory for the tables is taken here, on the control thread; throws
    // std::bad_alloc / std::invalid_argument (capacity out of range, null qsbr).
    SlotTable(const SlotTableConfig& cfg, rte_rcu_qsbr* qsbr);
    // Frees every slot at once, wiped: only when no reader is online any more.
    ~SlotTable();
    SlotTable(const SlotTable&) = delete;
    SlotTable& operator=(const SlotTable&) = delete;

    // ---- fast path: worker lcores between two quiescent reports; also the control thread.
    // The pointer is valid until this thread's next quiescent report. nullptr: no slot (an
    // unknown or retired P3 ID, a stale generation, an index out of range or 0).
    RxSlot* rx(std::uint32_t p3_id) const noexcept {
        const std::uint32_t idx = p3_id & kSlotIndexMask;
        if (idx >= rx_cap_) [[unlikely]] return nullptr;
        RxSlot* s = rx_[idx].load(std::memory_order_acquire);
        if (s == nullptr || s->id_.raw() != p3_id) return nullptr;   // generation mismatch
        return s;
    }
    TxSlot* tx(std::uint32_t session, std::uint16_t lane) const noexcept {
        if (session >= sessions_ || lane >= lanes_) [[unlikely]] return nullptr;
        return tx_[static_cast<std::size_t>(session) * lanes_ + lane].load(std::memory_order_acquire);
    }

    // ---- control thread only -------------------------------------------------------------
    // Reserves n (1..kMaxLanes) consecutive free RX IDs with one generation, next-fit from
    // where the last reservation ended (an index is reused as late as possible). nullopt
    // (logged, SLOT_NO_FREE_ID) when no block is free.
    std::optional<SlotId> reserve_rx(std::uint32_t n);
    // Reserves exactly base..base+n-1 (static keys; an ID the peer was told). False (logged,
    // SLOT_ID_CONFLICT) when out of range, index 0, or any of them is reserved or published.
    bool reserve_rx_at(SlotId base, std::uint32_t n);
    // Builds and publishes the RX slot of a reserved ID with its first key (current from
    // sequence 1). key: 16 or 32 bytes, salt 4 (the lane's own material). False (logged) on a
    // bad key, an ID not reserved, no memory.
    bool publish_rx(SlotId id, std::span<const std::uint8_t> key, std::span<const std::uint8_t> salt,
                    const RxParams& p);
    // Retires a reserved or published RX ID: unpublished now, its index free again under the
    // next generation, its slot and keys freed after the grace period. Unknown IDs are ignored.
    void retire_rx(SlotId id);

    // ---- an RX slot's keys (the lane stays; each call publishes a new key state) ----------
    // The next key of a published slot; a pending next key is replaced (and wiped after the
    // grace period). False (logged): no such slot, bad key, no memory; nothing changed.
    bool set_next_rx(SlotId id, std::span<const std::uint8_t> key, std::span<const std::uint8_t> salt);
    // The peer sends under the next key from first_seq on (exact). No next key: ignored.
    void announce_rx(SlotId id, std::uint64_t first_seq);
    // A packet authenticated under the pending next key (learned, or announced and the
    // window's top reached the switch point).
    bool next_seen_rx(SlotId id) const noexcept;
    // The next key becomes the current one from its switch point (announced, else learned,
    // else 1); the old current key is wiped after the grace period. No next key: nothing.
    void promote_rx(SlotId id);
    // The pending next key goes (wiped after the grace period); the current one stays.
    void drop_next_rx(SlotId id);

    // Builds the TX slot of (p.session, p.lane) with its first key and publishes it in place
    // of the current one, which is retired (a new lane: sequences from p.last_seq + 1). False
    // (logged) on a bad key or view, range, no memory; the current slot then stays.
    bool publish_tx(std::span<const std::uint8_t> key, std::span<const std::uint8_t> salt, const TxParams& p);
    void retire_tx(std::uint32_t session, std::uint16_t lane);
    void retire_tx_session(std::uint32_t session);   // every lane of it

    // Every lane of a session from the session's key material: lane n uses
    // lane_key_material(key, salt, n) (lane 0: as is). RX: IDs base..base+lanes-1, reserved
    // (reserve_rx / reserve_rx_at); TX: lanes 0..lanes-1 with peer IDs p.peer_id + n.
    // All or nothing: every lane is built before any is published; on failure (logged)
    // nothing changes (RX IDs stay reserved, current TX slots stay).
    bool publish_rx_lanes(SlotId base, std::uint32_t lanes, std::span<const std::uint8_t> key,
                          std::span<const std::uint8_t> salt, RxParams p);
    // first_lane (a cluster member's lanes, docs/cluster.md): TX slot lane n sends as the
    // session's lane first_lane + n (peer ID p.peer_id + first_lane + n, that lane's key).
    bool publish_tx_lanes(std::uint32_t lanes, std::span<const std::uint8_t> key,
                          std::span<const std::uint8_t> salt, TxParams p, std::uint32_t first_lane = 0);
    // The next keys of RX lanes base..base+lanes-1 from the session's material (set_next_rx
    // per lane), all or nothing.
    bool set_next_rx_lanes(SlotId base, std::uint32_t lanes, std::span<const std::uint8_t> key,
                           std::span<const std::uint8_t> salt);

    // Switches TX lanes 0..lanes-1 of a session (each published) to new keys from the
    // session's material, keeping their sequences: builds every key object first (all or
    // nothing), exchanges them in, retires the old ones, waits for one grace period (blocks:
    // never from a reader), then claims each new key's first sequence unless its worker did.
    // first_seq_out[n] = the first sequence lane n sends under the new key. False (logged):
    // a lane not published, bad key, no memory, first_seq_out too small; nothing changed.
    // first_lane: as publish_tx_lanes (the slots' keys derive from session lane first_lane + n).
    bool switch_tx(std::uint32_t session, std::uint32_t lanes, std::span<const std::uint8_t> key,
                   std::span<const std::uint8_t> salt, std::span<std::uint64_t> first_seq_out,
                   std::uint32_t first_lane = 0);
    // Packets sent under the current key of a lane (TxSlot::packets; 0 without a slot).
    std::uint64_t tx_packets(std::uint32_t session, std::uint16_t lane) const noexcept;

    // ---- the peer moved (NAT traversal: a new address or UDP port, learnt from an
    // authenticated packet) ---------------------------------------------------------------
    // RX: the slot now takes packets from addr and UDP port (same family as before; a slot
    // that is not UDP-encapsulated is left alone: false). Window and keys stay.
    bool move_rx_peer(SlotId id, const IpAddr& addr, std::uint16_t port) noexcept;
    // TX lanes 0..lanes-1 of a session (each published): each gets a key object with the same
    // key and a view for the new outer spec, exchanged in like a key switch; the lane's counter
    // is the slot's, so sequences run on and none is sent twice under the key. The first
    // sequence of the key carries over. Never blocks. False (logged): a lane not published, no
    // memory, a view that cannot be built; nothing changed.
    bool move_tx(std::uint32_t session, std::uint32_t lanes, const OuterSpec& outer);

    // Frees (wiped) every retired slot whose grace period is over; returns how many. Call it
    // from the control loop; publish and retire call it too. Never blocks.
    std::size_t reclaim() noexcept;
    // Waits until every online reader has reported quiescent, then frees all retired slots.
    // Blocks: never from a registered reader (it would wait for itself).
    void synchronize() noexcept;
    // Waits, sleeping kReaderPollNs between looks, until every online reader has reported
    // quiescent after the call (what switch_tx needs before it reads a lane's counter), then
    // reclaims. Never from a reader.
    void wait_readers() noexcept;
    static constexpr long kReaderPollNs = 20'000;

    SlotStats stats() const noexcept;
    std::uint32_t rx_capacity() const noexcept { return rx_cap_; }
    std::uint32_t sessions() const noexcept { return sessions_; }
    std::uint32_t lanes() const noexcept { return lanes_; }
    rte_rcu_qsbr* qsbr() const noexcept { return qsbr_; }
    // The next generation an index would get (tests, diagnostics).
    std::uint32_t generation_of(std::uint32_t index) const noexcept {
        return index < rx_cap_ ? state_[index].gen : 0;
    }

    // Called for every slot freed, right after its wipe (tests; nullptr = none).
    void set_free_hook(FreeHook hook, void* ctx) noexcept {
        hook_ = hook;
        hook_ctx_ = ctx;
    }

    // More retired slots than this waiting for a grace period logs SLOT_RECLAIM_STALLED
    // (once, until the queue drains below half).
    static constexpr std::size_t kStallWarnPending = 4096;

private:
    enum class IndexState : std::uint8_t { free = 0, reserved, published };
    struct IndexInfo {
        std::uint16_t gen = 0;   // reserved/published: the current generation; free: the next
        IndexState state = IndexState::free;
    };
    struct Retired {
        std::uint64_t token;
        void* obj;
        FreedKind kind;
        std::uint16_t lane;
        std::uint32_t id;
        std::uint32_t session;
    };

    RxSlot* build_rx(SlotId id, std::span<const std::uint8_t> key, std::span<const std::uint8_t> salt,
                     const RxParams& p);
    void install_rx(RxSlot* s) noexcept;
    RxSlot* published_rx(SlotId id) const noexcept;
    // Publishes a new key state for s (learned 0) and retires the old one with every key it
    // held that the new one does not. False (logged): no memory, nothing changed.
    bool replace_keys(RxSlot* s, const GcmKey* cur, std::uint64_t cur_from, const GcmKey* next,
                      std::uint64_t next_from);
    TxSlot* build_tx(std::span<const std::uint8_t> key, std::span<const std::uint8_t> salt, const TxParams& p);
    TxKey* build_tx_key(const TxSlot& s, std::span<const std::uint8_t> key, std::span<const std::uint8_t> salt);
    void install_tx(TxSlot* s);
    static SecretBytes lane_material(std::span<const std::uint8_t> key, std::span<const std::uint8_t> salt,
                                     std::uint32_t n);
    void defer_free(void* obj, FreedKind kind, std::uint32_t id, std::uint32_t session, std::uint16_t lane);
    void free_now(const Retired& r) noexcept;
    bool range_free(std::uint32_t first, std::uint32_t n) const noexcept;
    void take_range(std::uint32_t first, std::uint32_t n, std::uint16_t gen) noexcept;

    rte_rcu_qsbr* qsbr_;
    std::uint32_t rx_cap_;
    std::uint32_t sessions_;
    std::uint32_t lanes_;
    std::unique_ptr<std::atomic<RxSlot*>[]> rx_;
    std::unique_ptr<std::atomic<TxSlot*>[]> tx_;
    std::vector<IndexInfo> state_;       // control thread only
    std::uint32_t cursor_ = 1;           // next-fit start for reserve_rx
    std::uint32_t rx_reserved_ = 0, rx_published_ = 0, tx_published_ = 0;
    std::vector<Retired> retired_;       // FIFO (token order), head at retired_head_
    std::size_t retired_head_ = 0;
    std::uint64_t freed_ = 0;
    std::uint64_t keys_freed_ = 0;
    bool stall_warned_ = false;
    FreeHook hook_ = nullptr;
    void* hook_ctx_ = nullptr;
};

// A worker's side of the table's RCU, for code that does not already report to the qsbr
// itself (tests, tools; the dataplane's worker loop reports on the same qsbr directly):
//   SlotReader r(table.qsbr(), thread_id);       // register + online
//   for (;;) { r.quiescent(); ...table.rx(id)... }  // top of every loop iteration
//   r.offline() before blocking, r.online() after; the destructor goes offline + unregisters.
class SlotReader {
public:
    SlotReader(rte_rcu_qsbr* qsbr, unsigned thread_id) noexcept;
    ~SlotReader();
    SlotReader(const SlotReader&) = delete;
    SlotReader& operator=(const SlotReader&) = delete;

    // "I hold no slot pointer": every pointer loaded before this call may be freed after it.
    void quiescent() noexcept { rte_rcu_qsbr_quiescent(qsbr_, id_); }
    void offline() noexcept { rte_rcu_qsbr_thread_offline(qsbr_, id_); }
    void online() noexcept { rte_rcu_qsbr_thread_online(qsbr_, id_); }
    unsigned thread_id() const noexcept { return id_; }

private:
    rte_rcu_qsbr* qsbr_;
    unsigned id_;
};

// An rte_rcu_qsbr for max_threads readers on plain aligned memory (no EAL needed): for
// tests and for callers without one. rte_rcu_qsbr_init() is done; free with qsbr_free().
rte_rcu_qsbr* qsbr_create(unsigned max_threads) noexcept;
void qsbr_free(rte_rcu_qsbr* q) noexcept;

}  // namespace p3::wire
