// Heartbeat loss detection, session recovery (seed spec §2.1.7: back-off 5, 10, ... 60, 60 s),
// restarts on either side, and a link that drops, duplicates, delays and reorders: the protocol
// converges or recovers, never wedges.
#include <catch2/catch.hpp>

#include "channel_sim.hpp"

using namespace p3;
using namespace p3::channel;
using namespace p3::channel::sim;
using namespace std::chrono_literals;
using std::chrono::duration_cast;
using std::chrono::milliseconds;

namespace {

std::optional<TimePoint> first(const std::vector<Sim::Stamped>& ev, Event::Kind k, TimePoint after = {}) {
    for (auto& s : ev)
        if (s.e.kind == k && s.at >= after) return s.at;
    return std::nullopt;
}

double secs(Duration d) { return double(duration_cast<milliseconds>(d).count()) / 1000.0; }

}  // namespace

TEST_CASE("heartbeat: a silent peer is declared lost heartbeat_fail after the first unanswered heartbeat") {
    struct Case {
        std::uint32_t time, fail;
    };
    for (Case c : {Case{15, 120}, Case{5, 20}, Case{10, 45}, Case{1, 2}}) {
        INFO("heartbeat_time " << c.time << " heartbeat_fail " << c.fail);
        LogCapture logs;
        config::SessionParams p;
        p.heartbeat_time = c.time;
        p.heartbeat_fail = c.fail;
        p.rekey_wait = 100000;
        Sim sim(p, 31);
        sim.setup();
        const TimePoint up = sim.clock.now();
        // Hours of answered heartbeats: never lost.
        sim.run_for(2h);
        REQUIRE(sim.primary->state() == SessionState::up);
        REQUIRE(sim.secondary->state() == SessionState::up);
        CHECK(sim.primary->stats().heartbeats_sent >= 7200 / c.time - 1);
        CHECK(sim.primary->stats().heartbeats_answered + 1 >= sim.primary->stats().heartbeats_sent);  // one may be in flight
        // Cut the link just after a heartbeat was answered (heartbeats at up + k * time).
        sim.run_for(std::chrono::seconds(c.time) / 2);
        const TimePoint cut = sim.clock.now();
        sim.link.cut = true;
        sim.link.clear();
        const auto k = (cut - up) / std::chrono::seconds(c.time) + 1;  // first heartbeat after the cut
        const TimePoint first_unanswered = up + k * std::chrono::seconds(c.time);
        const TimePoint expect = first_unanswered + std::chrono::seconds(c.fail);
        sim.run_for(std::chrono::seconds(c.fail + 2 * c.time));
        for (auto* ev : {&sim.events_a, &sim.events_b}) {
            auto lost = first(*ev, Event::Kind::lost, cut);
            REQUIRE(lost);
            CHECK(std::abs(secs(*lost - expect)) <= 1.0);
        }
        CHECK(sim.dp_a.down_reason == Reason::SESSION_LOST_HEARTBEAT);
        CHECK(sim.dp_b.down_reason == Reason::SESSION_LOST_HEARTBEAT);
        CHECK(logs.count(Reason::SESSION_LOST_HEARTBEAT) == 2);
        // The line an administrator reads names the code, the peer and the time waited.
        bool named = false;
        for (auto& l : logs.lines)
            named |= l.reason == Reason::SESSION_LOST_HEARTBEAT && l.text.find("P3-E0601") != std::string::npos &&
                     l.text.find(std::to_string(c.fail) + " s") != std::string::npos;
        CHECK(named);
    }
}

