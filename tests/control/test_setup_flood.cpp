// What a flood of setup datagrams may cost a primary, and what forged ones may do to an
// exchange (RFC 7296 §2.1, §2.6, §2.10, §2.21.1; RFC 8019): every check before a key pair is
// made; cookies demanded by request and failure rate as well as by half-open count; a cap
// on half-open exchanges per source; rate-limited log lines; cached responses only for the
// identical request; unauthenticated error notifies ignored until the exchange times out;
// nonce lengths; NAT-T framing remembered on the exchange, not per peer.
#include <catch2/catch.hpp>

#include <chrono>

#include "control/setup/setup_frame.hpp"
#include "setup_harness.hpp"

using namespace p3;
using namespace p3::setup;
using namespace p3::setup::test;
using namespace std::chrono_literals;

namespace {

const Endpoint kPrimary = ep("192.0.2.1", 5653);

// An IKE_SA_INIT request as a real secondary builds it (its own KE and nonce), to mutate.
Message init_template(control::ManualClock& clock, SetupOptions o = {}) {
    control::SeededRandom rnd(99);
    Queue q(clock);
    RecordingSink sink(0x9000);
    SetupEngine s(secondary_config(PairConfig{}), psk("flood test key x......."), std::move(o), clock, rnd, q, sink);
    REQUIRE(s.connect(1));
    Message m;
    REQUIRE(decode(q.q.front().data, m) == DecodeError::ok);
    return m;
}

Endpoint spoofed(std::uint32_t i) { return Endpoint{IpAddr::v4(0xc6120000u + i), std::uint16_t(1024 + (i % 60000))}; }

KePayload& ke_of(Message& m) {
    for (auto& p : m.payloads)
        if (auto* k = std::get_if<KePayload>(&p.body)) return *k;
    FAIL("no KE");
    throw 0;
}
NoncePayload& nonce_of(Message& m) {
    for (auto& p : m.payloads)
        if (auto* n = std::get_if<NoncePayload>(&p.body)) return *n;
    FAIL("no nonce");
    throw 0;
}

std::uint16_t only_notify(const Datagram& d) {
    Message m;
    if (decode(d.data, m) != DecodeError::ok || m.payloads.size() != 1) return 0;
    const auto* n = std::get_if<NotifyPayload>(&m.payloads[0].body);
    return n ? n->type : 0;
}

}  // namespace

TEST_CASE("flood: KE group, KE data and nonce are checked before any key pair is made", "[flood]") {
    LogCapture logs;
    struct Row {
        const char* what;
        std::uint16_t group;      // the responder's only group, and the KE's
        std::size_t ke_len;       // KE data length sent
        std::uint8_t fill;        // KE data bytes
        std::size_t nonce_len;
        std::uint16_t prf;        // the responder's only PRF
        Reason reason;
    };
    const Row rows[] = {
        {"X25519 KE one byte short", group_x25519, 31, 0x11, 32, prf_hmac_sha2_256, Reason::SETUP_BAD_KE},
        {"X25519 KE one byte long", group_x25519, 33, 0x11, 32, prf_hmac_sha2_256, Reason::SETUP_BAD_KE},
        {"ECP-256 point not on the curve", group_ecp256, 64, 0x01, 32, prf_hmac_sha2_256, Reason::SETUP_BAD_KE},
        {"ECP-384 KE of ECP-256 size", group_ecp384, 64, 0x01, 32, prf_hmac_sha2_384, Reason::SETUP_BAD_KE},
        {"16-byte nonce with a 48-byte PRF key", group_x25519, 32, 0x11, 16, prf_hmac_sha2_384, Reason::SETUP_SHORT_NONCE},
        {"23-byte nonce with a 48-byte PRF key", group_x25519, 32, 0x11, 23, prf_hmac_sha2_384, Reason::SETUP_SHORT_NONCE},
    };
    for (const auto& r : rows) {
        INFO(r.what);
        SetupOptions op;
        op.groups = {r.group};
        op.prfs = {r.prf};
        Pair pr(PairConfig{}, psk("flood test key k......."), psk("flood test key k......."), op);
        SetupOptions ot;
        ot.groups = {r.group};
        ot.prfs = {r.prf};
        Message m = init_template(pr.clock, ot);
        ke_of(m).data.assign(r.ke_len, r.fill);
        nonce_of(m).data.assign(r.nonce_len, 0x5a);
        pr.p->on_datagram(spoofed(1), kPrimary, encode(m));
        CHECK(pr.p->counters().key_pairs == 0);
        CHECK(pr.p->half_open() == 0);
        REQUIRE(pr.to_s.q.size() == 1);
        CHECK(only_notify(pr.to_s.q.front()) == nt::invalid_syntax);
        CHECK(logs.count(r.reason) >= 1);
    }
    SECTION("and the same request, made right, costs exactly one key pair") {
        Pair pr(PairConfig{}, psk("flood test key k......."), psk("flood test key k......."));
        SetupOptions o;
        o.prfs = {prf_hmac_sha2_384};
        Message m = init_template(pr.clock, o);
        nonce_of(m).data.assign(24, 0x5a);  // half of SHA-384's 48: enough
        pr.p->on_datagram(spoofed(1), kPrimary, encode(m));
        CHECK(pr.p->counters().key_pairs == 1);
        CHECK(pr.p->half_open() == 1);
    }
}

