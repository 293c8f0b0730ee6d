// The one port between the dataplane and the control plane: rings of mbufs both ways with a
// small metadata field in each mbuf (an rte_mbuf dynfield), the neighbour hand-off, the key
// slot writer, session state and peer address, and what the control thread publishes for
// telemetry. The control plane reaches the dataplane through nothing else.
//
//   workers --(trusted, MP/SC)--> control thread: decrypted control packets (control_in)
//   workers --(neigh, MP/SC)----> control thread: ARP/ND, frames waiting for a next hop (hold)
//   workers --(setup, MP/SC)----> control thread: setup UDP
//   control --(to_workers, SP/SC)--> worker 0: frames to send as they are, IP packets to
//                                    route out of the WAN, inner packets to encrypt for a session
//
// The control thread (the control plane's ControlThread) owns the loop: it drains the rings (trusted
// first), hands ARP/ND/hold frames back to the dataplane's resolver (to_resolver), calls the
// housekeeping here once per pass, and publishes its counters and the sessions' state
// (publish) for telemetry, which reads only what was published. Each worker polices what it
// puts on the neigh and setup rings (token buckets on the TSC, limits.hpp); a full ring drops,
// counted per kind. Nothing here is on the packet path except meta() and the ring operations.
//
// Every method of ControlPort is for the control thread only, except the published views
// (counters(), sessions_view()), which any thread reads (the sessions view as an RCU reader).
#pragma once

#include <atomic>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include <rte_mbuf.h>
#include <rte_mbuf_dyn.h>

#include "common/config.hpp"
#include "common/ids.hpp"
#include "common/net.hpp"
#include "dataplane/capture.hpp"
#include "dataplane/ports.hpp"
#include "dataplane/sessions.hpp"

namespace p3::dp {

class Dataplane;

enum class MsgKind : std::uint8_t {
    none = 0,
    // worker -> control
    setup_udp = 1,   // Ethernet frame from the WAN: UDP to local.port (setup exchange)
    control_in = 2,  // decrypted inner IP packet (no Ethernet header) whose destination is our
                     // WAN address; session and lane say where it came from
    arp = 3,         // ARP frame (side says which port)
    nd = 4,          // ICMPv6 neighbour solicitation/advertisement frame
    hold = 5,        // complete frame whose next hop is not resolved yet (side = out port)
    peer_moved = 6,  // a PeerMoved: an authenticated packet of session/lane came from a new
                     // outer source (UDP-encapsulated sessions only); the control thread moves it
    // control -> worker
    tx_frame = 16,   // send on `side` as it is (Ethernet frame complete)
    tx_ip = 17,      // IP packet without Ethernet header: resolve its next hop on `side`, send
    tx_inner = 18,   // inner IP packet for `session`: encrypt like data, send on the WAN
    // worker -> worker (the handoff rings)
    handoff = 32,    // WAN frame of a P3 lane another worker owns: lane = offset of its P3
                     // header, session = RxSlot::src_tag of how it was carried
};

// The worker -> control rings, in the order the control thread drains them.
enum class CtlClass : std::uint8_t { trusted = 0, neigh = 1, setup = 2 };
inline constexpr unsigned kCtlClasses = 3;

struct PktMeta {
    MsgKind kind;
    Side side;
    std::uint16_t lane;      // control_in: the lane it arrived on
    std::uint32_t session;   // control_in, tx_inner
};
static_assert(sizeof(PktMeta) == 8);

// The body of a peer_moved message (its mbuf's data): where the packet came from.
struct PeerMoved {
    IpAddr addr;               // the new outer source address
    std::uint16_t port = 0;    // its UDP source port (host order)
    std::uint32_t p3_id = 0;   // the RX slot it authenticated under
    std::uint64_t seq = 0;     // its sequence (beyond the lane's window top)
};

// Offset of the PktMeta dynfield; registered once per process (register_meta()).
extern int g_meta_offset;
bool register_meta();
inline PktMeta& meta(rte_mbuf* m) noexcept { return *RTE_MBUF_DYNFIELD(m, g_meta_offset, PktMeta*); }

// Key material of one direction of a session: lane 0's key (16 B AES-128 / 32 B AES-256) and
// salt (4 B); lane n > 0 derives its own (common/lanes.hpp). Read during the call only.
struct LaneKeys {
    std::span<const std::uint8_t> key;
    std::span<const std::uint8_t> salt;
    std::uint32_t lanes = 1;          // lanes the sender of this direction uses
    bool size_hiding = false;
    bool anti_replay = true;          // inbound only; false only for static keys that ask for it
    // Outbound only: the session's first lane this side sends on (a cluster member's lanes,
    // docs/cluster.md §Lanes of a member). Slot lane n sends as session lane lane_offset + n:
    // P3 ID peer_base + lane_offset + n, key material of that lane.
    std::uint32_t lane_offset = 0;
};

// One direction of one standard ESP child SA (RFC 4303, RFC 4106 AES-GCM-16). Read during
// the call only.
struct EspSa {
    std::uint32_t spi = 0;                 // inbound: our SPI (an ID from reserve_rx_ids(1)); outbound: the peer's
    std::span<const std::uint8_t> key;     // 16 or 32 B
    std::span<const std::uint8_t> salt;    // 4 B
    bool esn = false;                      // 64-bit extended sequence numbers
};

// What the control thread handled, by ring; its own counts, published once per pass.
struct ControlCounters {
    std::uint64_t trusted = 0, neigh = 0, setup = 0;
    std::uint64_t setup_waited = 0;   // passes that ended with setup datagrams still waiting
    std::uint64_t packets = 0;        // every message handled (the three rings)
};

// One session as the control thread last published it.
struct SessionView {
    SessionId sid;
    RemoteId remote;
    SessionState state = SessionState::unused;
    IpAddr peer;
    std::uint16_t tx_lanes = 0;
    bool static_keys = false;
    bool esp = false;                    // a standard ESP session (Session::esp)
    std::vector<std::string> groups;
    std::vector<Prefix> subnets;
    SessionTotals totals;   // the workers' counters when this view was published (admin status)
    std::uint64_t peer_moves = 0;   // the peer's address or port changed under the session
};
struct SessionsView {
    std::vector<SessionView> sessions;   // by session id, in use only
    std::uint32_t routes4 = 0, routes6 = 0;
    const SessionView* by_remote(RemoteId r) const noexcept {
        for (const auto& s : sessions)
            if (s.remote == r) return &s;
        return nullptr;
    }
};

class ControlPort {
public:
    explicit ControlPort(Dataplane& dp) noexcept : dp_(dp) {}
    ~ControlPort();
    ControlPort(const ControlPort&) = delete;
    ControlPort& operator=(const ControlPort&) = delete;

