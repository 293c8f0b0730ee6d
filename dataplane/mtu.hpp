// The edge cases of the outbound path that are not encryption: packets too big for the
// tunnel (fragment inner IPv4 without DF before encryption, else ICMP "fragmentation needed"
// / ICMPv6 "packet too big"), and traffic for a session that is down (TCP RST or ICMP
// unreachable back to the sender, seed spec §2.1.7). Replies are rate limited per lcore.
// The builders and the fragmenter are frag.hpp / icmp_errors.hpp; this file decides.
#pragma once

#include <cstdint>

#include <rte_mbuf.h>

#include "dataplane/fastpath.hpp"

namespace p3::dp {

// A LAN packet routed to a session that is not up. Consumes m.
void answer_session_down(Lcore& L, const Dataplane::Shared& S, rte_mbuf* m) noexcept;
// The inner packet (frame, IP at 14) does not fit tunnel_mtu and may not be fragmented.
// Consumes m.
void answer_too_big(Lcore& L, const Dataplane::Shared& S, rte_mbuf* m, std::uint32_t tunnel_mtu) noexcept;

}  // namespace p3::dp
