// The setup exchange into a real dataplane (ring ports, one worker): a primary engine whose
// SessionSink is the DataplanePort and a secondary engine recording what it got. After the
// exchange the primary's session is up, and traffic flows under the negotiated keys in both
// directions: a LAN packet leaves the WAN encrypted with the P3 ID the secondary chose and
// opens with the secondary's receive key (checked here with OpenSSL, independently of the
// dataplane's crypto), and a packet the test seals with the secondary's send key comes out of
// the primary's LAN.
#include "tests/dataplane/bench.hpp"

#include <cstdio>

#include "common/slots.hpp"
#include "common/wire_limits.hpp"
#include "control/control_thread.hpp"
#include "control/dp_port.hpp"
#include "control/setup/dp_control.hpp"
#include "control/setup/ike_crypto.hpp"
#include "setup_harness.hpp"

using namespace p3test;
using p3::setup::test::psk;

namespace {

std::uint32_t be32(const Bytes& b, std::size_t off) {
    return std::uint32_t(b[off]) << 24 | std::uint32_t(b[off + 1]) << 16 | std::uint32_t(b[off + 2]) << 8 | b[off + 3];
}

// One frame out of `tx`; an ARP request on the way (the appliance resolving an on-link next
// hop) is answered from a host MAC through `rx` first.
Bytes next_frame(const std::vector<rte_ring*>& tx, rte_ring* rx, const Mac& port_mac) {
    for (int i = 0; i < 3; ++i) {
        auto out = collect(tx, 1);
        if (out.size() != 1) return {};
        if (get16(out[0], 12) != 0x0806) return out[0];
        char tpa[16];
        std::snprintf(tpa, sizeof tpa, "%u.%u.%u.%u", out[0][38], out[0][39], out[0][40], out[0][41]);
        char spa[16];
        std::snprintf(spa, sizeof spa, "%u.%u.%u.%u", out[0][28], out[0][29], out[0][30], out[0][31]);
        inject(rx, arp(2, port_mac, kHostMac, tpa, port_mac, spa));
    }
    return {};
}

}  // namespace

