// dp_bench: the dataplane's cycles per packet in both directions, in one process, on one
// worker lcore, with input that never repeats a sequence number (so inbound can be measured,
// which a looped pcap cannot: its replays are rightly rejected before decryption).
//
//   dp_bench [--dirs out,in] [--sizes 64,1420] [--keys 128,256] [--wire p3,esp] [--runs 21] [--packets N]
//
// --wire esp: the same session as a standard ESP SA pair with ESN (esp_install_rx/tx, the
// calls the IKE side makes), so P3 and ESP are compared on one machine in one run.
//
// Per point, one Dataplane runs its single worker on lcore 1 (ports: net_ring, so the I/O is a
// pointer handed over, no copy); --runs rounds of N distinct frames (default 2048, small
// enough to stay in cache, as a NIC leaves fresh frames) are built right before each round
// (outbound: clear UDP packets from the LAN; inbound: the same sealed by an independent
// GcmEngine under the peer's key, sequences counting on across rounds), enqueued into the RX
// ring at once, and the time until the worker has encrypted (decrypted) all of them is taken
// with the TSC. The raw bound is GcmEngine::seal/open alone on the same lcore and sizes.
// Medians over the rounds. The frames are built on lcore 0 and handed to the worker on lcore 1,
// so the worker fetches them from the other core's cache (a NIC would leave them in the LLC):
// the figures are an upper bound of the cost, and meaningless on a loaded machine (check
// uptime's load average first).
// Frame sizes include the FCS, as perf/bench.sh and raw_gcm count them.
//
// Run it as the other benchmarks: setsid sh -c 'echo -20 >/proc/self/autogroup; exec nice -n -20 CMD'.
#include <rte_cycles.h>
#include <rte_eal.h>
#include <rte_eth_ring.h>
#include <rte_ethdev.h>
#include <rte_launch.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>
#include <rte_ring.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <unistd.h>
#include <vector>

#include "common/crypto.hpp"
#include "common/log.hpp"
#include "common/wire.hpp"
#include "dataplane/dataplane.hpp"
#include "dataplane/worker.hpp"

#include "cli.hpp"

namespace {

constexpr unsigned kFcs = 4, kEth = 14;
const std::uint8_t kKey128[16] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
const std::uint8_t kKey256[32] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15,
                                  16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31};
const std::uint8_t kSalt[4] = {10, 11, 12, 13};

using p3::perf::parse_list;

std::span<const std::uint8_t> key_of(unsigned bits) {
    return bits == 256 ? std::span<const std::uint8_t>(kKey256) : std::span<const std::uint8_t>(kKey128);
}

p3::IpAddr ip(const char* s) { return *p3::IpAddr::parse(s); }

// [Ethernet][IPv4][UDP][payload] of `frame` bytes (FCS included) from src to dst.
void fill_clear(rte_mbuf* m, unsigned frame, const char* src, const char* dst, const rte_ether_addr& to, unsigned i) {
    const unsigned len = frame - kFcs;
    auto* p = reinterpret_cast<std::uint8_t*>(rte_pktmbuf_append(m, static_cast<std::uint16_t>(len)));
    std::memset(p, 0, len);
    std::memcpy(p, to.addr_bytes, 6);
    const std::uint8_t host[6] = {2, 0, 0, 0, 1, 7};
    std::memcpy(p + 6, host, 6);
    p[12] = 0x08;
    std::uint8_t* h = p + kEth;
    const unsigned tot = len - kEth;
    h[0] = 0x45;
    h[2] = static_cast<std::uint8_t>(tot >> 8);
    h[3] = static_cast<std::uint8_t>(tot);
    h[8] = 64;
    h[9] = 17;
    std::memcpy(h + 12, ip(src).bytes.data(), 4);
    std::memcpy(h + 16, ip(dst).bytes.data(), 4);
    h[15] = static_cast<std::uint8_t>(h[15] + i % 16);   // 16 flows
    std::uint32_t sum = 0;
    for (int k = 0; k < 20; k += 2) sum += (h[k] << 8) | h[k + 1];
    while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
    h[10] = static_cast<std::uint8_t>(~sum >> 8);
    h[11] = static_cast<std::uint8_t>(~sum);
    h[20] = 0x9c, h[21] = 0x40, h[22] = 0, h[23] = 53;
    h[24] = static_cast<std::uint8_t>((tot - 20) >> 8);
    h[25] = static_cast<std::uint8_t>(tot - 20);
}

