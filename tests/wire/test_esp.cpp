// Standard ESP in the wire core (RFC 4303 tunnel mode, RFC 4106 AES-GCM-16, RFC 3948 UDP;
// docs/wire-format.md §Standard ESP), against independent implementations: what p3d seals is
// taken apart byte by byte and opened with OpenSSL EVP; what OpenSSL seals with a random IV
// (and scapy's ESP vector, shared/peers/strongswan/scapy-esp-vector.py) p3d opens. Then the ESN
// inference (RFC 4303 Appendix A) as a numbered table, the ESN wrap across 2^32 both ways, the
// no-ESN sender's stop at 2^32 - 1, replay, and every malformed length.
#include <catch2/catch.hpp>

#include <openssl/rand.h>

#include "common/bytes.hpp"
#include "common/replay.hpp"
#include "common/wire.hpp"
#include "tests/wire/test_wire_util.hpp"

using namespace p3::wire;
using p3::IpAddr;
using p3test::Bytes;
using p3test::hex;

namespace {

constexpr unsigned kEth = 14;
constexpr std::uint32_t kSpi = 0x00c0ffee;

GcmEngine& esp_engine() {
    static GcmEngine::Ptr e = GcmEngine::make();
    return *e;
}

std::uint32_t be32(const std::uint8_t* p) { return p3::be::get32(p); }
std::uint64_t be64(const std::uint8_t* p) { return p3::be::get64(p); }
void put32(std::uint8_t* p, std::uint32_t v) { p3::be::put32(p, v); }

Bytes inner4(std::size_t len, std::uint8_t seed = 3) {
    Bytes p(len);
    for (std::size_t i = 0; i < len; ++i) p[i] = static_cast<std::uint8_t>(seed + i * 13);
    p[0] = 0x45;
    p[1] = 0;
    p[2] = static_cast<std::uint8_t>(len >> 8);
    p[3] = static_cast<std::uint8_t>(len);
    p[6] = 0x40;
    p[7] = 0;
    p[8] = 64;
    p[9] = 17;
    p[10] = p[11] = 0;
    return p;
}

// AAD of RFC 4106 §5: SPI || Seq low, or SPI || Seq high || Seq low with ESN.
Bytes esp_aad(std::uint32_t spi, std::uint64_t seq, bool esn) {
    Bytes a(esn ? 12 : 8);
    put32(a.data(), spi);
    if (esn) {
        put32(a.data() + 4, static_cast<std::uint32_t>(seq >> 32));
        put32(a.data() + 8, static_cast<std::uint32_t>(seq));
    } else {
        put32(a.data() + 4, static_cast<std::uint32_t>(seq));
    }
    return a;
}

// An ESP frame sealed by OpenSSL: [eth][IPv4 192.0.2.2 -> 192.0.2.1, protocol 50 or UDP
// 4500][SPI][seq low][iv][ct][icv].
Bytes ossl_esp(const Bytes& key, const Bytes& salt, std::uint32_t spi, std::uint64_t seq, bool esn, const Bytes& iv,
               const Bytes& inner, std::uint8_t nh = 4, bool udp = false) {
    Bytes pt = inner;
    const std::size_t pad = (4 - (inner.size() + 2) % 4) % 4;
    for (std::size_t i = 0; i < pad; ++i) pt.push_back(static_cast<std::uint8_t>(i + 1));
    pt.push_back(static_cast<std::uint8_t>(pad));
    pt.push_back(nh);
    Bytes nonce = salt;
    nonce.insert(nonce.end(), iv.begin(), iv.end());
    const Bytes ct = p3test::ossl_seal(key, nonce, esp_aad(spi, seq, esn), pt);
    Bytes esp(8);
    put32(esp.data(), spi);
    put32(esp.data() + 4, static_cast<std::uint32_t>(seq));
    esp.insert(esp.end(), iv.begin(), iv.end());
    esp.insert(esp.end(), ct.begin(), ct.end());
    Bytes f(kEth, 0xcc);
    Bytes ip = {0x45, 0, 0, 0, 0, 1, 0, 0, 64, static_cast<std::uint8_t>(udp ? 17 : 50), 0, 0, 192, 0, 2, 2, 192, 0, 2, 1};
    Bytes body;
    if (udp) {
        body = {0x11, 0x94, 0x11, 0x94, 0, 0, 0, 0};
        p3::be::put16(body.data() + 4, static_cast<std::uint16_t>(8 + esp.size()));
    }
    body.insert(body.end(), esp.begin(), esp.end());
    p3::be::put16(ip.data() + 2, static_cast<std::uint16_t>(20 + body.size()));
    std::uint32_t acc = 0;
    for (int i = 0; i < 20; i += 2) acc += (std::uint32_t(ip[i]) << 8) | ip[i + 1];
    while (acc >> 16) acc = (acc & 0xffff) + (acc >> 16);
    p3::be::put16(ip.data() + 10, static_cast<std::uint16_t>(~acc));
    f.insert(f.end(), ip.begin(), ip.end());
    f.insert(f.end(), body.begin(), body.end());
    return f;
}

struct Opened {
    WireStatus status;
    Bytes inner;
};
// Opens a frame with p3d's ESP variant (parse_outer, parse_esp, decap_burst with the full seq).
Opened p3_open(const Bytes& frame, const GcmKey& k, WireKind kind, std::uint64_t full_seq) {
    rte_mbuf* m = p3test::make_mbuf(frame);
    OuterInfo o;
    WireStatus s = parse_outer(m, kEth, 4500, o);
    EspHeader h;
    if (s == WireStatus::ok) s = parse_esp(m, o.p3_off, h);
    Opened r{s, {}};
    if (s == WireStatus::ok) {
        RxRef rx(&k, SizeHiding::off, kind);
        DecapResult d;
        decap_burst(esp_engine(), &m, &o.p3_off, &rx, 1, kEth, &d, L2::keep, &full_seq);
        r.status = d.status;
        if (d.status == WireStatus::ok) {
            Bytes all = p3test::mbuf_bytes(m);
            r.inner.assign(all.begin() + kEth, all.end());
        }
    }
    rte_pktmbuf_free(m);
    return r;
}

struct Sealed {
    WireStatus status;
    Bytes frame;
};
Sealed p3_seal(const GcmKey& k, WireKind kind, std::uint64_t& counter, const Bytes& inner, bool udp = false,
               bool v6 = false) {
    TxView v;
    OuterSpec os;
    os.src = *IpAddr::parse(v6 ? "2001:db8::1" : "192.0.2.1");
    os.dst = *IpAddr::parse(v6 ? "2001:db8::2" : "192.0.2.2");
    if (udp) os.udp_src = os.udp_dst = 4500;
    REQUIRE(v.init(kSpi, &k, os, SizeHiding::off, 0, kind));
    Bytes f(kEth + inner.size(), 0xee);
    std::copy(inner.begin(), inner.end(), f.begin() + kEth);
    rte_mbuf* m = p3test::make_mbuf(f);
    TxRef ref{&v, &counter};
    WireStatus st;
    encap_burst(esp_engine(), &m, &ref, 1, kEth, &st);
    Sealed r{st, st == WireStatus::ok ? p3test::mbuf_bytes(m) : Bytes{}};
    rte_pktmbuf_free(m);
    return r;
}

}  // namespace

