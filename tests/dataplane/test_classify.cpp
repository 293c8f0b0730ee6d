// Classification on one dataplane: each class of frame in, exactly what comes out of which
// port (byte for byte), or which drop reason counts it. The test holds both ends of both
// ring ports; A runs on lcores 1 and 2.
#include <algorithm>

#include "bench.hpp"
#include "dataplane/pkt.hpp"

using namespace p3test;
using p3::dp::Drop;
using p3::dp::CtlClass;
using p3::dp::MsgKind;
using p3::dp::meta;

namespace {

const Side kV4{"10.1.0.1/24", "192.0.2.1/24", nullptr, "192.0.2.254"};
const Side kV6{"fd01::1/64", "2001:db8::1/64", nullptr, nullptr};

std::vector<Bytes> out_of(const RingPort& p, std::size_t want = 1, int quiet_ms = 300) {
    return collect(p.tx, want, quiet_ms);
}

// The reply p3d must produce for an echo request, built from the request by hand.
Bytes echo4_reply(Bytes req) {
    Bytes r = req;
    std::swap_ranges(r.begin(), r.begin() + 6, r.begin() + 6);
    std::swap_ranges(r.begin() + 26, r.begin() + 30, r.begin() + 30);
    r[22] = 64;
    r[24] = r[25] = 0;
    put16(r, 24, csum(r.data() + 14, 20));
    r[34] = 0;
    r[36] = r[37] = 0;
    put16(r, 36, csum(r.data() + 34, r.size() - 34));
    return r;
}

Bytes echo6_reply(Bytes req) {
    Bytes r = req;
    std::swap_ranges(r.begin(), r.begin() + 6, r.begin() + 6);
    std::swap_ranges(r.begin() + 22, r.begin() + 38, r.begin() + 38);
    r[21] = 64;
    r[54] = 129;
    r[56] = r[57] = 0;
    put16(r, 56, csum6(r, 14, 54, r.size() - 54, 58));
    return r;
}

}  // namespace

TEST_CASE("ARP requests for our addresses are answered on the port they came in", "[classify][arp]") {
    Single a("c", kV4, one(remote(1, "192.0.2.2", {"10.2.0.0/16"})));
    const Mac zero{};

    inject(a.lan.rx[0], arp(1, kBcast, kHostMac, "10.1.0.10", zero, "10.1.0.1"));
    auto out = out_of(a.lan);
    REQUIRE(out.size() == 1);
    CHECK(out[0] == arp(2, kHostMac, a.lan_mac, "10.1.0.1", kHostMac, "10.1.0.10"));
    CHECK(out_of(a.wan, 0, 50).empty());

    // The asker is answered but not learned: only next hops we ask for get an entry, so
    // nobody on the link fills the table with addresses of their choosing.
    rte_ether_addr m;
    CHECK_FALSE(a.dp->neighbors(p3::dp::Side::lan).lookup(*p3::IpAddr::parse("10.1.0.10"), m));
    CHECK(a.dp->neighbors(p3::dp::Side::lan).size() == 0);

    inject(a.wan.rx[1], arp(1, kBcast, kGwMac, "192.0.2.254", zero, "192.0.2.1"));
    out = out_of(a.wan);
    REQUIRE(out.size() == 1);
    CHECK(out[0] == arp(2, kGwMac, a.wan_mac, "192.0.2.1", kGwMac, "192.0.2.254"));

    // For someone else: nothing out, counted.
    const auto before = a.drops(Drop::NOT_FOR_US);
    inject(a.lan.rx[0], arp(1, kBcast, kHostMac, "10.1.0.10", zero, "10.1.0.77"));
    CHECK(out_of(a.lan, 0, 100).empty());
    CHECK(a.drops(Drop::NOT_FOR_US) == before + 1);
    // Malformed (hardware length 8): counted under arp_bad.
    Bytes bad = arp(1, kBcast, kHostMac, "10.1.0.10", zero, "10.1.0.1");
    bad[18] = 8;
    inject(a.lan.rx[0], bad);
    CHECK(out_of(a.lan, 0, 100).empty());
    CHECK(a.drops(Drop::ARP_BAD) == 1);
}

