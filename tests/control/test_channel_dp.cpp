// The control channel on two real dataplanes back to back (ring ports, two workers each):
// sessions brought up on static keys (the setup exchange's stand-in), then rekeyed by the
// channel through the dataplane's port (DataplanePort::Link) while LAN traffic flows both ways; every control message
// crosses the wire sealed and encrypted like data. Then the wire goes silent: both sides
// declare the session lost at heartbeat_fail and the dataplane answers LAN traffic towards it
// with ICMP unreachable / TCP RST.
//
//   test --> A.lan  [A: primary, lcores 1,2]  A.wan <==relay==> B.wan  [B: secondary, lcores 3,4]  B.lan --> test
//   sessions and their event loops run on the test thread, on a manual clock; the dataplanes'
//   control threads are driven by the test (ControlThread::pass on the same clock), which hand
//   control_in to the session.
#include "tests/dataplane/bench.hpp"

#include <functional>
#include <map>
#include <set>
#include <thread>

#include "common/slots.hpp"
#include "control/channel/session.hpp"
#include "control/dp_port.hpp"

using namespace p3test;
using namespace std::chrono_literals;
using p3::dp::Drop;
namespace ch = p3::channel;

namespace {

p3::SecretBytes hexb(const char* h) {
    std::vector<std::uint8_t> v;
    for (std::size_t i = 0; h[i] && h[i + 1]; i += 2) v.push_back(static_cast<std::uint8_t>(std::stoul(std::string(h + i, 2), nullptr, 16)));
    return p3::SecretBytes(std::span<const std::uint8_t>(v));
}

// Hands control_in packets to the session of their dataplane session id.
struct ChannelPlane final : p3::control::Plane {
    std::map<std::uint32_t, ch::Session*> by_sid;
    std::uint64_t control_in = 0, other = 0;
    // A stop on purpose, as p3d's Appliance does it (the test sets what it winds down).
    std::function<void()> wind;
    std::function<bool()> is_quiet;
    void wind_down() override {
        if (wind) wind();
    }
    bool quiet() const override { return !is_quiet || is_quiet(); }
    void on_packet(rte_mbuf* m) override {
        const auto& md = p3::dp::meta(m);
        if (md.kind == p3::dp::MsgKind::control_in) {
            ++control_in;
            auto it = by_sid.find(md.session);
            if (it != by_sid.end()) {
                const Bytes b = bytes_of(m);
                it->second->on_control_packet(b);
            }
        } else {
            ++other;
        }
        rte_pktmbuf_free(m);
    }
};

struct End {
    RingPort lan, wan;
    p3::config::Config cfg;
    std::unique_ptr<p3::dp::Dataplane> dp;
    Mac lan_mac{}, wan_mac{};
    ChannelPlane plane;
    std::unique_ptr<p3::control::ControlThread> ctl;   // driven by hand (Rig::relay)
};

p3::config::Remote static_remote(std::uint32_t id, const char* peer_wan, const char* subnet, const char* tx_key,
                                 const char* tx_salt, std::uint32_t tx_id, const char* rx_key, const char* rx_salt,
                                 std::uint32_t rx_id) {
    p3::config::Remote r = remote(id, peer_wan, {subnet});
    p3::config::StaticKeys k;
    k.tx_id = tx_id;
    k.tx_key = hexb(tx_key);
    k.tx_salt = hexb(tx_salt);
    k.rx_id = rx_id;
    k.rx_key = hexb(rx_key);
    k.rx_salt = hexb(rx_salt);
    k.lanes = 2;
    k.persist_sequence = false;   // no state directory in this test
    r.static_keys = std::move(k);
    return r;
}

void start(End& e, const std::string& n, const Side& s, p3::config::Remote&& peer, std::vector<unsigned> lcores,
           const char* local_net, const p3::control::Clock& clock) {
    e.lan = make_port(n + "l", rings(n + "lr", 2), rings(n + "lt", 2));
    e.wan = make_port(n + "w", rings(n + "wr", 2), rings(n + "wt", 2));
    e.cfg = make_config(s, e.lan.port, e.wan.port);
    e.cfg.local.subnets.push_back(*p3::Prefix::parse(local_net));   // hosts behind the LAN gateway
    e.cfg.remotes.push_back(std::move(peer));
    p3::dp::Options o;
    o.name = n;
    o.lcores = std::move(lcores);
    e.dp = std::make_unique<p3::dp::Dataplane>(e.cfg, o);
    REQUIRE(e.dp->init());
    e.ctl = std::make_unique<p3::control::ControlThread>(e.dp->control_port(), &e.plane, clock);
    REQUIRE(e.dp->start());
    e.lan_mac = mac_of(e.lan.port);
    e.wan_mac = mac_of(e.wan.port);
}

std::vector<Bytes> grab(const std::vector<rte_ring*>& rs) {
    std::vector<Bytes> out;
    for (auto* r : rs) {
        void* m;
        while (rte_ring_dequeue(r, &m) == 0) {
            out.push_back(bytes_of(static_cast<rte_mbuf*>(m)));
            rte_pktmbuf_free(static_cast<rte_mbuf*>(m));
        }
    }
    return out;
}

// A best-effort LAN packet (DSCP 0, not-ECT): the outer header copies the inner DSCP/ECN, and the
// control channel's inner header is best-effort too.
Bytes lan_packet(const Mac& to, const char* src, const char* dst, std::size_t payload) {
    Bytes f = ipv4_frame(to, kHostMac, src, dst, 17, payload);
    f[15] = 0;
    f[24] = f[25] = 0;
    put16(f, 24, csum(f.data() + 14, 20));
    return f;
}

struct Rig {
    p3::control::ManualClock clock;
    End a, b;
    p3::control::EventLoop loop_a{clock}, loop_b{clock};
    p3::control::SeededRandom rng_a{1}, rng_b{2};
    struct Keys final : ch::KeySource {
        p3::control::SeededRandom r{77};
        bool fill(std::span<std::uint8_t> out) noexcept override { return r.fill(out); }
    } keys_a, keys_b;
    std::unique_ptr<p3::control::DataplanePort::Link> link_a, link_b;
    std::unique_ptr<ch::Session> primary, secondary;
    bool wire_up = true;
    std::uint64_t wan_frames = 0;
    std::uint64_t lan_to_b = 0, lan_to_a = 0;   // LAN frames out of B's / A's LAN port
    std::vector<Bytes> a_lan_out;               // what came back out of A's LAN (replies)

