// Two setup engines (a primary and a secondary) in one process, stepped datagram by datagram
// on a ManualClock: PSK success and what both sides hold afterwards; authentication and
// proposal failures with their notifies, reason codes and no session; INVALID_KE_PAYLOAD then
// success; loss, duplication and reordering; retransmission back-off and cached responses;
// roles; COOKIEs under a flood of spoofed requests; NAT detection.
#include <catch2/catch.hpp>

#include <chrono>

#include "setup_harness.hpp"

using namespace p3;
using namespace p3::setup;
using namespace p3::setup::test;
using namespace std::chrono_literals;

namespace {

Bytes bytes(const SecretBytes& s) { return Bytes(s.span().begin(), s.span().end()); }

// The notify types in a plaintext (IKE_SA_INIT) datagram.
std::vector<std::uint16_t> notifies(const Bytes& d) {
    Message m;
    std::vector<std::uint16_t> out;
    if (decode(d, m) != DecodeError::ok) return out;
    for (const auto& p : m.payloads)
        if (auto* n = std::get_if<NotifyPayload>(&p.body)) out.push_back(n->type);
    return out;
}
bool has_notify(const Bytes& d, std::uint16_t t) {
    for (auto n : notifies(d))
        if (n == t) return true;
    return false;
}

void check_session_pair(const EstablishedSession& s, const EstablishedSession& p, std::size_t key_len) {
    CHECK(s.data_tx.key.size() == key_len);
    CHECK(s.data_tx.salt.size() == 4);
    CHECK(bytes(s.data_tx.key) == bytes(p.data_rx.key));
    CHECK(bytes(s.data_tx.salt) == bytes(p.data_rx.salt));
    CHECK(bytes(s.data_rx.key) == bytes(p.data_tx.key));
    CHECK(bytes(s.control_tx.key) == bytes(p.control_rx.key));
    CHECK(bytes(s.control_rx.key) == bytes(p.control_tx.key));
    CHECK(bytes(s.control_rx.salt) == bytes(p.control_tx.salt));
    // Four independent keys: no two directions or kinds share material.
    CHECK(bytes(s.data_tx.key) != bytes(s.data_rx.key));
    CHECK(bytes(s.data_tx.key) != bytes(s.control_tx.key));
    CHECK(bytes(s.data_rx.key) != bytes(s.control_rx.key));
    // P3 IDs are receiver-chosen: what one side sends with is what the other receives on.
    CHECK(s.tx_p3_id == p.rx_p3_id);
    CHECK(s.rx_p3_id == p.tx_p3_id);
    CHECK(s.ike_spi_i == p.ike_spi_i);
    CHECK(s.ike_spi_r == p.ike_spi_r);
}

}  // namespace

TEST_CASE("setup: PSK exchange, stepped message by message") {
    LogCapture logs;
    Pair pr(PairConfig{}, psk("correct horse battery staple"), psk("correct horse battery staple"));
    REQUIRE(pr.s->connect(1));
    CHECK(!pr.s->connect(1));  // one exchange per remote at a time

    // 1. IKE_SA_INIT request: SA, KE, Nonce, NAT-D, no responder SPI.
    REQUIRE(pr.to_p.q.size() == 1);
    {
        Message m;
        REQUIRE(decode(pr.to_p.q.front().data, m) == DecodeError::ok);
        CHECK(m.hdr.exchange == Exchange::ike_sa_init);
        CHECK(m.hdr.from_initiator());
        CHECK(!m.hdr.spi_r);
        CHECK(m.find<SaPayload>(pt::sa));
        CHECK(m.find<KePayload>(pt::ke)->group == group_x25519);
        CHECK(m.find<NoncePayload>(pt::nonce)->data.size() == limits::our_nonce);
        CHECK(m.notify(nt::nat_detection_source_ip));
        CHECK(m.notify(nt::nat_detection_destination_ip));
        CHECK(pr.to_p.q.front().to == ep("192.0.2.1", 5653));
    }
    REQUIRE(pr.deliver_to_p());
    CHECK(pr.p->half_open() == 1);
    // 2. IKE_SA_INIT response: responder SPI, one chosen proposal.
    REQUIRE(pr.to_s.q.size() == 1);
    {
        Message m;
        REQUIRE(decode(pr.to_s.q.front().data, m) == DecodeError::ok);
        CHECK(m.hdr.is_response());
        CHECK(m.hdr.spi_r);
        const auto* sa = m.find<SaPayload>(pt::sa);
        REQUIRE(sa);
        REQUIRE(sa->proposals.size() == 1);
        CHECK(sa->proposals[0].transforms.size() == 3);
    }
    REQUIRE(pr.deliver_to_s());
    // 3. IKE_AUTH request: everything inside SK.
    REQUIRE(pr.to_p.q.size() == 1);
    {
        Message m;
        REQUIRE(decode(pr.to_p.q.front().data, m) == DecodeError::ok);
        CHECK(m.hdr.exchange == Exchange::ike_auth);
        CHECK(m.hdr.msg_id == 1);
        CHECK(m.encrypted);
        CHECK(m.payloads.empty());
    }
    CHECK(pr.sink_s.reserved.size() == 1);  // the secondary's receive ID is reserved before it is announced
    REQUIRE(pr.deliver_to_p());
    // The primary installs before its response leaves.
    CHECK(pr.sink_p.sessions.size() == 1);
    CHECK(pr.sink_s.sessions.empty());
    CHECK(pr.p->half_open() == 0);
    REQUIRE(pr.deliver_to_s());
    REQUIRE(pr.up());
    CHECK(pr.to_p.q.empty());
    CHECK(pr.to_s.q.empty());

    const auto& s = pr.sink_s.sessions[0];
    const auto& p = pr.sink_p.sessions[0];
    check_session_pair(s, p, 16);
    CHECK(s.remote_id == 1);
    CHECK(p.remote_id == 7);
    CHECK(s.peer_identity == "pri.test");
    CHECK(p.peer_identity == "sec.test");
    CHECK(s.key_type == config::KeyType::aes128);
    CHECK(!s.nat());
    CHECK(!p.nat());
    // The configuration push: both hold the same, and it says what the primary's config says.
    CHECK(s.config == p.config);
    REQUIRE(s.config.secondary_subnets.size() == 1);
    CHECK(s.config.secondary_subnets[0] == *Prefix::parse("10.2.0.0/24"));
    REQUIRE(s.config.primary_subnets.size() == 1);
    CHECK(s.config.primary_subnets[0] == *Prefix::parse("10.1.0.0/24"));
    CHECK(s.config.params.heartbeat_time == 10);
    CHECK(pr.p->counters().established == 1);
    CHECK(pr.s->counters().established == 1);
    CHECK(pr.s->exchanges() == 0);  // the initiator keeps nothing once up
    CHECK(logs.count(Reason::SETUP_UP) == 2);
    CHECK(logs.has(Reason::SETUP_UP, "sec.test"));
    CHECK(logs.has(Reason::SETUP_UP, "P3-I0401"));
    // The responder's cache expires.
    pr.tick(limits::half_open_timeout + 1s);
    CHECK(pr.p->exchanges() == 0);
}