TEST_CASE("ICMP echo to our LAN and WAN addresses is answered, byte for byte", "[classify][icmp]") {
    Single a("e", kV4, {});
    for (std::size_t len : {0u, 1u, 56u, 1400u}) {
        Bytes req = icmp4_echo(a.lan_mac, kHostMac, "10.1.0.10", "10.1.0.1", len);
        inject(a.lan.rx[1], req);
        auto out = out_of(a.lan);
        REQUIRE(out.size() == 1);
        CHECK(out[0] == echo4_reply(req));

        req = icmp4_echo(a.wan_mac, kGwMac, "203.0.113.9", "192.0.2.1", len);
        inject(a.wan.rx[0], req);
        out = out_of(a.wan);
        REQUIRE(out.size() == 1);
        CHECK(out[0] == echo4_reply(req));
    }
    CHECK(a.dp->sum(&p3::dp::LcoreStats::echo_replies) == 8);
    // A corrupted ICMP checksum is not answered.
    Bytes req = icmp4_echo(a.lan_mac, kHostMac, "10.1.0.10", "10.1.0.1", 8);
    req[40] ^= 1;
    inject(a.lan.rx[0], req);
    CHECK(out_of(a.lan, 0, 100).empty());
    CHECK(a.drops(Drop::ICMP_BAD) == 1);
}

TEST_CASE("IPv6: neighbour solicitation answered with an advertisement; echo answered", "[classify][nd]") {
    Single a("n", kV6, {});
    // NS from fd01::10 for fd01::1, to the solicited-node address.
    const Mac snm{{0x33, 0x33, 0xff, 0x00, 0x00, 0x01}};
    inject(a.lan.rx[0], ns(snm, kHostMac, "fd01::10", "ff02::1:ff00:1", "fd01::1"));
    auto out = out_of(a.lan);
    REQUIRE(out.size() == 1);
    // Expected NA: to the asker, from fd01::1, S|O flags, target fd01::1, TLLA option.
    Bytes na = ipv6_frame(kHostMac, a.lan_mac, "fd01::1", "fd01::10", 58, 32, 255);
    std::uint8_t* icmp = na.data() + 54;
    std::memset(icmp, 0, 32);
    icmp[0] = 136;
    icmp[4] = 0x60;
    auto t = v6("fd01::1");
    std::memcpy(icmp + 8, t.data(), 16);
    icmp[24] = 2;
    icmp[25] = 1;
    std::memcpy(icmp + 26, a.lan_mac.b, 6);
    na[15] = 0x00;   // traffic class / flow label: the NA is sent with zeros
    na[16] = na[17] = 0x00;
    put16(na, 56, csum6(na, 14, 54, 32, 58));
    CHECK(out[0] == na);
    rte_ether_addr m;   // answered, not learned (as for ARP)
    CHECK_FALSE(a.dp->neighbors(p3::dp::Side::lan).lookup(*p3::IpAddr::parse("fd01::10"), m));

    // NS with hop limit 64: not valid ND (RFC 4861 §7.1.1).
    Bytes bad = ns(snm, kHostMac, "fd01::10", "ff02::1:ff00:1", "fd01::1");
    bad[21] = 64;
    inject(a.lan.rx[0], bad);
    CHECK(out_of(a.lan, 0, 100).empty());
    CHECK(a.drops(Drop::ND_BAD) == 1);

    for (std::size_t len : {0u, 100u}) {
        Bytes req = icmp6_echo(a.wan_mac, kGwMac, "2001:db8::99", "2001:db8::1", len);
        inject(a.wan.rx[1], req);
        out = out_of(a.wan);
        REQUIRE(out.size() == 1);
        CHECK(out[0] == echo6_reply(req));
    }
}

