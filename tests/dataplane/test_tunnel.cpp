// Two dataplanes back to back with static keys. The test is the wire between them: it moves
// every frame A sends on its WAN into B's WAN (and back), rewriting the destination MAC as the
// WAN routers would, so it can also drop, duplicate, corrupt or replay them.
//
//   hosts 10.1.5.x / fd01:5::x                                 hosts 10.2.5.x / fd02:5::x
//      |                                                              |
//   [A.lan rx/tx] A (lcores 1,2) [A.wan] <==test relay==> [B.wan] B (lcores 3,4) [B.lan rx/tx]
//   LAN gw .254 (static MAC)     WAN 192.0.2.1 / 2001:db8:a::1   WAN 198.51.100.2 / 2001:db8:b::2
//
// Both sides have two workers and two queues per port: both workers send, so every session
// runs on two lanes (static_keys.lanes = 2). The test thread is also both control threads
// (each ControlThread driven by hand): it calls control_pass() itself, so it may change
// routes and keys while the workers run.
#include <algorithm>
#include <atomic>
#include <map>
#include <set>
#include <tuple>
#include <string>

#include <filesystem>
#include <fstream>

#include "bench.hpp"
#include "tests/dataplane/tunnel_rig.hpp"
#include "common/slots.hpp"
#include "dataplane/frag.hpp"
#include "dataplane/seq_reserve.hpp"
#include "dataplane/telemetry.hpp"

#include <rte_telemetry.h>

using namespace p3test;
using p3::dp::Drop;

using namespace p3test::tunnel;

TEST_CASE("back to back with static keys: every packet arrives once, unchanged but for the TTL", "[tunnel]") {
    struct Combo {
        bool inner6, outer6, aes256;
    };
    const Combo combos[] = {{false, false, false}, {true, false, false}, {false, true, true}, {true, true, false},
                            {false, false, true}};
    for (const Combo& c : combos) {
        INFO("inner IPv" << (c.inner6 ? 6 : 4) << ", outer IPv" << (c.outer6 ? 6 : 4) << (c.aes256 ? ", AES-256" : ", AES-128"));
        Tunnel t("t", c.inner6, c.outer6, c.aes256);
        const std::size_t mtu = p3::dp::tunnel_mtu(1500, c.outer6, false);
        const auto sizes = sizes_for(c.inner6, mtu);
        for (int dir = 0; dir < 2; ++dir) {
            End& from = dir == 0 ? t.a : t.b;
            End& to = dir == 0 ? t.b : t.a;
            const char* src = c.inner6 ? (dir == 0 ? "fd01:5::7" : "fd02:5::9") : (dir == 0 ? "10.1.5.7" : "10.2.5.9");
            const char* dst = c.inner6 ? (dir == 0 ? "fd02:5::9" : "fd01:5::7") : (dir == 0 ? "10.2.5.9" : "10.1.5.7");
            std::vector<Bytes> want;
            unsigned k = 0;
            for (int rep = 0; rep < 3; ++rep) {
                for (std::size_t len : sizes) {
                    Bytes f = packet(from.lan_mac, c.inner6, src, dst, len, static_cast<std::uint8_t>(k));
                    inject(from.lan.rx[k++ % 2], f);   // both LAN queues: both workers, both lanes
                    want.push_back(expected(f, to.lan_mac));
                }
            }
            auto got = t.deliver(to, want.size());
            check_same(got, want);
        }
        // Both lanes carried traffic in both directions; nothing was dropped anywhere.
        for (End* e : {&t.a, &t.b}) {
            const auto sid = e->dp->session_of(e == &t.a ? 2 : 1);
            CHECK(e->dp->tx_last_seq(sid, 0) > 0);
            CHECK(e->dp->tx_last_seq(sid, 1) > 0);
            const auto tot = e->dp->session_totals(sid);
            CHECK(tot.tx_pkts == 3 * sizes.size());
            CHECK(tot.rx_pkts == 3 * sizes.size());
            CHECK(tot.tx_dropped + tot.rx_auth + tot.rx_replay + tot.rx_dropped + tot.rx_old_key + tot.rx_policy +
                      tot.tx_down == 0);
            std::uint64_t dropped = 0;
            std::string why;
            for (const auto& d : p3::dp::kDrops) {
                dropped += e->dp->drops(d.drop);
                if (e->dp->drops(d.drop)) why += std::string(d.name) + "=" + std::to_string(e->dp->drops(d.drop)) + " ";
            }
            INFO("drops: " << why);
            CHECK(dropped == 0);
        }
    }
}

