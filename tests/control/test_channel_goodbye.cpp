// The goodbye (DESIGN.md §Session life 5): an appliance that ends a session on purpose tells its
// peer, which recovers at once instead of after heartbeat_fail. Two sessions on the simulated
// pair (channel_sim.hpp): the peer lost with PEER_GOODBYE and the sender closed at the ack; a
// goodbye lost on the wire (closed after kGoodbyeWait, the peer lost by heartbeat as without
// one); the secondary's first attempt at once, then the usual back-off; start() after closed;
// goodbyes crossing a rekey and each other; malformed goodbyes dropped and counted.
#include <catch2/catch.hpp>

#include "channel_sim.hpp"

using namespace p3;
using namespace p3::channel;
using namespace p3::channel::sim;
using namespace std::chrono_literals;
using std::chrono::duration_cast;
using std::chrono::milliseconds;

namespace {

std::optional<Sim::Stamped> first(const std::vector<Sim::Stamped>& ev, Event::Kind k, TimePoint after = {}) {
    for (auto& s : ev)
        if (s.e.kind == k && s.at >= after) return s;
    return std::nullopt;
}

long ms(Duration d) { return static_cast<long>(duration_cast<milliseconds>(d).count()); }

std::size_t sent_of(const FakeDataplane& dp, MsgType t) {
    return static_cast<std::size_t>(
        std::count_if(dp.sent.begin(), dp.sent.end(), [t](const FakeDataplane::Sent& s) { return s.type == t; }));
}

bool logged(const LogCapture& logs, Reason r, const std::string& code, const std::string& text) {
    for (auto& l : logs.lines)
        if (l.reason == r && l.text.find(code) != std::string::npos && l.text.find(text) != std::string::npos)
            return true;
    return false;
}

// Traffic both ways, then nothing lost and nothing sent under a key the receiver lacked.
void check_traffic(Sim& sim, Duration d) {
    sim.data_on = true;
    const auto sa = sim.dp_a.data_sent, ra = sim.dp_b.data_received + sim.link.in_flight(1, false);
    const auto sb = sim.dp_b.data_sent, rb = sim.dp_a.data_received + sim.link.in_flight(0, false);
    const auto unreceivable = sim.dp_a.send_unreceivable + sim.dp_b.send_unreceivable;
    sim.run_for(d);
    sim.drain();
    CHECK(sim.dp_a.data_sent - sa > 0);
    CHECK(sim.dp_a.data_sent - sa == sim.dp_b.data_received - ra);
    CHECK(sim.dp_b.data_sent - sb == sim.dp_a.data_received - rb);
    CHECK(sim.dp_a.send_unreceivable + sim.dp_b.send_unreceivable == unreceivable);
}

// A message as raw bytes: header, then TLVs given as (type, value).
std::vector<std::uint8_t> raw(std::uint8_t type, std::vector<std::pair<std::uint16_t, std::vector<std::uint8_t>>> tlvs) {
    std::vector<std::uint8_t> body;
    for (auto& [t, v] : tlvs) {
        for (std::uint8_t x : {std::uint8_t(t >> 8), std::uint8_t(t), std::uint8_t(v.size() >> 8), std::uint8_t(v.size())})
            body.push_back(x);
        for (auto x : v) body.push_back(x);
    }
    std::vector<std::uint8_t> b{2, type, std::uint8_t(body.size() >> 8), std::uint8_t(body.size()), 0, 0, 0x70, 1};
    for (auto x : body) b.push_back(x);
    return b;
}

}  // namespace

