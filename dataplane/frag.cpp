// Inner IPv4 fragmentation and outer reassembly on top of rte_ip_frag (see frag.hpp).
#include "dataplane/frag.hpp"

#include <algorithm>
#include <cstring>

#include <rte_byteorder.h>
#include <rte_cycles.h>
#include <rte_ether.h>
#include <rte_ip.h>

namespace p3::dp {
namespace {

inline std::uint16_t get16(const std::uint8_t* p) noexcept {
    return static_cast<std::uint16_t>((p[0] << 8) | p[1]);
}
inline void put16(std::uint8_t* p, std::uint16_t v) noexcept {
    p[0] = static_cast<std::uint8_t>(v >> 8);
    p[1] = static_cast<std::uint8_t>(v);
}

constexpr std::uint16_t kDf = 0x4000, kMf = 0x2000, kOffsetMask = 0x1fff;

// IPv4 header checksum over the header in place (bytes, any alignment).
void set_v4_checksum(std::uint8_t* h, std::size_t ihl) noexcept {
    put16(h + 10, 0);
    std::uint64_t sum = 0;
    for (std::size_t i = 0; i < ihl; i += 2) sum += get16(h + i);
    while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
    put16(h + 10, static_cast<std::uint16_t>(~sum & 0xffff));
}

// Copies a multi-segment packet into one fresh buffer; nullptr if none fits.
rte_mbuf* copy_linear(rte_mbuf* m, rte_mempool* pool) noexcept {
    if (pool == nullptr) return nullptr;
    rte_mbuf* c = rte_pktmbuf_alloc(pool);
    if (c == nullptr) return nullptr;
    if (rte_pktmbuf_tailroom(c) < m->pkt_len) {
        rte_pktmbuf_free(c);
        return nullptr;
    }
    auto* dst = reinterpret_cast<std::uint8_t*>(rte_pktmbuf_append(c, static_cast<std::uint16_t>(m->pkt_len)));
    if (dst == nullptr) {
        rte_pktmbuf_free(c);
        return nullptr;
    }
    for (const rte_mbuf* s = m; s != nullptr; s = s->next) {
        std::memcpy(dst, rte_pktmbuf_mtod(s, const std::uint8_t*), s->data_len);
        dst += s->data_len;
    }
    c->port = m->port;
    c->l2_len = m->l2_len;
    c->l3_len = m->l3_len;
    c->packet_type = m->packet_type;
    c->hash = m->hash;
    return c;
}

}  // namespace

MtuAction mtu_action(std::span<const std::uint8_t> l3, std::uint32_t ip_len, std::uint32_t mtu) noexcept {
    if (ip_len <= mtu) return MtuAction::fits;
    if (l3.size() >= 8 && (l3[0] >> 4) == 4 && (get16(&l3[6]) & kDf) == 0) return MtuAction::fragment;
    return MtuAction::too_big;
}

FragOutcome fragment_ipv4(rte_mbuf* m, std::uint16_t mtu, std::span<rte_mbuf*> out, rte_mempool* direct,
                          rte_mempool* indirect) noexcept {
    if (m == nullptr || out.empty() || direct == nullptr) return {0, FragError::malformed};
    if (m->data_len < 20) return {0, FragError::malformed};
    const auto* h = rte_pktmbuf_mtod(m, const std::uint8_t*);
    const std::size_t ihl = std::size_t(h[0] & 0x0f) * 4;
    const std::size_t total = get16(h + 2);
    if ((h[0] >> 4) != 4 || ihl < 20 || ihl > m->data_len || total < ihl || total > m->pkt_len)
        return {0, FragError::malformed};
    if (get16(h + 6) & kDf) return {0, FragError::dont_fragment};
    // The payload of every fragment but the last is a multiple of 8 bytes (RFC 791).
    if (mtu < ihl + 8 || mtu < RTE_ETHER_MIN_MTU) return {0, FragError::malformed};
    const std::size_t per_frag = (mtu - ihl) & ~std::size_t(7);
    const std::size_t needed = (total - ihl + per_frag - 1) / per_frag;
    // Options not copied into later fragments only make those shorter, never longer.
    if (needed > out.size()) return {0, FragError::too_many};

    // Link padding after the datagram must not become payload.
    if (m->pkt_len > total) rte_pktmbuf_trim(m, static_cast<std::uint16_t>(m->pkt_len - total));

    const bool linear = m->nb_segs == 1;
    const auto n_out = static_cast<std::uint16_t>(std::min<std::size_t>(out.size(), UINT16_MAX));
    int32_t n = linear ? rte_ipv4_fragment_copy_nonseg_packet(m, out.data(), n_out, mtu, direct)
                       : (indirect == nullptr ? -EINVAL
                                              : rte_ipv4_fragment_packet(m, out.data(), n_out, mtu, direct, indirect));
    if (n < 0) return {0, n == -ENOMEM ? FragError::no_mbuf : FragError::malformed};

    for (int32_t i = 0; i < n; ++i) {
        rte_mbuf* f = out[i];
        if (f->nb_segs > 1 && rte_pktmbuf_linearize(f) != 0) {
            // Cannot happen with a sane pool (fragments are <= mtu); fail cleanly anyway.
            for (int32_t j = 0; j < n; ++j) rte_pktmbuf_free(out[j]);
            return {0, FragError::no_mbuf};
        }
        auto* fh = rte_pktmbuf_mtod(f, std::uint8_t*);
        const std::size_t fihl = std::size_t(fh[0] & 0x0f) * 4;
        set_v4_checksum(fh, fihl);
        f->l2_len = 0;
        f->l3_len = static_cast<std::uint16_t>(fihl);
        f->port = m->port;
        f->packet_type = RTE_PTYPE_L3_IPV4 | RTE_PTYPE_L4_FRAG;
        f->hash = m->hash;
        f->ol_flags = 0;
    }
    rte_pktmbuf_free(m);
    return {static_cast<std::uint16_t>(n), FragError::none};
}

bool Reassembler::init(std::uint32_t flows, std::uint64_t timeout_ms, int socket, rte_mempool* copy_pool,
                       std::uint64_t tsc_hz) noexcept {
    destroy();
    copy_pool_ = copy_pool;
    const std::uint64_t max_cycles = (tsc_hz + 999) / 1000 * timeout_ms;
    // One bucket per expected flow, 16-way: collisions spill into the other 15 entries.
    tbl_ = rte_ip_frag_table_create(flows, kReassemblyBucketEntries, flows, max_cycles, socket);
    dr_.cnt = 0;
    stats_ = {};
    return tbl_ != nullptr;
}

void Reassembler::destroy() noexcept {
    if (tbl_ != nullptr) {
        rte_ip_frag_free_death_row(&dr_, 0);
        rte_ip_frag_table_destroy(tbl_);
        tbl_ = nullptr;
    }
}

void Reassembler::make_room() noexcept {
    // One call can put a stale flow and a failed one on the death row; never let it overflow.
    constexpr std::uint32_t worst = 2 * (RTE_LIBRTE_IP_FRAG_MAX_FRAG + 1);
    if (dr_.cnt + worst > RTE_IP_FRAG_DEATH_ROW_MBUF_LEN) rte_ip_frag_free_death_row(&dr_, 0);
}

rte_mbuf* Reassembler::process(rte_mbuf* m, std::uint64_t now) noexcept {
    const std::size_t l2 = m->l2_len;
    if (m->data_len < l2 + 1) return m;  // the classifier judges what is not IP
    auto* h = rte_pktmbuf_mtod_offset(m, std::uint8_t*, l2);
    const std::size_t avail = m->data_len - l2;  // the IP header must be in the first segment
    const unsigned version = h[0] >> 4;

    if (version == 4) {
        if (avail < 20) return m;
        const std::uint16_t fo = get16(h + 6);
        if ((fo & (kMf | kOffsetMask)) == 0) return m;
        const std::size_t ihl = std::size_t(h[0] & 0x0f) * 4;
        const std::size_t total = get16(h + 2);
        if (ihl < 20 || ihl > avail || total <= ihl || l2 + total > m->pkt_len ||
            // every fragment but the last carries a multiple of 8 bytes
            ((fo & kMf) && ((total - ihl) & 7) != 0)) {
            ++stats_.malformed;
            rte_pktmbuf_free(m);
            return nullptr;
        }
        if (m->pkt_len > l2 + total) rte_pktmbuf_trim(m, static_cast<std::uint16_t>(m->pkt_len - l2 - total));
        m->l3_len = static_cast<std::uint16_t>(ihl);
        ++stats_.fragments_in;
        make_room();
        const std::uint32_t before = dr_.cnt;
        rte_mbuf* whole = rte_ipv4_frag_reassemble_packet(tbl_, &dr_, m, now, reinterpret_cast<rte_ipv4_hdr*>(h));
        stats_.dropped += dr_.cnt - before;
        return whole == nullptr ? nullptr : finish(whole);
    }
    if (version == 6) {
        if (avail < 40 + 8) return m;
        // rte_ip_frag handles a fragment header right after the fixed header (what routers
        // produce for our outer packets, which carry no extension headers).
        if (h[6] != IPPROTO_FRAGMENT) return m;
        const std::size_t total = 40 + std::size_t(get16(h + 4));
        const std::uint16_t fo = get16(h + 40 + 2);
        if (total <= 48 || l2 + total > m->pkt_len || ((fo & 1) && ((total - 48) & 7) != 0)) {
            ++stats_.malformed;
            rte_pktmbuf_free(m);
            return nullptr;
        }
        if (m->pkt_len > l2 + total) rte_pktmbuf_trim(m, static_cast<std::uint16_t>(m->pkt_len - l2 - total));
        m->l3_len = 48;
        ++stats_.fragments_in;
        make_room();
        const std::uint32_t before = dr_.cnt;
        auto* ip = reinterpret_cast<rte_ipv6_hdr*>(h);
        auto* fh = reinterpret_cast<rte_ipv6_fragment_ext*>(h + 40);
        rte_mbuf* whole = rte_ipv6_frag_reassemble_packet(tbl_, &dr_, m, now, ip, fh);
        stats_.dropped += dr_.cnt - before;
        return whole == nullptr ? nullptr : finish(whole);
    }
    return m;
}

rte_mbuf* Reassembler::finish(rte_mbuf* whole) noexcept {
    if (whole->nb_segs > 1 && rte_pktmbuf_linearize(whole) != 0) {
        rte_mbuf* c = copy_linear(whole, copy_pool_);
        rte_pktmbuf_free(whole);
        if (c == nullptr) {
            ++stats_.too_big;
            return nullptr;
        }
        whole = c;
    }
    auto* h = rte_pktmbuf_mtod_offset(whole, std::uint8_t*, whole->l2_len);
    if ((h[0] >> 4) == 4) {
        // rte_ip_frag leaves the checksum for TX offload; the packet goes on to software.
        const std::size_t ihl = std::size_t(h[0] & 0x0f) * 4;
        set_v4_checksum(h, ihl);
        whole->l3_len = static_cast<std::uint16_t>(ihl);
        whole->ol_flags &= ~(RTE_MBUF_F_TX_IP_CKSUM | RTE_MBUF_F_TX_IPV4);
    } else {
        whole->l3_len = 40;
    }
    ++stats_.reassembled;
    return whole;
}

void Reassembler::end_burst(std::uint64_t now) noexcept {
    if (tbl_ == nullptr) return;
    for (;;) {
        const std::uint32_t before = dr_.cnt;
        rte_ip_frag_table_del_expired_entries(tbl_, &dr_, now);
        const std::uint32_t added = dr_.cnt - before;
        stats_.expired += added;
        rte_ip_frag_free_death_row(&dr_, 0);
        if (added == 0) break;
    }
}

}  // namespace p3::dp
