// Encapsulation and decapsulation on mbufs, with an independent decoder as the oracle:
// every case of the table (inner v4/v6 x outer v4/v6 [+ UDP] x sizes up to the tunnel MTU x
// size hiding x lanes 0..3 x AES-128/256) is encapsulated by the wire core in bursts, decoded
// byte by byte with OpenSSL (tests/wire/test_wire_util.hpp) and compared with the inner packet;
// the reverse: packets sealed by OpenSSL are opened by the wire core. Then tampering, flags,
// trailer and inner errors, ECN (RFC 6040), dummies, chained mbufs, room and sequence limits,
// outer parsing, and the Python decoder (tests/tools/p3_decode.py) reading our packets.
#include <catch2/catch.hpp>

#include <sys/wait.h>

#include <cstdio>
#include <fstream>
#include <memory>

#include "common/bytes.hpp"
#include "common/lanes.hpp"
#include "common/sizehide.hpp"
#include "common/wire.hpp"
#include "tests/wire/test_wire_util.hpp"

using namespace p3::wire;
using p3::IpAddr;
using p3test::Bytes;
using p3test::hex;

namespace {

constexpr unsigned kEth = 14;
constexpr std::uint32_t kBaseId = 0x00300010;

std::uint16_t csum(const std::uint8_t* p, std::size_t n, std::uint32_t acc = 0) {
    for (; n >= 2; p += 2, n -= 2) acc += (std::uint32_t(p[0]) << 8) | p[1];
    if (n) acc += std::uint32_t(p[0]) << 8;
    while (acc >> 16) acc = (acc & 0xffff) + (acc >> 16);
    return static_cast<std::uint16_t>(~acc);
}
std::uint16_t be16(const std::uint8_t* p) { return p3::be::get16(p); }
std::uint32_t be32(const std::uint8_t* p) { return p3::be::get32(p); }
std::uint64_t be64(const std::uint8_t* p) { return p3::be::get64(p); }

// An inner IP packet of exactly len bytes with the given TOS / traffic class.
Bytes inner_packet(bool v6, std::size_t len, std::uint8_t tos, std::uint8_t seed = 1) {
    Bytes p(len);
    for (std::size_t i = 0; i < len; ++i) p[i] = static_cast<std::uint8_t>(seed * 31 + i * 7);
    if (!v6) {
        p[0] = 0x45;
        p[1] = tos;
        p[2] = static_cast<std::uint8_t>(len >> 8);
        p[3] = static_cast<std::uint8_t>(len);
        p[6] = 0x40;
        p[7] = 0;
        p[8] = 63;
        p[9] = 17;
        const std::uint8_t a[8] = {10, 1, 0, 5, 10, 2, 0, 7};
        std::memcpy(&p[12], a, 8);
        p[10] = p[11] = 0;
        const std::uint16_t c = csum(p.data(), 20);
        p[10] = static_cast<std::uint8_t>(c >> 8);
        p[11] = static_cast<std::uint8_t>(c);
    } else {
        p[0] = static_cast<std::uint8_t>(0x60 | (tos >> 4));
        p[1] = static_cast<std::uint8_t>((tos << 4) | 0x3);
        p[4] = static_cast<std::uint8_t>((len - 40) >> 8);
        p[5] = static_cast<std::uint8_t>(len - 40);
        p[6] = 17;
        p[7] = 63;
        for (int i = 8; i < 40; ++i) p[i] = static_cast<std::uint8_t>(i);
    }
    return p;
}

Bytes frame_of(const Bytes& inner, std::uint8_t tag = 0xa0) {
    Bytes f(kEth + inner.size());
    for (unsigned i = 0; i < 12; ++i) f[i] = static_cast<std::uint8_t>(tag + i);
    f[12] = (inner[0] >> 4) == 6 ? 0x86 : 0x08;
    f[13] = (inner[0] >> 4) == 6 ? 0xdd : 0x00;
    if (!inner.empty()) std::memcpy(f.data() + kEth, inner.data(), inner.size());
    return f;
}

IpAddr ip(const char* s) { return *IpAddr::parse(s); }

// Key material of one session and the per-lane keys the wire core and the oracle use.
struct Session {
    Bytes key, salt;
    std::vector<std::unique_ptr<GcmKey>> lane_keys;
    Session(std::size_t key_len, std::uint8_t seed) {
        key.resize(key_len);
        for (std::size_t i = 0; i < key_len; ++i) key[i] = static_cast<std::uint8_t>(seed + i * 11);
        salt = {seed, 0x5a, 0xa5, static_cast<std::uint8_t>(~seed)};
        for (std::uint32_t n = 0; n < 4; ++n) {
            p3::SecretBytes m = lane_key_material(key, salt, n);
            lane_keys.push_back(std::make_unique<GcmKey>(m));
        }
    }
};

struct Outer {
    bool v6;
    bool udp;
};
OuterSpec spec_of(Outer o) {
    OuterSpec s;
    s.src = o.v6 ? ip("2001:db8::1") : ip("192.0.2.1");
    s.dst = o.v6 ? ip("2001:db8::2") : ip("192.0.2.2");
    if (o.udp) {
        s.udp_src = 4500;
        s.udp_dst = 4500;
    }
    return s;
}

// ---- the oracle decoder ---------------------------------------------------------------------

std::uint64_t oracle_splitmix(std::uint64_t x) {
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

struct Decoded {
    std::string error;        // empty = good
    std::uint32_t id = 0;
    std::uint64_t seq = 0;
    std::uint8_t outer_tos = 0, nh = 0, pad = 0;
    std::size_t plain = 0;
    Bytes inner;
};

// Decodes a frame [eth][outer][udp?][P3] the way DESIGN.md describes it, with lane_material =
// the lane's key || salt.
Decoded oracle_decode(const Bytes& f, const Bytes& lane_material, bool hide, std::size_t key_len) {
    Decoded d;
    if (f.size() < kEth + 20) return d.error = "short", d;
    const std::uint8_t* o = f.data() + kEth;
    const std::size_t ip_len = f.size() - kEth;
    std::size_t hl;
    std::uint8_t proto;
    bool v6 = (o[0] >> 4) == 6;
    if (!v6) {
        if (o[0] != 0x45) return d.error = "outer v4 header", d;
        if (be16(o + 2) != ip_len) return d.error = "outer v4 total length", d;
        if (csum(o, 20) != 0) return d.error = "outer v4 checksum", d;
        if (o[8] != 64) return d.error = "outer TTL", d;
        if ((be16(o + 6) & 0x3fff) != 0) return d.error = "outer fragment/DF bits", d;
        d.outer_tos = o[1];
        proto = o[9];
        hl = 20;
    } else {
        if (be16(o + 4) + 40u != ip_len) return d.error = "outer v6 payload length", d;
        if (o[7] != 64) return d.error = "outer hop limit", d;
        d.outer_tos = static_cast<std::uint8_t>(((o[0] & 0xf) << 4) | (o[1] >> 4));
        proto = o[6];
        hl = 40;
    }
    std::size_t off = hl;
    if (proto == 17) {
        const std::uint8_t* u = o + hl;
        if (be16(u + 2) != 4500) return d.error = "udp port", d;
        if (be16(u + 4) != ip_len - hl) return d.error = "udp length", d;
        if (!v6 && be16(u + 6) != 0) return d.error = "udp v4 checksum not 0", d;
        if (v6) {
            std::uint32_t acc = 0;
            for (int i = 8; i < 40; i += 2) acc += be16(o + i);
            acc += 17 + static_cast<std::uint32_t>(ip_len - hl);
            if (csum(u, ip_len - hl, acc) != 0) return d.error = "udp v6 checksum", d;
        }
        off += 8;
    } else if (proto != 50) {
        return d.error = "outer protocol", d;
    }
    const std::uint8_t* p = o + off;
    const std::size_t plen = ip_len - off;
    if (plen < 16 + 2 + 16) return d.error = "p3 short", d;
    // P3 Flags: 0 on IP protocol 50, exactly the UDP bit in UDP (demultiplexing on port 4500).
    if (be32(p) != (proto == 17 ? 0x80000000u : 0u)) return d.error = "flags", d;
    d.id = be32(p + 4);
    d.seq = be64(p + 8);
    const Bytes key(lane_material.begin(), lane_material.begin() + static_cast<long>(key_len));
    Bytes iv(lane_material.begin() + static_cast<long>(key_len), lane_material.end());
    iv.insert(iv.end(), p + 8, p + 16);
    Bytes pt;
    if (!p3test::ossl_open(key, iv, Bytes(p, p + 16), Bytes(p + 16, p + plen), pt)) return d.error = "tag", d;
    d.plain = pt.size();
    d.pad = pt[pt.size() - 2];
    d.nh = pt[pt.size() - 1];
    if (hide && pt.size() > 2) {
        Bytes ikm = lane_material;
        const Bytes info = {'p', '3', ' ', 's', 'i', 'z', 'e', ' ', 'h', 'i', 'd', 'i', 'n', 'g'};
        const Bytes hk = p3test::hkdf_hmac(ikm, info, 8);
        std::uint64_t k = 0;
        for (std::uint8_t b : hk) k = (k << 8) | b;
        const std::size_t n = pt.size() - 2;
        const std::uint64_t z = oracle_splitmix(k ^ d.seq);
        const std::size_t r = static_cast<std::size_t>(((z >> 32) * n) >> 32);
        Bytes body(n);
        for (std::size_t i = 0; i < n; ++i) body[(i + r) % n] = pt[i];   // wire[i] = body[(i + r) mod n]
        std::copy(body.begin(), body.end(), pt.begin());
    }
    if (d.pad + 2u > pt.size()) return d.error = "pad length", d;
    d.inner.assign(pt.begin(), pt.end() - 2 - d.pad);
    return d;
}

// Seals inner (or any bytes) as a P3 packet with OpenSSL: [eth][outer v4/v6][P3...].
Bytes oracle_encode(const Bytes& inner, std::uint8_t nh, const Bytes& lane_material, std::size_t key_len, std::uint32_t id,
                    std::uint64_t seq, bool outer_v6, std::uint8_t outer_tos, std::uint32_t flags = 0, int pad = -1,
                    bool hide = false) {
    std::size_t p = pad >= 0 ? static_cast<std::size_t>(pad) : (4 - (inner.size() + 2) % 4) % 4;
    Bytes pt = inner;
    for (std::size_t i = 0; i < p; ++i) pt.push_back(static_cast<std::uint8_t>(i + 1));
    if (hide) {
        const Bytes info = {'p', '3', ' ', 's', 'i', 'z', 'e', ' ', 'h', 'i', 'd', 'i', 'n', 'g'};
        const Bytes hk = p3test::hkdf_hmac(lane_material, info, 8);
        std::uint64_t k = 0;
        for (std::uint8_t b : hk) k = (k << 8) | b;
        const std::size_t n = pt.size();
        const std::uint64_t z = oracle_splitmix(k ^ seq);
        const std::size_t r = n ? static_cast<std::size_t>(((z >> 32) * n) >> 32) : 0;
        Bytes rot(n);
        for (std::size_t i = 0; i < n; ++i) rot[i] = pt[(i + r) % n];
        pt = rot;
    }
    pt.push_back(static_cast<std::uint8_t>(p));
    pt.push_back(nh);
    Bytes hdr(16);
    for (int i = 0; i < 4; ++i) hdr[i] = static_cast<std::uint8_t>(flags >> (24 - 8 * i));
    for (int i = 0; i < 4; ++i) hdr[4 + i] = static_cast<std::uint8_t>(id >> (24 - 8 * i));
    for (int i = 0; i < 8; ++i) hdr[8 + i] = static_cast<std::uint8_t>(seq >> (56 - 8 * i));
    const Bytes key(lane_material.begin(), lane_material.begin() + static_cast<long>(key_len));
    Bytes iv(lane_material.begin() + static_cast<long>(key_len), lane_material.end());
    iv.insert(iv.end(), hdr.begin() + 8, hdr.end());
    Bytes body = hdr;
    Bytes ct = p3test::ossl_seal(key, iv, hdr, pt);
    body.insert(body.end(), ct.begin(), ct.end());
    Bytes f(kEth, 0xcc);
    Bytes o;
    if (!outer_v6) {
        o = {0x45, outer_tos, 0, 0, 0, 0, 0, 0, 64, 50, 0, 0, 192, 0, 2, 2, 192, 0, 2, 1};
        const std::size_t tot = 20 + body.size();
        o[2] = static_cast<std::uint8_t>(tot >> 8);
        o[3] = static_cast<std::uint8_t>(tot);
        const std::uint16_t c = csum(o.data(), 20);
        o[10] = static_cast<std::uint8_t>(c >> 8);
        o[11] = static_cast<std::uint8_t>(c);
    } else {
        o.assign(40, 0);
        o[0] = static_cast<std::uint8_t>(0x60 | (outer_tos >> 4));
        o[1] = static_cast<std::uint8_t>(outer_tos << 4);
        o[4] = static_cast<std::uint8_t>(body.size() >> 8);
        o[5] = static_cast<std::uint8_t>(body.size());
        o[6] = 50;
        o[7] = 64;
        o[8] = 0x20, o[9] = 0x01, o[10] = 0x0d, o[11] = 0xb8, o[23] = 2;
        o[24] = 0x20, o[25] = 0x01, o[26] = 0x0d, o[27] = 0xb8, o[39] = 1;
    }
    f.insert(f.end(), o.begin(), o.end());
    f.insert(f.end(), body.begin(), body.end());
    return f;
}

Bytes lane_material(const Session& s, std::uint32_t lane) { return p3test::oracle_lane(s.key, s.salt, lane); }

struct Engine {
    GcmEngine::Ptr e = GcmEngine::make();
};
GcmEngine& engine() {
    static Engine e;
    return *e.e;
}

// Opens a frame through the wire core's inbound API; returns the result, the mbuf kept in m.
DecapResult decap_one(rte_mbuf* m, const GcmKey* key, SizeHiding sh, std::uint16_t nat = 4500) {
    OuterInfo o;
    const WireStatus s = parse_outer(m, kEth, nat, o);
    if (s != WireStatus::ok) return {s, 0};
    P3Header h;
    const WireStatus s2 = parse_p3(m, o.p3_off, h, o.udp);
    if (s2 != WireStatus::ok) return {s2, 0};
    RxRef rx{key, sh};
    DecapResult r;
    decap_burst(engine(), &m, &o.p3_off, &rx, 1, kEth, &r);
    return r;
}

}  // namespace

TEST_CASE("encapsulation table, decoded by the independent implementation, then opened again", "[wire]") {
    p3test::wire_pool();
    const Session ses128(16, 3), ses256(32, 9);
    const Outer outers[] = {{false, false}, {true, false}, {false, true}, {true, true}};
    struct Case {
        bool inner_v6;
        Outer outer;
        std::size_t len;
        bool hide;
        std::uint32_t lane;
        const Session* ses;
        std::uint8_t tos;
    };
    std::vector<Case> cases;
    unsigned k = 0;
    for (bool inner_v6 : {false, true})
        for (Outer o : outers) {
            const std::size_t mtu_len = 1500 - overhead(o.v6, o.udp);
            const std::size_t sizes[] = {inner_v6 ? 40u : 20u, 41, 64, 127, 256, 512, 1024, mtu_len};
            for (std::size_t len : sizes)
                for (bool hide : {false, true})
                    for (std::uint32_t lane = 0; lane < 4; ++lane, ++k)
                        cases.push_back({inner_v6, o, len, hide, lane, (k % 2) ? &ses256 : &ses128,
                                         static_cast<std::uint8_t>((k * 0x1d) & 0xff)});
        }
    REQUIRE(cases.size() == 2 * 4 * 8 * 2 * 4);

    // One TX view per (session, outer, hide, lane); sequence counters per view as a lane would keep.
    std::vector<std::unique_ptr<TxView>> views;
    std::vector<std::uint64_t> seqs(cases.size(), 0);
    std::vector<TxRef> refs;
    std::vector<rte_mbuf*> pkts;
    std::vector<Bytes> inners;
    for (std::size_t i = 0; i < cases.size(); ++i) {
        const Case& c = cases[i];
        auto v = std::make_unique<TxView>();
        REQUIRE(v->init(kBaseId + c.lane, c.ses->lane_keys[c.lane].get(), spec_of(c.outer),
                        c.hide ? SizeHiding::on : SizeHiding::off, 1500));
        seqs[i] = 1000 + i;   // each case its own counter: the next sequence is 1001 + i
        refs.push_back({v.get(), &seqs[i]});
        views.push_back(std::move(v));
        inners.push_back(inner_packet(c.inner_v6, c.len, c.tos, static_cast<std::uint8_t>(i)));
        pkts.push_back(p3test::make_mbuf(frame_of(inners.back())));
    }
    // Encapsulate in bursts of 32 (mixed keys, families and sizes in every burst).
    std::vector<WireStatus> st(cases.size());
    for (std::size_t i = 0; i < cases.size(); i += 32) {
        const unsigned n = static_cast<unsigned>(std::min<std::size_t>(32, cases.size() - i));
        CHECK(encap_burst(engine(), &pkts[i], &refs[i], n, kEth, &st[i]) == n);
    }
    std::vector<std::uint16_t> p3off(cases.size());
    std::vector<RxRef> rx(cases.size());
    for (std::size_t i = 0; i < cases.size(); ++i) {
        const Case& c = cases[i];
        CAPTURE(i, c.inner_v6, c.outer.v6, c.outer.udp, c.len, c.hide, c.lane, c.ses->key.size());
        REQUIRE(st[i] == WireStatus::ok);
        CHECK(seqs[i] == 1001 + i);
        const Bytes f = p3test::mbuf_bytes(pkts[i]);
        // The link header is carried along unchanged.
        const Bytes orig = frame_of(inners[i]);
        CHECK(std::equal(f.begin(), f.begin() + 12, orig.begin()));
        CHECK(f.size() <= kEth + 1500u);
        const Decoded d = oracle_decode(f, lane_material(*c.ses, c.lane), c.hide, c.ses->key.size());
        REQUIRE(d.error == "");
        CHECK(d.id == kBaseId + c.lane);
        CHECK(d.seq == 1001 + i);
        CHECK(d.nh == (c.inner_v6 ? 41 : 4));
        CHECK(d.inner == inners[i]);
        CHECK(d.outer_tos == c.tos);   // DSCP copied, ECN copied (RFC 6040 normal mode)
        if (!c.hide) {
            CHECK(d.plain == plain_len(c.len));
        } else {
            const std::size_t cap = 1500 - (c.outer.v6 ? 40 : 20) - (c.outer.udp ? 8 : 0) - 32;
            CHECK(d.plain == sizehide_plain_len(c.len, cap));
            CHECK(d.plain >= c.len + 2);
        }
        P3Header h;
        OuterInfo oi;
        REQUIRE(parse_outer(pkts[i], kEth, 4500, oi) == WireStatus::ok);
        CHECK(oi.udp == c.outer.udp);
        CHECK(oi.v6 == c.outer.v6);
        REQUIRE(parse_p3(pkts[i], oi.p3_off, h, oi.udp) == WireStatus::ok);
        CHECK(h.flags == (c.outer.udp ? kFlagUdp : 0u));   // the UDP bit in UDP mode only
        CHECK(h.id == kBaseId + c.lane);
        CHECK(h.seq == 1001 + i);
        p3off[i] = oi.p3_off;
        rx[i] = RxRef{c.ses->lane_keys[c.lane].get(), c.hide ? SizeHiding::on : SizeHiding::off};
    }
    // And open them again, in bursts.
    std::vector<DecapResult> res(cases.size());
    for (std::size_t i = 0; i < cases.size(); i += 64) {
        const unsigned n = static_cast<unsigned>(std::min<std::size_t>(64, cases.size() - i));
        CHECK(decap_burst(engine(), &pkts[i], &p3off[i], &rx[i], n, kEth, &res[i]) == n);
    }
    for (std::size_t i = 0; i < cases.size(); ++i) {
        CAPTURE(i);
        CHECK(res[i].status == WireStatus::ok);
        CHECK(p3test::mbuf_bytes(pkts[i]) == frame_of(inners[i]));
        rte_pktmbuf_free(pkts[i]);
    }
}

TEST_CASE("packets sealed by OpenSSL are opened by the wire core", "[wire]") {
    const Session ses(32, 77), ses2(16, 1);
    unsigned n = 0;
    for (const Session* s : {&ses, &ses2})
        for (bool inner_v6 : {false, true})
            for (bool outer_v6 : {false, true})
                for (std::size_t len : {40ul, 99ul, 600ul, 1400ul})
                    for (bool hide : {false, true})
                        for (std::uint32_t lane : {0u, 3u}) {
                            CAPTURE(inner_v6, outer_v6, len, hide, lane);
                            const Bytes in = inner_packet(inner_v6, len, 0x2a);
                            // Size hiding: a bucket's worth of pad (any length works for the receiver).
                            const int pad = hide ? static_cast<int>(sizehide_plain_len(len, 0) - len - 2) : -1;
                            const Bytes f = oracle_encode(in, inner_v6 ? 41 : 4, lane_material(*s, lane), s->key.size(),
                                                          kBaseId + lane, 7 + n, outer_v6, 0x2a, 0, pad, hide);
                            rte_mbuf* m = p3test::make_mbuf(f);
                            const DecapResult r = decap_one(m, s->lane_keys[lane].get(), hide ? SizeHiding::on : SizeHiding::off);
                            CHECK(r.status == WireStatus::ok);
                            Bytes want(kEth + in.size());
                            std::memcpy(want.data(), f.data(), kEth);
                            std::memcpy(want.data() + kEth, in.data(), in.size());
                            CHECK(p3test::mbuf_bytes(m) == want);
                            rte_pktmbuf_free(m);
                            ++n;
                        }
    CHECK(n == 128);
}

TEST_CASE("any single changed byte of flags, id, sequence, ciphertext or tag is rejected", "[wire]") {
    const Session ses(16, 5);
    const Bytes in = inner_packet(false, 60, 0);
    TxView v;
    REQUIRE(v.init(kBaseId, ses.lane_keys[0].get(), spec_of({false, false}), SizeHiding::off));
    std::uint64_t seq = 41;
    rte_mbuf* m = p3test::make_mbuf(frame_of(in));
    TxRef ref{&v, &seq};
    WireStatus st;
    REQUIRE(encap_burst(engine(), &m, &ref, 1, kEth, &st) == 1);
    const Bytes good = p3test::mbuf_bytes(m);
    rte_pktmbuf_free(m);
    const std::size_t p3 = kEth + 20;
    unsigned rejected = 0;
    for (std::size_t off = p3; off < good.size(); ++off) {
        for (std::uint8_t flip : {0x01, 0x80}) {
            Bytes bad = good;
            bad[off] ^= flip;
            rte_mbuf* b = p3test::make_mbuf(bad);
            const DecapResult r = decap_one(b, ses.lane_keys[0].get(), SizeHiding::off);
            CAPTURE(off - p3, int(flip));
            CHECK(r.status != WireStatus::ok);
            CHECK_FALSE(authenticated(r.status));
            if (off < p3 + 4) CHECK(r.status == WireStatus::flags);
            else CHECK(r.status == WireStatus::auth);
            rejected += r.status != WireStatus::ok;
            rte_pktmbuf_free(b);
        }
    }
    CHECK(rejected == 2 * (good.size() - p3));
    // The untouched packet still opens (the loop above did not pass by accident).
    rte_mbuf* g = p3test::make_mbuf(good);
    CHECK(decap_one(g, ses.lane_keys[0].get(), SizeHiding::off).status == WireStatus::ok);
    rte_pktmbuf_free(g);
    // The wrong key (another lane's) does not open it either.
    g = p3test::make_mbuf(good);
    CHECK(decap_one(g, ses.lane_keys[1].get(), SizeHiding::off).status == WireStatus::auth);
    rte_pktmbuf_free(g);
}

TEST_CASE("a burst mixing good, forged and malformed packets: each gets its own verdict; L2 room", "[wire]") {
    // decap_burst finishes a packet while opening the next: a refused packet between good ones
    // must neither be finished nor shift a verdict to its neighbour.
    const Session ses(16, 9);
    TxView v;
    REQUIRE(v.init(kBaseId, ses.lane_keys[0].get(), spec_of({false, false}), SizeHiding::off));
    std::uint64_t seq = 100;
    constexpr unsigned n = 12;
    std::vector<Bytes> inner(n);
    rte_mbuf* m[n];
    TxRef ref[n];
    WireStatus st[n];
    for (unsigned i = 0; i < n; ++i) {
        inner[i] = inner_packet(i % 3 == 0, 40 + 37 * i, 0, static_cast<std::uint8_t>(i + 1));
        m[i] = p3test::make_mbuf(frame_of(inner[i]));
        ref[i] = TxRef{&v, &seq};
    }
    // Room only: the Ethernet bytes in front are the caller's to write.
    REQUIRE(encap_burst(engine(), m, ref, n, kEth, st, L2::room) == n);
    enum Kind { good, forged, no_key } kind[n];
    RxRef rx[n];
    std::uint16_t off[n];
    for (unsigned i = 0; i < n; ++i) {
        kind[i] = i % 4 == 1 ? forged : i == 6 ? no_key : good;
        if (kind[i] == forged) rte_pktmbuf_mtod(m[i], std::uint8_t*)[m[i]->data_len - 1] ^= 0x40;   // tag
        rx[i] = RxRef{kind[i] == no_key ? nullptr : ses.lane_keys[0].get(), SizeHiding::off};
        off[i] = kEth + 20;
    }
    DecapResult res[n];
    const unsigned ok = decap_burst(engine(), m, off, rx, n, kEth, res, L2::room);
    unsigned want_ok = 0;
    for (unsigned i = 0; i < n; ++i) {
        CAPTURE(i);
        if (kind[i] == good) {
            ++want_ok;
            REQUIRE(res[i].status == WireStatus::ok);
            const Bytes got = p3test::mbuf_bytes(m[i]);
            REQUIRE(got.size() == kEth + inner[i].size());
            CHECK(Bytes(got.begin() + kEth, got.end()) == inner[i]);
        } else {
            CHECK(res[i].status == (kind[i] == forged ? WireStatus::auth : WireStatus::no_key));
        }
        rte_pktmbuf_free(m[i]);
    }
    CHECK(ok == want_ok);
}

TEST_CASE("flags, trailer and inner errors after a valid tag", "[wire]") {
    const Session s(16, 8);
    const Bytes lm = lane_material(s, 0);
    const Bytes in4 = inner_packet(false, 80, 0), in6 = inner_packet(true, 80, 0);
    struct Row {
        const char* what;
        Bytes inner;
        std::uint8_t nh;
        std::uint32_t flags;
        int pad;
        WireStatus want;
    };
    Bytes short_len = in4;
    short_len[3] -= 1;   // IP total length one less than what the trailer leaves
    const Row rows[] = {
        {"known flags only", in4, 4, 0, -1, WireStatus::ok},
        {"flag bit 0", in4, 4, 1, -1, WireStatus::flags},
        {"flag bit 31", in4, 4, 0x80000000u, -1, WireStatus::flags},
        {"next header 17", in4, 17, 0, -1, WireStatus::bad_trailer},
        {"next header 0", in4, 0, 0, -1, WireStatus::bad_trailer},
        {"pad length beyond the plaintext", in4, 4, 0, 255, WireStatus::bad_trailer},
        {"v6 packet said to be v4", in6, 4, 0, -1, WireStatus::bad_inner},
        {"v4 packet said to be v6", in4, 41, 0, -1, WireStatus::bad_inner},
        {"inner length disagrees", short_len, 4, 0, -1, WireStatus::bad_inner},
        {"dummy", in4, 59, 0, -1, WireStatus::dummy},
        {"large pad (any pad is fine)", in4, 4, 0, 200, WireStatus::ok},
    };
    for (const Row& r : rows) {
        SECTION(r.what) {
            Bytes inner = r.inner;
            int pad = r.pad;
            if (pad == 255) inner.resize(10);   // 10 + pad 255 > plaintext
            const Bytes f = oracle_encode(inner, r.nh, lm, 16, kBaseId, 3, false, 0, r.flags, pad == 255 ? 0 : pad);
            Bytes g = f;
            if (pad == 255) {
                // Re-seal with a pad length byte of 255 over a short plaintext.
                Bytes pt = inner;
                pt.push_back(255);
                pt.push_back(4);
                Bytes hdr(f.begin() + kEth + 20, f.begin() + kEth + 36);
                Bytes iv(lm.begin() + 16, lm.end());
                iv.insert(iv.end(), hdr.begin() + 8, hdr.end());
                Bytes ct = p3test::ossl_seal(Bytes(lm.begin(), lm.begin() + 16), iv, hdr, pt);
                g.resize(kEth + 36);
                g.insert(g.end(), ct.begin(), ct.end());
                const std::size_t tot = g.size() - kEth;
                g[kEth + 2] = static_cast<std::uint8_t>(tot >> 8);
                g[kEth + 3] = static_cast<std::uint8_t>(tot);
                g[kEth + 10] = g[kEth + 11] = 0;
                const std::uint16_t c = csum(g.data() + kEth, 20);
                g[kEth + 10] = static_cast<std::uint8_t>(c >> 8);
                g[kEth + 11] = static_cast<std::uint8_t>(c);
            }
            rte_mbuf* m = p3test::make_mbuf(g);
            // parse_p3 is what rejects flags (the UDP bit on IP protocol 50 among them);
            // decap_burst rejects bits no transport defines too (belt and braces).
            const DecapResult d = decap_one(m, s.lane_keys[0].get(), SizeHiding::off);
            CHECK(d.status == r.want);
            if (r.want != WireStatus::flags) CHECK(authenticated(d.status));
            if (r.want == WireStatus::flags && (r.flags & ~kKnownFlags) != 0) {
                std::uint16_t off = kEth + 20;
                RxRef rx{s.lane_keys[0].get(), SizeHiding::off};
                DecapResult d2;
                CHECK(decap_burst(engine(), &m, &off, &rx, 1, kEth, &d2) == 0);
                CHECK(d2.status == WireStatus::flags);
            }
            rte_pktmbuf_free(m);
        }
    }
}

TEST_CASE("ECN through the tunnel (RFC 6040 normal mode) and DSCP", "[wire]") {
    const Session s(16, 12);
    // Expected inner ECN after decapsulation: [inner][outer], -1 = dropped.
    const int table[4][4] = {
        /* inner Not-ECT */ {0, 0, 0, -1},
        /* inner ECT(1)  */ {1, 1, 1, 3},
        /* inner ECT(0)  */ {2, 1, 2, 3},
        /* inner CE      */ {3, 3, 3, 3},
    };
    for (bool outer_v6 : {false, true})
        for (bool inner_v6 : {false, true})
            for (std::uint8_t ie = 0; ie < 4; ++ie)
                for (std::uint8_t oe = 0; oe < 4; ++oe) {
                    CAPTURE(outer_v6, inner_v6, int(ie), int(oe));
                    CHECK(ecn_decap(ie, oe) == table[ie][oe]);
                    const std::uint8_t tos = static_cast<std::uint8_t>(0xb8 | ie);   // DSCP EF
                    const Bytes in = inner_packet(inner_v6, 100, tos);
                    TxView v;
                    REQUIRE(v.init(kBaseId, s.lane_keys[0].get(), spec_of({outer_v6, false}), SizeHiding::off));
                    std::uint64_t seq = 0;
                    TxRef ref{&v, &seq};
                    rte_mbuf* m = p3test::make_mbuf(frame_of(in));
                    WireStatus st;
                    REQUIRE(encap_burst(engine(), &m, &ref, 1, kEth, &st) == 1);
                    std::uint8_t* o = rte_pktmbuf_mtod_offset(m, std::uint8_t*, kEth);
                    // The encapsulator copies ECN; a router on the way may set CE or change ECT.
                    if (!outer_v6) {
                        CHECK(o[1] == tos);
                        o[1] = static_cast<std::uint8_t>((o[1] & 0xfc) | oe);
                        o[10] = o[11] = 0;
                        const std::uint16_t c = csum(o, 20);
                        o[10] = static_cast<std::uint8_t>(c >> 8);
                        o[11] = static_cast<std::uint8_t>(c);
                    } else {
                        CHECK(static_cast<std::uint8_t>(((o[0] & 0xf) << 4) | (o[1] >> 4)) == tos);
                        o[1] = static_cast<std::uint8_t>((o[1] & 0xcf) | (oe << 4));
                    }
                    const DecapResult d = decap_one(m, s.lane_keys[0].get(), SizeHiding::off);
                    if (table[ie][oe] < 0) {
                        CHECK(d.status == WireStatus::ecn_drop);
                    } else {
                        REQUIRE(d.status == WireStatus::ok);
                        Bytes want = in;
                        if (!inner_v6) {
                            want[1] = static_cast<std::uint8_t>((tos & 0xfc) | table[ie][oe]);
                            want[10] = want[11] = 0;
                            const std::uint16_t c = csum(want.data(), 20);
                            want[10] = static_cast<std::uint8_t>(c >> 8);
                            want[11] = static_cast<std::uint8_t>(c);
                        } else {
                            want[1] = static_cast<std::uint8_t>((want[1] & 0xcf) | (table[ie][oe] << 4));
                        }
                        CHECK(p3test::mbuf_bytes(m) == frame_of(want));
                    }
                    rte_pktmbuf_free(m);
                }
}

TEST_CASE("dummy packets (next header 59) are sealed, authenticated and reported as dummies", "[wire]") {
    const Session s(32, 2);
    for (bool hide : {false, true})
        for (std::size_t len : {0ul, 1ul, 100ul, 1300ul}) {
            CAPTURE(hide, len);
            TxView v;
            REQUIRE(v.init(kBaseId + 1, s.lane_keys[1].get(), spec_of({true, false}), hide ? SizeHiding::on : SizeHiding::off));
            std::uint64_t seq = 9;
            Bytes f(kEth + len, 0x77);
            rte_mbuf* m = p3test::make_mbuf(f);
            REQUIRE(encap_dummy(engine(), m, {&v, &seq}, kEth) == WireStatus::ok);
            CHECK(seq == 10);
            const Decoded d = oracle_decode(p3test::mbuf_bytes(m), lane_material(s, 1), hide, 32);
            REQUIRE(d.error == "");
            CHECK(d.nh == 59);
            CHECK(d.inner == Bytes(len, 0x77));
            CHECK(d.outer_tos == 0);
            const DecapResult r = decap_one(m, s.lane_keys[1].get(), hide ? SizeHiding::on : SizeHiding::off);
            CHECK(r.status == WireStatus::dummy);
            CHECK(r.next_header == 59);
            CHECK(authenticated(r.status));
            rte_pktmbuf_free(m);
        }
}

TEST_CASE("chained mbufs: encapsulated and opened across segments", "[wire]") {
    const Session s(16, 4);
    for (bool hide : {false, true})
        for (std::size_t seg : {64ul, 100ul, 333ul, 512ul})
            for (std::size_t len : {120ul, 700ul, 1400ul}) {
                CAPTURE(hide, seg, len);
                const Bytes in = inner_packet(false, len, 0x10);
                TxView v;
                REQUIRE(v.init(kBaseId + 2, s.lane_keys[2].get(), spec_of({false, true}), hide ? SizeHiding::on : SizeHiding::off));
                std::uint64_t seq = 100;
                rte_mbuf* m = p3test::make_mbuf(frame_of(in), seg);
                if (kEth + len > seg) REQUIRE(m->nb_segs > 1);
                TxRef ref{&v, &seq};
                WireStatus st;
                REQUIRE(encap_burst(engine(), &m, &ref, 1, kEth, &st) == 1);
                const Bytes f = p3test::mbuf_bytes(m);
                const Decoded d = oracle_decode(f, lane_material(s, 2), hide, 16);
                REQUIRE(d.error == "");
                CHECK(d.inner == in);
                // Open it from the chained mbuf, and from a freshly split copy.
                CHECK(decap_one(m, s.lane_keys[2].get(), hide ? SizeHiding::on : SizeHiding::off).status == WireStatus::ok);
                CHECK(p3test::mbuf_bytes(m) == frame_of(in));
                rte_pktmbuf_free(m);
                rte_mbuf* c = p3test::make_mbuf(f, seg + 80);   // headers in the first segment
                CHECK(decap_one(c, s.lane_keys[2].get(), hide ? SizeHiding::on : SizeHiding::off).status == WireStatus::ok);
                CHECK(p3test::mbuf_bytes(c) == frame_of(in));
                CHECK(c->pkt_len == kEth + len);
                rte_pktmbuf_free(c);
            }
}

// A chain cut inside the inner IPv4 header (options: IHL 7) with an outer CE over an inner
// ECT(0): the ECN rewrite recomputes the inner checksum over the whole header, which does not
// sit in the first segment. It used to sum bytes past the segment's end (whatever the buffer
// held there) and forward the packet with that checksum; now the packet is refused as
// bad_inner (authenticated: the replay window still moves). Found by fuzz_decap_chain.
TEST_CASE("chained mbufs: an inner header split across segments is refused, never summed past the segment", "[wire]") {
    const Session s(16, 4);
    Bytes in = inner_packet(false, 120, 0x02);   // ECT(0)
    in.insert(in.begin() + 20, 8, 0x01);           // eight NOP options
    in.resize(120);
    in[0] = 0x47;
    in[10] = in[11] = 0;
    const std::uint16_t c = csum(in.data(), 28);
    in[10] = static_cast<std::uint8_t>(c >> 8);
    in[11] = static_cast<std::uint8_t>(c);
    TxView v;
    REQUIRE(v.init(kBaseId, s.lane_keys[0].get(), spec_of({false, false}), SizeHiding::off));
    std::uint64_t seq = 0;
    TxRef ref{&v, &seq};
    rte_mbuf* m = p3test::make_mbuf(frame_of(in));
    WireStatus st;
    REQUIRE(encap_burst(engine(), &m, &ref, 1, kEth, &st) == 1);
    Bytes f = p3test::mbuf_bytes(m);
    rte_pktmbuf_free(m);
    std::uint8_t* o = f.data() + kEth;
    o[1] = static_cast<std::uint8_t>((o[1] & 0xfc) | 3);   // a router set CE
    o[10] = o[11] = 0;
    const std::uint16_t oc = csum(o, 20);
    o[10] = static_cast<std::uint8_t>(oc >> 8);
    o[11] = static_cast<std::uint8_t>(oc);
    // Flat, it opens, CE is set, the checksum is right.
    rte_mbuf* flat = p3test::make_mbuf(f);
    REQUIRE(decap_one(flat, s.lane_keys[0].get(), SizeHiding::off).status == WireStatus::ok);
    const Bytes out = p3test::mbuf_bytes(flat);
    CHECK((out[kEth + 1] & 3) == 3);
    CHECK(csum(out.data() + kEth, 28) == 0);
    rte_pktmbuf_free(flat);
    // Cut after 20 of the 28 header bytes (first segment: link, outer, P3 header, 20 bytes).
    for (std::size_t first : {kEth + 20 + 16 + 20, kEth + 20 + 16 + 27}) {
        CAPTURE(first);
        rte_mbuf* chain = p3test::make_mbuf(f, first);
        REQUIRE(chain->nb_segs > 1);
        const DecapResult r = decap_one(chain, s.lane_keys[0].get(), SizeHiding::off);
        CHECK(r.status == WireStatus::bad_inner);
        CHECK(authenticated(r.status));
        rte_pktmbuf_free(chain);
    }
    // With the whole header in the first segment, the chain gives what the flat packet gave.
    rte_mbuf* chain = p3test::make_mbuf(f, kEth + 20 + 16 + 28);
    REQUIRE(decap_one(chain, s.lane_keys[0].get(), SizeHiding::off).status == WireStatus::ok);
    CHECK(p3test::mbuf_bytes(chain) == out);
    rte_pktmbuf_free(chain);
}

TEST_CASE("outbound refusals leave the packet as it was", "[wire]") {
    const Session s(16, 6);
    TxView v;
    REQUIRE(v.init(kBaseId, s.lane_keys[0].get(), spec_of({true, true}), SizeHiding::off));
    const Bytes in = inner_packet(false, 200, 0);
    struct Row {
        const char* what;
        std::uint64_t seq;
        int mangle;   // 0 none, 1 no headroom, 2 no tailroom, 3 version 5, 4 length mismatch, 5 too big
        WireStatus want;
    };
    const Row rows[] = {
        {"fine", 5, 0, WireStatus::ok},
        {"sequence at the hard limit", kSeqHardLimit - 1, 0, WireStatus::seq_exhausted},
        {"no headroom", 5, 1, WireStatus::no_room},
        {"no tailroom", 5, 2, WireStatus::no_room},
        {"not IP", 5, 3, WireStatus::bad_input},
        {"IP length disagrees with the mbuf", 5, 4, WireStatus::bad_input},
        {"too big", 5, 5, WireStatus::too_big},
    };
    for (const Row& r : rows) {
        SECTION(r.what) {
            Bytes f = frame_of(in);
            if (r.mangle == 3) f[kEth] = 0x55;
            if (r.mangle == 4) f.push_back(0);
            if (r.mangle == 5) f.resize(kEth + kMaxInnerLen + 1);
            rte_mbuf* m = p3test::make_mbuf(f);
            if (r.mangle == 1) {   // move the data to the front of the buffer
                std::memmove(static_cast<std::uint8_t*>(m->buf_addr) + 10, rte_pktmbuf_mtod(m, void*), m->data_len);
                m->data_off = 10;
            }
            if (r.mangle == 2) {   // 19 bytes left behind the data: pad 2 + trailer 2 + ICV 16 do not fit
                const std::uint16_t to = static_cast<std::uint16_t>(m->buf_len - m->data_len - 19);
                std::memmove(static_cast<std::uint8_t*>(m->buf_addr) + to, rte_pktmbuf_mtod(m, void*), m->data_len);
                m->data_off = to;
            }
            std::uint64_t seq = r.seq;
            TxRef ref{&v, &seq};
            WireStatus st;
            const Bytes before = p3test::mbuf_bytes(m);
            CHECK(encap_burst(engine(), &m, &ref, 1, kEth, &st) == (r.want == WireStatus::ok ? 1u : 0u));
            CHECK(st == r.want);
            if (r.want != WireStatus::ok) {
                CHECK(p3test::mbuf_bytes(m) == before);
                CHECK(seq == r.seq);
            }
            rte_pktmbuf_free(m);
        }
    }
}

TEST_CASE("outer parsing: what is P3, what is not", "[wire]") {
    const Session s(16, 7);
    const Bytes lm = lane_material(s, 0);
    const Bytes good4 = oracle_encode(inner_packet(false, 64, 0), 4, lm, 16, kBaseId, 1, false, 0);
    const Bytes good6 = oracle_encode(inner_packet(false, 64, 0), 4, lm, 16, kBaseId, 1, true, 0);
    auto with = [](Bytes b, std::size_t off, std::uint8_t v, bool fix_csum) {
        b[off] = v;
        if (fix_csum) {
            b[kEth + 10] = b[kEth + 11] = 0;
            const std::uint16_t c = csum(b.data() + kEth, 20);
            b[kEth + 10] = static_cast<std::uint8_t>(c >> 8);
            b[kEth + 11] = static_cast<std::uint8_t>(c);
        }
        return b;
    };
    Bytes padded = good4;
    padded.insert(padded.end(), 6, 0);   // Ethernet padding beyond the IP length
    Bytes keepalive = {0x45, 0, 0, 29, 0, 0, 0, 0, 64, 17, 0, 0, 192, 0, 2, 2, 192, 0, 2, 1, 0x11, 0x94, 0x11, 0x94, 0, 9, 0, 0, 0xff};
    {
        const std::uint16_t c = csum(keepalive.data(), 20);
        keepalive[10] = static_cast<std::uint8_t>(c >> 8);
        keepalive[11] = static_cast<std::uint8_t>(c);
        keepalive.insert(keepalive.begin(), kEth, 0);
    }
    Bytes other_port = keepalive;
    other_port[kEth + 22] = 0x01;   // destination port 0x0194
    struct Row {
        const char* what;
        Bytes frame;
        WireStatus want;
    };
    const Row rows[] = {
        {"IPv4 ESP", good4, WireStatus::ok},
        {"IPv6 ESP", good6, WireStatus::ok},
        {"link padding trimmed", padded, WireStatus::ok},
        {"bad IPv4 checksum", with(good4, kEth + 10, good4[kEth + 10] ^ 1, false), WireStatus::bad_outer},
        {"IPv4 fragment (MF)", with(good4, kEth + 6, 0x20, true), WireStatus::fragment},
        {"IPv4 protocol 6", with(good4, kEth + 9, 6, true), WireStatus::bad_outer},
        {"IPv4 total length too long", with(good4, kEth + 2, 0x7f, true), WireStatus::truncated},
        {"IPv4 header length 4", with(good4, kEth, 0x44, true), WireStatus::bad_outer},
        {"IPv6 fragment header", with(good6, kEth + 6, 44, false), WireStatus::fragment},
        {"IPv6 next header 6", with(good6, kEth + 6, 6, false), WireStatus::bad_outer},
        {"IP version 5", with(good4, kEth, 0x55, false), WireStatus::bad_outer},
        {"NAT keepalive", keepalive, WireStatus::nat_keepalive},
        {"UDP to another port", other_port, WireStatus::bad_outer},
        {"only an Ethernet header", Bytes(kEth, 0), WireStatus::bad_outer},
        {"truncated IPv4 header", Bytes(good4.begin(), good4.begin() + kEth + 12), WireStatus::truncated},
    };
    for (const Row& r : rows) {
        SECTION(r.what) {
            rte_mbuf* m = p3test::make_mbuf(r.frame);
            OuterInfo o;
            CHECK(parse_outer(m, kEth, 4500, o) == r.want);
            if (r.want == WireStatus::ok) {
                CHECK(m->pkt_len == (r.frame.size() == padded.size() ? good4.size() : r.frame.size()));
                CHECK(decap_one(m, s.lane_keys[0].get(), SizeHiding::off).status == WireStatus::ok);
            }
            rte_pktmbuf_free(m);
        }
    }
    // A P3 header too short for header + trailer + ICV.
    Bytes shortp = oracle_encode(inner_packet(false, 20, 0), 4, lm, 16, kBaseId, 1, false, 0);
    rte_mbuf* m = p3test::make_mbuf(Bytes(shortp.begin(), shortp.begin() + kEth + 20 + 33));
    P3Header h;
    CHECK(parse_p3(m, kEth + 20, h, false) == WireStatus::truncated);
    std::uint16_t off = kEth + 20;
    RxRef none{nullptr, SizeHiding::off};
    DecapResult d;
    rte_pktmbuf_free(m);
    m = p3test::make_mbuf(shortp);
    CHECK(decap_burst(engine(), &m, &off, &none, 1, kEth, &d) == 0);
    CHECK(d.status == WireStatus::no_key);
    rte_pktmbuf_free(m);
}

TEST_CASE("the Python decoder (p3_decode.py) reads what we write, and we read what it writes", "[wire][python]") {
    const char* py = "/usr/bin/python3";
    const std::string tool = std::string(P3_SOURCE_ROOT) + "/tests/tools/p3_decode.py";
    if (std::system((std::string(py) + " -c 'import scapy, cryptography' 2>/dev/null").c_str()) != 0) {
        WARN("skipped: /usr/bin/python3 with scapy and cryptography is not installed");
        return;
    }
    const Session s(16, 0x21);
    const std::string dir = "/tmp/p3wire-py-" + std::to_string(getpid());
    std::filesystem::create_directories(dir);
    struct Cleanup {
        std::string d;
        ~Cleanup() {
            std::error_code ec;
            std::filesystem::remove_all(d, ec);
        }
    } cleanup{dir};
    auto write_pcap = [](const std::string& path, const std::vector<Bytes>& frames) {
        std::ofstream f(path, std::ios::binary);
        const std::uint32_t gh[] = {0xa1b2c3d4, 0x00040002, 0, 0, 65535, 1};
        f.write(reinterpret_cast<const char*>(gh), 4);
        f.write(reinterpret_cast<const char*>(&gh[1]), 20);
        for (const Bytes& b : frames) {
            const std::uint32_t rh[] = {0, 0, static_cast<std::uint32_t>(b.size()), static_cast<std::uint32_t>(b.size())};
            f.write(reinterpret_cast<const char*>(rh), 16);
            f.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
        }
    };
    std::vector<Bytes> lan, wan;
    std::uint64_t seqs[4] = {};
    std::vector<std::unique_ptr<TxView>> views;
    for (std::uint32_t lane = 0; lane < 4; ++lane) {
        views.push_back(std::make_unique<TxView>());
        REQUIRE(views.back()->init(kBaseId + lane, s.lane_keys[lane].get(), spec_of({lane % 2 == 1, lane == 2}), SizeHiding::off));
    }
    for (unsigned i = 0; i < 24; ++i) {
        const std::uint32_t lane = i % 4;
        const Bytes in = inner_packet(i % 3 == 0, 40 + i * 53, static_cast<std::uint8_t>(i * 4), static_cast<std::uint8_t>(i));
        lan.push_back(frame_of(in));
        rte_mbuf* m = p3test::make_mbuf(frame_of(in));
        TxRef ref{views[lane].get(), &seqs[lane]};
        WireStatus st;
        REQUIRE(encap_burst(engine(), &m, &ref, 1, kEth, &st) == 1);
        Bytes f = p3test::mbuf_bytes(m);
        f[12] = views[lane]->outer_v6() ? 0x86 : 0x08;   // the EtherType the caller sets
        f[13] = views[lane]->outer_v6() ? 0xdd : 0x00;
        wan.push_back(f);
        rte_pktmbuf_free(m);
    }
    write_pcap(dir + "/lan.pcap", lan);
    write_pcap(dir + "/wan.pcap", wan);
    char idbuf[16];
    std::snprintf(idbuf, sizeof idbuf, "0x%x", kBaseId);
    auto hexs = [](const Bytes& b) {
        std::string out;
        char t[3];
        for (std::uint8_t c : b) std::snprintf(t, 3, "%02x", c), out += t;
        return out;
    };
    const std::string common = " --key " + hexs(s.key) + " --salt " + hexs(s.salt) + " --id " + idbuf;
    const std::string dec = std::string(py) + " " + tool + " decode " + dir + "/wan.pcap --lanes 4 --compare " + dir +
                            "/lan.pcap" + common + " > " + dir + "/decode.txt 2>&1";
    const int rc = std::system(dec.c_str());
    std::ifstream out(dir + "/decode.txt");
    std::string text((std::istreambuf_iterator<char>(out)), std::istreambuf_iterator<char>());
    INFO(text);
    CHECK(WEXITSTATUS(rc) == 0);

    // The other direction: its encoder's packets through our decapsulation.
    const std::string enc = std::string(py) + " " + tool + " encode " + dir + "/lan.pcap " + dir + "/enc.pcap --src 192.0.2.2 --dst 192.0.2.1" +
                            common + " > /dev/null 2>&1";
    REQUIRE(WEXITSTATUS(std::system(enc.c_str())) == 0);
    std::ifstream ef(dir + "/enc.pcap", std::ios::binary);
    Bytes all((std::istreambuf_iterator<char>(ef)), std::istreambuf_iterator<char>());
    std::size_t pos = 24, k = 0;
    while (pos + 16 <= all.size()) {
        std::uint32_t incl;
        std::memcpy(&incl, &all[pos + 8], 4);
        Bytes fr(all.begin() + static_cast<long>(pos + 16), all.begin() + static_cast<long>(pos + 16 + incl));
        pos += 16 + incl;
        rte_mbuf* m = p3test::make_mbuf(fr);
        CAPTURE(k);
        REQUIRE(decap_one(m, s.lane_keys[0].get(), SizeHiding::off).status == WireStatus::ok);
        const Bytes got = p3test::mbuf_bytes(m);
        CHECK(Bytes(got.begin() + kEth, got.end()) == Bytes(lan[k].begin() + kEth, lan[k].end()));
        CHECK(std::equal(got.begin(), got.begin() + kEth, fr.begin()));   // its link header kept
        rte_pktmbuf_free(m);
        ++k;
    }
    CHECK(k == lan.size());
}

TEST_CASE("inbound plaintext longer than any sender makes is refused before decryption", "[wire]") {
    const Session s(16, 13);
    const Bytes lm = lane_material(s, 0);
    for (std::size_t len : {kMaxInnerLen, kMaxPlainLen - 2 + 1}) {
        CAPTURE(len);
        const Bytes f = oracle_encode(inner_packet(false, len, 0), 4, lm, 16, kBaseId, 1, false, 0, 0);
        rte_mbuf* m = p3test::make_mbuf(f);
        const DecapResult d = decap_one(m, s.lane_keys[0].get(), SizeHiding::off);
        CHECK(d.status == (len + 2 > kMaxPlainLen ? WireStatus::too_big : WireStatus::ok));
        rte_pktmbuf_free(m);
    }
}

TEST_CASE("a TX view never initialised (or refused by init) seals nothing and leaves the packet", "[wire]") {
    TxView unset;
    TxView refused;
    CHECK_FALSE(refused.init(kBaseId, nullptr, spec_of({false, false}), SizeHiding::off));
    for (TxView* v : {&unset, &refused}) {
        std::uint64_t seq = 0;
        TxRef ref{v, &seq};
        const Bytes orig = frame_of(inner_packet(false, 64, 0x11));
        rte_mbuf* m = p3test::make_mbuf(orig);
        WireStatus st = WireStatus::ok;
        CHECK(encap_burst(engine(), &m, &ref, 1, kEth, &st) == 0);
        CHECK(st == WireStatus::bad_input);
        CHECK(encap_dummy(engine(), m, ref, kEth) == WireStatus::bad_input);
        CHECK(seq == 0);
        CHECK(p3test::mbuf_bytes(m) == orig);
        rte_pktmbuf_free(m);
    }
}

// The receiver's second try during a rekey (docs/key-slots.md): a packet opened under the
// wrong key fails and its bytes are garbage (the open runs in place); restore_failed gives
// back the ciphertext exactly as received, and it then opens under its own key. Flat and
// chained, with and without size hiding.
TEST_CASE("a packet that failed under another key is restored byte for byte and opens under its own", "[wire]") {
    p3test::wire_pool();
    const Session s(16, 4);
    for (bool hide : {false, true})
        for (std::size_t seg : {0ul, 100ul, 333ul})   // chained: the inner header in the first segment
            for (std::size_t len : {28ul, 700ul, 1400ul}) {
                CAPTURE(hide, seg, len);
                const SizeHiding sh = hide ? SizeHiding::on : SizeHiding::off;
                const Bytes in = inner_packet(false, len, 0x10);
                TxView v;
                REQUIRE(v.init(kBaseId + 1, s.lane_keys[1].get(), spec_of({false, false}), sh));
                std::uint64_t seq = 7000;
                rte_mbuf* m = p3test::make_mbuf(frame_of(in));
                TxRef ref{&v, &seq};
                WireStatus st;
                REQUIRE(encap_burst(engine(), &m, &ref, 1, kEth, &st) == 1);
                const Bytes sealed = p3test::mbuf_bytes(m);
                rte_pktmbuf_free(m);
                m = seg ? p3test::make_mbuf(sealed, seg) : p3test::make_mbuf(sealed);
                if (seg && sealed.size() > seg) REQUIRE(m->nb_segs > 1);
                // Under lane 0's key: the tag fails, the bytes were changed in place.
                REQUIRE(decap_one(m, s.lane_keys[0].get(), sh).status == WireStatus::auth);
                CHECK(p3test::mbuf_bytes(m) != sealed);
                OuterInfo o;
                REQUIRE(parse_outer(m, kEth, 4500, o) == WireStatus::ok);
                REQUIRE(restore_failed(engine(), m, o.p3_off, *s.lane_keys[0]));
                CHECK(p3test::mbuf_bytes(m) == sealed);
                // Under its own key it opens as if nothing had happened.
                REQUIRE(decap_one(m, s.lane_keys[1].get(), sh).status == WireStatus::ok);
                CHECK(p3test::mbuf_bytes(m) == frame_of(in));
                rte_pktmbuf_free(m);
            }
}
