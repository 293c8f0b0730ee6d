// Standard ESP sessions on two dataplanes back to back (the rig of test_tunnel.cpp: A and B,
// two workers and two queues each, the test as the wire and as both control threads). The
// sessions start on static P3 keys; the test clears them and sets up ESP SAs through the
// ControlPort calls the IKE side uses (reserve_rx_ids(1), esp_install_rx, esp_install_tx,
// esp_remove_rx, clear_keys), then checks: traffic both ways; both workers of a side send
// under the one SA and no sequence repeats; every packet opens under an independent
// implementation (OpenSSL EVP, RFC 4106 AAD); make-before-break of a rekey loses nothing and
// a packet under the removed SPI is dropped; clear_keys drops all.
#include <openssl/evp.h>

#include <set>

#include "bench.hpp"
#include "common/bytes.hpp"
#include "common/wire_limits.hpp"
#include "tests/dataplane/tunnel_rig.hpp"

using namespace p3test;
using namespace p3test::tunnel;
using p3::dp::Drop;
using p3::dp::EspSa;

namespace {

struct SaKeys {
    Bytes key, salt;
    std::span<const std::uint8_t> k() const { return key; }
    std::span<const std::uint8_t> s() const { return salt; }
};
SaKeys sa_keys(std::uint8_t seed, std::size_t klen = 16) {
    SaKeys r;
    for (std::size_t i = 0; i < klen; ++i) r.key.push_back(static_cast<std::uint8_t>(seed * 17 + i));
    for (std::size_t i = 0; i < 4; ++i) r.salt.push_back(static_cast<std::uint8_t>(seed + 100 + i));
    return r;
}

// OpenSSL EVP AES-GCM open of an ESP packet (RFC 4106): nonce = salt || IV from the packet,
// AAD = SPI || [Seq high ||] Seq low. true when the tag verifies and the trailer is sane.
bool ossl_open_esp(const SaKeys& k, const std::uint8_t* esp, std::size_t len, std::uint32_t seq_high, bool esn) {
    if (len < 16 + 2 + 16) return false;
    std::uint8_t aad[12], nonce[12];
    std::memcpy(aad, esp, 4);
    std::size_t aad_len = 8;
    if (esn) {
        p3::be::put32(aad + 4, seq_high);
        std::memcpy(aad + 8, esp + 4, 4);
        aad_len = 12;
    } else {
        std::memcpy(aad + 4, esp + 4, 4);
    }
    std::memcpy(nonce, k.salt.data(), 4);
    std::memcpy(nonce + 4, esp + 8, 8);
    const std::size_t n = len - 16 - 16;
    std::vector<std::uint8_t> pt(n + 16);
    EVP_CIPHER_CTX* c = EVP_CIPHER_CTX_new();
    int out = 0;
    EVP_DecryptInit_ex(c, k.key.size() == 16 ? EVP_aes_128_gcm() : EVP_aes_256_gcm(), nullptr, nullptr, nullptr);
    EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_IVLEN, 12, nullptr);
    EVP_DecryptInit_ex(c, nullptr, nullptr, k.key.data(), nonce);
    EVP_DecryptUpdate(c, nullptr, &out, aad, static_cast<int>(aad_len));
    EVP_DecryptUpdate(c, pt.data(), &out, esp + 16, static_cast<int>(n));
    EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, 16, const_cast<std::uint8_t*>(esp + 16 + n));
    const bool ok = EVP_DecryptFinal_ex(c, pt.data() + n, &out) == 1;
    EVP_CIPHER_CTX_free(c);
    return ok && (pt[n - 1] == 4 || pt[n - 1] == 41) && pt[n - 2] + 2u <= n;
}

// An ESP packet as it left A's WAN (outer IPv4, protocol 50).
struct Esp {
    unsigned ring;
    Bytes frame;
    std::uint32_t spi() const { return p3::be::get32(frame.data() + 34); }
    std::uint32_t seq_low() const { return p3::be::get32(frame.data() + 38); }
    std::uint64_t iv() const { return p3::be::get64(frame.data() + 42); }
};

