// The IKE message codec (RFC 7296 §3) and the SK payload (RFC 5282): every payload type
// round-trips; malformed datagrams (a table of truncations and bad lengths) are refused with
// the right error and never read out of bounds; SK rejects a wrong key or any flipped bit;
// unknown payloads keep their critical bit; the configuration push TLVs round-trip and refuse
// unknown critical entries.
#include <catch2/catch.hpp>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "control/setup/config_push.hpp"
#include "control/setup/ike_crypto.hpp"
#include "control/setup/ike_message.hpp"

using namespace p3;
using namespace p3::setup;

namespace {

IpAddr ip(const char* s) { return *IpAddr::parse(s); }

Message sample_init() {
    Message m;
    m.hdr.spi_i = Spi{0x0102030405060708ULL};
    m.hdr.exchange = Exchange::ike_sa_init;
    m.hdr.flags = flags::initiator;
    Proposal p;
    p.transforms = {{tt::encr, encr_aes_gcm_16, 256}, {tt::encr, encr_aes_gcm_16, 128},
                    {tt::prf, prf_hmac_sha2_256, 0}, {tt::dh, group_x25519, 0}, {tt::dh, group_ecp256, 0}};
    Proposal q;
    q.num = 2;
    q.transforms = {{tt::encr, encr_aes_gcm_16, 128}, {tt::prf, prf_hmac_sha2_384, 0}, {tt::dh, group_ecp384, 0}};
    m.add(pt::sa, SaPayload{{p, q}});
    m.add(pt::ke, KePayload{group_x25519, Bytes(32, 0x11)});
    m.add(pt::nonce, NoncePayload{Bytes(32, 0x22)});
    m.add_notify(nt::nat_detection_source_ip, Bytes(20, 0x33));
    return m;
}

SkKey key_of(std::uint8_t fill, std::size_t len = 16) {
    Bytes k(len, fill), s(4, std::uint8_t(fill + 1));
    return SkKey{SecretBytes(k), SecretBytes(s)};
}

}  // namespace

TEST_CASE("ike message: IKE_SA_INIT round-trips field by field") {
    const Message m = sample_init();
    const Bytes wire = encode(m);
    REQUIRE(wire.size() > limits::ike_header);
    // Header bytes as RFC 7296 §3.1 lays them out.
    CHECK(wire[16] == pt::sa);
    CHECK(wire[17] == 0x20);
    CHECK(wire[18] == 34);
    CHECK(wire[19] == flags::initiator);
    CHECK(get32(wire.data() + 24) == wire.size());

    Message d;
    REQUIRE(decode(wire, d) == DecodeError::ok);
    CHECK(d.hdr.spi_i == m.hdr.spi_i);
    CHECK(!d.encrypted);
    REQUIRE(d.payloads.size() == 4);
    const auto* sa = d.find<SaPayload>(pt::sa);
    REQUIRE(sa);
    REQUIRE(sa->proposals.size() == 2);
    CHECK(sa->proposals[0].transforms == std::get<SaPayload>(m.payloads[0].body).proposals[0].transforms);
    CHECK(sa->proposals[1].num == 2);
    CHECK(sa->proposals[1].transforms[1].id == prf_hmac_sha2_384);
    const auto* ke = d.find<KePayload>(pt::ke);
    REQUIRE(ke);
    CHECK(ke->group == group_x25519);
    CHECK(ke->data == Bytes(32, 0x11));
    REQUIRE(d.notify(nt::nat_detection_source_ip));
    CHECK(d.notify(nt::nat_detection_source_ip)->data == Bytes(20, 0x33));
    CHECK(encode(d) == wire);  // and back, byte for byte
}

