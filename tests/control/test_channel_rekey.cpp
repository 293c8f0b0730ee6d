// Rekey (seed spec §2.1.6) between two sessions on the simulated link: stable lanes and keys
// switched by sequence under continuous traffic, triggers and coalescing, refused, unanswered
// and DH-failed attempts, the switch message lost, X25519 on and off, one control length, and
// the jittered timer. The secondary stepped by hand: test_channel_rekey_stepped.cpp.
#include <catch2/catch.hpp>

#include <set>

#include "channel_sim.hpp"
#include "control/channel/framing.hpp"
#include "control/channel/messages.hpp"

using namespace p3;
using namespace p3::channel;
using namespace p3::channel::sim;
using namespace std::chrono_literals;

namespace {

config::SessionParams stream_params() {
    config::SessionParams p;
    p.rekey_wait = 60;
    p.heartbeat_time = 15;
    p.heartbeat_fail = 120;
    p.array_size = 256;
    p.data_array_time = 1800;
    p.control_array_time = 1700;
    return p;
}

void check_no_packet_lost(const Sim& sim) {
    for (const FakeDataplane* dp : {&sim.dp_a, &sim.dp_b}) {
        INFO((dp == &sim.dp_a ? "primary side" : "secondary side"));
        CHECK(dp->send_unreceivable == 0);
        CHECK(dp->lost_no_slot == 0);
        CHECK(dp->auth_failures == 0);
        CHECK(dp->replays == 0);
        CHECK(dp->below_cur == 0);
        CHECK(dp->wrong_key == 0);
    }
    // As an observer of the WAN: one P3 ID per lane, sequences only going up.
    CHECK(sim.wire.ids(0) == sim.lanes_a);
    CHECK(sim.wire.ids(1) == sim.lanes_b);
    CHECK(sim.wire.seq_not_up == 0);
    CHECK(sim.dp_a.data_sent == sim.dp_b.data_received);
    CHECK(sim.dp_b.data_sent == sim.dp_a.data_received);
    // (heartbeats keep going while draining: count what is still on the link, and what a test
    // lost on purpose)
    CHECK(sim.dp_a.control_sent == sim.dp_b.control_received + sim.link.in_flight(1, true) + sim.dp_a.tapped_out);
    CHECK(sim.dp_b.control_sent == sim.dp_a.control_received + sim.link.in_flight(0, true) + sim.dp_b.tapped_out);
    CHECK(sim.link.in_flight(0, false) + sim.link.in_flight(1, false) == 0);
}

}  // namespace

