// Key arrays (DESIGN.md §Session life 4): delivered in chunks spread over time, rekeys name
// unused indices while an array is fresh (and may run between two chunks), indices never
// repeat, arrays replaced at data_array_time / control_array_time (or when used up), flush on
// command with or without a new array.
#include <catch2/catch.hpp>

#include <set>
#include <tuple>

#include "channel_sim.hpp"

using namespace p3;
using namespace p3::channel;
using namespace p3::channel::sim;
using namespace std::chrono_literals;

namespace {

using IndexUse = std::tuple<ArrayKind, std::uint32_t, std::uint32_t>;

std::vector<IndexUse> index_uses(const std::vector<Sim::Stamped>& ev) {
    std::vector<IndexUse> out;
    for (auto& s : ev)
        if (s.e.kind == Event::Kind::array_index_used) out.emplace_back(s.e.array, s.e.gen, s.e.index);
    return out;
}

std::vector<std::pair<TimePoint, std::uint32_t>> activations(const std::vector<Sim::Stamped>& ev, ArrayKind k) {
    std::vector<std::pair<TimePoint, std::uint32_t>> out;
    for (auto& s : ev)
        if (s.e.kind == Event::Kind::array_active && s.e.array == k) out.emplace_back(s.at, s.e.gen);
    return out;
}

void check_never_repeats(const Sim& sim) {
    const auto a = index_uses(sim.events_a), b = index_uses(sim.events_b);
    std::set<IndexUse> seen(a.begin(), a.end());
    CHECK(seen.size() == a.size());  // no (kind, generation, index) twice
    CHECK(a == b);                   // the secondary spent exactly the indices the primary named
}

}  // namespace

TEST_CASE("key arrays: delivered at start, rekeys name fresh indices, replaced at their configured times") {
    LogCapture logs;
    config::SessionParams p;
    p.rekey_wait = 60;
    p.array_size = 256;
    p.data_array_time = 900;
    p.control_array_time = 800;
    Sim sim(p, 21);
    sim.setup();
    sim.run_for(50s);  // two arrays of 16 chunks, about a second apart each
    CHECK(sim.primary->array_gen(ArrayKind::data) != 0);
    CHECK(sim.primary->array_gen(ArrayKind::control) != 0);
    CHECK(sim.secondary->array_gen(ArrayKind::data) == sim.primary->array_gen(ArrayKind::data));
    CHECK(sim.secondary->array_gen(ArrayKind::control) == sim.primary->array_gen(ArrayKind::control));

    sim.run_for(4000s);
    const auto rekeys = sim.primary->stats().rekeys_done;
    REQUIRE(rekeys >= 60);
    // While fresh, every rekey named indices: two per array per rekey.
    const auto uses = index_uses(sim.events_a);
    std::size_t data_uses = 0;
    for (auto& u : uses) data_uses += std::get<0>(u) == ArrayKind::data;
    CHECK(data_uses >= 2 * (rekeys - 2));
    CHECK(uses.size() - data_uses >= 2 * (rekeys - 2));
    check_never_repeats(sim);
    // Replacement: every data_array_time / control_array_time after the previous one became
    // active, plus the delivery itself: 16 chunks, each U(0.5, 1.5) x 1 s after the previous
    // acknowledgement, and a rekey running between two of them at most.
    for (auto [kind, period] : {std::pair{ArrayKind::data, 900s}, std::pair{ArrayKind::control, 800s}}) {
        const auto act = activations(sim.events_a, kind);
        REQUIRE(act.size() >= 4);
        for (std::size_t i = 1; i < act.size(); ++i) {
            INFO("replacement " << i);
            CHECK(act[i].first - act[i - 1].first >= period);
            CHECK(act[i].first - act[i - 1].first <= period + 15 * 1500ms + 16 * 100ms + 3s);
            CHECK(act[i].second > act[i - 1].second);  // a new generation, never an old one
        }
        CHECK(activations(sim.events_b, kind).size() == act.size());
    }
    CHECK(logs.count(Reason::ARRAY_REPLACE) >= 8);
    CHECK(logs.count(Reason::ARRAY_ACTIVE) >= 2 * 8);
    CHECK(sim.primary->stats().rekey_attempts_failed == 0);
    sim.drain();
    CHECK(sim.dp_a.send_unreceivable + sim.dp_b.send_unreceivable == 0);
    CHECK(sim.dp_a.lost_no_slot + sim.dp_b.lost_no_slot == 0);
    CHECK(sim.dp_a.data_sent == sim.dp_b.data_received);
}