TEST_CASE("flood: the initiator refuses a responder nonce too short for the PRF", "[flood]") {
    SetupOptions o;
    o.prfs = {prf_hmac_sha2_384};
    Pair pr(PairConfig{}, psk("flood test key k......."), psk("flood test key k......."), o, o);
    REQUIRE(pr.s->connect(1));
    REQUIRE(pr.deliver_to_p());
    Message r;
    REQUIRE(decode(pr.to_s.q.front().data, r) == DecodeError::ok);
    nonce_of(r).data.resize(16);
    pr.to_s.q.front().data = encode(r);
    REQUIRE(pr.deliver_to_s());
    REQUIRE(pr.sink_s.failures.size() == 1);
    CHECK(pr.sink_s.failures[0].second == Reason::SETUP_SHORT_NONCE);
}

TEST_CASE("flood: failed requests and the request rate demand cookies, not only half-open ones", "[flood]") {
    SECTION("refused requests (bad KE) from many sources") {
        LogCapture logs;
        Pair pr(PairConfig{}, psk("flood test key k......."), psk("flood test key k......."));
        Message m = init_template(pr.clock);
        ke_of(m).data.assign(31, 1);
        const int n = 2000;
        for (int i = 0; i < n; ++i) {
            m.hdr.spi_i = Spi{0x1000 + std::uint64_t(i)};
            pr.p->on_datagram(spoofed(std::uint32_t(i)), kPrimary, encode(m));
            pr.to_s.q.clear();
        }
        const auto& c = pr.p->counters();
        CHECK(pr.p->cookies_demanded());
        CHECK(c.bad_ke == limits::cookie_failure_rate);  // then each further one gets a COOKIE only
        CHECK(c.cookies_sent == n - limits::cookie_failure_rate);
        CHECK(c.key_pairs == 0);
        CHECK(logs.count(Reason::SETUP_COOKIES_ON) == 1);
        // A second later the rate has gone and the episode with it.
        pr.clock.advance(2s);
        CHECK(!pr.p->cookies_demanded());
    }
    SECTION("well-formed requests above the request rate, few half-open thanks to the clock") {
        SetupOptions op;
        op.cookie_threshold = 100000;  // never by half-open count
        Pair pr(PairConfig{}, psk("flood test key k......."), psk("flood test key k......."), op);
        Message m = init_template(pr.clock);
        for (std::size_t i = 0; i < limits::cookie_request_rate + 50; ++i) {
            m.hdr.spi_i = Spi{0x2000 + std::uint64_t(i)};
            pr.p->on_datagram(spoofed(std::uint32_t(i)), kPrimary, encode(m));
            pr.to_s.q.clear();
        }
        CHECK(pr.p->half_open() == limits::cookie_request_rate);
        CHECK(pr.p->counters().cookies_sent == 50);
        CHECK(pr.p->counters().key_pairs == limits::cookie_request_rate);
    }
}

