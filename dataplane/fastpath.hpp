// What every worker reads on the packet path (set once at init, then read-only), and the
// stages of the path, each in its own file:
//   classify.cpp  rx_burst: Ethernet/IP checks, ARP/ND/echo, LAN and WAN decisions
//   outbound.cpp  OutStage: per-run slot and MTU, seal, Ethernet, the batch to the WAN
//   inbound.cpp   InStage: slot, peer and replay checks, open, inner checks, delivery
//   tx.cpp        TX buffers and port bursts, next hop, rings to and from the control thread
//   worker.cpp    the loop (worker.hpp)
// (keys.cpp is the control thread's side: the slots these stages read.)
// The contract every stage keeps: a burst function (rx_burst, outbound_flush, inbound_flush,
// outbound_crypto, tx_flush, tx_send) returns how many of its packets went on; a per-packet
// entry (outbound_one, inbound_one) either stages the packet for its stage's burst or takes it
// off the path. A packet that does not go on was freed and counted under its reason (or
// answered, or handed to the control thread, each counted too); none is left behind.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <optional>

#include <rte_ether.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>
#include <rte_rcu_qsbr.h>
#include <rte_ring.h>

#include "common/net.hpp"
#include "common/slots.hpp"
#include "common/wire.hpp"
#include "dataplane/dataplane.hpp"
#include "dataplane/pkt.hpp"
#include "dataplane/worker.hpp"

namespace p3::dp {

struct Dataplane::Shared {
    std::uint16_t port_id[kSides] = {};
    rte_ether_addr mac[kSides] = {};
    Prefix prefix[kSides];                 // own address (host bits kept) and on-link prefix
    std::optional<IpAddr> gateway[kSides];
    std::uint16_t mtu[kSides] = {1500, 1500};
    std::uint16_t setup_port = 5653;       // UDP, to the control thread
    std::uint16_t nat_port = 4500;         // UDP-encapsulated P3
    std::uint32_t replay_window = 1024;
    rte_ring* to_control[kCtlClasses] = {};   // by CtlClass: trusted, neighbour, setup
    rte_ring* to_workers = nullptr;
    // Inbound lanes (docs/dataplane.md §Lanes): lane n of any session is opened by worker
    // lane_owner[n] (the WAN-polling workers in turn); a packet received elsewhere goes onto
    // that worker's handoff ring (by worker index; nullptr when it polls no WAN queue, or with
    // a single WAN-polling worker, when every lane is its own).
    rte_ring* handoff[kMaxWorkers] = {};
    std::uint8_t lane_owner[wire::kMaxLanes] = {};
    std::uint16_t senders = 1;             // workers that send (dense Lcore::lane 0..senders-1)
    rte_rcu_qsbr* qsbr = nullptr;
    rte_mempool* pool = nullptr;
    const RouteTable* routes = nullptr;
    SessionTable* sessions = nullptr;
    const wire::SlotTable* slots = nullptr;   // key slots: TX by (session, lane), RX by P3 ID
    const NeighborTable* neigh[kSides] = {};
    std::uint16_t burst = 32;
    std::uint32_t idle_polls = 256;
    std::uint32_t idle_backoff_us = 0;
    std::uint64_t drain_tsc = 0;
    const std::atomic<bool>* stop = nullptr;
    // A failover cluster's backup (dataplane/cluster.cpp): WAN RX bursts and WAN TX batches
    // are dropped (cluster_backup). Read once per burst / batch.
    const std::atomic<bool>* wan_blocked = nullptr;
    Capture* capture = nullptr;            // p3ctl capture: armed per side and direction (capture.hpp)
    // This appliance's protected networks (RFC 4301 §5.2: an inbound inner destination must
    // lie in one): the LAN port's prefix and local.subnets, as network/mask words so a check
    // is a few AND-compares per packet without building an address.
    struct Net4 {
        std::uint32_t net, mask;   // host order
    };
    struct Net6 {
        std::uint64_t net[2], mask[2];   // as the bytes lie in memory
    };
    static constexpr unsigned kMaxLocalNets = 17;   // the LAN prefix + local.subnets (16)
    Net4 local4[kMaxLocalNets] = {};
    Net6 local6[kMaxLocalNets] = {};
    unsigned n_local4 = 0, n_local6 = 0;
    bool local_dst4(std::uint32_t d) const noexcept {
        bool in = false;
        for (unsigned i = 0; i < n_local4; ++i) in |= (d & local4[i].mask) == local4[i].net;
        return in;
    }
    bool local_dst6(const std::uint8_t* d) const noexcept {
        std::uint64_t a[2];
        std::memcpy(a, d, 16);
        bool in = false;
        for (unsigned i = 0; i < n_local6; ++i)
            in |= (((a[0] & local6[i].mask[0]) ^ local6[i].net[0]) | ((a[1] & local6[i].mask[1]) ^ local6[i].net[1])) == 0;
        return in;
    }
    void add_local(const Prefix& p) noexcept;