TEST_CASE("setup into the dataplane: keys installed as slots, traffic flows both ways", "[setup-dp]") {
    Single a("sdp", Side{"10.1.0.1/24", "192.0.2.1/24", "10.1.0.254", "192.0.2.254"},
             one(remote(7, "192.0.2.2", {"10.2.0.0/24"})), {1});
    const std::uint32_t sid = a.dp->session_of(7);
    REQUIRE(sid != 0);
    CHECK(a.dp->sessions().state(sid) == p3::dp::SessionState::down);

    p3::control::ManualClock clock;
    p3::control::SeededRandom rp(11), rs(12);
    p3::setup::test::Queue to_s(clock), to_p(clock);
    std::uint32_t up_sid = 0;
    std::pair<std::uint32_t, std::uint32_t> lanes{0, 0};
    p3::control::DataplanePort sink_p(a.dp->control_port(), [&](const p3::setup::EstablishedSession&, p3::SessionId s, std::uint32_t local_lanes, std::uint32_t peer_lanes) {
                                        up_sid = s.raw();
                                        lanes = {local_lanes, peer_lanes};
                                    });
    p3::setup::test::RecordingSink sink_s(0x2000);
    sink_s.lanes = 2;   // the secondary announces two sending lanes
    p3::setup::SetupEngine p(p3::setup::test::primary_config({}), psk("dp test key, 16+ bytes"), {}, clock, rp, to_s, sink_p);
    p3::setup::SetupEngine s(p3::setup::test::secondary_config({}), psk("dp test key, 16+ bytes"), {}, clock, rs, to_p, sink_s);
    REQUIRE(s.connect(1));
    for (int i = 0; i < 10; ++i) {
        while (!to_p.q.empty()) {
            auto d = to_p.q.front();
            to_p.q.pop_front();
            p.on_datagram(d.from, d.to, d.data);
        }
        while (!to_s.q.empty()) {
            auto d = to_s.q.front();
            to_s.q.pop_front();
            s.on_datagram(d.from, d.to, d.data);
        }
    }
    REQUIRE(sink_s.sessions.size() == 1);
    REQUIRE(sink_p.installed() == 1);
    CHECK(up_sid == sid);
    CHECK(lanes.first == 1);                       // one sending worker here
    CHECK(lanes.second == 2);                      // the secondary's lanes, as it announced them
    // Exactly its two inbound slots: nothing else reserved or published for the session.
    CHECK(a.dp->slots().stats().rx_published == 2);
    CHECK(a.dp->slots().stats().rx_reserved == 0);
    CHECK(a.dp->sessions().state(sid) == p3::dp::SessionState::up);
    const auto& sec = sink_s.sessions[0];

    SECTION("primary -> secondary: encrypted under the secondary's P3 ID and receive key") {
        const Bytes in = ipv4_frame(a.lan_mac, kHostMac, "10.1.0.5", "10.2.0.5", 17, 64, 64, 0x4000, 3);
        inject(a.lan.rx[0], in);
        const Bytes f = next_frame(a.wan.tx, a.wan.rx[0], a.wan_mac);
        REQUIRE(f.size() > 14 + 20 + 16 + 16);
        CHECK(get16(f, 12) == 0x0800);
        CHECK(f[14 + 9] == 50);
        const std::size_t h = 14 + 20;
        CHECK(be32(f, h) == 0);                    // P3 flags
        CHECK(be32(f, h + 4) == sec.rx_p3_id);     // receiver-chosen ID
        const Bytes aad(f.begin() + h, f.begin() + h + 16);
        const Bytes iv(f.begin() + h + 8, f.begin() + h + 16);
        const Bytes ct(f.begin() + h + 16, f.end());
        p3::SecretBytes plain;
        REQUIRE(p3::setup::gcm_open(sec.data_rx.key.span(), sec.data_rx.salt.span(), iv, aad, ct, plain));
        const auto pt = plain.span();
        REQUIRE(pt.size() >= in.size() - 14 + 2);
        CHECK(pt[pt.size() - 1] == 4);             // next header: IPv4
        // The inner packet: same addresses and payload as sent (TTL and checksum may differ).
        CHECK(std::equal(in.begin() + 14 + 12, in.begin() + 14 + 20, pt.begin() + 12));
        CHECK(std::equal(in.begin() + 14 + 20, in.end(), pt.begin() + 20));
    }

    SECTION("secondary -> primary: a packet sealed with the secondary's send key reaches the LAN") {
        const Bytes inner_frame = ipv4_frame(kHostMac, kHostMac, "10.2.0.5", "10.1.0.5", 17, 64, 64, 0x4000, 9);
        const Bytes inner(inner_frame.begin() + 14, inner_frame.end());
        Bytes plain = inner;
        plain.push_back(0);  // pad length
        plain.push_back(4);  // next header
        Bytes hdr = {0, 0, 0, 0};
        for (int i = 3; i >= 0; --i) hdr.push_back(std::uint8_t(sec.tx_p3_id >> (8 * i)));
        const Bytes seq = {0, 0, 0, 0, 0, 0, 0, 1};
        hdr.insert(hdr.end(), seq.begin(), seq.end());
        Bytes sealed;
        REQUIRE(p3::setup::gcm_seal(sec.data_tx.key.span(), sec.data_tx.salt.span(), seq, hdr, plain, sealed));
        Bytes outer = ipv4_frame(a.wan_mac, kGwMac, "192.0.2.2", "192.0.2.1", 50, 0, 64, 0x4000, 0);
        outer.insert(outer.end(), hdr.begin(), hdr.end());
        outer.insert(outer.end(), sealed.begin(), sealed.end());
        put16(outer, 14 + 2, std::uint16_t(outer.size() - 14));
        outer[14 + 10] = outer[14 + 11] = 0;
        put16(outer, 14 + 10, csum(outer.data() + 14, 20));
        inject(a.wan.rx[0], outer);
        const Bytes f = next_frame(a.lan.tx, a.lan.rx[0], a.lan_mac);
        REQUIRE(f.size() == inner_frame.size());
        CHECK(std::equal(inner.begin() + 12, inner.begin() + 20, f.begin() + 14 + 12));
        CHECK(std::equal(inner.begin() + 20, inner.end(), f.begin() + 14 + 20));
    }
}

