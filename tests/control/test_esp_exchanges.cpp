// ESP remotes (wire = "esp") on two engines stepped message by message: the child SA from
// IKE_AUTH (one SPI each, ESN preferred, no push, selectors narrowed, TS_UNACCEPTABLE), the
// IKE SA kept; CREATE_CHILD_SA child rekeys started by either side (make-before-break, the old
// inbound SA retired by the DELETE pair or after its grace), with and without PFS;
// INFORMATIONAL liveness, a dead peer, DELETE of the IKE SA both ways; forged, malformed and
// replayed messages counted and dropped.
#include <catch2/catch.hpp>

#include "esp_sink.hpp"
#include "setup_harness.hpp"

using namespace p3;
using namespace p3::setup;
using namespace p3::setup::test;
using namespace std::chrono_literals;

namespace {

bool same(const SecretBytes& a, const SecretBytes& b) { return a.size() == b.size() && a.equals(b.span()); }

struct EspPair {
    control::ManualClock clock;
    control::SeededRandom rp{11}, rs{12};
    Queue to_s{clock}, to_p{clock};
    EspSink sp{0x1000}, ss{0x2000};
    std::unique_ptr<SetupEngine> p, s;

    explicit EspPair(std::function<void(config::Config&, config::Config&)> tweak = {}, SetupOptions os = {}) {
        PairConfig pc;
        auto pcfg = primary_config(pc), scfg = secondary_config(pc);
        pcfg.remotes[0].wire = scfg.remotes[0].wire = config::WireMode::esp;
        scfg.remotes[0].subnets = {*Prefix::parse("10.1.0.0/24")};
        for (auto* c : {&pcfg, &scfg}) {
            c->remotes[0].params.heartbeat_time = 10;
            c->remotes[0].params.heartbeat_fail = 60;
            c->remotes[0].params.rekey_wait = 600;
        }
        if (tweak) tweak(pcfg, scfg);
        p = std::make_unique<SetupEngine>(pcfg, psk(kTestPsk), SetupOptions{}, clock, rp, to_s, sp);
        s = std::make_unique<SetupEngine>(scfg, psk(kTestPsk), std::move(os), clock, rs, to_p, ss);
    }
    bool to_primary() {
        if (to_p.q.empty()) return false;
        auto d = std::move(to_p.q.front());
        to_p.q.pop_front();
        p->on_datagram(d.from, d.to, d.data, d.framing);
        return true;
    }
    bool to_secondary() {
        if (to_s.q.empty()) return false;
        auto d = std::move(to_s.q.front());
        to_s.q.pop_front();
        s->on_datagram(d.from, d.to, d.data, d.framing);
        return true;
    }
    void run() {
        for (int i = 0; i < 100 && (to_primary() || to_secondary()); ++i) {}
    }
    void tick(control::Duration d) {
        clock.advance(d);
        p->on_timer();
        s->on_timer();
    }
    void up() {
        REQUIRE(s->connect(1));
        run();
        REQUIRE(sp.sessions.size() == 1);
        REQUIRE(ss.sessions.size() == 1);
    }
    // The keys each side sends under open on the other side's inbound SA of that SPI.
    void keys_cross() const {
        REQUIRE(ss.rx.count(sp.tx_spi));
        REQUIRE(sp.rx.count(ss.tx_spi));
        CHECK(same(ss.rx.at(sp.tx_spi), sp.tx_key));
        CHECK(same(sp.rx.at(ss.tx_spi), ss.tx_key));
        CHECK_FALSE(same(sp.tx_key, ss.tx_key));
    }
};

}  // namespace

TEST_CASE("esp: IKE_AUTH sets up one SA per direction, ESN, no push, narrowed selectors; the IKE SA stays", "[esp]") {
    LogCapture logs;
    EspPair x;
    x.up();
    const auto& ps = x.sp.sessions[0];
    CHECK(ps.wire == config::WireMode::esp);
    CHECK(ps.esn);                                  // offered, so preferred
    CHECK(x.sp.widths == std::vector<std::uint32_t>{1});   // one SPI, not a block of lanes
    CHECK(x.ss.widths == std::vector<std::uint32_t>{1});
    CHECK(ps.rx_p3_id == 0x1000);
    CHECK(ps.tx_p3_id == 0x2000);
    CHECK(ps.config.secondary_subnets == std::vector<Prefix>{*Prefix::parse("10.2.0.0/24")});
    CHECK(ps.config.primary_subnets == std::vector<Prefix>{*Prefix::parse("10.1.0.0/24")});
    x.keys_cross();
    CHECK(x.p->esp_up(7));
    CHECK(x.s->esp_up(1));
    CHECK(x.p->exchanges() == 1);   // kept, not deleted after setup
    CHECK(x.s->exchanges() == 1);
    // Long after the half-open timeout it is still there (liveness keeps it).
    for (int i = 0; i < 12; ++i) {
        x.tick(5s);
        x.run();
    }
    CHECK(x.p->esp_up(7));
    CHECK(x.s->esp_up(1));
    CHECK(x.sp.downs.empty());
}