    const IpAddr& own(Side s) const noexcept { return prefix[static_cast<unsigned>(s)].addr; }
    // The neighbour a packet to dst leaves through on side s: dst itself when on-link, else
    // the gateway; nullopt when off-link without a gateway or of the other IP family.
    std::optional<IpAddr> next_hop(Side s, const IpAddr& dst) const noexcept {
        const unsigned i = static_cast<unsigned>(s);
        if (dst.family != prefix[i].addr.family) return std::nullopt;
        if (prefix[i].contains(dst)) return dst;
        return gateway[i];
    }
};

// --- shared by the stages -------------------------------------------------------------
// Addresses in packets: as an IpAddr (the slow path's currency), and compared with one of ours
// without building one (two words for IPv6, one for IPv4; never a call to memcmp).
inline IpAddr v4_at(const std::uint8_t* p) noexcept {
    IpAddr a;
    a.family = 4;
    std::memcpy(a.bytes.data(), p, 4);
    return a;
}
inline IpAddr v6_at(const std::uint8_t* p) noexcept {
    IpAddr a;
    a.family = 6;
    std::memcpy(a.bytes.data(), p, 16);
    return a;
}
inline bool same_v4(const std::uint8_t* p, const IpAddr& a) noexcept {
    std::uint32_t x, y;
    std::memcpy(&x, p, 4);
    std::memcpy(&y, a.bytes.data(), 4);
    return a.is_v4() && x == y;
}
inline bool same_v6(const std::uint8_t* p, const IpAddr& a) noexcept {
    std::uint64_t x[2], y[2];
    std::memcpy(x, p, 16);
    std::memcpy(y, a.bytes.data(), 16);
    return a.is_v6() && ((x[0] ^ y[0]) | (x[1] ^ y[1])) == 0;
}

// Address equality without a call to memcmp, reading only the family's bytes: an IPv4
// address compares as one word, so an IpAddr just built from 4 packet bytes is read back as
// it was written (a wider load across its pieces would stall store forwarding).
inline bool addr_eq(const IpAddr& a, const IpAddr& b) noexcept {
    if (a.family != b.family) return false;
    if (a.family == 4) {
        std::uint32_t x, y;
        std::memcpy(&x, a.bytes.data(), 4);
        std::memcpy(&y, b.bytes.data(), 4);
        return x == y;
    }
    std::uint64_t x[2], y[2];
    std::memcpy(x, a.bytes.data(), 16);
    std::memcpy(y, b.bytes.data(), 16);
    return ((x[0] ^ y[0]) | (x[1] ^ y[1])) == 0;
}

// The drop reason of a wire status (what encap_burst / decap_burst or parse_p3 refused).
inline Drop drop_of(wire::WireStatus s) noexcept {
    using W = wire::WireStatus;
    switch (s) {
        case W::dummy: return Drop::P3_DUMMY;
        case W::too_big: return Drop::TOO_BIG;
        case W::no_room: return Drop::NO_ROOM;
        case W::seq_exhausted: return Drop::NO_TX_SLOT;
        case W::seq_unreserved: return Drop::SEQ_UNRESERVED;
        case W::bad_outer: return Drop::WAN_NOT_P3;
        case W::fragment: return Drop::REASSEMBLY;
        case W::nat_keepalive: return Drop::NAT_KEEPALIVE;
        case W::truncated: return Drop::P3_TRUNCATED;
        case W::flags: return Drop::P3_FLAGS;
        case W::no_key: return Drop::P3_UNKNOWN_ID;
        case W::auth: return Drop::P3_AUTH;
        case W::bad_trailer:
        case W::bad_inner:
        case W::ecn_drop: return Drop::P3_BAD_INNER;
        default: return Drop::CRYPTO;
    }
}

// A session's packet and byte counters summed over a run of packets of one session (a burst
// is mostly one session) and added when the session changes and at the end: one pair of
// stores per run instead of per packet. pkts / bytes: which pair (tx or rx).
class SessionRun {
public:
    SessionRun(Lcore& L, Counter SessionCounters::*pkts, Counter SessionCounters::*bytes) noexcept
        : L_(L), pkts_(pkts), bytes_(bytes) {}
    ~SessionRun() { flush(); }
    SessionRun(const SessionRun&) = delete;
    SessionRun& operator=(const SessionRun&) = delete;
    void add(std::uint32_t sid, std::uint64_t bytes) noexcept {
        if (sid != sid_) {
            flush();
            sid_ = sid;
        }
        ++n_;
        b_ += bytes;
    }

private:
    void flush() noexcept {
        if (n_ == 0) return;
        (L_.sessions[sid_].*pkts_).add(n_);
        (L_.sessions[sid_].*bytes_).add(b_);
        n_ = b_ = 0;
    }
    Lcore& L_;
    Counter SessionCounters::*pkts_;
    Counter SessionCounters::*bytes_;
    std::uint32_t sid_ = 0;
    std::uint64_t n_ = 0, b_ = 0;
};

inline void drop(Lcore& L, rte_mbuf* m, Drop d) noexcept {
    L.stats.drop(d);
    rte_pktmbuf_free(m);
}

// --- classify.cpp --------------------------------------------------------------------
// One received burst through classification and its path (what the loop does per queue);
// also the entry point of the fuzz target, which runs it without worker threads. Returns how
// many packets of the burst went on through a crypto stage (sealed to the WAN, or opened to
// the LAN or the control thread).
unsigned rx_burst(Lcore& L, const Dataplane::Shared& S, Side side, rte_mbuf** pkts, unsigned n) noexcept;
// Folds what the outer reassembler counted since last time into this lcore's counters.
void count_reassembly(Lcore& L) noexcept;

// --- tx.cpp --------------------------------------------------------------------------
// The control->worker ring once (worker 0): returns how many messages it took.
unsigned drain_control(Lcore& L, const Dataplane::Shared& S) noexcept;
// The control->worker ring once, then both TX buffers flushed; returns the messages taken.
unsigned drain_once(Lcore& L, const Dataplane::Shared& S) noexcept;
// The TX buffer of side to the port now; returns how many the port took (the rest is
// dropped, counted TX_FULL).
unsigned tx_flush(Lcore& L, const Dataplane::Shared& S, Side side) noexcept;
// A whole batch of n frames (bytes in all) to the port at once, without copying it into the
// buffer; whatever the buffer holds is sent first, so frames keep their order. Returns how
// many of the batch the port took.
unsigned tx_send(Lcore& L, const Dataplane::Shared& S, Side side, rte_mbuf** pkts, std::uint16_t n,
                 std::uint64_t bytes) noexcept;
// Queue a frame for TX on side: buffered, flushed when full or on the TSC timer (inline: it
// runs once per packet).
inline void tx_enqueue(Lcore& L, const Dataplane::Shared& S, Side side, rte_mbuf* m) noexcept {
    TxBuffer& b = L.tx[static_cast<unsigned>(side)];
    b.pkts[b.n++] = m;
    if (b.n == kTxBufSize) [[unlikely]] tx_flush(L, S, side);
}
// The last next hop resolved within one burst and its MAC: packets of a burst mostly leave
// through the same neighbour (the gateway), so the neighbour table is read once per burst.
// Lives on the stack of one burst's processing only (a MAC the control thread changes is
// picked up by the next burst).
struct NextHopCache {
    IpAddr nh;
    rte_ether_addr mac;
    bool valid = false;
};
// Fill the Ethernet header of a frame whose IP packet starts at offset 14 and send it out of
// side towards dst (next hop lookup; unresolved -> held by the control thread).
void send_l3(Lcore& L, const Dataplane::Shared& S, Side side, rte_mbuf* m, const IpAddr& dst,
             std::uint16_t ethertype, NextHopCache* cache = nullptr) noexcept;
// Hand a packet to the control thread (kind etc. already in meta(m)): onto the ring of its
// class; setup, ARP/ND and held frames only within the worker's rate (else dropped, counted).
void to_control(Lcore& L, const Dataplane::Shared& S, rte_mbuf* m) noexcept;

// --- outbound.cpp --------------------------------------------------------------------
// Outbound, one packet at a time as classification admits it (so each is staged while its
// lines are still in cache), sealed and sent in batches: m is an Ethernet frame holding a
// validated inner IP packet at offset 14 (TTL already decremented), sid its session (up).
// outbound_one stages it under the sending lcore's lane slot (looked up once per run of one
// session, with its tunnel MTU); outbound_flush encapsulates and seals the batch, adds the
// outer Ethernet header and hands the batch to the WAN port as one TX burst, and returns how
// many it sealed and passed on. The stage lives for one burst (its slot pointers are valid
// until the lcore's next quiescent report); passed sums what flushes of a full stage sent on
// before the last one.
struct OutStage {
    rte_mbuf* m[kMaxBurst];
    wire::TxRef ref[kMaxBurst];
    std::uint32_t sid[kMaxBurst];
    std::uint32_t inner_len[kMaxBurst];
    unsigned n = 0;
    std::uint32_t run_sid = 0;   // the session of the run (0 is never one)
    wire::TxRef run_ref{};       // its slot; view nullptr: none under this lane
    std::uint32_t run_mtu = 0;   // its tunnel MTU (0 without a slot)
    unsigned passed = 0;         // sealed and passed on by flushes of a full stage
    std::uint32_t turn = 0;      // which of the worker's lanes a session with more lanes than
                                 // sending workers uses in this stage (Lcore::lane_turn)
    // Shared runs: an ESP SA's one counter is every sending worker's, and so is the counter of
    // a P3 lane several workers send on (fewer lanes than senders), so a run's packets take
    // their sequences from a stage-local counter that outbound_flush fills, before sealing,
    // with one atomic reservation per run (TxSlot::reserve). The refs of the run point at it.
    // Runs on a lane with one writer never use these.
    struct EspRun {
        wire::TxSlot* slot;
        std::uint64_t seq;       // the last sequence before the run's (the seal adds 1 per packet)
        std::uint32_t n;         // the run's packets in the stage
        const wire::TxKey* key;  // P3: the key the run's refs were taken under
    };
    EspRun esp[kMaxBurst];
    unsigned n_esp = 0;
    int run_esp = -1;            // the current run's entry in esp, -1: a P3 run (or none)