TEST_CASE("goodbye: a primary shut down by its administrator: the secondary is lost at once, the primary closed at the "
          "ack; the secondary retries at once, then backs off; start() brings the primary back") {
    LogCapture logs;
    config::SessionParams p;
    p.rekey_wait = 300;
    Sim sim(p, 61);
    sim.setup();
    sim.run_for(20min);
    REQUIRE(sim.primary->state() == SessionState::up);
    REQUIRE(sim.secondary->state() == SessionState::up);
    const auto rekeys = sim.primary->stats().rekeys_done, heartbeats = sim.primary->stats().heartbeats_sent;
    REQUIRE(rekeys >= 3);
    sim.dp_a.record = sim.dp_b.record = true;
    sim.setup_fails = true;  // its administrator keeps it down: the secondary's setups fail meanwhile

    const TimePoint t0 = sim.clock.now();
    sim.primary->shutdown(GoodbyeReason::administrator);
    CHECK(sim.primary->state() == SessionState::closing);
    REQUIRE(sim.dp_a.sent.size() == 1);
    CHECK(sim.dp_a.sent[0].type == MsgType::goodbye);
    CHECK(sim.dp_a.sent[0].m.goodbye_reason == GoodbyeReason::administrator);
    CHECK(sim.dp_a.sent[0].inner_len == limits::kControlInnerLen);  // one length, like every control packet
    // Closing: nothing else is started.
    sim.primary->force_rekey();
    sim.primary->deliver_arrays(kFlushData | kFlushControl);
    sim.primary->flush_arrays(kFlushData, true);
    CHECK(sim.dp_a.sent.size() == 1);
    CHECK(sim.primary->state() == SessionState::closing);

    sim.run_for(200ms);
    // The secondary: the goodbye answered, the session lost with PEER_GOODBYE, logged once with the
    // peer's reason; the dataplane answers LAN traffic with RST / unreachable.
    CHECK(sent_of(sim.dp_b, MsgType::goodbye_ack) == 1);
    const auto lost = first(sim.events_b, Event::Kind::lost, t0);
    REQUIRE(lost);
    CHECK(lost->e.reason == Reason::PEER_GOODBYE);
    CHECK(ms(lost->at - t0) == 20);  // one link delay
    CHECK(sim.dp_b.down);
    CHECK(sim.dp_b.down_reason == Reason::PEER_GOODBYE);
    CHECK(logs.count(Reason::PEER_GOODBYE) == 1);
    CHECK(logged(logs, Reason::PEER_GOODBYE, "P3-W0609", "shut down by its administrator"));
    // The primary: closed when the ack arrived (a round trip), long before kGoodbyeWait.
    const auto closed = first(sim.events_a, Event::Kind::closed, t0);
    REQUIRE(closed);
    CHECK(ms(closed->at - t0) == 40);
    CHECK(closed->e.reason == Reason::SESSION_CLOSED);
    CHECK(sim.primary->state() == SessionState::closed);
    CHECK(sim.dp_a.down_reason == Reason::SESSION_CLOSED);
    CHECK(logged(logs, Reason::SESSION_CLOSED, "P3-I0608", "goodbye acknowledged"));
    CHECK(sim.count(sim.events_a, Event::Kind::lost) == 0);

    // The secondary's first attempt went at once; its failures back off 5 s, 10 s, ... as ever.
    sim.run_for(3min);
    CHECK(sim.primary->state() == SessionState::closed);
    REQUIRE(sim.attempt_times.size() >= 7);
    std::vector<long> gaps{ms(sim.attempt_times[0] - lost->at)};
    for (std::size_t i = 1; i < 7; ++i) gaps.push_back(ms(sim.attempt_times[i] - sim.attempt_times[i - 1]));
    CHECK(gaps == std::vector<long>{0, 5000, 10000, 15000, 20000, 25000, 30000});
    CHECK(logs.count(Reason::RECOVERY_FAILED) == sim.attempt_times.size());

    // The administrator starts it again: the next attempt brings both up; the primary's
    // counters ran on; rekeys and traffic work.
    sim.setup_fails = false;
    REQUIRE(sim.run_until_pred([&] { return sim.secondary->state() == SessionState::up; }, 61s, 1s));
    CHECK(sim.primary->state() == SessionState::up);
    CHECK(sim.count(sim.events_a, Event::Kind::up) == 2);
    CHECK(sim.primary->stats().rekeys_done == rekeys);
    CHECK(sim.primary->stats().heartbeats_sent >= heartbeats);
    CHECK(sim.secondary->stats().recoveries == 1);
    sim.run_for(11min);
    CHECK(sim.primary->stats().rekeys_done >= rekeys + 2);
    CHECK(sim.primary->tx_epoch() == sim.secondary->tx_epoch());
    check_traffic(sim, 2min);
}

