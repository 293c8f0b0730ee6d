// Next-hop resolution: a packet for an unresolved neighbour is held, an ARP request goes
// out, the answer releases it with the learned MAC; unanswered requests are retried and then
// the held packets are dropped and counted; the hold queue is bounded. Packets enter through
// the control->worker ring (tx_ip), as the control plane's would.
#include <mutex>

#include "bench.hpp"
#include "common/log.hpp"

using namespace p3test;
using p3::dp::Drop;
using p3::dp::MsgKind;
using p3::dp::PktMeta;
using p3::dp::LcoreStats;

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

// dst: the Ethernet destination (a unicast refresh); broadcast by default.
Bytes arp_request_from(const Mac& our_mac, const char* our_ip, const char* target, const Mac& dst = kBcast) {
    Bytes b = arp(1, dst, our_mac, our_ip, Mac{}, target);
    b.resize(60, 0);   // padded to the Ethernet minimum
    return b;
}

// A WAN with a gateway that is asked for (no gateway_mac).
const Side kGwArp{"10.1.0.1/24", "192.0.2.1/24", nullptr, "192.0.2.254", true};

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

bool resolved(Single& a, const char* ip) {
    rte_ether_addr m;
    return a.dp->neighbors(p3::dp::Side::wan).lookup(*p3::IpAddr::parse(ip), m);
}