namespace {

// Ethernet + IPv4 + UDP (checksum 0) carrying payload.
Bytes udp_frame(const Mac& dst, const char* sip, const char* dip, std::uint16_t sport, std::uint16_t dport,
                const Bytes& payload) {
    Bytes f = ipv4_frame(dst, kGwMac, sip, dip, 17, payload.size());
    put16(f, 34, sport);
    put16(f, 36, dport);
    std::copy(payload.begin(), payload.end(), f.begin() + 42);
    return f;
}

// The RFC 768 checksum of an IPv4/UDP frame verifies (0 = not sent is refused here).
bool udp_checksum_ok(const Bytes& f) {
    const std::size_t ulen = get16(f, 38);
    std::uint32_t acc = 0;
    for (std::size_t i = 26; i < 34; i += 2) acc += get16(f, i);
    acc += 17 + ulen;
    for (std::size_t i = 0; i + 1 < ulen; i += 2) acc += get16(f, 34 + i);
    if (ulen & 1) acc += std::uint32_t(f[34 + ulen - 1]) << 8;
    while (acc >> 16) acc = (acc & 0xffff) + (acc >> 16);
    return get16(f, 40) != 0 && acc == 0xffff;
}

}  // namespace

TEST_CASE("setup inside the dataplane: IKE through the WAN port and the control thread brings the session up",
          "[setup-dp]") {
    test_pool();
    static unsigned seq = 0;
    const std::string n = "scp" + std::to_string(seq++);
    RingPort lan = make_port(n + "l", rings(n + "lr", 2), rings(n + "lt", 1));
    RingPort wan = make_port(n + "w", rings(n + "wr", 2), rings(n + "wt", 1));
    p3::config::Config cfg = make_config(Side{"10.1.0.1/24", "192.0.2.1/24", "10.1.0.254", "192.0.2.254"}, lan.port, wan.port);
    cfg.remotes = one(remote(7, "192.0.2.2", {"10.2.0.0/24"}));
    const p3::config::Config engine_cfg = p3::setup::test::primary_config({});
    p3::control::SteadyClock clock;
    p3::control::SystemRandom rnd;
    p3::dp::Options o;
    o.name = n;
    o.lcores = {1};
    auto dp = std::make_unique<p3::dp::Dataplane>(cfg, o);
    REQUIRE(dp->init());
    p3::control::DataplanePort port(dp->control_port());
    p3::setup::SetupControlPlane scp(engine_cfg, psk("dp test key, 16+ bytes"), {}, clock, rnd, port);
    p3::control::ControlThread ctl(dp->control_port(), &scp, clock);
    REQUIRE(dp->start());
    REQUIRE(ctl.start(n + "-ctl"));
    const Mac wan_mac = mac_of(wan.port);
    const std::uint32_t sid = dp->session_of(7);
    REQUIRE(sid != 0);

    // The test thread is the secondary, on the far side of the WAN port.
    p3::control::ManualClock sclock;
    p3::control::SeededRandom srnd(3);
    p3::setup::test::Queue to_p(sclock);
    p3::setup::test::RecordingSink sink_s(0x2000);
    p3::setup::SetupEngine s(p3::setup::test::secondary_config({}), psk("dp test key, 16+ bytes"), {}, sclock, srnd, to_p, sink_s);
    REQUIRE(s.connect(1));
    std::size_t replies = 0, bad_checksum = 0;
    const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (sink_s.sessions.empty() && std::chrono::steady_clock::now() < end) {
        while (!to_p.q.empty()) {
            const auto d = to_p.q.front();
            to_p.q.pop_front();
            inject(wan.rx[0], udp_frame(wan_mac, "192.0.2.2", "192.0.2.1", d.from.port, d.to.port, d.data));
        }
        const Bytes f = next_frame(wan.tx, wan.rx[0], wan_mac);
        if (f.size() < 42 || get16(f, 12) != 0x0800 || f[23] != 17) continue;
        ++replies;
        if (!udp_checksum_ok(f)) ++bad_checksum;
        const p3::setup::Endpoint from{*p3::IpAddr::parse("192.0.2.1"), get16(f, 34)};
        const p3::setup::Endpoint to{*p3::IpAddr::parse("192.0.2.2"), get16(f, 36)};
        CHECK(from.port == 5653);
        s.on_datagram(from, to, Bytes(f.begin() + 42, f.begin() + 34 + get16(f, 38)));
    }
    REQUIRE(sink_s.sessions.size() == 1);
    CHECK(replies == 2);
    CHECK(bad_checksum == 0);
    // Keys are installed before the IKE_AUTH response leaves: the session is up already.
    CHECK(dp->sessions().state(sid) == p3::dp::SessionState::up);
    CHECK(sink_s.sessions[0].config.primary_subnets.size() == 1);

    ctl.stop();
    dp->request_stop();
    dp->wait();
    CHECK(scp.sessions_up() == 1);
    CHECK(scp.send_failed() == 0);
    CHECK(scp.not_setup() == 0);
    dp->close();
    for (auto* v : {&lan.rx, &lan.tx, &wan.rx, &wan.tx})
        for (auto* r : *v) Single::drain_free(r);
}