TEST_CASE("recovery: the secondary retries after 5 s, +5 s per failure, capped at 60 s; then recovers") {
    LogCapture logs;
    config::SessionParams p;
    p.rekey_wait = 300;
    Sim sim(p, 32);
    sim.setup();
    sim.run_for(10min);
    sim.link.cut = true;
    sim.setup_fails = true;
    REQUIRE(sim.run_until_pred([&] { return sim.secondary->state() != SessionState::up; }, 10min));
    const TimePoint lost = *first(sim.events_b, Event::Kind::lost);
    sim.run_for(20min);
    REQUIRE(sim.attempt_times.size() >= 16);
    std::vector<double> gaps{secs(sim.attempt_times[0] - lost)};
    for (std::size_t i = 1; i < sim.attempt_times.size(); ++i)
        gaps.push_back(secs(sim.attempt_times[i] - sim.attempt_times[i - 1]));
    const std::vector<double> want{5, 10, 15, 20, 25, 30, 35, 40, 45, 50, 55, 60, 60, 60, 60, 60};
    CHECK(std::vector<double>(gaps.begin(), gaps.begin() + long(want.size())) == want);
    for (double g : gaps) CHECK(g <= 60.0);
    CHECK(logs.count(Reason::RECOVERY_FAILED) == sim.attempt_times.size());
    CHECK(sim.dp_b.down);  // the dataplane answers LAN traffic with RST/unreachable meanwhile

    // The primary is reachable again: the next attempt succeeds, both sides are up, rekeys and
    // traffic resume without loss.
    sim.link.cut = false;
    sim.setup_fails = false;
    const auto attempts = sim.attempt_times.size();
    REQUIRE(sim.run_until_pred([&] { return sim.secondary->state() == SessionState::up; }, 61s, 1s));
    CHECK(sim.attempt_times.size() == attempts + 1);
    CHECK(sim.primary->state() == SessionState::up);
    CHECK(logs.count(Reason::RECOVERED) == 1);
    CHECK(sim.secondary->stats().recoveries == 1);
    const auto before = sim.primary->stats().rekeys_done;
    const auto unreceivable = sim.dp_a.send_unreceivable + sim.dp_b.send_unreceivable;
    const auto sent_a = sim.dp_a.data_sent, recv_b = sim.dp_b.data_received + sim.link.in_flight(1, false);
    sim.run_for(20min);
    CHECK(sim.primary->stats().rekeys_done >= before + 3);
    sim.drain();
    CHECK(sim.dp_a.send_unreceivable + sim.dp_b.send_unreceivable == unreceivable);
    CHECK(sim.dp_a.data_sent - sent_a == sim.dp_b.data_received - recv_b);
    // After a success the back-off starts from 5 s again.
    sim.data_on = true;
    sim.link.cut = true;
    sim.setup_fails = true;
    sim.attempt_times.clear();
    sim.run_for(10min);
    REQUIRE(sim.attempt_times.size() >= 2);
    CHECK(secs(sim.attempt_times[1] - sim.attempt_times[0]) == 10.0);
}

TEST_CASE("recovery: a restarted secondary is accepted and its old session dropped") {
    LogCapture logs;
    config::SessionParams p;
    p.rekey_wait = 120;
    Sim sim(p, 33);
    sim.setup();
    sim.run_for(10min);
    REQUIRE(sim.primary->stats().rekeys_done >= 4);
    // Rekeys changed keys only: the primary still receives on the P3 IDs of the setup.
    const std::uint32_t old_rx = sim.dp_a.rx_base;  // the primary's inbound lanes, old session
    REQUIRE(sim.wire.ids(1) == sim.lanes_b);
    // The secondary appliance restarts: new session object, empty dataplane, a new setup.
    sim.secondary.reset();
    sim.dp_b.reset();
    sim.link.clear();  // what was on the wire towards it is gone with it
    sim.make_secondary();
    sim.setup();
    CHECK(logs.count(Reason::PEER_RESTARTED) == 1);
    CHECK(sim.count(sim.events_a, Event::Kind::restarted) == 1);
    CHECK_FALSE(sim.dp_a.holds(old_rx));  // the old session's lanes and keys are gone
    CHECK(sim.dp_a.rx_base != old_rx);
    CHECK(sim.primary->state() == SessionState::up);
    CHECK(sim.primary->tx_epoch() == 0);
    const auto sent_a = sim.dp_a.data_sent, recv_b = sim.dp_b.data_received + sim.link.in_flight(1, false);
    sim.run_for(10min);
    CHECK(sim.primary->stats().rekeys_done >= 4);
    CHECK(sim.primary->tx_epoch() == sim.secondary->tx_epoch());
    sim.drain();
    CHECK(sim.dp_a.data_sent - sent_a == sim.dp_b.data_received - recv_b);
    CHECK(sim.dp_a.send_unreceivable + sim.dp_b.send_unreceivable == 0);
}

