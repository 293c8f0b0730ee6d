// Resources under attack: what a flood may take from the dataplane, and what it may not.
//
//   - trusted traffic first: a setup-port flood that fills the path to the control thread
//     never delays or drops an authenticated control message (its own ring, drained first;
//     setup policed per worker);
//   - outer reassembly holds at most its share of the buffers while a flood of fragments that
//     never complete comes from many sources; stale ones expire; whole packets still pass;
//   - the neighbour table: next hops that never answer are evicted, held frames bounded;
//   - a pool run dry is counted and logged (once a second), and the ports keep running.
//
// Two dataplanes back to back with static keys (as test_tunnel.cpp), the test as the wire
// between their WANs and as both control threads (control_pass with a clock of its own):
//
//   hosts 10.1.5.x  [A.lan] A (lcores 1,2) [A.wan] <=test=> [B.wan] B (lcores 3,4) [B.lan]  hosts 10.2.5.x
//                           192.0.2.1/24                    198.51.100.2/24
#include <map>
#include <mutex>
#include <set>
#include <string>

#include "bench.hpp"
#include "common/log.hpp"
#include "dataplane/frag.hpp"
#include "dataplane/worker.hpp"

using namespace p3test;
using p3::dp::CtlClass;
using p3::dp::Drop;
using p3::dp::MsgKind;
using p3::dp::PktMeta;

namespace {

p3::SecretBytes hex(const char* h) {
    std::vector<std::uint8_t> v;
    for (std::size_t i = 0; h[i] && h[i + 1]; i += 2)
        v.push_back(static_cast<std::uint8_t>(std::stoul(std::string(h + i, 2), nullptr, 16)));
    return p3::SecretBytes(std::span<const std::uint8_t>(v));
}

p3::config::Remote keyed(std::uint32_t id, const char* addr, const char* subnet, bool a_side) {
    p3::config::Remote r = remote(id, addr, {subnet});
    p3::config::StaticKeys k;
    const char* kab = "000102030405060708090a0b0c0d0e0f";
    const char* kba = "f0e0d0c0b0a090807060504030201000";
    k.tx_id = a_side ? 0x201 : 0x301;
    k.tx_key = hex(a_side ? kab : kba);
    k.tx_salt = hex(a_side ? "0a0b0c0d" : "01020304");
    k.rx_id = a_side ? 0x301 : 0x201;
    k.rx_key = hex(a_side ? kba : kab);
    k.rx_salt = hex(a_side ? "01020304" : "0a0b0c0d");
    k.lanes = 2;
    k.persist_sequence = false;   // no sequence state written outside the test
    r.static_keys = std::move(k);
    return r;
}

// Every log line, kept (the control thread may log from another thread).
struct LogCapture {
    std::mutex mu;
    std::vector<std::string> lines;
    LogCapture() { p3::log::set_sink(&sink, this); }
    ~LogCapture() { p3::log::set_sink(nullptr, nullptr); }
    static void sink(p3::log::Level, p3::Reason, std::string_view line, void* ctx) {
        auto* self = static_cast<LogCapture*>(ctx);
        std::lock_guard lock(self->mu);
        self->lines.emplace_back(line);
    }
    std::size_t count(const char* code) {
        std::lock_guard lock(mu);
        std::size_t n = 0;
        for (const auto& l : lines) n += l.find(code) != std::string::npos;
        return n;
    }
};

// What reaches B's control plane, in order.
struct Recorder final : p3::control::Plane {
    void on_packet(rte_mbuf* m) override {
        kinds.push_back(p3::dp::meta(m).kind);
        rte_pktmbuf_free(m);
    }
    std::size_t count(MsgKind k) const { return static_cast<std::size_t>(std::count(kinds.begin(), kinds.end(), k)); }
    std::vector<MsgKind> kinds;
};

// Splits the IPv4 packet of a frame into two outer fragments, as a router on the path would.
std::vector<Bytes> fragment2(const Bytes& f) {
    const std::size_t payload = f.size() - 34;
    const std::size_t first = (payload / 2) & ~std::size_t(7);
    std::vector<Bytes> out;
    for (int i = 0; i < 2; ++i) {
        const std::size_t off = i == 0 ? 0 : first, len = i == 0 ? first : payload - first;
        Bytes g(f.begin(), f.begin() + 34);
        g.insert(g.end(), f.begin() + 34 + off, f.begin() + 34 + off + len);
        put16(g, 16, static_cast<std::uint16_t>(20 + len));
        put16(g, 20, static_cast<std::uint16_t>((i == 0 ? 0x2000 : 0) | (off / 8)));
        g[24] = g[25] = 0;
        put16(g, 24, csum(g.data() + 14, 20));
        out.push_back(std::move(g));
    }
    return out;
}

struct Pair {
    Recorder rec;
    Single a, b;
    std::uint64_t now_ms = 0;
    bool fragment = false;   // the wire fragments every A -> B packet in two

