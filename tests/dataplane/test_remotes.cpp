// Run-time configuration changes on the dataplane (ControlPort::add_remote, set_subnets,
// remove_remote) while workers forward traffic, and the per-session drop counters an
// administrator reads (rx_old_key, rx_policy, tx_down; drops by name).
//
// The tunnel rig of test_tunnel.cpp (A and B back to back, static keys, the test is the wire and
// both control threads). A third remote, C (remote 3, subnets 10.3/16 ...), is added to A, changed
// and removed while a generator thread keeps sending A -> B through session 2: every one of
// those packets must arrive. C has no peer: traffic routed to it is answered (session_down),
// traffic to a prefix with no route is no_route, so the two drop counters tell which prefixes
// were routed at any time.
#include <atomic>
#include <thread>

#include "tests/dataplane/tunnel_rig.hpp"

using namespace p3test;
using namespace p3test::tunnel;
using p3::dp::Drop;

namespace {

p3::Prefix pfx(const char* s) { return *p3::Prefix::parse(s); }
std::uint32_t look4(End& e, const char* a) { return e.dp->routes().lookup4(p3::IpAddr::parse(a)->v4_host()); }
std::uint32_t look6(End& e, const char* a) { return e.dp->routes().lookup6(p3::IpAddr::parse(a)->bytes.data()); }

// Frames into a ring from a thread that is not the test's (no Catch2 assertion there).
bool put(rte_ring* r, const Bytes& f) {
    rte_mbuf* m = rte_pktmbuf_alloc(test_pool());
    if (!m) return false;
    std::memcpy(rte_pktmbuf_append(m, static_cast<std::uint16_t>(f.size())), f.data(), f.size());
    if (rte_ring_enqueue(r, m) == 0) return true;
    rte_pktmbuf_free(m);
    return false;
}

// Sends A -> B (10.1.5.x -> 10.2.5.9, session 2) every ~50 us on A's LAN queue 0 until stopped;
// keeps what B must deliver.
struct Flow {
    Tunnel& t;
    std::atomic<bool> run{true};
    std::vector<Bytes> want;
    std::thread th;
    explicit Flow(Tunnel& tt) : t(tt) {
        th = std::thread([this] {
            for (unsigned k = 0; run.load(); ++k) {
                const std::string src = "10.1.5." + std::to_string(1 + k % 200);
                Bytes f = packet(t.a.lan_mac, false, src.c_str(), "10.2.5.9", 60 + k % 400, static_cast<std::uint8_t>(k));
                while (run.load() && !put(t.a.lan.rx[0], f)) std::this_thread::sleep_for(std::chrono::microseconds(200));
                want.push_back(expected(f, t.b.lan_mac));
                std::this_thread::sleep_for(std::chrono::microseconds(50));
            }
        });
    }
    void stop() {
        run.store(false);
        if (th.joinable()) th.join();
    }
    ~Flow() { stop(); }
};

// The wire and both control threads for `ms`, collecting what B's LAN sends and throwing away
// what A's LAN sends (answers to the probes).
void pump(Tunnel& t, std::vector<Bytes>& got, int ms) {
    const auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
    do {
        t.relay();
        for (auto& f : grab(t.b.lan.tx)) got.push_back(std::move(f.bytes));
        grab(t.a.lan.tx);
        std::this_thread::sleep_for(std::chrono::microseconds(200));
    } while (std::chrono::steady_clock::now() < end);
}

// One packet from A's LAN to `dst` (queue 1): which of no_route / session_down it ended in.
enum class Fate { no_route, answered, unknown };
Fate probe(Tunnel& t, std::vector<Bytes>& got, const char* dst) {
    const auto nr = t.a.dp->drops(Drop::NO_ROUTE), sd = t.a.dp->drops(Drop::SESSION_DOWN);
    inject(t.a.lan.rx[1], packet(t.a.lan_mac, false, "10.1.5.200", dst, 80, 0xee));
    for (int i = 0; i < 100; ++i) {
        pump(t, got, 2);
        if (t.a.dp->drops(Drop::NO_ROUTE) != nr) return Fate::no_route;
        if (t.a.dp->drops(Drop::SESSION_DOWN) != sd) return Fate::answered;
    }
    return Fate::unknown;
}

std::uint64_t named(const std::vector<std::pair<std::string, std::uint64_t>>& d, const char* name) {
    for (const auto& [n, v] : d)
        if (n == name) return v;
    return 0;
}

}  // namespace