TEST_CASE("ike message: IKE_AUTH payloads round-trip inside SK") {
    Message m;
    m.hdr.spi_i = Spi{1};
    m.hdr.spi_r = Spi{2};
    m.hdr.exchange = Exchange::ike_auth;
    m.hdr.flags = flags::initiator;
    m.hdr.msg_id = 1;
    m.add(pt::idi, IdPayload{idt::fqdn, Bytes{'s', 'e', 'c'}});
    m.add(pt::cert, CertPayload{cert_x509_sig, Bytes(100, 0x44)});
    m.add(pt::auth, AuthPayload{am::shared_key_mic, Bytes(32, 0x55)});
    Proposal esp;
    esp.protocol = proto_esp;
    esp.spi = {0, 0, 0x12, 0x34};
    esp.transforms = {{tt::encr, encr_aes_gcm_16, 128}, {tt::esn, 0, 0}};
    m.add(pt::sa, SaPayload{{esp}});
    TrafficSelector v4;
    v4.start = ip("10.2.0.0");
    v4.end = ip("10.2.0.255");
    TrafficSelector v6;
    v6.start = ip("2001:db8::");
    v6.end = ip("2001:db8::ffff");
    v6.ip_proto = 17;
    v6.start_port = 53;
    v6.end_port = 53;
    m.add(pt::tsi, TsPayload{{v4, v6}});
    m.add(pt::tsr, TsPayload{{v4}});
    m.add_notify(nt::p3_config, Bytes{1, 2, 3});

    const SkKey k = key_of(7, 32);
    auto wire = encode_sk(m, k, 42);
    REQUIRE(wire);
    Message outer;
    REQUIRE(decode(*wire, outer) == DecodeError::ok);
    CHECK(outer.encrypted);
    CHECK(outer.payloads.empty());
    CHECK(outer.sk_first == pt::idi);
    CHECK(outer.hdr.next == pt::sk);
    // Explicit IV right after the SK generic header (RFC 5282 §3).
    CHECK(get64(wire->data() + outer.sk_offset + 4) == 42);

    Message in;
    REQUIRE(open_sk(*wire, outer, k, in) == DecodeError::ok);
    REQUIRE(in.payloads.size() == 7);
    const auto* id = in.find<IdPayload>(pt::idi);
    REQUIRE(id);
    CHECK(id->id_type == idt::fqdn);
    CHECK(id->data == Bytes{'s', 'e', 'c'});
    CHECK(in.find<CertPayload>(pt::cert)->data == Bytes(100, 0x44));
    CHECK(in.find<AuthPayload>(pt::auth)->method == am::shared_key_mic);
    const auto* sa = in.find<SaPayload>(pt::sa);
    REQUIRE(sa);
    CHECK(sa->proposals[0].protocol == proto_esp);
    CHECK(get32(sa->proposals[0].spi.data()) == 0x1234);
    const auto* tsi = in.find<TsPayload>(pt::tsi);
    REQUIRE(tsi);
    REQUIRE(tsi->selectors.size() == 2);
    CHECK(tsi->selectors[0].start == ip("10.2.0.0"));
    CHECK(tsi->selectors[0].end == ip("10.2.0.255"));
    CHECK(tsi->selectors[0].end_port == 65535);
    CHECK(tsi->selectors[1].end == ip("2001:db8::ffff"));
    CHECK(tsi->selectors[1].ip_proto == 17);
    CHECK(tsi->selectors[1].start_port == 53);
    CHECK(in.notify(nt::p3_config)->data == Bytes{1, 2, 3});
}

TEST_CASE("ike message: SK refuses a wrong key and every single flipped bit") {
    Message m;
    m.hdr.spi_i = Spi{1};
    m.hdr.spi_r = Spi{2};
    m.hdr.exchange = Exchange::ike_auth;
    m.hdr.msg_id = 1;
    m.add(pt::auth, AuthPayload{am::shared_key_mic, Bytes(32, 0x55)});
    const SkKey k = key_of(1);
    const Bytes wire = *encode_sk(m, k, 1);
    Message outer, in;
    REQUIRE(decode(wire, outer) == DecodeError::ok);
    CHECK(open_sk(wire, outer, key_of(2), in) == DecodeError::auth_tag);
    std::size_t refused = 0, positions = 0;
    // Every bit of the header (AAD), the SK header, the IV, the ciphertext and the ICV.
    for (std::size_t i = 0; i < wire.size(); ++i) {
        for (int bit = 0; bit < 8; ++bit) {
            Bytes w = wire;
            w[i] ^= std::uint8_t(1 << bit);
            ++positions;
            Message o, x;
            if (decode(w, o) != DecodeError::ok || open_sk(w, o, k, x) != DecodeError::ok) ++refused;
        }
    }
    CHECK(refused == positions);
}