    Pair()
        : a("pa", Side{"10.1.0.1/24", "192.0.2.1/24", "10.1.0.254", "192.0.2.254"},
            one(keyed(2, "198.51.100.2", "10.2.0.0/16", true)), {1, 2}, nullptr, false, {"10.1.0.0/16"}),
          b("pb", Side{"10.2.0.1/24", "198.51.100.2/24", "10.2.0.254", "198.51.100.254"},
            one(keyed(1, "192.0.2.1", "10.1.0.0/16", false)), {3, 4}, &rec, false, {"10.2.0.0/16"}) {}

    // One step of the wire (and of A's control thread; B's only when asked).
    std::size_t relay(bool poll_b = true) {
        std::size_t n = 0;
        for (unsigned r = 0; r < a.wan.tx.size(); ++r) {
            void* m;
            while (rte_ring_dequeue(a.wan.tx[r], &m) == 0) {
                Bytes f = bytes_of(static_cast<rte_mbuf*>(m));
                rte_pktmbuf_free(static_cast<rte_mbuf*>(m));
                std::memcpy(f.data(), b.wan_mac.b, 6);
                if (fragment && f.size() > 200)
                    for (const auto& g : fragment2(f)) inject(b.wan.rx[r % 2], g);
                else
                    inject(b.wan.rx[r % 2], f);
                ++n;
            }
        }
        control_pass(*a.ctl, now_ms);
        if (poll_b) control_pass(*b.ctl, now_ms);
        return n;
    }
    // Until every ring on the way is empty: A's LAN RX (A's workers took what was injected), A's
    // WAN TX (relayed), B's WAN RX (B's workers took it). Twice in a row, 5 ms apart: a worker
    // may still hold a burst it dequeued and has not sent, which the second look relays. (Looking
    // at A's output only let a loaded machine end here before A had read its input at all.)
    void settle(bool poll_b = true) {
        auto empty = [&] {
            return rte_ring_count(a.lan.rx[0]) + rte_ring_count(a.lan.rx[1]) + rte_ring_count(a.wan.tx[0]) +
                       rte_ring_count(a.wan.tx[1]) + rte_ring_count(b.wan.rx[0]) + rte_ring_count(b.wan.rx[1]) ==
                   0;
        };
        for (int i = 0, quiet = 0; i < 5000 && quiet < 2; ++i) {
            relay(poll_b);
            quiet = empty() ? quiet + 1 : 0;
            std::this_thread::sleep_for(quiet > 0 ? std::chrono::microseconds(5000) : std::chrono::microseconds(200));
        }
    }
};

// A datagram to B's setup port from 10.x.y.z (anyone on the Internet).
Bytes setup_datagram(const Mac& to, unsigned i) {
    const std::string src = "203.0." + std::to_string((i >> 8) & 0xff) + "." + std::to_string(i & 0xff);
    Bytes f = ipv4_frame(to, kGwMac, src.c_str(), "198.51.100.2", 17, 64);
    put16(f, 36, 5653);
    return f;
}

// An outer fragment that never completes: MF set, 64 bytes, from one of many sources.
Bytes bogus_fragment(const Mac& to, unsigned src, std::uint16_t id) {
    const std::string s = "198.18." + std::to_string((src >> 8) & 0xff) + "." + std::to_string(src & 0xff);
    Bytes f = ipv4_frame(to, kGwMac, s.c_str(), "198.51.100.2", 50, 64, 64, 0x2000);
    put16(f, 18, id);
    f[24] = f[25] = 0;
    put16(f, 24, csum(f.data() + 14, 20));
    return f;
}

unsigned test_pool_in_use() { return 8191 - rte_mempool_avail_count(test_pool()); }

}  // namespace