struct RawArg {
    unsigned key_bits, frame;
    bool open;
    double cycles;
};

// GcmEngine alone: the crypto p3d does per packet (plaintext = IP packet + 2 trailer bytes).
int raw_main(void* p) {
    auto* a = static_cast<RawArg*>(p);
    auto e = p3::wire::GcmEngine::make(static_cast<int>(rte_socket_id()));
    p3::wire::GcmKey k(key_of(a->key_bits), kSalt);
    std::vector<std::uint8_t> buf(a->frame - kFcs - kEth + 2, 0x5a);
    std::uint8_t hdr[16] = {0, 0, 0, 0, 0, 0, 2, 1};
    std::uint8_t tag[16];
    const std::uint64_t hz = rte_get_tsc_hz(), budget = hz / 4;
    std::uint64_t n = 0, seq = 0;
    const std::uint64_t t0 = rte_rdtsc();
    std::uint64_t t1;
    do {
        for (int r = 0; r < 64; ++r, ++n) {
            ++seq;
            std::memcpy(hdr + 8, &seq, 8);
            if (a->open) (void)e->open(k, hdr, buf.data(), buf.size(), tag);
            else e->seal(k, hdr, buf.data(), buf.size(), tag);
        }
        t1 = rte_rdtsc();
    } while (t1 - t0 < budget);
    a->cycles = double(t1 - t0) / double(n);
    return 0;
}

struct Point {
    bool in;
    bool esp;
    unsigned key_bits, frame;
    std::vector<double> cycles, raw;
};

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v.empty() ? 0 : v[v.size() / 2];
}

