// The control-layer packet: byte layout (checked with OpenSSL directly, not through the code
// under test), header fields, every rejection of parse_packet/open_sealed, the one fixed length
// (either family, any message), and that a control packet and a data packet of one size look
// alike once the data layer has them.
#include <catch2/catch.hpp>

#include <openssl/evp.h>

#include <set>

#include "channel_sim.hpp"
#include "control/channel/framing.hpp"

using namespace p3;
using namespace p3::channel;
using namespace p3::channel::sim;
using namespace std::chrono_literals;

namespace {

KeyMaterial key_of(std::size_t keylen, std::uint8_t seed) {
    std::vector<std::uint8_t> b(keylen + 4);
    for (std::size_t i = 0; i < b.size(); ++i) b[i] = static_cast<std::uint8_t>(seed + 3 * i);
    return KeyMaterial::from_wire(b);
}

FrameAddrs v4_from_a() { return {*IpAddr::parse("192.0.2.1"), *IpAddr::parse("198.51.100.2"), 5653}; }
FrameAddrs v4_at_b() { return {*IpAddr::parse("198.51.100.2"), *IpAddr::parse("192.0.2.1"), 5653}; }
FrameAddrs v6_from_a() { return {*IpAddr::parse("2001:db8::1"), *IpAddr::parse("2001:db8:1::2"), 4000}; }
FrameAddrs v6_at_b() { return {*IpAddr::parse("2001:db8:1::2"), *IpAddr::parse("2001:db8::1"), 4000}; }

std::vector<std::uint8_t> seal(const FrameAddrs& a, const KeyMaterial& k, std::span<const std::uint8_t> msg,
                               std::uint32_t epoch = 3, std::uint64_t seq = 9) {
    std::vector<std::uint8_t> out(limits::kMaxInnerPacket);
    FrameParams fp;
    fp.epoch = epoch;
    fp.seq = seq;
    fp.ip_id = 0x1234;
    fp.tcp_seq = 1000;
    fp.tcp_ack = 2000;
    out.resize(seal_packet(a, k, fp, msg, out));
    return out;
}

// Independent AES-GCM open with OpenSSL's EVP API.
bool evp_open(const KeyMaterial& k, const std::uint8_t* iv, std::span<const std::uint8_t> aad,
              std::span<const std::uint8_t> ct, const std::uint8_t* tag, std::vector<std::uint8_t>& out) {
    EVP_CIPHER_CTX* c = EVP_CIPHER_CTX_new();
    int len = 0;
    out.resize(ct.size());
    bool ok = EVP_DecryptInit_ex(c, k.key.size() == 32 ? EVP_aes_256_gcm() : EVP_aes_128_gcm(), nullptr,
                                 k.key.data(), iv) == 1 &&
              EVP_DecryptUpdate(c, nullptr, &len, aad.data(), int(aad.size())) == 1 &&
              EVP_DecryptUpdate(c, out.data(), &len, ct.data(), int(ct.size())) == 1 &&
              EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, 16, const_cast<std::uint8_t*>(tag)) == 1 &&
              EVP_DecryptFinal_ex(c, out.data() + ct.size(), &len) == 1;
    EVP_CIPHER_CTX_free(c);
    return ok;
}

}  // namespace