// One genuine P3 frame of A's, caught on A's WAN instead of delivered, addressed to B's WAN port
// (one frame; its ring says which of B's queues it belongs to).
TEST_CASE("bad tags, unknown P3 IDs, replays and unknown flags are counted and never forwarded", "[tunnel][malformed]") {
    Tunnel t("m", false, false);
    // One genuine P3 frame from A, held by the test instead of delivered.
    const auto caught = hold_one_p3(t);
    const Bytes& p3 = caught[0].bytes;
    const std::size_t off = 14 + 20;   // P3 header after the outer IPv4 header
    const std::uint32_t sid = t.b.dp->session_of(1);

    struct Case {
        const char* what;
        std::size_t at;      // byte to change (0 = none)
        std::uint8_t xr;
        Drop reason;
    };
    const Case cases[] = {
        {"ICV flipped", p3.size() - 1, 0x01, Drop::P3_AUTH},
        {"ciphertext flipped", off + 16 + 3, 0x80, Drop::P3_AUTH},
        {"sequence changed (AAD)", off + 15, 0x40, Drop::P3_AUTH},
        {"P3 ID of no slot", off + 6, 0x0c, Drop::P3_UNKNOWN_ID},
        {"stale generation of our P3 ID", off + 4, 0x10, Drop::P3_UNKNOWN_ID},
        // On IP protocol 50 a first word other than 0 is an ESP SPI (docs/wire-format.md).
        {"a flag bit on IP: an SPI p3d never handed out", off + 3, 0x01, Drop::ESP_UNKNOWN_SPI},
    };
    for (const Case& c : cases) {
        INFO(c.what);
        Bytes f = p3;
        f[c.at] ^= c.xr;
        const auto before = t.b.dp->drops(c.reason);
        inject(t.b.wan.rx[caught[0].ring], f);
        auto out = t.deliver(t.b, 0, 100);
        CHECK(out.empty());
        for (int i = 0; i < 200 && t.b.dp->drops(c.reason) == before; ++i) {
            t.relay();
            std::this_thread::sleep_for(std::chrono::milliseconds(2));
        }
        CHECK(t.b.dp->drops(c.reason) == before + 1);
    }
    // A truncated P3 packet (the outer length adjusted to the cut).
    {
        Bytes f(p3.begin(), p3.begin() + static_cast<long>(off + 20));
        put16(f, 16, static_cast<std::uint16_t>(f.size() - 14));
        f[24] = f[25] = 0;
        put16(f, 24, csum(f.data() + 14, 20));
        inject(t.b.wan.rx[0], f);
        CHECK(t.deliver(t.b, 0, 100).empty());
        CHECK(t.b.dp->drops(Drop::P3_TRUNCATED) == 1);
    }
    CHECK(t.b.dp->session_totals(sid).rx_auth == 3);

    // The genuine one is delivered once; the same bytes again, and twice more at once, are replays.
    inject(t.b.wan.rx[caught[0].ring], p3);
    CHECK(t.deliver(t.b, 1).size() == 1);
    for (int i = 0; i < 3; ++i) inject(t.b.wan.rx[caught[0].ring], p3);
    CHECK(t.deliver(t.b, 0, 150).empty());
    for (int i = 0; i < 200 && t.b.dp->drops(Drop::P3_REPLAY) < 3; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(2));
    CHECK(t.b.dp->drops(Drop::P3_REPLAY) == 3);
    CHECK(t.b.dp->session_totals(sid).rx_replay == 3);
    CHECK(t.b.dp->session_totals(sid).rx_pkts == 1);

    // Left of the window: 1100 newer packets on the same lane, then the first one again.
    for (int i = 0; i < 1100; ++i) inject(t.a.lan.rx[0], packet(t.a.lan_mac, false, "10.1.5.7", "10.2.5.9", 60, 2));
    CHECK(t.deliver(t.b, 1100).size() == 1100);
    inject(t.b.wan.rx[caught[0].ring], p3);
    CHECK(t.deliver(t.b, 0, 150).empty());
    for (int i = 0; i < 200 && t.b.dp->drops(Drop::P3_REPLAY) < 4; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(2));
    CHECK(t.b.dp->drops(Drop::P3_REPLAY) == 4);
    CHECK(t.b.dp->sum(&p3::dp::LcoreStats::tx_lan_pkts) == 1101);
}

TEST_CASE("static keys with anti_replay = false: a replayed packet is delivered again, tampering still is not", "[tunnel][malformed]") {
    Tunnel t("nr", false, false, false, 2, nullptr, false, /*b_anti_replay=*/false);
    const auto caught = hold_one_p3(t);
    const Bytes& p3 = caught[0].bytes;
    const std::uint32_t sid = t.b.dp->session_of(1);
    for (int i = 0; i < 3; ++i) inject(t.b.wan.rx[caught[0].ring], p3);
    const auto out = t.deliver(t.b, 3);
    REQUIRE(out.size() == 3);
    CHECK(out[0] == out[2]);
    CHECK(t.b.dp->drops(Drop::P3_REPLAY) == 0);
    CHECK(t.b.dp->session_totals(sid).rx_pkts == 3);
    // The tag still decides: a flipped ICV is refused as ever.
    Bytes bad = p3;
    bad.back() ^= 1;
    inject(t.b.wan.rx[caught[0].ring], bad);
    CHECK(t.deliver(t.b, 0, 100).empty());
    for (int i = 0; i < 200 && t.b.dp->drops(Drop::P3_AUTH) == 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(2));
    CHECK(t.b.dp->drops(Drop::P3_AUTH) == 1);
}