TEST_CASE("a remote added, its subnets changed and removed while traffic flows: only its routes change",
          "[remotes][rcu]") {
    Tunnel t("rl", false, false);
    auto& port = t.a.dp->control_port();
    std::vector<Bytes> got;
    Flow flow(t);
    pump(t, got, 20);

    // Before: 10.3.0.0/16 is nobody's.
    CHECK(probe(t, got, "10.3.5.9") == Fate::no_route);
    auto c = remote(3, "192.0.2.77", {"10.3.0.0/16", "10.4.0.0/16", "fd03::/16"});
    c.groups = {"branch"};
    const p3::SessionId sid = port.add_remote(c);
    REQUIRE(sid != p3::SessionId{});
    CHECK(sid.raw() == 3);   // the remote's id, free
    CHECK(port.session_of(p3::RemoteId(3)) == sid);
    CHECK(port.state(sid) == p3::dp::SessionState::down);
    CHECK(port.add_remote(c) == p3::SessionId{});   // installed already
    // Routed now (to a session without keys: answered, counted on it).
    CHECK(probe(t, got, "10.3.5.9") == Fate::answered);
    CHECK(probe(t, got, "10.4.5.9") == Fate::answered);
    CHECK(look6(t.a, "fd03::9") == sid.raw());
    CHECK(t.a.dp->session_totals(sid.raw()).tx_down == 2);
    // The change was published at the next pass; its totals are republished once a second.
    t.now_ms += p3::dp::ControlPort::kSessionsEveryMs;
    control_pass(*t.a.ctl, t.now_ms);
    const auto* v = port.sessions_view()->by_remote(p3::RemoteId(3));
    REQUIRE(v != nullptr);
    CHECK(v->subnets.size() == 3);
    CHECK(v->groups == std::vector<std::string>{"branch"});
    CHECK(v->totals.tx_down == 2);
    CHECK(port.sessions_view()->routes4 == 3);   // 10.2/16 (B), 10.3/16, 10.4/16
    CHECK(port.sessions_view()->routes6 == 2);

    // Subnets changed over and over while packets to the unchanged 10.3/16 flow from another
    // thread: each of them is routed (answered), none meets a gap (no_route).
    const auto nr0 = t.a.dp->drops(Drop::NO_ROUTE), sd0 = t.a.dp->drops(Drop::SESSION_DOWN);
    std::atomic<bool> go{true};
    std::atomic<unsigned> sent{0};
    std::thread steady([&] {
        while (go.load()) {
            if (put(t.a.lan.rx[1], packet(t.a.lan_mac, false, "10.1.5.201", "10.3.7.7", 80, 1))) ++sent;
            std::this_thread::sleep_for(std::chrono::microseconds(100));
        }
    });
    const std::vector<p3::Prefix> one = {pfx("10.3.0.0/16"), pfx("10.4.0.0/16"), pfx("fd03::/16")};
    const std::vector<p3::Prefix> two = {pfx("10.3.0.0/16"), pfx("10.5.0.0/16"), pfx("fd05::/16"), pfx("fd03::/16")};
    for (int i = 0; i < 20; ++i) {
        CHECK(port.set_subnets(sid, (i % 2) ? one : two));
        pump(t, got, 3);
    }
    go.store(false);
    steady.join();
    pump(t, got, 30);
    CHECK(t.a.dp->drops(Drop::NO_ROUTE) == nr0);
    CHECK(t.a.dp->drops(Drop::SESSION_DOWN) - sd0 == sent.load());
    CHECK(sent.load() > 0);
    // The last one set was `one`; now to the final set: 10.4/16 and fd03::/16 go, 10.5/16 and
    // fd05::/16 come, 10.3/16 stays.
    const std::vector<p3::Prefix> last = {pfx("10.3.0.0/16"), pfx("10.5.0.0/16"), pfx("fd05::/16")};
    REQUIRE(port.set_subnets(sid, last));
    CHECK(probe(t, got, "10.5.1.1") == Fate::answered);
    CHECK(probe(t, got, "10.4.1.1") == Fate::no_route);
    CHECK(probe(t, got, "10.3.1.1") == Fate::answered);
    CHECK(look6(t.a, "fd05::1") == sid.raw());
    CHECK(look6(t.a, "fd03::1") == 0);
    // Another session's subnet is refused, and nothing changes.
    const std::vector<p3::Prefix> taken = {pfx("10.3.0.0/16"), pfx("10.2.0.0/16")};
    CHECK_FALSE(port.set_subnets(sid, taken));
    CHECK(look4(t.a, "10.2.5.9") == port.session_of(p3::RemoteId(2)).raw());
    CHECK(look4(t.a, "10.3.5.9") == sid.raw());
    port.set_groups(sid, {"branch", "west"});
    control_pass(*t.a.ctl, t.now_ms);
    v = port.sessions_view()->by_remote(p3::RemoteId(3));
    REQUIRE(v != nullptr);
    CHECK(v->subnets == last);
    CHECK(v->groups == std::vector<std::string>{"branch", "west"});
    CHECK(port.sessions_view()->routes4 == 3);
    CHECK(port.sessions_view()->routes6 == 2);

    // Removed: its prefixes are nobody's (no_route), its id is free, the view forgets it.
    REQUIRE(port.remove_remote(p3::RemoteId(3)));
    CHECK(probe(t, got, "10.3.5.9") == Fate::no_route);
    CHECK(probe(t, got, "10.5.5.9") == Fate::no_route);
    CHECK(look6(t.a, "fd05::1") == 0);
    CHECK(port.session_of(p3::RemoteId(3)) == p3::SessionId{});
    CHECK(t.a.dp->session_totals(sid.raw()).tx_down == 0);   // zeroed for the next remote
    CHECK_FALSE(port.remove_remote(p3::RemoteId(3)));
    CHECK_FALSE(port.remove_remote(p3::RemoteId(99)));
    control_pass(*t.a.ctl, t.now_ms);
    CHECK(port.sessions_view()->by_remote(p3::RemoteId(3)) == nullptr);
    CHECK(port.sessions_view()->routes4 == 1);
    CHECK(port.sessions_view()->routes6 == 1);

    // Session 2 lost nothing throughout.
    pump(t, got, 20);
    flow.stop();
    const std::size_t want = flow.want.size();
    for (int i = 0; i < 200 && got.size() < want; ++i) pump(t, got, 5);
    INFO("A -> B packets sent: " << want);
    CHECK(want > 100);
    check_same(got, flow.want);
    const auto s2 = t.a.dp->session_totals(port.session_of(p3::RemoteId(2)).raw());
    CHECK(s2.tx_pkts == want);
    CHECK(s2.tx_dropped + s2.tx_down == 0);
    // Drops by name: only what the probes caused.
    const auto d = port.drops();
    CHECK(named(d, "no_route") == t.a.dp->drops(Drop::NO_ROUTE));
    CHECK(named(d, "session_down") == t.a.dp->drops(Drop::SESSION_DOWN));
    CHECK(d.size() == 2);
    for (const auto& [n, x] : d) CHECK(x > 0);
}