TEST_CASE("setup into the dataplane behind a NAT: P3 goes in UDP to where the NAT showed the secondary",
          "[setup-dp]") {
    Single a("sdpn", Side{"10.1.0.1/24", "192.0.2.1/24", "10.1.0.254", "192.0.2.254"},
             one(remote(7, "192.0.2.2", {"10.2.0.0/24"})), {1});
    const std::uint32_t sid = a.dp->session_of(7);
    REQUIRE(sid != 0);
    p3::control::ManualClock clock;
    p3::control::SeededRandom rp(21), rs(22);
    p3::setup::test::Queue to_s(clock), to_p(clock);
    p3::control::DataplanePort sink_p(a.dp->control_port());
    p3::setup::test::RecordingSink sink_s(0x2000);
    p3::setup::test::PairConfig pc;
    pc.secondary_addr = *p3::IpAddr::parse("10.0.0.2");
    p3::setup::SetupEngine p(p3::setup::test::primary_config(pc), psk("dp test key, 16+ bytes"), {}, clock, rp, to_s, sink_p);
    p3::setup::SetupEngine s(p3::setup::test::secondary_config(pc), psk("dp test key, 16+ bytes"), {}, clock, rs, to_p, sink_s);
    const p3::setup::Endpoint outside = p3::setup::test::ep("198.51.100.7", 40000);
    REQUIRE(s.connect(1));
    for (int i = 0; i < 10; ++i) {
        while (!to_p.q.empty()) {
            auto d = to_p.q.front();
            to_p.q.pop_front();
            p.on_datagram(outside, d.to, d.data);  // the NAT rewrote the source
        }
        while (!to_s.q.empty()) {
            auto d = to_s.q.front();
            to_s.q.pop_front();
            s.on_datagram(d.from, p3::setup::test::ep("10.0.0.2", 5653), d.data);
        }
    }
    REQUIRE(sink_s.sessions.size() == 1);
    REQUIRE(sink_p.installed() == 1);
    CHECK(sink_s.sessions[0].local_behind_nat);
    const Bytes in = ipv4_frame(a.lan_mac, kHostMac, "10.1.0.5", "10.2.0.5", 17, 64, 64, 0x4000, 3);
    inject(a.lan.rx[0], in);
    const Bytes f = next_frame(a.wan.tx, a.wan.rx[0], a.wan_mac);
    REQUIRE(f.size() > 14 + 20 + 8 + 16 + 16);
    CHECK(f[14 + 9] == 17);
    CHECK(std::equal(f.begin() + 14 + 16, f.begin() + 14 + 20, p3::IpAddr::parse("198.51.100.7")->bytes.begin()));
    CHECK(get16(f, 34) == 4500);
    CHECK(get16(f, 36) == 4500);
    const std::size_t h = 14 + 20 + 8;
    CHECK(be32(f, h + 4) == sink_s.sessions[0].rx_p3_id);
    const Bytes aad(f.begin() + h, f.begin() + h + 16);
    const Bytes iv(f.begin() + h + 8, f.begin() + h + 16);
    const Bytes ct(f.begin() + h + 16, f.end());
    p3::SecretBytes plain;
    CHECK(p3::setup::gcm_open(sink_s.sessions[0].data_rx.key.span(), sink_s.sessions[0].data_rx.salt.span(), iv, aad,
                              ct, plain));
}