TEST_CASE("the primary pushes every network it protects: its LAN and local.subnets", "[setup][push]") {
    config::Config pc = primary_config(PairConfig{});
    pc.local.subnets = {*Prefix::parse("10.1.5.0/24"), *Prefix::parse("fd01:5::/64")};
    Pair pr(std::move(pc), secondary_config(PairConfig{}), psk("correct horse battery staple"),
            psk("correct horse battery staple"));
    REQUIRE(pr.s->connect(1));
    pr.run();
    REQUIRE(pr.up());
    const auto& got = pr.sink_s.sessions[0].config.primary_subnets;
    REQUIRE(got.size() == 3);
    CHECK(got[0] == *Prefix::parse("10.1.0.0/24"));
    CHECK(got[1] == *Prefix::parse("10.1.5.0/24"));
    CHECK(got[2] == *Prefix::parse("fd01:5::/64"));
}

TEST_CASE("setup: AES-256 key type gives 32-byte keys; every group and PRF works") {
    struct Case { std::uint16_t group, prf; config::KeyType kt; std::size_t klen; };
    const Case cases[] = {
        {group_x25519, prf_hmac_sha2_256, config::KeyType::aes256, 32},
        {group_ecp256, prf_hmac_sha2_256, config::KeyType::aes128, 16},
        {group_ecp384, prf_hmac_sha2_384, config::KeyType::aes256, 32},
    };
    for (const auto& c : cases) {
        INFO("group " << c.group << " prf " << c.prf);
        PairConfig pc;
        pc.key_type = c.kt;
        SetupOptions o;
        o.groups = {c.group};
        o.prfs = {c.prf};
        Pair pr(pc, psk(kTestPsk), psk(kTestPsk), o, o);
        REQUIRE(pr.s->connect(1));
        pr.run();
        REQUIRE(pr.up());
        check_session_pair(pr.sink_s.sessions[0], pr.sink_p.sessions[0], c.klen);
        CHECK(pr.sink_s.sessions[0].key_type == c.kt);
        CHECK(pr.sink_s.sessions[0].config.params.key_type == c.kt);
    }
}