TEST_CASE("rekey: 100 rekeys under continuous traffic both ways, no packet lost, old keys retired") {
    LogCapture logs;
    Sim sim(stream_params(), 42);
    // A long path (120 ms, up to 40 ms jitter, so packets of both kinds reorder) and a packet
    // every 37 ms each way: every exchange has packets in flight on both sides of each switch.
    sim.link.faults = Faults{0, 0, 120ms, 40ms, false};
    sim.data_interval = 37ms;
    sim.setup();
    CHECK(sim.run_until_pred([&] { return sim.primary->stats().rekeys_done >= 100; }, 100 * 60s + 1h, 10s));
    sim.drain();

    check_no_packet_lost(sim);
    CHECK(sim.dp_a.data_sent > 100000);
    CHECK(sim.primary->stats().rekey_attempts_failed == 0);
    CHECK(sim.secondary->stats().rekeys_done == sim.primary->stats().rekeys_done);
    CHECK(sim.primary->tx_epoch() == sim.secondary->tx_epoch());
    CHECK(sim.primary->tx_epoch() >= 100);
    // Every side switched once per rekey and promoted every next key it was given; nothing
    // pending is left once the lingers ran out, and no key was ever dropped unused.
    CHECK(sim.dp_a.switches == sim.primary->stats().rekeys_done);
    CHECK(sim.dp_b.switches == sim.secondary->stats().rekeys_done);
    CHECK(sim.dp_a.promotions == sim.dp_a.installs);
    CHECK(sim.dp_b.promotions == sim.dp_b.installs);
    CHECK(sim.dp_a.drops + sim.dp_b.drops == 0);
    for (const auto* dp : {&sim.dp_a, &sim.dp_b})
        for (const auto& l : dp->rx) CHECK(!l.next);
    // The switch point was announced on every rekey; packets that overtook the announcement
    // were read through the alternative try (the path has 40 ms of jitter).
    CHECK(sim.dp_a.switch_ats == sim.dp_a.installs);
    CHECK(sim.dp_b.switch_ats == sim.dp_b.installs);
    CHECK(sim.dp_a.second_tries + sim.dp_b.second_tries > 0);
    CHECK(sim.primary->rx_epochs() == 1);
    // Rekeys every rekey_wait x U(0.9, 1.1): 54..66 s apart (+ the exchange), never periodic.
    std::vector<TimePoint> done;
    for (auto& s : sim.events_a)
        if (s.e.kind == Event::Kind::rekey_done) done.push_back(s.at);
    Duration lo = 1h, hi = 0s;
    for (std::size_t i = 1; i < done.size(); ++i) {
        CHECK(done[i] - done[i - 1] >= 54s);
        CHECK(done[i] - done[i - 1] <= 67s);  // (two round trips of at most 160 ms)
        lo = std::min(lo, done[i] - done[i - 1]);
        hi = std::max(hi, done[i] - done[i - 1]);
    }
    CHECK(hi - lo >= 6s);
    // What the administrator sees: each rekey started and completed, on both sides.
    CHECK(logs.count(Reason::REKEY_START) >= 200);
    CHECK(logs.count(Reason::REKEY_DONE) >= 200);
    CHECK(logs.count(Reason::REKEY_FAILED) == 0);
    CHECK(sim.primary->stats().auth_failures + sim.secondary->stats().auth_failures == 0);
}

TEST_CASE("rekey: administrator command on either side, packet-count limit, crossing triggers coalesce") {
    LogCapture logs;
    auto p = stream_params();
    p.rekey_wait = 3600;
    Sim sim(p, 7);
    sim.setup();
    sim.run_for(30s);  // arrays delivered
    const auto before = sim.primary->stats().rekeys_done;

    SECTION("primary command: one rekey; commands while it runs join it") {
        sim.primary->force_rekey();
        sim.primary->force_rekey();
        sim.secondary->force_rekey();  // asks; crosses the rekey in flight
        sim.run_for(10s);
        CHECK(sim.primary->stats().rekeys_done == before + 1);
        CHECK(sim.count(sim.events_a, Event::Kind::rekey_started) == 1);
        CHECK(logs.count(Reason::REKEY_COALESCED) >= 2);
    }
    SECTION("secondary commands while its ask is in flight join it: one request, one rekey") {
        const auto sent = sim.dp_b.control_sent;
        for (int i = 0; i < 50; ++i) sim.secondary->force_rekey();   // no answer can arrive meanwhile
        CHECK(sim.dp_b.control_sent - sent == 1);
        sim.run_for(10s);
        CHECK(sim.primary->stats().rekeys_done == before + 1);
    }
    SECTION("secondary command: it asks, the primary rekeys") {
        sim.secondary->force_rekey();
        sim.run_for(10s);
        CHECK(sim.primary->stats().rekeys_done == before + 1);
        bool named = false;
        for (auto& l : logs.lines) named |= l.reason == Reason::REKEY_START && l.text.find("secondary's request") != std::string::npos;
        CHECK(named);
    }
    sim.drain();
    check_no_packet_lost(sim);
}

