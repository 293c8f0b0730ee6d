// Next-hop resolution: a packet for an unresolved neighbour is held, an ARP request goes
// out, the answer releases it with the learned MAC; unanswered requests are retried and then
// the held packets are dropped and counted; the hold queue is bounded. Packets enter through
// the control->worker ring (tx_ip), as the control plane's would.
#include "bench.hpp"

using namespace p3test;
using p3::dp::Drop;
using p3::dp::MsgKind;
using p3::dp::PktMeta;

namespace {
const Side kV4{"10.1.0.1/24", "192.0.2.1/24", nullptr, nullptr};

// An IPv4/UDP packet without Ethernet header (what the control plane hands over).
rte_mbuf* ip_packet(const char* src, const char* dst, std::size_t payload) {
    Bytes f = ipv4_frame(Mac{}, Mac{}, src, dst, 17, payload);
    rte_mbuf* m = rte_pktmbuf_alloc(test_pool());
    REQUIRE(m != nullptr);
    char* p = rte_pktmbuf_append(m, static_cast<std::uint16_t>(f.size() - 14));
    std::memcpy(p, f.data() + 14, f.size() - 14);
    p3::dp::meta(m) = PktMeta{MsgKind::tx_ip, p3::dp::Side::wan, 0, 0};
    return m;
}

Bytes arp_request_from(const Mac& our_mac, const char* our_ip, const char* target) {
    Bytes b = arp(1, kBcast, our_mac, our_ip, Mac{}, target);
    b.resize(60, 0);   // padded to the Ethernet minimum
    return b;
}
}  // namespace

TEST_CASE("an unresolved next hop is asked for with ARP and the held packet follows the answer", "[neighbors]") {
    Single a("h", kV4, {});
    REQUIRE(a.dp->send_to_workers(ip_packet("192.0.2.1", "192.0.2.7", 33)));
    auto out = collect(a.wan.tx, 1);
    REQUIRE(out.size() == 1);
    CHECK(out[0] == arp_request_from(a.wan_mac, "192.0.2.1", "192.0.2.7"));

    const Mac peer{{0x02, 0x00, 0x00, 0x00, 0x07, 0x07}};
    inject(a.wan.rx[0], arp(2, a.wan_mac, peer, "192.0.2.7", a.wan_mac, "192.0.2.1"));
    out = collect(a.wan.tx, 1);
    REQUIRE(out.size() == 1);
    Bytes want = ipv4_frame(peer, a.wan_mac, "192.0.2.1", "192.0.2.7", 17, 33);
    CHECK(out[0] == want);

    // Resolved now: the next packet goes straight out.
    REQUIRE(a.dp->send_to_workers(ip_packet("192.0.2.1", "192.0.2.7", 5)));
    out = collect(a.wan.tx, 1);
    REQUIRE(out.size() == 1);
    CHECK(out[0] == ipv4_frame(peer, a.wan_mac, "192.0.2.1", "192.0.2.7", 17, 5));
    CHECK(a.drops(Drop::NEIGH_FAILED) == 0);

    // A reply aimed at someone else, from a neighbour we never asked for, creates nothing (RFC 826).
    inject(a.wan.rx[0], arp(2, kBcast, peer, "192.0.2.99", a.wan_mac, "192.0.2.50"));
    CHECK(collect(a.wan.tx, 0, 100).empty());
    rte_ether_addr m;
    CHECK_FALSE(a.dp->neighbors(p3::dp::Side::wan).lookup(*p3::IpAddr::parse("192.0.2.99"), m));
}

TEST_CASE("the hold queue is bounded; unanswered requests are retried, then held packets dropped", "[neighbors]") {
    Single a("u", kV4, {});
    for (int i = 0; i < 11; ++i) REQUIRE(a.dp->send_to_workers(ip_packet("192.0.2.1", "192.0.2.8", 10)));
    // Three requests, one second apart; then the 8 held packets are dropped.
    auto out = collect(a.wan.tx, 3, 1500);
    REQUIRE(out.size() == 3);
    for (const auto& f : out) CHECK(f == arp_request_from(a.wan_mac, "192.0.2.1", "192.0.2.8"));
    for (int i = 0; i < 400 && a.drops(Drop::NEIGH_FAILED) == 0; ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    CHECK(a.drops(Drop::NEIGH_HOLD) == 3);
    CHECK(a.drops(Drop::NEIGH_FAILED) == 8);
    // While the failure holds off, a new packet is dropped at once, without a request.
    REQUIRE(a.dp->send_to_workers(ip_packet("192.0.2.1", "192.0.2.8", 10)));
    CHECK(collect(a.wan.tx, 0, 200).empty());
    CHECK(a.drops(Drop::NEIGH_FAILED) == 9);
}

TEST_CASE("a static gateway MAC needs no ARP; off-link without a gateway is dropped", "[neighbors]") {
    Single a("g", {"10.1.0.1/24", "192.0.2.1/24", nullptr, "192.0.2.254"}, {});
    REQUIRE(a.dp->send_to_workers(ip_packet("192.0.2.1", "203.0.113.5", 20)));
    auto out = collect(a.wan.tx, 1);
    REQUIRE(out.size() == 1);
    CHECK(out[0] == ipv4_frame(kGwMac, a.wan_mac, "192.0.2.1", "203.0.113.5", 17, 20));

    Single b("o", kV4, {}, {3, 4});
    REQUIRE(b.dp->send_to_workers(ip_packet("192.0.2.1", "203.0.113.5", 20)));
    CHECK(collect(b.wan.tx, 0, 200).empty());
    CHECK(b.drops(Drop::NO_GATEWAY) == 1);
}