TEST_CASE("goodbye: a secondary stopping: the primary marks the session lost and waits; the secondary starts again") {
    LogCapture logs;
    config::SessionParams p;
    p.rekey_wait = 120;
    Sim sim(p, 62);
    sim.setup();
    sim.run_for(5min);
    sim.dp_b.record = true;
    const TimePoint t0 = sim.clock.now();
    sim.secondary->shutdown(GoodbyeReason::stopping);
    CHECK(sim.secondary->state() == SessionState::closing);
    REQUIRE(sent_of(sim.dp_b, MsgType::goodbye) == 1);
    CHECK(sim.dp_b.sent.back().m.goodbye_reason == GoodbyeReason::stopping);
    sim.run_for(1s);
    CHECK(sim.secondary->state() == SessionState::closed);
    CHECK(ms(first(sim.events_b, Event::Kind::closed, t0)->at - t0) == 40);
    CHECK(sim.primary->state() == SessionState::lost);
    CHECK(first(sim.events_a, Event::Kind::lost, t0)->e.reason == Reason::PEER_GOODBYE);
    CHECK(sim.dp_a.down_reason == Reason::PEER_GOODBYE);
    CHECK(logged(logs, Reason::PEER_GOODBYE, "P3-W0609", "(stopping)"));
    // Neither side tries anything: the primary never initiates, the secondary is closed.
    const auto control = sim.dp_a.control_sent + sim.dp_b.control_sent;
    sim.run_for(10min);
    CHECK(sim.dp_a.control_sent + sim.dp_b.control_sent == control);
    CHECK(sim.attempt_times.empty());
    CHECK(sim.count(sim.events_a, Event::Kind::retry_scheduled) == 0);
    CHECK(sim.primary->state() == SessionState::lost);
    CHECK(sim.secondary->state() == SessionState::closed);
    // The secondary appliance starts again: a new setup, both up (start() from closed).
    sim.setup();
    CHECK(sim.secondary->state() == SessionState::up);
    CHECK(sim.primary->state() == SessionState::up);
    sim.run_for(5min);
    CHECK(sim.primary->stats().rekeys_done >= 4);
    check_traffic(sim, 1min);
}

TEST_CASE("goodbye: unanswered, the sender closes after 300 ms and the peer is lost by heartbeat as before; "
          "without a reason nothing is sent and it closes at once") {
    struct Case {
        const char* what;
        GoodbyeReason why;
        long closed_after_ms;
    };
    for (Case c : {Case{"the goodbye lost on the wire", GoodbyeReason::administrator, 300},
                   Case{"shutdown() without a reason", GoodbyeReason::none, 0}}) {
        INFO(c.what);
        LogCapture logs;
        config::SessionParams p;
        p.heartbeat_time = 15;
        p.heartbeat_fail = 60;
        p.rekey_wait = 100000;
        Sim sim(p, 63);
        sim.setup();
        sim.run_for(1min);
        sim.dp_a.record = true;
        sim.dp_a.lose = [](const Message& m) { return m.type == MsgType::goodbye; };
        sim.setup_fails = true;
        const TimePoint t0 = sim.clock.now();
        sim.primary->shutdown(c.why);
        CHECK(sent_of(sim.dp_a, MsgType::goodbye) == (c.why == GoodbyeReason::none ? 0u : 1u));
        if (c.closed_after_ms > 0) {
            sim.run_for(milliseconds(c.closed_after_ms - 1));
            CHECK(sim.primary->state() == SessionState::closing);
            sim.run_for(1ms);
        }
        CHECK(sim.primary->state() == SessionState::closed);
        const auto closed = first(sim.events_a, Event::Kind::closed, t0);
        REQUIRE(closed);
        CHECK(ms(closed->at - t0) == c.closed_after_ms);
        CHECK(sim.dp_a.down_reason == Reason::SESSION_CLOSED);
        if (c.why != GoodbyeReason::none) CHECK(logged(logs, Reason::SESSION_CLOSED, "P3-I0608", "unanswered for 300 ms"));
        // The secondary heard nothing: lost heartbeat_fail after its first unanswered heartbeat,
        // its first attempt 5 s later, as for any silent peer.
        CHECK(sim.secondary->state() == SessionState::up);
        REQUIRE(sim.run_until_pred([&] { return sim.secondary->state() != SessionState::up; }, 2min, 1s));
        const auto lost = first(sim.events_b, Event::Kind::lost, t0);
        REQUIRE(lost);
        CHECK(lost->e.reason == Reason::SESSION_LOST_HEARTBEAT);
        CHECK(ms(lost->at - t0) >= 60000);
        CHECK(ms(lost->at - t0) <= 75000 + 1000);
        CHECK(sim.dp_b.down_reason == Reason::SESSION_LOST_HEARTBEAT);
        CHECK(logs.count(Reason::PEER_GOODBYE) == 0);
        sim.run_for(10s);
        REQUIRE_FALSE(sim.attempt_times.empty());
        CHECK(ms(sim.attempt_times[0] - lost->at) == 5000);
        CHECK(sim.dp_a.lost_no_slot > 0);  // the closed primary holds no key of the session
    }
}