TEST_CASE("setup: authentication failures answer AUTHENTICATION_FAILED, log the reason, leave no session") {
    struct Case {
        const char* what;
        const char* psk_p;
        const char* psk_s;
        PairConfig pc;
        Reason primary_reason;
    };
    PairConfig unknown;
    unknown.secondary_id = "stranger.test";
    PairConfig wrong_primary;
    wrong_primary.secondary_expects = "other-primary.test";
    const Case cases[] = {
        {"wrong PSK", "the right key, 16+ bytes", "a wrong key, 16+ bytes", PairConfig{}, Reason::SETUP_AUTH_FAILED},
        {"unknown identity", "the right key, 16+ bytes", "the right key, 16+ bytes", unknown, Reason::SETUP_UNKNOWN_IDENTITY},
    };
    for (const auto& c : cases) {
        INFO(c.what);
        LogCapture logs;
        Pair pr(c.pc, psk(c.psk_p), psk(c.psk_s));
        REQUIRE(pr.s->connect(1));
        pr.run();
        CHECK(pr.sink_p.sessions.empty());
        CHECK(pr.sink_s.sessions.empty());
        REQUIRE(pr.sink_p.failures.size() == 1);
        CHECK(pr.sink_p.failures[0].second == c.primary_reason);
        REQUIRE(pr.sink_s.failures.size() == 1);
        CHECK(pr.sink_s.failures[0] == std::make_pair(std::uint32_t(1), Reason::SETUP_PEER_REJECTED));
        CHECK(pr.sink_s.reserved.empty());  // the reserved receive ID went back
        CHECK(pr.sink_p.reserved.empty());
        CHECK(logs.count(c.primary_reason) == 1);
        CHECK(logs.has(c.primary_reason, std::string(reason_code(c.primary_reason))));
        CHECK(logs.has(c.primary_reason, c.pc.secondary_id));  // the peer's identity is in the line
        CHECK(logs.count(Reason::SETUP_UP) == 0);
        CHECK(pr.s->exchanges() == 0);
        CHECK(pr.p->half_open() == 0);
        // The primary answered inside SK: the last thing it sent is an encrypted IKE_AUTH response.
        Message m;
        REQUIRE(decode(pr.to_s.all.back().data, m) == DecodeError::ok);
        CHECK(m.hdr.exchange == Exchange::ike_auth);
        CHECK(m.encrypted);
    }
    SECTION("the primary's identity is not the one configured: the secondary refuses") {
        LogCapture logs;
        Pair pr(wrong_primary, psk(kTestPsk), psk(kTestPsk));
        REQUIRE(pr.s->connect(1));
        pr.run();
        CHECK(pr.sink_s.sessions.empty());
        REQUIRE(pr.sink_s.failures.size() == 1);
        CHECK(pr.sink_s.failures[0].second == Reason::SETUP_UNKNOWN_IDENTITY);
        CHECK(logs.has(Reason::SETUP_UNKNOWN_IDENTITY, "pri.test"));
    }
}

TEST_CASE("setup: no common proposal -> NO_PROPOSAL_CHOSEN, logged on both sides, no state") {
    LogCapture logs;
    SetupOptions op, os;
    op.encr_bits = {256};
    os.encr_bits = {128};
    Pair pr(PairConfig{}, psk(kTestPsk), psk(kTestPsk), op, os);
    REQUIRE(pr.s->connect(1));
    REQUIRE(pr.deliver_to_p());
    REQUIRE(pr.to_s.q.size() == 1);
    CHECK(notifies(pr.to_s.q.front().data) == std::vector<std::uint16_t>{nt::no_proposal_chosen});
    CHECK(pr.p->exchanges() == 0);  // answered statelessly
    CHECK(pr.p->half_open() == 0);
    REQUIRE(pr.deliver_to_s());
    // Unauthenticated: the secondary keeps asking until the exchange times out (§2.21.1),
    // then fails with the reason the answer gave.
    CHECK(pr.s->exchanges() == 1);
    CHECK(pr.sink_s.failures.empty());
    for (int i = 0; i < 700 && pr.sink_s.failures.empty(); ++i) {
        pr.tick(100ms);
        pr.run();
    }
    CHECK(pr.s->exchanges() == 0);
    REQUIRE(pr.sink_s.failures.size() == 1);
    CHECK(pr.sink_s.failures[0].second == Reason::SETUP_NO_PROPOSAL);
    CHECK(logs.count(Reason::SETUP_NO_PROPOSAL) == limits::retransmit_tries + 1);  // each try refused, then the end
    CHECK(logs.count(Reason::SETUP_UNPROTECTED_ERROR) == limits::retransmit_tries);
    CHECK(pr.sink_p.sessions.empty());
}

TEST_CASE("setup: wrong key exchange group -> INVALID_KE_PAYLOAD, then success with the primary's group") {
    LogCapture logs;
    SetupOptions op, os;
    op.groups = {group_ecp256};
    os.groups = {group_x25519, group_ecp256};
    Pair pr(PairConfig{}, psk(kTestPsk), psk(kTestPsk), op, os);
    REQUIRE(pr.s->connect(1));
    REQUIRE(pr.deliver_to_p());
    REQUIRE(pr.to_s.q.size() == 1);
    {
        Message m;
        REQUIRE(decode(pr.to_s.q.front().data, m) == DecodeError::ok);
        const auto* n = m.notify(nt::invalid_ke_payload);
        REQUIRE(n);
        CHECK(n->data == Bytes{0, 19});
    }
    CHECK(pr.p->exchanges() == 0);
    REQUIRE(pr.deliver_to_s());
    REQUIRE(pr.to_p.q.size() == 1);
    {
        Message m;
        REQUIRE(decode(pr.to_p.q.front().data, m) == DecodeError::ok);
        CHECK(m.find<KePayload>(pt::ke)->group == group_ecp256);
        CHECK(m.find<KePayload>(pt::ke)->data.size() == 64);
    }
    pr.run();
    REQUIRE(pr.up());
    check_session_pair(pr.sink_s.sessions[0], pr.sink_p.sessions[0], 16);
    CHECK(logs.count(Reason::SETUP_INVALID_KE) == 2);  // primary asks, secondary retries
}