TEST_CASE("key arrays: a used-up array is replaced early; indices never repeat across generations") {
    LogCapture logs;
    config::SessionParams p;
    p.rekey_wait = 30;
    p.array_size = 6;  // three rekeys' worth of indices
    p.data_array_time = 86400;
    p.control_array_time = 82800;
    Sim sim(p, 22);
    sim.setup();
    sim.run_for(2000s);
    REQUIRE(sim.primary->stats().rekeys_done >= 60);
    check_never_repeats(sim);
    CHECK(activations(sim.events_a, ArrayKind::data).size() >= 15);
    CHECK(logs.count(Reason::ARRAY_REPLACE) >= 30);
    CHECK(sim.primary->stats().rekey_attempts_failed == 0);
    CHECK(sim.secondary->stats().rekey_stale == 0);
}

TEST_CASE("key arrays: flush on command, with and without a new array") {
    LogCapture logs;
    config::SessionParams p;
    p.rekey_wait = 3600;
    p.array_size = 32;
    Sim sim(p, 23);
    sim.setup();
    sim.run_for(10s);
    const auto gen_d = sim.primary->array_gen(ArrayKind::data);
    const auto gen_c = sim.primary->array_gen(ArrayKind::control);
    REQUIRE(gen_d != 0);

    sim.primary->flush_arrays(kFlushData | kFlushControl, false);
    sim.run_for(5s);
    CHECK(sim.primary->array_gen(ArrayKind::data) == 0);
    CHECK(sim.secondary->array_gen(ArrayKind::data) == 0);
    CHECK(sim.secondary->array_gen(ArrayKind::control) == 0);
    CHECK(logs.count(Reason::ARRAY_FLUSHED) == 4);  // two kinds, both sides
    // Without arrays a rekey carries its keys explicitly, and works.
    const auto uses_before = index_uses(sim.events_a).size();
    sim.primary->force_rekey();
    sim.run_for(5s);
    CHECK(sim.primary->stats().rekeys_done == 1);
    CHECK(index_uses(sim.events_a).size() == uses_before);

    // Flush only the data array, asking for a new one: new generation on both sides.
    sim.primary->deliver_arrays(kFlushControl);
    sim.run_for(5s);
    CHECK(sim.primary->array_gen(ArrayKind::control) > gen_c);
    sim.primary->flush_arrays(kFlushData, true);
    sim.run_for(5s);
    const auto new_d = sim.primary->array_gen(ArrayKind::data);
    CHECK(new_d > gen_d);
    CHECK(sim.secondary->array_gen(ArrayKind::data) == new_d);
    CHECK(sim.secondary->array_gen(ArrayKind::control) == sim.primary->array_gen(ArrayKind::control));
    sim.primary->force_rekey();
    sim.run_for(5s);
    CHECK(sim.primary->stats().rekeys_done == 2);
    const auto uses = index_uses(sim.events_a);
    REQUIRE(uses.size() == uses_before + 4);
    CHECK(std::get<1>(uses.back()) == sim.primary->array_gen(ArrayKind::control));
    check_never_repeats(sim);
    sim.drain();
    CHECK(sim.dp_a.send_unreceivable + sim.dp_b.send_unreceivable == 0);
    CHECK(sim.dp_a.data_sent == sim.dp_b.data_received);
}