TEST_CASE("goodbye: arriving in the middle of a rekey, from either side at each step: no crash, no key left "
          "pending, and the session comes back with rekeys and traffic intact") {
    struct Case {
        const char* what;
        bool primary_says_goodbye;
        int side;        // whose send marks the moment: 0 primary, 1 secondary
        MsgType after;   // the goodbye goes right after this message left
    };
    const std::vector<Case> cases = {
        {"primary, request on the wire", true, 0, MsgType::rekey_request},
        {"primary, status on the wire", true, 1, MsgType::rekey_status},
        {"primary, switch on the wire", true, 0, MsgType::rekey_switch},
        {"primary, switch-ack on the wire", true, 1, MsgType::rekey_switch_ack},
        {"secondary, request on the wire", false, 0, MsgType::rekey_request},
        {"secondary, status on the wire", false, 1, MsgType::rekey_status},
        {"secondary, switch on the wire", false, 0, MsgType::rekey_switch},
        {"secondary, switch-ack on the wire", false, 1, MsgType::rekey_switch_ack},
    };
    std::uint64_t seed = 70;
    for (const Case& c : cases) {
        INFO(c.what);
        LogCapture logs;
        config::SessionParams p;
        p.rekey_wait = 100000;
        Sim sim(p, ++seed);
        sim.setup();
        sim.run_for(30s);
        sim.dp_a.record = sim.dp_b.record = true;
        sim.setup_fails = true;
        sim.primary->force_rekey();
        FakeDataplane& marker = c.side == 0 ? sim.dp_a : sim.dp_b;
        REQUIRE(sim.run_until_pred([&] { return sent_of(marker, c.after) > 0; }, 5s, 1ms));
        Session& sender = c.primary_says_goodbye ? *sim.primary : *sim.secondary;
        Session& peer = c.primary_says_goodbye ? *sim.secondary : *sim.primary;
        auto& peer_events = c.primary_says_goodbye ? sim.events_b : sim.events_a;
        const FakeDataplane& peer_dp = c.primary_says_goodbye ? sim.dp_b : sim.dp_a;
        const TimePoint t0 = sim.clock.now();
        sender.shutdown(GoodbyeReason::administrator);
        sim.run_for(1s);
        CHECK(sender.state() == SessionState::closed);
        CHECK(ms(first(c.primary_says_goodbye ? sim.events_a : sim.events_b, Event::Kind::closed, t0)->at - t0) == 40);
        CHECK(peer.state() != SessionState::up);
        CHECK(sim.count(peer_events, Event::Kind::lost) == 1);
        CHECK(first(peer_events, Event::Kind::lost, t0)->e.reason == Reason::PEER_GOODBYE);
        CHECK(peer_dp.down_reason == Reason::PEER_GOODBYE);
        CHECK_FALSE(sim.primary->rekey_in_flight());
        CHECK(sim.dp_a.rx.empty());  // every slot of the session gone on both sides
        CHECK(sim.dp_b.rx.empty());
        CHECK(sim.dp_a.send_unreceivable + sim.dp_b.send_unreceivable == 0);
        // Set up again (the secondary's recovery, or a fresh setup for a closed secondary).
        sim.setup_fails = false;
        if (c.primary_says_goodbye)
            REQUIRE(sim.run_until_pred([&] { return sim.secondary->state() == SessionState::up; }, 61s, 1s));
        else
            sim.setup();
        REQUIRE(sim.primary->state() == SessionState::up);
        REQUIRE(sim.secondary->state() == SessionState::up);
        for (const auto* dp : {&sim.dp_a, &sim.dp_b})
            for (const auto& l : dp->rx) CHECK(!l.next);
        const auto done = sim.primary->stats().rekeys_done;
        sim.primary->force_rekey();
        REQUIRE(sim.run_until_pred([&] { return sim.primary->stats().rekeys_done > done; }, 10s, 100ms));
        sim.run_for(5s);
        CHECK(sim.primary->tx_epoch() == sim.secondary->tx_epoch());
        check_traffic(sim, 1min);
    }
}