TEST_CASE("rekey: packet-count limit on both sides triggers one rekey per limit, never far past it") {
    LogCapture logs;
    auto p = stream_params();
    p.rekey_wait = 3600;
    p.rekey_packets = 500;  // 20 packets/s per side: a limit every 25 s, reached on both sides at once
    Sim sim(p, 9);
    sim.lanes_a = sim.lanes_b = 1;  // one lane each: every packet counts towards the one limit
    sim.setup();
    std::uint64_t max_a = 0, max_b = 0;
    for (int i = 0; i < 600; ++i) {
        sim.run_for(1s);
        max_a = std::max(max_a, sim.dp_a.tx_packets());
        max_b = std::max(max_b, sim.dp_b.tx_packets());
    }
    const auto n = sim.primary->stats().rekeys_done;
    CHECK(n >= 600 / 27);
    CHECK(n <= 600 / 25 + 1);
    // The tick notices within a second, the exchange takes well under a second more. (The
    // busiest lane counts: 20 packets/s spread over the side's lanes.)
    CHECK(max_a <= 500 + 2 * 20 + 5);
    CHECK(max_b <= 500 + 2 * 20 + 5);
    bool limit = false;
    for (auto& l : logs.lines) limit |= l.reason == Reason::REKEY_START && l.text.find("packet limit") != std::string::npos;
    CHECK(limit);
    sim.drain();
    check_no_packet_lost(sim);
}

TEST_CASE("rekey: a refused attempt is retried with fresh keys; after five attempts the session is lost") {
    LogCapture logs;
    auto p = stream_params();
    p.array_size = 256;
    Sim sim(p, 11);
    sim.setup();
    sim.run_for(30s);

    SECTION("two refusals, then success: no packet lost") {
        sim.dp_b.refuse_installs = 2;
        sim.primary->force_rekey();
        sim.run_for(20s);
        CHECK(sim.primary->stats().rekey_attempts_failed == 2);
        CHECK(sim.primary->stats().rekeys_done == 1);
        CHECK(logs.count(Reason::REKEY_ATTEMPT_FAILED) == 2);
        CHECK(logs.count(Reason::REKEY_REJECTED) >= 2);
        // Three epochs were started; only the last is in use.
        CHECK(sim.count(sim.events_a, Event::Kind::rekey_started) == 3);
        CHECK(sim.primary->tx_epoch() == 3);
        CHECK(sim.secondary->tx_epoch() == 3);
        sim.drain();
        check_no_packet_lost(sim);
    }
    SECTION("every attempt refused: four retries, then recovery") {
        sim.dp_b.refuse_installs = 1000;
        sim.primary->force_rekey();
        sim.run_for(30s);
        CHECK(sim.primary->stats().rekey_attempts_failed == limits::kRekeyAttempts);
        CHECK(sim.count(sim.events_a, Event::Kind::rekey_started) == limits::kRekeyAttempts);
        CHECK(logs.count(Reason::REKEY_ATTEMPT_FAILED) == limits::kRekeyAttempts - 1);
        CHECK(logs.count(Reason::REKEY_FAILED) == 1);
        CHECK(logs.count(Reason::SESSION_LOST_REKEY) == 1);
        CHECK(sim.primary->state() == SessionState::lost);
        CHECK(sim.dp_a.down);
        CHECK(sim.dp_a.down_reason == Reason::SESSION_LOST_REKEY);
        // The secondary notices (no heartbeat answered), recovers, and rekeys work again.
        sim.dp_b.refuse_installs = 0;
        REQUIRE(sim.run_until_pred([&] { return sim.secondary->state() == SessionState::up &&
                                                sim.primary->state() == SessionState::up; },
                                   10min));
        CHECK(sim.secondary->stats().recoveries == 1);
        sim.primary->force_rekey();
        sim.run_for(10s);
        CHECK(sim.primary->stats().rekeys_done == 1);
    }
}

