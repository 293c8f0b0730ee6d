// P3 encapsulation and decapsulation on mbufs (see wire.hpp for the layout and the caller's
// duties, docs/wire-format.md for the byte-level contract).
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

namespace p3::wire {

namespace {

// Wire fields through common/bytes.hpp (memcpy, never casts), sums through common/checksum.hpp.
using be::get16;
using be::put16;

// ---- mbuf chain helpers -------------------------------------------------------------------

// Segments covering bytes [off, off + len) of the packet; 0 when more than max are needed
// or the range is beyond the packet.
unsigned segs_of(rte_mbuf* m, std::uint32_t off, std::uint32_t len, IoSeg* out, unsigned max) noexcept {
    unsigned k = 0;
    for (rte_mbuf* s = m; s != nullptr && len > 0; s = s->next) {
        if (off >= s->data_len) {
            off -= s->data_len;
            continue;
        }
        if (k == max) return 0;
        const std::uint32_t take = std::min<std::uint32_t>(s->data_len - off, len);
        out[k++] = IoSeg{rte_pktmbuf_mtod_offset(s, std::uint8_t*, off), take};
        len -= take;
        off = 0;
    }
    if (len != 0) return 0;
    if (k == 0) out[k++] = IoSeg{nullptr, 0};   // an empty range is one empty segment
    return k;
}

// Copies len bytes starting at off out of the chain (segs already computed).
void gather(const IoSeg* segs, unsigned ns, std::uint8_t* dst) noexcept {
    for (unsigned i = 0; i < ns; ++i) {
        std::memcpy(dst, segs[i].data, segs[i].len);
        dst += segs[i].len;
    }
}
// Writes src[(i + r) mod n] to position i of the chain (rotate left) ...
void scatter_rotl(const IoSeg* segs, unsigned ns, const std::uint8_t* src, std::size_t n, std::uint32_t r) noexcept {
    std::size_t pos = r;   // index in src of the next byte to write
    for (unsigned i = 0; i < ns; ++i) {
        std::uint8_t* d = segs[i].data;
        std::size_t left = segs[i].len;
        while (left) {
            const std::size_t run = std::min(left, n - pos);
            std::memcpy(d, src + pos, run);
            d += run;
            left -= run;
            pos += run;
            if (pos == n) pos = 0;
        }
    }
}

// Removes len bytes from the end of a (possibly chained) packet; segments left empty at the
// tail are freed. false if the packet is shorter.
bool chain_trim(rte_mbuf* m, std::uint32_t len) noexcept {
    if (len > m->pkt_len) return false;
    if (m->nb_segs == 1) {
        m->data_len = static_cast<std::uint16_t>(m->data_len - len);
        m->pkt_len -= len;
        return true;
    }
    std::uint32_t keep = m->pkt_len - len;
    rte_mbuf* s = m;
    rte_mbuf* last = m;
    std::uint16_t segs = 0;
    while (s != nullptr) {
        ++segs;
        last = s;
        if (keep <= s->data_len) {
            s->data_len = static_cast<std::uint16_t>(keep);
            break;
        }
        keep -= s->data_len;
        s = s->next;
    }
    if (last->next != nullptr) {
        rte_pktmbuf_free(last->next);
        last->next = nullptr;
    }
    m->nb_segs = segs;
    m->pkt_len -= len;
    return true;
}

constexpr unsigned kMaxSegsU = static_cast<unsigned>(kMaxSegs);

// Moves the link header (l2_len bytes). The Ethernet case is a constant-size move the
// compiler inlines; a libc call per packet costs more than the move.
inline void move_l2(std::uint8_t* dst, const std::uint8_t* src, unsigned l2_len) noexcept {
    if (l2_len == 14) {
        // Ethernet: two overlapping 8-byte loads, then the stores (a memmove, since both
        // loads come first), instead of a call into libc's memmove for 14 bytes.
        std::uint64_t a, b;
        std::memcpy(&a, src, 8);
        std::memcpy(&b, src + 6, 8);
        std::memcpy(dst, &a, 8);
        std::memcpy(dst + 6, &b, 8);
    } else if (l2_len != 0) {
        std::memmove(dst, src, l2_len);
    }
}

// The outer header template, in one of its four sizes (constant-size copies again).
inline void copy_outer(std::uint8_t* ip, const TxView& v) noexcept {
    switch (v.outer_hlen) {
        case kIpv4HeaderLen: std::memcpy(ip, v.tmpl, kIpv4HeaderLen); break;
        case kIpv4HeaderLen + kUdpHeaderLen: std::memcpy(ip, v.tmpl, kIpv4HeaderLen + kUdpHeaderLen); break;
        case kIpv6HeaderLen: std::memcpy(ip, v.tmpl, kIpv6HeaderLen); break;
        default: std::memcpy(ip, v.tmpl, kIpv6HeaderLen + kUdpHeaderLen); break;
    }
}

// ---- outbound -------------------------------------------------------------------------------

struct Prepared {
    rte_mbuf* m;
    std::uint8_t* ip;      // outer IP header
    std::uint8_t* hdr;     // P3 header
    std::uint32_t plain;   // T
    const TxView* v;
    bool contiguous;
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

// Does everything but the sealing. Leaves the packet untouched on failure.
[[gnu::always_inline]] inline WireStatus prepare_out(GcmEngine& e, rte_mbuf* m, const TxRef& tx, unsigned l2_len, bool dummy, Prepared& p,
                       L2 l2 = L2::keep) noexcept {
    const TxView& v = *tx.view;
    if (m->pkt_len < l2_len) return WireStatus::bad_input;
    const std::uint32_t L = m->pkt_len - l2_len;
    if (L > kMaxInnerLen) return WireStatus::too_big;
    if (m->nb_segs > kMaxSegsU) return WireStatus::chain_too_long;
    std::uint8_t tos = 0;
    std::uint8_t nh = kNextDummy;
    std::uint8_t* inner = nullptr;
    if (!dummy) {
        if (L < kIpv4HeaderLen || m->data_len < l2_len + kIpv4HeaderLen) return WireStatus::bad_input;
        inner = rte_pktmbuf_mtod_offset(m, std::uint8_t*, l2_len);
        const unsigned ver = inner[0] >> 4;
        if (ver == 4) {
            if (get16(inner + 2) != L) return WireStatus::bad_input;
            tos = inner[1];
            nh = kNextIpv4;
        } else if (ver == 6) {
            if (L < kIpv6HeaderLen || m->data_len < l2_len + kIpv6HeaderLen || get16(inner + 4) + kIpv6HeaderLen != L)
                return WireStatus::bad_input;
            tos = static_cast<std::uint8_t>(((inner[0] & 0x0f) << 4) | (inner[1] >> 4));
            nh = kNextIpv6;
        } else {
            return WireStatus::bad_input;
        }
    }
    const std::uint64_t seq = *tx.seq + 1;
    if (seq > __atomic_load_n(tx.limit, __ATOMIC_RELAXED)) [[unlikely]]
        return seq >= kSeqHardLimit ? WireStatus::seq_exhausted : WireStatus::seq_unreserved;

    // Room: headers in front of the first segment, trailer + ICV behind the last.
    const unsigned front = v.outer_hlen + kP3HeaderLen;
    if (rte_pktmbuf_headroom(m) < front) return WireStatus::no_room;
    // A single segment never touches the mbuf's second cache line (next, tx_offload).
    rte_mbuf* last = m->nb_segs == 1 ? m : rte_pktmbuf_lastseg(m);
    const std::size_t tail = rte_pktmbuf_tailroom(last);
    std::size_t T = plain_len(L);
    if (T - L + kIcvLen > tail) return WireStatus::no_room;
    const bool hide = v.size_hiding == SizeHiding::on;
    if (hide) {
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
    if (!hide) {
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
    std::uint8_t* hdr = ip + v.outer_hlen;
    // Flags (0) | P3 ID | sequence in one 16-byte store: GCM reads it back at once as the AAD
    // (and 8 bytes of it for the nonce), which forwards from one store but not from three.
    static_assert(kP3HeaderLen == 16 && kFlagsLen == 4 && kIdLen == 4);
    const __m128i h = _mm_set_epi64x(static_cast<long long>(rte_cpu_to_be_64(seq)),
                                     static_cast<long long>(std::uint64_t{rte_cpu_to_be_32(v.p3_id)} << 32));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(hdr), h);
    // Read by other threads (TxSlot::last_seq: statistics, the packet-count rekey): a relaxed
    // atomic store, a plain mov on x86-64.
    __atomic_store_n(tx.seq, seq, __ATOMIC_RELAXED);

    copy_outer(ip, v);
    const std::uint32_t total = static_cast<std::uint32_t>(v.outer_hlen + kP3HeaderLen + T + kIcvLen);
    // DSCP copied, ECN copied (RFC 6040 normal mode): the whole TOS / traffic class.
    const std::uint8_t out_tos = static_cast<std::uint8_t>((tos & 0xfc) | ecn_encap(tos & 3));
    if (!v.v6) {
        ip[1] = out_tos;
        put16(ip + 2, static_cast<std::uint16_t>(total));
        const std::uint16_t id = static_cast<std::uint16_t>(seq ^ v.p3_id);
        put16(ip + 4, id);
        // Checksum = the template's fixed fields (csum_base) + TOS, total length and ID.
        put16(ip + 10, csum::finish(v.csum_base + out_tos + total + id));
    } else {
        ip[0] = static_cast<std::uint8_t>(0x60 | (out_tos >> 4));
        ip[1] = static_cast<std::uint8_t>((out_tos << 4) | (ip[1] & 0x0f));
        put16(ip + 4, static_cast<std::uint16_t>(total - kIpv6HeaderLen));
    }
    if (v.udp_on) {
        std::uint8_t* u = ip + (v.v6 ? kIpv6HeaderLen : kIpv4HeaderLen);
        put16(u + 4, static_cast<std::uint16_t>(total - (v.v6 ? kIpv6HeaderLen : kIpv4HeaderLen)));
        // IPv4: checksum 0 (RFC 3948). IPv6: filled after sealing.
    }
    p = Prepared{m, ip, hdr, static_cast<std::uint32_t>(T), &v, m->nb_segs == 1};
    return WireStatus::ok;
}

// IPv6 UDP checksum over the UDP header and everything after it (the ciphertext included).
void finish_udp6(const Prepared& p) noexcept {
    std::uint8_t* u = p.ip + kIpv6HeaderLen;
    const std::uint32_t ulen = get16(u + 4);
    const std::uint32_t off = static_cast<std::uint32_t>(u - rte_pktmbuf_mtod(p.m, std::uint8_t*));
    std::uint16_t raw = 0;
    if (p.m->nb_segs == 1) raw = rte_raw_cksum(u, ulen);
    else rte_raw_cksum_mbuf(p.m, off, ulen, &raw);
    // rte_raw_cksum sums in host order: bring it to network order before adding the rest.
    std::uint32_t acc = rte_be_to_cpu_16(raw);
    acc += p.v->csum_base + ulen + kIpProtoUdp;
    std::uint16_t c = csum::finish(acc);
    if (c == 0) c = 0xffff;
    put16(u + 6, c);
}

void seal_one_sgl(GcmEngine& e, const Prepared& p) noexcept {
    IoSeg segs[kMaxSegs];
    const std::uint32_t off = static_cast<std::uint32_t>(p.hdr + kP3HeaderLen - rte_pktmbuf_mtod(p.m, std::uint8_t*));
    const unsigned ns = segs_of(p.m, off, p.plain, segs, kMaxSegsU);
    rte_mbuf* last = rte_pktmbuf_lastseg(p.m);
    std::uint8_t* tag = rte_pktmbuf_mtod_offset(last, std::uint8_t*, last->data_len - kIcvLen);
    e.seal_sgl(*p.v->key, p.hdr, {segs, ns}, tag);
}

}  // namespace

bool TxView::init(std::uint32_t id, const GcmKey* k, const OuterSpec& o, SizeHiding sh, std::uint16_t wan_mtu) noexcept {
    *this = TxView{};
    if (k == nullptr || !k->valid()) return false;
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
    // Each packet sealed right after its headers are written, while they are in cache (the
    // GCM call reads the header back as AAD and nonce); the next packets' lines are asked for
    // ahead of the cipher.
    for (unsigned i = 0; i < n; ++i) {
        if (i + 2 < n) rte_prefetch0(rte_pktmbuf_mtod(pkts[i + 2], void*));
        if (i + 1 < n) rte_prefetch0(tx[i + 1].view->key);
        Prepared p;
        st[i] = prepare_out(e, pkts[i], tx[i], l2_len, false, p, l2);
        if (st[i] != WireStatus::ok) continue;
        if (p.contiguous) e.seal(*p.v->key, p.hdr, p.hdr + kP3HeaderLen, p.plain, p.hdr + kP3HeaderLen + p.plain);
        else seal_one_sgl(e, p);
        if (p.v->v6 && p.v->udp_on) finish_udp6(p);
        ++np;
    }
    return np;
}

WireStatus encap_dummy(GcmEngine& e, rte_mbuf* m, const TxRef& tx, unsigned l2_len) noexcept {
    Prepared p;
    const WireStatus s = prepare_out(e, m, tx, l2_len, true, p);
    if (s != WireStatus::ok) return s;
    if (p.contiguous) e.seal(*p.v->key, p.hdr, p.hdr + kP3HeaderLen, p.plain, p.hdr + kP3HeaderLen + p.plain);
    else seal_one_sgl(e, p);
    if (p.v->v6 && p.v->udp_on) finish_udp6(p);
    return WireStatus::ok;
}

// ---- inbound --------------------------------------------------------------------------------

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
        total = get16(ip + 2);
        if (total < hl) return WireStatus::bad_outer;
        if (total > avail) return WireStatus::truncated;
        if ((get16(ip + 6) & 0x3fff) != 0) return WireStatus::fragment;
        proto = ip[9];
        o.ecn = ip[1] & 3;
        o.src.family = 4;
        std::memcpy(o.src.bytes.data(), ip + 12, 4);
    } else if ((ip[0] >> 4) == 6) {
        if (in_first < kIpv6HeaderLen) return WireStatus::truncated;
        hl = kIpv6HeaderLen;
        total = kIpv6HeaderLen + get16(ip + 4);
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
        const std::uint32_t ulen = get16(u + 4);
        if (ulen < kUdpHeaderLen || ulen != total - hl) return WireStatus::truncated;
        if (get16(u + 2) != nat_port) return WireStatus::bad_outer;
        o.udp = true;
        o.udp_src = get16(u);
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
        return L >= kIpv4HeaderLen && (in[0] >> 4) == 4 && ihl >= kIpv4HeaderLen && get16(in + 2) == L && ihl <= L;
    }
    ihl = kIpv6HeaderLen;
    return L >= kIpv6HeaderLen && (in[0] >> 4) == 6 && get16(in + 4) + kIpv6HeaderLen == L;
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
            put16(in + 10, csum::ipv4_header(in, ihl));
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

// After the tag verified: trailer, size hiding, inner checks, RFC 6040, strip.
DecapResult finish_in(GcmEngine& e, rte_mbuf* m, unsigned p3_off, const RxRef& rx, const InPrep& p,
                      unsigned l2_len) noexcept {
    const std::uint32_t T = p.plain;
    const std::uint32_t pt_off = p3_off + static_cast<std::uint32_t>(kP3HeaderLen);
    std::uint8_t trb[2];
    const std::uint8_t* tr = static_cast<const std::uint8_t*>(rte_pktmbuf_read(m, pt_off + T - 2, 2, trb));
    const std::uint8_t pad = tr[0], nh = tr[1];
    if (nh != kNextIpv4 && nh != kNextIpv6 && nh != kNextDummy) return {WireStatus::bad_trailer, 0};
    if (pad + kTrailerFixed > T) return {WireStatus::bad_trailer, nh};
    if (rx.size_hiding == SizeHiding::on && T > 2) {
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

}  // namespace

unsigned decap_burst(GcmEngine& e, rte_mbuf* const* pkts, const std::uint16_t* p3_off, const RxRef* rx,
                     unsigned n, unsigned l2_len, DecapResult* res, L2 l2) noexcept {
    if (n > kMaxBurst) {
        for (unsigned i = kMaxBurst; i < n; ++i) res[i] = {WireStatus::chain_too_long, 0};
        n = kMaxBurst;
    }
    unsigned good = 0;
    // A packet is finished (trailer, inner checks, strip) one open later, in the same pass:
    // by then the cipher's stores of its plaintext have left the store buffer, so reading the
    // trailer back does not wait on them, and the burst is walked once, not twice.
    int pend = -1;
    InPrep pend_prep{};
    auto finish = [&](unsigned j, const InPrep& p) {
        res[j] = p.contiguous && rx[j].size_hiding == SizeHiding::off
                     ? finish_in_flat(pkts[j], p3_off[j], p, l2_len, l2)
                     : finish_in(e, pkts[j], p3_off[j], rx[j], p, l2_len);
        good += res[j].status == WireStatus::ok;
    };
    // No prefetch: the caller found the P3 header (and the slot) by reading this packet.
    for (unsigned i = 0; i < n; ++i) {
        rte_mbuf* m = pkts[i];
        const unsigned off = p3_off[i];
        P3Header h;
        WireStatus s = off < l2_len ? WireStatus::truncated : parse_p3(m, off, h);
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
        bool opened;
        if (prep.contiguous) {
            opened = e.open(*rx[i].key, hdr, hdr + kP3HeaderLen, T, hdr + kP3HeaderLen + T);
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
            opened = e.open_sgl(*rx[i].key, hdr, {segs, ns}, tag);
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

}  // namespace p3::wire