TEST_CASE("flood: no cookie is valid under a secret that does not exist yet", "[flood]") {
    // Until the first rotation there is no previous secret: a cookie of the previous version,
    // hashed over nothing secret, is one anyone can compute for a spoofed source.
    SetupOptions op;
    op.cookie_threshold = 0;  // cookies demanded from the first request
    Pair pr(PairConfig{}, psk("flood test key k......."), psk("flood test key k......."), op);
    Message m = init_template(pr.clock);
    const Endpoint from = spoofed(7);
    Bytes ip(from.addr.bytes.begin(), from.addr.bytes.begin() + 4), spi;
    put64(spi, m.hdr.spi_i.v);
    Bytes cookie{0};  // the engine's first secret is version 1
    append(cookie, sha256(nonce_of(m).data, ip, spi));
    Message forged;
    forged.hdr = m.hdr;
    forged.add_notify(nt::cookie, cookie);
    for (const auto& p : m.payloads) forged.payloads.push_back(p);
    pr.p->on_datagram(from, kPrimary, encode(forged));
    REQUIRE(pr.to_s.q.size() == 1);
    CHECK(only_notify(pr.to_s.q.front()) == nt::cookie);
    CHECK(pr.p->half_open() == 0);
    CHECK(pr.p->counters().key_pairs == 0);
}

TEST_CASE("flood: half-open exchanges are capped per source address (IPv4 address, IPv6 /64)", "[flood]") {
    LogCapture logs;
    SetupOptions op;
    op.cookie_threshold = 100000;
    op.cookie_request_rate = 100000;
    Pair pr(PairConfig{}, psk("flood test key k......."), psk("flood test key k......."), op);
    Message m = init_template(pr.clock);
    auto send = [&](const char* addr, std::uint16_t port, std::uint64_t spi) {
        m.hdr.spi_i = Spi{spi};
        pr.p->on_datagram(ep(addr, port), kPrimary, encode(m));
    };
    for (int i = 0; i < 100; ++i) send("203.0.113.5", std::uint16_t(2000 + i), 0x3000 + std::uint64_t(i));
    CHECK(pr.p->half_open() == limits::half_open_per_source);
    CHECK(pr.p->counters().half_open_source_full == 100 - limits::half_open_per_source);
    CHECK(logs.count(Reason::SETUP_HALF_OPEN_SOURCE) <= log::kPeerLinesPerSecond);
    CHECK(logs.count(Reason::SETUP_HALF_OPEN_SOURCE) >= 1);
    // Another address is not affected; IPv6 addresses of one /64 share a budget.
    send("203.0.113.6", 500, 0x9999);
    CHECK(pr.p->half_open() == limits::half_open_per_source + 1);
    // The real secondary still comes up.
    REQUIRE(pr.s->connect(1));
    pr.run();
    CHECK(pr.up());
    // Expiry gives the source its budget back, and the table empties.
    pr.tick(limits::half_open_timeout + 1s);
    CHECK(pr.p->half_open() == 0);
    CHECK(pr.p->half_open_sources() == 0);
    send("203.0.113.5", 2000, 0x4000);
    CHECK(pr.p->half_open() == 1);
}

TEST_CASE("flood: IPv6 sources of one /64 share the per-source budget", "[flood]") {
    SetupOptions op;
    op.cookie_threshold = 100000;
    op.cookie_request_rate = 100000;
    op.half_open_per_source = 4;
    Pair pr(PairConfig{}, psk("flood test key k......."), psk("flood test key k......."), op);
    Message m = init_template(pr.clock);
    for (int i = 0; i < 10; ++i) {
        m.hdr.spi_i = Spi{0x5000 + std::uint64_t(i)};
        const std::string a = "2001:db8:1:2::" + std::to_string(i + 1);
        pr.p->on_datagram(Endpoint{*IpAddr::parse(a), 500}, Endpoint{*IpAddr::parse("2001:db8::1"), 5653}, encode(m));
    }
    CHECK(pr.p->half_open() == 4);
    m.hdr.spi_i = Spi{0x6000};
    pr.p->on_datagram(Endpoint{*IpAddr::parse("2001:db8:1:3::1"), 500}, Endpoint{*IpAddr::parse("2001:db8::1"), 5653}, encode(m));
    CHECK(pr.p->half_open() == 5);
}