TEST_CASE("a static-key remote removed and added again at run time comes up and carries traffic both ways",
          "[remotes]") {
    Tunnel t("rs", false, false);
    auto& pa = t.a.dp->control_port();
    auto& pb = t.b.dp->control_port();
    // The remotes as the rig's configurations have them (inner and outer IPv4, AES-128, two
    // lanes); added again, they start at sequence 1 on fresh windows.
    auto ra = [] { return peer_remote(2, kB4, {"10.2.0.0/16", "fd02::/16"}, kAtoB128, kBtoA128, false, 2); };
    auto rb = [] { return peer_remote(1, kA4, {"10.1.0.0/16", "fd01::/16"}, kBtoA128, kAtoB128, false, 2); };
    REQUIRE(pa.remove_remote(p3::RemoteId(2)));
    REQUIRE(pb.remove_remote(p3::RemoteId(1)));
    inject(t.a.lan.rx[0], packet(t.a.lan_mac, false, "10.1.5.7", "10.2.5.9", 100, 1));
    CHECK(t.deliver(t.b, 1, 100).empty());
    CHECK(t.a.dp->drops(Drop::NO_ROUTE) == 1);
    // Added back: the same P3 IDs are free again (the old slots were reclaimed).
    const p3::SessionId sa = pa.add_remote(ra()), sb = pb.add_remote(rb());
    REQUIRE(sa != p3::SessionId{});
    REQUIRE(sb != p3::SessionId{});
    CHECK(pa.state(sa) == p3::dp::SessionState::up);
    CHECK(pb.state(sb) == p3::dp::SessionState::up);
    for (int dir = 0; dir < 2; ++dir) {
        End& from = dir == 0 ? t.a : t.b;
        End& to = dir == 0 ? t.b : t.a;
        std::vector<Bytes> want;
        for (unsigned k = 0; k < 10; ++k) {
            Bytes f = packet(from.lan_mac, false, dir == 0 ? "10.1.5.7" : "10.2.5.9", dir == 0 ? "10.2.5.9" : "10.1.5.7",
                             100 + k, static_cast<std::uint8_t>(k));
            inject(from.lan.rx[k % 2], f);
            want.push_back(expected(f, to.lan_mac));
        }
        check_same(t.deliver(to, want.size()), want);
    }
    CHECK(t.a.dp->session_totals(sa.raw()).tx_pkts == 10);
    CHECK(t.a.dp->session_totals(sa.raw()).rx_pkts == 10);
    // A static-key remote whose P3 ID is in use is refused and leaves nothing behind.
    auto clash = ra();
    clash.id = 5;
    clash.subnets = {pfx("10.6.0.0/16")};
    CHECK(pa.add_remote(clash) == p3::SessionId{});
    CHECK(pa.session_of(p3::RemoteId(5)) == p3::SessionId{});
    CHECK(look4(t.a, "10.6.1.1") == 0);
}