// The gateway's ARP reply injected on the WAN, and control passes at now until the worker has
// handed it on and the resolver has taken it (the test drives the control thread's clock).
void gateway_answers(Single& a, std::uint64_t now) {
    const std::uint64_t before = a.dp->sum(&LcoreStats::arp_in);
    inject(a.wan.rx[0], arp(2, a.wan_mac, kGwMac, "192.0.2.254", a.wan_mac, "192.0.2.1"));
    for (int i = 0; i < 500 && a.dp->sum(&LcoreStats::arp_in) == before; ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
    for (int i = 0; i < 5; ++i) {
        control_pass(*a.ctl, now);
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
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
    const unsigned n = p3::dp::kHoldPerNeighbor + 3;
    for (unsigned i = 0; i < n; ++i) REQUIRE(a.dp->send_to_workers(ip_packet("192.0.2.1", "192.0.2.8", 10)));
    // Three requests, one second apart; then the 100 held packets are dropped.
    auto out = collect(a.wan.tx, 3, 1500);
    REQUIRE(out.size() == 3);
    for (const auto& f : out) CHECK(f == arp_request_from(a.wan_mac, "192.0.2.1", "192.0.2.8"));
    for (int i = 0; i < 400 && a.drops(Drop::NEIGH_FAILED) == 0; ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    CHECK(a.drops(Drop::NEIGH_HOLD) == 3);
    CHECK(a.drops(Drop::NEIGH_FAILED) == p3::dp::kHoldPerNeighbor);
    // While the failure holds off, a new packet is dropped at once, without a request.
    REQUIRE(a.dp->send_to_workers(ip_packet("192.0.2.1", "192.0.2.8", 10)));
    CHECK(collect(a.wan.tx, 0, 200).empty());
    CHECK(a.drops(Drop::NEIGH_FAILED) == p3::dp::kHoldPerNeighbor + 1);
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

TEST_CASE("the configured gateway is asked for at start, and the first packet leaves without being held",
          "[neighbors][gateway]") {
    Single a("s", kGwArp, {}, {1, 2}, nullptr, false);
    // No traffic yet: the first pass of the control thread asks for the gateway.
    control_pass(*a.ctl, 1000);
    auto out = collect(a.wan.tx, 1);
    REQUIRE(out.size() == 1);
    CHECK(out[0] == arp_request_from(a.wan_mac, "192.0.2.1", "192.0.2.254"));
    gateway_answers(a, 1000);
    REQUIRE(resolved(a, "192.0.2.254"));

    REQUIRE(a.dp->send_to_workers(ip_packet("192.0.2.1", "203.0.113.5", 20)));
    out = collect(a.wan.tx, 1);
    REQUIRE(out.size() == 1);
    CHECK(out[0] == ipv4_frame(kGwMac, a.wan_mac, "192.0.2.1", "203.0.113.5", 17, 20));
    CHECK(a.dp->sum(&LcoreStats::held) == 0);
}

TEST_CASE("the configured gateway is refreshed by unicast before its entry goes stale; silent, its MAC is "
          "withdrawn and its frames held", "[neighbors][gateway]") {
    LogCapture log;
    Single a("r", kGwArp, {}, {1, 2}, nullptr, false);
    control_pass(*a.ctl, 1000);
    REQUIRE(collect(a.wan.tx, 1).size() == 1);
    gateway_answers(a, 1000);   // good for 30 s: until 31000
    REQUIRE(resolved(a, "192.0.2.254"));

    control_pass(*a.ctl, 27999);
    CHECK(collect(a.wan.tx, 0, 100).empty());
    // 3 s before the entry would go stale: a unicast request to the MAC it has.
    control_pass(*a.ctl, 28000);
    auto out = collect(a.wan.tx, 1);
    REQUIRE(out.size() == 1);
    CHECK(out[0] == arp_request_from(a.wan_mac, "192.0.2.1", "192.0.2.254", kGwMac));
    gateway_answers(a, 28100);   // good until 58100
    control_pass(*a.ctl, 31000);
    CHECK(collect(a.wan.tx, 0, 100).empty());
    CHECK(resolved(a, "192.0.2.254"));

    // No answer this time: three unicast requests, then at expiry the MAC is withdrawn and
    // the gateway asked for by broadcast.
    for (std::uint64_t t : {55100, 56100, 57100, 58100}) control_pass(*a.ctl, t);
    out = collect(a.wan.tx, 4);
    REQUIRE(out.size() == 4);
    for (int i = 0; i < 3; ++i) CHECK(out[i] == arp_request_from(a.wan_mac, "192.0.2.1", "192.0.2.254", kGwMac));
    CHECK(out[3] == arp_request_from(a.wan_mac, "192.0.2.1", "192.0.2.254"));
    CHECK_FALSE(resolved(a, "192.0.2.254"));
    CHECK(log.count("P3-W0347") == 1);

    // A packet now waits for the answer instead of going to a MAC that may be stale.
    REQUIRE(a.dp->send_to_workers(ip_packet("192.0.2.1", "203.0.113.5", 20)));
    for (int i = 0; i < 500 && a.dp->sum(&LcoreStats::held) == 0; ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
        control_pass(*a.ctl, 58200);
    }
    CHECK(a.dp->sum(&LcoreStats::held) == 1);
    CHECK(collect(a.wan.tx, 0, 100).empty());
    gateway_answers(a, 58300);
    out = collect(a.wan.tx, 1);
    REQUIRE(out.size() == 1);
    CHECK(out[0] == ipv4_frame(kGwMac, a.wan_mac, "192.0.2.1", "203.0.113.5", 17, 20));
    CHECK(log.count("P3-I0348") == 1);
}

TEST_CASE("a configured gateway that never answers is asked again on a back-off and keeps its entry",
          "[neighbors][gateway]") {
    LogCapture log;
    Single a("f", kGwArp, {}, {1, 2}, nullptr, false);
    for (std::uint64_t t : {1000, 2000, 3000}) control_pass(*a.ctl, t);
    CHECK(collect(a.wan.tx, 3).size() == 3);
    control_pass(*a.ctl, 4000);   // the round is over: logged, a back-off of 5 s
    CHECK(log.count("P3-W0346") == 1);
    control_pass(*a.ctl, 8999);
    CHECK(collect(a.wan.tx, 0, 100).empty());
    for (std::uint64_t t : {9000, 10000, 11000, 12000}) control_pass(*a.ctl, t);   // a round, then 10 s
    CHECK(collect(a.wan.tx, 3).size() == 3);
    control_pass(*a.ctl, 21999);
    CHECK(collect(a.wan.tx, 0, 100).empty());
    control_pass(*a.ctl, 22000);
    auto out = collect(a.wan.tx, 1);
    REQUIRE(out.size() == 1);
    CHECK(out[0] == arp_request_from(a.wan_mac, "192.0.2.1", "192.0.2.254"));
    CHECK(log.count("P3-W0346") == 1);   // once until it answers
    CHECK(a.dp->neighbors(p3::dp::Side::wan).find(*p3::IpAddr::parse("192.0.2.254")) != nullptr);
    gateway_answers(a, 22100);
    CHECK(resolved(a, "192.0.2.254"));
    CHECK(log.count("P3-I0348") == 1);
}

TEST_CASE("a first burst of 60 to a next hop that answers after it arrived is delivered whole", "[neighbors]") {
    Single a("b", kV4, {});
    constexpr unsigned kBurst = 60;
    for (unsigned i = 0; i < kBurst; ++i) REQUIRE(a.dp->send_to_workers(ip_packet("192.0.2.1", "192.0.2.7", 100 + i)));
    auto out = collect(a.wan.tx, 1);
    REQUIRE(out.size() == 1);
    CHECK(out[0] == arp_request_from(a.wan_mac, "192.0.2.1", "192.0.2.7"));
    auto seen = [&] {
        return a.dp->sum(&LcoreStats::held) + a.drops(Drop::NEIGH_HOLD) + a.drops(Drop::NEIGH_HOLD_TOTAL) +
               a.drops(Drop::HOLD_POLICED) + a.drops(Drop::RING_FULL_HOLD);
    };
    for (int i = 0; i < 500 && seen() < kBurst; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(2));
    REQUIRE(seen() == kBurst);   // the whole burst reached the resolver before the answer

    const Mac peer{{0x02, 0x00, 0x00, 0x00, 0x07, 0x07}};
    inject(a.wan.rx[0], arp(2, a.wan_mac, peer, "192.0.2.7", a.wan_mac, "192.0.2.1"));
    out = collect(a.wan.tx, kBurst);
    REQUIRE(out.size() == kBurst);
    for (unsigned i = 0; i < kBurst; ++i)   // in the order they came
        CHECK(out[i] == ipv4_frame(peer, a.wan_mac, "192.0.2.1", "192.0.2.7", 17, 100 + i));
    CHECK(a.drops(Drop::NEIGH_HOLD) == 0);
    CHECK(a.drops(Drop::NEIGH_HOLD_TOTAL) == 0);
}

TEST_CASE("IPv6: the configured LAN gateway is solicited at start and refreshed by a unicast solicitation",
          "[neighbors][gateway][nd]") {
    const Side k6{"fd01::1/64", "2001:db8::1/64", "fd01::fe", nullptr, true};
    Single a("6", k6, {}, {1, 2}, nullptr, false);
    auto ours = [&](const Mac& eth_dst, const char* dip) {   // our NS for the gateway, as sent
        Bytes b = ns(eth_dst, a.lan_mac, "fd01::1", dip, "fd01::fe");
        b[15] = b[16] = b[17] = 0;   // traffic class / flow label zero (not in the checksum)
        return b;
    };
    control_pass(*a.ctl, 1000);
    auto out = collect(a.lan.tx, 1);
    REQUIRE(out.size() == 1);
    CHECK(out[0] == ours(Mac{{0x33, 0x33, 0xff, 0x00, 0x00, 0xfe}}, "ff02::1:ff00:fe"));

    // The gateway's advertisement (solicited, override, its link-layer address).
    const Mac gw{{0x02, 0x00, 0x00, 0x00, 0x00, 0xfd}};
    Bytes na = ipv6_frame(a.lan_mac, gw, "fd01::fe", "fd01::1", 58, 32, 255);
    std::uint8_t* icmp = na.data() + 54;
    std::memset(icmp, 0, 32);
    icmp[0] = 136;
    icmp[4] = 0x60;
    auto t = v6("fd01::fe");
    std::memcpy(icmp + 8, t.data(), 16);
    icmp[24] = 2;
    icmp[25] = 1;
    std::memcpy(icmp + 26, gw.b, 6);
    put16(na, 56, csum6(na, 14, 54, 32, 58));
    inject(a.lan.rx[0], na);
    rte_ether_addr m;
    bool found = false;
    for (int i = 0; i < 500 && !found; ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
        control_pass(*a.ctl, 1000);
        found = a.dp->neighbors(p3::dp::Side::lan).lookup(*p3::IpAddr::parse("fd01::fe"), m);
    }
    REQUIRE(found);
    CHECK(std::memcmp(m.addr_bytes, gw.b, 6) == 0);
    control_pass(*a.ctl, 28000);   // 3 s before it would go stale: to its own address and MAC
    out = collect(a.lan.tx, 1);
    REQUIRE(out.size() == 1);
    CHECK(out[0] == ours(gw, "fd01::fe"));
}

// ---- cluster members (docs/cluster.md §Realserver mode) ---------------------------------------

namespace {
std::function<void(p3::config::Config&)> cluster(p3::config::ClusterDirector d, p3::config::ClusterRole r) {
    return [d, r](p3::config::Config& c) {
        c.local.cluster_state = 1;
        c.cluster.member = 2;
        c.cluster.max_members = 2;
        c.cluster.director = d;
        c.cluster.role = r;
    };
}
// Control passes until the resolver has taken what the worker handed on.
void settle(Single& a, std::uint64_t now) {
    for (int i = 0; i < 10; ++i) {
        control_pass(*a.ctl, now);
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
}
const Mac kPeer{0x02, 0, 0, 0, 0, 0x77};
}  // namespace

TEST_CASE("behind a director a member never answers ARP for the VIP and asks without it", "[neighbors][cluster]") {
    using namespace p3::config;
    Single a("c", kGwArp, {}, {1, 2}, nullptr, false, {}, false, cluster(ClusterDirector::lvs, ClusterRole::primary));
    control_pass(*a.ctl, 1000);
    // Its gateway is asked for from 0.0.0.0: nobody learns the VIP at this member's MAC.
    auto out = collect(a.wan.tx, 1);
    REQUIRE(out.size() == 1);
    CHECK(out[0] == arp_request_from(a.wan_mac, "0.0.0.0", "192.0.2.254"));
    inject(a.wan.rx[0], arp(1, kBcast, kPeer, "192.0.2.7", Mac{}, "192.0.2.1"));
    settle(a, 1000);
    CHECK(collect(a.wan.tx, 0, 200).empty());
    CHECK(a.drops(Drop::CLUSTER_NO_ANSWER) == 1);
    // The role does not change that.
    REQUIRE(a.dp->control_port().set_cluster_role(true));
    inject(a.wan.rx[0], arp(1, kBcast, kPeer, "192.0.2.7", Mac{}, "192.0.2.1"));
    settle(a, 2000);
    for (const auto& f : collect(a.wan.tx, 0, 200))   // the gateway is asked again; never a reply
        CHECK(f == arp_request_from(a.wan_mac, "0.0.0.0", "192.0.2.254"));
    CHECK(a.drops(Drop::CLUSTER_NO_ANSWER) == 2);
}

TEST_CASE("failover: a backup is silent on the WAN; promoted, it announces the VIP and answers", "[neighbors][cluster]") {
    using namespace p3::config;
    Single a("f", {"10.1.0.1/24", "192.0.2.1/24", nullptr, "192.0.2.254"}, {}, {1, 2}, nullptr, false, {}, false,
             cluster(ClusterDirector::none, ClusterRole::backup));
    // A backup: an ARP request for the VIP, and a packet to send, are dropped.
    inject(a.wan.rx[0], arp(1, kBcast, kPeer, "192.0.2.7", Mac{}, "192.0.2.1"));
    REQUIRE(a.dp->send_to_workers(ip_packet("192.0.2.1", "203.0.113.5", 20)));
    // The LAN address (the hosts' gateway, shared by the members) is not answered for either.
    inject(a.lan.rx[0], arp(1, kBcast, kPeer, "10.1.0.7", Mac{}, "10.1.0.1"));
    settle(a, 1000);
    CHECK(collect(a.wan.tx, 0, 200).empty());
    CHECK(collect(a.lan.tx, 0, 200).empty());
    CHECK(a.drops(Drop::CLUSTER_BACKUP) == 2);
    // Promoted: three gratuitous ARP requests on each side, a second apart; then requests are
    // answered.
    REQUIRE(a.dp->control_port().set_cluster_role(true));
    CHECK(a.dp->control_port().cluster_primary());
    for (std::uint64_t t = 2000; t <= 4000; t += 1000) control_pass(*a.ctl, t);
    auto out = collect(a.wan.tx, 3);
    REQUIRE(out.size() == 3);
    for (const auto& f : out) CHECK(f == arp_request_from(a.wan_mac, "192.0.2.1", "192.0.2.1"));
    out = collect(a.lan.tx, 3);
    REQUIRE(out.size() == 3);
    for (const auto& f : out) CHECK(f == arp_request_from(a.lan_mac, "10.1.0.1", "10.1.0.1"));
    inject(a.lan.rx[0], arp(1, kBcast, kPeer, "10.1.0.7", Mac{}, "10.1.0.1"));
    settle(a, 4500);
    out = collect(a.lan.tx, 1);
    REQUIRE(out.size() == 1);
    REQUIRE(out[0].size() >= 42);
    CHECK(out[0][21] == 2);   // an ARP reply
    inject(a.wan.rx[0], arp(1, kBcast, kPeer, "192.0.2.7", Mac{}, "192.0.2.1"));
    settle(a, 5000);
    out = collect(a.wan.tx, 1);
    REQUIRE(out.size() == 1);
    CHECK(out[0].size() >= 42);
    CHECK(out[0][21] == 2);   // an ARP reply
    REQUIRE(a.dp->send_to_workers(ip_packet("192.0.2.1", "203.0.113.5", 20)));
    CHECK(collect(a.wan.tx, 1).size() == 1);
    // Demoted again: silent.
    REQUIRE(a.dp->control_port().set_cluster_role(false));
    REQUIRE(a.dp->send_to_workers(ip_packet("192.0.2.1", "203.0.113.5", 20)));
    CHECK(collect(a.wan.tx, 0, 200).empty());
    CHECK(a.drops(Drop::CLUSTER_BACKUP) == 3);
}

TEST_CASE("a cluster role change on an appliance that is not a member is refused", "[neighbors][cluster]") {
    Single a("n", kV4, {});
    CHECK_FALSE(a.dp->control_port().set_cluster_role(true));
}
