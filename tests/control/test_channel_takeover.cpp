// A control channel taken over by another cluster member from the state the holder published
// (Session::replica_state / take_over; docs/cluster.md §Taking over a control session), and a
// rekey's switch held until the members hold the next inbound keys (KeyInstaller::hold_switch).
// The new holder is a new Session on the same fake dataplane: the keys a member installs from
// the records are the holder's keys, lane for lane.
#include <catch2/catch.hpp>

#include "channel_sim.hpp"

using namespace p3;
using namespace p3::channel;
using namespace p3::channel::sim;
using namespace std::chrono_literals;

namespace {

config::SessionParams params() {
    config::SessionParams p;
    p.heartbeat_time = 5;
    p.heartbeat_fail = 20;
    p.rekey_wait = 60;
    return p;
}

std::size_t count(const std::vector<Sim::Stamped>& ev, Event::Kind k) {
    std::size_t n = 0;
    for (const auto& s : ev) n += s.e.kind == k;
    return n;
}

// The old holder is gone; a new Session carries on from `st`.
void take_over(Sim& sim, ChannelState&& st) {
    sim.primary.reset();
    sim.make_primary();
    sim.primary->take_over(std::move(st));
}

}  // namespace

TEST_CASE("takeover: the peer keeps its session, no setup, no replay, nothing lost, rekeys go on") {
    Sim sim(params(), 51);
    sim.setup();
    REQUIRE(sim.run_until_pred([&] { return sim.primary->stats().rekeys_done >= 2; }, 10min, 1s));
    // The state as published at the last rekey; the holder then sends on past it (heartbeats,
    // and the rekey's own messages) before it fails.
    auto st = sim.primary->replica_state();
    REQUIRE(st);
    const std::uint32_t epoch = st->tx_epoch;
    sim.run_for(25s);
    REQUIRE(sim.primary->tx_epoch() == epoch);   // no rekey since: the state is the current one
    REQUIRE(sim.primary->stats().sent > 0);
    take_over(sim, std::move(*st));
    CHECK(sim.primary->state() == SessionState::up);
    CHECK(count(sim.events_a, Event::Kind::taken_over) == 1);
    const int setups = sim.setups;
    const auto heard = sim.secondary->stats().received;
    sim.run_for(1s);
    CHECK(sim.secondary->stats().received > heard);   // a heartbeat at once
    sim.run_for(8min);
    CHECK(sim.setups == setups);
    CHECK(sim.secondary->state() == SessionState::up);
    CHECK(sim.secondary->stats().losses == 0);
    // Sequences 2^32 above the published one: the secondary never sees one twice.
    CHECK(sim.secondary->stats().replays == 0);
    CHECK(sim.secondary->stats().auth_failures == 0);
    CHECK(sim.primary->stats().heartbeats_answered > 0);
    CHECK(sim.primary->stats().rekeys_done >= 5);
    CHECK(sim.primary->tx_epoch() > epoch + limits::kTakeoverEpochJump);
    sim.drain();
    CHECK(sim.dp_a.auth_failures + sim.dp_b.auth_failures == 0);
    CHECK(sim.dp_a.data_sent == sim.dp_b.data_received);
    CHECK(sim.dp_b.data_sent == sim.dp_a.data_received);
    // The holder lets go (demoted, or another took over): nothing of it stays armed.
    sim.primary.reset();
    CHECK(sim.loop_a.timers_armed() == 0);
}

TEST_CASE("takeover: a rekey under way at the failure is abandoned; the next one completes") {
    Sim sim(params(), 52);
    sim.setup();
    REQUIRE(sim.run_until_pred([&] { return sim.primary->stats().rekeys_done >= 1; }, 10min, 1s));
    const auto started = count(sim.events_a, Event::Kind::rekey_started);
    // The holder publishes when a rekey starts: take that state, then the holder dies with its
    // request at the secondary (which installs its next inbound keys and answers nobody).
    REQUIRE(sim.run_until_pred([&] { return count(sim.events_a, Event::Kind::rekey_started) > started; }, 5min, 10ms));
    auto st = sim.primary->replica_state();
    REQUIRE(st);
    const auto secondary_rekeys = sim.secondary->stats().rekeys_done;
    take_over(sim, std::move(*st));
    sim.run_for(5min);
    CHECK(sim.secondary->state() == SessionState::up);
    CHECK(sim.secondary->stats().losses == 0);
    CHECK(sim.secondary->stats().replays == 0);
    CHECK(sim.primary->stats().rekeys_done >= 2);
    CHECK(sim.secondary->stats().rekeys_done >= secondary_rekeys + 2);
    sim.drain();
    CHECK(sim.dp_a.data_sent == sim.dp_b.data_received);
    CHECK(sim.dp_b.data_sent == sim.dp_a.data_received);
}

TEST_CASE("rekey: a held switch is announced only when released; the secondary switches then") {
    config::SessionParams p = params();
    p.rekey_wait = 100000;
    Sim sim(p, 53);
    sim.setup();
    sim.run_for(5s);
    sim.dp_a.hold_switches = true;
    sim.primary->force_rekey();
    REQUIRE(sim.run_until_pred([&] { return bool(sim.dp_a.held); }, 10s, 10ms));
    sim.run_for(3s);
    // Next inbound keys are in on both sides, but nobody switched: the secondary sends under
    // its current keys until it hears of the switch.
    CHECK(sim.secondary->stats().rekeys_done == 0);
    CHECK(sim.primary->stats().rekeys_done == 0);
    CHECK(sim.primary->rekey_in_flight());
    auto ready = std::move(sim.dp_a.held);
    sim.dp_a.held = nullptr;
    ready();
    sim.run_for(3s);
    CHECK(sim.secondary->stats().rekeys_done == 1);
    CHECK(sim.primary->stats().rekeys_done == 1);
    ready();   // a release that comes again (late) changes nothing
    sim.run_for(3s);
    CHECK(sim.primary->stats().rekeys_done == 1);
    sim.drain();
    CHECK(sim.dp_a.data_sent == sim.dp_b.data_received);
    CHECK(sim.dp_b.data_sent == sim.dp_a.data_received);
}
