// A rekey as the wire sees it, stepped packet by packet on two real dataplanes (ring ports,
// two workers and two lanes each side; tunnel_rig.hpp): A switches its outbound keys at a
// sequence, B holds the current and the next key of each lane and picks by sequence. The test
// holds A's WAN frames and hands them to B in the order each case needs:
//   reordering across the switch point; the switch announcement lost (B learns the point from
//   the first packet under the new key); a packet from before the switch arriving late; a
//   forged packet while a next key is pending (at most two tag checks, and only then); the
//   outbound switch's first sequence exact on an idle and a busy lane (every packet opens
//   under exactly one key, sequences without a gap); 100 switches with one P3 ID per lane and
//   sequences that only go up.
// Tag checks are counted from what the user sees: every packet that reaches the open is
// opened once (decrypted or p3_auth) plus rx_next_retries, the second tries.
#include <catch2/catch.hpp>

#include <algorithm>
#include <map>
#include <set>

#include "common/bytes.hpp"
#include "common/crypto.hpp"
#include "common/lanes.hpp"
#include "common/slots.hpp"
#include "dataplane/fastpath.hpp"
#include "tests/dataplane/tunnel_rig.hpp"

using namespace p3test;
using namespace p3test::tunnel;
using p3::dp::Drop;

namespace {

constexpr std::size_t kP3 = 14 + 20;   // P3 header after Ethernet and the outer IPv4 header

// One frame A sent on its WAN, held by the test, addressed to B.
struct Held {
    unsigned ring;
    Bytes bytes;
    std::uint32_t id;
    std::uint64_t seq;
};

struct Rekey {
    Tunnel t{"rk", false, false};
    std::uint32_t sid_a = t.a.dp->session_of(2), sid_b = t.b.dp->session_of(1);
    std::vector<Bytes> want;   // what B's LAN must get
    unsigned sent = 0;

    // n LAN packets into A on LAN queue q (worker q, lane q), or on both queues when q < 0.
    void send(unsigned n, int q = 0) {
        for (unsigned i = 0; i < n; ++i, ++sent) {
            const unsigned ring = q < 0 ? sent % 2 : static_cast<unsigned>(q);
            Bytes f = packet(t.a.lan_mac, false, "10.1.5.7", "10.2.5.9", 60 + sent % 700, static_cast<std::uint8_t>(sent));
            inject(t.a.lan.rx[ring], f);
            want.push_back(expected(f, t.b.lan_mac));
        }
    }
    // The next n frames out of A's WAN, held (nothing relayed meanwhile).
    std::vector<Held> hold(std::size_t n) {
        std::vector<Held> out;
        for (int i = 0; i < 2000 && out.size() < n; ++i) {
            for (auto& f : grab(t.a.wan.tx)) {
                std::memcpy(f.bytes.data(), t.b.wan_mac.b, 6);
                out.push_back({f.ring, f.bytes, p3::be::get32(f.bytes.data() + kP3 + 4),
                               p3::be::get64(f.bytes.data() + kP3 + 8)});
            }
            if (out.size() < n) std::this_thread::sleep_for(std::chrono::milliseconds(1));
        }
        REQUIRE(out.size() == n);
        return out;
    }
    // Handed to B one at a time, each processed before the next: the order is the test's.
    std::vector<Bytes> give(const std::vector<Held>& hs) {
        std::vector<Bytes> got;
        for (const Held& h : hs) {
            inject(t.b.wan.rx[h.ring % t.b.wan.rx.size()], h.bytes);
            auto g = t.deliver(t.b, 1, 100);
            got.insert(got.end(), g.begin(), g.end());
        }
        return got;
    }
    std::uint64_t retries() const { return t.b.dp->sum(&p3::dp::LcoreStats::rx_next_retries); }
    std::uint64_t auth() const { return t.b.dp->drops(Drop::P3_AUTH); }
    std::uint64_t decrypted() const { return t.b.dp->sum(&p3::dp::LcoreStats::decrypted); }
    std::uint64_t all_drops() const {
        std::uint64_t n = 0;
        for (const auto& d : p3::dp::kDrops) n += t.a.dp->drops(d.drop) + t.b.dp->drops(d.drop);
        return n;
    }
};

// Fresh key material per round (AES-128, 4-byte salt), as the channel would deliver it.
struct Keys {
    p3::SecretBytes key, salt;
    explicit Keys(unsigned round) {
        std::string k(32, '0'), s(8, '0');
        for (unsigned i = 0; i < 32; ++i) k[i] = "0123456789abcdef"[(round * 7 + i * 3) % 16];
        for (unsigned i = 0; i < 8; ++i) s[i] = "0123456789abcdef"[(round + i) % 16];
        key = hex(k.c_str());
        salt = hex(s.c_str());
    }
    p3::dp::LaneKeys lanes() const { return {key.span(), salt.span(), 2, false}; }
};

// Opens a held frame's copy under lane n's key of (key, salt): the independent check of which
// key a packet was sealed under.
bool opens_under(const Held& h, std::span<const std::uint8_t> key, std::span<const std::uint8_t> salt, unsigned lane) {
    static auto engine = p3::wire::GcmEngine::make();
    const p3::wire::GcmKey k(p3::wire::lane_key_material(key, salt, lane));
    Bytes b = h.bytes;
    const std::size_t len = b.size() - kP3 - 16 - 16;
    return engine->open(k, b.data() + kP3, b.data() + kP3 + 16, len, b.data() + b.size() - 16);
}

}  // namespace