TEST_CASE("ike message: malformed datagrams are refused with their error") {
    const Bytes good = encode(sample_init());
    struct Case {
        const char* what;
        std::function<void(Bytes&)> mutate;
        DecodeError want;
    };
    const std::vector<Case> cases = {
        {"empty", [](Bytes& b) { b.clear(); }, DecodeError::too_short},
        {"27 bytes", [](Bytes& b) { b.resize(27); }, DecodeError::too_short},
        {"IKEv1 version", [](Bytes& b) { b[17] = 0x10; }, DecodeError::bad_version},
        {"length field + 1", [](Bytes& b) { set32(b, 24, std::uint32_t(b.size() + 1)); }, DecodeError::bad_length},
        {"length field - 1", [](Bytes& b) { set32(b, 24, std::uint32_t(b.size() - 1)); }, DecodeError::bad_length},
        {"truncated datagram", [](Bytes& b) { b.pop_back(); set32(b, 24, std::uint32_t(b.size())); }, DecodeError::payload_overrun},
        {"trailing byte", [](Bytes& b) { b.push_back(0); set32(b, 24, std::uint32_t(b.size())); }, DecodeError::bad_length},
        {"payload length 3", [](Bytes& b) { set16(b, 30, 3); }, DecodeError::payload_overrun},
        {"payload length past the end", [](Bytes& b) { set16(b, 30, 0xffff); }, DecodeError::payload_overrun},
        {"over the size limit", [](Bytes& b) { b.resize(limits::max_message + 1); set32(b, 24, std::uint32_t(b.size())); }, DecodeError::too_long},
        {"next payload points at nothing", [](Bytes& b) { b[16] = pt::nonce; b.resize(28); set32(b, 24, 28); }, DecodeError::payload_overrun},
        // SA body: proposal length larger than the SA payload
        {"proposal overruns SA", [](Bytes& b) { set16(b, 28 + 4 + 2, 0xff00); }, DecodeError::bad_payload},
        // first transform's "more" byte neither 0 nor 3
        {"bad transform marker", [](Bytes& b) { b[28 + 4 + 8] = 7; }, DecodeError::bad_payload},
        // transform count says one more than present
        {"transform count + 1", [](Bytes& b) { b[28 + 4 + 7] += 1; }, DecodeError::bad_payload},
        // SK must be the last payload
        {"SK not last", [](Bytes& b) { b[16] = pt::sk; }, DecodeError::sk_not_last},
    };
    for (const auto& c : cases) {
        Bytes b = good;
        c.mutate(b);
        Message m;
        INFO(c.what);
        CHECK(decode(b, m) == c.want);
    }
}

TEST_CASE("ike message: payload bodies out of range are refused") {
    struct Case {
        const char* what;
        std::uint8_t type;
        Bytes body;
        bool ok;
    };
    const std::vector<Case> cases = {
        {"nonce 15 bytes", pt::nonce, Bytes(15, 1), false},
        {"nonce 16 bytes", pt::nonce, Bytes(16, 1), true},
        {"nonce 256 bytes", pt::nonce, Bytes(256, 1), true},
        {"nonce 257 bytes", pt::nonce, Bytes(257, 1), false},
        {"KE 3 bytes", pt::ke, Bytes{0, 31, 0}, false},
        {"KE header only", pt::ke, Bytes{0, 31, 0, 0}, true},
        {"notify spi size past end", pt::notify, Bytes{3, 8, 0x40, 0x00, 1, 2}, false},
        {"notify ok", pt::notify, Bytes{3, 4, 0x40, 0x00, 1, 2, 3, 4}, true},
        {"ID without data", pt::idi, Bytes{2, 0, 0, 0}, false},
        {"AUTH without data", pt::auth, Bytes{2, 0, 0, 0}, false},
        {"TS count 0", pt::tsi, Bytes{0, 0, 0, 0}, false},
        {"TS unknown type", pt::tsi, Bytes{1, 0, 0, 0, 9, 0, 0, 16, 0, 0, 0xff, 0xff, 1, 2, 3, 4, 5, 6, 7, 8}, false},
        {"TS v4 length 15", pt::tsi, Bytes{1, 0, 0, 0, 7, 0, 0, 15, 0, 0, 0xff, 0xff, 1, 2, 3, 4, 5, 6, 7}, false},
        {"TS v4 ok", pt::tsi, Bytes{1, 0, 0, 0, 7, 0, 0, 16, 0, 0, 0xff, 0xff, 1, 2, 3, 4, 5, 6, 7, 8}, true},
        {"TS count 2, one present", pt::tsr, Bytes{2, 0, 0, 0, 7, 0, 0, 16, 0, 0, 0xff, 0xff, 1, 2, 3, 4, 5, 6, 7, 8}, false},
        {"SA empty", pt::sa, Bytes{}, false},
        {"unknown type kept", 200, Bytes{9, 9}, true},
    };
    for (const auto& c : cases) {
        PayloadBody out;
        INFO(c.what);
        CHECK(decode_body(c.type, c.body, out) == c.ok);
    }
}

