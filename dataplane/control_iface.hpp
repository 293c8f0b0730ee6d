// The boundary between the workers and the control thread: rings of mbufs and a small
// metadata field carried in each mbuf (an rte_mbuf dynfield).
//
//   workers --(trusted, MP/SC)--> control thread: decrypted control packets (control_in)
//   workers --(neigh, MP/SC)----> control thread: ARP/ND, frames waiting for a next hop (hold)
//   workers --(setup, MP/SC)----> control thread: setup UDP
//   control --(to_workers, SP/SC)--> worker 0: frames to send as they are, IP packets to
//                                    route out of the WAN, inner packets to encrypt for a session
//
// Trusted traffic first: the control thread empties the trusted ring before anything else and
// again between any two setup datagrams, so authenticated heartbeats and rekeys never wait
// behind what anyone on the Internet can send. Each worker polices what it puts on the neigh
// and setup rings (token buckets on the TSC, limits.hpp); a full ring drops, counted per kind.
//
// The control plane proper (control/) implements ControlPlane and is called on the control
// thread; the dataplane's own housekeeping there (neighbour resolution, hold queues) runs
// first and hands it everything that is not ARP/ND/hold. Nothing here is on the packet path
// except meta() and the ring operations.
#pragma once

#include <cstdint>
#include <span>

#include <rte_mbuf.h>
#include <rte_mbuf_dyn.h>

#include "dataplane/ports.hpp"

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
    // control -> worker
    tx_frame = 16,   // send on `side` as it is (Ethernet frame complete)
    tx_ip = 17,      // IP packet without Ethernet header: resolve its next hop on `side`, send
    tx_inner = 18,   // inner IP packet for `session`: encrypt like data, send on the WAN
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

// Offset of the PktMeta dynfield; registered once per process (register_meta()).
extern int g_meta_offset;
bool register_meta();
inline PktMeta& meta(rte_mbuf* m) noexcept { return *RTE_MBUF_DYNFIELD(m, g_meta_offset, PktMeta*); }

// ---- session keys -------------------------------------------------------------------------
// The control plane installs and retires a session's keys through these Dataplane methods,
// from the control thread only (crypto_path.cpp; slots are common/slots.hpp, read by the
// workers under RCU, wiped when freed):
//
//   std::optional<std::uint32_t> reserve_rx_ids(lanes)
//       A block of `lanes` fresh P3 IDs to receive on (base + n = lane n). Announce the base
//       to the peer (it writes it on what it sends us). nullopt: table full (logged).
//   bool install_rx(sid, base_id, keys)
//       Publishes inbound slots base_id..base_id+keys.lanes-1 (reserved before, or static
//       IDs) for session sid: packets under them decrypt from now on. Older inbound slots of
//       the session stay until retire_rx(): both keys are accepted during a rekey. On
//       failure (logged) the block's IDs are released.
//   bool install_tx(sid, peer_base_id, keys)
//       Replaces every outbound lane of sid at once (lane n writes peer_base_id + n, starts
//       at sequence 1) and sets the session up. Lanes beyond the workers that send are not
//       made; a sending worker without a lane drops (no_tx_slot).
//   void retire_rx(sid, base_id)
//       The inbound block installed at base_id no longer decrypts; its IDs are never found
//       again (generation), its keys are wiped after the workers' grace period.
//   bool set_peer(sid, peer, udp_src, udp_dst)
//       Where the session's packets go: the peer's WAN address (as seen, behind a NAT) and,
//       with udp_dst != 0, UDP encapsulation (NAT traversal: udp_src = our port, normally
//       4500; udp_dst = the peer's). Applies to the keys installed after the call (a TX slot's
//       outer header is prepared when it is built; an RX slot accepts packets only from the
//       peer's address and, encapsulated, its UDP port): call it, then install_rx/install_tx.
//   void clear_keys(sid)
//       Session down: every slot of it retired; its traffic is answered (RST/unreachable).
//   std::uint64_t tx_last_seq(sid, lane)
//       The last sequence sent on a lane (packet-count rekey, statistics).
// Rekey (DESIGN.md §Session life): reserve_rx_ids + install_rx for the new keys, tell the
// peer; on its status install_tx; after traffic under the new inbound keys (the session's
// rx counters move, or a timeout) retire_rx of the old block.
//
// Key material of one direction of a session: lane 0's key (16 B AES-128 / 32 B AES-256) and
// salt (4 B); lane n > 0 derives its own (common/lanes.hpp). Read during the call only.
struct LaneKeys {
    std::span<const std::uint8_t> key;
    std::span<const std::uint8_t> salt;
    std::uint32_t lanes = 1;          // lanes the sender of this direction uses
    bool size_hiding = false;
    bool anti_replay = true;          // inbound only; false only for static keys that ask for it
};

// What the control plane may do from its thread. Everything goes through the Dataplane
// (sessions, routes, sending), which is safe to call from the control thread only.
class ControlPlane {
public:
    virtual ~ControlPlane() = default;
    virtual void start(Dataplane&) {}
    // Owns m (free it or send it back). meta(m) says what it is.
    virtual void on_packet(Dataplane& dp, rte_mbuf* m) = 0;
    // Called at least every few milliseconds; now_ms from a monotonic clock.
    virtual void poll(Dataplane&, std::uint64_t /*now_ms*/) {}
    virtual void stop(Dataplane&) {}
};

// Until the real control plane plugs in: count what arrives, free it.
class ControlStub final : public ControlPlane {
public:
    void on_packet(Dataplane&, rte_mbuf* m) override {
        auto k = static_cast<unsigned>(meta(m).kind);
        if (k < 32) ++by_kind[k];
        ++total;
        rte_pktmbuf_free(m);
    }
    std::uint64_t total = 0;
    std::uint64_t by_kind[32] = {};
};

}  // namespace p3::dp