TEST_CASE("setup: a group the secondary never offered in INVALID_KE ends the attempt") {
    SetupOptions op, os;
    op.groups = {group_ecp384};
    os.groups = {group_x25519};
    Pair pr(PairConfig{}, psk(kTestPsk), psk(kTestPsk), op, os);
    REQUIRE(pr.s->connect(1));
    for (int i = 0; i < 700 && pr.sink_s.failures.empty(); ++i) {
        pr.run();
        pr.tick(100ms);
    }
    // The primary finds no common group at all: NO_PROPOSAL_CHOSEN, not INVALID_KE.
    CHECK(!pr.up());
    REQUIRE(pr.sink_s.failures.size() == 1);
    CHECK(pr.sink_s.failures[0].second == Reason::SETUP_NO_PROPOSAL);
}

TEST_CASE("setup: retransmission backs off exponentially, then the attempt fails with SETUP_TIMEOUT") {
    LogCapture logs;
    Pair pr(PairConfig{}, psk(kTestPsk), psk(kTestPsk));
    REQUIRE(pr.s->connect(1));
    // Nobody answers: let 2 minutes pass in 100 ms steps.
    for (int i = 0; i < 1200; ++i) pr.tick(100ms);
    const auto& sent = pr.to_p.all;
    REQUIRE(sent.size() == limits::retransmit_tries);
    for (std::size_t i = 1; i < sent.size(); ++i) {
        INFO("retransmission " << i);
        CHECK(sent[i].data == sent[0].data);  // the same bytes every time
        const auto gap = sent[i].sent_at - sent[i - 1].sent_at;
        CHECK(gap >= limits::retransmit_base * (1 << (i - 1)));
        CHECK(gap < limits::retransmit_base * (1 << (i - 1)) + 100ms);
    }
    CHECK(pr.s->counters().retransmits == limits::retransmit_tries - 1);
    REQUIRE(pr.sink_s.failures.size() == 1);
    CHECK(pr.sink_s.failures[0].second == Reason::SETUP_TIMEOUT);
    CHECK(logs.has(Reason::SETUP_TIMEOUT, "192.0.2.1:5653"));
    CHECK(pr.s->exchanges() == 0);
    CHECK(!pr.s->next_deadline());
    CHECK(pr.s->connect(1));  // and a new attempt may start
}

TEST_CASE("setup: lost, duplicated and reordered datagrams still end with one session") {
    SECTION("first IKE_SA_INIT request lost") {
        Pair pr(PairConfig{}, psk(kTestPsk), psk(kTestPsk));
        REQUIRE(pr.s->connect(1));
        pr.to_p.q.clear();
        pr.tick(limits::retransmit_base);
        pr.run();
        CHECK(pr.up());
        CHECK(pr.s->counters().retransmits == 1);
    }
    SECTION("IKE_SA_INIT response lost: the retransmitted request gets the cached response") {
        Pair pr(PairConfig{}, psk(kTestPsk), psk(kTestPsk));
        REQUIRE(pr.s->connect(1));
        REQUIRE(pr.deliver_to_p());
        const Bytes first = pr.to_s.q.front().data;
        pr.to_s.q.clear();
        pr.tick(limits::retransmit_base);
        REQUIRE(pr.deliver_to_p());
        CHECK(pr.p->counters().responses_resent == 1);
        CHECK(pr.p->half_open() == 1);  // no second half-open exchange
        REQUIRE(pr.to_s.q.size() == 1);
        CHECK(pr.to_s.q.front().data == first);
        pr.run();
        CHECK(pr.up());
    }
    SECTION("IKE_AUTH response lost: cached response, keys installed once") {
        Pair pr(PairConfig{}, psk(kTestPsk), psk(kTestPsk));
        REQUIRE(pr.s->connect(1));
        REQUIRE(pr.deliver_to_p());
        REQUIRE(pr.deliver_to_s());
        REQUIRE(pr.deliver_to_p());
        REQUIRE(pr.to_s.q.size() == 1);
        pr.to_s.q.clear();
        pr.tick(limits::retransmit_base);
        pr.run();
        CHECK(pr.up());
        CHECK(pr.p->counters().responses_resent == 1);
        CHECK(pr.sink_p.sessions.size() == 1);
    }
    SECTION("every request duplicated") {
        Pair pr(PairConfig{}, psk(kTestPsk), psk(kTestPsk));
        REQUIRE(pr.s->connect(1));
        for (int i = 0; i < 10; ++i) {
            if (!pr.to_p.q.empty()) pr.to_p.q.push_back(pr.to_p.q.front());
            if (!pr.deliver_to_p() && !pr.deliver_to_s()) break;
            while (pr.deliver_to_p()) {}
            while (pr.deliver_to_s()) {}
        }
        pr.run();
        CHECK(pr.up());
        CHECK(pr.p->counters().responses_resent >= 2);
        CHECK(pr.p->counters().established == 1);
    }
    SECTION("every response duplicated, the copy arriving after the next request") {
        Pair pr(PairConfig{}, psk(kTestPsk), psk(kTestPsk));
        REQUIRE(pr.s->connect(1));
        REQUIRE(pr.deliver_to_p());
        const Datagram init_resp = pr.to_s.q.front();
        REQUIRE(pr.deliver_to_s());
        REQUIRE(pr.deliver_to_p());
        pr.to_s.q.push_front(init_resp);  // stale IKE_SA_INIT response first
        pr.to_s.q.push_back(pr.to_s.q.back());
        pr.run();
        CHECK(pr.up());
        CHECK(pr.s->counters().malformed + pr.s->counters().dropped_no_sa == 2);
    }
    SECTION("retransmitted IKE_SA_INIT overtaking the IKE_AUTH request") {
        Pair pr(PairConfig{}, psk(kTestPsk), psk(kTestPsk));
        REQUIRE(pr.s->connect(1));
        const Datagram init_req = pr.to_p.q.front();
        REQUIRE(pr.deliver_to_p());
        REQUIRE(pr.deliver_to_s());
        // Now the IKE_AUTH request is queued; a late copy of IKE_SA_INIT arrives first.
        pr.to_p.q.push_front(init_req);
        pr.run();
        CHECK(pr.up());
        CHECK(pr.p->counters().established == 1);
    }
}