TEST_CASE("setup at run time: a secondary's update() connects a new remote at once; shut, it waits for start",
          "[setup-dp][runtime]") {
    Single a("sdpu", Side{"10.2.0.1/24", "192.0.2.2/24", "10.2.0.254", "192.0.2.254"}, {}, {1}, nullptr, false);
    p3::control::ManualClock clock;
    p3::control::SeededRandom rnd(31);
    p3::control::DataplanePort port(a.dp->control_port());
    // The running configuration, changed between calls as the Appliance does: no remote yet.
    p3::config::Config cfg = p3::setup::test::secondary_config({});
    p3::config::Config with = p3::setup::test::secondary_config({});
    cfg.remotes.clear();
    p3::setup::SetupControlPlane scp(cfg, p3::setup::Credentials{}, {}, clock, rnd, port);
    scp.start();
    clock.advance(std::chrono::seconds(1));
    scp.poll(clock.now());
    REQUIRE(scp.engine());
    CHECK(scp.engine()->counters().sent == 0);

    cfg.remotes.push_back(with.remotes[0].clone());
    const std::uint32_t one_id[] = {1};
    std::string why;
    CHECK(scp.update(cfg, one_id, {}, why));
    CHECK(why.empty());  // no psk_file: no key to read (logged: no credential)
    CHECK(scp.engine()->exchanges() == 1);
    CHECK(scp.engine()->counters().sent == 1);
    // Out of the WAN port now, without waiting for a retry: IKE_SA_INIT to the primary's setup port.
    // The control thread is driven by hand here (it resolves the primary's address).
    Bytes f;
    for (std::uint64_t ms = 1; ms < 40 && f.empty(); ++ms) {
        control_pass(*a.ctl, ms);
        for (const Bytes& b : collect(a.wan.tx, 1, 50)) {
            if (get16(b, 12) == 0x0806 && b.size() >= 42) {  // ARP: answer as the primary
                char tpa[16];
                std::snprintf(tpa, sizeof tpa, "%u.%u.%u.%u", b[38], b[39], b[40], b[41]);
                inject(a.wan.rx[0], arp(2, a.wan_mac, kHostMac, tpa, a.wan_mac, "192.0.2.2"));
            } else if (f.empty()) {
                f = b;
            }
        }
    }
    REQUIRE(f.size() > 42);
    CHECK(get16(f, 12) == 0x0800);
    CHECK(f[23] == 17);
    CHECK(be32(f, 30) == 0xc0000201);  // 192.0.2.1
    CHECK(get16(f, 36) == 5653);
    CHECK(scp.send_failed() == 0);

    // Removed: its exchange goes; nothing is retried for it later.
    cfg.remotes.clear();
    CHECK(scp.update(cfg, {}, one_id, why));
    CHECK(scp.engine()->exchanges() == 0);
    CHECK(!scp.engine()->has_peer(1));
    clock.advance(std::chrono::seconds(120));
    scp.poll(clock.now());
    CHECK(scp.engine()->counters().sent == 1);

    // Added while shut: no connect, no retry, until started.
    scp.set_enabled(1, false);
    cfg.remotes.push_back(with.remotes[0].clone());
    CHECK(scp.update(cfg, one_id, {}, why));
    clock.advance(std::chrono::seconds(120));
    scp.poll(clock.now());
    CHECK(scp.engine()->counters().sent == 1);
    CHECK(!scp.connect(1));
    scp.set_enabled(1, true);
    CHECK(scp.engine()->exchanges() == 1);
    CHECK(scp.engine()->counters().sent == 2);

    // An id the configuration does not hold is named.
    const std::uint32_t nine[] = {9};
    CHECK(!scp.update(cfg, nine, {}, why));
    CHECK(why.find("remote 9") != std::string::npos);
    scp.stop();
}