TEST_CASE("rekey: packets reordered across the switch point all decrypt once; the window holds", "[rekey-dp]") {
    for (bool announced : {true, false}) {
        INFO((announced ? "switch point announced" : "switch point learned"));
        Rekey r;
        const Keys k(1);
        REQUIRE(r.t.b.dp->install_next_rx(r.sid_b, k.lanes()));
        r.send(3);
        auto old = r.hold(3);                   // S-3 .. S-1 under the current key
        std::uint64_t first[2] = {};
        REQUIRE(r.t.a.dp->switch_tx(r.sid_a, k.lanes(), first));
        const std::uint64_t S = first[0];
        CHECK(S == old.back().seq + 1);
        r.send(3);
        auto neu = r.hold(3);                   // S .. S+2 under the next key
        CHECK(neu[0].seq == S);
        CHECK(neu[0].id == old[0].id);          // the same P3 ID on the wire
        if (announced) r.t.b.dp->rx_switch_at(r.sid_b, first);
        // S+1, S+2 first, then S-1, S-2, S, then S-3.
        auto got = r.give({neu[1], neu[2], old[2], old[1], neu[0], old[0]});
        check_same(got, r.want);
        CHECK(r.all_drops() == 0);
        CHECK(r.t.b.dp->slots().rx(0x201)->replay().top() == S + 2);
        // Announced: every packet under the right key at once. Learned: S+1 taught the point
        // (second try), S (below it) failed under the current key and was tried again, lowering
        // it; the rest opened once.
        CHECK(r.retries() == (announced ? 0u : 2u));
        CHECK(r.t.b.dp->rx_next_seen(r.sid_b));
        r.t.b.dp->promote_rx(r.sid_b);
        CHECK(r.t.b.dp->slots().rx(0x201)->keys()->cur_from == S);
    }
}