TEST_CASE("recovery: after a primary restart the secondary comes back on its own") {
    LogCapture logs;
    config::SessionParams p;
    p.rekey_wait = 120;
    p.heartbeat_time = 15;
    p.heartbeat_fail = 60;
    Sim sim(p, 34);
    sim.setup();
    sim.run_for(5min);
    sim.restart_primary();  // the new primary knows nothing of the session
    const TimePoint restart = sim.clock.now();
    REQUIRE(sim.run_until_pred([&] { return sim.secondary->stats().recoveries == 1; }, 10min));
    const TimePoint lost = *first(sim.events_b, Event::Kind::lost, restart);
    CHECK(secs(lost - restart) <= 60 + 15 + 1);
    CHECK(secs(sim.attempt_times.at(0) - lost) == 5.0);
    CHECK(sim.primary->state() == SessionState::up);
    CHECK(sim.dp_a.lost_no_slot > 0);  // the restarted primary could not read the old session
    const auto sent_b = sim.dp_b.data_sent, recv_a = sim.dp_a.data_received + sim.link.in_flight(0, false);
    sim.run_for(10min);
    CHECK(sim.primary->stats().rekeys_done >= 4);
    sim.drain();
    CHECK(sim.dp_b.data_sent - sent_b == sim.dp_a.data_received - recv_a);
}

TEST_CASE("faults: drop, duplicate, delay and reorder: the channel converges or recovers, never wedges") {
    struct Case {
        const char* what;
        Faults f;
        std::uint64_t seed;
    };
    const std::vector<Case> cases = {
        {"20% drop, 10% duplicates, 300 ms jitter", {0.2, 0.1, 20ms, 300ms, true}, 41},
        {"50% drop", {0.5, 0, 20ms, 0ms, true}, 42},
        {"50% duplicates, 2 s jitter (heavy reordering)", {0, 0.5, 20ms, 2000ms, true}, 43},
        {"5% drop, 5 s jitter (reordered past retransmissions)", {0.05, 0.05, 50ms, 5000ms, true}, 44},
        {"everything, data too: 10% drop, 10% duplicates, 1 s jitter", {0.1, 0.1, 20ms, 1000ms, false}, 45},
        {"80% drop", {0.8, 0, 20ms, 0ms, true}, 46},
    };
    for (const Case& c : cases) {
        INFO(c.what);
        LogCapture logs;
        config::SessionParams p;
        p.rekey_wait = 120;
        p.array_size = 64;
        p.data_array_time = 1200;
        p.control_array_time = 1000;
        p.heartbeat_time = 15;
        p.heartbeat_fail = 120;
        Sim sim(p, c.seed);
        sim.link.faults = c.f;
        sim.setup();
        sim.run_for(2h);
        // Whatever happened, the keys in use were always ones the receiver held.
        CHECK(sim.dp_a.send_unreceivable == 0);
        CHECK(sim.dp_b.send_unreceivable == 0);
        CHECK(sim.dp_a.auth_failures + sim.dp_b.auth_failures == 0);
        if (c.f.drop <= 0.5) CHECK(sim.primary->stats().rekeys_done >= 20);  // mostly progressing

        // Faults off: within minutes both sides are up, on the same keys, and work. (A side may
        // still lose the session right after: its heartbeat_fail ran out under the faults.
        // Let that play out first.)
        sim.link.faults = Faults{};
        sim.run_for(std::chrono::seconds(p.heartbeat_fail + p.heartbeat_time));
        REQUIRE(sim.run_until_pred([&] {
            return sim.primary->state() == SessionState::up && sim.secondary->state() == SessionState::up &&
                   !sim.primary->rekey_in_flight();
        }, 15min));
        const auto done = sim.primary->stats().rekeys_done;
        sim.primary->force_rekey();
        REQUIRE(sim.run_until_pred([&] { return sim.primary->stats().rekeys_done > done; }, 30s));
        sim.run_for(10s);
        CHECK(sim.primary->tx_epoch() == sim.secondary->tx_epoch());
        CHECK(sim.primary->rx_epochs() <= 2);
        // (packets on the link now arrive after the snapshot: count them as received already)
        const auto sa = sim.dp_a.data_sent, ra = sim.dp_b.data_received + sim.link.in_flight(1, false);
        const auto sb = sim.dp_b.data_sent, rb = sim.dp_a.data_received + sim.link.in_flight(0, false);
        sim.run_for(2min);
        sim.drain();
        CHECK(sim.dp_a.data_sent - sa == sim.dp_b.data_received - ra);
        CHECK(sim.dp_b.data_sent - sb == sim.dp_a.data_received - rb);
        CHECK(sim.dp_a.send_unreceivable + sim.dp_b.send_unreceivable == 0);
    }
}