// One point: a Dataplane with its worker on lcore 1, then `rounds` rounds of npk packets each
// (built right before the round, so they are in cache as a NIC's DMA would leave them; inbound
// sequences keep counting across rounds). Returns the worker's cycles per packet per round.
std::vector<double> run_point(bool in, bool esp, unsigned key_bits, unsigned frame, unsigned npk, unsigned rounds,
                              unsigned seq_no) {
    std::vector<double> out;
    char n[16];
    std::snprintf(n, sizeof n, "b%u", seq_no);
    char nm[32];
    auto name = [&](const char* sfx) {
        std::snprintf(nm, sizeof nm, "%s%s", n, sfx);
        return nm;
    };
    rte_ring* r[4];
    const char* sfx[4] = {"lr", "lt", "wr", "wt"};
    for (int i = 0; i < 4; ++i)
        r[i] = rte_ring_create(name(sfx[i]), rte_align32pow2(npk + 1), SOCKET_ID_ANY, RING_F_SP_ENQ | RING_F_SC_DEQ);
    const int lan = rte_eth_from_rings(name("l"), &r[0], 1, &r[1], 1, SOCKET_ID_ANY);
    const int wan = rte_eth_from_rings(name("w"), &r[2], 1, &r[3], 1, SOCKET_ID_ANY);
    p3::config::Config c;
    c.local.address = ip("192.0.2.1");
    c.dataplane.lan.port_id = static_cast<std::uint16_t>(lan);
    c.dataplane.lan.address = *p3::Prefix::parse("10.1.0.1/24", false);
    c.dataplane.lan.gateway = ip("10.1.0.254");
    c.dataplane.lan.gateway_mac = p3::MacAddr::parse("02:00:00:00:00:fd");
    c.local.subnets.push_back(*p3::Prefix::parse("10.1.5.0/24"));   // our hosts, behind the LAN gateway
    c.dataplane.wan.port_id = static_cast<std::uint16_t>(wan);
    c.dataplane.wan.address = *p3::Prefix::parse("192.0.2.1/24", false);
    c.dataplane.wan.gateway = ip("192.0.2.254");
    c.dataplane.wan.gateway_mac = p3::MacAddr::parse("02:00:00:00:00:fe");
    c.dataplane.mbufs = 4095;
    c.dataplane.replay_window = 8192;
    p3::config::Remote rm;
    rm.id = 1;
    rm.address = ip("198.51.100.2");
    rm.subnets.push_back(*p3::Prefix::parse("10.2.0.0/24"));
    rm.params.key_type = key_bits == 256 ? p3::config::KeyType::aes256 : p3::config::KeyType::aes128;
    p3::config::StaticKeys k;
    k.tx_id = 0x101;
    k.rx_id = 0x201;
    k.tx_key = p3::SecretBytes(key_of(key_bits));
    k.rx_key = p3::SecretBytes(key_of(key_bits));
    k.tx_salt = p3::SecretBytes(std::span<const std::uint8_t>(kSalt));
    k.rx_salt = p3::SecretBytes(std::span<const std::uint8_t>(kSalt));
    k.persist_sequence = false;   // throwaway benchmark keys: no state directory
    rm.static_keys = std::move(k);
    c.remotes.push_back(std::move(rm));
    p3::dp::Options o;
    o.name = n;
    o.lcores = {1};
    p3::dp::Dataplane dp(c, o);
    rte_mempool* in_pool = rte_pktmbuf_pool_create(name("in"), 2 * npk, 256, 0,
                                                   static_cast<std::uint16_t>(RTE_PKTMBUF_HEADROOM + frame + 128),
                                                   SOCKET_ID_ANY);
    const unsigned rx_ring = in ? 2 : 0, tx_ring = in ? 1 : 3;
    bool ready = lan >= 0 && wan >= 0 && in_pool && dp.init() && dp.start();
    std::uint32_t rx_id = 0x201;
    if (ready && esp) {   // the session's SAs replaced by an ESP pair (ESN), as after IKE_AUTH
        auto& port = dp.control_port();
        const p3::SessionId sid(dp.session_of(1));
        const auto spi = port.reserve_rx_ids(1);
        ready = spi && port.esp_install_rx(sid, p3::dp::EspSa{spi->raw(), key_of(key_bits), kSalt, true}) &&
                port.esp_install_tx(sid, p3::dp::EspSa{0x0c000101, key_of(key_bits), kSalt, true});
        if (ready) rx_id = spi->raw();
        else std::fputs("dp_bench: the ESP SAs were refused\n", stderr);
    }
    if (ready) {
        const rte_ether_addr to = dp.port(in ? p3::dp::Side::wan : p3::dp::Side::lan).mac;
        // The peer's sender for inbound: our rx key (lane 0), sequences from 1 on.
        auto e = p3::wire::GcmEngine::make();
        p3::wire::GcmKey gk(key_of(key_bits), kSalt);
        p3::wire::TxView v;
        v.init(rx_id, &gk, p3::wire::OuterSpec{ip("198.51.100.2"), ip("192.0.2.1")}, p3::wire::SizeHiding::off, 0,
               esp ? p3::wire::WireKind::esp_esn : p3::wire::WireKind::p3);
        std::uint64_t seq = 0;
        p3::wire::TxRef ref{&v, &seq};
        std::vector<rte_mbuf*> pk(npk);
        const auto done = [&] { return dp.sum(in ? &p3::dp::LcoreStats::decrypted : &p3::dp::LcoreStats::encrypted); };
        std::uint64_t base = 0;
        rte_delay_ms(10);
        for (unsigned rd = 0; rd < rounds; ++rd) {
            if (rte_pktmbuf_alloc_bulk(in_pool, pk.data(), npk) != 0) break;
            for (unsigned i = 0; i < npk; ++i) {
                fill_clear(pk[i], frame, in ? "10.2.0.10" : "10.1.5.10", in ? "10.1.5.20" : "10.2.0.20", to, i);
                if (in) {
                    p3::wire::WireStatus st;
                    p3::wire::encap_burst(*e, &pk[i], &ref, 1, kEth, &st);
                }
            }
            const std::uint64_t t0 = rte_rdtsc();
            unsigned q = 0;
            while (q < npk) q += rte_ring_enqueue_burst(r[rx_ring], reinterpret_cast<void**>(pk.data() + q), npk - q, nullptr);
            const std::uint64_t limit = t0 + rte_get_tsc_hz() * 5;
            // Polled gently: reading the counters pulls the worker's stats line over.
            while (done() < base + npk && rte_rdtsc() < limit) rte_delay_us_block(20);
            const std::uint64_t t1 = rte_rdtsc();
            if (done() != base + npk) {
                std::fprintf(stderr, "dp_bench: only %lu of %u packets done\n", (unsigned long)(done() - base), npk);
                break;
            }
            base += npk;
            out.push_back(double(t1 - t0) / npk);
            rte_delay_us_block(200);   // the last TX flush (kTxDrainUs)
            void* m;
            while (rte_ring_dequeue(r[tx_ring], &m) == 0) rte_pktmbuf_free(static_cast<rte_mbuf*>(m));
        }
        dp.request_stop();
        dp.wait();
    }
    dp.close();
    for (auto* ring : r) {
        void* m;
        while (rte_ring_dequeue(ring, &m) == 0) rte_pktmbuf_free(static_cast<rte_mbuf*>(m));
        rte_ring_free(ring);
    }
    rte_mempool_free(in_pool);
    return out;
}

}  // namespace