TEST_CASE("malformed and unwanted frames are counted under their reason and never forwarded", "[classify][malformed]") {
    Single a("m", kV4, one(remote(1, "192.0.2.2", {"10.2.0.0/16"})));
    const Mac other{{0x02, 0x99, 0x99, 0x99, 0x99, 0x99}};
    struct Case {
        const char* what;
        bool wan;
        Bytes frame;
        Drop reason;
    };
    auto trunc = [](Bytes b, std::size_t n) {
        b.resize(n);
        return b;
    };
    auto patch = [](Bytes b, std::size_t off, std::uint8_t v) {
        b[off] = v;
        return b;
    };
    const Bytes udp = ipv4_frame(a.lan_mac, kHostMac, "10.1.0.10", "10.2.0.5", 17, 100);
    Bytes p3 = ipv4_frame(a.wan_mac, kGwMac, "192.0.2.2", "192.0.2.1", 50, 60);
    std::fill(p3.begin() + 34, p3.begin() + 38, 0);   // P3 Flags: none
    // Protocol 50 with n bytes of payload whose first word (when it has 4) is w.
    auto proto50 = [&](std::size_t n, std::uint32_t w) {
        Bytes f = ipv4_frame(a.wan_mac, kGwMac, "192.0.2.2", "192.0.2.1", 50, n);
        for (std::size_t i = 0; i < 4 && i < n; ++i) f[34 + i] = static_cast<std::uint8_t>(w >> (24 - 8 * i));
        return f;
    };
    std::vector<Case> cases = {
        {"runt frame", false, Bytes(10, 0xaa), Drop::RX_RUNT},
        {"unicast to another MAC", false, ipv4_frame(other, kHostMac, "10.1.0.10", "10.2.0.5", 17, 10), Drop::NOT_OUR_MAC},
        {"VLAN-tagged", false, eth(a.lan_mac, kHostMac, 0x8100), Drop::ETHERTYPE},
        {"ethertype 0 (802.3 length)", false, patch(eth(a.lan_mac, kHostMac, 0x0000), 13, 0), Drop::ETHERTYPE},
        {"ethertype 0 on the WAN", true, eth(a.wan_mac, kGwMac, 0x0000), Drop::ETHERTYPE},
        {"IPv4 header cut", false, trunc(udp, 14 + 12), Drop::IP_TRUNCATED},
        {"total length beyond frame", false, trunc(udp, 14 + 60), Drop::IP_TRUNCATED},
        {"IP version 5", false, patch(udp, 14, 0x55), Drop::IP_BAD_HEADER},
        {"header length 4 words", false, patch(udp, 14, 0x44), Drop::IP_BAD_HEADER},
        {"bad header checksum", false, patch(udp, 24, udp[24] ^ 0xff), Drop::IP_BAD_HEADER},
        {"TTL 1", false, ipv4_frame(a.lan_mac, kHostMac, "10.1.0.10", "10.2.0.5", 17, 10, 1), Drop::TTL_EXCEEDED},
        {"source is our address", false, ipv4_frame(a.lan_mac, kHostMac, "10.1.0.1", "10.2.0.5", 17, 10), Drop::IP_SRC_BAD},
        {"multicast source", false, ipv4_frame(a.lan_mac, kHostMac, "224.0.0.5", "10.2.0.5", 17, 10), Drop::IP_SRC_BAD},
        {"no route", false, ipv4_frame(a.lan_mac, kHostMac, "10.1.0.10", "172.16.0.1", 17, 10), Drop::NO_ROUTE},
        {"UDP to our LAN address", false, ipv4_frame(a.lan_mac, kHostMac, "10.1.0.10", "10.1.0.1", 17, 10), Drop::NOT_FOR_US},
        {"IPv6 header cut", false, trunc(ipv6_frame(a.lan_mac, kHostMac, "fd01::10", "fd02::5", 17, 20), 14 + 30), Drop::IP_TRUNCATED},
        {"WAN: not for our address", true, ipv4_frame(a.wan_mac, kGwMac, "192.0.2.2", "192.0.2.9", 50, 60), Drop::WAN_NOT_P3},
        {"WAN: TCP to us", true, ipv4_frame(a.wan_mac, kGwMac, "192.0.2.2", "192.0.2.1", 6, 40), Drop::WAN_NOT_P3},
        {"WAN: UDP to another port", true, ipv4_frame(a.wan_mac, kGwMac, "192.0.2.2", "192.0.2.1", 17, 40), Drop::WAN_NOT_P3},
        {"WAN: P3 shorter than header + ICV", true, proto50(20, 0), Drop::P3_TRUNCATED},
        {"WAN: P3 ID of no slot", true, patch(p3, 38, 0x7f), Drop::P3_UNKNOWN_ID},
        // Protocol 50 with a first word other than 0 is ESP, whatever bits it has (the UDP
        // bit too: only UDP carries it).
        {"WAN: protocol 50, first word 0x80000000: an SPI of no SA", true, patch(p3, 34, 0x80), Drop::ESP_UNKNOWN_SPI},
        {"WAN: protocol 50, first word 1: an SPI of no SA", true, patch(p3, 37, 0x01), Drop::ESP_UNKNOWN_SPI},
        {"WAN: ESP shorter than header + trailer + ICV", true, proto50(33, 0x01000001), Drop::ESP_TRUNCATED},
        {"WAN: protocol 50 with 3 bytes", true, proto50(3, 0), Drop::ESP_TRUNCATED},
    };
    // UDP to the NAT port: the first word decides (docs/wire-format.md §Demultiplexing).
    auto nat_udp = [&](const Bytes& payload) {
        Bytes f = ipv4_frame(a.wan_mac, kGwMac, "192.0.2.2", "192.0.2.1", 17, payload.size());
        put16(f, 36, 4500);
        std::copy(payload.begin(), payload.end(), f.begin() + 42);
        return f;
    };
    Bytes body(p3.begin() + 34, p3.end());   // flags 0, P3 ID, sequence, 44 bytes more
    Bytes udp_p3 = body;
    udp_p3[0] = 0x80;
    Bytes bad_flags = udp_p3;
    bad_flags[3] = 0x01;
    Bytes spi = body;
    spi[3] = 0x01;
    cases.push_back({"WAN: UDP P3 with the UDP bit, P3 ID of no slot", true, nat_udp(udp_p3), Drop::P3_UNKNOWN_ID});
    cases.push_back({"WAN: UDP P3 with the UDP bit and another", true, nat_udp(bad_flags), Drop::P3_FLAGS});
    cases.push_back({"WAN: UDP ESP, SPI of no SA", true, nat_udp(spi), Drop::ESP_UNKNOWN_SPI});
    cases.push_back({"WAN: UDP 4500 with 3 bytes", true, nat_udp(Bytes{1, 2, 3}), Drop::ESP_TRUNCATED});
    cases.push_back({"WAN: UDP 4500 with the non-ESP marker alone", true, nat_udp(Bytes{0, 0, 0, 0}), Drop::ESP_TRUNCATED});
    // UDP 4500 keepalive (RFC 3948): consumed.
    Bytes ka = ipv4_frame(a.wan_mac, kGwMac, "192.0.2.2", "192.0.2.1", 17, 1);
    put16(ka, 36, 4500);
    ka[42] = 0xff;
    cases.push_back({"WAN: NAT keepalive", true, ka, Drop::NAT_KEEPALIVE});

    for (const auto& c : cases) {
        INFO(c.what);
        const auto before = a.drops(c.reason);
        inject(c.wan ? a.wan.rx[0] : a.lan.rx[0], c.frame);
        CHECK(out_of(a.lan, 0, 60).empty());
        CHECK(out_of(a.wan, 0, 60).empty());
        // The counter moves once the worker has seen it.
        for (int i = 0; i < 200 && a.drops(c.reason) == before; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(5));
        CHECK(a.drops(c.reason) == before + 1);
    }
}

