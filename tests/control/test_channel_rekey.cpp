// Rekey (seed spec §2.1.6) between two sessions on the simulated link, and the secondary's
// answers stepped message by message (stale, crossing, retransmitted and bad requests).
#include <catch2/catch.hpp>

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
    }
    CHECK(sim.dp_a.data_sent == sim.dp_b.data_received);
    CHECK(sim.dp_b.data_sent == sim.dp_a.data_received);
    // (heartbeats keep going while draining: count what is still on the link)
    CHECK(sim.dp_a.control_sent == sim.dp_b.control_received + sim.link.in_flight(1, true));
    CHECK(sim.dp_b.control_sent == sim.dp_a.control_received + sim.link.in_flight(0, true));
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
    // Every side switched once per rekey; every superseded inbound slot is gone.
    CHECK(sim.dp_a.switches == sim.primary->stats().rekeys_done + 1);
    CHECK(sim.dp_b.switches == sim.secondary->stats().rekeys_done + 1);
    CHECK(sim.dp_a.slots.size() == 1);
    CHECK(sim.dp_b.slots.size() == 1);
    CHECK(sim.dp_a.retired == sim.dp_a.installs - 1);
    CHECK(sim.dp_b.retired == sim.dp_b.installs - 1);
    CHECK(sim.primary->rx_epochs() == 1);
    // Rekeys every rekey_wait: the epochs' start times are 60 s apart (+ the exchange).
    std::vector<TimePoint> done;
    for (auto& s : sim.events_a)
        if (s.e.kind == Event::Kind::rekey_done) done.push_back(s.at);
    for (std::size_t i = 1; i < done.size(); ++i) {
        CHECK(done[i] - done[i - 1] >= 60s);
        CHECK(done[i] - done[i - 1] <= 62s);  // (two round trips of at most 160 ms)
    }
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
    sim.setup();
    std::uint64_t max_a = 0, max_b = 0;
    for (int i = 0; i < 600; ++i) {
        sim.run_for(1s);
        max_a = std::max(max_a, sim.dp_a.tx.packets);
        max_b = std::max(max_b, sim.dp_b.tx.packets);
    }
    const auto n = sim.primary->stats().rekeys_done;
    CHECK(n >= 600 / 27);
    CHECK(n <= 600 / 25 + 1);
    // The tick notices within a second, the exchange takes well under a second more.
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

// ---- the secondary, stepped by hand ------------------------------------------------------------

namespace {

// Plays the primary: seals messages to the secondary and opens its answers.
struct ManualPrimary final : KeyInstaller, ControlLink {
    FrameAddrs to_sec{*IpAddr::parse("192.0.2.1"), *IpAddr::parse("198.51.100.2"), 5653};
    FrameAddrs at_sec{*IpAddr::parse("198.51.100.2"), *IpAddr::parse("192.0.2.1"), 5653};
    std::map<std::uint32_t, KeyMaterial> ctl_p2s, ctl_s2p;  // by epoch
    std::uint64_t seq = 0;
    std::vector<std::vector<std::uint8_t>> out;              // what the secondary sent
    // secondary's installer side
    std::uint32_t next_rx = 0x500;
    int installs = 0, switches = 0, retires = 0;
    std::uint32_t tx_peer = 0;

    std::optional<std::uint32_t> install_rx(const KeyMaterial&, std::uint32_t) override {
        ++installs;
        return next_rx++;
    }
    bool switch_tx(std::uint32_t id, const KeyMaterial&, std::uint32_t) override {
        ++switches;
        tx_peer = id;
        return true;
    }
    void retire_rx(std::uint32_t) override { ++retires; }
    bool rx_seen(std::uint32_t) override { return false; }
    std::uint64_t tx_packets() override { return 0; }
    void session_down(Reason) override {}
    void send_control(std::span<const std::uint8_t> p) override { out.emplace_back(p.begin(), p.end()); }