TEST_CASE("setup: roles: a secondary answers no request, a primary initiates nothing and ignores responses") {
    LogCapture logs;
    Pair pr(PairConfig{}, psk(kTestPsk), psk(kTestPsk));
    CHECK(!pr.p->connect(7));
    CHECK(logs.count(Reason::SETUP_ROLE) == 1);
    REQUIRE(pr.s->connect(1));
    // Deliver the secondary's request to the secondary itself.
    const Datagram d = pr.to_p.q.front();
    pr.s->on_datagram(d.from, d.to, d.data);
    CHECK(pr.s->counters().dropped_role == 1);
    CHECK(pr.to_p.q.size() == 1);  // nothing new sent
    // And a response to the primary.
    REQUIRE(pr.deliver_to_p());
    const Datagram r = pr.to_s.q.front();
    pr.p->on_datagram(r.to, r.from, r.data);
    CHECK(pr.p->counters().dropped_role == 1);
}

TEST_CASE("setup: unknown payloads: ignored unless critical; critical -> UNSUPPORTED_CRITICAL_PAYLOAD") {
    Pair pr(PairConfig{}, psk(kTestPsk), psk(kTestPsk));
    REQUIRE(pr.s->connect(1));
    Message m;
    REQUIRE(decode(pr.to_p.q.front().data, m) == DecodeError::ok);
    SECTION("not critical: the exchange goes on") {
        m.payloads.push_back(Payload{pt::vendor, false, RawPayload{Bytes{1, 2, 3}}});
        m.payloads.push_back(Payload{200, false, RawPayload{Bytes{4}}});
        pr.to_p.q.front().data = encode(m);
        REQUIRE(pr.deliver_to_p());
        CHECK(pr.p->half_open() == 1);
        CHECK(!has_notify(pr.to_s.q.front().data, nt::unsupported_critical_payload));
    }
    SECTION("critical: refused, the type is named") {
        m.payloads.push_back(Payload{200, true, RawPayload{Bytes{4}}});
        pr.to_p.q.front().data = encode(m);
        REQUIRE(pr.deliver_to_p());
        CHECK(pr.p->half_open() == 0);
        CHECK(pr.p->counters().critical_unsupported == 1);
        Message r;
        REQUIRE(decode(pr.to_s.q.front().data, r) == DecodeError::ok);
        const auto* n = r.notify(nt::unsupported_critical_payload);
        REQUIRE(n);
        CHECK(n->data == Bytes{200});  // RFC 7296 §3.10.1: the payload type in the notification data
    }
}

TEST_CASE("setup: malformed and forged datagrams are counted and dropped") {
    Pair pr(PairConfig{}, psk(kTestPsk), psk(kTestPsk));
    REQUIRE(pr.s->connect(1));
    REQUIRE(pr.deliver_to_p());
    REQUIRE(pr.deliver_to_s());
    // IKE_AUTH request with one bit of the ciphertext flipped: dropped silently, no answer.
    Datagram d = pr.to_p.q.front();
    d.data[d.data.size() - 20] ^= 1;
    pr.p->on_datagram(d.from, d.to, d.data);
    CHECK(pr.p->counters().malformed == 1);
    CHECK(pr.to_s.q.empty());
    // Garbage.
    const Bytes junk(40, 0xab);
    pr.p->on_datagram(d.from, d.to, junk);
    CHECK(pr.p->counters().malformed == 2);
    // IKE_AUTH for SPIs nobody knows.
    Datagram stray = pr.to_p.q.front();
    stray.data[8] ^= 0xff;
    pr.p->on_datagram(stray.from, stray.to, stray.data);
    CHECK(pr.p->counters().dropped_no_sa == 1);
    // The real request still works.
    pr.run();
    CHECK(pr.up());
}

TEST_CASE("setup: the dataplane refusing keys fails the setup with SETUP_KEYS_REJECTED") {
    LogCapture logs;
    Pair pr(PairConfig{}, psk(kTestPsk), psk(kTestPsk));
    pr.sink_p.refuse_install = true;
    REQUIRE(pr.s->connect(1));
    pr.run();
    CHECK(!pr.up());
    REQUIRE(pr.sink_p.failures.size() == 1);
    CHECK(pr.sink_p.failures[0].second == Reason::SETUP_KEYS_REJECTED);
    CHECK(pr.sink_p.reserved.empty());
    CHECK(logs.count(Reason::SETUP_KEYS_REJECTED) == 1);
}