TEST_CASE("ESP: Seq high inferred from the window (RFC 4303 Appendix A2.2)", "[wire][esp]") {
    constexpr std::uint64_t E = std::uint64_t{1} << 32;
    struct Row {
        int n;
        std::uint64_t top;
        std::uint32_t w;
        std::uint32_t low;
        std::uint64_t want;
    };
    const Row rows[] = {
        {1, 0, 64, 1, 1},                               // first packet
        {2, 100, 64, 101, 101},                         // case A, ahead
        {3, 100, 64, 37, 37},                           // case A, bottom of the window
        {4, 100, 64, 36, E + 36},                       // case A, below the window: next epoch
        {5, 0xffffffff, 64, 0, E},                      // wrap: 2^32 - 1 then low 0
        {6, 0xffffffff, 64, 0xffffffc0, 0xffffffc0},    // the window's bottom, still epoch 0
        {7, 0xfffffff0, 64, 5, E + 5},                  // ahead across the wrap
        {8, E + 3, 64, 0xfffffff0, 0xfffffff0},         // case B: late packet of the epoch before
        {9, E + 3, 64, 2, E + 2},                       // case B, in this epoch
        {10, E + 3, 64, 0xffffffc4, 0xffffffc4},        // case B, bottom of the window (Tl - W + 1)
        {11, E + 3, 64, 0xffffffc3, E + 0xffffffc3},    // case B, just below it: this epoch, far ahead
        {12, 3, 64, 0xfffffff0, 0xfffffff0},            // case B in epoch 0: no epoch -1
        {13, 5 * E + 7, 1024, 7, 5 * E + 7},            // a duplicate of top
        {14, 5 * E + 2000, 1024, 977, 5 * E + 977},     // bottom of a 1024 window
        {15, 5 * E + 2000, 1024, 976, 6 * E + 976},     // below it: next epoch
    };
    for (const Row& r : rows) {
        INFO("row " << r.n);
        CHECK(esn_seq(r.top, r.w, r.low) == r.want);
    }
}