TEST_CASE("framing: IPv4 layout, header fields and the sealed part, checked byte by byte") {
    for (std::size_t keylen : {16u, 32u}) {
        INFO("key length " << keylen);
        const KeyMaterial k = key_of(keylen, 1);
        const std::vector<std::uint8_t> msg{1, 1, 0, 0, 0, 0, 0, 42};  // a heartbeat
        const auto p = seal(v4_from_a(), k, msg);
        REQUIRE(p.size() == 766);  // whatever the message
        const std::size_t plain_len = 766 - 20 - 20 - 4 - 8 - 16;
        // IPv4
        CHECK(p[0] == 0x45);
        CHECK(p[1] == 0);  // DSCP 0, not-ECT
        CHECK(((p[2] << 8) | p[3]) == int(p.size()));
        CHECK(((p[4] << 8) | p[5]) == 0x1234);
        CHECK(((p[6] << 8) | p[7]) == 0x4000);  // DF, no fragment
        CHECK(p[8] == 64);
        CHECK(p[9] == 6);
        CHECK(csum::finish(csum::partial(p.data(), 20)) == 0);  // header checksum valid
        CHECK(std::vector<std::uint8_t>(p.begin() + 12, p.begin() + 16) == std::vector<std::uint8_t>{192, 0, 2, 1});
        CHECK(std::vector<std::uint8_t>(p.begin() + 16, p.begin() + 20) == std::vector<std::uint8_t>{198, 51, 100, 2});
        // TCP
        const std::uint8_t* t = p.data() + 20;
        CHECK(((t[0] << 8) | t[1]) == 5653);
        CHECK(((t[2] << 8) | t[3]) == 5653);
        CHECK(get32(t + 4) == 1000);
        CHECK(get32(t + 8) == 2000);
        CHECK(t[12] == 0x50);
        CHECK(t[13] == 0x18);  // PSH|ACK
        // TCP checksum over the pseudo header and the segment verifies to 0.
        std::uint32_t pseudo = 0xc000 + 0x0201 + 0xc633 + 0x6402 + 6 + std::uint32_t(p.size() - 20);
        CHECK(csum::finish(csum::partial(t, p.size() - 20, pseudo)) == 0);
        // Sealed part: epoch | seq | ct | tag; nonce = salt || seq; AAD = epoch || seq.
        const std::uint8_t* s = t + 20;
        CHECK(get32(s) == 3);
        CHECK(get64(s + 4) == 9);
        std::uint8_t iv[12];
        std::memcpy(iv, k.salt.data(), 4);
        put64(iv + 4, 9);
        std::vector<std::uint8_t> plain;
        REQUIRE(evp_open(k, iv, {s, 12}, {s + 12, plain_len}, s + 12 + plain_len, plain));
        CHECK(std::equal(msg.begin(), msg.end(), plain.begin()));  // the message, then zeros
        CHECK(std::all_of(plain.begin() + long(msg.size()), plain.end(), [](auto b) { return b == 0; }));
        // And through the code's own parser.
        FrameError fe;
        auto sv = parse_packet(v4_at_b(), p, &fe);
        REQUIRE(sv);
        CHECK(sv->epoch == 3);
        CHECK(sv->seq == 9);
        std::vector<std::uint8_t> out(sv->ciphertext.size());
        auto n = open_sealed(k, *sv, out);
        REQUIRE(n == plain_len);
        CHECK(std::equal(msg.begin(), msg.end(), out.begin()));
    }
}

TEST_CASE("framing: IPv6 WAN addresses give an IPv6 inner header") {
    const KeyMaterial k = key_of(16, 7);
    const std::vector<std::uint8_t> msg(100, 0xab);
    const auto p = seal(v6_from_a(), k, msg);
    REQUIRE(p.size() == 766);
    CHECK((p[0] >> 4) == 6);
    CHECK(((p[4] << 8) | p[5]) == int(p.size() - 40));
    CHECK(p[6] == 6);
    CHECK(p[7] == 64);
    CHECK(((p[40] << 8) | p[41]) == 4000);
    auto sv = parse_packet(v6_at_b(), p);
    REQUIRE(sv);
    std::vector<std::uint8_t> out(sv->ciphertext.size());
    CHECK(open_sealed(k, *sv, out) == std::optional<std::size_t>(766 - 40 - 20 - 28));
    CHECK(std::equal(msg.begin(), msg.end(), out.begin()));
    // Mixed families are refused at sealing.
    FrameAddrs mixed{*IpAddr::parse("192.0.2.1"), *IpAddr::parse("2001:db8::1"), 1};
    std::vector<std::uint8_t> buf(limits::kMaxInnerPacket);
    CHECK(seal_packet(mixed, k, FrameParams{}, msg, buf) == 0);
}