int main(int argc, char** argv) {
    std::vector<unsigned> sizes = {64, 1420}, keys = {128, 256};
    std::vector<std::string> dirs = {"out", "in"}, wires = {"p3"};
    unsigned runs = 21, packets = 0;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        if (a == "--sizes" && i + 1 < argc) sizes = parse_list(argv[++i]);
        else if (a == "--keys" && i + 1 < argc) keys = parse_list(argv[++i]);
        else if (a == "--runs" && i + 1 < argc) runs = unsigned(std::atoi(argv[++i]));
        else if (a == "--packets" && i + 1 < argc) packets = unsigned(std::atoi(argv[++i]));
        else if (a == "--wire" && i + 1 < argc) {
            wires.clear();
            for (std::string s = argv[++i]; !s.empty();) {
                auto c = s.find(',');
                wires.push_back(s.substr(0, c));
                s = c == std::string::npos ? "" : s.substr(c + 1);
            }
        } else if (a == "--dirs" && i + 1 < argc) {
            dirs.clear();
            for (std::string s = argv[++i]; !s.empty();) {
                auto c = s.find(',');
                dirs.push_back(s.substr(0, c));
                s = c == std::string::npos ? "" : s.substr(c + 1);
            }
        } else {
            std::fputs("usage: dp_bench [--dirs out,in] [--sizes 64,1420] [--keys 128,256] [--wire p3,esp] [--runs 21] [--packets N]\n",
                       stderr);
            return 2;
        }
    }
    const std::string prefix = "p3dpbench-" + std::to_string(getpid());
    const char* eal[] = {"dp_bench", "--no-huge", "-m", "1024", "--no-pci", "--no-shconf", "--no-telemetry",
                         "--file-prefix", prefix.c_str(), "--lcores", "0@0,1@1", "--log-level", "error"};
    if (rte_eal_init(static_cast<int>(std::size(eal)), const_cast<char**>(eal)) < 0) {
        std::fputs("dp_bench: rte_eal_init failed\n", stderr);
        return 1;
    }
    p3::log::init({.ident = "dp_bench", .to_stderr = false, .to_syslog = false});
    std::vector<Point> pts;
    for (const auto& w : wires)
        for (const auto& d : dirs)
            for (unsigned kb : keys)
                for (unsigned s : sizes) pts.push_back({d == "in", w == "esp", kb, s, {}, {}});
    unsigned seq = 0;
    for (auto& p : pts) {
        for (unsigned r = 0; r < runs; ++r) {
            RawArg ra{p.key_bits, p.frame, p.in, 0};
            rte_eal_remote_launch(raw_main, &ra, 1);
            rte_eal_wait_lcore(1);
            p.raw.push_back(ra.cycles);
        }
        const unsigned n = packets ? packets : 2048;
        p.cycles = run_point(p.in, p.esp, p.key_bits, p.frame, n, runs, seq++);
    }
    const double hz = double(rte_get_tsc_hz());
    std::printf("p3 dataplane, one worker lcore, net_ring ports (no copy), %s, TSC %.2f GHz; median of %u runs\n",
                p3::wire::arch_name(), hz / 1e9, runs);
    std::printf("%-4s %-4s %-8s %6s | %10s %8s | %10s %8s | %6s\n", "wire", "dir", "key", "frame", "cycles/pkt", "Mpps",
                "raw cyc", "raw Mpps", "ratio");
    for (const auto& p : pts) {
        const double c = median(p.cycles), rc = median(p.raw);
        std::printf("%-4s %-4s AES-%-4u %6u | %10.0f %8.3f | %10.0f %8.3f | %5.0f%%\n", p.esp ? "esp" : "p3",
                    p.in ? "in" : "out", p.key_bits,
                    p.frame, c, c > 0 ? hz / c / 1e6 : 0.0, rc, hz / rc / 1e6, c > 0 ? 100.0 * rc / c : 0.0);
    }
    rte_eal_cleanup();
    std::filesystem::remove_all("/var/run/dpdk/" + prefix);
    return 0;
}