TEST_CASE("rekey: the switch announcement lost: the first packet under the next key teaches the point", "[rekey-dp]") {
    Rekey r;
    const Keys k(2);
    REQUIRE(r.t.b.dp->install_next_rx(r.sid_b, k.lanes()));
    r.send(5);
    r.give(r.hold(5));
    std::uint64_t first[2] = {};
    REQUIRE(r.t.a.dp->switch_tx(r.sid_a, k.lanes(), first));
    CHECK_FALSE(r.t.b.dp->rx_next_seen(r.sid_b));
    // No rx_switch_at: the announcement never came.
    r.send(1);
    auto one = r.hold(1);
    CHECK(one[0].seq == first[0]);
    r.give(one);
    CHECK(r.retries() == 1);                    // tried under the current key, then the next
    CHECK(r.t.b.dp->rx_next_seen(r.sid_b));
    CHECK(r.t.b.dp->slots().rx(0x201)->keys()->learned == first[0]);
    // From then on every packet of the lane opens once.
    r.send(50);
    r.give(r.hold(50));
    CHECK(r.retries() == 1);
    check_same(r.t.deliver(r.t.b, 0, 50), {});
    CHECK(r.all_drops() == 0);
    r.t.b.dp->promote_rx(r.sid_b);
    CHECK(r.t.b.dp->slots().rx(0x201)->keys()->cur_from == first[0]);
    CHECK(r.t.b.dp->slots().rx(0x201)->keys()->next == nullptr);
    CHECK(r.t.b.dp->session_totals(r.sid_b).rx_pkts == 56);
}

TEST_CASE("rekey: a packet from before the switch arriving late: under the old key until promotion, "
          "then dropped without AES", "[rekey-dp]") {
    Rekey r;
    const Keys k(3);
    REQUIRE(r.t.b.dp->install_next_rx(r.sid_b, k.lanes()));
    r.send(2);
    auto late = r.hold(2);                      // both held back
    std::uint64_t first[2] = {};
    REQUIRE(r.t.a.dp->switch_tx(r.sid_a, k.lanes(), first));
    r.t.b.dp->rx_switch_at(r.sid_b, first);
    r.send(20);
    r.give(r.hold(20));
    // Before promotion: the old key still opens it, once.
    CHECK(r.give({late[0]}).size() == 1);
    CHECK(r.retries() == 0);
    CHECK(r.auth() == 0);
    // After promotion: below the current key's switch point, dropped before any AES.
    r.t.b.dp->promote_rx(r.sid_b);
    const auto dec = r.decrypted();
    CHECK(r.give({late[1]}).empty());
    CHECK(r.t.b.dp->drops(Drop::P3_OLD_KEY) == 1);
    // ... on the session as an old-key drop (not among "the rest"), and by name.
    CHECK(r.t.b.dp->session_totals(r.sid_b).rx_old_key == 1);
    CHECK(r.t.b.dp->session_totals(r.sid_b).rx_dropped == 0);
    const auto by_name = r.t.b.dp->control_port().drops();
    CHECK(std::find(by_name.begin(), by_name.end(), std::pair<std::string, std::uint64_t>{"p3_old_key", 1}) != by_name.end());
    CHECK(r.auth() == 0);
    CHECK(r.decrypted() == dec);
    CHECK(r.retries() == 0);
    CHECK(r.t.b.dp->session_totals(r.sid_b).rx_pkts == 21);
}

TEST_CASE("rekey: a forged packet costs one tag check, two only while a next key is pending and unannounced",
          "[rekey-dp]") {
    Rekey r;
    r.send(1);
    auto h = r.hold(1);
    Held forged = h[0];
    forged.bytes[kP3 + 16 + 5] ^= 0x20;         // one ciphertext bit
    // Tag checks = opens in the batch (each packet that reaches it: decrypted or p3_auth)
    // + second tries under the next key.
    auto checks = [&] { return r.decrypted() + r.auth() + r.retries(); };
    auto try_forged = [&] {
        const auto before = checks();
        const auto auth = r.auth();
        CHECK(r.give({forged}).empty());
        CHECK(r.auth() == auth + 1);
        return checks() - before;
    };
    CHECK(try_forged() == 1);                   // no next key
    const Keys k(4);
    REQUIRE(r.t.b.dp->install_next_rx(r.sid_b, k.lanes()));
    CHECK(try_forged() == 2);                   // pending, switch point unknown: cur, then next
    CHECK(try_forged() == 2);                   // (a forged packet teaches nothing)
    CHECK(r.t.b.dp->slots().rx(0x201)->keys()->learned == 0);
    const std::uint64_t at[2] = {h[0].seq + 100, h[0].seq + 100};
    r.t.b.dp->rx_switch_at(r.sid_b, at);
    CHECK(try_forged() == 1);                   // announced: one key by sequence
    // The genuine packet still opens once, under the current key.
    const auto before = checks();
    CHECK(r.give(h).size() == 1);
    CHECK(checks() - before == 1);
}