    bool capture = false;
    std::vector<Bytes> wan_capture;             // every WAN frame A sent, as on the wire

    explicit Rig(p3::config::SessionParams params) {
        test_pool();
        static unsigned seq = 0;
        const std::string n = "chdp" + std::to_string(seq++);
        const char* kab = "000102030405060708090a0b0c0d0e0f";
        const char* kba = "f0e0d0c0b0a090807060504030201000";
        auto ra = static_remote(2, "198.51.100.2", "10.2.0.0/16", kab, "0a0b0c0d", 0x201, kba, "01020304", 0x301);
        auto rb = static_remote(1, "192.0.2.1", "10.1.0.0/16", kba, "01020304", 0x301, kab, "0a0b0c0d", 0x201);
        ra.params.size_hiding = rb.params.size_hiding = params.size_hiding;
        start(a, n + "a", Side{"10.1.0.1/24", "192.0.2.1/24", "10.1.0.254", "192.0.2.254"}, std::move(ra), {1, 2}, "10.1.0.0/16", clock);
        start(b, n + "b", Side{"10.2.0.1/24", "198.51.100.2/24", "10.2.0.254", "198.51.100.254"}, std::move(rb), {3, 4},
              "10.2.0.0/16", clock);
        const std::uint32_t sa = a.dp->session_of(2), sb = b.dp->session_of(1);
        REQUIRE(sa != 0);
        REQUIRE(sb != 0);
        using Ids = p3::control::DataplanePort::LinkIds;
        link_a = std::make_unique<p3::control::DataplanePort::Link>(
            a.dp->control_port(), Ids{p3::SessionId(sa), p3::RemoteId(2), 0x301, 0x201, b.dp->tx_lanes(), a.dp->tx_lanes()},
            params.size_hiding);
        link_b = std::make_unique<p3::control::DataplanePort::Link>(
            b.dp->control_port(), Ids{p3::SessionId(sb), p3::RemoteId(1), 0x201, 0x301, a.dp->tx_lanes(), b.dp->tx_lanes()},
            params.size_hiding);
        ch::SessionConfig ca, cb;
        ca.role = p3::config::Role::primary;
        ca.name = "remote 2";
        ca.addrs = {*p3::IpAddr::parse("192.0.2.1"), *p3::IpAddr::parse("198.51.100.2"), 5653};
        ca.params = params;
        cb.role = p3::config::Role::secondary;
        cb.name = "primary";
        cb.addrs = {*p3::IpAddr::parse("198.51.100.2"), *p3::IpAddr::parse("192.0.2.1"), 5653};
        cb.params = params;
        primary = std::make_unique<ch::Session>(loop_a, ca, *link_a, *link_a, rng_a, keys_a);
        secondary = std::make_unique<ch::Session>(loop_b, cb, *link_b, *link_b, rng_b, keys_b);
        a.plane.by_sid[sa] = primary.get();
        b.plane.by_sid[sb] = secondary.get();
        // Control keys of epoch 0 (what the setup exchange would have derived).
        auto ck = [](std::uint8_t s) {
            std::vector<std::uint8_t> v(20);
            for (std::size_t i = 0; i < v.size(); ++i) v[i] = static_cast<std::uint8_t>(s + i);
            return ch::KeyMaterial::from_wire(v);
        };
        const std::uint32_t lanes_a = a.dp->tx_lanes(), lanes_b = b.dp->tx_lanes();
        primary->start(ch::InitialKeys{0x301, 0x201, ck(1), ck(2), lanes_a, lanes_b});
        secondary->start(ch::InitialKeys{0x201, 0x301, ck(2), ck(1), lanes_b, lanes_a});
    }
    ~Rig() {
        // Sessions first: they call into the dataplanes.
        primary.reset();
        secondary.reset();
        stop_end(a);
        stop_end(b);
    }