    std::vector<std::uint8_t> seal(const Message& m, std::uint32_t epoch = 0) {
        std::vector<std::uint8_t> msg(limits::kMaxMessageLen);
        msg.resize(encode(m, msg));
        std::vector<std::uint8_t> pkt(limits::kMaxInnerPacket);
        FrameParams fp;
        fp.epoch = epoch;
        fp.seq = ++seq;
        pkt.resize(seal_packet(to_sec, ctl_p2s.at(epoch), fp, msg, pkt));
        return pkt;
    }
    // The secondary's last answer, opened.
    std::optional<Message> last() {
        if (out.empty()) return std::nullopt;
        auto sv = parse_packet(to_sec, out.back());
        if (!sv) return std::nullopt;
        auto it = ctl_s2p.find(sv->epoch);
        if (it == ctl_s2p.end()) return std::nullopt;
        std::vector<std::uint8_t> plain(sv->ciphertext.size());
        auto n = open_sealed(it->second, *sv, plain);
        if (!n) return std::nullopt;
        return parse({plain.data(), *n});
    }
};

KeyMaterial km(std::uint8_t seed, std::size_t keylen = 16) {
    std::vector<std::uint8_t> b(keylen + 4);
    for (std::size_t i = 0; i < b.size(); ++i) b[i] = static_cast<std::uint8_t>(seed * 7 + i);
    return KeyMaterial::from_wire(b);
}

Message request(std::uint32_t id, std::uint32_t epoch) {
    Message m;
    m.type = MsgType::rekey_request;
    m.msg_id = id;
    m.epoch = epoch;
    m.p3_id = 0x900 + epoch;
    m.lanes = 1;
    m.data_p2s.material = km(std::uint8_t(epoch * 4)).to_wire();
    m.data_s2p.material = km(std::uint8_t(epoch * 4 + 1)).to_wire();
    m.ctl_p2s.material = km(std::uint8_t(epoch * 4 + 2)).to_wire();
    m.ctl_s2p.material = km(std::uint8_t(epoch * 4 + 3)).to_wire();
    return m;
}

struct Stepped {
    LogCapture logs;
    ManualClock clock;
    EventLoop loop{clock};
    SeededRandom rng{5};
    RandomKeys keys{6};
    ManualPrimary peer;
    std::unique_ptr<Session> sec;
    Stepped() {
        SessionConfig c;
        c.role = config::Role::secondary;
        c.name = "primary";
        c.addrs = peer.at_sec;
        sec = std::make_unique<Session>(loop, c, peer, peer, rng, keys);
        peer.ctl_p2s[0] = km(100);
        peer.ctl_s2p[0] = km(101);
        sec->start(InitialKeys{0x400, 0x300, km(101), km(100), 1, 1});
    }
    std::optional<Message> send(const Message& m, std::uint32_t epoch = 0) {
        const auto n = peer.out.size();
        sec->on_control_packet(peer.seal(m, epoch));
        if (peer.out.size() == n) return std::nullopt;  // no answer
        return peer.last();
    }
    // Registers the epoch's control keys (as the request carries them).
    void learn(std::uint32_t epoch) {
        peer.ctl_p2s[epoch] = km(std::uint8_t(epoch * 4 + 2));
        peer.ctl_s2p[epoch] = km(std::uint8_t(epoch * 4 + 3));
    }
};

}  // namespace