    // ---- rings --------------------------------------------------------------------------
    // Up to out.size() messages of one class, oldest first; the caller owns them.
    unsigned dequeue(CtlClass c, std::span<rte_mbuf*> out) noexcept;
    unsigned backlog(CtlClass c) const noexcept;
    // To worker 0; meta(m) says how. False: ring full, m is still the caller's.
    bool send(rte_mbuf* m) noexcept;
    rte_mbuf* alloc() noexcept;   // from the dataplane's pool; nullptr when empty
    // ARP, ND and held frames (meta kind arp/nd/hold) go to the dataplane's resolver, which
    // owns them from then on, and a worker's peer_moved moves its session (move_peer): true.
    // Anything else stays the caller's: false.
    bool to_resolver(rte_mbuf* m, std::uint64_t now_ms);

    // ---- once per pass ------------------------------------------------------------------
    // Key slots and published views whose grace period is over: wiped and freed.
    void reclaim();
    // Neighbour retries, the static keys' next sequence block on disk, the pressure log.
    void housekeeping(std::uint64_t now_ms);
    // The control thread's counters (every pass) and, when a session changed through this
    // port or `sessions_every_ms` passed since the last one, a new sessions view.
    void publish(const ControlCounters& c, std::uint64_t now_ms);
    static constexpr std::uint64_t kSessionsEveryMs = 1000;