    // Moves WAN frames across (unless the wire is cut), drains both control rings, collects
    // LAN output. Returns frames moved.
    std::size_t relay() {
        std::size_t n = 0;
        for (auto [from, to] : {std::pair{&a, &b}, std::pair{&b, &a}}) {
            unsigned ring = 0;
            for (auto& f : grab(from->wan.tx)) {
                ++n;
                if (capture && from == &a) wan_capture.push_back(f);
                if (!wire_up) continue;
                std::memcpy(f.data(), to->wan_mac.b, 6);
                inject(to->wan.rx[ring++ % to->wan.rx.size()], f);
                ++wan_frames;
            }
        }
        a.ctl->pass(clock.now());
        b.ctl->pass(clock.now());
        for (auto& f : grab(b.lan.tx)) {
            (void)f;
            ++lan_to_b, ++n;
        }
        for (auto& f : grab(a.lan.tx)) {
            a_lan_out.push_back(std::move(f));
            ++lan_to_a, ++n;
        }
        return n;
    }
    // Relays until the LAN counters reach the targets and nothing moved for 1 ms (or 500 ms).
    void settle(std::uint64_t want_b, std::uint64_t want_a) {
        auto last = std::chrono::steady_clock::now();
        const auto start = last;
        for (;;) {
            if (relay()) last = std::chrono::steady_clock::now();
            const auto now = std::chrono::steady_clock::now();
            if (lan_to_b >= want_b && lan_to_a >= want_a && now - last > 1ms) return;
            if (now - start > 500ms) return;
            std::this_thread::sleep_for(50us);
        }
    }
    // One step of simulated time: timers of both control threads, one LAN packet each way.
    std::uint64_t sent_ab = 0, sent_ba = 0;
    std::size_t payload = 64;                   // UDP payload of the LAN packets
    void step(p3::control::Duration d, bool traffic = true) {
        clock.advance(d);
        loop_a.run_due();
        loop_b.run_due();
        if (traffic) {
            inject(a.lan.rx[0], lan_packet(a.lan_mac, "10.1.9.5", "10.2.9.5", payload));
            inject(b.lan.rx[0], lan_packet(b.lan_mac, "10.2.9.5", "10.1.9.5", payload));
            ++sent_ab, ++sent_ba;
        }
        settle(sent_ab, sent_ba);
    }
};

}  // namespace

