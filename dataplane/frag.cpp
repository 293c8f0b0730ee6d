// Inner IPv4 fragmentation and outer reassembly on top of rte_ip_frag (see frag.hpp).
#include "dataplane/frag.hpp"

#include <algorithm>
#include <cstring>

#include <rte_byteorder.h>
#include <rte_hash_crc.h>
#include <rte_cycles.h>
#include <rte_ether.h>
#include <rte_ip.h>

#include "common/bytes.hpp"
#include "common/checksum.hpp"

namespace p3::dp {
namespace {

using be::get16;

constexpr std::uint16_t kDf = 0x4000, kMf = 0x2000, kOffsetMask = 0x1fff;

// IPv4 header checksum over the header in place (bytes, any alignment).
void set_v4_checksum(std::uint8_t* h, std::size_t ihl) noexcept {
    be::put16(h + 10, csum::ipv4_header(h, static_cast<unsigned>(ihl)));
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

// The per-source count bucket of a packet whose IP header starts at h.
unsigned source_bucket(const std::uint8_t* h) noexcept {
    const bool v6 = (h[0] >> 4) == 6;
    const std::uint32_t c = rte_hash_crc(h + (v6 ? 8 : 12), v6 ? 16 : 4, 0x9e3779b9u);
    return c & (kReassemblySourceBuckets - 1);
}
static_assert((kReassemblySourceBuckets & (kReassemblySourceBuckets - 1)) == 0);

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

bool Reassembler::init(std::uint32_t max_held, std::uint64_t timeout_ms, int socket, rte_mempool* copy_pool,
                       std::uint64_t tsc_hz) noexcept {
    destroy();
    copy_pool_ = copy_pool;
    max_held_ = std::max<std::uint32_t>(max_held, 2 * RTE_LIBRTE_IP_FRAG_MAX_FRAG);
    per_source_ = std::min<std::uint32_t>(
        UINT16_MAX, std::max<std::uint32_t>(max_held_ / kReassemblySourceDiv, 2 * RTE_LIBRTE_IP_FRAG_MAX_FRAG));
    max_cycles_ = (tsc_hz + 999) / 1000 * timeout_ms;
    min_age_cycles_ = std::max<std::uint64_t>(1, (tsc_hz + 999) / 1000 * kReassemblyMinAgeMs);
    // Every flow holds a fragment: as many flows as fragments. One bucket per flow, 16-way:
    // collisions spill into the other 15 entries.
    tbl_ = rte_ip_frag_table_create(max_held_, kReassemblyBucketEntries, max_held_, max_cycles_, socket);
    dr_.cnt = 0;
    stats_ = {};
    std::fill(std::begin(per_src_), std::end(per_src_), 0);
    return tbl_ != nullptr;
}

void Reassembler::destroy() noexcept {
    if (tbl_ != nullptr) {
        flush_death_row();
        rte_ip_frag_table_destroy(tbl_);   // frees what the flows hold
        tbl_ = nullptr;
    }
    stats_.held = 0;
    std::fill(std::begin(per_src_), std::end(per_src_), 0);
}

void Reassembler::release(const rte_mbuf* m) noexcept {
    // A death-row entry is one fragment, or several chained when reassembly failed late; a
    // whole packet is all its fragments chained. The first segment keeps the IP header.
    const std::uint32_t n = m->nb_segs;
    stats_.held -= std::min(stats_.held, n);
    std::uint16_t& c = per_src_[source_bucket(rte_pktmbuf_mtod_offset(m, const std::uint8_t*, m->l2_len))];
    c = static_cast<std::uint16_t>(c - std::min<std::uint32_t>(c, n));
}

std::uint32_t Reassembler::flush_death_row() noexcept {
    const std::uint32_t before = stats_.held;
    for (std::uint32_t i = 0; i < dr_.cnt; ++i) release(dr_.row[i]);
    rte_ip_frag_free_death_row(&dr_, 0);
    return before - stats_.held;
}

void Reassembler::make_room() noexcept {
    // One call can put a stale flow and a failed one on the death row; never let it overflow.
    constexpr std::uint32_t worst = 2 * (RTE_LIBRTE_IP_FRAG_MAX_FRAG + 1);
    if (dr_.cnt + worst > RTE_IP_FRAG_DEATH_ROW_MBUF_LEN) flush_death_row();
}

void Reassembler::evict_oldest(std::uint64_t now) noexcept {
    // rte_ip_frag drops flows older than its timeout, oldest first; asking it as if the clock
    // were (timeout - age) ahead drops those older than age. Halve age until there is room.
    flush_death_row();
    for (std::uint64_t age = max_cycles_ / 2; age >= min_age_cycles_ && stats_.held >= max_held_; age /= 2) {
        for (;;) {
            const std::uint32_t before = dr_.cnt;
            rte_ip_frag_table_del_expired_entries(tbl_, &dr_, now + max_cycles_ - age);
            if (dr_.cnt == before) break;
            stats_.evicted += flush_death_row();
        }
    }
}

bool Reassembler::admit(rte_mbuf* m, unsigned b, std::uint64_t now) noexcept {
    if (per_src_[b] >= per_source_) {
        ++stats_.over_source;
        rte_pktmbuf_free(m);
        return false;
    }
    if (stats_.held >= max_held_) evict_oldest(now);
    if (stats_.held >= max_held_) {
        ++stats_.over_share;
        rte_pktmbuf_free(m);
        return false;
    }
    ++per_src_[b];
    if (++stats_.held > stats_.held_peak) stats_.held_peak = stats_.held;
    return true;
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
        if (!admit(m, source_bucket(h), now)) return nullptr;
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
        if (!admit(m, source_bucket(h), now)) return nullptr;
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
    release(whole);
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
    flush_death_row();
    for (;;) {
        const std::uint32_t before = dr_.cnt;
        rte_ip_frag_table_del_expired_entries(tbl_, &dr_, now);
        const std::uint32_t added = dr_.cnt - before;
        stats_.expired += added;
        flush_death_row();
        if (added == 0) break;
    }
}

}  // namespace p3::dp