TEST_CASE("setup: the secondary announces its lanes; the primary reserves that many P3 IDs, or the most when not told") {
    struct Row {
        std::uint32_t announce;   // the secondary's sending lanes (0: says nothing)
        std::uint32_t reserved;   // what the primary's sink is asked for
    };
    for (const Row r : {Row{3, 3}, Row{1, 1}, Row{64, 64}, Row{0, 0}}) {
        INFO("secondary sends on " << r.announce << " lane(s)");
        Pair pr(PairConfig{}, psk(kTestPsk), psk(kTestPsk));
        pr.sink_s.lanes = r.announce;
        REQUIRE(pr.s->connect(1));
        pr.run();
        REQUIRE(pr.up());
        REQUIRE(pr.sink_p.announced.size() == 1);
        CHECK(pr.sink_p.announced[0] == r.reserved);
        // The initiator reserves before it hears anything of the primary's lanes.
        REQUIRE(pr.sink_s.announced.size() == 1);
        CHECK(pr.sink_s.announced[0] == 0);
    }
    // More than a peer may have is no announcement at all.
    Pair big(PairConfig{}, psk(kTestPsk), psk(kTestPsk));
    big.sink_s.lanes = 65;
    REQUIRE(big.s->connect(1));
    big.run();
    REQUIRE(big.up());
    CHECK(big.sink_p.announced[0] == 0);
}

TEST_CASE("setup: COOKIEs under a flood of spoofed IKE_SA_INIT; memory bounded; the real secondary comes up") {
    LogCapture logs;
    Pair pr(PairConfig{}, psk(kTestPsk), psk(kTestPsk));
    // A template request from a second secondary engine (its own KE and nonce).
    control::SeededRandom rnd(99);
    Queue q(pr.clock);
    RecordingSink sink(0x9000);
    SetupEngine attacker(secondary_config(PairConfig{}), psk("the attacker's own key"), SetupOptions{}, pr.clock, rnd, q, sink);
    REQUIRE(attacker.connect(1));
    Message tmpl;
    REQUIRE(decode(q.q.front().data, tmpl) == DecodeError::ok);

    const int flood = 5000;
    for (int i = 0; i < flood; ++i) {
        Message m = tmpl;
        m.hdr.spi_i = Spi{0x5000000000000000ULL + std::uint64_t(i)};
        const Endpoint from{IpAddr::v4(0xc6336400u + std::uint32_t(i)), std::uint16_t(1024 + i)};  // 198.51.100.0 + i
        const Bytes b = encode(m);
        pr.p->on_datagram(from, ep("192.0.2.1", 5653), b);
        pr.to_s.q.clear();  // spoofed sources never see the answers
    }
    const auto& c = pr.p->counters();
    CHECK(pr.p->half_open() == limits::cookie_threshold);
    CHECK(pr.p->exchanges() == limits::cookie_threshold);
    CHECK(c.cookies_sent == flood - limits::cookie_threshold);
    CHECK(pr.p->cookies_demanded());
    CHECK(logs.count(Reason::SETUP_COOKIES_ON) == 1);  // logged once, not per request

    // The real secondary: COOKIE demanded, request repeated with it first, then up.
    REQUIRE(pr.s->connect(1));
    REQUIRE(pr.deliver_to_p());
    REQUIRE(pr.to_s.q.size() == 1);
    CHECK(notifies(pr.to_s.q.front().data) == std::vector<std::uint16_t>{nt::cookie});
    REQUIRE(pr.deliver_to_s());
    {
        Message m;
        REQUIRE(decode(pr.to_p.q.front().data, m) == DecodeError::ok);
        REQUIRE(m.payloads[0].type == pt::notify);
        CHECK(std::get<NotifyPayload>(m.payloads[0].body).type == nt::cookie);  // first payload (§2.6)
    }
    pr.run();
    CHECK(pr.up());

    // A forged cookie is refused, a cookie from another address too.
    Message forged = tmpl;
    forged.hdr.spi_i = Spi{0x77};
    Bytes cookie(limits::cookie_len, 0);
    cookie[0] = 1;
    forged.payloads.insert(forged.payloads.begin(), Payload{pt::notify, false, NotifyPayload{0, {}, nt::cookie, cookie}});
    const auto bad_before = c.cookies_bad;
    pr.p->on_datagram(ep("203.0.113.9", 500), ep("192.0.2.1", 5653), encode(forged));
    CHECK(c.cookies_bad == bad_before + 1);
    CHECK(pr.p->half_open() == limits::cookie_threshold);

    // Half-open exchanges expire; then cookies are no longer needed.
    pr.tick(limits::half_open_timeout + 1s);
    CHECK(pr.p->half_open() == 0);
    CHECK(pr.p->exchanges() == 0);
    CHECK(!pr.p->cookies_demanded());
}

TEST_CASE("setup: the half-open table has a hard limit even when cookies are valid") {
    SetupOptions op;
    op.cookie_threshold = 100000;  // never demand cookies
    op.half_open_max = 32;
    Pair pr(PairConfig{}, psk(kTestPsk), psk(kTestPsk), op);
    control::SeededRandom rnd(5);
    Queue q(pr.clock);
    RecordingSink sink(0x9000);
    SetupEngine attacker(secondary_config(PairConfig{}), psk("the attacker's own key"), SetupOptions{}, pr.clock, rnd, q, sink);
    REQUIRE(attacker.connect(1));
    Message tmpl;
    REQUIRE(decode(q.q.front().data, tmpl) == DecodeError::ok);
    for (int i = 0; i < 100; ++i) {
        Message m = tmpl;
        m.hdr.spi_i = Spi{0x100 + std::uint64_t(i)};
        pr.p->on_datagram(Endpoint{IpAddr::v4(0x0a000000u + std::uint32_t(i)), 500}, ep("192.0.2.1", 5653), encode(m));
    }
    CHECK(pr.p->half_open() == 32);
    CHECK(pr.p->counters().half_open_full == 68);
}