TEST_CASE("ESP: what p3d seals, OpenSSL opens: header, IV = sequence, AAD of 8 or 12 bytes", "[wire][esp]") {
    const Bytes key = hex("2b7e151628aed2a6abf7158809cf4f3c"), salt = hex("cafebabe");
    GcmKey k(key, salt);
    REQUIRE(k.valid());
    for (const bool esn : {false, true}) {
        for (const int outer : {0, 1, 2}) {   // IPv4 native, IPv4 UDP, IPv6 native
            const bool udp = outer == 1, v6 = outer == 2;
            // ESN: across 2^32 (Seq low wraps to 0, Seq high 1); without: near its end.
            std::uint64_t counter = esn ? 0xfffffffdull : 0xfffffff0ull;
            for (int i = 0; i < 4; ++i) {
                INFO("esn " << esn << " outer " << outer << " packet " << i);
                const Bytes inner = inner4(60 + static_cast<std::size_t>(i) * 5);
                const Sealed s = p3_seal(k, esn ? WireKind::esp_esn : WireKind::esp, counter, inner, udp, v6);
                REQUIRE(s.status == WireStatus::ok);
                const std::uint64_t seq = counter;   // the sequence just used
                const std::size_t ip = v6 ? 40 : 20;
                const std::uint8_t* f = s.frame.data() + kEth;
                CHECK(f[v6 ? 6 : 9] == (udp ? 17 : 50));
                const std::size_t eo = kEth + ip + (udp ? 8 : 0);
                const std::uint8_t* e = s.frame.data() + eo;
                CHECK(be32(e) == kSpi);                                   // SPI: never with the top bit
                CHECK(be32(e + 4) == static_cast<std::uint32_t>(seq));    // Seq low
                CHECK(be64(e + 8) == seq);                                // IV = the 64-bit sequence
                Bytes nonce = salt;
                nonce.insert(nonce.end(), e + 8, e + 16);
                const Bytes ct(e + 16, s.frame.data() + s.frame.size());
                Bytes pt;
                REQUIRE(p3test::ossl_open(key, nonce, esp_aad(kSpi, seq, esn), ct, pt));
                // The other AAD length never verifies: the kind is on the wire.
                Bytes dummy;
                CHECK_FALSE(p3test::ossl_open(key, nonce, esp_aad(kSpi, seq, !esn), ct, dummy));
                REQUIRE(pt.size() >= inner.size() + 2);
                CHECK(pt.back() == 4);                                    // next header IPv4
                const std::size_t pad = pt[pt.size() - 2];
                CHECK((inner.size() + pad + 2) % 4 == 0);
                CHECK(pad <= 3);
                for (std::size_t j = 0; j < pad; ++j) CHECK(pt[inner.size() + j] == j + 1);   // RFC 4303 default
                CHECK(Bytes(pt.begin(), pt.begin() + static_cast<long>(inner.size())) == inner);
                // And p3d opens its own packet under the sequence the receiver infers.
                const Opened o = p3_open(s.frame, k, esn ? WireKind::esp_esn : WireKind::esp, seq);
                CHECK(o.status == WireStatus::ok);
                CHECK(o.inner == inner);
            }
        }
    }
}

