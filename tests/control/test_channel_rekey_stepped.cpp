// The secondary's side of a rekey stepped message by message, with a hand-played primary:
// retransmitted, stale, crossing and bad requests, the settle rule, X25519 mixing checked
// against the test's own computation, bad and missing shares, array indices spent once, and
// garbage, forged and replayed control packets, also when forwarded by a cluster member.
#include <catch2/catch.hpp>

#include <algorithm>

#include "channel_sim.hpp"
#include "control/channel/dh.hpp"
#include "control/channel/framing.hpp"
#include "control/channel/messages.hpp"
#include "control/cluster/engine.hpp"
#include "tests/cluster/loopback.hpp"

using namespace p3;
using namespace p3::channel;
using namespace p3::channel::sim;
using namespace std::chrono_literals;

// ---- the secondary, stepped by hand ------------------------------------------------------------

namespace {

// Plays the primary: seals messages to the secondary and opens its answers; and is the
// secondary's dataplane (KeyInstaller), recording what the secondary asked of it.
struct ManualPrimary final : KeyInstaller, ControlLink {
    FrameAddrs to_sec{*IpAddr::parse("192.0.2.1"), *IpAddr::parse("198.51.100.2"), 5653};
    FrameAddrs at_sec{*IpAddr::parse("198.51.100.2"), *IpAddr::parse("192.0.2.1"), 5653};
    std::map<std::uint32_t, KeyMaterial> ctl_p2s, ctl_s2p;  // by epoch
    std::uint64_t seq = 0;
    std::vector<std::vector<std::uint8_t>> out;              // what the secondary sent
    // secondary's installer side
    int installs = 0, switches = 0, promotes = 0, drops = 0;
    bool seen = false;
    std::optional<KeyMaterial> next_rx, tx;
    std::vector<std::uint64_t> switch_at;
    std::uint64_t tx_seq = 100;                               // the secondary's lane counter