TEST_CASE("rekey: unanswered requests (control packets lost for a while) fail the attempt; the retry succeeds") {
    LogCapture logs;
    Sim sim(stream_params(), 13);
    sim.setup();
    sim.run_for(30s);
    sim.link.faults.drop = 1.0;  // control only: data keeps flowing
    sim.primary->force_rekey();
    sim.run_for(9s);
    sim.link.faults.drop = 0;
    sim.run_for(20s);
    CHECK(sim.primary->stats().rekey_attempts_failed >= 1);
    CHECK(sim.primary->stats().rekeys_done == 1);
    CHECK(logs.count(Reason::CH_REQUEST_TIMEOUT) >= 1);
    CHECK(sim.primary->tx_epoch() == sim.secondary->tx_epoch());
    sim.drain();
    // Control packets were dropped on purpose; data must not have suffered.
    for (const FakeDataplane* dp : {&sim.dp_a, &sim.dp_b}) {
        CHECK(dp->send_unreceivable == 0);
        CHECK(dp->lost_no_slot == 0);
        CHECK(dp->auth_failures == 0);
    }
    CHECK(sim.dp_a.data_sent == sim.dp_b.data_received);
    CHECK(sim.dp_b.data_sent == sim.dp_a.data_received);
}

TEST_CASE("rekey: the switch message lost: the secondary learns the point from data, the retransmission announces it") {
    LogCapture logs;
    Sim sim(stream_params(), 17);
    sim.link.faults = Faults{0, 0, 60ms, 0ms, false};
    sim.data_interval = 20ms;
    sim.setup();
    sim.run_for(40s);  // arrays delivered
    int switches_lost = 0;
    sim.dp_a.lose = [&](const Message& m) { return m.type == MsgType::rekey_switch && switches_lost++ == 0; };
    sim.primary->force_rekey();
    REQUIRE(sim.run_until_pred([&] { return sim.count(sim.events_a, Event::Kind::tx_switched) == 1; }, 5s, 5ms));
    // The primary sends under the new keys; its switch never arrives. Within the first
    // retransmission interval the secondary reads that data through the alternative try.
    sim.run_for(500ms);
    CHECK(switches_lost == 1);
    CHECK(sim.secondary->tx_epoch() == 0);
    std::uint64_t learned = 0;
    for (const auto& l : sim.dp_b.rx) {
        REQUIRE(l.next);
        CHECK(l.next_from == 0);
        learned = std::max(learned, l.learned);
    }
    CHECK(learned > 0);
    CHECK(sim.dp_b.second_tries > 0);
    CHECK(sim.dp_b.rx_next_seen());
    // The retransmitted switch announces the exact points: each lane's learned point is the
    // announced one, or the one after on the lane that carried the lost switch itself (no
    // other loss, no reordering on this path).
    sim.run_for(1s);
    CHECK(sim.secondary->tx_epoch() == 1);
    CHECK(sim.primary->stats().rekeys_done == 1);
    int off_by_one = 0;
    for (const auto& l : sim.dp_b.rx) {
        REQUIRE(l.next);
        CHECK(l.next_from > 0);
        CHECK(l.learned >= l.next_from);
        CHECK(l.learned <= l.next_from + 1);
        off_by_one += l.learned == l.next_from + 1;
    }
    CHECK(off_by_one == 1);
    CHECK(sim.primary->stats().retransmits >= 1);
    sim.run_for(5s);
    for (const auto& l : sim.dp_b.rx) CHECK(!l.next);  // promoted
    sim.drain();
    check_no_packet_lost(sim);
}