TEST_CASE("ESP: packets OpenSSL seals with random IVs, p3d opens (ESN and not)", "[wire][esp]") {
    for (const std::size_t klen : {16u, 32u}) {
        Bytes key(klen), salt(4);
        RAND_bytes(key.data(), static_cast<int>(key.size()));
        RAND_bytes(salt.data(), 4);
        GcmKey k(key, salt);
        for (const bool esn : {false, true}) {
            for (const bool udp : {false, true}) {
                for (const std::uint64_t seq : {std::uint64_t{1}, std::uint64_t{77}, (std::uint64_t{3} << 32) | 5}) {
                    if (!esn && seq > 0xffffffffu) continue;
                    INFO("key " << klen << " esn " << esn << " udp " << udp << " seq " << seq);
                    Bytes iv(8);
                    RAND_bytes(iv.data(), 8);
                    const Bytes inner = inner4(100);
                    const Bytes f = ossl_esp(key, salt, kSpi, seq, esn, iv, inner, 4, udp);
                    const WireKind kind = esn ? WireKind::esp_esn : WireKind::esp;
                    const Opened o = p3_open(f, k, kind, seq);
                    CHECK(o.status == WireStatus::ok);
                    CHECK(o.inner == inner);
                    if (esn) {   // the wrong Seq high fails the tag: nothing else tells
                        CHECK(p3_open(f, k, kind, seq + (std::uint64_t{1} << 32)).status == WireStatus::auth);
                    }
                    // A flipped bit of SPI, Seq low, IV, ciphertext or ICV: auth.
                    for (const std::size_t at : {0u, 7u, 12u, 20u}) {
                        Bytes g = f;
                        const std::size_t eo = kEth + 20 + (udp ? 8 : 0);
                        g[eo + at] ^= 0x10;
                        CHECK(p3_open(g, k, kind, seq).status == WireStatus::auth);
                    }
                    Bytes g = f;
                    g.back() ^= 1;
                    CHECK(p3_open(g, k, kind, seq).status == WireStatus::auth);
                }
            }
        }
    }
}

TEST_CASE("ESP: scapy's ESP vector (strongSwan's peer script) opens in p3d", "[wire][esp]") {
    // shared/peers/strongswan/scapy-esp-vector.py: AES-128-GCM-16, SPI 0x1001 / 0x1002, seq 1,
    // IV 0001020304050607 (not the sequence), protocol 50 and UDP 4500.
    const Bytes key = hex("000102030405060708090a0b0c0d0e0f"), salt = hex("a0a1a2a3");
    const Bytes inner = hex(
        "45000054123440004001146f0a0100020a0200020800bea942420001000102030405060708090a0b0c0d0e0f10111213141516"
        "1718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f3031323334353637");
    const std::string tail =
        "0000000100010203040506073327306798e488f29e4ad1c844a3c5e9aae1710c4acdfe54de780c6e7f49a0138f10148c7e50a3"
        "6f6ce83f00d13c4269cbf287c985f8a0d53f6acc7e581aafc6955a4dbb7f11bee074b2aed746f1bd036956e26354af400b";
    const Bytes native = hex("4500008c000100004032f63bc0000201c000020200001001" + tail + "d19c1526e5fe4819f17048de5fb3ff08");
    const Bytes udp = hex("45000094000100004011f654c0000201c00002021194119400800000" + std::string("00001002") + tail +
                          "4c64e1f40ad155fb7266ed19281f8660");
    GcmKey k(key, salt);
    for (const Bytes* p : {&native, &udp}) {
        Bytes f(kEth, 0);
        f.insert(f.end(), p->begin(), p->end());
        // The vector is addressed to 192.0.2.2: parse_outer does not look at the destination.
        const Opened o = p3_open(f, k, WireKind::esp, 1);
        CHECK(o.status == WireStatus::ok);
        CHECK(o.inner == inner);
        CHECK(p3_open(f, k, WireKind::esp_esn, 1).status == WireStatus::auth);   // 12-byte AAD: no
    }
}

