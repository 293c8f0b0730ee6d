// P3 encapsulation on mbufs (see wire.hpp for the layout and the caller's duties,
// docs/wire-format.md for the byte-level contract; decapsulation is wire_in.cpp).
//
// Variants: a TX view's outer shape (IPv4/IPv6, native/UDP), size hiding and wire kind (P3,
// ESP, ESP with ESN) are template parameters of the seal code, and TxView::init picks the
// instance once; encap_burst calls it per run of packets that share it. P3's instances are
// the code they were before ESP existed: the kind is a constant in them.
//
// Burst shape: one pass over the burst does each packet's header work and its GCM call
// together, while the headers just written (or parsed) are in cache and the next packets'
// lines are on their way; decapsulation finishes each packet one open later (its trailer is
// read back once the plaintext stores have drained). Chained mbufs take the scatter-gather
// GCM calls.
#include "common/wire.hpp"

#include <rte_byteorder.h>
#include <rte_ip.h>
#include <rte_prefetch.h>

#include <cstring>

#include <immintrin.h>

#include "common/bytes.hpp"
#include "common/checksum.hpp"
#include "common/headers.hpp"
#include "common/sizehide.hpp"
#include "common/wire_mbuf.hpp"

namespace p3::wire {

using namespace impl;

namespace {

// ---- outbound -------------------------------------------------------------------------------

struct Prepared {
    rte_mbuf* m;
    std::uint8_t* ip;      // outer IP header
    std::uint8_t* hdr;     // P3 header
    std::uint32_t plain;   // T
    const TxView* v;
    bool contiguous;
};

// What a TX view's packets look like, fixed when the view is built (TxView::init picks the
// variant): outer IPv4 or IPv6, native or UDP, size hiding or not. Constants in the variant's
// code, so no packet branches on them.
template <bool V6, bool Udp, bool Hide, WireKind Kind = WireKind::p3>
struct Shape {
    static constexpr bool v6 = V6, udp = Udp, hide = Hide;
    static constexpr WireKind kind = Kind;
    static constexpr bool esp = Kind != WireKind::p3;
    static_assert(!(esp && Hide), "ESP has no size hiding");
    static constexpr unsigned ip_len = V6 ? kIpv6HeaderLen : kIpv4HeaderLen;
    static constexpr unsigned outer_len = ip_len + (Udp ? kUdpHeaderLen : 0);
};

// Size hiding's body = inner || pad over the chain, built in the scratch and written back
// rotated. Out of line: its segment arrays would otherwise size the frame of every packet's
// prepare_out, and keep that from being inlined into the burst loop.
[[gnu::noinline, gnu::cold]] void hide_body(GcmEngine& e, rte_mbuf* m, const TxView& v, unsigned l2_len, std::uint32_t L,
                                            std::size_t pad, std::uint64_t seq) noexcept {
    IoSeg segs[kMaxSegs + 1];
    const std::uint32_t N = static_cast<std::uint32_t>(L + pad);
    const unsigned ns = segs_of(m, l2_len, N, segs, kMaxSegsU + 1);
    std::uint8_t* s = e.scratch();
    gather(segs, ns, s);                 // inner bytes, then whatever the pad area held
    sizehide_fill_pad(s, L, N);
    scatter_rotl(segs, ns, s, N, N ? sizehide_rotation(v.key->hide_key(), seq, N) : 0);
}

// Flags | P3 ID | sequence in one 16-byte store: GCM reads it back at once as the AAD (and 8
// bytes of it for the nonce), which forwards from one store but not from three. Flags: 0 on
// IP, the UDP bit in UDP (demultiplexing on the NAT port). ESP: SPI | Seq low | IV, the IV
// being the 64-bit sequence (unique per key, and the nonce's tail as in P3).
template <class Sh>
[[gnu::always_inline]] inline void write_header(std::uint8_t* hdr, std::uint32_t id, std::uint64_t seq) noexcept {
    static_assert(kP3HeaderLen == 16 && kFlagsLen == 4 && kIdLen == 4 && kEspHeaderLen == 16);
    std::uint64_t lo;
    if constexpr (Sh::esp)
        lo = std::uint64_t{rte_cpu_to_be_32(id)} | (std::uint64_t{rte_cpu_to_be_32(static_cast<std::uint32_t>(seq))} << 32);
    else
        lo = (std::uint64_t{rte_cpu_to_be_32(id)} << 32) | (Sh::udp ? std::uint64_t{rte_cpu_to_be_32(kFlagUdp)} : 0);
    const __m128i h = _mm_set_epi64x(static_cast<long long>(rte_cpu_to_be_64(seq)), static_cast<long long>(lo));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(hdr), h);
}

// Does everything but the sealing. Leaves the packet untouched on failure. Sh: the view's
// shape (its variant); dummy: a dummy packet (encap_dummy) rather than an inner IP packet.
template <class Sh, bool dummy>
[[gnu::always_inline]] inline WireStatus prepare_out(GcmEngine& e, rte_mbuf* m, const TxRef& tx, unsigned l2_len,
                                                     Prepared& p, L2 l2) noexcept {
    const TxView& v = *tx.view;
    if (m->pkt_len < l2_len) return WireStatus::bad_input;
    const std::uint32_t L = m->pkt_len - l2_len;
    if (L > kMaxInnerLen) return WireStatus::too_big;
    if (m->nb_segs > kMaxSegsU) return WireStatus::chain_too_long;
    std::uint8_t tos = 0;
    std::uint8_t nh = kNextDummy;
    std::uint8_t* inner = nullptr;
    if constexpr (!dummy) {
        if (L < kIpv4HeaderLen || m->data_len < l2_len + kIpv4HeaderLen) return WireStatus::bad_input;
        inner = rte_pktmbuf_mtod_offset(m, std::uint8_t*, l2_len);
        const unsigned ver = inner[0] >> 4;
        if (ver == 4) {
            if (be::get16(inner + 2) != L) return WireStatus::bad_input;
            tos = inner[1];
            nh = kNextIpv4;
        } else if (ver == 6) {
            if (L < kIpv6HeaderLen || m->data_len < l2_len + kIpv6HeaderLen || be::get16(inner + 4) + kIpv6HeaderLen != L)
                return WireStatus::bad_input;
            tos = static_cast<std::uint8_t>(((inner[0] & 0x0f) << 4) | (inner[1] >> 4));
            nh = kNextIpv6;
        } else {
            return WireStatus::bad_input;
        }
    }
    const std::uint64_t seq = *tx.seq + 1;
    if (seq > __atomic_load_n(tx.limit, __ATOMIC_RELAXED)) [[unlikely]]
        return Sh::esp || seq >= kSeqHardLimit ? WireStatus::seq_exhausted : WireStatus::seq_unreserved;
    // Without ESN the sequence field is all there is: a new SA must come before it wraps.
    if constexpr (Sh::kind == WireKind::esp)
        if (seq > kEspSeqLastNoEsn) [[unlikely]] return WireStatus::seq_exhausted;

    // Room: headers in front of the first segment, trailer + ICV behind the last.
    constexpr unsigned front = Sh::outer_len + kP3HeaderLen;
    if (rte_pktmbuf_headroom(m) < front) return WireStatus::no_room;
    // A single segment never touches the mbuf's second cache line (next, tx_offload).
    rte_mbuf* last = m->nb_segs == 1 ? m : rte_pktmbuf_lastseg(m);
    const std::size_t tail = rte_pktmbuf_tailroom(last);
    std::size_t T = plain_len(L);
    if (T - L + kIcvLen > tail) return WireStatus::no_room;
    if constexpr (Sh::hide) {
        std::size_t cap = std::min<std::size_t>(L + tail - kIcvLen, kMaxInnerLen + kSizeHideBucket);
        if (v.max_outer != 0) cap = std::min<std::size_t>(cap, v.max_outer > front + kIcvLen ? v.max_outer - front - kIcvLen : 0);
        T = sizehide_plain_len(L, cap);
    }
    const std::size_t pad = T - L - kTrailerFixed;

    // Trailer (and room for the ICV) behind the inner packet.
    const std::uint16_t add = static_cast<std::uint16_t>(T - L + kIcvLen);
    std::uint8_t* tr = rte_pktmbuf_mtod_offset(last, std::uint8_t*, last->data_len);
    last->data_len = static_cast<std::uint16_t>(last->data_len + add);
    m->pkt_len += add;
    if constexpr (!Sh::hide) {
        // Padding 1, 2, 3 (RFC 4303 default), pad length, next header: at most 5 bytes, written
        // with one 8-byte store (the ICV room behind takes the rest, GCM overwrites it), so
        // the cipher's load of the last block forwards from one store instead of a byte loop.
        static_assert(kMaxAlignPad + kTrailerFixed <= 8 && kIcvLen >= 8 - kTrailerFixed);
        const unsigned sh = static_cast<unsigned>(pad) * 8;
        const std::uint64_t w = (0x0807060504030201ull & ((1ull << sh) - 1)) | (std::uint64_t{pad} << sh) |
                                (std::uint64_t{nh} << (sh + 8));
        const std::uint64_t wle = rte_cpu_to_le_64(w);
        std::memcpy(tr, &wle, 8);
    } else {
        tr[pad] = static_cast<std::uint8_t>(pad);
        tr[pad + 1] = nh;
        hide_body(e, m, v, l2_len, L, pad, seq);
    }

    // Headers in front: the l2 bytes move to the new front.
    // Room in front was checked above: prepend by hand (rte_pktmbuf_prepend checks it again
    // and recomputes the data pointer from the fields it just wrote).
    std::uint8_t* old = rte_pktmbuf_mtod(m, std::uint8_t*);
    std::uint8_t* start = old - front;
    m->data_off = static_cast<std::uint16_t>(m->data_off - front);
    m->data_len = static_cast<std::uint16_t>(m->data_len + front);
    m->pkt_len += front;
    if (l2 == L2::keep) move_l2(start, old, l2_len);
    std::uint8_t* ip = start + l2_len;
    std::uint8_t* hdr = ip + Sh::outer_len;
    write_header<Sh>(hdr, v.p3_id, seq);
    // Read by other threads (TxSlot::last_seq: statistics, the packet-count rekey): a relaxed
    // atomic store, a plain mov on x86-64.
    __atomic_store_n(tx.seq, seq, __ATOMIC_RELAXED);

    // The outer header template: a constant-size copy the compiler inlines.
    std::memcpy(ip, v.tmpl, Sh::outer_len);
    const std::uint32_t total = static_cast<std::uint32_t>(Sh::outer_len + kP3HeaderLen + T + kIcvLen);
    // DSCP copied, ECN copied (RFC 6040 normal mode): the whole TOS / traffic class.
    const std::uint8_t out_tos = static_cast<std::uint8_t>((tos & 0xfc) | ecn_encap(tos & 3));
    if constexpr (!Sh::v6) {
        ip[1] = out_tos;
        be::put16(ip + 2, static_cast<std::uint16_t>(total));
        const std::uint16_t id = static_cast<std::uint16_t>(seq ^ v.p3_id);
        be::put16(ip + 4, id);
        // Checksum = the template's fixed fields (csum_base) + TOS, total length and ID.
        be::put16(ip + 10, csum::finish(v.csum_base + out_tos + total + id));
    } else {
        ip[0] = static_cast<std::uint8_t>(0x60 | (out_tos >> 4));
        ip[1] = static_cast<std::uint8_t>((out_tos << 4) | (ip[1] & 0x0f));
        be::put16(ip + 4, static_cast<std::uint16_t>(total - kIpv6HeaderLen));
    }
    if constexpr (Sh::udp) {
        std::uint8_t* u = ip + Sh::ip_len;
        be::put16(u + 4, static_cast<std::uint16_t>(total - Sh::ip_len));
        // IPv4: checksum 0 (RFC 3948). IPv6: filled after sealing.
    }
    p = Prepared{m, ip, hdr, static_cast<std::uint32_t>(T), &v, m->nb_segs == 1};
    return WireStatus::ok;
}

// IPv6 UDP checksum over the UDP header and everything after it (the ciphertext included).
void finish_udp6(const Prepared& p) noexcept {
    std::uint8_t* u = p.ip + kIpv6HeaderLen;
    const std::uint32_t ulen = be::get16(u + 4);
    const std::uint32_t off = static_cast<std::uint32_t>(u - rte_pktmbuf_mtod(p.m, std::uint8_t*));
    std::uint16_t raw = 0;
    if (p.m->nb_segs == 1) raw = rte_raw_cksum(u, ulen);
    else rte_raw_cksum_mbuf(p.m, off, ulen, &raw);
    // rte_raw_cksum sums in host order: bring it to network order before adding the rest.
    std::uint32_t acc = rte_be_to_cpu_16(raw);
    acc += p.v->csum_base + ulen + kIpProtoUdp;
    std::uint16_t c = csum::finish(acc);
    if (c == 0) c = 0xffff;
    be::put16(u + 6, c);
}

void seal_one_sgl(GcmEngine& e, const Prepared& p, const std::uint8_t* aad, std::size_t aad_len) noexcept {
    IoSeg segs[kMaxSegs];
    const std::uint32_t off = static_cast<std::uint32_t>(p.hdr + kP3HeaderLen - rte_pktmbuf_mtod(p.m, std::uint8_t*));
    const unsigned ns = segs_of(p.m, off, p.plain, segs, kMaxSegsU);
    rte_mbuf* last = rte_pktmbuf_lastseg(p.m);
    std::uint8_t* tag = rte_pktmbuf_mtod_offset(last, std::uint8_t*, last->data_len - kIcvLen);
    e.seal_sgl(*p.v->key, p.hdr, {segs, ns}, tag, aad, aad_len);
}

// The seal of a prepared packet, and the IPv6 UDP checksum over its ciphertext. The AAD: the
// P3 header as sent; ESP: SPI || Seq low (the header's first 8 bytes), with ESN SPI || Seq
// high || Seq low built here (Seq high is the IV's first half: the IV is the sequence).
template <class Sh>
[[gnu::always_inline]] inline void seal_prepared(GcmEngine& e, const Prepared& p) noexcept {
    std::uint8_t* ct = p.hdr + kP3HeaderLen;
    if constexpr (!Sh::esp) {
        if (p.contiguous) e.seal(*p.v->key, p.hdr, ct, p.plain, ct + p.plain);
        else seal_one_sgl(e, p, nullptr, kAadLen);
    } else {
        [[maybe_unused]] alignas(16) std::uint8_t esn_aad[kEspAadEsnLen];
        const std::uint8_t* aad = p.hdr;
        std::size_t aad_len = kEspAadLen;
        if constexpr (Sh::kind == WireKind::esp_esn) {
            std::memcpy(esn_aad, p.hdr, 4);
            std::memcpy(esn_aad + 4, p.hdr + 8, 4);
            std::memcpy(esn_aad + 8, p.hdr + 4, 4);
            aad = esn_aad;
            aad_len = kEspAadEsnLen;
        }
        if (p.contiguous) e.seal_aad(*p.v->key, p.hdr, aad, aad_len, ct, p.plain, ct + p.plain);
        else seal_one_sgl(e, p, aad, aad_len);
    }
    if constexpr (Sh::v6 && Sh::udp) finish_udp6(p);
}

// One variant: a run of packets of one shape. Each packet is sealed right after its headers
// are written, while they are in cache (the GCM call reads the header back as AAD and nonce);
// the next packets' lines are asked for ahead of the cipher, past the run too.
template <class Sh>
unsigned seal_run(GcmEngine& e, rte_mbuf* const* pkts, const TxRef* tx, unsigned n, unsigned ahead, unsigned l2_len,
                  WireStatus* st, L2 l2) noexcept {
    unsigned np = 0;
    for (unsigned i = 0; i < n; ++i) {
        if (i + 2 < ahead) rte_prefetch0(rte_pktmbuf_mtod(pkts[i + 2], void*));
        if (i + 1 < ahead) rte_prefetch0(tx[i + 1].view->key);
        Prepared p;
        st[i] = prepare_out<Sh, false>(e, pkts[i], tx[i], l2_len, p, l2);
        if (st[i] != WireStatus::ok) continue;
        seal_prepared<Sh>(e, p);
        ++np;
    }
    return np;
}

template <class Sh>
WireStatus seal_dummy(GcmEngine& e, rte_mbuf* m, const TxRef& tx, unsigned l2_len) noexcept {
    Prepared p;
    const WireStatus s = prepare_out<Sh, true>(e, m, tx, l2_len, p, L2::keep);
    if (s != WireStatus::ok) return s;
    seal_prepared<Sh>(e, p);
    return WireStatus::ok;
}

// The variants by [v6][udp][size hiding] (P3), [v6][udp][ESN] (ESP).
template <bool V6, bool Udp>
struct Sealers {
    static constexpr SealRunFn run[2] = {&seal_run<Shape<V6, Udp, false>>, &seal_run<Shape<V6, Udp, true>>};
    static constexpr SealDummyFn dummy[2] = {&seal_dummy<Shape<V6, Udp, false>>, &seal_dummy<Shape<V6, Udp, true>>};
    static constexpr SealRunFn esp_run[2] = {&seal_run<Shape<V6, Udp, false, WireKind::esp>>,
                                             &seal_run<Shape<V6, Udp, false, WireKind::esp_esn>>};
    static constexpr SealDummyFn esp_dummy[2] = {&seal_dummy<Shape<V6, Udp, false, WireKind::esp>>,
                                                 &seal_dummy<Shape<V6, Udp, false, WireKind::esp_esn>>};
};
template <bool V6, bool Udp>
void pick_esp(TxView& v) noexcept {
    const unsigned esn = v.kind == WireKind::esp_esn;
    v.seal_run = Sealers<V6, Udp>::esp_run[esn];
    v.seal_dummy = Sealers<V6, Udp>::esp_dummy[esn];
}
void pick_sealer(TxView& v) noexcept {
    if (is_esp(v.kind)) {
        if (!v.v6) v.udp_on ? pick_esp<false, true>(v) : pick_esp<false, false>(v);
        else v.udp_on ? pick_esp<true, true>(v) : pick_esp<true, false>(v);
        return;
    }
    const unsigned h = v.size_hiding == SizeHiding::on;
    if (!v.v6) {
        v.seal_run = v.udp_on ? Sealers<false, true>::run[h] : Sealers<false, false>::run[h];
        v.seal_dummy = v.udp_on ? Sealers<false, true>::dummy[h] : Sealers<false, false>::dummy[h];
    } else {
        v.seal_run = v.udp_on ? Sealers<true, true>::run[h] : Sealers<true, false>::run[h];
        v.seal_dummy = v.udp_on ? Sealers<true, true>::dummy[h] : Sealers<true, false>::dummy[h];
    }
}

}  // namespace