    // ---- key slots (the contract) --------------------------------------------------------
    // A session's lanes are fixed when it is set up (or from static keys): inbound P3 IDs
    // base + n, outbound peer IDs, sequences from 1 that never restart, replay windows that run
    // on. A rekey changes only keys: the sender switches at a sequence, the receiver holds the
    // current and the next key of each lane and picks by sequence (docs/key-slots.md).
    //   reserve_rx_ids(lanes)
    //       A block of `lanes` fresh P3 IDs to receive on (base + n = lane n). Announce the
    //       base to the peer (it writes it on what it sends us). nullopt: table full (logged).
    //   reserve_rx_ids_at(base, lanes)
    //       The block base..base+lanes-1 itself (a cluster member installs the IDs the member
    //       holding the control session reserved: docs/cluster.md §Replicated keys). false
    //       (logged) when one of them is out of range, reserved or published.
    //   release_rx_ids(base, from, to)
    //       IDs base+from .. base+to-1 of a reserved block that no key was installed under go
    //       back to the table (an ID that is free stays free).
    //   install_rx(sid, base, keys)
    //       Publishes the inbound lanes base..base+keys.lanes-1 (reserved before) for the
    //       session with their first key, current from sequence 1: packets under it decrypt
    //       from now on. On failure (logged) the IDs are released.
    //   install_tx(sid, peer_base, keys)
    //       Replaces every outbound lane of the session at once (lane n writes peer_base + n,
    //       starts at sequence 1) and sets the session up. Lanes beyond the workers that send
    //       are not made; a sending worker without a lane drops (no_tx_slot).
    //   install_next_rx(sid, keys)
    //       The next key of every inbound lane of the session (lanes as installed); replaces a
    //       pending next key (the replaced one is wiped after the grace period). Until its
    //       switch point is known, a packet that fails under the current key is tried once
    //       more under it. false: refused (logged), nothing changed.
    //   rx_switch_at(sid, first_seq)
    //       The peer announced: its lane n sends under the next key from first_seq[n] (exact).
    //   rx_next_seen(sid)
    //       A packet authenticated under a pending next key on some lane (learned, or
    //       announced and the window's top reached it).
    //   promote_rx(sid)
    //       Every lane with a next key: it becomes the current key from its switch point
    //       (announced, else learned, else 1); packets below it are dropped without AES
    //       (p3_old_key); the old key is wiped after the grace period.
    //   drop_next_rx(sid)
    //       Pending next keys go (wiped after the grace period); the current keys stay.
    //   switch_tx(sid, keys, first_seq_out)
    //       Every outbound lane to the new keys, sequences carried on; first_seq_out[n] = the
    //       first sequence lane n sends under them (size >= lanes; entries past the lanes 0).
    //       Blocks for one RCU grace period. false: refused (logged), nothing changed.
    //   tx_packets(sid)
    //       Packets sent under the current outbound keys, busiest lane (last - first + 1).
    //   clear_keys(sid)
    //       Session down: every slot of it retired; its traffic is answered (RST/unreachable).
    //   tx_last_seq(sid, lane)
    //       The last sequence sent on a lane (statistics).
    // ---- standard ESP (docs/dataplane.md §Standard ESP) --------------------------------------
    // An ESP session is a session like any other (routes, set_peer, state, clear_keys,
    // tx_packets, session_of keep their meaning) whose keys are SAs instead of lanes.
    //   esp_install_rx(sid, sa)
    //       The inbound SA of session sid under sa.spi, an ID reserved with reserve_rx_ids(1):
    //       packets under it decrypt from now on (64-bit replay window of the configured size,
    //       ESN inferred when sa.esn), from the peer set_peer() gave only. Several may be live
    //       for one session (make-before-break). false (logged): the session is not installed,
    //       the SPI not reserved, a bad key; the SPI is then released.
    //   esp_install_tx(sid, sa)
    //       The session's outbound SA: replaces the previous one (P3 lanes or ESP SA) as a whole:
    //       sequence from 1 under sa.spi (the peer's), the old slot retired and wiped after the
    //       grace period. Marks the session ESP and up. One SA whatever the number of sending
    //       workers (they reserve sequences per burst from its one counter). Outer header as
    //       set_peer() says (UDP when udp_dst != 0). Without ESN it sends at most 2^32 - 1
    //       packets (then no_tx_slot drops: install a new SA first). false (logged): refused,
    //       the previous SA stays.
    //   esp_remove_rx(sid, spi)
    //       One inbound SA retired (DELETE, or its replacement settled): from now on its
    //       packets are dropped (esp_unknown_spi) and its key is wiped after the grace period;
    //       the SPI is free again. Unknown spi (or another session's): nothing.
    bool esp_install_rx(SessionId sid, const EspSa& sa);
    bool esp_install_tx(SessionId sid, const EspSa& sa);
    void esp_remove_rx(SessionId sid, std::uint32_t spi);

    std::optional<P3Id> reserve_rx_ids(std::uint32_t lanes);
    bool reserve_rx_ids_at(P3Id base, std::uint32_t lanes);
    void release_rx_ids(P3Id base, std::uint32_t from, std::uint32_t to);
    bool install_rx(SessionId sid, P3Id base, const LaneKeys& k);
    bool install_tx(SessionId sid, P3Id peer_base, const LaneKeys& k);
    // The same, its lanes counting sequences up to last_seq as sent (a cluster member's lanes
    // from a replicated record start above anything an earlier life of the member sent).
    bool install_tx_from(SessionId sid, P3Id peer_base, const LaneKeys& k, std::uint64_t last_seq);
    bool install_next_rx(SessionId sid, const LaneKeys& k);
    void rx_switch_at(SessionId sid, std::span<const std::uint64_t> first_seq);
    bool rx_next_seen(SessionId sid) const noexcept;
    void promote_rx(SessionId sid);
    void drop_next_rx(SessionId sid);
    bool switch_tx(SessionId sid, const LaneKeys& k, std::span<std::uint64_t> first_seq_out);
    std::uint64_t tx_packets(SessionId sid) const noexcept;
    void clear_keys(SessionId sid);
    std::uint64_t tx_last_seq(SessionId sid, std::uint16_t lane) const noexcept;
    unsigned tx_lanes() const noexcept;   // lanes this appliance sends on