TEST_CASE("channel on the dataplane: 100 rekeys through real slots under traffic both ways, nothing lost",
          "[channel-dp]") {
    p3::config::SessionParams p;
    p.rekey_wait = 2;
    p.heartbeat_time = 15;
    p.heartbeat_fail = 120;
    p.array_size = 64;
    p.data_array_time = 60;
    p.control_array_time = 50;
    Rig r(p);
    for (int i = 0; i < 20000 && r.primary->stats().rekeys_done < 100; ++i) r.step(100ms);
    r.step(100ms);
    CHECK(r.primary->stats().rekeys_done >= 100);
    CHECK(r.secondary->stats().rekeys_done == r.primary->stats().rekeys_done);
    CHECK(r.primary->tx_epoch() == r.secondary->tx_epoch());
    CHECK(r.primary->stats().rekey_attempts_failed == 0);
    CHECK(r.primary->stats().arrays_delivered >= 4);
    // Every LAN packet came out of the far LAN; no tag, replay or unknown-ID drop anywhere.
    CHECK(r.lan_to_b == r.sent_ab);
    CHECK(r.lan_to_a == r.sent_ba);
    for (End* e : {&r.a, &r.b}) {
        CHECK(e->dp->drops(Drop::P3_AUTH) == 0);
        CHECK(e->dp->drops(Drop::P3_REPLAY) == 0);
        CHECK(e->dp->drops(Drop::P3_UNKNOWN_ID) == 0);
        CHECK(e->dp->drops(Drop::NO_TX_SLOT) == 0);
        CHECK(e->dp->drops(Drop::SESSION_DOWN) == 0);
        CHECK(e->dp->drops(Drop::CONTROL_RING_FULL) == 0);
    }
    // The control messages crossed as encrypted data and came up the control ring.
    CHECK(r.a.plane.control_in == r.primary->stats().received + r.primary->stats().replays +
                                      r.primary->stats().frame_errors + r.primary->stats().unknown_epoch +
                                      r.primary->stats().auth_failures);
    CHECK(r.primary->stats().received >= 2 * r.primary->stats().rekeys_done);  // status + switch ack each
    CHECK(r.primary->stats().auth_failures + r.secondary->stats().auth_failures == 0);
    // The lanes never changed (the two static inbound slots, no slot freed); the old keys
    // were wiped as the new ones took over (inbound and outbound, two lanes each way).
    for (End* e : {&r.a, &r.b}) {
        CHECK(e->dp->slots().stats().rx_published == 2);
        CHECK(e->dp->slots().stats().freed == 0);
        CHECK(e->dp->slots().stats().keys_freed > 150 * 2);
    }
    CHECK(r.primary->rx_epochs() <= 3);
    CHECK(r.primary->stats().keys_retired >= 98);
}

TEST_CASE("channel on the dataplane: a silent wire loses the session; LAN traffic to it is refused",
          "[channel-dp]") {
    p3::config::SessionParams p;
    p.rekey_wait = 3600;
    p.heartbeat_time = 5;
    p.heartbeat_fail = 20;
    p.array_size = 16;
    Rig r(p);
    for (int i = 0; i < 20; ++i) r.step(1s);
    REQUIRE(r.primary->state() == ch::SessionState::up);
    r.wire_up = false;
    int steps = 0;
    while (r.primary->state() == ch::SessionState::up && steps < 40) {
        r.step(1s, false);
        ++steps;
    }
    CHECK(r.primary->state() == ch::SessionState::lost);
    CHECK(steps >= 20 - 1);
    CHECK(steps <= 20 + 5 + 1);
    CHECK(r.a.dp->sessions().state(r.a.dp->session_of(2)) == p3::dp::SessionState::down);
    // A UDP packet towards the lost session: ICMP destination unreachable comes back.
    r.a_lan_out.clear();
    inject(r.a.lan.rx[0], ipv4_frame(r.a.lan_mac, kHostMac, "10.1.9.5", "10.2.9.5", 17, 64));
    r.settle(0, r.lan_to_a + 1);   // lan_to_a counts from the start: wait for one more
    REQUIRE(r.a_lan_out.size() == 1);
    const Bytes& f = r.a_lan_out[0];
    REQUIRE(f.size() >= 14 + 20 + 8);
    CHECK(f[14 + 9] == 1);        // ICMP
    CHECK(f[14 + 20] == 3);       // destination unreachable
    CHECK(r.a.dp->drops(Drop::SESSION_DOWN) >= 1);
}