TEST_CASE("traffic for a session that is down is answered with RST or unreachable", "[classify][down]") {
    Single a("d", kV4, one(remote(1, "192.0.2.2", {"10.2.0.0/16"})));
    REQUIRE(a.dp->sessions().state(a.dp->session_of(1)) == p3::dp::SessionState::down);

    // TCP SYN to a host behind the down session.
    Bytes syn = ipv4_frame(a.lan_mac, kHostMac, "10.1.0.10", "10.2.0.5", 6, 20);
    syn[34 + 12] = 0x50;   // data offset 5
    syn[34 + 13] = 0x02;   // SYN
    inject(a.lan.rx[0], syn);
    auto out = out_of(a.lan);
    REQUIRE(out.size() == 1);
    const Bytes& rst = out[0];
    CHECK(std::memcmp(rst.data(), kHostMac.b, 6) == 0);
    CHECK(get16(rst, 12) == 0x0800);
    CHECK(rst[23] == 6);                                     // TCP
    CHECK(std::memcmp(rst.data() + 26, syn.data() + 30, 4) == 0);   // from the unreachable host
    CHECK(std::memcmp(rst.data() + 30, syn.data() + 26, 4) == 0);
    CHECK((rst[34 + 13] & 0x04) != 0);                       // RST

    // UDP: ICMP destination unreachable from our LAN address.
    inject(a.lan.rx[1], ipv4_frame(a.lan_mac, kHostMac, "10.1.0.10", "10.2.0.5", 17, 30));
    out = out_of(a.lan);
    REQUIRE(out.size() == 1);
    CHECK(out[0][23] == 1);
    CHECK(out[0][34] == 3);
    auto own = v4("10.1.0.1");
    CHECK(std::memcmp(out[0].data() + 26, own.data(), 4) == 0);
    CHECK(a.drops(Drop::SESSION_DOWN) == 2);
    CHECK(a.dp->sum(&p3::dp::LcoreStats::resets) == 1);
    CHECK(a.dp->sum(&p3::dp::LcoreStats::icmp_errors) == 1);
    CHECK(out_of(a.wan, 0, 50).empty());
}