TEST_CASE("ike message: unknown payloads keep type, critical bit and body") {
    Message m = sample_init();
    m.payloads.push_back(Payload{pt::vendor, false, RawPayload{Bytes{'p', '3'}}});
    m.payloads.push_back(Payload{222, true, RawPayload{Bytes{1, 2, 3, 4}}});
    Message d;
    REQUIRE(decode(encode(m), d) == DecodeError::ok);
    REQUIRE(d.payloads.size() == 6);
    CHECK(d.payloads[4].type == pt::vendor);
    CHECK(!d.payloads[4].critical);
    CHECK(d.payloads[5].type == 222);
    CHECK(d.payloads[5].critical);
    CHECK(std::get<RawPayload>(d.payloads[5].body).body == Bytes{1, 2, 3, 4});
}

TEST_CASE("ike message: a transform with an attribute other than Key Length cannot be chosen") {
    // One proposal, one ENCR transform carrying a TV attribute of type 15 (not Key Length).
    Bytes body = {0, 0, 0, 20, 1, proto_ike, 0, 1,  // proposal header, 1 transform
                  0, 0, 0, 12, tt::encr, 0, 0, 20,  // transform ENCR_AES_GCM_16
                  0x80, 15, 0, 128};                // TV attr type 15
    PayloadBody out;
    REQUIRE(decode_body(pt::sa, body, out));
    CHECK(std::get<SaPayload>(out).proposals[0].transforms[0].key_bits == 0xffff);
}

TEST_CASE("ike crypto: prf+ is RFC 7296 §2.13 (checked against HMAC by hand)") {
    const Bytes key(32, 0x0b), seed = {'s', 'e', 'e', 'd'};
    const SecretBytes out = prf_plus(prf_hmac_sha2_256, key, seed, 80);
    REQUIRE(out.size() == 80);
    // T1 = HMAC(K, S | 0x01), T2 = HMAC(K, T1 | S | 0x02), T3 = HMAC(K, T2 | S | 0x03)
    Bytes t, all;
    for (std::uint8_t n = 1; n <= 3; ++n) {
        Bytes in = t;
        append(in, seed);
        in.push_back(n);
        std::uint8_t md[32];
        unsigned len = 0;
        HMAC(EVP_sha256(), key.data(), int(key.size()), in.data(), in.size(), md, &len);
        t.assign(md, md + 32);
        append(all, t);
    }
    all.resize(80);
    CHECK(Bytes(out.span().begin(), out.span().end()) == all);
    CHECK(prf_plus(prf_hmac_sha2_256, key, seed, 255 * 32 + 1).empty());  // §2.13 limit
}

TEST_CASE("ike crypto: key exchange in every group agrees; degenerate values are refused") {
    for (std::uint16_t g : {group_x25519, group_ecp256, group_ecp384}) {
        INFO("group " << g);
        auto a = KeyExchange::create(g), b = KeyExchange::create(g);
        REQUIRE(a);
        REQUIRE(b);
        CHECK(a->public_value().size() == KeyExchange::public_size(g));
        auto sa = a->shared_secret(b->public_value());
        auto sb = b->shared_secret(a->public_value());
        REQUIRE(sa);
        REQUIRE(sb);
        CHECK(sa->equals(sb->span()));
        CHECK(!a->shared_secret(Bytes(KeyExchange::public_size(g), 0)));      // zero point / low order
        CHECK(!a->shared_secret(Bytes(KeyExchange::public_size(g) - 1, 1)));  // wrong size
    }
    CHECK(!KeyExchange::create(14));  // MODP groups are not offered
}

