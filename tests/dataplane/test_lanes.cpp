// Lanes across workers (docs/dataplane.md §Lanes): inbound, lane n of a session is opened by
// its owner among the WAN-polling workers, whichever queue its packets reach (the others hand
// them over on the owner's ring); outbound, a session's lanes setting is what goes on the
// wire, fewer lanes than sending workers shared without a sequence sent twice, more turned
// over by each worker. Two dataplanes on ring ports (tunnel_rig.hpp): B's WAN queue 0 is
// polled by worker 1, queue 1 by worker 0, so B's lane 0 is worker 1's and lane 1 worker 0's
// (owners in the order of their WAN queues).
#include <map>
#include <set>
#include <thread>

#include "tests/dataplane/tunnel_rig.hpp"
#include "common/crypto.hpp"
#include "common/lanes.hpp"
#include "dataplane/fastpath.hpp"
#include "dataplane/worker.hpp"

using namespace p3test;
using namespace p3test::tunnel;
using p3::dp::Drop;
using p3::dp::LcoreStats;

namespace {

constexpr std::size_t kP3 = 14 + 20;   // the P3 header after the outer IPv4 header

std::uint32_t p3_id(const Bytes& f) { return p3::be::get32(f.data() + kP3 + 4); }
std::uint64_t p3_seq(const Bytes& f) { return p3::be::get64(f.data() + kP3 + 8); }

// n packets into A's LAN over both queues (both workers send), in waves of `wave` so the
// workers see several bursts; what A puts on its WAN, in ring order, is returned as it left.
std::vector<Frame> send_a(Tunnel& t, unsigned n, unsigned wave, std::vector<Bytes>* want = nullptr) {
    std::vector<Frame> out;
    for (unsigned i = 0; i < n; ++i) {
        Bytes f = packet(t.a.lan_mac, false, "10.1.5.7", "10.2.5.9", 60 + i % 200, static_cast<std::uint8_t>(i));
        inject(t.a.lan.rx[i % 2], f);
        if (want) want->push_back(expected(f, t.b.lan_mac));
        if ((i + 1) % wave == 0) {
            auto more = grab(t.a.wan.tx);
            out.insert(out.end(), more.begin(), more.end());
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
        }
    }
    for (int i = 0; i < 500 && out.size() < n; ++i) {
        auto more = grab(t.a.wan.tx);
        out.insert(out.end(), more.begin(), more.end());
        if (out.size() < n) std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    REQUIRE(out.size() == n);
    return out;
}

// The frames into B's WAN queue q (addressed to B), and what B's LAN then gets. In waves of
// 100, well within a handoff ring (256 here), as a link delivers them rather than all at once.
std::vector<Bytes> into_b(Tunnel& t, std::vector<Frame>& frames, unsigned q, std::size_t want) {
    std::vector<Bytes> out;
    for (std::size_t i = 0; i < frames.size(); ++i) {
        std::memcpy(frames[i].bytes.data(), t.b.wan_mac.b, 6);
        inject(t.b.wan.rx[q], frames[i].bytes);
        if (i % 100 == 99) {
            auto got = collect(t.b.lan.tx, 100, 100);
            out.insert(out.end(), got.begin(), got.end());
        }
    }
    auto rest = collect(t.b.lan.tx, want - std::min(want, out.size()));
    out.insert(out.end(), rest.begin(), rest.end());
    CHECK(t.b.dp->drops(Drop::HANDOFF_FULL) == 0);
    return out;
}

std::uint64_t stat(End& e, unsigned w, p3::dp::Counter LcoreStats::*c) { return (e.dp->lcore(w).stats.*c).get(); }

}  // namespace

TEST_CASE("one session's lanes received on one queue are opened by both workers, each packet once", "[tunnel][lanes]") {
    Tunnel t("lh", false, false);
    std::vector<Bytes> want;
    auto frames = send_a(t, 400, 40, &want);
    std::set<std::uint32_t> ids;
    for (const auto& f : frames) ids.insert(p3_id(f.bytes));
    REQUIRE(ids.size() == 2);   // both of A's lanes

    const Bytes again = frames[0].bytes;
    check_same(into_b(t, frames, 1, want.size()), want);   // all on queue 1: worker 0 receives
    // Each lane was opened by its owner: worker 1 got lane 0 through its handoff ring.
    CHECK(stat(t.b, 0, &LcoreStats::decrypted) > 0);
    CHECK(stat(t.b, 1, &LcoreStats::decrypted) > 0);
    CHECK(stat(t.b, 0, &LcoreStats::decrypted) + stat(t.b, 1, &LcoreStats::decrypted) == 400);
    CHECK(stat(t.b, 0, &LcoreStats::handoff_out) > 0);
    CHECK(stat(t.b, 1, &LcoreStats::handoff_in) == stat(t.b, 0, &LcoreStats::handoff_out));
    CHECK(stat(t.b, 1, &LcoreStats::handoff_out) == 0);
    CHECK(t.b.dp->drops(Drop::HANDOFF_FULL) == 0);

    // A replay is refused whichever queue it comes in on.
    for (unsigned q = 0; q < 2; ++q) {
        Bytes f = again;
        std::memcpy(f.data(), t.b.wan_mac.b, 6);
        inject(t.b.wan.rx[q], f);
    }
    CHECK(collect(t.b.lan.tx, 0, 150).empty());
    for (int i = 0; i < 200 && t.b.dp->drops(Drop::P3_REPLAY) < 2; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(2));
    CHECK(t.b.dp->drops(Drop::P3_REPLAY) == 2);
    CHECK(t.b.dp->session_totals(t.b.dp->session_of(1)).rx_pkts == 400);
}

TEST_CASE("lanes = 1 with two sending workers: one P3 ID, no sequence twice, everything arrives", "[tunnel][lanes]") {
    Tunnel t("l1", false, false, false, 1);
    const std::uint32_t sid_a = t.a.dp->session_of(2);
    CHECK(t.a.dp->sessions().get(sid_a).tx_lanes == 1);
    std::vector<Bytes> want;
    auto frames = send_a(t, 600, 64, &want);
    std::set<std::uint64_t> seqs;
    for (const auto& f : frames) {
        CHECK(p3_id(f.bytes) == kAtoB128.id);
        seqs.insert(p3_seq(f.bytes));
    }
    CHECK(seqs.size() == frames.size());   // every sequence once
    CHECK(stat(t.a, 0, &LcoreStats::encrypted) > 0);   // both workers sent on the one lane
    CHECK(stat(t.a, 1, &LcoreStats::encrypted) > 0);
    CHECK(t.a.dp->drops(Drop::NO_TX_SLOT) == 0);
    CHECK(t.a.dp->tx_last_seq(sid_a, 0) == 600);
    // The lane's two writers interleave, so the receiver sees its sequences out of order: within
    // the window, every one is accepted once.
    check_same(into_b(t, frames, 1, want.size()), want);
}

TEST_CASE("lanes = 4 with two sending workers: four P3 IDs, each lane's sequences increasing", "[tunnel][lanes]") {
    Tunnel t("l4", false, false, false, 4);
    const std::uint32_t sid_a = t.a.dp->session_of(2);
    CHECK(t.a.dp->sessions().get(sid_a).tx_lanes == 4);
    std::vector<Bytes> want;
    auto frames = send_a(t, 640, 16, &want);
    std::map<std::uint32_t, std::vector<std::uint64_t>> by_id;
    for (const auto& f : frames) by_id[p3_id(f.bytes)].push_back(p3_seq(f.bytes));
    REQUIRE(by_id.size() == 4);
    for (std::uint32_t l = 0; l < 4; ++l) {
        INFO("lane " << l);
        const auto& s = by_id[kAtoB128.id + l];
        CHECK(!s.empty());
        CHECK(std::adjacent_find(s.begin(), s.end(), [](auto x, auto y) { return y <= x; }) == s.end());
        CHECK(s.size() == t.a.dp->tx_last_seq(sid_a, static_cast<std::uint16_t>(l)));   // from 1, no gap
    }
    check_same(into_b(t, frames, 0, want.size()), want);
}

TEST_CASE("a full handoff ring: the rest is counted as handoff_full and freed", "[tunnel][lanes]") {
    Tunnel t("lf", false, false);
    // Lane 0's frames only (A's worker 0 sends on lane 0), B's workers stopped: the test is
    // worker 0 receiving them, and worker 1, lane 0's owner, never drains its ring until the
    // test says so.
    std::vector<Frame> frames;
    const unsigned n = 400;
    for (unsigned i = 0; i < n; ++i) inject(t.a.lan.rx[0], packet(t.a.lan_mac, false, "10.1.5.7", "10.2.5.9", 80, 3));
    for (int i = 0; i < 500 && frames.size() < n; ++i) {
        auto more = grab(t.a.wan.tx);
        frames.insert(frames.end(), more.begin(), more.end());
        if (frames.size() < n) std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    REQUIRE(frames.size() == n);
    t.b.dp->request_stop();
    t.b.dp->wait();
    const unsigned before = rte_mempool_in_use_count(test_pool());

    p3::dp::Lcore& recv = t.b.dp->lcore_for_test(0);   // receives
    p3::dp::Lcore& owner = t.b.dp->lcore_for_test(1);   // owns lane 0
    REQUIRE(owner.handoff != nullptr);
    const unsigned cap = rte_ring_get_capacity(owner.handoff);
    REQUIRE(cap < n);
    for (unsigned i = 0; i < n; i += 32) {
        rte_mbuf* pkts[32];
        const unsigned k = std::min(32u, n - i);
        for (unsigned j = 0; j < k; ++j) {
            Bytes& f = frames[i + j].bytes;
            std::memcpy(f.data(), t.b.wan_mac.b, 6);
            inject(t.b.wan.rx[1], f);
            void* m = nullptr;
            REQUIRE(rte_ring_dequeue(t.b.wan.rx[1], &m) == 0);
            pkts[j] = static_cast<rte_mbuf*>(m);
        }
        p3::dp::rx_burst(recv, t.b.dp->shared(), p3::dp::Side::wan, pkts, k);
    }
    CHECK(recv.stats.handoff_out.get() == cap);
    CHECK(t.b.dp->drops(Drop::HANDOFF_FULL) == n - cap);
    CHECK(recv.stats.decrypted.get() == 0);
    CHECK(rte_mempool_in_use_count(test_pool()) == before + cap);   // the rest freed

    // The owner drains its ring: every packet it holds is opened and delivered.
    rte_mbuf* pkts[32];
    std::size_t out = 0;
    for (unsigned taken = 1; taken != 0;) {
        taken = p3::dp::handoff_in(owner, t.b.dp->shared(), pkts, 32);
        p3::dp::tx_flush(owner, t.b.dp->shared(), p3::dp::Side::lan);
        out += grab(t.b.lan.tx).size();
    }
    CHECK(owner.stats.handoff_in.get() == cap);
    CHECK(owner.stats.decrypted.get() == cap);
    CHECK(out == cap);
    CHECK(rte_mempool_in_use_count(test_pool()) == before);
}

TEST_CASE("a key switch on a lane both workers share: each packet sealed under the key its sequence says",
          "[tunnel][lanes][rekey-dp]") {
    Tunnel t("lk", false, false, false, 1);
    const std::uint32_t sid_a = t.a.dp->session_of(2);
    const auto k1 = hex(kAtoB128.key), s1 = hex(kAtoB128.salt);
    const auto k2 = hex("00112233445566778899aabbccddeeff"), s2 = hex("5a5b5c5d");
    const std::uint64_t start = t.a.dp->tx_last_seq(sid_a, 0) + 1;
    std::thread feeder([&] {   // both workers keep sealing on the one lane meanwhile
        for (unsigned c = 0; c < 120; ++c) {
            const Bytes f = packet(t.a.lan_mac, false, "10.1.5.7", "10.2.5.9", 60 + c % 200, static_cast<std::uint8_t>(c));
            for (unsigned i = 0; i < 10; ++i) inject(t.a.lan.rx[i % 2], f);
            std::this_thread::sleep_for(std::chrono::microseconds(300));
        }
    });
    for (int i = 0; i < 20000 && t.a.dp->tx_last_seq(sid_a, 0) < start + 200; ++i)
        std::this_thread::sleep_for(std::chrono::microseconds(50));
    std::uint64_t first[1] = {};
    REQUIRE(t.a.dp->switch_tx(sid_a, p3::dp::LaneKeys{k2.span(), s2.span(), 1, false}, first));
    feeder.join();
    std::vector<Frame> all;
    for (int i = 0; i < 2000 && all.size() < 1200; ++i) {
        auto more = grab(t.a.wan.tx);
        all.insert(all.end(), more.begin(), more.end());
        if (all.size() < 1200) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    REQUIRE(all.size() == 1200);
    auto engine = p3::wire::GcmEngine::make();
    auto opens = [&](const Bytes& f, const p3::SecretBytes& k, const p3::SecretBytes& s) {
        const p3::wire::GcmKey key(p3::wire::lane_key_material(k.span(), s.span(), 0));
        Bytes b = f;
        return engine->open(key, b.data() + kP3, b.data() + kP3 + 16, b.size() - kP3 - 32, b.data() + b.size() - 16);
    };
    std::set<std::uint64_t> seqs;
    unsigned wrong = 0, old_n = 0, new_n = 0;
    for (const auto& f : all) {
        const std::uint64_t seq = p3_seq(f.bytes);
        seqs.insert(seq);
        const bool under_old = opens(f.bytes, k1, s1), under_new = opens(f.bytes, k2, s2);
        if (under_old == under_new || under_new != (seq >= first[0])) ++wrong;
        (under_new ? new_n : old_n) += 1;
    }
    CHECK(wrong == 0);
    CHECK(old_n > 0);   // the switch fell inside the stream
    CHECK(new_n > 0);
    CHECK(seqs.size() == 1200);   // every sequence once, none skipped
    CHECK(*seqs.begin() == start);
    CHECK(*seqs.rbegin() == start + 1199);
}

// The race the switch on a shared lane must survive, stepped by hand on a dataplane that is
// not started (this thread runs both workers' code): worker 0 stages a packet under the old key,
// the control thread switches, worker 1 takes the new key and claims it, and only then does
// worker 0 reserve its sequence: it is beyond the switch point, so it must be sealed under the
// new key.
TEST_CASE("a shared lane: a run staged under the old key and reserved after the switch point is sealed under the new key",
          "[lanes][rekey-dp]") {
    test_pool();
    End e;
    e.lan = make_port("lrl", rings("lrlr", 2), rings("lrlt", 2));
    e.wan = make_port("lrw", rings("lrwr", 2), rings("lrwt", 2));
    e.cfg = make_config(Side{"10.1.0.1/24", "192.0.2.1/24", "10.1.0.254", "192.0.2.254"}, e.lan.port, e.wan.port);
    const Net peer{"10.2.0.1/24", "10.2.0.254", "198.51.100.2/24", "198.51.100.254", "198.51.100.2"};
    e.cfg.remotes.push_back(peer_remote(2, peer, {"10.2.0.0/16"}, kAtoB128, kBtoA128, false, 1));
    p3::dp::Options o;
    o.name = "lr";
    o.lcores = {1, 2};
    e.dp = std::make_unique<p3::dp::Dataplane>(e.cfg, o);
    REQUIRE(e.dp->init());
    REQUIRE(e.dp->tx_lanes() == 2);   // both workers send, on the session's one lane
    e.lan_mac = mac_of(e.lan.port);
    const std::uint32_t sid = e.dp->session_of(2);
    p3::dp::Lcore& x = e.dp->lcore_for_test(0);
    p3::dp::Lcore& y = e.dp->lcore_for_test(1);
    const auto& S = e.dp->shared();
    rte_rcu_qsbr* q = e.dp->qsbr();
    for (unsigned r = 0; r < 2; ++r) {
        REQUIRE(rte_rcu_qsbr_thread_register(q, r) == 0);
        rte_rcu_qsbr_thread_online(q, r);
    }
    auto frame = [&](std::uint8_t fill) {
        Bytes f = packet(e.lan_mac, false, "10.1.5.7", "10.2.5.9", 100, fill);
        f[22] -= 1;   // what classification hands on: TTL already decremented
        rte_mbuf* m = rte_pktmbuf_alloc(test_pool());
        REQUIRE(m != nullptr);
        std::memcpy(rte_pktmbuf_append(m, static_cast<std::uint16_t>(f.size())), f.data(), f.size());
        return m;
    };
    p3::dp::OutStage sx, sy;
    p3::dp::outbound_one(x, S, sx, frame(1), sid);   // worker 0: staged under the old key
    const p3::wire::TxKey* old_key = e.dp->slots().tx(sid, 0)->current();
    const auto k2 = hex("00112233445566778899aabbccddeeff"), s2 = hex("5a5b5c5d");
    std::uint64_t first[1] = {};
    bool switched = false;
    std::thread control([&] { switched = e.dp->switch_tx(sid, p3::dp::LaneKeys{k2.span(), s2.span(), 1, false}, first); });
    while (e.dp->slots().tx(sid, 0)->current() == old_key) std::this_thread::yield();
    p3::dp::outbound_one(y, S, sy, frame(2), sid);   // worker 1: the new key, claimed now
    p3::dp::outbound_flush(y, S, sy);
    p3::dp::outbound_flush(x, S, sx);                // worker 0 reserves after the claim
    for (unsigned r = 0; r < 2; ++r) rte_rcu_qsbr_quiescent(q, r);
    control.join();
    REQUIRE(switched);
    auto engine = p3::wire::GcmEngine::make();
    auto opens = [&](const Bytes& f, const p3::SecretBytes& k, const p3::SecretBytes& s) {
        const p3::wire::GcmKey key(p3::wire::lane_key_material(k.span(), s.span(), 0));
        Bytes b = f;
        return engine->open(key, b.data() + kP3, b.data() + kP3 + 16, b.size() - kP3 - 32, b.data() + b.size() - 16);
    };
    const auto k1 = hex(kAtoB128.key), s1 = hex(kAtoB128.salt);
    auto out = grab(e.wan.tx);
    REQUIRE(out.size() == 2);
    for (const auto& f : out) {
        INFO("sequence " << p3_seq(f.bytes) << ", switch point " << first[0]);
        CHECK(p3_seq(f.bytes) >= first[0]);
        CHECK(opens(f.bytes, k2, s2));
        CHECK_FALSE(opens(f.bytes, k1, s1));
    }
    for (unsigned r = 0; r < 2; ++r) {
        rte_rcu_qsbr_thread_offline(q, r);
        rte_rcu_qsbr_thread_unregister(q, r);
    }
    stop_end(e);
}

TEST_CASE("lanes are spread when dataplane.spread_lanes says so, and only while there are fewer P3 remotes than WAN-polling workers", "[lanes]") {
    const p3test::Side side{"10.1.0.1/24", "192.0.2.1/24", "10.1.0.254", "192.0.2.254"};
    auto handoff_rings = [](p3test::Single& s) {
        unsigned n = 0;
        for (unsigned w = 0; w < s.dp->workers(); ++w) n += s.dp->lcore(w).handoff != nullptr;
        return n;
    };
    auto with = [&](const char* name, unsigned remotes, bool spread) {
        std::vector<p3::config::Remote> rs;
        if (remotes > 0) rs.push_back(p3test::remote(2, "198.51.100.2", {"10.2.0.0/16"}));
        if (remotes > 1) rs.push_back(p3test::remote(3, "198.51.100.3", {"10.3.0.0/16"}));
        p3::config::Config c = p3test::make_config(side, 0, 0);
        REQUIRE_FALSE(c.dataplane.spread_lanes);   // the default: opened where received
        p3test::Single s(name, side, std::move(rs), {1, 2}, nullptr, true, {}, spread);
        return handoff_rings(s);
    };
    CHECK(with("ls0", 1, false) == 0);   // the default: each worker opens what it receives
    CHECK(with("ls1", 1, true) == 2);    // one session: its lanes handed to their owners
    CHECK(with("ls2", 2, true) == 0);    // as many sessions as workers: RSS spreads them
}