TEST_CASE("rekey, stepped: a retransmitted request gets the same answer, a late older one is stale") {
    Stepped t;
    auto a = t.send(request(1, 1));
    REQUIRE(a);
    CHECK(a->type == MsgType::rekey_status);
    CHECK(a->msg_id == 1);
    CHECK(a->status == Status::ok);
    const auto id1 = *a->p3_id;
    // Retransmission (new control sequence): same status, same P3 ID, nothing installed twice.
    a = t.send(request(1, 1));
    REQUIRE(a);
    CHECK(a->status == Status::ok);
    CHECK(a->p3_id == id1);
    CHECK(t.peer.installs == 1);
    // The primary gave up on epoch 1 and asked again with epoch 2; then a late copy of 1 arrives.
    a = t.send(request(2, 2));
    REQUIRE(a);
    CHECK(a->status == Status::ok);
    CHECK(a->p3_id != id1);
    a = t.send(request(3, 1));
    REQUIRE(a);
    CHECK(a->status == Status::stale);
    CHECK(t.peer.installs == 2);
    CHECK(t.sec->stats().rekey_stale == 1);
    // Switch to epoch 2: the secondary follows, answers under the new control key.
    t.learn(2);
    Message sw;
    sw.type = MsgType::rekey_switch;
    sw.msg_id = 4;
    sw.epoch = 2;
    sw.first_seq = 1;
    a = t.send(sw, 2);
    REQUIRE(a);
    CHECK(a->type == MsgType::rekey_switch_ack);
    CHECK(a->epoch == 2u);
    CHECK(t.peer.switches == 1);
    CHECK(t.peer.tx_peer == 0x902);
    CHECK(t.sec->tx_epoch() == 2);
    // A retransmitted switch: acknowledged again, not switched again.
    a = t.send(sw, 2);
    REQUIRE(a);
    CHECK(a->type == MsgType::rekey_switch_ack);
    CHECK(t.peer.switches == 1);
    // A switch to the abandoned epoch 1: refused as stale.
    sw.msg_id = 5;
    sw.epoch = 1;
    a = t.send(sw, 2);
    REQUIRE(a);
    CHECK(a->type == MsgType::error);
    CHECK(a->error_code == Status::stale);
    // Old inbound keys (epoch 0 and the abandoned 1) are retired after the timeout.
    t.clock.advance(limits::kRetireTimeout + 1s);
    t.loop.run_due();
    CHECK(t.peer.retires == 2);
    CHECK(t.sec->rx_epochs() == 1);
}

TEST_CASE("rekey, stepped: requests the secondary must refuse") {
    Stepped t;
    struct Case {
        const char* what;
        std::function<Message()> make;
        MsgType want_type;
        Status want;
    };
    const std::vector<Case> cases = {
        {"AES-256 key on an AES-128 session",
         [] {
             Message m = request(10, 1);
             m.data_p2s.material = km(1, 32).to_wire();
             return m;
         },
         MsgType::rekey_status, Status::bad_key},
        {"an index while no array was delivered",
         [] {
             Message m = request(11, 2);
             m.data_p2s.material.reset();
             m.data_p2s.index = ArrayIndex{1, 0};
             return m;
         },
         MsgType::rekey_status, Status::unknown_array},
        {"switch for an epoch never requested",
         [] {
             Message m;
             m.type = MsgType::rekey_switch;
             m.msg_id = 12;
             m.epoch = 9;
             m.first_seq = 1;
             return m;
         },
         MsgType::error, Status::unknown_epoch},
        {"a rekey ask (only a primary takes those)",
         [] {
             Message m;
             m.type = MsgType::rekey_ask;
             m.msg_id = 13;
             m.ask_reason = 1;
             return m;
         },
         MsgType::error, Status::not_allowed},
    };
    for (const Case& c : cases) {
        INFO(c.what);
        auto a = t.send(c.make());
        REQUIRE(a);
        CHECK(a->type == c.want_type);
        if (c.want_type == MsgType::error) CHECK(a->error_code == c.want);
        else CHECK(a->status == c.want);
    }
    CHECK(t.peer.installs == 0);
    CHECK(t.peer.switches == 0);
}