TEST_CASE("a setup flood fills its own ring: authenticated control messages still go first", "[pressure][rings]") {
    LogCapture log;
    Pair p;
    const std::uint32_t sid_a = p.a.dp->session_of(2);
    // 6000 setup datagrams at B's WAN, more than any ring holds, while B's control thread sleeps.
    constexpr unsigned kFlood = 6000;
    const auto t0 = std::chrono::steady_clock::now();
    for (unsigned i = 0; i < kFlood; ++i) {
        if (i % 2000 == 0) p.settle(false);
        inject(p.b.wan.rx[i % 2], setup_datagram(p.b.wan_mac, i));
    }
    p.settle(false);
    const double flood_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    // Then a control message from A (what the control plane sends: an inner packet WAN to WAN).
    Bytes f = ipv4_frame(Mac{}, Mac{}, "192.0.2.1", "198.51.100.2", 6, 60);
    rte_mbuf* m = rte_pktmbuf_alloc(test_pool());
    REQUIRE(m != nullptr);
    std::memcpy(rte_pktmbuf_append(m, static_cast<std::uint16_t>(f.size() - 14)), f.data() + 14, f.size() - 14);
    p3::dp::meta(m) = PktMeta{MsgKind::tx_inner, p3::dp::Side::wan, 0, sid_a};
    REQUIRE(p.a.dp->send_to_workers(m));
    for (int i = 0; i < 500 && p.b.dp->sum(&p3::dp::LcoreStats::decrypted) == 0; ++i) {
        p.relay(false);
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    REQUIRE(p.b.dp->sum(&p3::dp::LcoreStats::decrypted) == 1);

    // One pass of B's control thread: the control message first, setup within its budget.
    control_pass(*p.b.ctl, p.now_ms);
    REQUIRE_FALSE(p.rec.kinds.empty());
    CHECK(p.rec.kinds.front() == MsgKind::control_in);
    CHECK(p.rec.count(MsgKind::control_in) == 1);
    CHECK(p.rec.count(MsgKind::setup_udp) <= p3::control::kSetupPerPass);
    CHECK(p.b.drops(Drop::RING_FULL_CONTROL) == 0);

    // Every datagram is accounted for: handed over (now or on a later pass), over the
    // workers' rate, or over the ring.
    for (int i = 0; i < 1000 && p.b.dp->control_backlog(CtlClass::setup) != 0; ++i) control_pass(*p.b.ctl, p.now_ms);
    const std::uint64_t policed = p.b.drops(Drop::SETUP_POLICED), full = p.b.drops(Drop::RING_FULL_SETUP);
    CHECK(p.rec.count(MsgKind::setup_udp) + policed + full == kFlood);
    CHECK(policed > 0);
    // Two workers, each at most its burst plus its rate over the time the flood took.
    CHECK(p.rec.count(MsgKind::setup_udp) <= 2 * (p3::dp::kSetupBurst + p3::dp::kSetupRate * (flood_s + 0.1)));

    // Logged from the counters by the control thread, at most once a second.
    for (std::uint64_t t = 0; t <= 3000; t += 100) control_pass(*p.b.ctl, p.now_ms + t);
    CHECK(log.count("P3-W0315") == 1);   // the flood was in the first second only
    CHECK(log.count("P3-W0315") <= 3);
}

TEST_CASE("a setup flood while the control thread sleeps holds at most a quarter of the packet pool", "[pressure][rings]") {
    Pair p;   // dataplane.mbufs = 4095
    // 6000 datagrams over 0.6 s: more than the two workers' rates let through to a full ring.
    for (unsigned i = 0; i < 6000; ++i) {
        if (i % 1000 == 0) {
            p.settle(false);
            std::this_thread::sleep_for(std::chrono::milliseconds(100));
        }
        inject(p.b.wan.rx[i % 2], setup_datagram(p.b.wan_mac, i));
    }
    p.settle(false);
    // The workers passed more than that (policed per worker, not per pool): the ring is the bound.
    CHECK(p.b.drops(Drop::RING_FULL_SETUP) > 0);
    CHECK(p.b.dp->control_backlog(CtlClass::setup) < 4095 / 4);
    for (int i = 0; i < 1000 && p.b.dp->control_backlog(CtlClass::setup) != 0; ++i) control_pass(*p.b.ctl, p.now_ms);
}

TEST_CASE("a flood of fragments that never complete holds at most the reassembly share; whole packets still pass",
          "[pressure][frag]") {
    Pair p;
    p.fragment = true;
    const unsigned bound = p.b.dp->reassembly_bound();   // per worker; two workers poll B's WAN
    REQUIRE(bound == 4095 / p3::dp::kReassemblyShareDiv / 2);
    const unsigned before = test_pool_in_use();
    unsigned sent = 0, peak_pool = 0;
    std::vector<Bytes> got;
    for (unsigned round = 0; round < 25; ++round) {
        // 400 fragments from 400 of 4000 sources, then five packets that the wire fragments.
        for (unsigned i = 0; i < 400; ++i) {
            const unsigned k = round * 400 + i;
            inject(p.b.wan.rx[k % 2], bogus_fragment(p.b.wan_mac, k % 4000, static_cast<std::uint16_t>(k)));
        }
        for (unsigned i = 0; i < 5; ++i, ++sent)
            inject(p.a.lan.rx[i % 2], ipv4_frame(p.a.lan_mac, kHostMac, "10.1.5.7", "10.2.5.9", 17, 600, 64, 0,
                                                 static_cast<std::uint8_t>(sent)));
        p.settle();
        for (auto& f : collect(p.b.lan.tx, 0, 1)) got.push_back(std::move(f));
        peak_pool = std::max(peak_pool, test_pool_in_use() - before);
    }
    // The last round may still be on its way (a loaded machine preempts the workers for longer
    // than a burst takes): wait for it as long as frames keep coming, not a fixed 100 ms.
    for (auto& f : collect(p.b.lan.tx, sent - got.size(), 2000)) got.push_back(std::move(f));
    // Everything the flood left is held by B's reassembly: never more than the share.
    CHECK(peak_pool <= 2 * bound + 16);
    for (unsigned w = 0; w < 2; ++w) CHECK(p.b.dp->lcore(w).reasm_peak.load() <= bound);
    CHECK(p.b.drops(Drop::REASM_SHARE) > 0);
    // Whole packets reassembled and decrypted during the flood, every one.
    CHECK(got.size() == sent);
    CHECK(p.b.dp->sum(&p3::dp::LcoreStats::reassembled) == sent);

    // One source alone gets its quota, no more.
    const unsigned quota = p.b.dp->reassembly_source_quota();
    const auto src_before = p.b.drops(Drop::REASM_SOURCE);
    for (unsigned i = 0; i < 3 * quota; ++i)
        inject(p.b.wan.rx[0], bogus_fragment(p.b.wan_mac, 77777, static_cast<std::uint16_t>(50000 + i)));
    p.settle();
    CHECK(p.b.drops(Drop::REASM_SOURCE) - src_before >= 2 * quota);

    // Stale fragments expire (timeout), and every buffer comes back.
    for (int i = 0; i < 300; ++i) {
        p.relay();
        if (p.b.dp->lcore(0).reasm_held.load() + p.b.dp->lcore(1).reasm_held.load() == 0 && test_pool_in_use() == before)
            break;
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    CHECK(p.b.dp->lcore(0).reasm_held.load() + p.b.dp->lcore(1).reasm_held.load() == 0);
    CHECK(test_pool_in_use() == before);
}

namespace {
// An IPv4/UDP packet without Ethernet header, for the workers to send out of the WAN.
rte_mbuf* tx_ip(const std::string& dst) {
    Bytes f = ipv4_frame(Mac{}, Mac{}, "192.0.2.1", dst.c_str(), 17, 20);
    rte_mbuf* m = rte_pktmbuf_alloc(test_pool());
    REQUIRE(m != nullptr);
    std::memcpy(rte_pktmbuf_append(m, static_cast<std::uint16_t>(f.size() - 14)), f.data() + 14, f.size() - 14);
    p3::dp::meta(m) = PktMeta{MsgKind::tx_ip, p3::dp::Side::wan, 0, 0};
    return m;
}
void drain(const std::vector<rte_ring*>& rs) {
    for (auto* r : rs) {
        void* m;
        while (rte_ring_dequeue(r, &m) == 0) rte_pktmbuf_free(static_cast<rte_mbuf*>(m));
    }
}
}  // namespace

TEST_CASE("next hops that never answer are evicted; frames held for them are bounded", "[pressure][neighbors]") {
    LogCapture log;
    Single a("nb", Side{"10.1.0.1/24", "192.0.2.1/20", nullptr, nullptr}, {}, {1, 2}, nullptr, false);
    auto& table = a.dp->neighbors(p3::dp::Side::wan);
    const unsigned before = test_pool_in_use();
    // 300 on-link addresses that never answer, three frames each, paced below the workers'
    // hold rate (a scan through the tunnel looks like this): 60 frames, then until worker 0
    // has handed them on, then 40 ms.
    constexpr unsigned kHops = 300, kEach = 3;
    std::uint64_t now = 0;
    auto handed = [&] { return a.dp->sum(&p3::dp::LcoreStats::to_control) + a.drops(Drop::HOLD_POLICED); };
    for (unsigned i = 0; i < kHops; ++i) {
        const std::string d = i < 250 ? "192.0.4." + std::to_string(i + 1) : "192.0.5." + std::to_string(i - 249);
        for (unsigned k = 0; k < kEach; ++k) REQUIRE(a.dp->send_to_workers(tx_ip(d)));
        if (i % 20 == 19 || i + 1 == kHops) {
            for (int s = 0; s < 2000 && handed() < (i + 1) * kEach; ++s) {
                std::this_thread::sleep_for(std::chrono::milliseconds(1));
                control_pass(*a.ctl, now);
            }
            for (int s = 0; s < 20; ++s) {
                std::this_thread::sleep_for(std::chrono::milliseconds(2));
                control_pass(*a.ctl, now);
            }
        }
    }
    const std::uint64_t table_full = a.drops(Drop::NEIGH_TABLE_FULL), total = a.drops(Drop::NEIGH_HOLD_TOTAL);
    CHECK(a.drops(Drop::HOLD_POLICED) == 0);
    CHECK(table.size() <= p3::dp::kMaxPendingNeighbors);
    CHECK(table_full == (kHops - p3::dp::kMaxPendingNeighbors) * kEach);
    // The per-side bound is the pool's share: 4095 buffers / 16.
    const unsigned bound = a.dp->held_bound();
    CHECK(bound == p3::dp::held_per_side(a.cfg.dataplane.mbufs));
    CHECK(bound == 255);
    CHECK(total == p3::dp::kMaxPendingNeighbors * kEach - bound);
    CHECK(test_pool_in_use() - before <= bound + 8);

    // Three requests each, one second apart, then they fail: held frames dropped, entries gone.
    for (unsigned s = 1; s <= p3::dp::kResolveRetries + 1; ++s) control_pass(*a.ctl, now += p3::dp::kResolveIntervalMs);
    CHECK(table.size() == 0);
    CHECK(a.drops(Drop::NEIGH_FAILED) == bound);
    CHECK(log.count("P3-W0306") == 1);   // 256 failures in the same second: one line
    CHECK(log.count("P3-W0318") == 1);   // the bounds reached, from the counters
    drain(a.wan.tx);
    CHECK(test_pool_in_use() == before);

    // The table is not poisoned: a next hop that answers resolves, its frame follows.
    now += p3::dp::kResolveHoldoffMs;
    REQUIRE(a.dp->send_to_workers(tx_ip("192.0.2.7")));
    // Worker 0 may still be sending the last retries for the dead next hops: look for the
    // frames of this one among whatever comes out.
    const std::uint8_t target[4] = {192, 0, 2, 7};
    auto asks_for_target = [&](const Bytes& f) {
        return f.size() >= 42 && f[12] == 0x08 && f[13] == 0x06 && std::memcmp(f.data() + 38, target, 4) == 0;
    };
    bool asked = false;
    for (int i = 0; i < 200 && !asked; ++i) {
        control_pass(*a.ctl, now);
        for (const Bytes& f : collect(a.wan.tx, 1, 5)) asked |= asks_for_target(f);
    }
    REQUIRE(asked);   // the ARP request
    const Mac peer{{0x02, 0x00, 0x00, 0x00, 0x07, 0x07}};
    inject(a.wan.rx[0], arp(2, a.wan_mac, peer, "192.0.2.7", a.wan_mac, "192.0.2.1"));
    std::vector<Bytes> to_peer;
    for (int i = 0; i < 200 && to_peer.empty(); ++i) {
        control_pass(*a.ctl, now);
        for (Bytes& f : collect(a.wan.tx, 1, 5))
            if (std::memcmp(f.data(), peer.b, 6) == 0) to_peer.push_back(std::move(f));
    }
    REQUIRE(to_peer.size() == 1);   // the held frame, to the MAC that answered
    CHECK(table.size() == 1);
}

TEST_CASE("a pool run dry is counted and logged once a second; the ports keep running", "[pressure][pool]") {
    LogCapture log;
    Single a("pl", Side{"10.1.0.1/24", "192.0.2.1/24", nullptr, nullptr}, {}, {1, 2}, nullptr, false);
    std::uint64_t now = 0;
    control_pass(*a.ctl, now);
    // Take every buffer the control thread could allocate.
    std::vector<void*> taken;
    for (void* x; rte_mempool_get(a.dp->pool(), &x) == 0;) taken.push_back(x);
    REQUIRE(taken.size() > 1000);
    // A frame for a next hop to resolve: the request needs a buffer there is none of.
    REQUIRE(a.dp->send_to_workers(tx_ip("192.0.2.9")));
    for (int i = 0; i < 200 && a.drops(Drop::MBUF_ALLOC) == 0; ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
        control_pass(*a.ctl, now);
    }
    CHECK(a.drops(Drop::MBUF_ALLOC) == 1);
    // RX still runs: an echo to our LAN address is answered (in place, no new buffer).
    inject(a.lan.rx[0], icmp4_echo(a.lan_mac, kHostMac, "10.1.0.10", "10.1.0.1", 16));
    CHECK(collect(a.lan.tx, 1).size() == 1);
    // Logged once for the second it happened in, with the reason code; not again while quiet.
    for (std::uint64_t t = 100; t <= 1000; t += 100) control_pass(*a.ctl, now + t);
    CHECK(log.count("P3-W0211") == 1);
    control_pass(*a.ctl, now += 1500);
    CHECK(log.count("P3-W0211") == 1);
    // Buffers back: the retry's request goes out.
    rte_mempool_put_bulk(a.dp->pool(), taken.data(), static_cast<unsigned>(taken.size()));
    std::vector<Bytes> out;
    for (int i = 0; i < 100 && out.empty(); ++i) {
        control_pass(*a.ctl, now += p3::dp::kResolveIntervalMs);
        out = collect(a.wan.tx, 1, 5);
    }
    CHECK(out.size() == 1);
}
