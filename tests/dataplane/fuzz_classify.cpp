// Fuzz target: any frame on the LAN or the WAN port goes through classification and its path
// without a crash, and every buffer comes back (nothing leaks, nothing is kept). The first
// byte picks the port; the rest is the frame. One dataplane on ring ports, no worker threads:
// the target runs worker 0's code itself. Session 1 (10.2.0.0/16) is down, so LAN traffic to
// it exercises the RST/unreachable replies, and holds an inbound ESP SA (ESN, UDP 4500);
// session 2 (10.3.0.0/16) is up on static keys, with a next inbound key pending. Seeds cover
// the demultiplexing of UDP 4500 and protocol 50 (IKE marker, P3 with the UDP bit, ESP).
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <cstdlib>
#include <filesystem>
#include <string>

#include <rte_eal.h>
#include <rte_eth_ring.h>
#include <rte_ethdev.h>
#include <rte_mbuf.h>
#include <rte_ring.h>
#include <rte_cycles.h>

#include "common/log.hpp"
#include "control/control_thread.hpp"
#include "dataplane/dataplane.hpp"
#include "dataplane/fastpath.hpp"

namespace {

struct Bench {
    rte_ring* rings[4];
    p3::config::Config cfg;
    p3::dp::Dataplane* dp = nullptr;
    p3::control::ManualClock clock;
    p3::control::ControlThread* ctl = nullptr;   // driven by hand, one pass per step
    rte_mempool* pool = nullptr;
};
Bench* g;

void drain(rte_ring* r) {
    void* m;
    while (rte_ring_dequeue(r, &m) == 0) rte_pktmbuf_free(static_cast<rte_mbuf*>(m));
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
    const std::string prefix = "p3fuzz-" + std::to_string(getpid());
    const char* argv[] = {"fuzz_classify", "--no-huge", "-m", "512", "--no-pci", "--no-shconf", "--no-telemetry",
                          "--file-prefix", prefix.c_str(), "-l", "0", "--log-level", "error"};
    int argc = static_cast<int>(sizeof argv / sizeof argv[0]);
    if (rte_eal_init(argc, const_cast<char**>(argv)) < 0) __builtin_trap();
    // The runtime directory outlives the process unless removed.
    static const std::string dir = "/var/run/dpdk/" + prefix;
    std::atexit([] { std::filesystem::remove_all(dir); });
    p3::log::init({.ident = "fuzz", .to_stderr = false, .to_syslog = false});
    g = new Bench;
    const char* names[4] = {"fz_lr", "fz_lt", "fz_wr", "fz_wt"};
    for (int i = 0; i < 4; ++i) g->rings[i] = rte_ring_create(names[i], 1024, SOCKET_ID_ANY, 0);
    const int lan = rte_eth_from_rings("fzl", &g->rings[0], 1, &g->rings[1], 1, SOCKET_ID_ANY);
    const int wan = rte_eth_from_rings("fzw", &g->rings[2], 1, &g->rings[3], 1, SOCKET_ID_ANY);
    auto& c = g->cfg;
    c.dataplane.lan.port_id = static_cast<std::uint16_t>(lan);
    c.dataplane.lan.address = *p3::Prefix::parse("10.1.0.1/24", false);
    c.dataplane.wan.port_id = static_cast<std::uint16_t>(wan);
    c.dataplane.wan.address = *p3::Prefix::parse("192.0.2.1/24", false);
    c.dataplane.wan.gateway = p3::IpAddr::parse("192.0.2.254");
    c.dataplane.wan.gateway_mac = p3::MacAddr::parse("02:00:00:00:00:fe");
    c.dataplane.mbufs = 2047;
    p3::config::Remote r;
    r.id = 1;
    r.address = *p3::IpAddr::parse("192.0.2.2");
    r.subnets.push_back(*p3::Prefix::parse("10.2.0.0/16"));
    r.subnets.push_back(*p3::Prefix::parse("fd02::/48"));
    c.remotes.push_back(std::move(r));
    // Session 2 is up on static keys (AES-128, one lane): LAN traffic to 10.3.0.0/16 is
    // encrypted and leaves by the WAN; WAN P3 packets for P3 ID 0x201 reach the replay check
    // and decryption (whose tag a fuzzer cannot forge).
    p3::config::Remote r2;
    r2.id = 2;
    r2.address = *p3::IpAddr::parse("198.51.100.2");
    r2.subnets.push_back(*p3::Prefix::parse("10.3.0.0/16"));
    p3::config::StaticKeys k;
    const std::uint8_t key[16] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
    const std::uint8_t salt[4] = {10, 11, 12, 13};
    k.tx_id = 0x101;
    k.rx_id = 0x201;
    k.tx_key = p3::SecretBytes(std::span<const std::uint8_t>(key));
    k.rx_key = p3::SecretBytes(std::span<const std::uint8_t>(key));
    k.tx_salt = p3::SecretBytes(std::span<const std::uint8_t>(salt));
    k.rx_salt = p3::SecretBytes(std::span<const std::uint8_t>(salt));
    k.persist_sequence = false;   // no file I/O while fuzzing
    r2.static_keys = std::move(k);
    c.remotes.push_back(std::move(r2));
    // Session 3 runs P3 in UDP (NAT traversal) from 198.51.100.3:4500, keys installed below:
    // a WAN P3 packet for its P3 ID 0x1 from another source is opened to learn whether the
    // peer moved (it never did: the fuzzer cannot forge a tag).
    p3::config::Remote r3;
    r3.id = 3;
    r3.address = *p3::IpAddr::parse("198.51.100.3");
    r3.subnets.push_back(*p3::Prefix::parse("10.4.0.0/16"));
    c.remotes.push_back(std::move(r3));
    p3::dp::Options o;
    o.name = "fz";
    o.lcores = {0};
    g->dp = new p3::dp::Dataplane(g->cfg, o);
    if (!g->dp->init()) __builtin_trap();
    // A rekey in flight on session 2: a next inbound key whose switch point is not known, so
    // a WAN P3 packet for 0x201 that fails under the current key is restored and tried once
    // more (the receiver's second try runs under the sanitizers too).
    const std::uint8_t next_key[16] = {15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0};
    if (!g->dp->install_next_rx(g->dp->session_of(2), p3::dp::LaneKeys{next_key, salt, 1, false})) __builtin_trap();
    // Session 1 (down) has an inbound standard ESP SA with ESN, its peer behind UDP 4500:
    // WAN ESP for SPI 0x00100001 (the table's first handed-out ID: generation 1, index 1; the
    // seeds use it) from 192.0.2.2:4500 reaches the ESN inference, the replay check and
    // decryption; native ESP for it is refused as from the wrong peer.
    auto& port = g->dp->control_port();
    const p3::SessionId s1(g->dp->session_of(1));
    if (!port.set_peer(s1, *p3::IpAddr::parse("192.0.2.2"), 4500, 4500)) __builtin_trap();
    const auto spi = port.reserve_rx_ids(1);
    if (!spi || spi->raw() != 0x00100001u) __builtin_trap();
    if (!port.esp_install_rx(s1, p3::dp::EspSa{spi->raw(), next_key, salt, true})) __builtin_trap();
    const std::uint32_t sid3 = g->dp->session_of(3);
    const auto id3 = g->dp->reserve_rx_ids(1);
    const p3::dp::LaneKeys k3{next_key, salt, 1, false};
    if (!g->dp->set_peer(sid3, *p3::IpAddr::parse("198.51.100.3"), 4500, 4500) || !id3 || *id3 != 0x00100002u ||
        !g->dp->install_rx(sid3, *id3, k3) || !g->dp->install_tx(sid3, 0x301, k3))
        __builtin_trap();
    g->ctl = new p3::control::ControlThread(g->dp->control_port(), nullptr, g->clock);
    g->pool = g->dp->pool();
    return 0;
}

// What may rightly outlive one input is state with a timer: a fragment waiting in the
// reassembly table, a frame held while its next hop is resolved. The target runs those timers
// out (expires every flow, steps the control thread's clock past the resolution retries) so
// that after every input every buffer is back in the pool, exactly.
extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 1 || size > 2000) return 0;
    static std::uint64_t now_ms = 0;
    auto& dp = *g->dp;
    const auto side = (data[0] & 1) ? p3::dp::Side::wan : p3::dp::Side::lan;
    const unsigned before = rte_mempool_avail_count(g->pool);
    rte_mbuf* m = rte_pktmbuf_alloc(g->pool);
    if (!m) __builtin_trap();
    char* p = rte_pktmbuf_append(m, static_cast<std::uint16_t>(size - 1));
    if (size > 1) std::memcpy(p, data + 1, size - 1);
    p3::dp::Lcore& L = dp.lcore_for_test(0);
    // A WAN frame goes on only by decrypting, and the fuzzer cannot forge a tag.
    const unsigned went_on = p3::dp::rx_burst(L, dp.shared(), side, &m, 1);
    if (went_on > 1 || (side == p3::dp::Side::wan && went_on != 0)) __builtin_trap();
    // The control thread and worker 0's drain of its ring, until every resolution the input
    // started has been answered or given up (requests go out of the port and are drained).
    for (unsigned step = 0; step <= p3::dp::kResolveRetries + 1; ++step) {
        g->ctl->pass(p3::control::at_ms(now_ms));
        p3::dp::drain_once(L, dp.shared());
        now_ms += p3::dp::kResolveIntervalMs;
    }
    now_ms += p3::dp::kResolveHoldoffMs;
    L.reasm.end_burst(rte_rdtsc() + rte_get_tsc_hz() * 3600);   // every flow expired
    // A WAN frame can reach the LAN only by decrypting, and the fuzzer cannot forge a tag: so
    // nothing may leave by the LAN for a WAN frame. (A LAN frame may leave by either side:
    // an answer on the LAN, an encrypted packet on the WAN.)
    const bool lan_out = rte_ring_count(g->rings[1]) != 0;
    if (side == p3::dp::Side::wan && lan_out) __builtin_trap();
    if (dp.sum(&p3::dp::LcoreStats::decrypted) != 0) __builtin_trap();
    drain(g->rings[1]);
    drain(g->rings[3]);
    if (rte_mempool_avail_count(g->pool) != before) {
        std::fprintf(stderr, "pool: %u before, %u after\n", before, rte_mempool_avail_count(g->pool));
        for (const auto& d : p3::dp::kDrops)
            if (dp.drops(d.drop))
                std::fprintf(stderr, "  drop %.*s: %lu\n", int(d.name.size()), d.name.data(),
                             static_cast<unsigned long>(dp.drops(d.drop)));
#define P3_X(name)                                                                                  \
    if (dp.sum(&p3::dp::LcoreStats::name))                                                          \
        std::fprintf(stderr, "  %s: %lu\n", #name, static_cast<unsigned long>(dp.sum(&p3::dp::LcoreStats::name)));
        P3_LCORE_COUNTERS(P3_X)
#undef P3_X
        __builtin_trap();
    }
    return 0;
}