TEST_CASE("esp: selectors outside the configuration are refused with TS_UNACCEPTABLE", "[esp]") {
    LogCapture logs;
    EspPair x([](config::Config& p, config::Config& s) {
        (void)p;
        s.remotes[0].subnets = {*Prefix::parse("172.16.0.0/24")};   // not the primary's LAN
    });
    REQUIRE(x.s->connect(1));
    x.run();
    CHECK(x.sp.sessions.empty());
    CHECK(x.ss.sessions.empty());
    CHECK(logs.count(Reason::SETUP_TS_UNACCEPTABLE) >= 1);
    CHECK(x.sp.reserved.empty());   // its SPI given back
}

TEST_CASE("esp: a wider proposal is narrowed to the configured subnets", "[esp]") {
    LogCapture logs;
    EspPair x([](config::Config& p, config::Config& s) {
        (void)p;
        s.remotes[0].subnets = {*Prefix::parse("10.0.0.0/8")};   // asks for more than the primary protects
    });
    x.up();
    CHECK(x.sp.sessions[0].config.primary_subnets == std::vector<Prefix>{*Prefix::parse("10.1.0.0/24")});
    CHECK(x.ss.sessions[0].config.primary_subnets == std::vector<Prefix>{*Prefix::parse("10.1.0.0/24")});
}

TEST_CASE("esp: child SA rekey started by the initiator, make-before-break, DELETE pair", "[esp][rekey]") {
    LogCapture logs;
    EspPair x;
    x.up();
    const std::uint32_t old_p_rx = x.sp.sessions[0].rx_p3_id, old_s_rx = x.ss.sessions[0].rx_p3_id;
    REQUIRE(x.s->esp_rekey(1));
    REQUIRE(x.to_primary());   // CREATE_CHILD_SA request
    // The responder's new inbound SA is in before it answered, and its old one is still there.
    CHECK(x.sp.rx.size() == 2);
    CHECK(x.sp.rx.count(old_p_rx));
    // Outbound stays on the old SA until the initiator has the new one: packets sent under
    // the new SPI before the answer reached it would be lost.
    CHECK(x.sp.tx_installs == 0);
    REQUIRE(x.to_secondary());      // the answer: the initiator installs both, then DELETEs its old inbound
    CHECK(x.ss.rx.size() == 2);
    REQUIRE(x.to_primary());        // DELETE(old): now the responder's outbound moves
    CHECK(x.sp.tx_installs == 1);
    x.keys_cross();
    CHECK(x.sp.rx.size() == 1);     // the pair: the responder's old inbound goes with the answer
    CHECK_FALSE(x.sp.rx.count(old_p_rx));
    REQUIRE(x.to_secondary());
    CHECK(x.ss.rx.size() == 1);
    CHECK_FALSE(x.ss.rx.count(old_s_rx));
    x.keys_cross();
    CHECK(x.p->counters().child_rekeys == 1);
    CHECK(x.s->counters().child_rekeys == 1);
    CHECK(x.p->counters().deletes_received == 1);
    // And again: message ids go on (window of 1 each way).
    REQUIRE(x.s->esp_rekey(1));
    x.run();
    x.keys_cross();
    CHECK(x.p->counters().child_rekeys == 2);
    CHECK(x.sp.rx.size() == 1);
    CHECK(x.p->counters().esp_bad == 0);
}

TEST_CASE("esp: child SA rekey started by the IKE responder, with PFS", "[esp][rekey]") {
    LogCapture logs;
    EspPair x([](config::Config& p, config::Config& s) {
        p.remotes[0].params.rekey_dh = true;
        s.remotes[0].params.rekey_dh = true;
    });
    x.up();
    const SecretBytes before = x.sp.tx_key.clone();
    REQUIRE(x.p->esp_rekey(7));
    x.run();
    x.keys_cross();
    CHECK_FALSE(same(before, x.sp.tx_key));
    CHECK(logs.has(Reason::SETUP_ESP_REKEYED, "(PFS)"));
    CHECK(x.sp.rx.size() == 1);
    CHECK(x.ss.rx.size() == 1);
}

TEST_CASE("esp: the old inbound SA goes after its grace when no DELETE comes", "[esp][rekey]") {
    LogCapture logs;
    EspPair x;
    x.up();
    REQUIRE(x.s->esp_rekey(1));
    REQUIRE(x.to_primary());
    REQUIRE(x.to_secondary());
    x.to_p.q.clear();   // the DELETE is lost, and so are its retransmissions below
    CHECK(x.sp.rx.size() == 2);
    for (int i = 0; i < 12; ++i) {
        x.tick(1s);
        x.to_p.q.clear();
    }
    CHECK(x.sp.rx.size() == 1);
}