TEST_CASE("rekey: the outbound switch's first sequence is exact on an idle and a busy lane; every packet "
          "opens under exactly one key", "[rekey-dp]") {
    Rekey r;
    const auto ab = hex(kAtoB128.key), ab_salt = hex(kAtoB128.salt);
    r.send(10, -1);
    r.give(r.hold(10));
    // Idle: nothing is sent while the control thread switches; its claim gives last + 1.
    const Keys k1(5);
    REQUIRE(r.t.b.dp->install_next_rx(r.sid_b, k1.lanes()));
    const std::uint64_t last0 = r.t.a.dp->tx_last_seq(r.sid_a, 0), last1 = r.t.a.dp->tx_last_seq(r.sid_a, 1);
    std::uint64_t first[2] = {};
    REQUIRE(r.t.a.dp->switch_tx(r.sid_a, k1.lanes(), first));
    CHECK(first[0] == last0 + 1);
    CHECK(first[1] == last1 + 1);
    CHECK(r.t.a.dp->tx_packets(r.sid_a) == 0);
    r.t.b.dp->rx_switch_at(r.sid_b, first);
    r.send(2, 0);
    auto idle = r.hold(2);
    CHECK(idle[0].seq == first[0]);
    CHECK(opens_under(idle[0], k1.key.span(), k1.salt.span(), 0));
    CHECK_FALSE(opens_under(idle[0], ab.span(), ab_salt.span(), 0));
    CHECK(r.t.a.dp->tx_packets(r.sid_a) == 2);
    r.give(idle);
    r.t.b.dp->promote_rx(r.sid_b);

    // Busy: both workers are sealing a backlog while the switch happens.
    const Keys k2(6);
    REQUIRE(r.t.b.dp->install_next_rx(r.sid_b, k2.lanes()));
    const std::uint64_t start[2] = {r.t.a.dp->tx_last_seq(r.sid_a, 0) + 1, r.t.a.dp->tx_last_seq(r.sid_a, 1) + 1};
    std::thread feeder([&] {   // the LAN keeps both workers sealing for a while
        for (int c = 0; c < 120; ++c) {
            r.send(10, -1);
            std::this_thread::sleep_for(std::chrono::microseconds(300));
        }
    });
    for (int i = 0; i < 20000 && (r.t.a.dp->tx_last_seq(r.sid_a, 0) < start[0] + 100 ||
                                  r.t.a.dp->tx_last_seq(r.sid_a, 1) < start[1] + 100); ++i)
        std::this_thread::sleep_for(std::chrono::microseconds(50));
    std::uint64_t first2[2] = {};
    REQUIRE(r.t.a.dp->switch_tx(r.sid_a, k2.lanes(), first2));
    feeder.join();
    auto all = r.hold(1200);
    std::map<std::uint32_t, std::set<std::uint64_t>> seqs;
    unsigned wrong = 0, old_n = 0, new_n = 0;
    for (const Held& h : all) {
        const unsigned lane = h.id - 0x201;
        REQUIRE(lane < 2);
        seqs[h.id].insert(h.seq);
        const bool under_old = opens_under(h, k1.key.span(), k1.salt.span(), lane);
        const bool under_new = opens_under(h, k2.key.span(), k2.salt.span(), lane);
        if (under_old == under_new || under_new != (h.seq >= first2[lane])) ++wrong;
        (under_new ? new_n : old_n) += 1;
    }
    CHECK(wrong == 0);
    CHECK(old_n > 0);                           // the switch fell inside the stream
    CHECK(new_n > 0);
    for (unsigned lane = 0; lane < 2; ++lane) {   // every sequence once, none skipped
        const auto& s = seqs[0x201 + lane];
        CHECK(s.size() == 600);
        CHECK(*s.begin() == start[lane]);
        CHECK(*s.rbegin() == start[lane] + 599);
        CHECK(first2[lane] >= start[lane]);
        CHECK(first2[lane] <= start[lane] + 600);
    }
    // B, told nothing, learns each lane's point and delivers everything once.
    std::vector<Bytes> got;
    for (const Held& h : all) inject(r.t.b.wan.rx[h.ring % 2], h.bytes);
    got = r.t.deliver(r.t.b, 1200);
    check_same(got, std::vector<Bytes>(r.want.end() - 1200, r.want.end()));
    CHECK(r.all_drops() == 0);
}