TEST_CASE("goodbye: both ends at once: each answers the other's goodbye and closes at the ack; a plain shutdown "
          "while closing closes at once") {
    LogCapture logs;
    config::SessionParams p;
    p.rekey_wait = 100000;
    Sim sim(p, 64);
    sim.setup();
    sim.run_for(30s);
    TimePoint t0 = sim.clock.now();
    sim.primary->shutdown(GoodbyeReason::stopping);
    sim.secondary->shutdown(GoodbyeReason::stopping);
    sim.run_for(1s);
    for (const auto* ev : {&sim.events_a, &sim.events_b}) {
        const auto closed = first(*ev, Event::Kind::closed, t0);
        REQUIRE(closed);
        CHECK(ms(closed->at - t0) == 40);
        CHECK(sim.count(*ev, Event::Kind::lost) == 0);
    }
    CHECK(logs.count(Reason::PEER_GOODBYE) == 0);
    CHECK(sim.attempt_times.empty());

    // Both start again; then the primary's shutdown with a goodbye, overtaken by a plain one
    // (the appliance stopping): closed at once, the goodbye already sent still heard.
    sim.setup();
    REQUIRE(sim.primary->state() == SessionState::up);
    REQUIRE(sim.secondary->state() == SessionState::up);
    sim.run_for(10s);
    sim.setup_fails = true;
    t0 = sim.clock.now();
    sim.primary->shutdown(GoodbyeReason::administrator);
    sim.primary->shutdown();
    CHECK(sim.primary->state() == SessionState::closed);
    CHECK(ms(first(sim.events_a, Event::Kind::closed, t0)->at - t0) == 0);
    CHECK(sim.count(sim.events_a, Event::Kind::closed) == 2);
    CHECK(logged(logs, Reason::SESSION_CLOSED, "P3-I0608", "not waited for"));
    sim.run_for(1s);
    CHECK(first(sim.events_b, Event::Kind::lost, t0)->e.reason == Reason::PEER_GOODBYE);
    sim.primary->shutdown(GoodbyeReason::administrator);  // closed: nothing more
    CHECK(sim.count(sim.events_a, Event::Kind::closed) == 2);
}

TEST_CASE("goodbye: a session not up closes at once without a word; its recovery stops; start() is a fresh session") {
    LogCapture logs;
    config::SessionParams p;
    p.heartbeat_time = 5;
    p.heartbeat_fail = 20;
    p.rekey_wait = 100000;
    Sim sim(p, 65);
    sim.setup();
    sim.run_for(1min);
    sim.link.cut = true;
    sim.setup_fails = true;
    REQUIRE(sim.run_until_pred([&] { return sim.secondary->state() == SessionState::lost; }, 2min, 1s));
    sim.run_for(30s);  // recovering: attempts failing
    REQUIRE(sim.attempt_times.size() >= 2);
    sim.dp_b.record = true;
    const auto control = sim.dp_b.control_sent;
    sim.secondary->shutdown(GoodbyeReason::administrator);
    CHECK(sim.secondary->state() == SessionState::closed);
    CHECK(sim.dp_b.control_sent == control);
    CHECK(sim.count(sim.events_b, Event::Kind::closed) == 1);
    const auto attempts = sim.attempt_times.size();
    sim.run_for(10min);
    CHECK(sim.attempt_times.size() == attempts);  // no recovery of a closed session
    CHECK(sim.secondary->state() == SessionState::closed);
    sim.secondary->setup_failed();  // a late setup result changes nothing
    CHECK(sim.secondary->state() == SessionState::closed);
    // Started again by its administrator: up as a fresh session, not a recovery.
    sim.link.cut = false;
    sim.setup_fails = false;
    sim.setup();
    CHECK(sim.secondary->state() == SessionState::up);
    CHECK(sim.secondary->stats().recoveries == 0);
    CHECK(logs.count(Reason::RECOVERED) == 0);
    check_traffic(sim, 1min);
}