TEST_CASE("setup: NAT detection with and without an address rewrite between the appliances") {
    SECTION("no NAT") {
        Pair pr(PairConfig{}, psk(kTestPsk), psk(kTestPsk));
        REQUIRE(pr.s->connect(1));
        pr.run();
        REQUIRE(pr.up());
        CHECK(!pr.sink_s.sessions[0].local_behind_nat);
        CHECK(!pr.sink_s.sessions[0].peer_behind_nat);
        CHECK(!pr.sink_p.sessions[0].local_behind_nat);
        CHECK(!pr.sink_p.sessions[0].peer_behind_nat);
    }
    SECTION("the secondary behind a NAT that rewrites its address and port") {
        LogCapture logs;
        PairConfig pc;
        pc.secondary_addr = *IpAddr::parse("10.0.0.2");
        Pair pr(pc, psk(kTestPsk), psk(kTestPsk));
        pr.nat_public = ep("198.51.100.7", 40000);
        REQUIRE(pr.s->connect(1));
        pr.run();
        REQUIRE(pr.up());
        const auto& s = pr.sink_s.sessions[0];
        const auto& p = pr.sink_p.sessions[0];
        CHECK(s.local_behind_nat);
        CHECK(!s.peer_behind_nat);
        CHECK(p.peer_behind_nat);
        CHECK(!p.local_behind_nat);
        CHECK(p.peer == ep("198.51.100.7", 40000));  // the primary answers the translated address
        CHECK(logs.count(Reason::SETUP_NAT) == 2);
        // The secondary opened the mapping of its nat_port before the primary could send there:
        // one NAT keepalive from 4500 to the primary's 4500, just before the IKE_AUTH request.
        const auto& all = pr.to_p.all;
        REQUIRE(all.size() == 3);
        CHECK(all[1].from == ep("10.0.0.2", 4500));
        CHECK(all[1].to == ep("192.0.2.1", 4500));
        CHECK(all[1].data == Bytes{0xff});
        CHECK(all[1].framing == Framing::plain);
        CHECK(all[2].to == ep("192.0.2.1", 5653));   // the IKE_AUTH request
    }
    SECTION("no NAT: no keepalive") {
        Pair pr(PairConfig{}, psk(kTestPsk), psk(kTestPsk));
        REQUIRE(pr.s->connect(1));
        pr.run();
        REQUIRE(pr.up());
        CHECK(pr.to_p.all.size() == 2);
        for (const auto& d : pr.to_p.all) CHECK(d.to.port == 5653);
    }
}

TEST_CASE("setup: an initiator that moves to the NAT-T port after IKE_SA_INIT is answered there") {
    Pair pr(PairConfig{}, psk(kTestPsk), psk(kTestPsk));
    REQUIRE(pr.s->connect(1));
    REQUIRE(pr.deliver_to_p());
    REQUIRE(pr.deliver_to_s());
    // The IKE_AUTH request leaves from port 4500 to the primary's port 4500.
    Datagram d = pr.to_p.q.front();
    pr.to_p.q.pop_front();
    d.from.port = 4500;
    d.to.port = 4500;
    pr.p->on_datagram(d.from, d.to, d.data);
    REQUIRE(pr.to_s.q.size() == 1);
    CHECK(pr.to_s.q.front().from == ep("192.0.2.1", 4500));
    CHECK(pr.to_s.q.front().to == ep("192.0.2.2", 4500));
    REQUIRE(pr.sink_p.sessions.size() == 1);
    CHECK(pr.sink_p.sessions[0].peer == ep("192.0.2.2", 4500));
    // A retransmission from yet another port gets the cached response there.
    pr.p->on_datagram(ep("192.0.2.2", 4501), d.to, d.data);
    REQUIRE(pr.to_s.q.size() == 2);
    CHECK(pr.to_s.q.back().to == ep("192.0.2.2", 4501));
    CHECK(pr.to_s.q.back().data == pr.to_s.q.front().data);
    REQUIRE(pr.deliver_to_s());
    CHECK(pr.up());
    // Expiry removes every trace, the IKE_SA_INIT index included.
    pr.tick(limits::half_open_timeout + 1s);
    CHECK(pr.p->exchanges() == 0);
}

namespace {

// The primary of the pair with a second remote, 8 ("b.test" at 192.0.2.3, 10.3.0.0/24).
config::Config primary_with_b() {
    config::Config c = primary_config(PairConfig{});
    config::Remote b = c.remotes[0].clone();
    b.id = 8;
    b.address = *IpAddr::parse("192.0.2.3");
    b.identity = "b.test";
    b.subnets = {*Prefix::parse("10.3.0.0/24")};
    c.remotes.push_back(std::move(b));
    return c;
}

constexpr const char* kKeyA = "remote A's own key (sec.test)";
constexpr const char* kKeyB = "remote B's own key (b.test)!!";

}  // namespace