TEST_CASE("rekey: 100 switches: one P3 ID per lane, sequences only go up, old keys wiped, nothing lost",
          "[rekey-dp]") {
    Rekey r;
    std::map<std::uint32_t, std::uint64_t> top;   // P3 ID -> last sequence seen on the wire
    std::vector<Bytes> got;
    unsigned bad_ids = 0, backwards = 0;
    for (unsigned round = 0; round < 100; ++round) {
        const Keys k(100 + round);
        REQUIRE(r.t.b.dp->install_next_rx(r.sid_b, k.lanes()));
        std::uint64_t first[2] = {};
        REQUIRE(r.t.a.dp->switch_tx(r.sid_a, k.lanes(), first));
        if (round % 2 == 0) r.t.b.dp->rx_switch_at(r.sid_b, first);   // every other one announced
        r.send(4, -1);
        for (const Held& h : r.hold(4)) {
            if (h.id != 0x201 && h.id != 0x202) ++bad_ids;
            if (h.seq <= top[h.id]) ++backwards;
            top[h.id] = h.seq;
            inject(r.t.b.wan.rx[h.ring % 2], h.bytes);
        }
        auto g = r.t.deliver(r.t.b, 4, 100);
        got.insert(got.end(), g.begin(), g.end());
        CHECK(r.t.b.dp->rx_next_seen(r.sid_b));
        r.t.b.dp->promote_rx(r.sid_b);
    }
    CHECK(bad_ids == 0);
    CHECK(backwards == 0);
    CHECK(top.size() == 2);
    CHECK(top[0x201] == 200);                   // 2 packets per lane per round, from 1, never reset
    CHECK(top[0x202] == 200);
    check_same(got, r.want);
    CHECK(r.all_drops() == 0);
    for (End* e : {&r.t.a, &r.t.b}) {
        e->dp->slots().synchronize();
        const auto st = e->dp->slots().stats();
        CHECK(st.freed == 0);                   // no slot was ever replaced
        CHECK(st.rx_published == 2);
        CHECK(st.tx_published == 2);
    }
    CHECK(r.t.a.dp->slots().stats().keys_freed == 2 * 100);   // each outbound key, wiped once replaced
    CHECK(r.t.b.dp->slots().stats().keys_freed == 2 * 100);   // each inbound key, wiped once promoted away
}