TEST_CASE("ESP: ESN wrap across 2^32 at the receiver, both ways, with the replay window", "[wire][esp]") {
    const Bytes key = hex("00112233445566778899aabbccddeeff"), salt = hex("01020304");
    GcmKey k(key, salt);
    std::vector<std::uint64_t> words(ReplayWindow::words_for(64));
    ReplayWindow w(64, words.data());
    auto receive = [&](std::uint64_t sent, std::uint32_t low_on_wire) {
        Bytes iv(8, 0x5c);
        const Bytes f = ossl_esp(key, salt, kSpi, sent, true, iv, inner4(40));
        const std::uint64_t seq = esn_seq(w.top(), w.size(), low_on_wire);
        if (w.check(seq) != ReplayResult::ok) return std::string("replay");
        const Opened o = p3_open(f, k, WireKind::esp_esn, seq);
        if (!authenticated(o.status)) return std::string("auth");
        if (w.update(seq) != ReplayResult::ok) return std::string("replay");
        return std::string("ok ") + std::to_string(seq);
    };
    constexpr std::uint64_t E = std::uint64_t{1} << 32;
    auto low = [](std::uint64_t s) { return static_cast<std::uint32_t>(s); };
    // Forward across the wrap.
    for (std::uint64_t s = E - 3; s <= E + 2; ++s) CHECK(receive(s, low(s)) == "ok " + std::to_string(s));
    // Backward: late packets of the epoch before, still in the window, and their replays.
    CHECK(receive(E - 10, low(E - 10)) == "ok " + std::to_string(E - 10));
    CHECK(receive(E - 10, low(E - 10)) == "replay");
    CHECK(receive(E - 2, low(E - 2)) == "replay");
    CHECK(receive(E + 1, low(E + 1)) == "replay");
    // Older than the window: inferred as the next epoch, whose tag cannot verify.
    CHECK(receive(E - 100, low(E - 100)) == "auth");
}

TEST_CASE("ESP: a sender without ESN stops at 2^32 - 1; with ESN it goes on", "[wire][esp]") {
    GcmKey k(hex("00112233445566778899aabbccddeeff"), hex("01020304"));
    std::uint64_t counter = 0xfffffffeull;
    CHECK(p3_seal(k, WireKind::esp, counter, inner4(40)).status == WireStatus::ok);
    CHECK(counter == 0xffffffffull);
    CHECK(p3_seal(k, WireKind::esp, counter, inner4(40)).status == WireStatus::seq_exhausted);
    CHECK(counter == 0xffffffffull);   // refused: nothing sent, nothing counted
    CHECK(p3_seal(k, WireKind::esp_esn, counter, inner4(40)).status == WireStatus::ok);
    CHECK(counter == 0x100000000ull);
    // ESP has no size hiding.
    TxView v;
    OuterSpec os{*IpAddr::parse("192.0.2.1"), *IpAddr::parse("192.0.2.2")};
    CHECK_FALSE(v.init(kSpi, &k, os, SizeHiding::on, 0, WireKind::esp));
    CHECK(v.init(kSpi, &k, os, SizeHiding::off, 0, WireKind::esp));
}