// Both ends of the rig with their sessions, moved from static P3 keys to ESP SAs.
struct EspRig {
    Tunnel t{"e", false, false};
    p3::SessionId sa, sb;   // A's session of B, B's session of A
    EspRig() {
        sa = p3::SessionId(t.a.dp->session_of(2));
        sb = p3::SessionId(t.b.dp->session_of(1));
        REQUIRE(sa.raw() != 0);
        REQUIRE(sb.raw() != 0);
        pa().clear_keys(sa);
        pb().clear_keys(sb);
    }
    p3::dp::ControlPort& pa() { return t.a.dp->control_port(); }
    p3::dp::ControlPort& pb() { return t.b.dp->control_port(); }
    // An inbound SA at `to` (SPI reserved there) and the matching outbound one at `from`.
    std::uint32_t child(p3::dp::ControlPort& to, p3::SessionId to_sid, p3::dp::ControlPort& from,
                        p3::SessionId from_sid, const SaKeys& k, bool esn) {
        const auto spi = to.reserve_rx_ids(1);
        REQUIRE(spi);
        CHECK(spi->raw() < p3::wire::kFlagUdp);
        CHECK(spi->raw() >= 256u);
        REQUIRE(to.esp_install_rx(to_sid, EspSa{spi->raw(), k.k(), k.s(), esn}));
        REQUIRE(from.esp_install_tx(from_sid, EspSa{spi->raw(), k.k(), k.s(), esn}));
        return spi->raw();
    }
    // n packets into A's LAN, spread over both queues (so both workers send), caught on A's WAN.
    std::vector<Esp> send_a(unsigned n, std::uint8_t fill) {
        for (unsigned i = 0; i < n; ++i)
            inject(t.a.lan.rx[i % 2], packet(t.a.lan_mac, false, "10.1.5.7", "10.2.5.9", 80 + i % 50,
                                             static_cast<std::uint8_t>(fill + i)));
        std::vector<Esp> got;
        for (int i = 0; i < 1000 && got.size() < n; ++i) {
            for (auto& f : grab(t.a.wan.tx)) got.push_back({f.ring, std::move(f.bytes)});
            if (got.size() < n) std::this_thread::sleep_for(std::chrono::milliseconds(1));
        }
        return got;
    }
    // Frames into B's WAN; returns what came out of B's LAN.
    std::vector<Bytes> to_b(const std::vector<Esp>& v) {
        for (const Esp& e : v) {
            Bytes f = e.frame;
            std::memcpy(f.data(), t.b.wan_mac.b, 6);
            inject(t.b.wan.rx[e.ring % t.b.wan.rx.size()], f);
        }
        return t.deliver(t.b, v.size(), 150);
    }
    std::uint64_t drops_b(Drop d) { return t.b.dp->drops(d); }
};

}  // namespace

TEST_CASE("ESP session: both ways, both workers under one SA, sequences never repeat, OpenSSL opens it", "[esp][dataplane]") {
    for (const bool esn : {false, true}) {
        INFO("esn " << esn);
        EspRig r;
        const SaKeys ab = sa_keys(1), ba = sa_keys(2);
        const std::uint32_t spi_b = r.child(r.pb(), r.sb, r.pa(), r.sa, ab, esn);
        r.child(r.pa(), r.sa, r.pb(), r.sb, ba, esn);
        CHECK(r.pa().state(r.sa) == p3::dp::SessionState::up);
        CHECK(r.pb().state(r.sb) == p3::dp::SessionState::up);

        constexpr unsigned kN = 200;
        const auto wire = r.send_a(kN, 7);
        REQUIRE(wire.size() == kN);
        std::set<std::uint64_t> seqs;
        std::set<unsigned> rings;
        for (const Esp& e : wire) {
            CHECK(e.frame[23] == 50);               // IP protocol 50
            CHECK(e.spi() == spi_b);                // one SA, whichever worker sent
            CHECK(e.iv() == e.seq_low());           // IV = the 64-bit sequence (below 2^32 here)
            CHECK(ossl_open_esp(ab, e.frame.data() + 34, e.frame.size() - 34, 0, esn));
            seqs.insert(e.seq_low());
            rings.insert(e.ring);
        }
        CHECK(rings.size() == 2);                   // both workers sent
        CHECK(seqs.size() == kN);                   // no sequence twice
        CHECK(*seqs.begin() == 1);
        CHECK(*seqs.rbegin() == kN);                // and none skipped when nothing failed
        CHECK(r.to_b(wire).size() == kN);
        // Back from B to A.
        for (unsigned i = 0; i < 20; ++i)
            inject(r.t.b.lan.rx[i % 2], packet(r.t.b.lan_mac, false, "10.2.5.9", "10.1.5.7", 120, static_cast<std::uint8_t>(i)));
        CHECK(r.t.deliver(r.t.a, 20).size() == 20);
        // A replayed packet is refused.
        CHECK(r.to_b({wire[5]}).empty());
        CHECK(r.drops_b(Drop::P3_REPLAY) == 1);
        CHECK(r.drops_b(Drop::P3_AUTH) == 0);
        CHECK(r.pa().tx_packets(r.sa) == kN);
    }
}