TEST_CASE("framing: the receiver rejects each kind of wrong packet") {
    const KeyMaterial k = key_of(16, 9);
    const std::vector<std::uint8_t> msg(40, 1);
    const auto good = seal(v4_from_a(), k, msg);
    struct Case {
        const char* what;
        std::function<void(std::vector<std::uint8_t>&)> mutate;
        FrameError want;
    };
    const std::vector<Case> cases = {
        {"truncated to 60 bytes", [](auto& p) { p.resize(60); }, FrameError::too_short},
        {"IPv6 version nibble", [](auto& p) { p[0] = 0x65; }, FrameError::not_ip},
        {"IP options (IHL 6)", [](auto& p) { p[0] = 0x46; }, FrameError::not_ip},
        {"UDP", [](auto& p) { p[9] = 17; }, FrameError::not_tcp},
        {"IP length one short", [](auto& p) { p[3] = std::uint8_t(p[3] - 1); }, FrameError::bad_length},
        {"one byte appended", [](auto& p) { p.push_back(0); }, FrameError::bad_length},
        {"more fragments", [](auto& p) { p[6] = 0x20; }, FrameError::fragment},
        {"fragment offset", [](auto& p) { p[7] = 1; }, FrameError::fragment},
        {"source not the peer", [](auto& p) { p[15] ^= 1; }, FrameError::wrong_address},
        {"destination not us", [](auto& p) { p[19] ^= 1; }, FrameError::wrong_address},
        {"source port", [](auto& p) { p[21] ^= 1; }, FrameError::wrong_port},
        {"destination port", [](auto& p) { p[23] ^= 1; }, FrameError::wrong_port},
        {"TCP options", [](auto& p) { p[32] = 0x60; }, FrameError::wrong_port},
        {"tag", [](auto& p) { p.back() ^= 0x80; }, FrameError::auth_failed},
        {"ciphertext", [](auto& p) { p[60] ^= 1; }, FrameError::auth_failed},
        {"epoch (authenticated)", [](auto& p) { p[43] ^= 1; }, FrameError::auth_failed},
        {"sequence (authenticated)", [](auto& p) { p[51] ^= 1; }, FrameError::auth_failed},
    };
    for (const Case& c : cases) {
        INFO(c.what);
        auto p = good;
        c.mutate(p);
        FrameError fe = FrameError::none;
        auto sv = parse_packet(v4_at_b(), p, &fe);
        if (c.want == FrameError::auth_failed) {
            REQUIRE(sv);
            std::vector<std::uint8_t> out(sv->ciphertext.size(), 0xee);
            CHECK_FALSE(open_sealed(k, *sv, out));
            for (auto b : out) REQUIRE(b == 0);  // nothing of a forged plaintext is left
        } else {
            CHECK_FALSE(sv);
            CHECK(frame_error_name(fe) == frame_error_name(c.want));
        }
    }
    // The right packet under the wrong key.
    auto sv = parse_packet(v4_at_b(), good);
    REQUIRE(sv);
    std::vector<std::uint8_t> out(sv->ciphertext.size());
    CHECK_FALSE(open_sealed(key_of(16, 10), *sv, out));
}

TEST_CASE("framing: every control packet is 766 bytes, whatever the message and the inner family") {
    // 766 + the data layer's 2-byte trailer = 768: three size-hiding buckets, 4-aligned, so
    // size hiding on or off adds no pad and the outer size is one.
    CHECK(limits::kControlInnerLen == 766);
    CHECK((limits::kControlInnerLen + wire::kTrailerFixed) % wire::kSizeHideBucket == 0);
    CHECK((limits::kControlInnerLen + wire::kTrailerFixed) % wire::kPadAlign == 0);
    const KeyMaterial k = key_of(32, 3);
    struct Fam {
        FrameAddrs from, at;
        std::size_t room;
    };
    for (const Fam& f : {Fam{v4_from_a(), v4_at_b(), 698}, Fam{v6_from_a(), v6_at_b(), 678}}) {
        INFO("inner IPv" << (f.from.local.is_v6() ? 6 : 4));
        CHECK(message_room(f.from) == f.room);
        CHECK(limits::kMaxMessageLen <= f.room);
        for (std::size_t len : {std::size_t{0}, std::size_t{1}, std::size_t{8}, std::size_t{100}, std::size_t{255},
                                std::size_t{256}, std::size_t{500}, limits::kMaxMessageLen}) {
            INFO("message length " << len);
            const std::vector<std::uint8_t> msg(len, 0x11);
            const auto pkt = seal(f.from, k, msg, 1, 1);
            REQUIRE(pkt.size() == limits::kControlInnerLen);
            // The padding is inside the seal: the message comes back, followed by zeros.
            auto sv = parse_packet(f.at, pkt);
            REQUIRE(sv);
            std::vector<std::uint8_t> out(sv->ciphertext.size());
            auto n = open_sealed(k, *sv, out);
            REQUIRE(n == f.room);
            CHECK(std::equal(msg.begin(), msg.end(), out.begin()));
            CHECK(std::all_of(out.begin() + long(len), out.begin() + long(*n), [](auto b) { return b == 0; }));
        }
        // One byte over the message limit is never sealed.
        const std::vector<std::uint8_t> big(limits::kMaxMessageLen + 1, 0x11);
        std::vector<std::uint8_t> buf(limits::kMaxInnerPacket);
        CHECK(seal_packet(f.from, k, FrameParams{}, big, buf) == 0);
        // A receiver takes no other length.
        auto pkt = seal(f.from, k, std::vector<std::uint8_t>(10, 1));
        for (long d : {-16L, -1L, 1L, 256L}) {
            auto q = pkt;
            q.resize(std::size_t(long(q.size()) + d), 0);
            if (f.from.local.is_v4()) be::put16(q.data() + 2, std::uint16_t(q.size()));
            else be::put16(q.data() + 4, std::uint16_t(q.size() - 40));
            FrameError fe;
            CHECK_FALSE(parse_packet(f.at, q, &fe));
            CHECK(fe == FrameError::bad_length);
        }
    }
}