TEST_CASE("flood: every line a flood causes is rate-limited, with one summary", "[flood]") {
    LogCapture logs;
    SetupOptions op;
    op.cookie_failure_rate = 100000;  // no cookies: every request reaches the tasks
    op.cookie_request_rate = 100000;
    op.groups = {group_ecp256};      // the template's X25519 KE is not offered: NO_PROPOSAL
    Pair pr(PairConfig{}, psk("flood test key k......."), psk("flood test key k......."), op);
    Message m = init_template(pr.clock, [] { SetupOptions o; o.groups = {group_x25519}; return o; }());
    const int n = 3000;
    for (int i = 0; i < n; ++i) {
        m.hdr.spi_i = Spi{0x7000 + std::uint64_t(i)};
        pr.p->on_datagram(spoofed(std::uint32_t(i)), kPrimary, encode(m));
        pr.p->on_datagram(spoofed(std::uint32_t(i)), kPrimary, Bytes(40, 0xab));  // garbage too
        pr.to_s.q.clear();
    }
    CHECK(pr.p->counters().failed == std::uint64_t(n));
    CHECK(logs.count(Reason::SETUP_NO_PROPOSAL) <= log::kPeerLinesPerSecond + 1);
    CHECK(logs.count(Reason::SETUP_MALFORMED) <= log::kPeerLinesPerSecond + 1);
    CHECK(log::suppressed_total() >= std::uint64_t(n) - log::kPeerLinesPerSecond);
}

TEST_CASE("flood: a cached response is sent again only for the identical request", "[flood]") {
    LogCapture logs;
    Pair pr(PairConfig{}, psk("flood test key k......."), psk("flood test key k......."));
    REQUIRE(pr.s->connect(1));
    REQUIRE(pr.deliver_to_p());
    REQUIRE(pr.deliver_to_s());
    const Datagram auth = pr.to_p.q.front();
    REQUIRE(pr.deliver_to_p());
    REQUIRE(pr.sink_p.sessions.size() == 1);
    pr.to_s.q.clear();
    SECTION("IKE_AUTH: same header, other bytes (a forger who saw the SPIs)") {
        Datagram forged = auth;
        forged.data[forged.data.size() - 1] ^= 0x01;
        pr.p->on_datagram(ep("198.51.100.66", 5653), forged.to, forged.data);  // and from a victim's address
        CHECK(pr.to_s.q.empty());
        CHECK(pr.p->counters().resends_refused == 1);
        CHECK(pr.p->counters().responses_resent == 0);
        CHECK(logs.count(Reason::SETUP_RESEND_REFUSED) == 1);
        // The identical request is answered.
        pr.p->on_datagram(auth.from, auth.to, auth.data);
        CHECK(pr.to_s.q.size() == 1);
        CHECK(pr.p->counters().responses_resent == 1);
    }
    SECTION("IKE_AUTH: at most max_resends copies, however often it is replayed") {
        for (unsigned i = 0; i < limits::max_resends + 20; ++i) pr.p->on_datagram(auth.from, auth.to, auth.data);
        CHECK(pr.to_s.q.size() == limits::max_resends);
        CHECK(pr.p->counters().resends_refused == 20);
    }
}