TEST_CASE("esp: a periodic rekey comes from rekey_wait; with ESN a long sequence needs none", "[esp][rekey]") {
    LogCapture logs;
    EspPair x;
    x.up();
    for (int i = 0; i < 70; ++i) {   // 700 s > rekey_wait 600
        x.tick(10s);
        x.run();
    }
    CHECK(x.s->counters().child_rekeys + x.p->counters().child_rekeys >= 2);
    x.keys_cross();
    const auto before = x.p->counters().child_rekeys + x.s->counters().child_rekeys;
    x.ss.tx_packets = 0xf0000000ull;   // the secondary's outbound sequence: ESN in use, no rekey needed
    x.tick(10s);
    x.run();
    CHECK(x.p->counters().child_rekeys + x.s->counters().child_rekeys == before);
}

TEST_CASE("esp: liveness answered, a silent peer is dead after heartbeat_fail", "[esp][liveness]") {
    LogCapture logs;
    EspPair x;
    x.up();
    x.tick(11s);   // heartbeat_time 10 s of silence: both ask
    CHECK(x.p->counters().liveness_sent + x.s->counters().liveness_sent >= 1);
    x.run();
    CHECK(x.p->counters().esp_requests + x.s->counters().esp_requests >= 1);
    CHECK(x.sp.downs.empty());
    // The secondary goes silent: the primary declares it dead after heartbeat_fail (60 s).
    for (int i = 0; i < 70; ++i) {
        x.clock.advance(1s);
        x.p->on_timer();
        x.to_s.q.clear();
    }
    REQUIRE(x.sp.downs.size() == 1);
    CHECK(x.sp.downs[0] == std::make_pair(7u, Reason::SETUP_ESP_DEAD));
    CHECK(x.sp.rx.empty());
    CHECK_FALSE(x.p->esp_up(7));
    CHECK(logs.count(Reason::SETUP_ESP_DELETED) >= 1);
}

TEST_CASE("esp: IKE DELETE both ways ends the session on each side", "[esp][delete]") {
    LogCapture logs;
    EspPair x;
    x.up();
    REQUIRE(x.s->esp_close(1));   // ours: the session goes at once
    CHECK(x.ss.downs.size() == 1);
    CHECK_FALSE(x.s->esp_up(1));
    REQUIRE(x.to_primary());
    REQUIRE(x.sp.downs.size() == 1);
    CHECK(x.sp.downs[0].second == Reason::SETUP_ESP_DELETED);
    CHECK(x.p->exchanges() == 0);
    CHECK(x.p->counters().deletes_received == 1);
    CHECK_FALSE(x.p->esp_close(7));
    // And the other way.
    EspPair y;
    y.up();
    REQUIRE(y.p->esp_close(7));
    REQUIRE(y.to_secondary());
    REQUIRE(y.ss.downs.size() == 1);
    CHECK(y.ss.downs[0].second == Reason::SETUP_ESP_DELETED);
}

TEST_CASE("esp: forged, malformed and replayed messages are counted and dropped", "[esp][forged]") {
    LogCapture logs;
    EspPair x;
    x.up();
    REQUIRE(x.s->esp_rekey(1));
    REQUIRE(!x.to_p.q.empty());
    const Datagram req = x.to_p.q.front();
    // Every byte of the SK part flipped in turn: nothing changes on the primary.
    for (std::size_t i = 28; i < req.data.size(); i += 7) {
        Bytes b = req.data;
        b[i] ^= 0x5a;
        x.p->on_datagram(req.from, req.to, b, req.framing);
    }
    CHECK(x.p->counters().esp_bad > 0);
    CHECK(x.sp.rx.size() == 1);
    CHECK(x.sp.tx_installs == 0);
    // Truncated: dropped as malformed before anything.
    for (std::size_t n : {0, 4, 27, 28, 40}) x.p->on_datagram(req.from, req.to, ByteView(req.data.data(), n), req.framing);
    // The real one still works, and its copy gets the cached answer (keys installed once).
    x.run();
    x.keys_cross();
    CHECK(x.p->counters().child_rekeys == 1);
    // The last request (the DELETE that followed) is answered again from the cache; the
    // rekey request before it is outside the window now and changes nothing.
    const Datagram last = x.to_p.all.back();
    const auto resent = x.p->counters().responses_resent;
    x.p->on_datagram(last.from, last.to, last.data, last.framing);
    CHECK(x.p->counters().responses_resent == resent + 1);
    const auto bad0 = x.p->counters().esp_bad;
    x.p->on_datagram(req.from, req.to, req.data, req.framing);
    CHECK(x.p->counters().esp_bad == bad0 + 1);
    CHECK(x.p->counters().child_rekeys == 1);
    // A message id beyond the window.
    Bytes far = req.data;
    far[20] = 0x7f;
    const auto bad = x.p->counters().esp_bad;
    x.p->on_datagram(req.from, req.to, far, req.framing);
    CHECK(x.p->counters().esp_bad == bad + 1);
    CHECK(x.sp.downs.empty());
}