TEST_CASE("ESP rekey make-before-break: new inbound SA, outbound switched, old removed: nothing lost", "[esp][dataplane]") {
    EspRig r;
    const SaKeys k1 = sa_keys(11), k2 = sa_keys(12, 32), back = sa_keys(13);
    const std::uint32_t spi1 = r.child(r.pb(), r.sb, r.pa(), r.sa, k1, true);
    r.child(r.pa(), r.sa, r.pb(), r.sb, back, true);

    auto old_in_flight = r.send_a(40, 1);   // sent under SA 1, not delivered yet
    REQUIRE(old_in_flight.size() == 40);
    // The new inbound SA first (B), while SA 1 still receives.
    const auto spi2 = r.pb().reserve_rx_ids(1);
    REQUIRE(spi2);
    REQUIRE(r.pb().esp_install_rx(r.sb, EspSa{spi2->raw(), k2.k(), k2.s(), true}));
    const auto first_half = std::vector<Esp>(old_in_flight.begin(), old_in_flight.begin() + 20);
    CHECK(r.to_b(first_half).size() == 20);
    // Then A's outbound moves to it (sequence from 1 under the new SPI).
    REQUIRE(r.pa().esp_install_tx(r.sa, EspSa{spi2->raw(), k2.k(), k2.s(), true}));
    auto fresh = r.send_a(40, 60);
    REQUIRE(fresh.size() == 40);
    std::set<std::uint64_t> seqs;
    for (const Esp& e : fresh) {
        CHECK(e.spi() == spi2->raw());
        CHECK(ossl_open_esp(k2, e.frame.data() + 34, e.frame.size() - 34, 0, true));
        seqs.insert(e.seq_low());
    }
    CHECK(*seqs.begin() == 1);
    CHECK(seqs.size() == 40);
    // Old packets still in flight, interleaved with new ones: all arrive.
    std::vector<Esp> mixed;
    for (unsigned i = 0; i < 20; ++i) {
        mixed.push_back(old_in_flight[20 + i]);
        mixed.push_back(fresh[i]);
    }
    CHECK(r.to_b(mixed).size() == 40);
    // The old SA goes (its replacement settled): a packet under it is dropped, the new goes on.
    r.pb().esp_remove_rx(r.sb, spi1);
    r.pb().esp_remove_rx(r.sb, spi1);          // unknown now: nothing
    r.pb().esp_remove_rx(r.sb, 0x7fffffffu);   // never ours: nothing
    auto late = r.send_a(1, 200);
    REQUIRE(late.size() == 1);
    const Esp stale = old_in_flight[0];   // as sent: a replay too, but its SPI refuses it first
    const auto before = r.drops_b(Drop::ESP_UNKNOWN_SPI);
    CHECK(r.to_b({stale}).empty());
    CHECK(r.drops_b(Drop::ESP_UNKNOWN_SPI) == before + 1);
    CHECK(r.to_b(std::vector<Esp>(fresh.begin() + 20, fresh.end())).size() == 20);
    CHECK(r.to_b(late).size() == 1);
    CHECK(r.drops_b(Drop::P3_AUTH) == 0);
    CHECK(r.drops_b(Drop::P3_REPLAY) == 0);

    // clear_keys: every SA of the session goes; B's packets under SPI 2 are dropped.
    r.pb().clear_keys(r.sb);
    CHECK(r.pb().state(r.sb) == p3::dp::SessionState::down);
    auto after = r.send_a(3, 250);
    REQUIRE(after.size() == 3);
    CHECK(r.to_b(after).empty());
    CHECK(r.drops_b(Drop::ESP_UNKNOWN_SPI) == before + 4);
}

TEST_CASE("ESP and P3 never cross: a P3 packet under an SPI, an ESP packet under a P3 ID", "[esp][dataplane]") {
    EspRig r;
    const SaKeys ab = sa_keys(21), ba = sa_keys(22);
    const std::uint32_t spi_b = r.child(r.pb(), r.sb, r.pa(), r.sa, ab, false);
    r.child(r.pa(), r.sa, r.pb(), r.sb, ba, false);
    auto wire = r.send_a(1, 3);
    REQUIRE(wire.size() == 1);
    // The same bytes as P3 (first word 0, the SPI as P3 ID): no P3 slot has that ID.
    Esp as_p3 = wire[0];
    Bytes body(as_p3.frame.begin() + 34, as_p3.frame.end());
    Bytes p3(as_p3.frame.begin(), as_p3.frame.begin() + 34);
    p3.insert(p3.end(), {0, 0, 0, 0});
    p3.insert(p3.end(), body.begin(), body.end() - 4);   // same length: the last 4 bytes go
    p3::be::put32(p3.data() + 38, spi_b);
    const auto before = r.drops_b(Drop::P3_UNKNOWN_ID);
    CHECK(r.to_b({Esp{0, p3}}).empty());
    CHECK(r.drops_b(Drop::P3_UNKNOWN_ID) == before + 1);
    // A bad key is refused and the SPI released; installing on a session that does not exist too.
    const auto spi = r.pb().reserve_rx_ids(1);
    REQUIRE(spi);
    const Bytes short_key(15, 1), salt(4, 2);
    CHECK_FALSE(r.pb().esp_install_rx(r.sb, EspSa{spi->raw(), short_key, salt, false}));
    CHECK_FALSE(r.pb().esp_install_rx(p3::SessionId(4000), EspSa{spi_b, ab.k(), ab.s(), false}));
    // spi_b still receives (a refused call never retires a live SA).
    CHECK(r.to_b(r.send_a(1, 9)).size() == 1);
}