TEST_CASE("flood: a forged error notify does not end a secondary's IKE_SA_INIT (RFC 7296 §2.21.1)", "[flood]") {
    LogCapture logs;
    Pair pr(PairConfig{}, psk("flood test key k......."), psk("flood test key k......."));
    REQUIRE(pr.s->connect(1));
    const Datagram req = pr.to_p.q.front();
    Message q;
    REQUIRE(decode(req.data, q) == DecodeError::ok);
    auto forge = [&](std::uint16_t type) {
        Message e;
        e.hdr = q.hdr;
        e.hdr.flags = flags::response;
        e.add_notify(type);
        return encode(e);
    };
    // On-path forger: NO_PROPOSAL_CHOSEN and AUTHENTICATION_FAILED before the real answer.
    pr.s->on_datagram(kPrimary, req.from, forge(nt::no_proposal_chosen));
    pr.s->on_datagram(kPrimary, req.from, forge(nt::authentication_failed));
    CHECK(pr.s->exchanges() == 1);
    CHECK(pr.sink_s.failures.empty());
    CHECK(pr.s->counters().unprotected_errors == 2);
    CHECK(logs.count(Reason::SETUP_UNPROTECTED_ERROR) == 2);
    pr.run();
    CHECK(pr.up());
    SECTION("only errors: the attempt ends when it times out, with the reason the error gave") {
        Pair p2(PairConfig{}, psk("flood test key k......."), psk("flood test key k......."));
        REQUIRE(p2.s->connect(1));
        Message q2;
        REQUIRE(decode(p2.to_p.q.front().data, q2) == DecodeError::ok);
        p2.to_p.q.clear();
        Message e;
        e.hdr = q2.hdr;
        e.hdr.flags = flags::response;
        e.add_notify(nt::no_proposal_chosen);
        p2.s->on_datagram(kPrimary, p2.s_local, encode(e));
        for (int i = 0; i < 700 && p2.sink_s.failures.empty(); ++i) p2.tick(100ms);
        REQUIRE(p2.sink_s.failures.size() == 1);
        CHECK(p2.sink_s.failures[0].second == Reason::SETUP_NO_PROPOSAL);
        CHECK(p2.to_p.all.size() == limits::retransmit_tries);  // it kept asking meanwhile
    }
}

TEST_CASE("flood: NAT-T framing rides on the datagram and the exchange; the frame parser keeps nothing", "[flood]") {
    Pair pr(PairConfig{}, psk("flood test key k......."), psk("flood test key k......."));
    REQUIRE(pr.s->connect(1));
    Datagram d = pr.to_p.q.front();
    pr.to_p.q.clear();
    pr.p->on_datagram(d.from, d.to, d.data, Framing::non_esp_marker);
    REQUIRE(pr.to_s.q.size() == 1);
    CHECK(pr.to_s.q.front().framing == Framing::non_esp_marker);
    // A plain request from another peer is answered plain (nothing leaks between peers).
    Message m = init_template(pr.clock);
    pr.p->on_datagram(spoofed(3), kPrimary, encode(m));
    REQUIRE(pr.to_s.q.size() == 2);
    CHECK(pr.to_s.q.back().framing == Framing::plain);

    // Ethernet/IPv4/UDP with the marker: parsed to the same datagram, marker noted.
    Bytes frame(14, 0);
    frame[12] = 0x08;
    Bytes pkt(setup_packet_size(kPrimary, Framing::non_esp_marker, d.data.size()));
    REQUIRE(build_setup_packet(d.from, kPrimary, Framing::non_esp_marker, d.data, pkt));
    append(frame, pkt);
    const auto f = parse_setup_frame(frame);
    REQUIRE(f);
    CHECK(f->framing == Framing::non_esp_marker);
    CHECK(f->from == d.from);
    CHECK(f->to == kPrimary);
    CHECK(Bytes(f->payload.begin(), f->payload.end()) == d.data);
    // Truncated anywhere: refused, never read past the end.
    for (std::size_t n = 0; n < 14 + 28; ++n) CHECK(!parse_setup_frame(ByteView(frame.data(), n)));
}

