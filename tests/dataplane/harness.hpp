// In-process test bench for the dataplane: EAL once per binary (no hugepages, no PCI, six
// lcores on the machine's CPUs), ports made of rte_rings (net_ring PMD) that the test feeds
// and drains, frame builders, and two dataplanes wired back to back:
//
//   test --> [A.lan rx rings] A [A.wan tx rings] ----> [B.wan rx rings] B [B.lan tx rings] --> test
//   test <-- [A.lan tx rings] A [A.wan rx rings] <---- [B.wan tx rings] B [B.lan rx rings] <-- test
//
// Lcore 0 is the test itself; A runs on lcores 1 and 2, B on 3 and 4 (sharing CPUs).
#pragma once

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <cstdint>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

#include <rte_eal.h>
#include <rte_eth_ring.h>
#include <rte_ethdev.h>
#include <rte_mbuf.h>
#include <rte_ring.h>

#include "common/bytes.hpp"
#include "common/config.hpp"
#include "control/control_thread.hpp"
#include "dataplane/dataplane.hpp"

namespace p3test {

using Bytes = std::vector<std::uint8_t>;

inline rte_mempool* test_pool() {
    static rte_mempool* pool = [] {
        std::string prefix = "p3t-dp-" + std::to_string(getpid());
        const char* argv[] = {"test_dataplane", "--no-huge", "-m", "1536", "--no-pci", "--no-shconf",
                              "--file-prefix", prefix.c_str(), "--lcores", "0@0,1@1,2@0,3@1,4@0,5@1",
                              "--log-level", "error", "--no-telemetry"};
        int argc = static_cast<int>(std::size(argv));
        if (rte_eal_init(argc, const_cast<char**>(argv)) < 0) throw std::runtime_error("rte_eal_init failed");
        // The runtime directory outlives the process unless removed.
        static std::string dir = "/var/run/dpdk/" + prefix;
        std::atexit([] { std::filesystem::remove_all(dir); });
        rte_mempool* p = rte_pktmbuf_pool_create("test_pool", 8191, 0, 0, RTE_MBUF_DEFAULT_BUF_SIZE, SOCKET_ID_ANY);
        if (!p) throw std::runtime_error("test pool");
        return p;
    }();
    return pool;
}

// A port made of rings: the test enqueues into rx[q] (what the port receives) and dequeues
// from tx[q] (what the port sent).
struct RingPort {
    std::uint16_t port = 0;
    std::vector<rte_ring*> rx, tx;
};

inline rte_ring* make_ring(const std::string& name) {
    rte_ring* r = rte_ring_create(name.c_str(), 4096, SOCKET_ID_ANY, 0);
    REQUIRE(r != nullptr);
    return r;
}

inline RingPort make_port(const std::string& name, std::vector<rte_ring*> rx, std::vector<rte_ring*> tx) {
    RingPort p;
    p.rx = std::move(rx);
    p.tx = std::move(tx);
    const int id = rte_eth_from_rings(name.c_str(), p.rx.data(), static_cast<unsigned>(p.rx.size()), p.tx.data(),
                                      static_cast<unsigned>(p.tx.size()), SOCKET_ID_ANY);
    REQUIRE(id >= 0);
    p.port = static_cast<std::uint16_t>(id);
    return p;
}

// After the port's dataplane is closed: frees what is still queued on its rings, then the rings.
inline void release_rings(RingPort& p) {
    for (auto* v : {&p.rx, &p.tx}) {
        for (auto* r : *v) {
            void* m;
            while (rte_ring_dequeue(r, &m) == 0) rte_pktmbuf_free(static_cast<rte_mbuf*>(m));
            rte_ring_free(r);
        }
        v->clear();
    }
}

// One pass of a control thread the test drives by hand, at now_ms on the test's own clock.
inline unsigned control_pass(p3::control::ControlThread& c, std::uint64_t now_ms) {
    return c.pass(p3::control::at_ms(now_ms));
}

// A test's dataplane end (anything with dp, lan and wan ring ports, and a control thread ctl
// if it has one): stopped, closed, and its rings released. Safe on an end that never started.
template <class End>
void stop_end(End& e) {
    if constexpr (requires { e.ctl.reset(); }) e.ctl.reset();   // the control plane first
    if (!e.dp) return;
    e.dp->request_stop();
    e.dp->wait();
    e.dp->close();
    release_rings(e.lan);
    release_rings(e.wan);
}

inline std::vector<rte_ring*> rings(const std::string& name, unsigned n) {
    std::vector<rte_ring*> v;
    for (unsigned i = 0; i < n; ++i) v.push_back(make_ring(name + std::to_string(i)));
    return v;
}

inline void inject(rte_ring* r, const Bytes& frame) {
    rte_mbuf* m = rte_pktmbuf_alloc(test_pool());
    REQUIRE(m != nullptr);
    char* p = rte_pktmbuf_append(m, static_cast<std::uint16_t>(frame.size()));
    REQUIRE(p != nullptr);
    std::memcpy(p, frame.data(), frame.size());
    REQUIRE(rte_ring_enqueue(r, m) == 0);
}

inline Bytes bytes_of(rte_mbuf* m) {
    Bytes b(rte_pktmbuf_pkt_len(m));
    const void* p = rte_pktmbuf_read(m, 0, static_cast<std::uint32_t>(b.size()), b.data());
    if (p != b.data()) std::memcpy(b.data(), p, b.size());
    return b;
}

// Everything that comes out of the rings until `want` frames arrived or `quiet_ms` passed
// without any (never an assertion on time: a slow machine only waits longer).
inline std::vector<Bytes> collect(const std::vector<rte_ring*>& rs, std::size_t want, int quiet_ms = 300) {
    std::vector<Bytes> out;
    auto last = std::chrono::steady_clock::now();
    while (true) {
        bool any = false;
        for (rte_ring* r : rs) {
            void* m;
            while (rte_ring_dequeue(r, &m) == 0) {
                out.push_back(bytes_of(static_cast<rte_mbuf*>(m)));
                rte_pktmbuf_free(static_cast<rte_mbuf*>(m));
                any = true;
            }
        }
        if (any) last = std::chrono::steady_clock::now();
        if (out.size() >= want) {
            if (!any && std::chrono::steady_clock::now() - last > std::chrono::milliseconds(50)) break;
        }
        if (std::chrono::steady_clock::now() - last > std::chrono::milliseconds(quiet_ms)) break;
        std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
    return out;
}

// ---- frame builders (written independently of the dataplane's own code) ------------------

struct Mac {
    std::uint8_t b[6];
};
inline Mac mac_of(std::uint16_t port) {
    rte_ether_addr a;
    rte_eth_macaddr_get(port, &a);
    Mac m;
    std::memcpy(m.b, a.addr_bytes, 6);
    return m;
}
inline constexpr Mac kHostMac{{0x02, 0x00, 0x00, 0x00, 0x10, 0x0a}};
inline constexpr Mac kGwMac{{0x02, 0x00, 0x00, 0x00, 0x00, 0xfe}};
inline constexpr Mac kBcast{{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}};

inline void put16(Bytes& b, std::size_t off, std::uint16_t v) { p3::be::put16(b.data() + off, v); }
inline std::uint16_t get16(const Bytes& b, std::size_t off) { return p3::be::get16(b.data() + off); }

// The tests' own checksum, apart from common/checksum.hpp: an independent oracle for the bytes
// the dataplane writes.

inline std::uint16_t csum(const std::uint8_t* p, std::size_t n, std::uint32_t acc = 0) {
    for (; n > 1; p += 2, n -= 2) acc += static_cast<std::uint32_t>(p[0] << 8 | p[1]);
    if (n) acc += static_cast<std::uint32_t>(p[0] << 8);
    while (acc >> 16) acc = (acc & 0xffff) + (acc >> 16);
    return static_cast<std::uint16_t>(~acc);
}

inline Bytes eth(const Mac& dst, const Mac& src, std::uint16_t type) {
    Bytes b(14);
    std::memcpy(b.data(), dst.b, 6);
    std::memcpy(b.data() + 6, src.b, 6);
    put16(b, 12, type);
    return b;
}

inline std::array<std::uint8_t, 4> v4(const char* s) {
    auto a = p3::IpAddr::parse(s);
    std::array<std::uint8_t, 4> r{};
    std::memcpy(r.data(), a->bytes.data(), 4);
    return r;
}
inline std::array<std::uint8_t, 16> v6(const char* s) {
    auto a = p3::IpAddr::parse(s);
    return a->bytes;
}

// Ethernet + IPv4 (no options) + payload; proto 17 adds a UDP header with checksum 0.
inline Bytes ipv4_frame(const Mac& dst, const Mac& src, const char* sip, const char* dip, std::uint8_t proto,
                        std::size_t payload, std::uint8_t ttl = 64, std::uint16_t frag = 0x4000, std::uint8_t fill = 0) {
    Bytes b = eth(dst, src, 0x0800);
    const std::size_t l4 = proto == 17 ? 8 : 0;
    const std::size_t tot = 20 + l4 + payload;
    Bytes ip(tot);
    ip[0] = 0x45;
    ip[1] = 0x10;
    put16(ip, 2, static_cast<std::uint16_t>(tot));
    put16(ip, 4, 0x1234);
    put16(ip, 6, frag);
    ip[8] = ttl;
    ip[9] = proto;
    auto s = v4(sip), d = v4(dip);
    std::memcpy(&ip[12], s.data(), 4);
    std::memcpy(&ip[16], d.data(), 4);
    put16(ip, 10, csum(ip.data(), 20));
    if (l4) {
        put16(ip, 20, 40000);
        put16(ip, 22, 9);
        put16(ip, 24, static_cast<std::uint16_t>(8 + payload));
    }
    for (std::size_t i = 20 + l4; i < tot; ++i) ip[i] = static_cast<std::uint8_t>(fill + i * 7);
    b.insert(b.end(), ip.begin(), ip.end());
    return b;
}

inline Bytes ipv6_frame(const Mac& dst, const Mac& src, const char* sip, const char* dip, std::uint8_t nh,
                        std::size_t payload, std::uint8_t hlim = 64, std::uint8_t fill = 0) {
    Bytes b = eth(dst, src, 0x86dd);
    Bytes ip(40 + payload);
    ip[0] = 0x60;
    ip[1] = 0x0a;
    ip[3] = 0x01;
    put16(ip, 4, static_cast<std::uint16_t>(payload));
    ip[6] = nh;
    ip[7] = hlim;
    auto s = v6(sip), d = v6(dip);
    std::memcpy(&ip[8], s.data(), 16);
    std::memcpy(&ip[24], d.data(), 16);
    for (std::size_t i = 40; i < ip.size(); ++i) ip[i] = static_cast<std::uint8_t>(fill + i * 13);
    b.insert(b.end(), ip.begin(), ip.end());
    return b;
}

inline Bytes icmp4_echo(const Mac& dst, const Mac& src, const char* sip, const char* dip, std::size_t data) {
    Bytes b = ipv4_frame(dst, src, sip, dip, 1, 8 + data);
    std::uint8_t* icmp = b.data() + 34;
    icmp[0] = 8;
    icmp[1] = 0;
    icmp[2] = icmp[3] = 0;
    put16(b, 38, 0x4242);
    put16(b, 40, 7);
    put16(b, 36, csum(icmp, 8 + data));
    return b;
}

inline std::uint16_t csum6(const Bytes& f, std::size_t ip_off, std::size_t l4_off, std::size_t len, std::uint8_t nh) {
    std::uint32_t acc = 0;
    for (std::size_t i = 0; i < 32; i += 2) acc += static_cast<std::uint32_t>(f[ip_off + 8 + i] << 8 | f[ip_off + 9 + i]);
    acc += static_cast<std::uint32_t>(len >> 16) + static_cast<std::uint32_t>(len & 0xffff) + nh;
    return csum(f.data() + l4_off, len, acc);
}

inline Bytes icmp6_echo(const Mac& dst, const Mac& src, const char* sip, const char* dip, std::size_t data) {
    Bytes b = ipv6_frame(dst, src, sip, dip, 58, 8 + data);
    b[54] = 128;
    b[55] = 0;
    b[56] = b[57] = 0;
    put16(b, 58, 0x4242);
    put16(b, 60, 7);
    put16(b, 56, csum6(b, 14, 54, 8 + data, 58));
    return b;
}

inline Bytes arp(std::uint16_t op, const Mac& eth_dst, const Mac& sha, const char* spa, const Mac& tha, const char* tpa) {
    Bytes b = eth(eth_dst, sha, 0x0806);
    Bytes a(28);
    put16(a, 0, 1);
    put16(a, 2, 0x0800);
    a[4] = 6;
    a[5] = 4;
    put16(a, 6, op);
    std::memcpy(&a[8], sha.b, 6);
    auto s = v4(spa), t = v4(tpa);
    std::memcpy(&a[14], s.data(), 4);
    std::memcpy(&a[18], tha.b, 6);
    std::memcpy(&a[24], t.data(), 4);
    b.insert(b.end(), a.begin(), a.end());
    return b;
}

// Neighbour solicitation from src (with its link-layer address) for target.
inline Bytes ns(const Mac& eth_dst, const Mac& src_mac, const char* sip, const char* dip, const char* target) {
    Bytes b = ipv6_frame(eth_dst, src_mac, sip, dip, 58, 32, 255);
    std::uint8_t* icmp = b.data() + 54;
    std::memset(icmp, 0, 32);
    icmp[0] = 135;
    auto t = v6(target);
    std::memcpy(icmp + 8, t.data(), 16);
    icmp[24] = 1;
    icmp[25] = 1;
    std::memcpy(icmp + 26, src_mac.b, 6);
    put16(b, 56, csum6(b, 14, 54, 32, 58));
    return b;
}

}  // namespace p3test