TEST_CASE("rekey: with and without X25519 both sides switch; with it, no installed key is a delivered one") {
    for (bool dh : {true, false}) {
        INFO("rekey_dh " << dh);
        auto p = stream_params();
        p.rekey_dh = dh;
        p.array_size = 1;  // explicit keys: the delivered ones are in the request
        Sim sim(p, 19);
        sim.dp_a.record = sim.dp_b.record = true;
        sim.setup();
        sim.run_for(5s);
        sim.primary->force_rekey();
        sim.run_for(5s);
        REQUIRE(sim.primary->stats().rekeys_done == 1);
        const Message* req = nullptr;
        const Message* st = nullptr;
        for (auto& x : sim.dp_a.sent)
            if (x.type == MsgType::rekey_request) req = &x.m;
        for (auto& x : sim.dp_b.sent)
            if (x.type == MsgType::rekey_status) st = &x.m;
        REQUIRE(req);
        REQUIRE(st);
        CHECK(req->dh_share.has_value() == dh);
        CHECK(st->dh_share.has_value() == dh);
        // What each side sends under now vs what was delivered.
        const KeyMaterial delivered_p2s = KeyMaterial::from_wire(req->data_p2s.material.span());
        const KeyMaterial delivered_s2p = KeyMaterial::from_wire(req->data_s2p.material.span());
        CHECK(sim.dp_a.tx[0].key.key.equals(delivered_p2s.key.span()) == !dh);
        CHECK(sim.dp_b.tx[0].key.key.equals(delivered_s2p.key.span()) == !dh);
        sim.drain();
        check_no_packet_lost(sim);
        CHECK(sim.primary->stats().dh_failures + sim.secondary->stats().dh_failures == 0);
    }
}

TEST_CASE("rekey: a bad X25519 share fails the attempt; the retry with fresh shares succeeds") {
    LogCapture logs;
    Sim sim(stream_params(), 23);
    sim.setup();
    sim.run_for(40s);
    // The secondary's real status is lost; a status with a low-order share answers instead (as
    // a peer holding the control key could forge it).
    std::optional<Message> req;
    sim.dp_a.lose = [&](const Message& m) {
        if (m.type == MsgType::rekey_request && !req) req = m.clone();
        return false;
    };
    bool lose_status = true;
    sim.dp_b.lose = [&](const Message& m) { return lose_status && m.type == MsgType::rekey_status; };
    sim.primary->force_rekey();
    sim.run_for(200ms);
    REQUIRE(req);
    Message bad;
    bad.type = MsgType::rekey_status;
    bad.msg_id = req->msg_id;
    bad.epoch = req->epoch;
    bad.status = Status::ok;
    bad.lanes = sim.lanes_b;
    bad.dh_share.emplace();
    bad.dh_share->fill(0);
    ChannelProbe::forge(*sim.secondary, *sim.primary, bad);
    lose_status = false;
    CHECK(sim.primary->stats().dh_failures == 1);
    CHECK(sim.primary->stats().rekey_attempts_failed == 1);
    CHECK(logs.count(Reason::REKEY_DH_FAILED) == 1);
    CHECK(sim.dp_a.installs == 0);  // nothing installed for the failed attempt
    sim.run_for(10s);
    CHECK(sim.primary->stats().rekeys_done == 1);
    CHECK(sim.primary->tx_epoch() == 2);
    CHECK(sim.secondary->tx_epoch() == 2);
    // The secondary had installed epoch 1's next keys; the primary never used them: dropped.
    CHECK(sim.dp_b.drops == 1);
    sim.drain();
    check_no_packet_lost(sim);
}

TEST_CASE("rekey: rekey_dh differing between the sides: every attempt refused as dh-failed, then the session is lost") {
    auto p = stream_params();
    Sim sim(p, 29);
    sim.params_.rekey_dh = false;  // the secondary's (the primary pushes its own in p3d)
    sim.make_secondary();
    sim.setup();
    sim.run_for(40s);
    sim.primary->force_rekey();
    sim.run_for(60s);
    CHECK(sim.primary->stats().rekey_attempts_failed == limits::kRekeyAttempts);
    CHECK(sim.secondary->stats().dh_failures == limits::kRekeyAttempts);
    CHECK(sim.count(sim.events_a, Event::Kind::lost) == 1);
    CHECK(sim.dp_a.switches + sim.dp_b.switches == 0);
}