TEST_CASE("setup: a secondary holding its own key that claims another remote's identity is refused; "
          "the victim's session is untouched") {
    LogCapture logs;
    // Primary: remote 7 = A (sec.test) with key A, remote 8 = B (b.test) with key B.
    Credentials cp = psk(kKeyA, {7});
    REQUIRE(cp.add_psk(8, ByteView(reinterpret_cast<const std::uint8_t*>(kKeyB), std::strlen(kKeyB))));
    Pair pr(primary_with_b(), secondary_config(PairConfig{}), std::move(cp), psk(kKeyA, {1}));
    REQUIRE(pr.s->connect(1));
    pr.run();
    REQUIRE(pr.up());
    const EstablishedSession& a = pr.sink_p.sessions[0];
    REQUIRE(a.remote_id == 7);
    const Bytes a_rx = bytes(a.data_rx.key), a_tx = bytes(a.data_tx.key), a_ctl = bytes(a.control_rx.key);
    const Endpoint a_peer = a.peer;
    const std::size_t exchanges = pr.p->exchanges();

    // The impostor: B's appliance (B's address, B's key) configured with A's identity.
    PairConfig impostor_pc;
    impostor_pc.secondary_addr = *IpAddr::parse("192.0.2.3");
    impostor_pc.secondary_id = "sec.test";
    control::SeededRandom rnd(77);
    Queue to_p(pr.clock);
    RecordingSink sink(0x3000);
    SetupEngine impostor(secondary_config(impostor_pc), psk(kKeyB, {1}), SetupOptions{}, pr.clock, rnd, to_p, sink);
    REQUIRE(impostor.connect(1));
    for (int i = 0; i < 20 && (!to_p.q.empty() || !pr.to_s.q.empty()); ++i) {
        while (!to_p.q.empty()) {
            Datagram d = std::move(to_p.q.front());
            to_p.q.pop_front();
            pr.p->on_datagram(d.from, d.to, d.data);
        }
        while (!pr.to_s.q.empty()) {
            Datagram d = std::move(pr.to_s.q.front());
            pr.to_s.q.pop_front();
            REQUIRE(d.to.addr == impostor_pc.secondary_addr);  // nothing went to A
            impostor.on_datagram(d.from, d.to, d.data);
        }
    }
    // Refused: AUTHENTICATION_FAILED to the impostor, no session on either side.
    CHECK(sink.sessions.empty());
    REQUIRE(sink.failures.size() == 1);
    CHECK(sink.failures[0].second == Reason::SETUP_PEER_REJECTED);
    CHECK(pr.p->counters().failed == 1);
    // The primary logs the failure with its reason code, naming the remote claimed ...
    CHECK(logs.has(Reason::SETUP_AUTH_FAILED, "P3-E0402"));
    CHECK(logs.has(Reason::SETUP_AUTH_FAILED, "claiming remote 7, not authenticated"));
    CHECK(logs.has(Reason::SETUP_AUTH_FAILED, "192.0.2.3"));
    // ... but accounts nothing to remote 7: no failure, no reservation, no install.
    REQUIRE(pr.sink_p.failures.size() == 1);
    CHECK(pr.sink_p.failures[0] == std::make_pair(std::uint32_t(0), Reason::SETUP_AUTH_FAILED));
    CHECK(pr.sink_p.reserved.empty());
    CHECK(pr.sink_p.announced.size() == 1);  // only A's own reservation ever happened
    REQUIRE(pr.sink_p.sessions.size() == 1);
    const EstablishedSession& after = pr.sink_p.sessions[0];
    CHECK(after.remote_id == 7);
    CHECK(after.peer == a_peer);
    CHECK(bytes(after.data_rx.key) == a_rx);
    CHECK(bytes(after.data_tx.key) == a_tx);
    CHECK(bytes(after.control_rx.key) == a_ctl);
    CHECK(pr.p->exchanges() == exchanges + 1);  // A's SA plus the impostor's failed one
    CHECK(logs.count(Reason::SETUP_UP) == 2);    // A's two lines only

    SECTION("the same appliance under its own identity (b.test) with its own key comes up as remote 8") {
        PairConfig own = impostor_pc;
        own.secondary_id = "b.test";
        Pair pb(primary_with_b(), secondary_config(own), [] {
            Credentials c = psk(kKeyA, {7});
            c.add_psk(8, ByteView(reinterpret_cast<const std::uint8_t*>(kKeyB), std::strlen(kKeyB)));
            return c;
        }(), psk(kKeyB, {1}));
        REQUIRE(pb.s->connect(1));
        pb.run();
        REQUIRE(pb.up());
        CHECK(pb.sink_p.sessions[0].remote_id == 8);
    }
}

TEST_CASE("setup: pre-shared keys under 16 bytes are not accepted as credentials") {
    const std::string k15 = "fifteen bytes!!";
    CHECK(!Credentials::from_psk(7, ByteView(reinterpret_cast<const std::uint8_t*>(k15.data()), k15.size())));
    const std::string k16 = k15 + "!";
    CHECK(Credentials::from_psk(7, ByteView(reinterpret_cast<const std::uint8_t*>(k16.data()), k16.size())));
}