TEST_CASE("esp: the dataplane refusing a new inbound SA refuses the rekey; the old SAs stay", "[esp][rekey]") {
    LogCapture logs;
    EspPair x;
    x.up();
    x.sp.refuse = true;
    REQUIRE(x.s->esp_rekey(1));
    x.run();
    CHECK(x.p->counters().esp_refused == 1);
    CHECK(x.s->counters().child_rekeys == 0);
    x.keys_cross();
    CHECK(logs.count(Reason::SETUP_ESP_REFUSED) >= 1);
    x.sp.refuse = false;   // the next attempt (rekey_wait / 10 later) works
    for (int i = 0; i < 8; ++i) {
        x.tick(10s);
        x.run();
    }
    CHECK(x.s->counters().child_rekeys + x.p->counters().child_rekeys >= 1);
    x.keys_cross();
}

TEST_CASE("esp: the side behind a NAT sends a keepalive every 20 s, the other none", "[esp][nat]") {
    LogCapture logs;
    EspPair x;
    // The secondary's packets arrive from a NAT's public address: it is behind a NAT.
    const Endpoint pub = ep("203.0.113.9", 40000);
    REQUIRE(x.s->connect(1));
    for (int i = 0; i < 20; ++i) {
        if (!x.to_p.q.empty()) {
            auto d = std::move(x.to_p.q.front());
            x.to_p.q.pop_front();
            if (d.data.size() == 1) continue;   // a keepalive: the dataplane's
            x.p->on_datagram(pub, d.to, d.data, d.framing);
        }
        if (!x.to_s.q.empty()) {
            auto d = std::move(x.to_s.q.front());
            x.to_s.q.pop_front();
            x.s->on_datagram(d.from, ep("192.0.2.2", 5653), d.data, d.framing);
        }
    }
    REQUIRE(x.ss.sessions.size() == 1);
    REQUIRE(x.ss.sessions[0].local_behind_nat);
    x.to_p.all.clear();
    x.to_s.all.clear();
    for (int i = 0; i < 41; ++i) {
        x.clock.advance(1s);
        x.s->on_timer();
        x.p->on_timer();
    }
    unsigned keepalives = 0;
    for (const auto& d : x.to_p.all)
        if (d.data.size() == 1 && d.data[0] == 0xff) {
            ++keepalives;
            CHECK(d.from.port == 4500);
            CHECK(d.to.port == 4500);
        }
    CHECK(keepalives == 2);
    for (const auto& d : x.to_s.all) CHECK(d.data.size() != 1);
}

TEST_CASE("esp: IKE_AUTH on nat_port behind the non-ESP marker is answered from there with it", "[esp][nat]") {
    LogCapture logs;
    EspPair x;
    REQUIRE(x.s->connect(1));
    REQUIRE(x.to_primary());    // IKE_SA_INIT on local.port
    REQUIRE(x.to_secondary());
    // The initiator floats (RFC 7296 §2.23): its IKE_AUTH comes to 4500 from 4500, behind the marker.
    REQUIRE(!x.to_p.q.empty());
    auto d = x.to_p.q.back();
    x.to_p.q.clear();
    x.p->on_datagram(ep("192.0.2.2", 4500), ep("192.0.2.1", 4500), d.data, Framing::non_esp_marker);
    REQUIRE(x.to_s.q.size() == 1);
    CHECK(x.to_s.q.front().from == ep("192.0.2.1", 4500));
    CHECK(x.to_s.q.front().to == ep("192.0.2.2", 4500));
    CHECK(x.to_s.q.front().framing == Framing::non_esp_marker);
    REQUIRE(x.sp.sessions.size() == 1);
    CHECK(x.sp.sessions[0].framing == Framing::non_esp_marker);
    CHECK(x.sp.sessions[0].peer == ep("192.0.2.2", 4500));
    // Later exchanges on the IKE SA answer there too.
    REQUIRE(x.to_secondary());
    REQUIRE(x.p->esp_rekey(7));
    REQUIRE(!x.to_s.q.empty());
    CHECK(x.to_s.q.back().to == ep("192.0.2.2", 4500));
    CHECK(x.to_s.q.back().framing == Framing::non_esp_marker);
}