TEST_CASE("key arrays: delivery survives lost, duplicated and reordered chunks") {
    LogCapture logs;
    config::SessionParams p;
    p.rekey_wait = 3600;
    p.array_size = 1000;  // 63 chunks
    Sim sim(p, 24);
    sim.link.faults.drop = 0.3;
    sim.link.faults.dup = 0.2;
    sim.link.faults.jitter = 500ms;
    sim.setup();
    REQUIRE(sim.run_until_pred([&] {
        return sim.secondary->array_gen(ArrayKind::data) != 0 && sim.secondary->array_gen(ArrayKind::control) != 0;
    }, 30min));
    CHECK(sim.secondary->array_gen(ArrayKind::data) == sim.primary->array_gen(ArrayKind::data));
    CHECK(sim.secondary->array_unused(ArrayKind::data) == 1000);
    CHECK(sim.primary->stats().retransmits > 0);
    // And the keys agree: a rekey by index works.
    sim.link.faults = Faults{};
    sim.primary->force_rekey();
    sim.run_for(10s);
    CHECK(sim.primary->stats().rekeys_done == 1);
    CHECK(sim.primary->tx_epoch() == sim.secondary->tx_epoch());
    CHECK(index_uses(sim.events_a).size() == 4);
    sim.drain();
    CHECK(sim.dp_a.send_unreceivable + sim.dp_b.send_unreceivable == 0);
    CHECK(sim.dp_a.auth_failures + sim.dp_b.auth_failures == 0);
}

TEST_CASE("key arrays: a flush ordered while a delivery is under way also drops the array it delivers") {
    LogCapture logs;
    config::SessionParams p;
    p.rekey_wait = 3600;
    p.array_size = 256;  // 16 chunks: the flush arrives in the middle
    Sim sim(p, 25);
    sim.setup();
    sim.run_for(100ms);  // first chunks of the data array on the way
    REQUIRE(sim.primary->array_gen(ArrayKind::data) == 0);
    sim.primary->flush_arrays(kFlushData | kFlushControl, false);
    sim.run_for(80s);  // both trickled deliveries end, then the flush runs
    CHECK(sim.primary->array_gen(ArrayKind::data) == 0);
    CHECK(sim.secondary->array_gen(ArrayKind::data) == 0);
    CHECK(sim.primary->array_gen(ArrayKind::control) == 0);
    CHECK(sim.secondary->array_gen(ArrayKind::control) == 0);
    // Rekeys carry explicit keys and work.
    for (int i = 0; i < 3; ++i) {
        sim.primary->force_rekey();
        sim.run_for(5s);
    }
    CHECK(sim.primary->stats().rekeys_done == 3);
    CHECK(sim.primary->stats().rekey_attempts_failed == 0);
    CHECK(index_uses(sim.events_a).empty());
}

TEST_CASE("key arrays: repeated flush commands join the one already queued; the queue stays bounded") {
    config::SessionParams p;
    p.array_size = 8;
    Sim sim(p, 11);
    sim.setup();
    sim.run_for(5s);
    REQUIRE(sim.primary->array_gen(ArrayKind::data) != 0);
    sim.data_on = false;
    const auto sent_before = sim.dp_a.control_sent;
    // The first becomes the exchange in flight; the others wait behind it and must merge.
    for (int i = 0; i < 50; ++i) sim.primary->flush_arrays(i % 2 ? kFlushData : kFlushControl, i == 49);
    sim.run_for(5s);
    // One flush in flight, one merged flush (both kinds, with a new array) and the new arrays'
    // chunks: a handful of packets, not fifty round trips.
    const auto sent = sim.dp_a.control_sent - sent_before;
    CHECK(sent < 12);
    CHECK(sim.primary->array_gen(ArrayKind::data) != 0);      // with_new of the merged flush kept
    CHECK(sim.primary->array_gen(ArrayKind::control) != 0);
    CHECK(sim.primary->state() == SessionState::up);
}