TEST_CASE("the 20-byte IPv4 header check agrees with rte_raw_cksum on valid, corrupted and random headers", "[classify][csum]") {
    std::uint64_t x = 0x9e3779b97f4a7c15ull;
    auto next = [&x] {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        return x;
    };
    unsigned valid = 0, invalid = 0;
    for (int i = 0; i < 20000; ++i) {
        std::uint8_t h[20];
        for (auto& b : h) b = static_cast<std::uint8_t>(next());
        if (i % 2 == 0) {   // half of them made valid first, then sometimes one bit flipped
            h[10] = h[11] = 0;
            const std::uint16_t c = static_cast<std::uint16_t>(~rte_raw_cksum(h, 20));
            std::memcpy(h + 10, &c, 2);
            if (i % 4 == 0) h[next() % 20] ^= static_cast<std::uint8_t>(1u << (next() % 8));
        }
        const bool want = rte_raw_cksum(h, 20) == 0xffff;
        INFO("header " << i);
        REQUIRE(p3::csum::ipv4_hdr20_ok(h) == want);
        (want ? valid : invalid) += 1;
    }
    CHECK(valid > 4000);    // both outcomes really exercised
    CHECK(invalid > 4000);
}

TEST_CASE("UDP to the NAT port with the non-ESP marker reaches the control thread as setup, marker kept", "[classify][demux]") {
    // No control thread: the test reads the setup ring itself.
    Single a("k", kV4, one(remote(1, "192.0.2.2", {"10.2.0.0/16"})), {1, 2}, nullptr, false);
    Bytes ike(40, 0x5a);
    std::fill(ike.begin(), ike.begin() + 4, 0);   // the non-ESP marker, then an IKE header
    Bytes f = ipv4_frame(a.wan_mac, kGwMac, "192.0.2.2", "192.0.2.1", 17, ike.size());
    put16(f, 34, 4500);
    put16(f, 36, 4500);
    std::copy(ike.begin(), ike.end(), f.begin() + 42);
    inject(a.wan.rx[0], f);
    for (int i = 0; i < 400 && a.dp->control_backlog(CtlClass::setup) == 0; ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    REQUIRE(a.dp->control_backlog(CtlClass::setup) == 1);
    rte_mbuf* got[4];
    const unsigned n = a.dp->control_port().dequeue(CtlClass::setup, got);
    REQUIRE(n == 1);
    CHECK(meta(got[0]).kind == MsgKind::setup_udp);
    // The whole frame as it came: the control thread strips the marker (parse_setup_frame).
    REQUIRE(got[0]->pkt_len == f.size());
    CHECK(std::memcmp(rte_pktmbuf_mtod(got[0], const std::uint8_t*), f.data(), f.size()) == 0);
    rte_pktmbuf_free(got[0]);
    CHECK(a.drops(Drop::ESP_TRUNCATED) == 0);
    CHECK(a.drops(Drop::ESP_UNKNOWN_SPI) == 0);
}