TEST_CASE("flood: finished exchanges kept for retransmissions count against the table's bound", "[flood]") {
    SetupOptions op;
    op.half_open_max = 4;
    op.cookie_threshold = op.cookie_request_rate = op.cookie_failure_rate = 100000;
    Pair pr(PairConfig{}, psk("flood test key right..."), psk("flood test key k......."), op);
    // Secondaries with the wrong key: each completes IKE_SA_INIT and fails in IKE_AUTH, which
    // frees its half-open slot but leaves the exchange (and its cached answer) for 30 s.
    for (int i = 0; i < 12; ++i) {
        control::SeededRandom rnd(100 + i);
        Queue q(pr.clock);
        RecordingSink sink(0x9000);
        SetupEngine s(secondary_config(PairConfig{}), psk("flood test key wrong..."), SetupOptions{}, pr.clock, rnd, q, sink);
        REQUIRE(s.connect(1));
        const Endpoint from = spoofed(std::uint32_t(i));
        pr.p->on_datagram(from, kPrimary, q.q.front().data);
        q.q.clear();
        if (pr.to_s.q.empty()) continue;  // refused: the table is full
        s.on_datagram(kPrimary, pr.s_local, pr.to_s.q.front().data);
        pr.to_s.q.clear();
        // Spoofed, the source looks like a NAT to the secondary: a NAT keepalive, then IKE_AUTH.
        REQUIRE(q.q.size() == 2);
        CHECK(q.q.front().data == Bytes{0xff});
        pr.p->on_datagram(from, kPrimary, q.q.back().data);
        pr.to_s.q.clear();
    }
    CHECK(pr.p->half_open() == 0);
    CHECK(pr.p->exchanges() == 2 * op.half_open_max);
    CHECK(pr.p->counters().half_open_full == 12 - 2 * op.half_open_max);
    pr.tick(limits::half_open_timeout + 1s);
    CHECK(pr.p->exchanges() == 0);
}

TEST_CASE("flood: exchanges a source made fail count against its budget until they are gone", "[flood]") {
    // One host with a real address completes IKE_SA_INIT and fails IKE_AUTH, over and over:
    // each failure frees the half-open slot but the exchange stays 30 s for retransmissions.
    // Uncapped per source, one host fills the table and every secondary is refused.
    SetupOptions op;
    op.cookie_threshold = op.cookie_request_rate = op.cookie_failure_rate = 100000;
    Pair pr(PairConfig{}, psk("flood test key right..."), psk("flood test key right..."), op);
    int refused = 0;
    const int n = int(limits::half_open_per_source) + 20;
    for (int i = 0; i < n; ++i) {
        control::SeededRandom rnd(300 + i);
        Queue q(pr.clock);
        RecordingSink sink(0x9000);
        SetupEngine s(secondary_config(PairConfig{}), psk("flood test key wrong..."), SetupOptions{}, pr.clock, rnd, q, sink);
        REQUIRE(s.connect(1));
        const Endpoint from = ep("203.0.113.9", std::uint16_t(3000 + i));
        pr.p->on_datagram(from, kPrimary, q.q.front().data);
        q.q.clear();
        if (pr.to_s.q.empty()) {
            ++refused;
            continue;
        }
        s.on_datagram(kPrimary, pr.s_local, pr.to_s.q.front().data);
        pr.to_s.q.clear();
        // Spoofed, the source looks like a NAT to the secondary: a NAT keepalive, then IKE_AUTH.
        REQUIRE(q.q.size() == 2);
        CHECK(q.q.front().data == Bytes{0xff});
        pr.p->on_datagram(from, kPrimary, q.q.back().data);
        pr.to_s.q.clear();
    }
    CHECK(pr.p->half_open() == 0);
    CHECK(pr.p->exchanges() == limits::half_open_per_source);
    CHECK(refused == n - int(limits::half_open_per_source));
    CHECK(pr.p->counters().half_open_source_full == std::uint64_t(refused));
    // The real secondary, from its own address, still comes up.
    REQUIRE(pr.s->connect(1));
    pr.run();
    CHECK(pr.up());
    // When the failed exchanges are gone, so is the source's debt.
    pr.tick(limits::half_open_timeout + 1s);
    CHECK(pr.p->half_open_sources() == 0);
}