TEST_CASE("per-session drops: down, policy and old key counted on the session and by name", "[remotes][counters]") {
    Tunnel t("rc", false, false);
    auto& pa = t.a.dp->control_port();
    auto& pb = t.b.dp->control_port();
    const std::uint32_t sid_a = t.a.dp->session_of(2), sid_b = t.b.dp->session_of(1);

    // Policy: an inner source B does not route to A's session (B narrows A's subnets to
    // 10.1.5.0/24), an inner destination B does not protect (A routes 10.9.0.0/24 into the
    // tunnel for the test).
    const std::vector<p3::Prefix> narrow = {pfx("10.1.5.0/24")};
    REQUIRE(pb.set_subnets(p3::SessionId(sid_b), narrow));
    REQUIRE(t.a.dp->routes().add(pfx("10.9.0.0/24"), sid_a));
    inject(t.a.lan.rx[0], packet(t.a.lan_mac, false, "10.1.9.7", "10.2.5.9", 80, 1));   // source not A's
    inject(t.a.lan.rx[1], packet(t.a.lan_mac, false, "10.1.5.7", "10.9.0.5", 80, 2));   // destination not B's
    inject(t.a.lan.rx[0], packet(t.a.lan_mac, false, "10.1.5.7", "10.2.5.9", 80, 3));   // fine
    CHECK(t.deliver(t.b, 1).size() == 1);
    std::vector<Bytes> got;
    for (int i = 0; i < 200 && t.b.dp->session_totals(sid_b).rx_policy < 2; ++i) pump(t, got, 2);
    auto tb = t.b.dp->session_totals(sid_b);
    CHECK(tb.rx_policy == 2);
    CHECK(tb.rx_dropped == 0);
    CHECK(tb.rx_pkts == 1);
    auto db = pb.drops();
    CHECK(named(db, "p3_inner_src") == 1);
    CHECK(named(db, "p3_inner_dst") == 1);

    // Down: A's keys cleared; LAN traffic to B is answered and counted on the session.
    pa.clear_keys(p3::SessionId(sid_a));
    for (unsigned k = 0; k < 3; ++k) inject(t.a.lan.rx[k % 2], packet(t.a.lan_mac, false, "10.1.5.7", "10.2.5.9", 80, 9));
    for (int i = 0; i < 200 && t.a.dp->session_totals(sid_a).tx_down < 3; ++i) pump(t, got, 2);
    const auto ta = t.a.dp->session_totals(sid_a);
    CHECK(ta.tx_down == 3);
    CHECK(ta.tx_dropped == 0);
    CHECK(named(pa.drops(), "session_down") == 3);
    t.now_ms += p3::dp::ControlPort::kSessionsEveryMs;   // the totals are republished once a second
    control_pass(*t.a.ctl, t.now_ms);
    CHECK(pa.sessions_view()->by_remote(p3::RemoteId(2))->totals.tx_down == 3);
}