// The one place a worker's stage can hold packets under a lane's old key when it takes the new
// one: a run of another session in between, within one burst. Those packets take their
// sequences when the stage is sealed, so the worker seals them before it claims the new key's
// first sequence (else it would claim a sequence the old key then uses). Driven by hand: the
// test thread is worker 0 (online on the dataplane's RCU), a second thread the control thread,
// whose switch_tx blocks until the worker's quiescent report.
TEST_CASE("rekey: a worker that takes a new key with older packets staged seals them first; first_seq stays exact",
          "[rekey-dp]") {
    test_pool();
    End e;
    e.lan = make_port("rkhl", rings("rkhlr", 1), rings("rkhlt", 1));
    e.wan = make_port("rkhw", rings("rkhwr", 1), rings("rkhwt", 1));
    e.cfg = make_config(Side{"10.1.0.1/24", "192.0.2.1/24", "10.1.0.254", "192.0.2.254"}, e.lan.port, e.wan.port);
    const KeyDir k2{"202122232425262728292a2b2c2d2e2f", "0b0b0b0b", 0x401};
    const KeyDir k3{"303132333435363738393a3b3c3d3e3f", "0c0c0c0c", 0x501};
    const Net peer2{"10.2.0.1/24", "10.2.0.254", "198.51.100.2/24", "198.51.100.254", "198.51.100.2"};
    const Net peer3{"10.3.0.1/24", "10.3.0.254", "198.51.100.3/24", "198.51.100.254", "198.51.100.3"};
    e.cfg.remotes.push_back(peer_remote(2, peer2, {"10.2.0.0/16"}, k2, kBtoA128, false, 1));
    e.cfg.remotes.push_back(peer_remote(3, peer3, {"10.3.0.0/16"}, k3, KeyDir{kBtoA128.key, kBtoA128.salt, 0x302},
                                        false, 1));
    p3::dp::Options o;
    o.name = "rkh";
    o.lcores = {1};
    e.dp = std::make_unique<p3::dp::Dataplane>(e.cfg, o);
    REQUIRE(e.dp->init());   // not started: this thread runs worker 0's code
    e.lan_mac = mac_of(e.lan.port);
    const std::uint32_t s2 = e.dp->session_of(2), s3 = e.dp->session_of(3);
    p3::dp::Lcore& L = e.dp->lcore_for_test(0);
    const auto& S = e.dp->shared();
    rte_rcu_qsbr* q = e.dp->qsbr();
    REQUIRE(rte_rcu_qsbr_thread_register(q, 0) == 0);
    rte_rcu_qsbr_thread_online(q, 0);
    auto frame = [&](const char* dst, std::uint8_t fill) {
        Bytes f = packet(e.lan_mac, false, "10.1.5.7", dst, 100, fill);
        f[22] -= 1;   // what classification hands on: TTL already decremented
        rte_mbuf* m = rte_pktmbuf_alloc(test_pool());
        REQUIRE(m != nullptr);
        std::memcpy(rte_pktmbuf_append(m, static_cast<std::uint16_t>(f.size())), f.data(), f.size());
        return m;
    };
    p3::dp::OutStage st;
    p3::dp::outbound_one(L, S, st, frame("10.2.5.9", 1), s2);   // session 2, its first key: staged
    p3::dp::outbound_one(L, S, st, frame("10.3.5.9", 2), s3);   // another session's run
    const p3::wire::TxKey* old_key = e.dp->slots().tx(s2, 0)->current();
    const Keys nk(9);
    std::uint64_t first[1] = {};
    bool switched = false;
    std::thread control([&] { switched = e.dp->switch_tx(s2, nk.lanes(), first); });
    while (e.dp->slots().tx(s2, 0)->current() == old_key) std::this_thread::yield();
    // Session 2 again, in the same burst: the new key, with the old one's packet still staged.
    p3::dp::outbound_one(L, S, st, frame("10.2.5.9", 3), s2);
    p3::dp::outbound_flush(L, S, st);
    rte_rcu_qsbr_quiescent(q, 0);   // the end of the burst: the control thread's grace period ends
    control.join();
    REQUIRE(switched);
    CHECK(first[0] == 2);
    CHECK(st.passed == 2);          // the staged packets were sealed before the claim
    std::vector<Held> out;
    for (auto& f : grab(e.wan.tx))
        out.push_back({f.ring, f.bytes, p3::be::get32(f.bytes.data() + kP3 + 4), p3::be::get64(f.bytes.data() + kP3 + 8)});
    REQUIRE(out.size() == 3);
    const auto old_k = hex(k2.key), old_s = hex(k2.salt);
    unsigned checked = 0;
    for (const Held& h : out) {
        if (h.id != 0x401) continue;
        const bool under_new = opens_under(h, nk.key.span(), nk.salt.span(), 0);
        CHECK(under_new != opens_under(h, old_k.span(), old_s.span(), 0));
        CHECK(under_new == (h.seq >= first[0]));
        ++checked;
    }
    CHECK(checked == 2);
    rte_rcu_qsbr_thread_offline(q, 0);
    rte_rcu_qsbr_thread_unregister(q, 0);
    stop_end(e);
}