TEST_CASE("a peer speaks only for its own subnets; packets to our WAN address go to the control thread", "[tunnel]") {
    Tunnel t("s", false, false);
    // B's route for A's 10.1.0.0/16 is narrowed: 10.1.9.0/24 now belongs to nobody.
    REQUIRE(t.b.dp->routes().remove(*p3::Prefix::parse("10.1.0.0/16")));
    REQUIRE(t.b.dp->routes().add(*p3::Prefix::parse("10.1.5.0/24"), t.b.dp->session_of(1)));
    inject(t.a.lan.rx[0], packet(t.a.lan_mac, false, "10.1.9.7", "10.2.5.9", 80, 3));
    inject(t.a.lan.rx[1], packet(t.a.lan_mac, false, "10.1.5.7", "10.2.5.9", 80, 4));
    CHECK(t.deliver(t.b, 1).size() == 1);
    CHECK(t.b.dp->drops(Drop::P3_INNER_SRC) == 1);
    for (int i = 0; i < 200 && t.b.dp->session_totals(t.b.dp->session_of(1)).rx_policy == 0; ++i) t.relay();
    CHECK(t.b.dp->session_totals(t.b.dp->session_of(1)).rx_policy == 1);
}

TEST_CASE("route and key updates while traffic flows lose nothing", "[tunnel][rcu]") {
    Tunnel t("u", false, false);
    const std::uint32_t sid_a = t.a.dp->session_of(2), sid_b = t.b.dp->session_of(1);
    std::vector<Bytes> want;
    std::vector<Bytes> got;
    auto send_some = [&](unsigned n, std::uint8_t fill) {
        for (unsigned i = 0; i < n; ++i) {
            Bytes f = packet(t.a.lan_mac, false, "10.1.5.7", "10.2.5.9", 64 + (i % 900), static_cast<std::uint8_t>(fill + i));
            inject(t.a.lan.rx[i % 2], f);
            want.push_back(expected(f, t.b.lan_mac));
        }
    };
    auto pump = [&](int steps) {
        for (int i = 0; i < steps; ++i) {
            t.relay();
            for (auto& f : grab(t.b.lan.tx)) got.push_back(std::move(f.bytes));
        }
    };

    // Routes: the one in use replaced by a more specific one and back, unrelated ones added
    // and removed, IPv4 and IPv6 — all while A's workers look them up.
    auto& routes = t.a.dp->routes();
    for (int round = 0; round < 20; ++round) {
        send_some(50, static_cast<std::uint8_t>(round));
        REQUIRE(routes.add(*p3::Prefix::parse("10.2.5.0/24"), sid_a));
        for (int j = 0; j < 50; ++j) {
            char buf[40];
            std::snprintf(buf, sizeof buf, "10.%d.%d.0/24", 100 + round, j);
            REQUIRE(routes.add(*p3::Prefix::parse(buf), sid_a));
            std::snprintf(buf, sizeof buf, "fd09:%x:%x::/48", round, j);
            REQUIRE(routes.add(*p3::Prefix::parse(buf), sid_a));
        }
        pump(5);
        REQUIRE(routes.remove(*p3::Prefix::parse("10.2.5.0/24")));
        for (int j = 0; j < 50; ++j) {
            char buf[40];
            std::snprintf(buf, sizeof buf, "10.%d.%d.0/24", 100 + round, j);
            REQUIRE(routes.remove(*p3::Prefix::parse(buf)));
            std::snprintf(buf, sizeof buf, "fd09:%x:%x::/48", round, j);
            REQUIRE(routes.remove(*p3::Prefix::parse(buf)));
        }
        pump(5);
    }

    // Keys, as a rekey does it: B holds the next key beside the current one, A switches (its
    // first sequences under the new key announced to B, or not: B learns them), B promotes once
    // what was sent under the old key has arrived. A fresh key every round; the P3 IDs and the
    // sequences never change.
    std::uint64_t last_first = 0;
    for (int round = 0; round < 4; ++round) {
        send_some(100, static_cast<std::uint8_t>(100 + round));
        std::string kh(64, static_cast<char>('a' + round));
        const p3::SecretBytes k2 = hex(kh.c_str());
        const p3::SecretBytes s2 = hex("44444444");
        const p3::dp::LaneKeys k{k2.span(), s2.span(), 2, false};
        REQUIRE(t.b.dp->install_next_rx(sid_b, k));
        pump(3);
        std::uint64_t first[2] = {};
        REQUIRE(t.a.dp->switch_tx(sid_a, k, first));
        CHECK(first[0] > last_first);   // sequences go on across the switch
        last_first = first[0];
        if (round % 2 == 0) t.b.dp->rx_switch_at(sid_b, first);
        send_some(100, static_cast<std::uint8_t>(200 + round));
        auto more = t.deliver(t.b, want.size() - got.size());
        got.insert(got.end(), more.begin(), more.end());
        CHECK(t.b.dp->rx_next_seen(sid_b));
        t.b.dp->promote_rx(sid_b);
        CHECK(t.a.dp->tx_last_seq(sid_a, 0) > 0);
        CHECK(t.a.dp->tx_last_seq(sid_a, 1) > 0);
    }
    auto rest = t.deliver(t.b, want.size() - got.size());
    got.insert(got.end(), rest.begin(), rest.end());
    check_same(got, want);
    std::uint64_t dropped = 0;
    for (const auto& d : p3::dp::kDrops) dropped += t.a.dp->drops(d.drop) + t.b.dp->drops(d.drop);
    CHECK(dropped == 0);
    // Four rekeys later B still receives on the static IDs, A still writes them.
    CHECK(t.b.dp->slots().rx(0x201) != nullptr);
    CHECK(t.a.dp->slots().tx(sid_a, 0)->peer_id() == 0x201);
}