TEST_CASE("config push: round-trips; unknown critical TLV refuses the push, unknown normal TLV is skipped") {
    PushedConfig c;
    c.primary_subnets = {*Prefix::parse("10.1.0.0/24"), *Prefix::parse("2001:db8:1::/48")};
    c.secondary_subnets = {*Prefix::parse("10.2.0.0/16")};
    c.params.key_type = config::KeyType::aes256;
    c.params.rekey_wait = 1800;
    c.params.rekey_packets = 1ULL << 40;
    c.params.heartbeat_time = 10;
    c.params.size_hiding = true;
    c.params.lanes = 4;
    c.primary_lanes = 2;
    Bytes b = encode_push(c);
    auto d = decode_push(b);
    REQUIRE(d);
    CHECK(*d == c);

    Bytes unknown = b;
    put16(unknown, 99);  // unknown, not critical
    put16(unknown, 2);
    put16(unknown, 0xabcd);
    REQUIRE(decode_push(unknown));
    CHECK(*decode_push(unknown) == c);

    Bytes crit = b;
    put16(crit, 99 | tlv::critical);
    put16(crit, 0);
    CHECK(!decode_push(crit));

    Bytes trunc = b;
    trunc.pop_back();
    CHECK(!decode_push(trunc));
    CHECK(!decode_push(Bytes{}));  // key type is mandatory
}

TEST_CASE("config push: rekey_dh travels to the secondary, critical when on, and defaults to on") {
    PushedConfig c;
    c.params.key_type = config::KeyType::aes128;
    for (bool dh : {true, false}) {
        c.params.rekey_dh = dh;
        Bytes b = encode_push(c);
        auto d = decode_push(b);
        REQUIRE(d);
        CHECK(d->params.rekey_dh == dh);
        // The TLV is the last one: type 14, critical only when forward secrecy is asked for.
        REQUIRE(b.size() >= 5);
        const std::uint16_t type = get16(b.data() + b.size() - 5);
        CHECK((type & ~tlv::critical) == tlv::rekey_dh);
        CHECK(((type & tlv::critical) != 0) == dh);
        CHECK(b.back() == (dh ? 1 : 0));
        Bytes bad = b;
        bad.back() = 2;   // only 0 or 1
        CHECK(!decode_push(bad));
        // A push without it (a primary that does not send it) keeps the default: on.
        Bytes without(b.begin(), b.end() - 5);
        auto w = decode_push(without);
        REQUIRE(w);
        CHECK(w->params.rekey_dh);
    }
}

TEST_CASE("ike message: a proposal as long as strongSwan's default one is read; one over the limit is not") {
    // strongSwan 5.9's default IKE proposal carries 34 to 36 transforms (every cipher, PRF,
    // integrity and group it knows); refusing it left a stock initiator without an answer.
    auto proposal_of = [](std::size_t n) {
        Proposal p;
        for (std::size_t i = 0; i < n; ++i)
            p.transforms.push_back({tt::dh, static_cast<std::uint16_t>(i % 2 ? group_x25519 : group_ecp256), 0});
        p.transforms.push_back({tt::encr, encr_aes_gcm_16, 128});
        p.transforms.push_back({tt::prf, prf_hmac_sha2_256, 0});
        return p;
    };
    for (std::size_t n : {34u, 36u, static_cast<unsigned>(limits::max_transforms - 2)}) {
        Message m = sample_init();
        std::get<SaPayload>(m.payloads[0].body).proposals = {proposal_of(n)};
        Message d;
        INFO(n + 2 << " transforms");
        REQUIRE(decode(encode(m), d) == DecodeError::ok);
        CHECK(std::get<SaPayload>(d.payloads[0].body).proposals[0].transforms.size() == n + 2);
    }
    Message m = sample_init();
    std::get<SaPayload>(m.payloads[0].body).proposals = {proposal_of(limits::max_transforms - 1)};
    Message d;
    CHECK(decode(encode(m), d) != DecodeError::ok);
}