TEST_CASE("channel on the dataplane: with size hiding a WAN capture during rekeys shows only data-like frames",
          "[channel-dp]") {
    p3::config::SessionParams p;
    p.rekey_wait = 3;
    p.heartbeat_time = 2;
    p.heartbeat_fail = 20;
    p.array_size = 64;
    p.data_array_time = 30;
    p.control_array_time = 25;
    p.size_hiding = true;
    Rig r(p);
    // Size hiding's contract (common/sizehide.hpp): the plaintext (inner + 2) is padded to a
    // multiple of 256, so a frame is Ethernet 14 + IPv4 20 + P3 header 16 + 256 k + tag 16.
    auto data_like = [](std::size_t frame) { return frame > 66 && (frame - 66) % 256 == 0; };
    r.capture = true;
    // Rekeys, array deliveries and replacements, heartbeats, with the same LAN mix.
    const std::size_t mix[] = {64, 400, 700, 900, 1200};
    for (int i = 0; i < 600; ++i) {
        r.payload = mix[i % 5];
        r.step(100ms);
    }
    CHECK(r.primary->stats().rekeys_done >= 15);
    CHECK(r.primary->stats().arrays_delivered >= 4);
    CHECK(r.primary->stats().sent > 100);
    CHECK(r.wan_capture.size() == 600 + r.primary->stats().sent);   // data + control, all captured
    const Bytes sample = r.wan_capture.front();
    std::set<std::size_t> seen, data_sizes;
    for (std::size_t payload : mix) data_sizes.insert(66 + (14 + 20 + 8 + payload - 14 + 2 + 255) / 256 * 256);
    for (const Bytes& f : r.wan_capture) {
        seen.insert(f.size());
        // Ethernet + outer IPv4: every field but identification and checksum as on data.
        for (std::size_t i = 0; i < 14 + 20; ++i) {
            if (i == 14 + 2 || i == 14 + 3 || i == 14 + 4 || i == 14 + 5 || i == 14 + 10 || i == 14 + 11) continue;
            if (f[i] != sample[i]) FAIL("outer header byte " << i << " differs");
        }
        CHECK(std::memcmp(f.data() + 34, sample.data() + 34, 4) == 0);   // P3 flags
    }
    for (std::size_t s : seen) {
        INFO("frame size " << s);
        CHECK(data_like(s));
    }
    // The LAN mix alone covers every size the capture shows: nothing stands out.
    for (std::size_t s : seen) CHECK(data_sizes.count(s) == 1);
    CHECK(seen.size() <= data_sizes.size());
    CHECK(r.lan_to_b == r.sent_ab);
    CHECK(r.lan_to_a == r.sent_ba);
}