namespace detail {
unsigned seal_unset(GcmEngine&, rte_mbuf* const*, const TxRef*, unsigned n, unsigned, unsigned, WireStatus* st,
                    L2) noexcept {
    for (unsigned i = 0; i < n; ++i) st[i] = WireStatus::bad_input;
    return 0;
}
WireStatus seal_unset_dummy(GcmEngine&, rte_mbuf*, const TxRef&, unsigned) noexcept { return WireStatus::bad_input; }
}  // namespace detail

bool TxView::init(std::uint32_t id, const GcmKey* k, const OuterSpec& o, SizeHiding sh, std::uint16_t wan_mtu,
                  WireKind wk) noexcept {
    *this = TxView{};
    if (k == nullptr || !k->valid()) return false;
    if (is_esp(wk) && sh == SizeHiding::on) return false;
    kind = wk;
    if (o.src.family != o.dst.family || (o.src.family != 4 && o.src.family != 6)) return false;
    key = k;
    p3_id = id;
    size_hiding = sh;
    v6 = o.src.is_v6();
    udp_on = o.udp_dst != 0;
    dst = o.dst;
    max_outer = wan_mtu;
    std::uint8_t* ip = tmpl;
    std::uint8_t* u;
    const std::uint8_t proto = udp_on ? kIpProtoUdp : kIpProtoEsp;
    if (!v6) {
        // Length, ID and checksum are filled per packet; TOS copies the inner header's.
        hdr::put_ipv4_fields(ip, 0, 0, 0, kTtl, proto, o.src.bytes.data(), o.dst.bytes.data());
        u = ip + kIpv4HeaderLen;
        csum_base = csum::partial(ip, kIpv4HeaderLen);   // TOS, length, ID and checksum are 0 here
    } else {
        // Flow label from the P3 ID: one flow per lane, so ECMP and RSS may spread lanes while
        // each lane stays in order.
        std::uint32_t fl = (id * 2654435761u) >> 12;
        if (fl == 0) fl = 1;
        hdr::put_ipv6(ip, 0, proto, kTtl, o.src.bytes.data(), o.dst.bytes.data(), fl);
        u = ip + kIpv6HeaderLen;
        csum_base = csum::partial(ip + 8, 32);
    }
    outer_hlen = static_cast<std::uint16_t>((v6 ? kIpv6HeaderLen : kIpv4HeaderLen) + (udp_on ? kUdpHeaderLen : 0));
    if (udp_on) hdr::put_udp(u, o.udp_src, o.udp_dst, 0);   // length and checksum per packet
    pick_sealer(*this);
    return true;
}

