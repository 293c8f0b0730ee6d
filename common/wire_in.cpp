// P3 and ESP decapsulation on mbufs (see wire.hpp for the layout and the caller's duties,
// docs/wire-format.md for the byte-level contract): parse_outer, then decap_burst.
//
// Burst shape: one pass opens each packet and finishes the one before (trailer, inner checks,
// RFC 6040, strip): by then the plaintext stores of that one have drained. Variants: size
// hiding is a template parameter of the open code, and an RX slot keeps the instance it
// takes (RxRef::open); decap_burst calls it per run of packets that share it. Chained mbufs
// take the scatter-gather GCM calls.
#include <rte_byteorder.h>
#include <rte_ip.h>

#include <cstring>

#include "common/sizehide.hpp"
#include "common/wire.hpp"
#include "common/wire_mbuf.hpp"

namespace p3::wire {

using namespace impl;

WireStatus parse_outer(rte_mbuf* m, unsigned l2_len, std::uint16_t nat_port, OuterInfo& o) noexcept {
    o = OuterInfo{};
    if (m->data_len < l2_len + 1u || m->pkt_len < l2_len + 1u) return WireStatus::bad_outer;
    const std::uint8_t* ip = rte_pktmbuf_mtod_offset(m, const std::uint8_t*, l2_len);
    const std::uint32_t avail = m->pkt_len - l2_len;
    const unsigned in_first = m->data_len - l2_len;
    unsigned hl;
    std::uint32_t total;
    std::uint8_t proto;
    if ((ip[0] >> 4) == 4) {
        if (in_first < kIpv4HeaderLen) return WireStatus::truncated;
        hl = (ip[0] & 0x0f) * 4u;
        if (hl < kIpv4HeaderLen || hl > in_first) return WireStatus::bad_outer;
        if (csum::finish(csum::partial(ip, hl)) != 0) return WireStatus::bad_outer;
        total = be::get16(ip + 2);
        if (total < hl) return WireStatus::bad_outer;
        if (total > avail) return WireStatus::truncated;
        if ((be::get16(ip + 6) & 0x3fff) != 0) return WireStatus::fragment;
        proto = ip[9];
        o.ecn = ip[1] & 3;
        o.src.family = 4;
        std::memcpy(o.src.bytes.data(), ip + 12, 4);
    } else if ((ip[0] >> 4) == 6) {
        if (in_first < kIpv6HeaderLen) return WireStatus::truncated;
        hl = kIpv6HeaderLen;
        total = kIpv6HeaderLen + be::get16(ip + 4);
        if (total > avail) return WireStatus::truncated;
        proto = ip[6];
        if (proto == 44) return WireStatus::fragment;
        o.v6 = true;
        o.ecn = (ip[1] >> 4) & 3;
        o.src.family = 6;
        std::memcpy(o.src.bytes.data(), ip + 8, 16);
    } else {
        return WireStatus::bad_outer;
    }
    if (total < avail) chain_trim(m, avail - total);   // link padding
    unsigned off = l2_len + hl;
    if (proto == kIpProtoUdp) {
        if (in_first < hl + kUdpHeaderLen) return WireStatus::truncated;
        const std::uint8_t* u = ip + hl;
        const std::uint32_t ulen = be::get16(u + 4);
        if (ulen < kUdpHeaderLen || ulen != total - hl) return WireStatus::truncated;
        if (be::get16(u + 2) != nat_port) return WireStatus::bad_outer;
        o.udp = true;
        o.udp_src = be::get16(u);
        off += kUdpHeaderLen;
        if (ulen == kUdpHeaderLen + 1 && in_first > hl + kUdpHeaderLen && u[kUdpHeaderLen] == 0xff)
            return WireStatus::nat_keepalive;
    } else if (proto != kIpProtoEsp) {
        return WireStatus::bad_outer;
    }
    o.p3_off = static_cast<std::uint16_t>(off);
    return WireStatus::ok;
}

namespace {

struct InPrep {
    std::uint8_t* hdr;
    std::uint32_t plain;   // T
    bool contiguous;
};

// The inner header against the trailer: version, header length, total length = L. ihl is
// set when it is ok.
inline bool inner_ok(const std::uint8_t* in, std::uint8_t nh, std::uint32_t L, unsigned& ihl) noexcept {
    if (nh == kNextIpv4) {
        ihl = (in[0] & 0x0f) * 4u;
        return L >= kIpv4HeaderLen && (in[0] >> 4) == 4 && ihl >= kIpv4HeaderLen && be::get16(in + 2) == L && ihl <= L;
    }
    ihl = kIpv6HeaderLen;
    return L >= kIpv6HeaderLen && (in[0] >> 4) == 6 && be::get16(in + 4) + kIpv6HeaderLen == L;
}

// RFC 6040 normal mode at the decapsulator: the outer ECN field combined into the inner one
// (checked header at in). false: drop (CE outside, Not-ECT inside). An outer Not-ECT leaves
// the inner field as it is.
inline bool ecn_in(const std::uint8_t* outer, std::uint8_t* in, std::uint8_t nh, unsigned ihl) noexcept {
    const std::uint8_t outer_ecn = (outer[0] >> 4) == 6 ? ((outer[1] >> 4) & 3) : (outer[1] & 3);
    if (outer_ecn == kNotEct) return true;
    const std::uint8_t inner_ecn = nh == kNextIpv4 ? (in[1] & 3) : ((in[1] >> 4) & 3);
    const int ecn = ecn_decap(inner_ecn, outer_ecn);
    if (ecn < 0) return false;
    if (ecn != inner_ecn) {
        if (nh == kNextIpv4) {
            in[1] = static_cast<std::uint8_t>((in[1] & 0xfc) | ecn);
            be::put16(in + 10, csum::ipv4_header(in, ihl));
        } else {
            in[1] = static_cast<std::uint8_t>((in[1] & 0xcf) | (ecn << 4));
        }
    }
    return true;
}

// After the tag verified, one segment and no size hiding (the common case): the same checks
// as finish_in below on plain pointers, and the strip as three field updates instead of
// rte_pktmbuf_read / rte_pktmbuf_adj / chain_trim. Worth ~10 cycles a packet at 64 B
// (perf/wire/bench_wire).
inline DecapResult finish_in_flat(rte_mbuf* m, unsigned p3_off, const InPrep& p, unsigned l2_len, L2 l2) noexcept {
    const std::uint32_t T = p.plain;
    std::uint8_t* in = p.hdr + kP3HeaderLen;
    const std::uint8_t pad = in[T - 2], nh = in[T - 1];
    if (nh != kNextIpv4 && nh != kNextIpv6 && nh != kNextDummy) return {WireStatus::bad_trailer, 0};
    if (pad + kTrailerFixed > T) return {WireStatus::bad_trailer, nh};
    if (nh == kNextDummy) return {WireStatus::dummy, nh};
    const std::uint32_t L = T - 2 - pad;
    const std::uint32_t pt_off = p3_off + static_cast<std::uint32_t>(kP3HeaderLen);
    unsigned ihl;
    if (!inner_ok(in, nh, L, ihl)) return {WireStatus::bad_inner, nh};
    std::uint8_t* front = rte_pktmbuf_mtod(m, std::uint8_t*);
    if (p3_off > l2_len && !ecn_in(front + l2_len, in, nh, ihl)) return {WireStatus::ecn_drop, nh};
    const std::uint32_t cut = pt_off - l2_len;
    if (l2 == L2::keep) move_l2(front + cut, front, l2_len);
    const std::uint32_t drop = cut + pad + static_cast<std::uint32_t>(kTrailerFixed + kIcvLen);
    m->data_off = static_cast<std::uint16_t>(m->data_off + cut);
    m->data_len = static_cast<std::uint16_t>(m->data_len - drop);
    m->pkt_len -= drop;
    return {WireStatus::ok, nh};
}

// After the tag verified: trailer, size hiding (Hide: the slot's variant), inner checks,
// RFC 6040, strip.
template <bool Hide>
DecapResult finish_in(GcmEngine& e, rte_mbuf* m, unsigned p3_off, const RxRef& rx, const InPrep& p,
                      unsigned l2_len) noexcept {
    const std::uint32_t T = p.plain;
    const std::uint32_t pt_off = p3_off + static_cast<std::uint32_t>(kP3HeaderLen);
    std::uint8_t trb[2];
    const std::uint8_t* tr = static_cast<const std::uint8_t*>(rte_pktmbuf_read(m, pt_off + T - 2, 2, trb));
    const std::uint8_t pad = tr[0], nh = tr[1];
    if (nh != kNextIpv4 && nh != kNextIpv6 && nh != kNextDummy) return {WireStatus::bad_trailer, 0};
    if (pad + kTrailerFixed > T) return {WireStatus::bad_trailer, nh};
    if (Hide && T > 2) {
        IoSeg segs[kMaxSegs];
        const std::uint32_t N = T - 2;
        const unsigned ns = segs_of(m, pt_off, N, segs, kMaxSegsU);
        std::uint8_t* s = e.scratch();
        gather(segs, ns, s);
        // Undo the left rotation by r: a left rotation by N - r.
        const std::uint32_t r = sizehide_rotation(rx.key->hide_key(), be::get64(p.hdr + kFlagsLen + kIdLen), N);
        scatter_rotl(segs, ns, s, N, r == 0 ? 0 : N - r);
    }
    if (nh == kNextDummy) return {WireStatus::dummy, nh};
    const std::uint32_t L = T - 2 - pad;
    // The inner IP header must sit in the first segment (we rewrite ECN in place).
    if (m->data_len < pt_off + (nh == kNextIpv4 ? kIpv4HeaderLen : kIpv6HeaderLen)) return {WireStatus::bad_inner, nh};
    std::uint8_t* in = p.hdr + kP3HeaderLen;
    unsigned ihl;
    if (!inner_ok(in, nh, L, ihl)) return {WireStatus::bad_inner, nh};
    // All of it, options included: the ECN rewrite sums ihl bytes from `in`. A sender's first
    // fragment always carries it; a chain cut inside it is refused, never summed past the
    // segment's end (that would forward a checksum of whatever the buffer held there).
    if (m->data_len < pt_off + ihl) return {WireStatus::bad_inner, nh};
    if (p3_off > l2_len && !ecn_in(rte_pktmbuf_mtod_offset(m, const std::uint8_t*, l2_len), in, nh, ihl))
        return {WireStatus::ecn_drop, nh};
    // Strip: the l2 bytes move up to just before the inner packet, then the front and the tail go.
    const std::uint32_t cut = pt_off - l2_len;
    std::uint8_t* front = rte_pktmbuf_mtod(m, std::uint8_t*);
    move_l2(front + cut, front, l2_len);
    rte_pktmbuf_adj(m, static_cast<std::uint16_t>(cut));
    chain_trim(m, pad + static_cast<std::uint32_t>(kTrailerFixed + kIcvLen));
    return {WireStatus::ok, nh};
}

// The header in front of the ciphertext, as far as opening needs it: P3 (length, and no flag
// bit outside kKnownFlags; the caller's parse_p3 checked the UDP bit against the transport)
// or ESP (length only; the caller read SPI and sequence).
template <WireKind Kind>
[[gnu::always_inline]] inline WireStatus open_header(const rte_mbuf* m, unsigned off) noexcept {
    if constexpr (Kind == WireKind::p3) {
        P3Header h;
        const WireStatus s = read_p3(m, off, h);
        if (s == WireStatus::ok && (h.flags & ~kKnownFlags) != 0) return WireStatus::flags;
        return s;
    } else {
        EspHeader h;
        return parse_esp(m, off, h);
    }
}

// One variant: a run of packets whose slots share it (size hiding off: Hide false; Kind: P3,
// or ESP without / with ESN, whose AAD is built here per packet from the header and seq).
template <bool Hide, WireKind Kind = WireKind::p3>
unsigned open_run(GcmEngine& e, rte_mbuf* const* pkts, const std::uint16_t* p3_off, const RxRef* rx, unsigned n,
                  unsigned l2_len, DecapResult* res, L2 l2, const std::uint64_t* seq) noexcept {
    constexpr bool esp = Kind != WireKind::p3;
    // ESP's AAD (RFC 4106 §5): SPI || Seq low (the header's first 8 bytes as they are), or with
    // ESN SPI || Seq high || Seq low, Seq high inferred by the caller.
    [[maybe_unused]] alignas(16) std::uint8_t esn_aad[kEspAadEsnLen];
    [[maybe_unused]] const std::uint8_t* aad = nullptr;
    constexpr std::size_t aad_len = Kind == WireKind::esp_esn ? kEspAadEsnLen : esp ? kEspAadLen : kAadLen;
    unsigned good = 0;
    // A packet is finished (trailer, inner checks, strip) one open later, in the same pass:
    // by then the cipher's stores of its plaintext have left the store buffer, so reading the
    // trailer back does not wait on them, and the burst is walked once, not twice.
    int pend = -1;
    InPrep pend_prep{};
    auto finish = [&](unsigned j, const InPrep& p) {
        if constexpr (Hide) res[j] = finish_in<true>(e, pkts[j], p3_off[j], rx[j], p, l2_len);
        else
            res[j] = p.contiguous ? finish_in_flat(pkts[j], p3_off[j], p, l2_len, l2)
                                  : finish_in<false>(e, pkts[j], p3_off[j], rx[j], p, l2_len);
        good += res[j].status == WireStatus::ok;
    };
    // No prefetch: the caller found the P3 header (and the slot) by reading this packet.
    for (unsigned i = 0; i < n; ++i) {
        rte_mbuf* m = pkts[i];
        const unsigned off = p3_off[i];
        WireStatus s = off < l2_len ? WireStatus::truncated : open_header<Kind>(m, off);
        if (s == WireStatus::ok && rx[i].key == nullptr) s = WireStatus::no_key;
        if (s == WireStatus::ok && m->nb_segs > kMaxSegsU) s = WireStatus::chain_too_long;
        if (s != WireStatus::ok) {
            res[i] = {s, 0};
            continue;
        }
        std::uint8_t* hdr = rte_pktmbuf_mtod_offset(m, std::uint8_t*, off);
        const std::uint32_t T = m->pkt_len - off - static_cast<std::uint32_t>(kP3HeaderLen + kIcvLen);
        if (T > kMaxPlainLen) {   // no sender makes it; it would not fit the size-hiding scratch
            res[i] = {WireStatus::too_big, 0};
            continue;
        }
        const InPrep prep{hdr, T, m->nb_segs == 1};
        if constexpr (Kind == WireKind::esp) aad = hdr;
        if constexpr (Kind == WireKind::esp_esn) {
            const std::uint32_t sh = rte_cpu_to_be_32(seq ? static_cast<std::uint32_t>(seq[i] >> 32) : 0u);
            std::memcpy(esn_aad, hdr, 4);
            std::memcpy(esn_aad + 4, &sh, 4);
            std::memcpy(esn_aad + 8, hdr + 4, 4);
            aad = esn_aad;
        }
        bool opened;
        if (prep.contiguous) {
            if constexpr (esp) opened = e.open_aad(*rx[i].key, hdr, aad, aad_len, hdr + kP3HeaderLen, T, hdr + kP3HeaderLen + T);
            else opened = e.open(*rx[i].key, hdr, hdr + kP3HeaderLen, T, hdr + kP3HeaderLen + T);
        } else {
            IoSeg segs[kMaxSegs];
            const unsigned ns = segs_of(m, off + static_cast<std::uint32_t>(kP3HeaderLen), T, segs, kMaxSegsU);
            std::uint8_t tagb[kIcvLen];
            const std::uint8_t* tag = static_cast<const std::uint8_t*>(
                rte_pktmbuf_read(m, off + static_cast<std::uint32_t>(kP3HeaderLen) + T, kIcvLen, tagb));
            if (ns == 0 || tag == nullptr) {
                res[i] = {WireStatus::chain_too_long, 0};
                continue;
            }
            opened = e.open_sgl(*rx[i].key, hdr, {segs, ns}, tag, esp ? aad : nullptr, aad_len);
        }
        if (!opened) {
            res[i] = {WireStatus::auth, 0};
            continue;
        }
        if (pend >= 0) finish(static_cast<unsigned>(pend), pend_prep);
        pend = static_cast<int>(i);
        pend_prep = prep;
    }
    if (pend >= 0) finish(static_cast<unsigned>(pend), pend_prep);
    return good;
}

}  // namespace

namespace detail {
unsigned open_run_plain(GcmEngine& e, rte_mbuf* const* pkts, const std::uint16_t* p3_off, const RxRef* rx,
                        unsigned n, unsigned l2_len, DecapResult* res, L2 l2, const std::uint64_t* seq) noexcept {
    return open_run<false>(e, pkts, p3_off, rx, n, l2_len, res, l2, seq);
}
unsigned open_run_hidden(GcmEngine& e, rte_mbuf* const* pkts, const std::uint16_t* p3_off, const RxRef* rx,
                         unsigned n, unsigned l2_len, DecapResult* res, L2 l2, const std::uint64_t* seq) noexcept {
    return open_run<true>(e, pkts, p3_off, rx, n, l2_len, res, l2, seq);
}
unsigned open_run_esp(GcmEngine& e, rte_mbuf* const* pkts, const std::uint16_t* p3_off, const RxRef* rx, unsigned n,
                      unsigned l2_len, DecapResult* res, L2 l2, const std::uint64_t* seq) noexcept {
    return open_run<false, WireKind::esp>(e, pkts, p3_off, rx, n, l2_len, res, l2, seq);
}
unsigned open_run_esp_esn(GcmEngine& e, rte_mbuf* const* pkts, const std::uint16_t* p3_off, const RxRef* rx,
                          unsigned n, unsigned l2_len, DecapResult* res, L2 l2, const std::uint64_t* seq) noexcept {
    return open_run<false, WireKind::esp_esn>(e, pkts, p3_off, rx, n, l2_len, res, l2, seq);
}
}  // namespace detail

bool restore_failed(GcmEngine& e, rte_mbuf* m, unsigned p3_off, const GcmKey& failed) noexcept {
    if (m->pkt_len < p3_off + kP3HeaderLen + kIcvLen || m->data_len < p3_off + kP3HeaderLen) return false;
    std::uint8_t* hdr = rte_pktmbuf_mtod_offset(m, std::uint8_t*, p3_off);
    const std::uint32_t T = m->pkt_len - p3_off - static_cast<std::uint32_t>(kP3HeaderLen + kIcvLen);
    alignas(16) std::uint8_t scratch_tag[kIcvLen];
    // GCM's encryption and decryption run the same counter stream from the same nonce: sealing
    // the garbage the failed open left gives back the bytes that were opened.
    if (m->nb_segs == 1) {
        e.seal(failed, hdr, hdr + kP3HeaderLen, T, scratch_tag);
        return true;
    }
    if (m->nb_segs > kMaxSegsU) return false;
    IoSeg segs[kMaxSegs];
    const unsigned ns = segs_of(m, p3_off + static_cast<std::uint32_t>(kP3HeaderLen), T, segs, kMaxSegsU);
    if (ns == 0) return false;
    e.seal_sgl(failed, hdr, {segs, ns}, scratch_tag);
    return true;
}

unsigned decap_burst(GcmEngine& e, rte_mbuf* const* pkts, const std::uint16_t* p3_off, const RxRef* rx,
                     unsigned n, unsigned l2_len, DecapResult* res, L2 l2, const std::uint64_t* seq) noexcept {
    if (n > kMaxBurst) {
        for (unsigned i = kMaxBurst; i < n; ++i) res[i] = {WireStatus::chain_too_long, 0};
        n = kMaxBurst;
    }
    // Runs of one variant (a burst is mostly one slot): one call each.
    unsigned good = 0;
    for (unsigned i = 0; i < n;) {
        const OpenRunFn f = rx[i].open;
        unsigned j = i + 1;
        while (j < n && rx[j].open == f) ++j;
        good += f(e, pkts + i, p3_off + i, rx + i, j - i, l2_len, res + i, l2, seq ? seq + i : nullptr);
        i = j;
    }
    return good;
}

}  // namespace p3::wire