    void push(Lcore& L, const Dataplane::Shared& S, rte_mbuf* mb, std::uint32_t s, std::uint32_t ip_len) noexcept;
};
unsigned outbound_flush(Lcore& L, const Dataplane::Shared& S, OutStage& o) noexcept;
// Everything but the common case: a new session, no slot, a packet over the tunnel MTU.
void outbound_slow(Lcore& L, const Dataplane::Shared& S, OutStage& o, rte_mbuf* m, std::uint32_t sid) noexcept;
inline void OutStage::push(Lcore& L, const Dataplane::Shared& S, rte_mbuf* mb, std::uint32_t s,
                           std::uint32_t ip_len) noexcept {
    if (n == kMaxBurst) [[unlikely]] passed += outbound_flush(L, S, *this);
    m[n] = mb;
    ref[n] = run_ref;
    sid[n] = s;
    inner_len[n] = ip_len;
    ++n;
}
inline void outbound_one(Lcore& L, const Dataplane::Shared& S, OutStage& o, rte_mbuf* m, std::uint32_t sid) noexcept {
    const std::uint32_t ip_len = m->pkt_len - wire::kEthHeaderLen;
    if (sid != o.run_sid || ip_len > o.run_mtu) [[unlikely]] {
        outbound_slow(L, S, o, m, sid);
        return;
    }
    o.push(L, S, m, sid, ip_len);
}
// A whole burst of such frames (the control thread's inner packets), flushed at the end;
// returns how many were sealed and passed on.
unsigned outbound_crypto(Lcore& L, const Dataplane::Shared& S, rte_mbuf** pkts, const std::uint32_t* sids,
                         unsigned n) noexcept;
// --- inbound.cpp ---------------------------------------------------------------------
// Inbound, one packet at a time as classification finds it (a frame whose outer IP header is at
// 14 and P3 header at off, after outer IP [+ UDP]; src = RxSlot::src_tag of how it was
// carried, link padding trimmed): inbound_one parses the P3 header, finds
// the slot by P3 ID and its key state (once per run of one ID), checks that the packet comes
// from the slot's peer and the replay window, and picks the key by sequence (RxKeys::pick:
// below the current key's switch point -> dropped), so a foreign, replayed, unknown or
// outdated packet costs no AES; inbound_flush decrypts the staged batch, retries under the
// pending next key the few that failed under the current one while the switch point is
// unknown, updates the windows, then: inner destination = our WAN address -> control ring;
// else, inner source in the peer's subnets and destination in ours (RFC 4301 §5.2) -> the
// LAN, and returns how many it passed on. The stage lives for one burst.
struct InStage {
    rte_mbuf* m[kMaxBurst];
    std::uint16_t off[kMaxBurst];
    wire::RxRef ref[kMaxBurst];
    wire::RxSlot* slot[kMaxBurst];
    std::uint64_t seq[kMaxBurst];
    unsigned n = 0;
    std::uint32_t run_id = 0;            // the P3 ID last looked up (0 is never one: slot index 0
    wire::RxSlot* run_slot = nullptr;    // is never used) and its slot (nullptr: unknown)
    const wire::RxKeys* run_keys = nullptr;   // and its key state
    unsigned run_hand = 0;               // its lane's owner + 1 when another worker owns it
                                         // (run_slot then nullptr: the run is handed on)
    std::uint32_t esp_id = 0;            // the same for ESP: the SPI last looked up (0 is
    wire::RxSlot* esp_slot = nullptr;    // never one), its slot (nullptr: unknown or not ESP)
    const wire::GcmKey* esp_key = nullptr;    // and its key (an ESP SA has one)
    unsigned passed = 0;                 // passed on by flushes of a full stage
    // Packets opened under the current key with a pending next key to retry under (rare: only
    // while a switch point is neither announced nor learned).
    struct Alt {
        unsigned i;                      // index in the stage
        const wire::RxKeys* keys;        // the state it was picked from (next, learned)
    };
    Alt alt[kMaxBurst];
    unsigned n_alt = 0;
    // Packets of UDP-encapsulated slots from another source than the slot's peer, opened to
    // learn whether the peer moved (rare: a NAT rebinding, or a spoofed copy): bit i of moved
    // marks stage index i, mv[] keeps where each came from (the outer header is gone after the
    // open). inbound_moved stages them; inbound_flush decides.
    struct Moved {
        unsigned i;                      // index in the stage
        std::uint16_t port_be;           // UDP source port, network order
        IpAddr addr;                     // outer source address
    };
    std::uint64_t moved = 0;
    Moved mv[kMovedPerBurst];
    unsigned n_mv = 0;
};
static_assert(kMaxBurst <= 64, "InStage::moved has a bit per stage index");
static_assert((wire::kMaxLanes & (wire::kMaxLanes - 1)) == 0, "lane_owner is indexed by a mask");
// A P3 packet (header at off, carried as src says) of a lane worker `to` owns, for its handoff
// ring: kept in the burst's buffer for that worker, enqueued at the end of the burst.
inline void handoff_one(Lcore& L, unsigned to, rte_mbuf* m, unsigned off, std::uint32_t src) noexcept {
    meta(m) = PktMeta{MsgKind::handoff, Side::wan, static_cast<std::uint16_t>(off), src};
    HandoffBuffer& b = L.hand[to];
    b.pkts[b.n++] = m;   // at most one burst's packets, flushed when it ends
    L.handoff_dirty |= std::uint64_t{1} << to;
}
// The buffers handoff_one filled, each onto its worker's ring as one burst (classify.cpp);
// what does not fit is freed and counted (handoff_full).
void handoff_flush(Lcore& L, const Dataplane::Shared& S) noexcept;
// A burst from this worker's handoff ring through the inbound stage (it owns their lanes);
// returns how many it took (classify.cpp).
unsigned handoff_in(Lcore& L, const Dataplane::Shared& S, rte_mbuf** pkts, unsigned burst) noexcept;
unsigned inbound_flush(Lcore& L, const Dataplane::Shared& S, InStage& in) noexcept;
// A packet of slot s (P3: the run's, keys its key state; ESP: its SA) from another source than its peer: dropped
// (p3_wrong_peer) unless the slot is UDP-encapsulated, the packet came in UDP, its sequence is
// beyond the lane's window top and the worker's budget for such packets allows; then staged
// like any other, marked, to be accepted only if its tag verifies (inbound.cpp).
void inbound_moved(Lcore& L, const Dataplane::Shared& S, InStage& in, rte_mbuf* m, unsigned off, std::uint32_t src,
                   std::uint64_t seq, wire::RxSlot* s, const wire::RxKeys* keys) noexcept;
inline void inbound_one(Lcore& L, const Dataplane::Shared& S, InStage& in, rte_mbuf* m, unsigned off,
                        std::uint32_t src) noexcept {
    wire::P3Header h;
    const wire::WireStatus ps = wire::parse_p3(m, off, h, src != 0);   // the UDP bit on UDP only
    if (ps != wire::WireStatus::ok) [[unlikely]] {
        drop(L, m, drop_of(ps));
        return;
    }
    if (h.id != in.run_id) {
        in.run_id = h.id;
        wire::RxSlot* rs = S.slots->rx(h.id);
        if (rs != nullptr && rs->kind() != wire::WireKind::p3) [[unlikely]] rs = nullptr;   // an ESP SA's SPI
        in.run_hand = 0;
        // The lane's window has one writer, its owner: a run of a lane another worker owns is
        // handed to it (one compare per run; never true with one WAN-polling worker, nor when
        // lanes are not spread: then no worker has a handoff ring).
        if (rs != nullptr && L.handoff != nullptr && S.lane_owner[rs->lane() & (wire::kMaxLanes - 1)] != L.index)
            [[unlikely]] {
            in.run_hand = S.lane_owner[rs->lane() & (wire::kMaxLanes - 1)] + 1u;
            rs = nullptr;
        }
        in.run_slot = rs;
        in.run_keys = rs ? rs->keys() : nullptr;
    }
    wire::RxSlot* s = in.run_slot;
    if (s == nullptr) [[unlikely]] {
        if (in.run_hand != 0) handoff_one(L, in.run_hand - 1, m, off, src);
        else drop(L, m, Drop::P3_UNKNOWN_ID);
        return;
    }
    // Only the session's peer (address, and UDP port when encapsulated) may use its P3 IDs: a
    // copy re-sent from elsewhere is dropped before it reads the lane's window, which belongs
    // to the queue the peer's packets reach; but a UDP-encapsulated peer may have moved (a NAT
    // rebinding), which only an authenticated packet can tell.
    if (!s->from_peer(pkt::data(m, wire::kEthHeaderLen), src)) [[unlikely]] {
        inbound_moved(L, S, in, m, off, src, h.seq, s, in.run_keys);
        return;
    }
    if (s->replay().check(h.seq) != wire::ReplayResult::ok) [[unlikely]] {
        L.sessions[s->session()].rx_replay.add();
        drop(L, m, Drop::P3_REPLAY);
        return;
    }
    const wire::GcmKey* alt = nullptr;
    const wire::GcmKey* key = in.run_keys->pick(h.seq, alt);
    if (key == nullptr) [[unlikely]] {   // sent under a key that was promoted away and wiped
        L.sessions[s->session()].rx_old_key.add();
        drop(L, m, Drop::P3_OLD_KEY);
        return;
    }
    if (in.n == kMaxBurst) [[unlikely]] in.passed += inbound_flush(L, S, in);
    const unsigned k = in.n++;
    in.m[k] = m;
    in.off[k] = static_cast<std::uint16_t>(off);
    in.ref[k] = wire::RxRef(key, s->open());
    in.slot[k] = s;
    in.seq[k] = h.seq;
    if (alt != nullptr) [[unlikely]] in.alt[in.n_alt++] = InStage::Alt{k, in.run_keys};
}
// ESP (RFC 4303), as inbound_one for P3: the ESP header at off, the slot by SPI (an ESP
// slot only: a P3 ID is no SPI), the peer check, the full sequence (ESN: inferred from the
// window, RFC 4303 Appendix A) and the replay window before any AES; staged in the same
// batch, with the slot's ESP open variant and the sequence its AAD needs.
inline void inbound_esp_one(Lcore& L, const Dataplane::Shared& S, InStage& in, rte_mbuf* m, unsigned off,
                            std::uint32_t src) noexcept {
    wire::EspHeader h;
    if (wire::parse_esp(m, off, h) != wire::WireStatus::ok) [[unlikely]] {
        drop(L, m, Drop::ESP_TRUNCATED);
        return;
    }
    if (h.spi != in.esp_id) {
        in.esp_id = h.spi;
        wire::RxSlot* rs = S.slots->rx(h.spi);
        if (rs != nullptr && rs->kind() == wire::WireKind::p3) rs = nullptr;
        in.esp_slot = rs;
        in.esp_key = rs ? rs->keys()->cur : nullptr;
    }
    wire::RxSlot* s = in.esp_slot;
    if (s == nullptr) [[unlikely]] {
        drop(L, m, Drop::ESP_UNKNOWN_SPI);
        return;
    }
    const wire::ReplayWindow& w = s->replay();
    const std::uint64_t seq = s->kind() == wire::WireKind::esp_esn
                                  ? wire::esn_seq(w.top(), std::max<std::uint32_t>(w.size(), 1), h.seq_low)
                                  : h.seq_low;
    // As for P3: an ESP-in-UDP peer behind a NAT that rebinds is followed on an authenticated
    // packet beyond the window top; anything else from a stranger is dropped.
    if (!s->from_peer(pkt::data(m, wire::kEthHeaderLen), src)) [[unlikely]] {
        inbound_moved(L, S, in, m, off, src, seq, s, s->keys());
        return;
    }
    if (w.check(seq) != wire::ReplayResult::ok) [[unlikely]] {
        L.sessions[s->session()].rx_replay.add();
        drop(L, m, Drop::P3_REPLAY);
        return;
    }
    if (in.n == kMaxBurst) [[unlikely]] in.passed += inbound_flush(L, S, in);
    const unsigned k = in.n++;
    in.m[k] = m;
    in.off[k] = static_cast<std::uint16_t>(off);
    in.ref[k] = wire::RxRef(in.esp_key, s->open());
    in.slot[k] = s;
    in.seq[k] = seq;
}
// --- worker.cpp ----------------------------------------------------------------------
// Per-lcore crypto engine life (created on the lcore's socket before the worker starts).
bool wire_engine_create(Lcore& L, const Dataplane::Shared& S);
void wire_engine_free(Lcore& L);

}  // namespace p3::dp
