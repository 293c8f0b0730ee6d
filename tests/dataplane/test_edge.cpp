// The dataplane's edge cases of forwarding: ICMP errors and TCP resets (icmp_errors), the
// reply rate limiter (ratelimit), inner fragmentation and outer reassembly (frag).
//
// Every generated reply is parsed back field by field and its checksums are verified with
// DPDK's own routines (rte_ipv4_cksum, rte_raw_cksum, rte_ipv*_udptcp_cksum_verify), an
// implementation independent of the builders'. Offending packets are placed against an
// inaccessible page, so a read past their end faults instead of passing silently.
#include <catch2/catch.hpp>

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <string>
#include <numeric>
#include <random>
#include <vector>

#include <rte_eal.h>
#include <rte_ether.h>
#include <rte_ip.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>

#include "dataplane/frag.hpp"
#include "dataplane/icmp_errors.hpp"
#include "dataplane/ratelimit.hpp"

using namespace p3::dp;
using Bytes = std::vector<std::uint8_t>;

namespace {

// --- EAL and pools, once per binary ------------------------------------------------------
struct Env {
    rte_mempool* pool = nullptr;      // ordinary packet buffers
    rte_mempool* indirect = nullptr;  // zero data room, for rte_ipv4_fragment_packet
    rte_mempool* small = nullptr;     // 512-byte data room: replies must shrink or fail cleanly
    rte_mempool* big = nullptr;       // jumbo buffers: large inner packets in one segment
};

Env& env() {
    static Env e = [] {
        // A prefix of our own, and its runtime directory removed at exit (it outlives the process).
        static const std::string prefix = "p3edge-" + std::to_string(getpid());
        const char* argv[] = {"test_edge", "--no-huge", "-m", "256", "--no-pci", "--no-shconf",
                              "--file-prefix", prefix.c_str(), "-l", "0", "--log-level", "error"};
        int argc = static_cast<int>(std::size(argv));
        if (rte_eal_init(argc, const_cast<char**>(argv)) < 0) FAIL("rte_eal_init failed");
        std::atexit([] { std::filesystem::remove_all("/var/run/dpdk/" + prefix); });
        Env v;
        v.pool = rte_pktmbuf_pool_create("edge_pool", 2047, 0, 0, RTE_MBUF_DEFAULT_BUF_SIZE, SOCKET_ID_ANY);
        v.indirect = rte_pktmbuf_pool_create("edge_ind", 1023, 0, 0, 0, SOCKET_ID_ANY);
        v.small = rte_pktmbuf_pool_create("edge_small", 63, 0, 0, 512, SOCKET_ID_ANY);
        v.big = rte_pktmbuf_pool_create("edge_big", 31, 0, 0, 9216 + RTE_PKTMBUF_HEADROOM, SOCKET_ID_ANY);
        REQUIRE(v.big != nullptr);
        REQUIRE(v.pool != nullptr);
        REQUIRE(v.indirect != nullptr);
        REQUIRE(v.small != nullptr);
        return v;
    }();
    return e;
}

// The pool must be whole again after each test: every path frees what it takes.
void require_no_leak() {
    CHECK(rte_mempool_avail_count(env().pool) == 2047);
    CHECK(rte_mempool_avail_count(env().indirect) == 1023);
    CHECK(rte_mempool_avail_count(env().big) == 31);
}

// --- packet construction -----------------------------------------------------------------
std::uint16_t g16(const std::uint8_t* p) { return static_cast<std::uint16_t>(p[0] << 8 | p[1]); }
std::uint32_t g32(const std::uint8_t* p) { return std::uint32_t(g16(p)) << 16 | g16(p + 2); }
void p16(std::uint8_t* p, std::uint16_t v) { p[0] = v >> 8; p[1] = v & 0xff; }
void p32(std::uint8_t* p, std::uint32_t v) { p16(p, v >> 16); p16(p + 2, v & 0xffff); }

const rte_ether_addr kHostMac{{0x02, 0x00, 0x00, 0x00, 0x00, 0x0a}};
const rte_ether_addr kOurMac{{0x02, 0x70, 0x63, 0x61, 0x70, 0x00}};
const rte_ether_addr kBcastMac{{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}};

LanSource lan() {
    LanSource s;
    s.has_v4 = true;
    s.v4 = {10, 1, 0, 1};
    s.has_v6 = true;
    s.v6 = {0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
    return s;
}

struct V4 {
    std::array<std::uint8_t, 4> src{10, 1, 0, 7}, dst{10, 2, 0, 9};
    std::uint8_t proto = 17;
    std::uint16_t frag = 0x4000;  // DF
    std::uint16_t id = 0x1234;
    Bytes options;                // IPv4 options (multiple of 4)
};

// IPv4 packet of `len` bytes in total with a recognisable payload; valid checksum.
Bytes v4_packet(const V4& o, std::size_t len, const Bytes& l4 = {}) {
    const std::size_t ihl = 20 + o.options.size();
    Bytes b(std::max(len, ihl + l4.size()));
    b[0] = 0x40 | static_cast<std::uint8_t>(ihl / 4);
    p16(&b[2], static_cast<std::uint16_t>(b.size()));
    p16(&b[4], o.id);
    p16(&b[6], o.frag);
    b[8] = 63;
    b[9] = o.proto;
    std::copy(o.src.begin(), o.src.end(), &b[12]);
    std::copy(o.dst.begin(), o.dst.end(), &b[16]);
    std::copy(o.options.begin(), o.options.end(), &b[20]);
    std::copy(l4.begin(), l4.end(), &b[ihl]);
    for (std::size_t i = ihl + l4.size(); i < b.size(); ++i) b[i] = static_cast<std::uint8_t>(i * 7 + 3);
    p16(&b[10], 0);
    auto* h = reinterpret_cast<rte_ipv4_hdr*>(b.data());
    const std::uint16_t c = rte_ipv4_cksum(h);
    std::memcpy(&b[10], &c, 2);  // rte_ipv4_cksum returns the value in wire order
    return b;
}

struct V6 {
    std::array<std::uint8_t, 16> src{0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7};
    std::array<std::uint8_t, 16> dst{0x20, 0x01, 0x0d, 0xb8, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9};
    std::uint8_t nh = 17;
};

// IPv6 packet of `len` bytes in total; `ext` is a ready chain of extension headers whose
// last next-header byte the caller set (ext[0] is the first's next header).
Bytes v6_packet(const V6& o, std::size_t len, const Bytes& l4 = {}, const Bytes& ext = {}, std::uint8_t first_nh = 0) {
    Bytes b(std::max(len, 40 + ext.size() + l4.size()));
    b[0] = 0x60;
    p16(&b[4], static_cast<std::uint16_t>(b.size() - 40));
    b[6] = ext.empty() ? o.nh : first_nh;
    b[7] = 64;
    std::copy(o.src.begin(), o.src.end(), &b[8]);
    std::copy(o.dst.begin(), o.dst.end(), &b[24]);
    std::copy(ext.begin(), ext.end(), &b[40]);
    std::copy(l4.begin(), l4.end(), &b[40 + ext.size()]);
    for (std::size_t i = 40 + ext.size() + l4.size(); i < b.size(); ++i) b[i] = static_cast<std::uint8_t>(i * 5 + 1);
    return b;
}

Bytes tcp_header(std::uint16_t sport, std::uint16_t dport, std::uint32_t seq, std::uint32_t ack, std::uint8_t flags,
                 std::size_t options = 0) {
    Bytes t(20 + options, 0);
    p16(&t[0], sport);
    p16(&t[2], dport);
    p32(&t[4], seq);
    p32(&t[8], ack);
    t[12] = static_cast<std::uint8_t>(((20 + options) / 4) << 4);
    t[13] = flags;
    p16(&t[14], 512);
    for (std::size_t i = 20; i < t.size(); ++i) t[i] = 1;  // NOP options
    return t;
}

// Copies bytes so that they end exactly where an inaccessible page begins: a read past the
// span's end faults.
class Guarded {
public:
    explicit Guarded(const Bytes& b) {
        page_ = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
        pages_ = (b.size() + page_ - 1) / page_ + 1;
        base_ = static_cast<std::uint8_t*>(mmap(nullptr, (pages_ + 1) * page_, PROT_READ | PROT_WRITE,
                                                MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
        REQUIRE(base_ != MAP_FAILED);
        REQUIRE(mprotect(base_ + pages_ * page_, page_, PROT_NONE) == 0);
        data_ = base_ + pages_ * page_ - b.size();
        if (!b.empty()) std::memcpy(data_, b.data(), b.size());
        size_ = b.size();
    }
    ~Guarded() { munmap(base_, (pages_ + 1) * page_); }
    std::span<const std::uint8_t> span() const { return {data_, size_}; }

private:
    std::uint8_t* base_ = nullptr;
    std::uint8_t* data_ = nullptr;
    std::size_t size_ = 0, page_ = 0, pages_ = 0;
};

Offending offending(std::span<const std::uint8_t> l3, rte_ether_addr dst = kOurMac) {
    return Offending{l3, kHostMac, dst};
}

Bytes frame_bytes(const rte_mbuf* m) {
    REQUIRE(m->nb_segs == 1);
    const auto* p = rte_pktmbuf_mtod(m, const std::uint8_t*);
    return Bytes(p, p + m->data_len);
}

// Checks the Ethernet header of a reply and returns its L3 bytes.
Bytes check_l2(const Reply& r, std::uint16_t ethertype) {
    REQUIRE(r.verdict == ReplyVerdict::built);
    REQUIRE(r.m != nullptr);
    Bytes f = frame_bytes(r.m);
    REQUIRE(f.size() >= 14);
    CHECK(std::memcmp(&f[0], kHostMac.addr_bytes, 6) == 0);  // back to the sender
    CHECK(std::memcmp(&f[6], kOurMac.addr_bytes, 6) == 0);   // from our LAN MAC
    CHECK(g16(&f[12]) == ethertype);
    CHECK(r.m->l2_len == 14);
    rte_pktmbuf_free(r.m);
    return Bytes(f.begin() + 14, f.end());
}

// Parses an IPv4 header field by field; DPDK's checksum is the oracle.
void check_v4_header(const Bytes& ip, std::uint8_t proto, const std::uint8_t* src, const std::uint8_t* dst) {
    REQUIRE(ip.size() >= 20);
    CHECK(ip[0] == 0x45);
    CHECK(g16(&ip[2]) == ip.size());
    CHECK((g16(&ip[6]) & 0x3fff) == 0);  // not a fragment
    CHECK(ip[8] == 64);
    CHECK(ip[9] == proto);
    CHECK(std::memcmp(&ip[12], src, 4) == 0);
    CHECK(std::memcmp(&ip[16], dst, 4) == 0);
    Bytes copy(ip.begin(), ip.begin() + 20);
    CHECK(rte_raw_cksum(copy.data(), 20) == 0xffff);  // a header with a right checksum sums to all ones
}

void check_v6_header(const Bytes& ip, std::uint8_t nh, const std::uint8_t* src, const std::uint8_t* dst) {
    REQUIRE(ip.size() >= 40);
    CHECK(ip[0] >> 4 == 6);
    CHECK(g16(&ip[4]) + 40u == ip.size());
    CHECK(ip[6] == nh);
    CHECK(ip[7] == 64);
    CHECK(std::memcmp(&ip[8], src, 16) == 0);
    CHECK(std::memcmp(&ip[24], dst, 16) == 0);
}

}  // namespace

// =========================================================================================
TEST_CASE("ICMPv4 fragmentation needed quotes the header and 8+ bytes, within 576", "[icmp]") {
    const LanSource src = lan();
    struct Row { std::size_t len; std::size_t options; std::size_t quoted; };
    const Row rows[] = {
        {28, 0, 28},        // header + exactly 8 bytes
        {100, 0, 100},      // whole packet fits
        {548, 0, 548},      // exactly at the 576 limit
        {1500, 0, 548},     // cut at 576 - 28
        {1500, 40, 548},    // maximal options, same limit
        {21, 0, 21},        // fewer than 8 bytes after the header: quote what exists
    };
    for (const auto& row : rows) {
        CAPTURE(row.len, row.options);
        V4 o;
        o.options.assign(row.options, 1);  // NOP options
        const Bytes pkt = v4_packet(o, row.len);
        Guarded g(pkt);
        const Reply r = icmp4_frag_needed(env().pool, offending(g.span()), src, 1438);
        const Bytes ip = check_l2(r, RTE_ETHER_TYPE_IPV4);
        check_v4_header(ip, 1, src.v4.data(), o.src.data());
        REQUIRE(ip.size() == 20 + 8 + row.quoted);
        CHECK(ip.size() <= 576);
        const std::uint8_t* icmp = &ip[20];
        CHECK(icmp[0] == 3);
        CHECK(icmp[1] == 4);
        CHECK(g16(icmp + 4) == 0);      // unused
        CHECK(g16(icmp + 6) == 1438);   // next-hop MTU (RFC 1191)
        CHECK(std::memcmp(icmp + 8, pkt.data(), row.quoted) == 0);
        CHECK(rte_raw_cksum(icmp, ip.size() - 20) == 0xffff);
    }
    require_no_leak();
}

TEST_CASE("ICMPv6 packet too big quotes up to the 1280-byte minimum MTU", "[icmp]") {
    const LanSource src = lan();
    struct Row { std::size_t len; std::uint32_t mtu; std::size_t quoted; std::uint32_t mtu_sent; };
    const Row rows[] = {
        {48, 1400, 48, 1400},
        {1232, 1400, 1232, 1400},   // exactly fits 1280
        {1500, 1400, 1232, 1400},
        {9000 - 40, 1400, 1232, 1400},
        {1500, 1000, 1232, 1280},   // never advertise less than the IPv6 minimum (RFC 8201)
    };
    for (const auto& row : rows) {
        CAPTURE(row.len, row.mtu);
        V6 o;
        const Bytes pkt = v6_packet(o, row.len);
        Guarded g(pkt);
        const Reply r = icmp6_packet_too_big(env().pool, offending(g.span()), src, row.mtu);
        const Bytes ip = check_l2(r, RTE_ETHER_TYPE_IPV6);
        check_v6_header(ip, 58, src.v6.data(), o.src.data());
        REQUIRE(ip.size() == 40 + 8 + row.quoted);
        CHECK(ip.size() <= 1280);
        const std::uint8_t* icmp = &ip[40];
        CHECK(icmp[0] == 2);
        CHECK(icmp[1] == 0);
        CHECK(g32(icmp + 4) == row.mtu_sent);
        CHECK(std::memcmp(icmp + 8, pkt.data(), row.quoted) == 0);
        Bytes copy = ip;
        CHECK(rte_ipv6_udptcp_cksum_verify(reinterpret_cast<rte_ipv6_hdr*>(copy.data()), copy.data() + 40) == 0);
    }
    require_no_leak();
}

TEST_CASE("too_big_reply picks the family; a small buffer shortens the ICMPv6 quote", "[icmp]") {
    const LanSource src = lan();
    {
        const Bytes pkt = v4_packet(V4{}, 1500);
        const Reply r = too_big_reply(env().pool, offending(pkt), src, 1446);
        const Bytes ip = check_l2(r, RTE_ETHER_TYPE_IPV4);
        CHECK(ip[20] == 3);
        CHECK(ip[21] == 4);
        CHECK(g16(&ip[26]) == 1446);
    }
    {
        const Bytes pkt = v6_packet(V6{}, 1500);
        const Reply r = too_big_reply(env().pool, offending(pkt), src, 1426);
        const Bytes ip = check_l2(r, RTE_ETHER_TYPE_IPV6);
        CHECK(ip[40] == 2);
        CHECK(g32(&ip[44]) == 1426);
    }
    {
        const Bytes pkt = v6_packet(V6{}, 1500);
        const Reply r = icmp6_packet_too_big(env().small, offending(pkt), src, 1400);
        REQUIRE(r.verdict == ReplyVerdict::built);
        REQUIRE(r.m->data_len <= 512 - RTE_PKTMBUF_HEADROOM);
        Bytes ip(rte_pktmbuf_mtod(r.m, std::uint8_t*) + 14, rte_pktmbuf_mtod(r.m, std::uint8_t*) + r.m->data_len);
        rte_pktmbuf_free(r.m);
        CHECK(g16(&ip[4]) + 40u == ip.size());
        CHECK(std::memcmp(&ip[48], pkt.data(), ip.size() - 48) == 0);
        CHECK(rte_ipv6_udptcp_cksum_verify(reinterpret_cast<rte_ipv6_hdr*>(ip.data()), ip.data() + 40) == 0);
    }
    CHECK(rte_mempool_avail_count(env().small) == 63);
    require_no_leak();
}

TEST_CASE("destination unreachable for a lost session: v4 host, v6 address", "[icmp]") {
    const LanSource src = lan();
    {
        V4 o;
        o.frag = 0;
        const Bytes pkt = v4_packet(o, 200);
        const Reply r = session_down_reply(env().pool, offending(pkt), src);
        const Bytes ip = check_l2(r, RTE_ETHER_TYPE_IPV4);
        check_v4_header(ip, 1, src.v4.data(), o.src.data());
        CHECK(ip[20] == 3);
        CHECK(ip[21] == 1);
        CHECK(g32(&ip[24]) == 0);
        CHECK(std::memcmp(&ip[28], pkt.data(), 200) == 0);
        CHECK(rte_raw_cksum(&ip[20], ip.size() - 20) == 0xffff);
    }
    {
        V6 o;
        const Bytes pkt = v6_packet(o, 300);
        const Reply r = session_down_reply(env().pool, offending(pkt), src);
        const Bytes ip = check_l2(r, RTE_ETHER_TYPE_IPV6);
        check_v6_header(ip, 58, src.v6.data(), o.src.data());
        CHECK(ip[40] == 1);
        CHECK(ip[41] == 3);
        CHECK(std::memcmp(&ip[48], pkt.data(), 300) == 0);
        Bytes copy = ip;
        CHECK(rte_ipv6_udptcp_cksum_verify(reinterpret_cast<rte_ipv6_hdr*>(copy.data()), copy.data() + 40) == 0);
    }
    {   // explicit codes
        const Bytes pkt = v4_packet(V4{}, 60);
        const Bytes ip = check_l2(icmp4_unreachable(env().pool, offending(pkt), src, Unreach4::admin_prohibited),
                                  RTE_ETHER_TYPE_IPV4);
        CHECK(ip[21] == 13);
        const Bytes pkt6 = v6_packet(V6{}, 60);
        const Bytes ip6 = check_l2(icmp6_unreachable(env().pool, offending(pkt6), src, Unreach6::no_route),
                                   RTE_ETHER_TYPE_IPV6);
        CHECK(ip6[41] == 0);
    }
    require_no_leak();
}

// RFC 9293 §3.10.7.1, state CLOSED: the reset must be acceptable to the sender.
TEST_CASE("TCP RST sequence and acknowledgment numbers", "[tcp]") {
    constexpr std::uint8_t FIN = 1, SYN = 2, PSH = 8, ACK = 16;
    struct Row {
        const char* what;
        std::uint8_t flags;
        std::size_t payload;
        std::size_t options;
        std::uint32_t seg_seq, seg_ack;
        std::uint32_t want_seq, want_ack;
        std::uint8_t want_flags;
    };
    const Row rows[] = {
        {"SYN", SYN, 0, 0, 1000, 0, 0, 1001, 0x14},
        {"SYN with options", SYN, 0, 20, 0xfffffff0u, 0, 0, 0xfffffff1u, 0x14},
        {"SYN+FIN+data", SYN | FIN, 10, 0, 5, 0, 0, 5 + 10 + 2, 0x14},
        {"bare data, no ACK", PSH, 100, 0, 77, 0, 0, 177, 0x14},
        {"seq wraps", PSH, 32, 0, 0xfffffff0u, 0, 0, 0x10, 0x14},
        {"ACK", ACK, 0, 0, 500, 9000, 9000, 0, 0x04},
        {"ACK+data", ACK | PSH, 1000, 12, 500, 0xdeadbeefu, 0xdeadbeefu, 0, 0x04},
        {"FIN+ACK", FIN | ACK, 0, 0, 500, 42, 42, 0, 0x04},
    };
    for (int v = 4; v <= 6; v += 2) {
        for (const auto& row : rows) {
            CAPTURE(v, row.what);
            const Bytes t = tcp_header(40000, 443, row.seg_seq, row.seg_ack, row.flags, row.options);
            V4 o4;
            o4.proto = 6;
            V6 o6;
            o6.nh = 6;
            const std::size_t l3h = v == 4 ? 20 : 40;
            const Bytes pkt = v == 4 ? v4_packet(o4, l3h + t.size() + row.payload, t)
                                     : v6_packet(o6, l3h + t.size() + row.payload, t);
            Guarded g(pkt);
            const Reply r = session_down_reply(env().pool, offending(g.span()), lan());
            const Bytes ip = check_l2(r, v == 4 ? RTE_ETHER_TYPE_IPV4 : RTE_ETHER_TYPE_IPV6);
            REQUIRE(ip.size() == l3h + 20);
            // From the segment's destination to its source: the peer's own 4-tuple.
            if (v == 4) check_v4_header(ip, 6, o4.dst.data(), o4.src.data());
            else check_v6_header(ip, 6, o6.dst.data(), o6.src.data());
            const std::uint8_t* r4 = &ip[l3h];
            CHECK(g16(r4) == 443);
            CHECK(g16(r4 + 2) == 40000);
            CHECK(g32(r4 + 4) == row.want_seq);
            CHECK(g32(r4 + 8) == row.want_ack);
            CHECK(r4[12] == 0x50);
            CHECK(r4[13] == row.want_flags);
            CHECK(g16(r4 + 14) == 0);
            Bytes copy = ip;
            if (v == 4)
                CHECK(rte_ipv4_udptcp_cksum_verify(reinterpret_cast<rte_ipv4_hdr*>(copy.data()), copy.data() + 20) == 0);
            else
                CHECK(rte_ipv6_udptcp_cksum_verify(reinterpret_cast<rte_ipv6_hdr*>(copy.data()), copy.data() + 40) == 0);
        }
    }
    require_no_leak();
}

TEST_CASE("TCP RST behind IPv6 extension headers", "[tcp]") {
    // hop-by-hop (8 bytes) -> destination options (16 bytes) -> TCP
    Bytes ext(24, 0);
    ext[0] = 60;  // hop-by-hop's next header: destination options
    ext[1] = 0;   // 8 bytes
    ext[2] = 1;   // PadN
    ext[3] = 4;
    ext[8] = 6;   // destination options' next header: TCP
    ext[9] = 1;   // 16 bytes
    ext[10] = 1;
    ext[11] = 12;
    V6 o;
    const Bytes t = tcp_header(1234, 80, 10, 0, 0x02);
    const Bytes pkt = v6_packet(o, 40 + 24 + 20, t, ext, 0);
    const Reply r = tcp_reset(env().pool, offending(pkt));
    const Bytes ip = check_l2(r, RTE_ETHER_TYPE_IPV6);
    CHECK(g16(&ip[40]) == 80);
    CHECK(g32(&ip[48]) == 11);
    require_no_leak();
}

TEST_CASE("what is never answered", "[icmp][tcp]") {
    const LanSource src = lan();
    struct Row { const char* what; Bytes pkt; rte_ether_addr dst_mac; ReplyVerdict session_down; ReplyVerdict too_big; };
    std::vector<Row> rows;
    auto v4 = [](auto edit, std::size_t len = 100, Bytes l4 = {}) { V4 o; edit(o); return v4_packet(o, len, l4); };
    auto v6 = [](auto edit, std::size_t len = 100, Bytes l4 = {}) { V6 o; edit(o); return v6_packet(o, len, l4); };
    const auto NA = ReplyVerdict::not_allowed;
    const auto OK = ReplyVerdict::built;
    Bytes icmp_unreach = {3, 1, 0, 0, 0, 0, 0, 0};
    Bytes icmp_echo = {8, 0, 0, 0, 0, 0, 0, 0};
    Bytes icmp6_unreach = {1, 0, 0, 0, 0, 0, 0, 0};
    Bytes icmp6_echo = {128, 0, 0, 0, 0, 0, 0, 0};
    rows.push_back({"v4 ICMP error", v4([](V4& o) { o.proto = 1; }, 100, icmp_unreach), kOurMac, NA, NA});
    rows.push_back({"v4 ICMP echo is answered", v4([](V4& o) { o.proto = 1; }, 100, icmp_echo), kOurMac, OK, OK});
    rows.push_back({"v4 to multicast", v4([](V4& o) { o.dst = {224, 0, 0, 5}; }), kOurMac, NA, NA});
    rows.push_back({"v4 to broadcast", v4([](V4& o) { o.dst = {255, 255, 255, 255}; }), kOurMac, NA, NA});
    rows.push_back({"v4 link broadcast", v4([](V4&) {}), kBcastMac, NA, NA});
    rows.push_back({"v4 from 0.0.0.0", v4([](V4& o) { o.src = {0, 0, 0, 0}; }), kOurMac, NA, NA});
    rows.push_back({"v4 from loopback", v4([](V4& o) { o.src = {127, 0, 0, 1}; }), kOurMac, NA, NA});
    rows.push_back({"v4 from class E", v4([](V4& o) { o.src = {240, 0, 0, 1}; }), kOurMac, NA, NA});
    rows.push_back({"v4 later fragment", v4([](V4& o) { o.frag = 0x0010; }), kOurMac, NA, NA});
    rows.push_back({"v4 first fragment", v4([](V4& o) { o.frag = 0x2000; }), kOurMac, OK, OK});
    rows.push_back({"v4 TCP RST", v4([](V4& o) { o.proto = 6; }, 40, tcp_header(1, 2, 3, 4, 0x14)), kOurMac, NA, OK});
    rows.push_back({"v4 TCP first fragment -> ICMP", v4([](V4& o) { o.proto = 6; o.frag = 0x2000; }, 48, tcp_header(1, 2, 3, 4, 0x10)), kOurMac, OK, OK});
    rows.push_back({"v6 ICMPv6 error", v6([](V6& o) { o.nh = 58; }, 100, icmp6_unreach), kOurMac, NA, NA});
    rows.push_back({"v6 ICMPv6 echo is answered", v6([](V6& o) { o.nh = 58; }, 100, icmp6_echo), kOurMac, OK, OK});
    rows.push_back({"v6 to multicast (PTB still sent)", v6([](V6& o) { o.dst[0] = 0xff; o.dst[1] = 0x02; }), kOurMac, NA, OK});
    rows.push_back({"v6 link multicast (PTB still sent)", v6([](V6&) {}), rte_ether_addr{{0x33, 0x33, 0, 0, 0, 1}}, NA, OK});
    rows.push_back({"v6 from ::", v6([](V6& o) { o.src = {}; }), kOurMac, NA, NA});
    rows.push_back({"v6 from multicast", v6([](V6& o) { o.src[0] = 0xff; }), kOurMac, NA, NA});
    rows.push_back({"v6 TCP RST", v6([](V6& o) { o.nh = 6; }, 60, tcp_header(1, 2, 3, 4, 0x04)), kOurMac, NA, OK});
    for (const auto& row : rows) {
        CAPTURE(row.what);
        Guarded g(row.pkt);
        Reply a = session_down_reply(env().pool, offending(g.span(), row.dst_mac), src);
        CHECK(a.verdict == row.session_down);
        CHECK((a.m != nullptr) == (a.verdict == OK));
        if (a.m) rte_pktmbuf_free(a.m);
        Reply b = too_big_reply(env().pool, offending(g.span(), row.dst_mac), src, 1400);
        CHECK(b.verdict == row.too_big);
        CHECK((b.m != nullptr) == (b.verdict == OK));
        if (b.m) rte_pktmbuf_free(b.m);
    }
    // No LAN address of the family: nothing to send from.
    LanSource none;
    const Bytes p4 = v4_packet(V4{}, 100);
    CHECK(too_big_reply(env().pool, offending(p4), none, 1400).verdict == ReplyVerdict::no_source);
    const Bytes p6 = v6_packet(V6{}, 100);
    CHECK(session_down_reply(env().pool, offending(p6), none).verdict == ReplyVerdict::no_source);
    require_no_leak();
}

TEST_CASE("truncated and inconsistent offending packets are never overread", "[icmp][tcp]") {
    const LanSource src = lan();
    V4 o4;
    o4.proto = 6;
    V6 o6;
    o6.nh = 6;
    const Bytes tcp = tcp_header(1, 2, 3, 4, 0x02, 8);
    std::vector<Bytes> bases = {
        v4_packet(o4, 60, tcp),
        v6_packet(o6, 80, tcp),
        v4_packet(V4{}, 1500),
        v6_packet(V6{}, 1500),
    };
    auto all = [&](std::span<const std::uint8_t> l3) {
        // Whatever the bytes, every builder returns a verdict, frees what it took, and a
        // malformed packet is never answered.
        const Offending off = offending(l3);
        Reply rs[] = {
            icmp4_frag_needed(env().pool, off, src, 1400), icmp6_packet_too_big(env().pool, off, src, 1400),
            icmp4_unreachable(env().pool, off, src),       icmp6_unreachable(env().pool, off, src),
            tcp_reset(env().pool, off),                    too_big_reply(env().pool, off, src, 1400),
            session_down_reply(env().pool, off, src),
        };
        int built = 0;
        for (auto& r : rs) {
            CHECK((r.m != nullptr) == (r.verdict == ReplyVerdict::built));
            if (r.m) {
                ++built;
                rte_pktmbuf_free(r.m);
            }
        }
        return built;
    };
    for (const Bytes& base : bases) {
        // Every prefix: lengths in the header now exceed the span -> malformed, no reply.
        for (std::size_t n = 0; n < base.size(); ++n) {
            CAPTURE(base.size(), n);
            Guarded g(Bytes(base.begin(), base.begin() + n));
            CHECK(all(g.span()) == 0);
        }
        // The whole packet with trailing link padding is fine.
        Bytes padded = base;
        padded.resize(base.size() + 17, 0);
        Guarded g(padded);
        CHECK(all(g.span()) > 0);
    }
    // Header fields that lie.
    struct Lie { const char* what; Bytes pkt; };
    std::vector<Lie> lies;
    {
        Bytes b = v4_packet(V4{}, 40);
        b[0] = 0x4f;  // IHL 60 > 40
        lies.push_back({"v4 IHL beyond packet", b});
        b = v4_packet(V4{}, 40);
        b[0] = 0x44;  // IHL 16 < 20
        lies.push_back({"v4 IHL below minimum", b});
        b = v4_packet(V4{}, 40);
        p16(&b[2], 10);  // total < IHL
        lies.push_back({"v4 total below header", b});
        b = v4_packet(V4{}, 40);
        p16(&b[2], 41);
        lies.push_back({"v4 total one past", b});
        b = v6_packet(V6{}, 60);
        p16(&b[4], 21);
        lies.push_back({"v6 payload one past", b});
        b = v6_packet(V6{}, 60);
        p16(&b[4], 0);
        lies.push_back({"v6 jumbo/zero payload", b});
        Bytes ext(8, 0);
        ext[0] = 60;
        ext[1] = 200;  // hop-by-hop claiming 1608 bytes
        b = v6_packet(V6{}, 60, {}, ext, 0);
        lies.push_back({"v6 extension header beyond", b});
        b = v6_packet(V6{}, 100);
        b[0] = 0x50;
        lies.push_back({"version 5", b});
    }
    for (const auto& lie : lies) {
        CAPTURE(lie.what);
        Guarded g(lie.pkt);
        CHECK(all(g.span()) == 0);
    }
    // A TCP header that lies: no reset (the IP packet itself may still get an ICMP error).
    for (std::uint8_t doff : {0xf0, 0x40, 0x00}) {
        CAPTURE(doff);
        Bytes b = v4_packet(o4, 40, tcp_header(1, 2, 3, 4, 0x02));
        b[32] = doff;  // data offset 60 > 20 available, or below the 20-byte minimum
        Guarded g(b);
        CHECK(tcp_reset(env().pool, offending(g.span())).verdict == ReplyVerdict::malformed);
        CHECK(session_down_reply(env().pool, offending(g.span()), src).verdict == ReplyVerdict::malformed);
    }
    // A long extension-header chain is walked only so far, and never past the packet.
    {
        Bytes ext;
        for (int i = 0; i < 20; ++i) {
            Bytes h(8, 0);
            h[0] = i == 19 ? 6 : 60;
            ext.insert(ext.end(), h.begin(), h.end());
        }
        Guarded g(v6_packet(V6{}, 40 + ext.size() + 20, tcp_header(1, 2, 3, 4, 2), ext, 60));
        CHECK(tcp_reset(env().pool, offending(g.span())).verdict == ReplyVerdict::not_allowed);
        Reply r = session_down_reply(env().pool, offending(g.span()), src);
        CHECK(r.verdict == ReplyVerdict::built);  // unknown upper layer: ICMPv6 unreachable
        if (r.m) rte_pktmbuf_free(r.m);
    }
    // Random bytes that start like IPv4/IPv6.
    std::mt19937 rng(7);
    for (int i = 0; i < 3000; ++i) {
        Bytes b(rng() % 120);
        for (auto& x : b) x = static_cast<std::uint8_t>(rng());
        if (!b.empty()) b[0] = static_cast<std::uint8_t>((i % 2 ? 0x40 : 0x60) | (b[0] & 0x0f));
        Guarded g(b);
        all(g.span());
    }
    require_no_leak();
}

TEST_CASE("an empty pool yields no_mbuf, not a crash", "[icmp]") {
    std::vector<rte_mbuf*> held;
    while (rte_mbuf* m = rte_pktmbuf_alloc(env().small)) held.push_back(m);
    const Bytes pkt = v4_packet(V4{}, 100);
    CHECK(icmp4_frag_needed(env().small, offending(pkt), lan(), 1400).verdict == ReplyVerdict::no_mbuf);
    for (auto* m : held) rte_pktmbuf_free(m);
    CHECK(rte_mempool_avail_count(env().small) == 63);
}

// =========================================================================================
TEST_CASE("token bucket: the configured burst, then one token per interval", "[ratelimit]") {
    constexpr std::uint64_t hz = 1'000'000;  // a 1 MHz "TSC": 100/s = one token per 10,000 cycles
    TokenBucket tb(hz, 100, 5, 1000);
    CHECK(tb.cycles_per_token() == 10'000);
    for (int i = 0; i < 5; ++i) CHECK(tb.allow(1000));
    CHECK_FALSE(tb.allow(1000));
    CHECK_FALSE(tb.allow(1000 + 9'999));   // not yet a whole token
    CHECK(tb.allow(1000 + 10'000));        // exactly one
    CHECK_FALSE(tb.allow(1000 + 10'000));
    CHECK(tb.tokens(1000 + 30'000) == 2);
    CHECK(tb.tokens(1000 + 10'000'000) == 5);  // long idle: capped at the burst
    for (int i = 0; i < 5; ++i) CHECK(tb.allow(1000 + 10'000'000));
    CHECK_FALSE(tb.allow(1000 + 10'000'000));
    CHECK_FALSE(tb.allow(500));                // time going backwards adds nothing
    CHECK(tb.allowed() == 11);
    CHECK(tb.denied() == 5);
    // Over one simulated second from empty: exactly rate tokens.
    int got = 0;
    for (std::uint64_t t = 1000 + 10'000'000; t < 1000 + 10'000'000 + hz + 137; t += 137)
        got += tb.allow(t) ? 1 : 0;
    CHECK(got == 100);
}

TEST_CASE("token bucket: rate 0 allows nothing; burst 0 means 1; real TSC rates", "[ratelimit]") {
    TokenBucket off(2'000'000'000, 0, 10, 0);
    CHECK_FALSE(off.allow(0));
    CHECK_FALSE(off.allow(UINT64_MAX));
    TokenBucket one(2'000'000'000, 1000, 0, 0);
    CHECK(one.allow(0));
    CHECK_FALSE(one.allow(1));
    CHECK(one.allow(2'000'000));
    TokenBucket fast(3'000'000'000, 3'000'000'000u, 4, 0);  // one token per cycle
    for (int i = 0; i < 4; ++i) CHECK(fast.allow(0));
    CHECK_FALSE(fast.allow(0));
    CHECK(fast.tokens(3) == 3);
    static_assert(alignof(TokenBucket) == RTE_CACHE_LINE_SIZE);
}

// =========================================================================================
namespace {

rte_mbuf* mbuf_from(const Bytes& b, rte_mempool* pool) {
    if (b.size() > 2048 - RTE_PKTMBUF_HEADROOM) pool = env().big;
    rte_mbuf* m = rte_pktmbuf_alloc(pool);
    REQUIRE(m != nullptr);
    auto* p = rte_pktmbuf_append(m, static_cast<std::uint16_t>(b.size()));
    REQUIRE(p != nullptr);
    std::memcpy(p, b.data(), b.size());
    return m;
}

// A two-segment mbuf holding b (split at `at`).
rte_mbuf* chained_from(const Bytes& b, std::size_t at) {
    rte_mbuf* a = mbuf_from(Bytes(b.begin(), b.begin() + at), env().pool);
    rte_mbuf* c = mbuf_from(Bytes(b.begin() + at, b.end()), env().pool);
    REQUIRE(rte_pktmbuf_chain(a, c) == 0);
    return a;
}

Bytes with_eth(const Bytes& l3, std::uint16_t type) {
    Bytes f(14 + l3.size());
    std::memcpy(&f[0], kOurMac.addr_bytes, 6);
    std::memcpy(&f[6], kHostMac.addr_bytes, 6);
    p16(&f[12], type);
    std::copy(l3.begin(), l3.end(), f.begin() + 14);
    return f;
}

rte_mbuf* wan_frame(const Bytes& l3, std::uint16_t type) {
    rte_mbuf* m = mbuf_from(with_eth(l3, type), env().pool);
    m->l2_len = 14;
    return m;
}

std::uint64_t hz() { return rte_get_tsc_hz(); }

}  // namespace

TEST_CASE("inner IPv4 fragmentation: sizes, offsets, flags, checksums", "[frag]") {
    struct Row { std::size_t len; std::uint16_t mtu; std::size_t options; bool chained; std::size_t want; };
    const Row rows[] = {
        {3000, 1400, 0, false, 3},   // 1376-byte pieces (multiple of 8)
        {1447, 1446, 0, false, 2},
        {1500, 576, 0, false, 3},
        {1500, 1000, 8, false, 2},   // options: copied ones go into later fragments
        {5000, 1446, 0, true, 4},    // multi-segment input: direct + indirect pools, linearised
        {9000, 1446, 0, false, 7},
    };
    for (const auto& row : rows) {
        CAPTURE(row.len, row.mtu, row.options, row.chained);
        V4 o;
        o.frag = 0;
        if (row.options) {
            o.options = Bytes(row.options, 0);
            o.options[0] = 0x94;  // router alert: copied flag set
            o.options[1] = 4;
            o.options[4] = 0x07;  // record route: not copied
            o.options[5] = 4;
            o.options[6] = 4;
        }
        const Bytes pkt = v4_packet(o, row.len);
        rte_mbuf* m = row.chained ? chained_from(pkt, 700) : mbuf_from(pkt, env().pool);
        std::array<rte_mbuf*, kMaxFragmentsOut> out{};
        const FragOutcome r = fragment_ipv4(m, row.mtu, out, env().pool, env().indirect);
        REQUIRE(r.error == FragError::none);
        REQUIRE(r.count == row.want);
        Bytes payload;
        std::size_t expect_off = 0;
        for (unsigned i = 0; i < r.count; ++i) {
            CAPTURE(i);
            const Bytes f = frame_bytes(out[i]);  // one segment each
            CHECK(f.size() <= row.mtu);
            CHECK(rte_pktmbuf_headroom(out[i]) >= 64);  // room for the outer headers
            const std::size_t ihl = (f[0] & 0x0f) * 4u;
            CHECK(out[i]->l3_len == ihl);
            CHECK(g16(&f[2]) == f.size());
            CHECK(g16(&f[4]) == o.id);
            const std::uint16_t fo = g16(&f[6]);
            CHECK((fo & 0x4000) == 0);
            CHECK(((fo & 0x2000) != 0) == (i + 1 < r.count));
            CHECK((fo & 0x1fff) * 8u == expect_off);
            if (i + 1 < r.count) CHECK((f.size() - ihl) % 8 == 0);
            Bytes h(f.begin(), f.begin() + ihl);
            CHECK(rte_raw_cksum(h.data(), ihl) == 0xffff);
            if (row.options) CHECK(ihl == (i == 0 ? 28u : 24u));  // record route dropped after the first
            payload.insert(payload.end(), f.begin() + ihl, f.end());
            expect_off += f.size() - ihl;
            rte_pktmbuf_free(out[i]);
        }
        CHECK(payload == Bytes(pkt.begin() + 20 + row.options, pkt.end()));
    }
    require_no_leak();
}

TEST_CASE("fragmentation refuses DF, too many fragments and garbage, leaving the packet", "[frag]") {
    std::array<rte_mbuf*, kMaxFragmentsOut> out{};
    {
        const Bytes pkt = v4_packet(V4{}, 2000);  // DF
        rte_mbuf* m = mbuf_from(pkt, env().pool);
        CHECK(fragment_ipv4(m, 1400, out, env().pool, env().indirect).error == FragError::dont_fragment);
        CHECK(frame_bytes(m) == pkt);
        rte_pktmbuf_free(m);
    }
    {
        V4 o;
        o.frag = 0;
        const Bytes pkt = v4_packet(o, 9000);
        rte_mbuf* m = mbuf_from(pkt, env().pool);
        CHECK(fragment_ipv4(m, 576, out, env().pool, env().indirect).error == FragError::too_many);
        CHECK(frame_bytes(m) == pkt);
        rte_pktmbuf_free(m);
    }
    {
        V4 o;
        o.frag = 0;
        Bytes pkt = v4_packet(o, 2000);
        p16(&pkt[2], 2100);  // total length beyond the buffer
        rte_mbuf* m = mbuf_from(pkt, env().pool);
        CHECK(fragment_ipv4(m, 1400, out, env().pool, env().indirect).error == FragError::malformed);
        rte_pktmbuf_free(m);
    }
    {
        // Trailing link padding is not payload.
        V4 o;
        o.frag = 0;
        Bytes pkt = v4_packet(o, 2000);
        Bytes padded = pkt;
        padded.resize(2030, 0xee);
        rte_mbuf* m = mbuf_from(padded, env().pool);
        const FragOutcome r = fragment_ipv4(m, 1400, out, env().pool, env().indirect);
        REQUIRE(r.count == 2);
        CHECK(out[0]->pkt_len + out[1]->pkt_len == 2000 + 20);
        rte_pktmbuf_free(out[0]);
        rte_pktmbuf_free(out[1]);
    }
    CHECK(mtu_action(v4_packet(V4{}, 100), 1500, 1446) == MtuAction::too_big);
    CHECK(mtu_action(v4_packet(V4{}, 100), 1446, 1446) == MtuAction::fits);
    V4 nodf;
    nodf.frag = 0;
    CHECK(mtu_action(v4_packet(nodf, 100), 1500, 1446) == MtuAction::fragment);
    CHECK(mtu_action(v6_packet(V6{}, 100), 1500, 1446) == MtuAction::too_big);
    CHECK(tunnel_mtu(1500, false, false) == 1446);
    CHECK(tunnel_mtu(1500, true, true) == 1418);
    require_no_leak();
}

TEST_CASE("outer fragments reassemble to the original, in any order", "[frag]") {
    Reassembler ra;
    // Packets above one 2 KiB buffer are copied into a jumbo buffer.
    REQUIRE(ra.init(64, kReassemblyTimeoutMs, SOCKET_ID_ANY, env().big, hz()));
    std::mt19937 rng(11);
    for (std::size_t len : {200u, 1500u, 1800u, 3000u, 4000u}) {
        CAPTURE(len);
        V4 o;
        o.frag = 0;
        o.proto = 50;
        o.id = static_cast<std::uint16_t>(len);
        const Bytes pkt = v4_packet(o, len);
        std::array<rte_mbuf*, kMaxFragmentsOut> out{};
        const FragOutcome r = fragment_ipv4(mbuf_from(pkt, env().pool), 576, out, env().pool, env().indirect);
        REQUIRE(r.error == FragError::none);
        std::vector<rte_mbuf*> frames;
        for (unsigned i = 0; i < r.count; ++i) {
            Bytes f = frame_bytes(out[i]);
            if (f.size() < 46) f.resize(46, 0);  // Ethernet minimum frame: padding after the datagram
            frames.push_back(wan_frame(f, RTE_ETHER_TYPE_IPV4));
            rte_pktmbuf_free(out[i]);
        }
        std::shuffle(frames.begin(), frames.end(), rng);
        rte_mbuf* whole = nullptr;
        const std::uint64_t now = rte_rdtsc();
        for (std::size_t i = 0; i < frames.size(); ++i) {
            rte_mbuf* got = ra.process(frames[i], now);
            if (i + 1 < frames.size() && frames.size() > 1) CHECK(got == nullptr);
            if (got) whole = got;
        }
        ra.end_burst(now);
        REQUIRE(whole != nullptr);
        CHECK(whole->nb_segs == 1);
        CHECK(whole->l2_len == 14);
        if (frames.size() > 1) CHECK(whole->l3_len == 20);
        CHECK(frame_bytes(whole) == with_eth(pkt, RTE_ETHER_TYPE_IPV4));  // checksum included
        rte_pktmbuf_free(whole);
    }
    // Not a fragment: returned as is.
    rte_mbuf* plain = wan_frame(v4_packet(V4{}, 300), RTE_ETHER_TYPE_IPV4);
    CHECK(ra.process(plain, rte_rdtsc()) == plain);
    rte_pktmbuf_free(plain);
    CHECK(ra.stats().reassembled == 4);  // the 200-byte packet needed no fragmenting
    CHECK(ra.stats().expired == 0);
    ra.destroy();
    require_no_leak();
}

TEST_CASE("IPv6 outer fragments reassemble; a reassembled packet larger than one buffer is copied", "[frag]") {
    Reassembler ra;
    REQUIRE(ra.init(64, kReassemblyTimeoutMs, SOCKET_ID_ANY, env().pool, hz()));
    for (std::size_t len : {1500u, 2000u}) {
        CAPTURE(len);
        V6 o;
        o.nh = 50;
        const Bytes pkt = v6_packet(o, len);
        const std::size_t payload = len - 40;
        const std::size_t piece = 1232;  // multiple of 8
        std::vector<rte_mbuf*> frames;
        for (std::size_t off = 0; off < payload; off += piece) {
            const std::size_t n = std::min(piece, payload - off);
            Bytes f(pkt.begin(), pkt.begin() + 40);
            f[6] = 44;
            p16(&f[4], static_cast<std::uint16_t>(8 + n));
            Bytes fh(8, 0);
            fh[0] = 50;
            p16(&fh[2], static_cast<std::uint16_t>(off | (off + n < payload ? 1 : 0)));
            p32(&fh[4], 0xabcd0000u + static_cast<std::uint32_t>(len));
            f.insert(f.end(), fh.begin(), fh.end());
            f.insert(f.end(), pkt.begin() + 40 + off, pkt.begin() + 40 + off + n);
            frames.push_back(wan_frame(f, RTE_ETHER_TYPE_IPV6));
        }
        std::reverse(frames.begin(), frames.end());
        rte_mbuf* whole = nullptr;
        for (auto* f : frames)
            if (rte_mbuf* got = ra.process(f, rte_rdtsc())) whole = got;
        ra.end_burst(rte_rdtsc());
        REQUIRE(whole != nullptr);
        CHECK(whole->nb_segs == 1);
        CHECK(whole->l3_len == 40);
        CHECK(frame_bytes(whole) == with_eth(pkt, RTE_ETHER_TYPE_IPV6));
        rte_pktmbuf_free(whole);
    }
    CHECK(ra.stats().reassembled == 2);
    ra.destroy();
    require_no_leak();
}

TEST_CASE("fragments that never complete are dropped after the timeout and counted", "[frag]") {
    Reassembler ra;
    constexpr std::uint64_t timeout_ms = 100;
    REQUIRE(ra.init(64, timeout_ms, SOCKET_ID_ANY, env().pool, hz()));
    const std::uint64_t t0 = rte_rdtsc();
    const std::uint64_t timeout = (hz() + 999) / 1000 * timeout_ms;
    // Three flows, each missing its last fragment (the clock is ours: no sleeping).
    for (std::uint16_t id = 1; id <= 3; ++id) {
        V4 o;
        o.frag = 0;
        o.id = id;
        std::array<rte_mbuf*, kMaxFragmentsOut> out{};
        const FragOutcome r = fragment_ipv4(mbuf_from(v4_packet(o, 1500), env().pool), 576, out, env().pool, env().indirect);
        REQUIRE(r.count == 3);
        for (unsigned i = 0; i < 2; ++i) {
            CHECK(ra.process(wan_frame(frame_bytes(out[i]), RTE_ETHER_TYPE_IPV4), t0) == nullptr);
        }
        for (unsigned i = 0; i < r.count; ++i) rte_pktmbuf_free(out[i]);
    }
    const unsigned held = 2047 - rte_mempool_avail_count(env().pool);
    CHECK(held == 6);
    ra.end_burst(t0 + timeout / 2);
    CHECK(ra.stats().expired == 0);
    ra.end_burst(t0 + timeout);  // rte_ip_frag: strictly older than the timeout
    CHECK(ra.stats().expired == 0);
    ra.end_burst(t0 + timeout + 1);
    CHECK(ra.stats().expired == 6);
    CHECK(ra.stats().reassembled == 0);
    CHECK(ra.stats().fragments_in == 6);
    ra.destroy();
    require_no_leak();
}

TEST_CASE("malformed and conflicting outer fragments are dropped and counted", "[frag]") {
    Reassembler ra;
    REQUIRE(ra.init(64, kReassemblyTimeoutMs, SOCKET_ID_ANY, env().pool, hz()));
    const std::uint64_t now = rte_rdtsc();
    {
        V4 o;
        o.frag = 0x2000;  // MF, 13 bytes of payload: not a multiple of 8
        CHECK(ra.process(wan_frame(v4_packet(o, 33), RTE_ETHER_TYPE_IPV4), now) == nullptr);
        Bytes b = v4_packet(o, 48);
        p16(&b[2], 200);  // total beyond the frame
        CHECK(ra.process(wan_frame(b, RTE_ETHER_TYPE_IPV4), now) == nullptr);
        CHECK(ra.stats().malformed == 2);
    }
    {
        // The same first fragment twice: rte_ip_frag drops the flow (overlap).
        V4 o;
        o.frag = 0x2000;
        o.id = 77;
        const Bytes first = v4_packet(o, 20 + 64);
        CHECK(ra.process(wan_frame(first, RTE_ETHER_TYPE_IPV4), now) == nullptr);
        CHECK(ra.process(wan_frame(first, RTE_ETHER_TYPE_IPV4), now) == nullptr);
        ra.end_burst(now);
        CHECK(ra.stats().dropped == 2);
    }
    ra.destroy();
    require_no_leak();
}
