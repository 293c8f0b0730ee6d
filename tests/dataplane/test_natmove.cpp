// A UDP-encapsulated session whose peer moves (a NAT in front of B rebinds it to another
// address and port): A learns the move from an authenticated packet only, its replies follow
// with sequences running on, and nothing from the old source or forged from the new one gets
// in. Two dataplanes on ring ports (tunnel_rig.hpp); the test is the wire, and the NAT.
#include <algorithm>
#include <map>

#include "tests/dataplane/tunnel_rig.hpp"
#include "dataplane/worker.hpp"

using namespace p3test;
using namespace p3test::tunnel;
using p3::dp::Drop;

namespace {

constexpr std::size_t kP3 = 14 + 20 + 8;   // the P3 header after outer IPv4 and UDP

std::uint32_t p3_id(const Bytes& f) { return p3::be::get32(f.data() + kP3 + 4); }
std::uint64_t p3_seq(const Bytes& f) { return p3::be::get64(f.data() + kP3 + 8); }

// The outer source (and destination) of an IPv4/UDP frame rewritten as a NAT would, the IPv4
// checksum fixed (the UDP checksum is 0, RFC 3948).
void rewrite(Bytes& f, const char* src, std::uint16_t sport, const char* dst, std::uint16_t dport) {
    const auto s = v4(src), d = v4(dst);
    std::memcpy(&f[26], s.data(), 4);
    std::memcpy(&f[30], d.data(), 4);
    put16(f, 34, sport);
    put16(f, 36, dport);
    f[24] = f[25] = 0;
    put16(f, 24, csum(f.data() + 14, 20));
}

// Frames of `from`'s WAN, waited for (the test relays nothing by itself here).
std::vector<Frame> wan_out(End& from, std::size_t want) {
    std::vector<Frame> out;
    for (int i = 0; i < 500 && out.size() < want; ++i) {
        auto more = grab(from.wan.tx);
        out.insert(out.end(), more.begin(), more.end());
        if (out.size() < want) std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    REQUIRE(out.size() == want);
    return out;
}

// What reaches to's LAN while its control thread runs, until `want` came and a moment passed
// (or nothing came for a while).
std::vector<Bytes> lan_in(Tunnel& t, End& to, std::size_t want, int quiet_ms = 200) {
    std::vector<Bytes> out;
    auto last = std::chrono::steady_clock::now();
    for (;;) {
        control_pass(*to.ctl, t.now_ms);
        auto more = grab(to.lan.tx);
        for (auto& f : more) out.push_back(std::move(f.bytes));
        if (!more.empty()) last = std::chrono::steady_clock::now();
        const auto idle = std::chrono::steady_clock::now() - last;
        if ((out.size() >= want && idle > std::chrono::milliseconds(30)) || idle > std::chrono::milliseconds(quiet_ms))
            return out;
        std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
}

void send_lan(End& from, bool a_to_b, unsigned n, std::uint8_t fill) {
    for (unsigned i = 0; i < n; ++i)
        inject(from.lan.rx[i % 2], packet(from.lan_mac, false, a_to_b ? "10.1.5.7" : "10.2.5.9",
                                          a_to_b ? "10.2.5.9" : "10.1.5.7", 60 + i, static_cast<std::uint8_t>(fill + i)));
}

std::uint64_t moves(End& e, std::uint32_t remote) {
    const auto* v = e.dp->control_port().sessions_view();
    const auto* s = v ? v->by_remote(p3::RemoteId(remote)) : nullptr;
    return s ? s->peer_moves : 0;
}

}  // namespace

TEST_CASE("NAT rebinding: an authenticated packet from a new address and port moves the session, forged and old ones do not",
          "[tunnel][nat][move]") {
    Tunnel t("mv", false, false);
    const std::uint32_t sid_a = t.a.dp->session_of(2), sid_b = t.b.dp->session_of(1);
    const p3::SecretBytes k = hex("5555555555555555555555555555555566666666666666666666666666666666");
    const p3::SecretBytes sa = hex("77777777");
    REQUIRE(t.a.dp->set_peer(sid_a, *p3::IpAddr::parse("198.51.100.2"), 4500, 4500));
    REQUIRE(t.b.dp->set_peer(sid_b, *p3::IpAddr::parse("192.0.2.1"), 4500, 4500));
    auto rb = t.b.dp->reserve_rx_ids(2), ra = t.a.dp->reserve_rx_ids(2);
    REQUIRE(rb);
    REQUIRE(ra);
    const p3::dp::LaneKeys lk{k.span(), sa.span(), 2, false};
    REQUIRE(t.b.dp->install_rx(sid_b, *rb, lk));
    REQUIRE(t.a.dp->install_rx(sid_a, *ra, lk));
    REQUIRE(t.a.dp->install_tx(sid_a, *rb, lk));
    REQUIRE(t.b.dp->install_tx(sid_b, *ra, lk));

    // Before the move: B -> A from 198.51.100.2:4500, A -> B to it.
    send_lan(t.b, false, 4, 0x10);
    auto before = wan_out(t.b, 4);
    for (auto& f : before) {
        CHECK(get16(f.bytes, 34) == 4500);
        std::memcpy(f.bytes.data(), t.a.wan_mac.b, 6);
        inject(t.a.wan.rx[f.ring], f.bytes);
    }
    CHECK(lan_in(t, t.a, 4).size() == 4);
    send_lan(t.a, true, 4, 0x20);
    std::map<std::uint32_t, std::uint64_t> last_seq;   // A's lanes: P3 ID -> last sequence seen
    for (const auto& f : wan_out(t.a, 4)) {
        CHECK(get16(f.bytes, 36) == 4500);
        last_seq[p3_id(f.bytes)] = std::max(last_seq[p3_id(f.bytes)], p3_seq(f.bytes));
    }
    REQUIRE(last_seq.size() == 2);   // both lanes sent

    // Two packets of B's (one per lane) still on their way from the old mapping when the NAT
    // rebinds B to 203.0.113.5:40001; B's next packets, as A receives them.
    send_lan(t.b, false, 2, 0x28);
    auto late = wan_out(t.b, 2);
    for (auto& f : late) std::memcpy(f.bytes.data(), t.a.wan_mac.b, 6);
    send_lan(t.b, false, 4, 0x30);
    auto moved = wan_out(t.b, 4);
    for (auto& f : moved) {
        std::memcpy(f.bytes.data(), t.a.wan_mac.b, 6);
        rewrite(f.bytes, "203.0.113.5", 40001, "192.0.2.1", 4500);
    }
    // Forged copies from the new source (tag broken; one with a sequence far ahead): never
    // delivered, counted as from the wrong peer, and the session stays where it was.
    const auto wrong0 = t.a.dp->drops(Drop::P3_WRONG_PEER);
    for (std::size_t at : {moved[0].bytes.size() - 1, kP3 + 20}) {
        Bytes forged = moved[0].bytes;
        forged[at] ^= 0x01;
        inject(t.a.wan.rx[(moved[0].ring + 1) % 2], forged);
    }
    Bytes ahead = moved[1].bytes;
    p3::be::put64(ahead.data() + kP3 + 8, p3_seq(ahead) + 100000);
    inject(t.a.wan.rx[(moved[1].ring + 1) % 2], ahead);
    CHECK(lan_in(t, t.a, 0, 150).empty());
    for (int i = 0; i < 200 && t.a.dp->drops(Drop::P3_WRONG_PEER) < wrong0 + 3; ++i) {
        control_pass(*t.a.ctl, t.now_ms);
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    CHECK(t.a.dp->drops(Drop::P3_WRONG_PEER) == wrong0 + 3);
    CHECK(t.a.dp->drops(Drop::P3_AUTH) == 0);
    CHECK(moves(t.a, 2) == 0);
    send_lan(t.a, true, 2, 0x40);
    for (const auto& f : wan_out(t.a, 2)) {
        CHECK(get16(f.bytes, 36) == 4500);   // still the old mapping
        CHECK(p3::IpAddr::v4(p3::be::get32(f.bytes.data() + 30)).str() == "198.51.100.2");
        last_seq[p3_id(f.bytes)] = std::max(last_seq[p3_id(f.bytes)], p3_seq(f.bytes));
    }

    // The authentic packets of one lane from the new source: delivered, and A moves the session.
    const std::uint32_t lane_x = p3_id(moved[0].bytes);
    std::size_t n_x = 0;
    for (auto& f : moved)
        if (p3_id(f.bytes) == lane_x) inject(t.a.wan.rx[(f.ring + 1) % 2], f.bytes), ++n_x;
    REQUIRE(n_x == 2);
    CHECK(lan_in(t, t.a, n_x).size() == n_x);
    for (int i = 0; i < 10; ++i) control_pass(*t.a.ctl, t.now_ms);
    CHECK(moves(t.a, 2) == 1);
    // The other lane's late packet from the old mapping arrives now, beyond its lane's window
    // top: authentic, so delivered, but the session does not go back.
    const Frame& late_y = p3_id(late[0].bytes) != lane_x ? late[0] : late[1];
    REQUIRE(p3_id(late_y.bytes) != lane_x);
    inject(t.a.wan.rx[late_y.ring], late_y.bytes);
    CHECK(lan_in(t, t.a, 1).size() == 1);
    for (int i = 0; i < 10; ++i) control_pass(*t.a.ctl, t.now_ms);
    CHECK(moves(t.a, 2) == 1);
    // And the rest of that lane, from the new source.
    for (auto& f : moved)
        if (p3_id(f.bytes) != lane_x) inject(t.a.wan.rx[(f.ring + 1) % 2], f.bytes);
    CHECK(lan_in(t, t.a, 2).size() == 2);
    for (int i = 0; i < 10; ++i) control_pass(*t.a.ctl, t.now_ms);
    CHECK(moves(t.a, 2) == 1);
    const auto* view = t.a.dp->control_port().sessions_view()->by_remote(p3::RemoteId(2));
    REQUIRE(view);
    CHECK(view->peer.str() == "203.0.113.5");

    // A's replies go to the new address and port, each lane's sequence running on.
    send_lan(t.a, true, 6, 0x50);
    auto replies = wan_out(t.a, 6);
    std::map<std::uint32_t, std::uint64_t> after;
    for (auto& f : replies) {
        CHECK(get16(f.bytes, 34) == 4500);
        CHECK(get16(f.bytes, 36) == 40001);
        CHECK(p3::IpAddr::v4(p3::be::get32(f.bytes.data() + 30)).str() == "203.0.113.5");
        const std::uint32_t id = p3_id(f.bytes);
        REQUIRE(last_seq.count(id) == 1);
        CHECK(p3_seq(f.bytes) > last_seq[id]);
        after[id] = after.count(id) ? std::min(after[id], p3_seq(f.bytes)) : p3_seq(f.bytes);
    }
    for (const auto& [id, first] : after) CHECK(first == last_seq[id] + 1);   // no gap, no repeat
    // Through the NAT back to B: B takes them (its windows see sequences that never repeat).
    for (auto& f : replies) {
        std::memcpy(f.bytes.data(), t.b.wan_mac.b, 6);
        rewrite(f.bytes, "192.0.2.1", 4500, "198.51.100.2", 4500);
        inject(t.b.wan.rx[f.ring], f.bytes);
    }
    CHECK(lan_in(t, t.b, 6).size() == 6);
    CHECK(t.b.dp->drops(Drop::P3_REPLAY) == 0);

    // A packet from before the move, replayed from the old address and port: dropped, and the
    // session stays at the new one.
    const auto wrong1 = t.a.dp->drops(Drop::P3_WRONG_PEER);
    Bytes old = before[0].bytes;
    inject(t.a.wan.rx[before[0].ring], old);
    CHECK(lan_in(t, t.a, 0, 150).empty());
    for (int i = 0; i < 200 && t.a.dp->drops(Drop::P3_WRONG_PEER) == wrong1; ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
    CHECK(t.a.dp->drops(Drop::P3_WRONG_PEER) == wrong1 + 1);
    for (int i = 0; i < 10; ++i) control_pass(*t.a.ctl, t.now_ms);
    CHECK(moves(t.a, 2) == 1);
    send_lan(t.a, true, 1, 0x60);
    CHECK(get16(wan_out(t.a, 1)[0].bytes, 36) == 40001);
    CHECK(t.a.dp->session_totals(sid_a).rx_auth == 0);

    // A key switch after the move builds its views for where the peer is now.
    const p3::SecretBytes k2 = hex("88888888888888888888888888888888aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
    std::uint64_t first[2] = {};
    REQUIRE(t.a.dp->switch_tx(sid_a, p3::dp::LaneKeys{k2.span(), sa.span(), 2, false}, first));
    send_lan(t.a, true, 2, 0x70);
    for (const auto& f : wan_out(t.a, 2)) {
        CHECK(get16(f.bytes, 36) == 40001);
        CHECK(p3::IpAddr::v4(p3::be::get32(f.bytes.data() + 30)).str() == "203.0.113.5");
    }
}

TEST_CASE("a flood of forged copies from a new source: each one tag check at most, within the worker's budget",
          "[tunnel][nat][move]") {
    Tunnel t("mf", false, false);
    const std::uint32_t sid_a = t.a.dp->session_of(2), sid_b = t.b.dp->session_of(1);
    const p3::SecretBytes k = hex("5555555555555555555555555555555566666666666666666666666666666666");
    const p3::SecretBytes sa = hex("77777777");
    REQUIRE(t.a.dp->set_peer(sid_a, *p3::IpAddr::parse("198.51.100.2"), 4500, 4500));
    REQUIRE(t.b.dp->set_peer(sid_b, *p3::IpAddr::parse("192.0.2.1"), 4500, 4500));
    auto rb = t.b.dp->reserve_rx_ids(2), ra = t.a.dp->reserve_rx_ids(2);
    REQUIRE(rb);
    REQUIRE(ra);
    const p3::dp::LaneKeys lk{k.span(), sa.span(), 2, false};
    REQUIRE(t.a.dp->install_rx(sid_a, *ra, lk));
    REQUIRE(t.b.dp->install_tx(sid_b, *ra, lk));
    send_lan(t.b, false, 1, 0x10);
    Bytes f = wan_out(t.b, 1)[0].bytes;
    std::memcpy(f.data(), t.a.wan_mac.b, 6);
    rewrite(f, "203.0.113.5", 40001, "192.0.2.1", 4500);
    f.back() ^= 0x01;   // the tag
    // Far more than a worker opens in a burst: every copy is counted, none moves the session,
    // and the workers opened no more than their budgets allow (burst 256 each, plus what the
    // rate refilled meanwhile).
    constexpr unsigned kCopies = 3000;
    std::vector<rte_mbuf*> copies[2];   // built first, so the flood reaches the workers at once
    for (unsigned i = 0; i < kCopies; ++i) {
        rte_mbuf* m = rte_pktmbuf_alloc(test_pool());
        REQUIRE(m != nullptr);
        char* d = rte_pktmbuf_append(m, static_cast<std::uint16_t>(f.size()));
        REQUIRE(d != nullptr);
        std::memcpy(d, f.data(), f.size());
        p3::be::put64(d + kP3 + 8, 1000 + i);   // each beyond the window top
        copies[i % 2].push_back(m);
    }
    const auto t0 = std::chrono::steady_clock::now();
    for (unsigned q = 0; q < 2; ++q)
        REQUIRE(rte_ring_enqueue_bulk(t.a.wan.rx[q], reinterpret_cast<void* const*>(copies[q].data()),
                                      static_cast<unsigned>(copies[q].size()), nullptr) == copies[q].size());
    // The copies on the queue of the worker that does not own the lane go to the owner's
    // handoff ring: what does not fit there is dropped on the way (handoff_full).
    auto dropped = [&] { return t.a.dp->drops(Drop::P3_WRONG_PEER) + t.a.dp->drops(Drop::HANDOFF_FULL); };
    for (int i = 0; i < 500 && dropped() < kCopies; ++i) {
        control_pass(*t.a.ctl, t.now_ms);
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    CHECK(dropped() == kCopies);
    CHECK(t.a.dp->drops(Drop::P3_WRONG_PEER) >= kCopies / 2);   // at least its owner's own queue's
    CHECK(t.a.dp->drops(Drop::P3_AUTH) == 0);
    CHECK(moves(t.a, 2) == 0);
    std::uint64_t opened = 0;
    for (unsigned w = 0; w < t.a.dp->workers(); ++w) opened += t.a.dp->lcore(w).moved_open.allowed();
    INFO("opened " << opened << " of " << kCopies << " in " << secs << " s");
    CHECK(opened > 0);
    CHECK(opened <= t.a.dp->workers() * (p3::dp::kMovedOpenBurst + p3::dp::kMovedOpenRate * (secs + 0.01)));
}

TEST_CASE("a native P3 session keeps the strict peer check: an authentic packet from elsewhere moves nothing",
          "[tunnel][nat][move]") {
    Tunnel t("mn", false, false);
    const auto caught = hold_one_p3(t);   // native P3 (protocol 50) from 192.0.2.1
    Bytes f = caught[0].bytes;
    const auto stranger = v4("203.0.113.9");
    std::memcpy(&f[26], stranger.data(), 4);
    f[24] = f[25] = 0;
    put16(f, 24, csum(f.data() + 14, 20));
    inject(t.b.wan.rx[caught[0].ring], f);
    CHECK(lan_in(t, t.b, 0, 150).empty());
    for (int i = 0; i < 10; ++i) control_pass(*t.b.ctl, t.now_ms);
    CHECK(t.b.dp->drops(Drop::P3_WRONG_PEER) == 1);
    CHECK(moves(t.b, 1) == 0);
}

TEST_CASE("NAT rebinding of a standard ESP-in-UDP peer: an authenticated ESP packet from the new port moves the session",
          "[tunnel][nat][move][esp]") {
    Tunnel t("mve", false, false);
    const std::uint32_t sid_a = t.a.dp->session_of(2), sid_b = t.b.dp->session_of(1);
    const p3::SecretBytes k = hex("1111111111111111111111111111111122222222222222222222222222222222");
    const p3::SecretBytes salt = hex("33333333");
    REQUIRE(t.a.dp->set_peer(sid_a, *p3::IpAddr::parse("198.51.100.2"), 4500, 4500));
    REQUIRE(t.b.dp->set_peer(sid_b, *p3::IpAddr::parse("192.0.2.1"), 4500, 4500));
    const auto spi_a = t.a.dp->reserve_rx_ids(1), spi_b = t.b.dp->reserve_rx_ids(1);
    REQUIRE(spi_a);
    REQUIRE(spi_b);
    auto sa_of = [&](std::uint32_t spi) { return p3::dp::EspSa{spi, k.span(), salt.span(), true}; };
    REQUIRE(t.a.dp->esp_install_rx(sid_a, sa_of(*spi_a)));
    REQUIRE(t.b.dp->esp_install_rx(sid_b, sa_of(*spi_b)));
    REQUIRE(t.a.dp->esp_install_tx(sid_a, sa_of(*spi_b)));
    REQUIRE(t.b.dp->esp_install_tx(sid_b, sa_of(*spi_a)));
    auto spi = [](const Bytes& f) { return p3::be::get32(f.data() + kP3); };
    // One SA is one flow: RSS puts all its packets on one WAN queue of the receiver (the other
    // one after the NAT changed the port), so its window has one writer, as on a NIC. The rig's
    // rings would otherwise hand each sending worker's packets to another receiving worker.

    send_lan(t.b, false, 2, 0x10);
    for (auto& f : wan_out(t.b, 2)) {
        CHECK(spi(f.bytes) == *spi_a);
        std::memcpy(f.bytes.data(), t.a.wan_mac.b, 6);
        inject(t.a.wan.rx[0], f.bytes);
    }
    CHECK(lan_in(t, t.a, 2).size() == 2);

    // The NAT rebinds B to 203.0.113.5:40001. A forged copy from there moves nothing.
    send_lan(t.b, false, 3, 0x30);
    auto moved = wan_out(t.b, 3);
    // B's two workers share the SA's counter, so its rings hold the sequences interleaved; the
    // path delivers them in the order they were numbered.
    std::sort(moved.begin(), moved.end(), [](const Frame& x, const Frame& y) {
        return p3::be::get32(x.bytes.data() + kP3 + 4) < p3::be::get32(y.bytes.data() + kP3 + 4);
    });
    for (auto& f : moved) {
        std::memcpy(f.bytes.data(), t.a.wan_mac.b, 6);
        rewrite(f.bytes, "203.0.113.5", 40001, "192.0.2.1", 4500);
    }
    Bytes forged = moved[0].bytes;
    forged.back() ^= 0x01;
    inject(t.a.wan.rx[1], forged);
    CHECK(lan_in(t, t.a, 0, 150).empty());
    for (int i = 0; i < 10; ++i) control_pass(*t.a.ctl, t.now_ms);
    CHECK(moves(t.a, 2) == 0);
    // The authentic ones: delivered, and the session follows (IKE follows on its own, from
    // the authenticated IKE messages).
    for (auto& f : moved) inject(t.a.wan.rx[1], f.bytes);
    CHECK(lan_in(t, t.a, 3).size() == 3);
    for (int i = 0; i < 10; ++i) control_pass(*t.a.ctl, t.now_ms);
    CHECK(moves(t.a, 2) == 1);

    // A's replies: still ESP under B's SPI, to the new address and port; B takes them.
    send_lan(t.a, true, 3, 0x50);
    auto replies = wan_out(t.a, 3);
    for (auto& f : replies) {
        CHECK(spi(f.bytes) == *spi_b);
        CHECK(get16(f.bytes, 36) == 40001);
        CHECK(p3::IpAddr::v4(p3::be::get32(f.bytes.data() + 30)).str() == "203.0.113.5");
        std::memcpy(f.bytes.data(), t.b.wan_mac.b, 6);
        rewrite(f.bytes, "192.0.2.1", 4500, "198.51.100.2", 4500);
        inject(t.b.wan.rx[0], f.bytes);
    }
    CHECK(lan_in(t, t.b, 3).size() == 3);
    CHECK(t.b.dp->drops(Drop::P3_REPLAY) == 0);
    CHECK(t.a.dp->session_totals(sid_a).rx_auth == 0);
}