TEST_CASE("NAT traversal: P3 inside UDP 4500, both directions", "[tunnel][nat]") {
    Tunnel t("n", false, false);
    const std::uint32_t sid_a = t.a.dp->session_of(2), sid_b = t.b.dp->session_of(1);
    // Each side re-installs its outbound keys with UDP encapsulation (as after NAT detection).
    const p3::SecretBytes k = hex("5555555555555555555555555555555566666666666666666666666666666666");
    const p3::SecretBytes sa = hex("77777777");
    for (auto [e, sid, peer] : {std::tuple{&t.a, sid_a, "198.51.100.2"}, std::tuple{&t.b, sid_b, "192.0.2.1"}}) {
        REQUIRE(e->dp->set_peer(sid, *p3::IpAddr::parse(peer), 4500, 4500));
    }
    auto rb = t.b.dp->reserve_rx_ids(2);
    auto ra = t.a.dp->reserve_rx_ids(2);
    REQUIRE(rb);
    REQUIRE(ra);
    const p3::dp::LaneKeys lk{k.span(), sa.span(), 2, false};
    REQUIRE(t.b.dp->install_rx(sid_b, *rb, lk));
    REQUIRE(t.a.dp->install_rx(sid_a, *ra, lk));
    REQUIRE(t.a.dp->install_tx(sid_a, *rb, lk));
    REQUIRE(t.b.dp->install_tx(sid_b, *ra, lk));
    std::vector<Bytes> want;
    for (unsigned i = 0; i < 20; ++i) {
        Bytes f = packet(t.a.lan_mac, false, "10.1.5.7", "10.2.5.9", 40 + i * 70, static_cast<std::uint8_t>(i));
        inject(t.a.lan.rx[i % 2], f);
        want.push_back(expected(f, t.b.lan_mac));
    }
    // On the wire: outer IPv4, protocol UDP, both ports 4500, then the P3 header.
    std::vector<Frame> wire;
    for (int i = 0; i < 500 && wire.size() < 20; ++i) {
        auto more = grab(t.a.wan.tx);
        wire.insert(wire.end(), more.begin(), more.end());
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    REQUIRE(wire.size() == 20);
    for (auto& f : wire) {
        CHECK(f.bytes[23] == 17);
        CHECK(get16(f.bytes, 34) == 4500);
        CHECK(get16(f.bytes, 36) == 4500);
        CHECK(get16(f.bytes, 38) == f.bytes.size() - 34);
        std::memcpy(f.bytes.data(), t.b.wan_mac.b, 6);
        inject(t.b.wan.rx[f.ring], f.bytes);
    }
    check_same(t.deliver(t.b, want.size()), want);
    // And back.
    want.clear();
    for (unsigned i = 0; i < 10; ++i) {
        Bytes f = packet(t.b.lan_mac, false, "10.2.5.9", "10.1.5.7", 100 + i, static_cast<std::uint8_t>(i));
        inject(t.b.lan.rx[i % 2], f);
        want.push_back(expected(f, t.a.lan_mac));
    }
    check_same(t.deliver(t.a, want.size()), want);
}

namespace {
// Keeps what reaches the control thread.
struct Recorder final : p3::control::Plane {
    void on_packet(rte_mbuf* m) override {
        got.push_back({p3::dp::meta(m), bytes_of(m)});
        rte_pktmbuf_free(m);
    }
    std::vector<std::pair<p3::dp::PktMeta, Bytes>> got;
};
}  // namespace

TEST_CASE("the control channel: an inner packet to the peer's WAN address reaches its control thread", "[tunnel][control]") {
    Recorder rec;
    Tunnel t("c", false, false, false, 2, &rec);
    const std::uint32_t sid_a = t.a.dp->session_of(2), sid_b = t.b.dp->session_of(1);
    // What the control plane hands to the workers: an inner IPv4/TCP packet, WAN to WAN.
    Bytes f = ipv4_frame(Mac{}, Mac{}, "192.0.2.1", "198.51.100.2", 6, 60);
    rte_mbuf* m = rte_pktmbuf_alloc(test_pool());
    REQUIRE(m != nullptr);
    std::memcpy(rte_pktmbuf_append(m, static_cast<std::uint16_t>(f.size() - 14)), f.data() + 14, f.size() - 14);
    p3::dp::meta(m) = p3::dp::PktMeta{p3::dp::MsgKind::tx_inner, p3::dp::Side::wan, 0, sid_a};
    REQUIRE(t.a.dp->send_to_workers(m));
    for (int i = 0; i < 500 && rec.got.empty(); ++i) {
        t.relay();
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    REQUIRE(rec.got.size() == 1);
    CHECK(rec.got[0].first.kind == p3::dp::MsgKind::control_in);
    CHECK(rec.got[0].first.session == sid_b);
    CHECK(rec.got[0].first.lane == 0);   // worker 0 drains the control ring: lane 0
    CHECK(rec.got[0].second == Bytes(f.begin() + 14, f.end()));   // the inner packet, unchanged
    CHECK(t.deliver(t.b, 0, 100).empty());
    CHECK(t.b.dp->session_totals(sid_b).rx_pkts == 1);
}

TEST_CASE("keys cleared: the session is down, its traffic answered, its old P3 IDs unknown", "[tunnel][keys]") {
    Tunnel t("k", false, false);
    const std::uint32_t sid_a = t.a.dp->session_of(2);
    // A packet B sent under its static key, held back by the test.
    inject(t.b.lan.rx[0], packet(t.b.lan_mac, false, "10.2.5.9", "10.1.5.7", 80, 1));
    std::vector<Frame> held;
    for (int i = 0; i < 500 && held.empty(); ++i) {
        held = grab(t.b.wan.tx);
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    REQUIRE(held.size() == 1);
    t.a.dp->clear_keys(sid_a);
    CHECK(t.a.dp->sessions().state(sid_a) == p3::dp::SessionState::down);
    for (int i = 0; i < 5; ++i) t.relay();   // the control loop reclaims the retired slots
    CHECK(t.a.dp->slots().rx(0x301) == nullptr);
    CHECK(t.a.dp->slots().tx(sid_a, 0) == nullptr);
    // LAN traffic for the session: a TCP SYN is answered with a RST on the LAN, nothing on the WAN.
    Bytes syn = packet(t.a.lan_mac, false, "10.1.5.7", "10.2.5.9", 40, 0);
    syn[23] = 6;
    syn[24] = syn[25] = 0;
    put16(syn, 24, csum(syn.data() + 14, 20));
    syn[34 + 12] = 0x50;
    syn[34 + 13] = 0x02;
    inject(t.a.lan.rx[0], syn);
    auto out = collect(t.a.lan.tx, 1);
    REQUIRE(out.size() == 1);
    CHECK(out[0][23] == 6);
    CHECK((out[0][34 + 13] & 0x04) != 0);
    CHECK(grab(t.a.wan.tx).empty());
    CHECK(t.a.dp->drops(Drop::SESSION_DOWN) == 1);
    // The packet under the retired key: unknown P3 ID, never on the LAN.
    std::memcpy(held[0].bytes.data(), t.a.wan_mac.b, 6);
    inject(t.a.wan.rx[held[0].ring], held[0].bytes);
    for (int i = 0; i < 200 && t.a.dp->drops(Drop::P3_UNKNOWN_ID) == 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(2));
    CHECK(t.a.dp->drops(Drop::P3_UNKNOWN_ID) == 1);
    CHECK(t.deliver(t.a, 0, 100).empty());
    // Keys for a session that does not exist are refused.
    const p3::SecretBytes k = hex("00112233445566778899aabbccddeeff");
    const p3::SecretBytes s = hex("01020304");
    CHECK_FALSE(t.a.dp->install_tx(77, 0x400, p3::dp::LaneKeys{k.span(), s.span(), 1, false}));
    CHECK_FALSE(t.a.dp->install_rx(77, 0x400, p3::dp::LaneKeys{k.span(), s.span(), 1, false}));
    // Refused key material (5 bytes) gives the reserved IDs back.
    const auto reserved = t.a.dp->slots().stats().rx_reserved;
    auto base = t.a.dp->reserve_rx_ids(2);
    REQUIRE(base);
    CHECK(t.a.dp->slots().stats().rx_reserved == reserved + 2);
    const p3::SecretBytes bad = hex("0011223344");
    CHECK_FALSE(t.a.dp->install_rx(sid_a, *base, p3::dp::LaneKeys{bad.span(), s.span(), 2, false}));
    CHECK(t.a.dp->slots().stats().rx_reserved == reserved);
}

TEST_CASE("size hiding: outer sizes fall into buckets, the far LAN gets the packets unchanged", "[tunnel][sizehide]") {
    Tunnel t("h", false, false, false, 2, nullptr, true);
    std::vector<Bytes> want;
    for (unsigned i = 0; i < 30; ++i) {
        Bytes f = packet(t.a.lan_mac, false, "10.1.5.7", "10.2.5.9", 20 + i * 41, static_cast<std::uint8_t>(i));
        inject(t.a.lan.rx[i % 2], f);
        want.push_back(expected(f, t.b.lan_mac));
    }
    std::vector<Frame> wire;
    for (int i = 0; i < 500 && wire.size() < 30; ++i) {
        auto more = grab(t.a.wan.tx);
        wire.insert(wire.end(), more.begin(), more.end());
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    REQUIRE(wire.size() == 30);
    std::set<std::size_t> sizes;
    for (auto& f : wire) {
        // The ciphertext (outer length - IPv4 - P3 header - ICV) is a whole number of buckets,
        // unless capped by the WAN MTU.
        const std::size_t ct = get16(f.bytes, 16) - 20 - 16 - 16;
        CHECK((ct % p3::wire::kSizeHideBucket == 0 || get16(f.bytes, 16) > 1500 - p3::wire::kSizeHideBucket));
        CHECK(get16(f.bytes, 16) <= 1500);
        sizes.insert(ct);
        std::memcpy(f.bytes.data(), t.b.wan_mac.b, 6);
        inject(t.b.wan.rx[f.ring], f.bytes);
    }
    CHECK(sizes.size() <= 7);   // 30 different inner sizes, a handful of outer ones
    check_same(t.deliver(t.b, want.size()), want);
}

// ---- RFC 4301 inbound checks and static-key sequences -------------------------------------

TEST_CASE("a valid P3 packet re-sent from another outer address is dropped before the replay window", "[tunnel][peer]") {
    Tunnel t("w", false, false);
    const auto caught = hold_one_p3(t);
    const Bytes& p3 = caught[0].bytes;
    const std::uint32_t sid = t.b.dp->session_of(1);
    // The same bytes from 203.0.113.9 (outer IPv4 checksum fixed), on the other WAN queue.
    Bytes moved = p3;
    const auto stranger = v4("203.0.113.9");
    std::memcpy(&moved[26], stranger.data(), 4);
    moved[24] = moved[25] = 0;
    put16(moved, 24, csum(moved.data() + 14, 20));
    inject(t.b.wan.rx[(caught[0].ring + 1) % t.b.wan.rx.size()], moved);
    CHECK(t.deliver(t.b, 0, 150).empty());
    for (int i = 0; i < 200 && t.b.dp->drops(Drop::P3_WRONG_PEER) == 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(2));
    CHECK(t.b.dp->drops(Drop::P3_WRONG_PEER) == 1);
    CHECK(t.b.dp->session_totals(sid).rx_dropped == 1);
    // It never reached the window: the genuine packet, from the peer, is still new.
    inject(t.b.wan.rx[caught[0].ring], p3);
    CHECK(t.deliver(t.b, 1).size() == 1);
    CHECK(t.b.dp->drops(Drop::P3_REPLAY) == 0);
    CHECK(t.b.dp->session_totals(sid).rx_pkts == 1);
}

TEST_CASE("a native P3 packet re-sent from the peer's address inside UDP with source port 0 is dropped", "[tunnel][peer]") {
    Tunnel t("z", false, false);
    const auto caught = hold_one_p3(t);
    const Bytes& p3 = caught[0].bytes;
    const std::uint32_t sid = t.b.dp->session_of(1);
    // The same P3 header and payload, same outer addresses, but in UDP 0 -> 4500: the session is
    // native (no UDP port), and port 0 must not pass for "no port". RSS hashes UDP by ports, so
    // it would reach another queue and race the lane's replay window.
    Bytes moved(p3.begin(), p3.begin() + 34);
    moved[23] = 17;
    const std::size_t ulen = 8 + (p3.size() - 34);
    put16(moved, 16, static_cast<std::uint16_t>(20 + ulen));
    moved[24] = moved[25] = 0;
    put16(moved, 24, csum(moved.data() + 14, 20));
    const Bytes udp = {0, 0, 0x11, 0x94, static_cast<std::uint8_t>(ulen >> 8), static_cast<std::uint8_t>(ulen), 0, 0};
    moved.insert(moved.end(), udp.begin(), udp.end());
    moved.insert(moved.end(), p3.begin() + 34, p3.end());
    moved[42] |= 0x80;   // the UDP bit, so the port takes it for P3 (with Flags 0 it would be IKE)
    inject(t.b.wan.rx[(caught[0].ring + 1) % t.b.wan.rx.size()], moved);
    CHECK(t.deliver(t.b, 0, 150).empty());
    for (int i = 0; i < 200 && t.b.dp->drops(Drop::P3_WRONG_PEER) == 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(2));
    CHECK(t.b.dp->drops(Drop::P3_WRONG_PEER) == 1);
    // The genuine packet, native from the peer, is still new.
    inject(t.b.wan.rx[caught[0].ring], p3);
    CHECK(t.deliver(t.b, 1).size() == 1);
    CHECK(t.b.dp->drops(Drop::P3_REPLAY) == 0);
    CHECK(t.b.dp->session_totals(sid).rx_pkts == 1);
}

TEST_CASE("an inner destination outside our protected networks is dropped and counted", "[tunnel][peer]") {
    Tunnel t("d", false, false);
    // A sends 10.9.0.0/24 into the tunnel too; B protects 10.2.0.0/24 (its LAN) and 10.2.0.0/16.
    REQUIRE(t.a.dp->routes().add(*p3::Prefix::parse("10.9.0.0/24"), t.a.dp->session_of(2)));
    inject(t.a.lan.rx[0], packet(t.a.lan_mac, false, "10.1.5.7", "10.9.0.5", 80, 3));
    inject(t.a.lan.rx[1], packet(t.a.lan_mac, false, "10.1.5.7", "10.2.5.9", 80, 4));
    const auto out = t.deliver(t.b, 1);
    REQUIRE(out.size() == 1);
    CHECK(get16(out[0], 32) == 0x0509);   // 10.2.5.9: the one for our network
    for (int i = 0; i < 200 && t.b.dp->drops(Drop::P3_INNER_DST) == 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(2));
    CHECK(t.b.dp->drops(Drop::P3_INNER_DST) == 1);
    CHECK(t.b.dp->session_totals(t.b.dp->session_of(1)).rx_policy == 1);
    CHECK(t.b.dp->session_totals(t.b.dp->session_of(1)).rx_dropped == 0);
}

std::uint64_t read_mark(const std::string& file) {
    std::ifstream in(file);
    std::string header, number;
    std::getline(in, header);
    std::getline(in, number);
    REQUIRE(header == "p3 sequence mark 1");
    return std::stoull(number);
}

TEST_CASE("static keys: lanes never send past the persisted mark, and resume above it", "[tunnel][seq]") {
    char tmpl[] = "/tmp/p3-seq-test-XXXXXX";
    REQUIRE(::mkdtemp(tmpl) != nullptr);
    const std::string base = tmpl;
    const SeqCfg seq{base + "/state", 64};
    const std::string file =
        seq.dir + "/" + p3::dp::SeqReserve::file_name(hex(kAtoB128.key).span(), hex(kAtoB128.salt).span());
    std::uint64_t sent = 0, mark = 0;
    {
        Tunnel t("q", false, false, false, 2, nullptr, false, true, &seq);
        const std::uint32_t sid = t.a.dp->session_of(2);
        CHECK(read_mark(file) == 64);   // fresh: sequences 1..64 reserved before the first packet
        // 300 packets, 20 at a time, over blocks of 64: the control loop (relay) writes each
        // next mark before the lanes get to the current one, so nothing waits.
        std::size_t got = 0;
        for (int round = 0; round < 15; ++round) {
            for (int i = 0; i < 20; ++i)
                inject(t.a.lan.rx[i % 2], packet(t.a.lan_mac, false, "10.1.5.7", "10.2.5.9", 60, static_cast<std::uint8_t>(i)));
            got += t.deliver(t.b, 20, 300).size();
        }
        CHECK(got == 300);
        CHECK(t.a.dp->drops(Drop::SEQ_UNRESERVED) == 0);
        sent = std::max(t.a.dp->tx_last_seq(sid, 0), t.a.dp->tx_last_seq(sid, 1));
        mark = read_mark(file);
        CHECK(sent > 64);      // past the first block: marks were written while traffic flowed
        CHECK(mark >= sent);   // and always ahead of what was sent
        // The state directory goes away: no further mark can be written, so the lanes stop at
        // the last one and drop (counted) instead of sending an unrecorded sequence.
        std::filesystem::remove_all(seq.dir);
        for (int round = 0; round < 4; ++round) {
            for (int i = 0; i < 64; ++i) inject(t.a.lan.rx[i % 2], packet(t.a.lan_mac, false, "10.1.5.7", "10.2.5.9", 60, 7));
            t.deliver(t.b, 64, 200);
        }
        CHECK(t.a.dp->drops(Drop::SEQ_UNRESERVED) > 0);
        sent = std::max(t.a.dp->tx_last_seq(sid, 0), t.a.dp->tx_last_seq(sid, 1));
        CHECK(sent <= mark);
    }
    // A crash leaves the disk as it was: the last mark written. The next start resumes above it.
    std::filesystem::create_directory(seq.dir);
    std::filesystem::permissions(seq.dir, std::filesystem::perms::owner_all);
    {
        std::ofstream out(file);
        out << "p3 sequence mark 1\n" << mark << "\n";
    }
    std::filesystem::permissions(file, std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
    {
        Tunnel t("r", false, false, false, 2, nullptr, false, true, &seq);
        const std::uint32_t sid = t.a.dp->session_of(2);
        inject(t.a.lan.rx[0], packet(t.a.lan_mac, false, "10.1.5.7", "10.2.5.9", 60, 1));
        CHECK(t.deliver(t.b, 1).size() == 1);
        const std::uint64_t l0 = t.a.dp->tx_last_seq(sid, 0), l1 = t.a.dp->tx_last_seq(sid, 1);
        CHECK(std::min(l0, l1) == mark);         // both lanes start after the old mark ...
        CHECK(std::max(l0, l1) == mark + 1);     // ... and the one that sent used mark + 1
        CHECK(std::max(l0, l1) > sent);
        CHECK(read_mark(file) == mark + 64);
    }
    std::filesystem::remove_all(base);
}

// Telemetry reads what the control thread owns only as the control thread published it: a
// change made through the port shows in the sessions view after the next pass, not before,
// and the counters are the control thread's own.
TEST_CASE("the control thread publishes sessions and counters; readers see a change after the pass", "[tunnel][telemetry]") {
    Tunnel t("pv", false, false);
    p3::dp::ControlPort& port = t.a.dp->control_port();
    const p3::SessionId sid = port.session_of(p3::RemoteId(2));
    REQUIRE(sid);
    const p3::dp::SessionsView* v = port.sessions_view();
    REQUIRE(v != nullptr);   // published when the control thread was made
    REQUIRE(v->by_remote(p3::RemoteId(2)) != nullptr);
    CHECK(v->by_remote(p3::RemoteId(2))->state == p3::dp::SessionState::up);
    CHECK(v->by_remote(p3::RemoteId(2))->sid == sid);
    CHECK(v->by_remote(p3::RemoteId(2))->tx_lanes == t.a.dp->tx_lanes());
    CHECK(v->routes4 == t.a.dp->routes().routes4());
    port.clear_keys(sid);
    CHECK(port.state(sid) == p3::dp::SessionState::down);
    CHECK(port.sessions_view()->by_remote(p3::RemoteId(2))->state == p3::dp::SessionState::up);   // not yet
    const std::uint64_t before = port.counters().packets;
    control_pass(*t.a.ctl, t.now_ms);
    CHECK(port.sessions_view()->by_remote(p3::RemoteId(2))->state == p3::dp::SessionState::down);
    CHECK(port.counters().packets == t.a.ctl->counters().packets);
    CHECK(port.counters().packets >= before);
    CHECK(t.a.dp->control_counters().trusted == t.a.ctl->counters().trusted);
}

// Telemetry (a DPDK telemetry thread) reads key slots for tx_max_seq while the control thread
// retires and frees them. The read is paused right after it loaded a TX slot; meanwhile the
// control side clears the session's keys and reclaims. The slot must outlive the read: the
// command is an RCU reader. (Freed slots are filled with a pattern by the free hook, and
// under AddressSanitizer a freed slot is poisoned, so a read of one would show.)
TEST_CASE("telemetry reads key slots under RCU: a slot retired during a read is freed after it", "[tunnel][rcu][telemetry]") {
    Tunnel t("tm", false, false);
    p3::dp::Telemetry tel;
    tel.attach(t.a.dp.get());
    const std::uint32_t sid = t.a.dp->session_of(2);
    REQUIRE(t.a.dp->slots().tx(sid, 0) != nullptr);
    t.a.dp->slots().set_free_hook([](const p3::wire::FreedSlot& f, void*) {
        std::memset(const_cast<void*>(f.memory), 0xa5, f.bytes);
    }, nullptr);
    struct Pause {
        std::atomic<int> stage{0};   // 1: the read holds a slot; 2: go on
    } pause;
    p3::dp::set_telemetry_read_hook([](void* c) {
        auto* p = static_cast<Pause*>(c);
        int want = 0;
        if (!p->stage.compare_exchange_strong(want, 1)) return;
        for (int i = 0; i < 5000 && p->stage.load() != 2; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }, &pause);
    rte_tel_data* d = rte_tel_data_alloc();
    REQUIRE(d != nullptr);
    int rc = -2;
    std::thread reader([&] { rc = p3::dp::telemetry_call("/p3/session", "2", d); });
    for (int i = 0; i < 5000 && pause.stage.load() != 1; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    REQUIRE(pause.stage.load() == 1);
    // The control side, while the read holds the slot: keys cleared, reclaimed for a while
    // (long enough for every worker to pass a quiescent state many times over).
    const std::uint64_t freed_before = t.a.dp->slots().stats().freed;
    t.a.dp->clear_keys(sid);
    for (int i = 0; i < 50; ++i) {
        t.a.dp->slots().reclaim();
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    const auto during = t.a.dp->slots().stats();
    pause.stage.store(2);
    reader.join();
    p3::dp::set_telemetry_read_hook(nullptr, nullptr);
    CHECK(rc == 0);
    CHECK(during.pending > 0);                  // held back by the telemetry read ...
    CHECK(during.freed == freed_before);
    for (int i = 0; i < 200 && t.a.dp->slots().stats().pending > 0; ++i) {
        t.a.dp->slots().reclaim();              // ... and freed once it is over
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    CHECK(t.a.dp->slots().stats().pending == 0);
    rte_tel_data_free(d);
    t.a.dp->slots().set_free_hook(nullptr, nullptr);
    tel.detach();
}
