// The boundary between the workers and the control thread: two rings of mbufs and a small
// metadata field carried in each mbuf (an rte_mbuf dynfield).
//
//   workers --(to_control, MP/SC)--> control thread: setup UDP, decrypted control packets,
//                                    ARP/ND, frames waiting for a next hop (hold)
//   control --(to_workers, SP/SC)--> worker 0: frames to send as they are, IP packets to
//                                    route out of the WAN, inner packets to encrypt for a session
//
// The control plane proper (control/) implements ControlPlane and is called on the control
// thread; the dataplane's own housekeeping there (neighbour resolution, hold queues) runs
// first and hands it everything that is not ARP/ND/hold. Nothing here is on the packet path
// except meta() and the ring operations.
#pragma once

#include <cstdint>

#include <rte_mbuf.h>
#include <rte_mbuf_dyn.h>

#include "dataplane/ports.hpp"

namespace p3::dp {

class Dataplane;

enum class MsgKind : std::uint8_t {
    none = 0,
    // worker -> control
    setup_udp = 1,   // Ethernet frame from the WAN: UDP to local.port (setup exchange)
    control_in = 2,  // decrypted inner IP packet whose destination is our own address
    arp = 3,         // ARP frame (side says which port)
    nd = 4,          // ICMPv6 neighbour solicitation/advertisement frame
    hold = 5,        // complete frame whose next hop is not resolved yet (side = out port)
    // control -> worker
    tx_frame = 16,   // send on `side` as it is (Ethernet frame complete)
    tx_ip = 17,      // IP packet without Ethernet header: resolve its next hop on `side`, send
    tx_inner = 18,   // inner IP packet for `session`: encrypt like data, send on the WAN
};

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