TEST_CASE("channel on the dataplane: a goodbye ends the session on both sides at once; LAN traffic to it is refused",
          "[channel-dp]") {
    p3::config::SessionParams p;
    p.rekey_wait = 3600;
    p.heartbeat_time = 5;
    p.heartbeat_fail = 20;
    p.array_size = 16;
    Rig r(p);
    std::vector<ch::Event> events_b;
    r.secondary->observer = [&](const ch::Event& e) { events_b.push_back(e); };
    for (int i = 0; i < 20; ++i) r.step(1s);
    REQUIRE(r.primary->state() == ch::SessionState::up);
    REQUIRE(r.secondary->state() == ch::SessionState::up);
    events_b.clear();
    r.primary->shutdown(ch::GoodbyeReason::administrator);
    CHECK(r.primary->state() == ch::SessionState::closing);
    // The goodbye crosses the real dataplanes: the secondary loses the session at once (not
    // after heartbeat_fail); its keys stay kGoodbyeAckFlush longer, so its ack leaves through
    // a worker and the primary closes on it, well before kGoodbyeWait.
    r.step(50ms, false);
    CHECK(r.secondary->state() == ch::SessionState::lost);
    REQUIRE_FALSE(events_b.empty());
    CHECK(events_b[0].kind == ch::Event::Kind::lost);
    CHECK(events_b[0].reason == p3::Reason::PEER_GOODBYE);
    for (int i = 0; i < 2; ++i) r.step(50ms, false);
    CHECK(r.b.dp->sessions().state(r.b.dp->session_of(1)) == p3::dp::SessionState::down);
    CHECK(r.primary->state() == ch::SessionState::closed);
    CHECK(r.primary->stats().received > 0);
    CHECK(r.a.dp->sessions().state(r.a.dp->session_of(2)) == p3::dp::SessionState::down);
    // LAN traffic towards the closed session: ICMP destination unreachable.
    r.a_lan_out.clear();
    inject(r.a.lan.rx[0], ipv4_frame(r.a.lan_mac, kHostMac, "10.1.9.5", "10.2.9.5", 17, 64));
    r.settle(0, r.lan_to_a + 1);
    REQUIRE(r.a_lan_out.size() == 1);
    CHECK(r.a_lan_out[0][14 + 9] == 1);
    CHECK(r.a_lan_out[0][14 + 20] == 3);
}

TEST_CASE("channel on the dataplane: a stop on purpose says goodbye through the running workers, then stops them",
          "[channel-dp]") {
    p3::config::SessionParams p;
    p.rekey_wait = 3600;
    p.heartbeat_time = 5;
    p.heartbeat_fail = 20;
    p.array_size = 16;
    Rig r(p);
    for (int i = 0; i < 20; ++i) r.step(1s);
    REQUIRE(r.primary->state() == ch::SessionState::up);
    r.a.plane.wind = [&] { r.primary->shutdown(ch::GoodbyeReason::stopping); };
    r.a.plane.is_quiet = [&] { return r.primary->state() != ch::SessionState::closing; };
    int stopped = 0;
    r.a.ctl->set_on_stopped([&] { ++stopped; });

    SECTION("answered: the workers stop on the ack, long before the grace") {
        r.a.ctl->request_stop();
        r.step(10ms, false);   // the pass that starts the wind-down sends the goodbye
        CHECK(r.a.ctl->winding_down());
        for (int i = 0; i < 4 && !stopped; ++i) r.step(20ms, false);
        CHECK(r.secondary->state() == ch::SessionState::lost);
        CHECK(r.primary->state() == ch::SessionState::closed);
        CHECK(stopped == 1);
        CHECK(r.a.ctl->wound_down());
        r.step(p3::control::kStopGrace, false);
        CHECK(stopped == 1);   // once
    }
    SECTION("unanswered (the wire cut): the goodbye's 300 ms wait, within the grace") {
        r.wire_up = false;
        r.a.ctl->request_stop();
        r.step(1ms, false);    // the wind-down begins: the goodbye goes out (and is lost)
        r.step(250ms, false);
        CHECK(r.primary->state() == ch::SessionState::closing);
        CHECK(stopped == 0);
        r.step(100ms, false);
        CHECK(r.primary->state() == ch::SessionState::closed);
        CHECK(stopped == 1);
    }
    SECTION("a plane that never gets quiet: the workers stop at kStopGrace anyway") {
        r.a.plane.is_quiet = [] { return false; };
        r.a.ctl->request_stop();
        r.step(1ms, false);    // the wind-down begins
        r.step(p3::control::kStopGrace - 50ms, false);
        CHECK(stopped == 0);
        r.step(100ms, false);
        CHECK(stopped == 1);
    }
}