TEST_CASE("recovery: a new setup while both sides are up replaces the session on both, old lanes gone") {
    LogCapture logs;
    config::SessionParams p;
    p.rekey_wait = 60;
    Sim sim(p, 35);
    sim.setup();
    sim.run_for(5min);
    REQUIRE(sim.primary->stats().rekeys_done >= 4);
    // One P3 ID per lane and side, however many rekeys.
    REQUIRE(sim.wire.ids(0) == sim.lanes_a);
    REQUIRE(sim.wire.ids(1) == sim.lanes_b);
    CHECK(sim.wire.seq_not_up == 0);
    const std::uint32_t old_a = sim.dp_a.rx_base, old_b = sim.dp_b.rx_base;
    sim.link.clear();
    sim.setup();  // both sessions up: the primary restarts it, the secondary starts anew
    CHECK_FALSE(sim.dp_a.holds(old_a));
    CHECK_FALSE(sim.dp_b.holds(old_b));
    CHECK(sim.dp_a.rx.size() == sim.lanes_b);
    CHECK(sim.dp_b.rx.size() == sim.lanes_a);
    for (const auto* dp : {&sim.dp_a, &sim.dp_b})
        for (const auto& l : dp->rx) CHECK(!l.next);
    const auto sent_a = sim.dp_a.data_sent, recv_b = sim.dp_b.data_received;
    sim.run_for(5min);
    CHECK(sim.primary->tx_epoch() == sim.secondary->tx_epoch());
    CHECK(sim.primary->tx_epoch() >= 4);
    sim.drain();
    CHECK(sim.dp_a.data_sent - sent_a == sim.dp_b.data_received - recv_b);
    CHECK(sim.dp_a.send_unreceivable + sim.dp_b.send_unreceivable == 0);
}

TEST_CASE("heartbeat: the round trip of an answered heartbeat is measured (admin status)") {
    config::SessionParams p;
    p.heartbeat_time = 5;
    p.heartbeat_fail = 20;
    p.rekey_wait = 100000;
    Sim sim(p, 5);
    sim.setup();
    CHECK_FALSE(sim.primary->heartbeat_rtt().has_value());
    sim.run_for(1min);
    REQUIRE(sim.primary->heartbeat_rtt().has_value());
    REQUIRE(sim.secondary->heartbeat_rtt().has_value());
    CHECK(*sim.primary->heartbeat_rtt() >= Duration::zero());
    CHECK(*sim.primary->heartbeat_rtt() < std::chrono::seconds(5));
}