TEST_CASE("ESP: every malformed length is refused before or at the tag", "[wire][esp]") {
    const Bytes key = hex("00112233445566778899aabbccddeeff"), salt = hex("01020304");
    GcmKey k(key, salt);
    const Bytes good = ossl_esp(key, salt, kSpi, 9, false, Bytes(8, 1), inner4(40));
    const std::size_t eo = kEth + 20;
    // ESP payload of n bytes, n = 0 .. the good length - 1, the IP length set to match.
    for (std::size_t n = 0; n + eo < good.size(); ++n) {
        INFO("ESP bytes " << n);
        Bytes f(good.begin(), good.begin() + static_cast<long>(eo + n));
        p3::be::put16(f.data() + kEth + 2, static_cast<std::uint16_t>(20 + n));
        f[kEth + 10] = f[kEth + 11] = 0;
        std::uint32_t acc = 0;
        for (int i = 0; i < 20; i += 2) acc += (std::uint32_t(f[kEth + i]) << 8) | f[kEth + i + 1];
        while (acc >> 16) acc = (acc & 0xffff) + (acc >> 16);
        p3::be::put16(f.data() + kEth + 10, static_cast<std::uint16_t>(~acc));
        rte_mbuf* m = p3test::make_mbuf(f);
        OuterInfo o;
        REQUIRE(parse_outer(m, kEth, 4500, o) == WireStatus::ok);
        EspHeader h;
        const WireStatus ps = parse_esp(m, o.p3_off, h);
        // Header (16) + pad length + next header (2) + ICV (16) is the least a packet has.
        CHECK((ps == WireStatus::truncated) == (n < kEspHeaderLen + kTrailerFixed + kIcvLen));
        // decap_burst refuses the same without the caller's parse, and never reads past the end.
        RxRef rx(&k, SizeHiding::off, WireKind::esp);
        DecapResult d;
        std::uint64_t seq = 9;
        decap_burst(esp_engine(), &m, &o.p3_off, &rx, 1, kEth, &d, L2::keep, &seq);
        if (n < kEspHeaderLen + kTrailerFixed + kIcvLen) CHECK(d.status == WireStatus::truncated);
        else CHECK(d.status == WireStatus::auth);   // cut ciphertext: the tag fails
        rte_pktmbuf_free(m);
    }
    // Authentic but wrong inside: pad length beyond the plaintext, unknown next header, inner
    // length disagreeing, dummy.
    struct Row {
        const char* what;
        Bytes inner;
        std::uint8_t nh;
        WireStatus want;
    };
    Bytes shortlen = inner4(40);
    shortlen[3] = 39;
    const Row rows[] = {
        {"next header 17", inner4(40), 17, WireStatus::bad_trailer},
        {"inner length disagrees", shortlen, 4, WireStatus::bad_inner},
        {"dummy (TFC padding)", inner4(40), 59, WireStatus::dummy},
        {"IPv4 said to be IPv6", inner4(40), 41, WireStatus::bad_inner},
    };
    for (const Row& r : rows) {
        INFO(r.what);
        const Opened o = p3_open(ossl_esp(key, salt, kSpi, 3, false, Bytes(8, 2), r.inner, r.nh), k, WireKind::esp, 3);
        CHECK(o.status == r.want);
        CHECK(authenticated(o.status));
    }
    // Pad length 255 over a short plaintext (sealed by hand: ossl_esp pads correctly).
    Bytes pt = inner4(40);
    pt.push_back(255);
    pt.push_back(4);
    Bytes nonce = salt;
    const Bytes iv(8, 3);
    nonce.insert(nonce.end(), iv.begin(), iv.end());
    Bytes f = ossl_esp(key, salt, kSpi, 4, false, iv, inner4(40));
    const Bytes ct = p3test::ossl_seal(key, nonce, esp_aad(kSpi, 4, false), pt);
    f.resize(eo + 16);
    f.insert(f.end(), ct.begin(), ct.end());
    p3::be::put16(f.data() + kEth + 2, static_cast<std::uint16_t>(f.size() - kEth));
    f[kEth + 10] = f[kEth + 11] = 0;
    std::uint32_t acc = 0;
    for (int i = 0; i < 20; i += 2) acc += (std::uint32_t(f[kEth + i]) << 8) | f[kEth + i + 1];
    while (acc >> 16) acc = (acc & 0xffff) + (acc >> 16);
    p3::be::put16(f.data() + kEth + 10, static_cast<std::uint16_t>(~acc));
    CHECK(p3_open(f, k, WireKind::esp, 4).status == WireStatus::bad_trailer);
}