TEST_CASE("rekey, stepped: array indices are spent once; a reuse is refused") {
    Stepped t;
    // Deliver a 16-key data array and a 16-key control array in one chunk each.
    for (ArrayKind k : {ArrayKind::data, ArrayKind::control}) {
        Message c;
        c.type = MsgType::array_chunk;
        c.msg_id = k == ArrayKind::data ? 20 : 21;
        c.array_kind = k;
        c.array_gen = 1;
        c.array_size = 16;
        c.array_offset = 0;
        c.key_len = 16;
        c.array_keys = SecretBytes(16 * 20);
        for (std::size_t i = 0; i < 320; ++i) c.array_keys.data()[i] = static_cast<std::uint8_t>(i);
        auto a = t.send(c);
        REQUIRE(a);
        CHECK(a->type == MsgType::array_chunk_ack);
        CHECK(a->status == Status::ok);
    }
    CHECK(t.sec->array_gen(ArrayKind::data) == 1);
    CHECK(t.sec->array_unused(ArrayKind::data) == 16);
    auto by_index = [](std::uint32_t id, std::uint32_t epoch, std::uint32_t d1, std::uint32_t d2) {
        Message m = request(id, epoch);
        for (KeyRef* k : {&m.data_p2s, &m.data_s2p, &m.ctl_p2s, &m.ctl_s2p}) k->material.reset();
        m.data_p2s.index = ArrayIndex{1, d1};
        m.data_s2p.index = ArrayIndex{1, d2};
        m.ctl_p2s.index = ArrayIndex{1, d1};
        m.ctl_s2p.index = ArrayIndex{1, d2};
        return m;
    };
    auto a = t.send(by_index(30, 1, 3, 4));
    REQUIRE(a);
    CHECK(a->status == Status::ok);
    CHECK(t.sec->array_unused(ArrayKind::data) == 14);
    a = t.send(by_index(31, 2, 4, 5));  // index 4 again
    REQUIRE(a);
    CHECK(a->status == Status::index_reused);
    a = t.send(by_index(32, 3, 7, 7));  // one index for both directions
    REQUIRE(a);
    CHECK(a->status == Status::index_reused);
    a = t.send(by_index(33, 4, 16, 1));  // out of the array
    REQUIRE(a);
    CHECK(a->status == Status::unknown_array);
    CHECK(t.peer.installs == 1);
    CHECK(t.logs.count(Reason::ARRAY_INDEX_REFUSED) == 3);
}

TEST_CASE("rekey, stepped: garbage, forged and replayed control packets are dropped and counted") {
    Stepped t;
    Message hb;
    hb.type = MsgType::heartbeat;
    hb.msg_id = 40;
    const auto good = t.peer.seal(hb);
    t.sec->on_control_packet(good);
    CHECK(t.peer.out.size() == 1);  // answered
    t.sec->on_control_packet(good);  // the same packet again
    CHECK(t.sec->stats().replays == 1);
    auto forged = t.peer.seal(hb);
    forged[forged.size() - 1] ^= 1;  // tag
    t.sec->on_control_packet(forged);
    CHECK(t.sec->stats().auth_failures == 1);
    auto other_epoch = t.peer.seal(hb);
    other_epoch[40 + 3] = 7;  // epoch 7: no such control key
    t.sec->on_control_packet(other_epoch);
    CHECK(t.sec->stats().unknown_epoch == 1);
    auto port = t.peer.seal(hb);
    port[20] ^= 1;
    t.sec->on_control_packet(port);
    std::vector<std::uint8_t> tiny(30, 0x45);
    t.sec->on_control_packet(tiny);
    CHECK(t.sec->stats().frame_errors == 2);
    // A message that authenticates but does not parse.
    std::vector<std::uint8_t> junk{1, 99, 0, 0, 0, 0, 0, 1};
    std::vector<std::uint8_t> pkt(limits::kMaxInnerPacket);
    FrameParams fp;
    fp.seq = ++t.peer.seq;
    pkt.resize(seal_packet(t.peer.to_sec, t.peer.ctl_p2s.at(0), fp, junk, pkt));
    t.sec->on_control_packet(pkt);
    CHECK(t.sec->stats().parse.total_rejected() == 1);
    CHECK(t.peer.out.size() == 1);  // none of them answered
    CHECK(t.sec->state() == SessionState::up);
}