std::size_t TxView::overhead_for(std::size_t len) const noexcept {
    return outer_hlen + kP3HeaderLen + (plain_len(len) - len) + kIcvLen;
}

const char* status_name(WireStatus s) noexcept {
    switch (s) {
        case WireStatus::ok: return "ok";
        case WireStatus::dummy: return "dummy";
        case WireStatus::bad_input: return "bad_input";
        case WireStatus::too_big: return "too_big";
        case WireStatus::no_room: return "no_room";
        case WireStatus::seq_exhausted: return "seq_exhausted";
        case WireStatus::chain_too_long: return "chain_too_long";
        case WireStatus::bad_outer: return "bad_outer";
        case WireStatus::fragment: return "fragment";
        case WireStatus::nat_keepalive: return "nat_keepalive";
        case WireStatus::truncated: return "truncated";
        case WireStatus::flags: return "flags";
        case WireStatus::no_key: return "no_key";
        case WireStatus::auth: return "auth";
        case WireStatus::bad_trailer: return "bad_trailer";
        case WireStatus::bad_inner: return "bad_inner";
        case WireStatus::ecn_drop: return "ecn_drop";
        case WireStatus::seq_unreserved: return "seq_unreserved";
        case WireStatus::count_: break;
    }
    return "?";
}

unsigned encap_burst(GcmEngine& e, rte_mbuf* const* pkts, const TxRef* tx, unsigned n, unsigned l2_len,
                     WireStatus* st, L2 l2) noexcept {
    unsigned np = 0;
    if (n > kMaxBurst) {
        for (unsigned i = kMaxBurst; i < n; ++i) st[i] = WireStatus::chain_too_long;
        n = kMaxBurst;
    }
    // Runs of one variant (a burst is mostly one session, one shape): one call each.
    for (unsigned i = 0; i < n;) {
        const SealRunFn f = tx[i].view->seal_run;
        unsigned j = i + 1;
        while (j < n && (tx[j].view == tx[j - 1].view || tx[j].view->seal_run == f)) ++j;
        np += f(e, pkts + i, tx + i, j - i, n - i, l2_len, st + i, l2);
        i = j;
    }
    return np;
}

WireStatus encap_dummy(GcmEngine& e, rte_mbuf* m, const TxRef& tx, unsigned l2_len) noexcept {
    return tx.view->seal_dummy(e, m, tx, l2_len);
}

}  // namespace p3::wire