TEST_CASE("goodbye: malformed goodbyes (no reason, an unknown reason, wrong sizes, extra TLVs) are dropped and "
          "counted; the session stays up; a well-formed one is heard") {
    LogCapture logs;
    config::SessionParams p;
    p.rekey_wait = 100000;
    Sim sim(p, 66);
    sim.setup();
    sim.run_for(30s);
    sim.dp_a.record = sim.dp_b.record = true;
    struct Case {
        const char* what;
        std::vector<std::uint8_t> bytes;
        ParseError want;
    };
    const std::vector<Case> cases = {
        {"no reason", raw(14, {}), ParseError::missing},
        {"reason 0", raw(14, {{tlv::goodbye_reason, {0, 0}}}), ParseError::bad_value},
        {"reason 3", raw(14, {{tlv::goodbye_reason, {0, 3}}}), ParseError::bad_value},
        {"reason 0xffff", raw(14, {{tlv::goodbye_reason, {0xff, 0xff}}}), ParseError::bad_value},
        {"reason of 1 byte", raw(14, {{tlv::goodbye_reason, {1}}}), ParseError::bad_tlv_length},
        {"reason empty", raw(14, {{tlv::goodbye_reason, {}}}), ParseError::bad_tlv_length},
        {"reason and an epoch", raw(14, {{tlv::goodbye_reason, {0, 1}}, {tlv::epoch, {0, 0, 0, 1}}}),
         ParseError::not_allowed},
        {"an ack with a reason", raw(15, {{tlv::goodbye_reason, {0, 2}}}), ParseError::not_allowed},
    };
    for (int dir = 0; dir < 2; ++dir) {
        Session& from = dir == 0 ? *sim.primary : *sim.secondary;
        Session& to = dir == 0 ? *sim.secondary : *sim.primary;
        for (const Case& c : cases) {
            INFO((dir == 0 ? "to the secondary: " : "to the primary: ") << c.what);
            const auto before = to.stats().parse.rejected[static_cast<std::size_t>(c.want)];
            ChannelProbe::forge_bytes(from, to, c.bytes);
            CHECK(to.stats().parse.rejected[static_cast<std::size_t>(c.want)] == before + 1);
            CHECK(to.state() == SessionState::up);
        }
        // An ack nobody asked for: counted, nothing else.
        const auto unexpected = to.stats().unexpected;
        Message ack;
        ack.type = MsgType::goodbye_ack;
        ack.msg_id = 4242;
        ChannelProbe::forge(from, to, ack);
        CHECK(to.stats().unexpected == unexpected + 1);
        CHECK(to.state() == SessionState::up);
    }
    sim.run_for(1min);
    CHECK(sim.primary->state() == SessionState::up);
    CHECK(sim.secondary->state() == SessionState::up);
    CHECK(sim.count(sim.events_a, Event::Kind::lost) + sim.count(sim.events_b, Event::Kind::lost) == 0);
    CHECK(sent_of(sim.dp_a, MsgType::goodbye_ack) + sent_of(sim.dp_b, MsgType::goodbye_ack) == 0);
    CHECK(logs.count(Reason::PEER_GOODBYE) == 0);
    // The same bytes with a known reason are a goodbye: acknowledged, the session lost.
    sim.setup_fails = true;
    ChannelProbe::forge_bytes(*sim.primary, *sim.secondary, raw(14, {{tlv::goodbye_reason, {0, 2}}}));
    CHECK(sent_of(sim.dp_b, MsgType::goodbye_ack) == 1);
    CHECK(sim.secondary->state() != SessionState::up);
    CHECK(first(sim.events_b, Event::Kind::lost)->e.reason == Reason::PEER_GOODBYE);
    CHECK(logged(logs, Reason::PEER_GOODBYE, "P3-W0609", "(stopping)"));
}