TEST_CASE("key arrays: chunks trickle, U(0.5, 1.5) x spacing apart; spacing shrinks with a short lifetime") {
    struct Case {
        std::uint32_t size, lifetime;
        Duration spacing;
    };
    // 256 keys = 16 chunks: 1 s apart by default; with a 32 s lifetime at most 32 / (4 x 16).
    for (Case c : {Case{256, 86400, 1s}, Case{256, 32, 500ms}, Case{48, 6, 500ms}}) {
        INFO("array " << c.size << " keys, lifetime " << c.lifetime << " s");
        config::SessionParams p;
        p.rekey_wait = 3600;
        p.array_size = c.size;
        p.data_array_time = c.lifetime;
        p.control_array_time = 86400;
        Sim sim(p, 51);
        sim.dp_a.record = true;
        sim.setup();
        sim.run_for(60s);
        std::vector<TimePoint> at;
        std::set<std::uint32_t> offsets;
        for (auto& x : sim.dp_a.sent)
            if (x.type == MsgType::array_chunk && x.m.array_kind == ArrayKind::data && x.m.array_gen == 1u &&
                offsets.insert(*x.m.array_offset).second)
                at.push_back(x.at);
        REQUIRE(at.size() == (c.size + 15) / 16);
        Duration lo = 1h, hi = 0s;
        for (std::size_t i = 1; i < at.size(); ++i) {
            // the acknowledgement's round trip (2 x 20 ms), then U(0.5, 1.5) x spacing
            const Duration gap = at[i] - at[i - 1] - 40ms;
            CHECK(gap >= c.spacing / 2 - 1ms);
            CHECK(gap <= c.spacing * 3 / 2 + 1ms);
            lo = std::min(lo, gap);
            hi = std::max(hi, gap);
        }
        if (at.size() > 4) CHECK(hi - lo >= c.spacing / 4);  // jittered, not a fixed beat
        CHECK(sim.secondary->array_gen(ArrayKind::data) != 0);  // (replaced since, with a short lifetime)
    }
}

TEST_CASE("key arrays: a rekey crossing a delivery runs between two chunks; the next chunk waits for it") {
    LogCapture logs;
    config::SessionParams p;
    p.rekey_wait = 3600;
    p.array_size = 256;
    p.data_array_time = 86400;
    p.control_array_time = 86400;
    Sim sim(p, 53);
    sim.link.faults = Faults{0, 0, 120ms, 40ms, false};
    sim.data_interval = 37ms;
    sim.dp_a.record = true;
    sim.setup();
    REQUIRE(sim.run_until_pred([&] { return sim.primary->array_gen(ArrayKind::data) != 0; }, 60s, 100ms));
    const auto gen1 = sim.primary->array_gen(ArrayKind::data);
    // A new data array is trickling in; the administrator asks for rekeys meanwhile.
    sim.primary->deliver_arrays(kFlushData);
    sim.run_for(3s);
    REQUIRE(sim.primary->array_gen(ArrayKind::data) == gen1);  // still delivering
    for (int i = 0; i < 3; ++i) {
        sim.primary->force_rekey();
        sim.run_for(2s);
    }
    REQUIRE(sim.run_until_pred([&] { return sim.primary->array_gen(ArrayKind::data) > gen1; }, 60s, 100ms));
    sim.run_for(5s);
    CHECK(sim.primary->stats().rekeys_done == 3);
    CHECK(sim.primary->stats().rekey_attempts_failed == 0);
    // Every rekey ran while the delivery was under way (between chunks), not after it ...
    std::vector<TimePoint> starts, dones;
    for (auto& s : sim.events_a) {
        if (s.e.kind == Event::Kind::rekey_started) starts.push_back(s.at);
        if (s.e.kind == Event::Kind::rekey_done) dones.push_back(s.at);
    }
    TimePoint active_at{};
    for (auto& s : sim.events_a)
        if (s.e.kind == Event::Kind::array_active && s.e.array == ArrayKind::data && s.e.gen > gen1) active_at = s.at;
    REQUIRE(dones.size() == 3);
    for (TimePoint d : dones) CHECK(d < active_at);
    // ... and named indices of the array active then (the new one was not complete yet).
    for (auto& [kind, gen, index] : index_uses(sim.events_a))
        if (kind == ArrayKind::data) CHECK(gen == gen1);
    // No chunk went out while a rekey was in flight.
    for (auto& x : sim.dp_a.sent) {
        if (x.type != MsgType::array_chunk) continue;
        for (std::size_t i = 0; i < starts.size(); ++i) CHECK(!(x.at > starts[i] && x.at < dones[i]));
    }
    CHECK(sim.secondary->array_gen(ArrayKind::data) == sim.primary->array_gen(ArrayKind::data));
    check_never_repeats(sim);
    sim.drain();
    for (const auto* dp : {&sim.dp_a, &sim.dp_b}) {
        CHECK(dp->send_unreceivable == 0);
        CHECK(dp->lost_no_slot + dp->auth_failures + dp->below_cur + dp->replays + dp->wrong_key == 0);
    }
    CHECK(sim.dp_a.data_sent == sim.dp_b.data_received);
    CHECK(sim.dp_b.data_sent == sim.dp_a.data_received);
}