TEST_CASE("framing: on the WAN a control packet and a data packet of the same size look alike") {
    LogCapture logs;
    for (bool hide : {false, true}) {
        INFO("size hiding " << hide);
        config::SessionParams p;
        p.rekey_wait = 120;
        p.array_size = 64;
        p.data_array_time = 900;
        p.control_array_time = 800;
        p.size_hiding = hide;
        Sim sim(p, 3);
        sim.lanes_a = sim.lanes_b = 1;  // one P3 ID per side: data and control share it
        sim.dp_a.keep_outer = true;
        sim.setup();
        sim.run_for(1h);  // heartbeats, rekeys, array deliveries and replacements
        REQUIRE(sim.primary->stats().rekeys_done >= 25);
        REQUIRE(sim.primary->stats().arrays_delivered >= 6);
        // Data packets of every inner length the LAN may send, through the same data layer.
        std::set<std::size_t> data_sizes;
        std::map<std::size_t, std::vector<std::uint8_t>> data_by_size;
        for (std::size_t n = 20; n <= 1400; ++n) {
            sim.dp_a.send_data(n);
            data_sizes.insert(sim.dp_a.data_sizes.back());
        }
        std::set<std::size_t> control_sizes(sim.dp_a.control_sizes.begin(), sim.dp_a.control_sizes.end());
        for (std::size_t s : control_sizes) {
            INFO("control packet of " << s << " bytes");
            CHECK(data_sizes.count(s) == 1);  // some data packet has exactly this size
            if (hide) CHECK((s - 20 - 16 - 16) % wire::kSizeHideBucket == 0);
        }
        CHECK(control_sizes.size() == 1);  // one size, whatever the message
        // Header fields: a control packet's outer header equals a data packet's of the same
        // size except the IP identification and checksum; the P3 header differs only in its
        // sequence (same P3 ID: same key slot).
        const auto& c = sim.dp_a.control_outer.back();
        std::vector<std::uint8_t> d;
        for (std::size_t n = 20; n <= 1400 && d.empty(); ++n) {
            auto before = sim.dp_a.data_sizes.size();
            sim.dp_a.send_data(n);
            if (sim.dp_a.data_sizes[before] == c.size()) d = sim.link.take_due(sim.clock.now() + 1h).back().bytes;
        }
        REQUIRE(d.size() == c.size());
        for (std::size_t i = 0; i < 20; ++i) {
            if (i == 4 || i == 5 || i == 10 || i == 11) continue;  // identification, checksum
            INFO("outer IPv4 byte " << i);
            CHECK(c[i] == d[i]);
        }
        for (std::size_t i = 20; i < 28; ++i) CHECK(c[i] == d[i]);  // P3 flags and P3 ID
        CHECK(sim.primary->tx_epoch() == sim.secondary->tx_epoch());
    }
}