    bool install_next_rx(const KeyMaterial& k) override {
        ++installs;
        next_rx = k.clone();
        switch_at.clear();
        return true;
    }
    void rx_switch_at(std::span<const std::uint64_t> f) override { switch_at.assign(f.begin(), f.end()); }
    bool rx_next_seen() override { return seen; }
    void promote_rx() override {
        ++promotes;
        next_rx.reset();
    }
    void drop_next_rx() override {
        ++drops;
        next_rx.reset();
    }
    bool switch_tx(const KeyMaterial& k, std::vector<std::uint64_t>& first) override {
        ++switches;
        tx = k.clone();
        first.assign(1, tx_seq + 1);
        return true;
    }
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
    m.lanes = 1;
    m.data_p2s.material = km(std::uint8_t(epoch * 4)).to_wire();
    m.data_s2p.material = km(std::uint8_t(epoch * 4 + 1)).to_wire();
    m.ctl_p2s.material = km(std::uint8_t(epoch * 4 + 2)).to_wire();
    m.ctl_s2p.material = km(std::uint8_t(epoch * 4 + 3)).to_wire();
    return m;
}

Message switch_msg(std::uint32_t id, std::uint32_t epoch, std::uint64_t first = 1) {
    Message sw;
    sw.type = MsgType::rekey_switch;
    sw.msg_id = id;
    sw.epoch = epoch;
    sw.first_seq = {first};
    return sw;
}

struct Stepped {
    LogCapture logs;
    ManualClock clock;
    EventLoop loop{clock};
    SeededRandom rng{5};
    RandomKeys keys{6};
    ManualPrimary peer;
    std::unique_ptr<Session> sec;
    explicit Stepped(bool dh = false) {
        SessionConfig c;
        c.role = config::Role::secondary;
        c.name = "primary";
        c.addrs = peer.at_sec;
        c.params.rekey_dh = dh;
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
    // Registers the epoch's control keys as the request carried them (rekey_dh off).
    void learn(std::uint32_t epoch) {
        peer.ctl_p2s[epoch] = km(std::uint8_t(epoch * 4 + 2));
        peer.ctl_s2p[epoch] = km(std::uint8_t(epoch * 4 + 3));
    }
    void advance(Duration d) {
        clock.advance(d);
        loop.run_due();
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
    CHECK(a->lanes == 1u);
    CHECK(!a->dh_share);  // rekey_dh off on both sides
    CHECK(t.peer.installs == 1);
    REQUIRE(t.peer.next_rx);
    CHECK(t.peer.next_rx->key.equals(km(4).key.span()));  // data p2s as delivered (no DH)
    // Retransmission (new control sequence): same status, nothing installed twice.
    a = t.send(request(1, 1));
    REQUIRE(a);
    CHECK(a->status == Status::ok);
    CHECK(t.peer.installs == 1);
    // The primary gave up on epoch 1 (never switched) and asked again with epoch 2: the
    // pending next key of epoch 1 was never used, so it is dropped before epoch 2's goes in.
    a = t.send(request(2, 2));
    REQUIRE(a);
    CHECK(a->status == Status::ok);
    CHECK(t.peer.drops == 1);
    CHECK(t.peer.promotes == 0);
    CHECK(t.peer.installs == 2);
    // A late copy of 1: stale, changes nothing.
    a = t.send(request(3, 1));
    REQUIRE(a);
    CHECK(a->status == Status::stale);
    CHECK(t.peer.installs == 2);
    CHECK(t.sec->stats().rekey_stale == 1);
    // Switch to epoch 2: the dataplane hears the switch point, the secondary follows and
    // answers under the new control key with its own first sequence.
    t.learn(2);
    a = t.send(switch_msg(4, 2, 777), 2);
    REQUIRE(a);
    CHECK(a->type == MsgType::rekey_switch_ack);
    CHECK(a->epoch == 2u);
    CHECK(a->first_seq == std::vector<std::uint64_t>{101});
    CHECK(t.peer.switch_at == std::vector<std::uint64_t>{777});
    CHECK(t.peer.switches == 1);
    CHECK(t.peer.tx->key.equals(km(9).key.span()));
    CHECK(t.sec->tx_epoch() == 2);
    // A retransmitted switch: acknowledged again with the same first sequence, not switched again.
    t.peer.tx_seq = 500;
    a = t.send(switch_msg(4, 2, 777), 2);
    REQUIRE(a);
    CHECK(a->type == MsgType::rekey_switch_ack);
    CHECK(a->first_seq == std::vector<std::uint64_t>{101});
    CHECK(t.peer.switches == 1);
    // A switch to the abandoned epoch 1: refused as stale.
    a = t.send(switch_msg(5, 1), 2);
    REQUIRE(a);
    CHECK(a->type == MsgType::error);
    CHECK(a->error_code == Status::stale);
    // The next key is promoted kRetireLinger after the switch point was announced.
    t.advance(limits::kRetireLinger - 1s);
    CHECK(t.peer.promotes == 0);
    t.advance(2s);
    CHECK(t.peer.promotes == 1);
    CHECK(!t.peer.next_rx);
    // Old control keys (epoch 0 and the abandoned 1) go after the timeout.
    t.advance(limits::kRetireTimeout);
    CHECK(t.sec->rx_epochs() == 1);
}

TEST_CASE("rekey, stepped: a pending next key the primary did use is promoted at the next request") {
    Stepped t;
    REQUIRE(t.send(request(1, 1))->status == Status::ok);
    // The primary switched (its data arrived under the new key) but its switch was lost and
    // it gave up: the next request finds the key in use and keeps it.
    t.peer.seen = true;
    REQUIRE(t.send(request(2, 2))->status == Status::ok);
    CHECK(t.peer.promotes == 1);
    CHECK(t.peer.drops == 0);
    // ... and a seen key with no announcement is promoted kRetireLinger after the tick saw it.
    for (int i = 0; i < 5; ++i) t.advance(1s);
    CHECK(t.peer.promotes == 2);
}

TEST_CASE("rekey, stepped: X25519: the keys are mixed, a bad or missing share is a dh-failed status") {
    Stepped t(true);
    auto eph = dh::Ephemeral::generate();
    REQUIRE(eph);
    Message r = request(1, 1);
    r.dh_share = eph->share();
    auto a = t.send(r);
    REQUIRE(a);
    REQUIRE(a->status == Status::ok);
    REQUIRE(a->dh_share);
    // Our side of the exchange gives the same keys the secondary installed; the delivered ones
    // are not used as they are.
    auto secret = eph->agree(*a->dh_share);
    REQUIRE(secret);
    const KeyMaterial mixed = dh::mix(km(4), secret->span(), 1, dh::Which::data_p2s);
    REQUIRE(t.peer.next_rx);
    CHECK(t.peer.next_rx->key.equals(mixed.key.span()));
    CHECK(t.peer.next_rx->salt.equals(mixed.salt.span()));
    CHECK(!t.peer.next_rx->key.equals(km(4).key.span()));
    // A retransmitted request: the same share again (nothing new installed).
    const auto share1 = *a->dh_share;
    a = t.send(r);
    REQUIRE(a);
    CHECK(a->dh_share == share1);
    CHECK(t.peer.installs == 1);
    // A low-order share (all zero): refused, nothing installed.
    Message bad = request(2, 2);
    bad.dh_share.emplace();
    bad.dh_share->fill(0);
    a = t.send(bad);
    REQUIRE(a);
    CHECK(a->status == Status::dh_failed);
    CHECK(!a->dh_share);
    CHECK(t.peer.installs == 1);
    // No share while rekey_dh is on (the sides disagree): refused the same way.
    a = t.send(request(3, 3));
    REQUIRE(a);
    CHECK(a->status == Status::dh_failed);
    CHECK(t.sec->stats().dh_failures == 2);
    CHECK(t.logs.count(Reason::REKEY_DH_FAILED) == 2);
    // A fresh share per request: a new one for epoch 4 differs from epoch 1's.
    auto eph4 = dh::Ephemeral::generate();
    Message r4 = request(4, 4);
    r4.dh_share = eph4->share();
    a = t.send(r4);
    REQUIRE(a);
    CHECK(a->status == Status::ok);
    CHECK(a->dh_share != share1);
}

TEST_CASE("rekey, stepped: a share sent while rekey_dh is off is refused") {
    Stepped t(false);
    Message r = request(1, 1);
    r.dh_share = dh::Ephemeral::generate()->share();
    auto a = t.send(r);
    REQUIRE(a);
    CHECK(a->status == Status::dh_failed);
    CHECK(t.peer.installs == 0);
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
        {"switch for an epoch never requested", [] { return switch_msg(12, 9); }, MsgType::error,
         Status::unknown_epoch},
        {"lanes other than set up",
         [] {
             Message m = request(14, 3);
             m.lanes = 2;
             return m;
         },
         MsgType::rekey_status, Status::not_allowed},
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

// A cluster member that holds the session only as a replica forwards its control packets to
// the member holding the control session (docs/cluster.md §Forwarded control messages): a
// packet the director gave to both, or that came directly and then again forwarded, reaches
// the channel twice; its replay window must refuse the second.
TEST_CASE("rekey, stepped: a control packet that came directly and again forwarded by a member is processed once") {
    Stepped t;
    cluster::test::Bus bus;
    struct Holder final : cluster::ReplicaSink {
        Session* s = nullptr;
        void on_session(const cluster::SessionRecord&) override {}
        void on_role(std::uint8_t, cluster::Role) override {}
        void on_members(std::span<const cluster::Member>) override {}
        bool on_control(std::uint32_t remote, std::span<const std::uint8_t> b) override {
            if (remote != 7 || !s) return false;
            s->on_control_packet(b);
            return true;
        }
    } holder, replica;   // the replica holds no control session (its s stays null)
    holder.s = t.sec.get();
    const std::vector<std::uint8_t> ck(32, 0x5a);
    const cluster::SealKey key(ck);
    cluster::test::Endpoint e1(bus, 0x101), e2(bus, 0x202);
    cluster::EngineConfig c1, c2;
    c1.member = 1, c1.role = cluster::Role::primary, c1.counter_start = 1000;
    c2.member = 2, c2.counter_start = 2000;
    cluster::Engine m1(c1, key, e1, holder, [] { return std::uint64_t(1000); });
    cluster::Engine m2(c2, key, e2, replica, [] { return std::uint64_t(1000); });
    e1.engine = &m1;
    e2.engine = &m2;
    bus.join(e1);
    bus.join(e2);
    cluster::SessionRecord rec;
    rec.remote_id = 7;
    rec.epoch = 1;
    m1.publish(rec);   // m1 holds remote 7's control session; m2 learns it from the record
    bus.run();

    Message hb;
    hb.type = MsgType::heartbeat;
    hb.msg_id = 50;
    const auto pkt = t.peer.seal(hb);
    t.sec->on_control_packet(pkt);   // directly, on the holder's dataplane
    CHECK(t.peer.out.size() == 1);
    REQUIRE(m2.forward_control(7, pkt));   // and on m2's, forwarded
    bus.run();
    CHECK(m1.counters().control_delivered == 1);
    CHECK(t.sec->stats().replays == 1);
    CHECK(t.peer.out.size() == 1);   // answered once

    hb.msg_id = 51;   // one that reached only m2
    REQUIRE(m2.forward_control(7, t.peer.seal(hb)));
    bus.run();
    CHECK(m1.counters().control_delivered == 2);
    CHECK(t.sec->stats().received == 2);
    CHECK(t.peer.out.size() == 2);
}