TEST_CASE("rekey: every control packet of a run has one inner length, whatever it carries") {
    for (bool hide : {false, true}) {
        INFO("size hiding " << hide);
        auto p = stream_params();
        p.size_hiding = hide;
        p.array_size = 64;
        p.rekey_wait = 20;
        Sim sim(p, 31);
        sim.dp_a.record = sim.dp_b.record = true;
        sim.setup();
        sim.run_for(2min);
        sim.primary->flush_arrays(kFlushData | kFlushControl, true);
        sim.secondary->force_rekey();
        sim.run_for(1min);
        // An error: a rekey request forged towards the primary (a secondary never rekeys).
        Message r;
        r.type = MsgType::rekey_request;
        r.msg_id = 999;
        r.epoch = 1;
        r.lanes = 1;
        for (KeyRef* k : {&r.data_p2s, &r.data_s2p, &r.ctl_p2s, &r.ctl_s2p}) k->material = SecretBytes(20);
        ChannelProbe::forge(*sim.secondary, *sim.primary, r);
        sim.run_for(1s);
        std::set<MsgType> types;
        std::set<std::size_t> lens;
        for (auto* dp : {&sim.dp_a, &sim.dp_b})
            for (auto& x : dp->sent) {
                types.insert(x.type);
                lens.insert(x.inner_len);
            }
        for (MsgType t : {MsgType::heartbeat, MsgType::heartbeat_ack, MsgType::rekey_request, MsgType::rekey_status,
                          MsgType::rekey_switch, MsgType::rekey_switch_ack, MsgType::rekey_ask, MsgType::rekey_ask_ack,
                          MsgType::array_chunk, MsgType::array_chunk_ack, MsgType::array_flush,
                          MsgType::array_flush_ack, MsgType::error}) {
            INFO(msg_type_name(t));
            CHECK(types.count(t) == 1);
        }
        CHECK(lens == std::set<std::size_t>{limits::kControlInnerLen});
        // ... and so one outer size on the WAN.
        std::set<std::size_t> outer(sim.dp_a.control_sizes.begin(), sim.dp_a.control_sizes.end());
        outer.insert(sim.dp_b.control_sizes.begin(), sim.dp_b.control_sizes.end());
        CHECK(outer.size() == 1);
    }
}

TEST_CASE("rekey: the rekey timer is rekey_wait x U(0.9, 1.1), seeded; without jitter exactly rekey_wait") {
    for (bool jitter : {true, false}) {
        INFO("jitter " << jitter);
        auto p = stream_params();
        p.rekey_wait = 100;
        p.array_size = 1;
        Sim sim(p, 37);
        sim.jitter = jitter;
        sim.make_primary();
        sim.make_secondary();
        sim.link.faults.delay = 0ms;  // the exchange itself takes no time: intervals are the timer's
        sim.setup();
        sim.run_for(100 * 110s);
        std::vector<TimePoint> at;
        for (auto& s : sim.events_a)
            if (s.e.kind == Event::Kind::rekey_started) at.push_back(s.at);
        REQUIRE(at.size() >= 90);
        std::set<Duration::rep> distinct;
        double sum = 0;
        for (std::size_t i = 1; i < at.size(); ++i) {
            const double d = std::chrono::duration<double>(at[i] - at[i - 1]).count();
            CHECK(d >= 90.0);
            CHECK(d <= 110.0 + 0.01);
            distinct.insert(std::chrono::duration_cast<std::chrono::milliseconds>(at[i] - at[i - 1]).count());
            sum += d;
        }
        const double mean = sum / double(at.size() - 1);
        if (jitter) {
            CHECK(distinct.size() > at.size() / 2);  // no period
            CHECK(mean > 97.0);
            CHECK(mean < 103.0);
        } else {
            CHECK(distinct.size() == 1);
            CHECK(mean == Approx(100.0).epsilon(0.001));
        }
    }
}
