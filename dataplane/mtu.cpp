#include "dataplane/mtu.hpp"

#include <rte_cycles.h>

#include <cstring>

#include "dataplane/icmp_errors.hpp"
#include "dataplane/pkt.hpp"

namespace p3::dp {

namespace {

LanSource lan_source(const Dataplane::Shared& S) noexcept {
    LanSource src;
    const IpAddr& a = S.own(Side::lan);
    if (a.is_v4()) {
        src.has_v4 = true;
        std::memcpy(src.v4.data(), a.bytes.data(), 4);
    } else if (a.is_v6()) {
        src.has_v6 = true;
        std::memcpy(src.v6.data(), a.bytes.data(), 16);
    }
    return src;
}

Offending offending(rte_mbuf* m) noexcept {
    Offending o;
    const std::uint8_t* e = pkt::data(m);
    std::memcpy(o.dst_mac.addr_bytes, e, 6);
    std::memcpy(o.src_mac.addr_bytes, e + 6, 6);
    o.l3 = {e + wire::kEthHeaderLen, static_cast<std::size_t>(m->data_len - wire::kEthHeaderLen)};
    return o;
}

void send_reply(Lcore& L, const Dataplane::Shared& S, const Reply& r) noexcept {
    if (r.verdict == ReplyVerdict::built) {
        tx_enqueue(L, S, Side::lan, r.m);
    } else if (r.verdict == ReplyVerdict::no_mbuf) {
        L.stats.drop(Drop::MBUF_ALLOC);
    }
}

}  // namespace

void answer_session_down(Lcore& L, const Dataplane::Shared& S, rte_mbuf* m) noexcept {
    L.stats.drop(Drop::SESSION_DOWN);
    if (L.replies.allow(rte_rdtsc())) {
        const Offending o = offending(m);
        // The RST is the LAN peer's reply to itself; note which one went out.
        const bool tcp = (o.l3[0] >> 4) == 4 ? o.l3.size() > 9 && o.l3[9] == wire::kIpProtoTcp
                                             : o.l3.size() > 6 && o.l3[6] == wire::kIpProtoTcp;
        const Reply r = session_down_reply(S.pool, o, lan_source(S));
        if (r.verdict == ReplyVerdict::built) {
            if (tcp) L.stats.resets.add();
            else L.stats.icmp_errors.add();
        }
        send_reply(L, S, r);
    }
    rte_pktmbuf_free(m);
}

void answer_too_big(Lcore& L, const Dataplane::Shared& S, rte_mbuf* m, std::uint32_t tunnel_mtu) noexcept {
    L.stats.drop(Drop::TOO_BIG);
    if (L.replies.allow(rte_rdtsc())) {
        const Reply r = too_big_reply(S.pool, offending(m), lan_source(S), tunnel_mtu);
        if (r.verdict == ReplyVerdict::built) L.stats.icmp_errors.add();
        send_reply(L, S, r);
    }
    rte_pktmbuf_free(m);
}

}  // namespace p3::dp