    // ---- sessions ----------------------------------------------------------------------
    SessionId session_of(RemoteId r) const noexcept;   // none: SessionId{}
    SessionState state(SessionId sid) const noexcept;
    //   set_peer(sid, peer, udp_src, udp_dst)
    //       Where the session's packets go: the peer's WAN address (as seen, behind a NAT) and,
    //       with udp_dst != 0, UDP encapsulation (udp_src = our port, normally 4500; udp_dst =
    //       the peer's). Applies to the keys installed after the call (a TX slot's outer header
    //       is prepared when it is built; an RX slot accepts packets only from the peer's
    //       address and, encapsulated, its UDP port): call it, then install_rx/install_tx.
    bool set_peer(SessionId sid, const IpAddr& peer, std::uint16_t udp_src, std::uint16_t udp_dst);
    //   set_cluster_role(primary)
    //       A cluster member becomes primary or backup (p3ctl cluster promote|demote,
    //       docs/cluster.md). Failover (director = "none"): a primary answers ARP/ND for the
    //       WAN address and announces it (gratuitous ARP / unsolicited NA, three times a second
    //       apart, from the next housekeeping on), a backup drops everything on the WAN
    //       (cluster_backup). Behind a director the WAN does not change. false (logged): this
    //       appliance is not a cluster member.
    bool set_cluster_role(bool primary);
    bool cluster_primary() const noexcept;
    const config::Config& config() const noexcept;

    // ---- remotes (run-time configuration changes) ------------------------------------------
    // Each runs while workers forward traffic and touches only the session it names; each marks
    // the sessions view to be published again at the next publish().
    //   add_remote(r)
    //       A session (down; up at once with static keys) and its routes. SessionId{} on
    //       failure (logged, nothing left): the remote is installed already, a subnet is routed
    //       to another session, keys refused, table full. The id is r.id when free.
    //   remove_remote(r)
    //       Routes first (its traffic becomes no_route), then keys and the session; returns
    //       after one RCU grace period, the id free again. false: no session for r.
    //   set_subnets(sid, subnets)
    //       Routes to exactly these: new ones added before old ones go; one in both never
    //       leaves the table. false (logged): not installed, a new prefix routed to another
    //       session, the table full; then nothing changed.
    //   set_groups(sid, groups)
    //       What the sessions view shows; the dataplane does nothing else with them.
    //   drops()
    //       Every drop reason that counted (name as telemetry gives it, drops.def), summed over
    //       the workers and the control thread's own drops; nonzero only, in drops.def order.
    SessionId add_remote(const config::Remote& r);
    bool remove_remote(RemoteId r);
    bool set_subnets(SessionId sid, std::span<const Prefix> subnets);
    void set_groups(SessionId sid, std::vector<std::string> groups);
    std::vector<std::pair<std::string, std::uint64_t>> drops() const;

    // ---- packet capture (p3ctl capture; capture.hpp) --------------------------------------
    Capture& capture() noexcept;
    std::uint16_t port_id(Side s) const noexcept;
    const std::string& port_name(Side s) const noexcept;

    // ---- published (any thread) ----------------------------------------------------------
    ControlCounters counters() const noexcept;   // a consistent copy (seqlock)
    // The sessions as last published; read it as an RCU reader of the dataplane (telemetry),
    // or on the control thread. nullptr before the first publish.
    const SessionsView* sessions_view() const noexcept { return view_.load(std::memory_order_acquire); }

private:
    void publish_sessions();

    Dataplane& dp_;
    // Counters under a sequence lock: odd while the control thread writes them.
    static constexpr unsigned kWords = sizeof(ControlCounters) / sizeof(std::uint64_t);
    std::atomic<std::uint64_t> seq_{0};
    std::atomic<std::uint64_t> words_[kWords] = {};
    // Sessions view under RCU: the current one, and the ones retired until readers passed.
    std::atomic<const SessionsView*> view_{nullptr};
    struct Retired {
        std::uint64_t token;
        const SessionsView* view;
    };
    std::vector<Retired> retired_;
    bool sessions_changed_ = true;
    std::uint64_t sessions_at_ms_ = 0;
};

}  // namespace p3::dp
