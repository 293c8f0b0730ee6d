// rekey_bench: rekey under load. Two real dataplanes back to back in one process, a real
// control-channel Session on each (A primary, B secondary) driving N rekeys one after the
// other as fast as the protocol completes them, while LAN traffic flows through the tunnel at
// the highest rate it sustains (or a paced one); every packet is numbered and accounted for.
//
//   generator --> [A.lan rx rings] A (workers) [ab rings] B (workers) [B.lan tx rings] --> checker
//   (--both)  <-- [A.lan tx rings] A           [ba rings] B           [B.lan rx rings] <-- generator
//
// The WAN rings are shared: A's WAN TX queue q is B's WAN RX queue q (and back), so the tunnel
// has no relay in it; A's WAN gateway MAC is B's WAN port MAC and the reverse. Control
// messages cross the same rings, encrypted like data. Lcore 0 (this thread) runs, in one loop:
// the generator, the checker, both control threads' passes (their control rings:
// control_in goes to the Session), both control event loops on the monotonic clock, and the
// rekey driver.
//
// Phases: warm-up (traffic, until both key arrays are active on both sides) -> rekeys (rekey
// i+1 is forced the moment rekey i completed on both sides; primary, secondary or alternating
// initiator) -> drain (traffic stops, everything in flight arrives) -> accounting.
//
// Traffic, per direction: by default as fast as the tunnel takes it, with at most half a ring
// (2048 packets) of a flow in flight, so no ring between the stages can fill and nothing is
// dropped for want of room: the highest rate this machine sustains. With --pps R it is paced
// by the clock at R packets/s instead; a burst the first ring does not take is counted as
// ring_full_at_generator (never numbered, never "sent"). A rate above what the machine
// sustains then shows as tx_full drops inside the tunnel: overload, not rekeying.
//
// Every packet carries its sequence number and a payload derived from it. Lost = sent -
// received (distinct sequences), duplicated, corrupted (bad header, length or payload),
// unexpected (not one of ours); plus each dataplane's session counters (tx_dropped,
// rx_auth_failed, rx_replayed, rx_dropped), its drops by reason, and the channel's own
// authentication failures and replays. Exit status 1 when anything was lost, duplicated,
// corrupted, failed authentication or was replay-rejected, or a rekey failed; 2 usage; 3 set-up.
#include <rte_eal.h>
#include <rte_eth_ring.h>
#include <rte_ethdev.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>
#include <rte_ring.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <unistd.h>
#include <vector>

#include "common/config.hpp"
#include "common/keygen.hpp"
#include "common/log.hpp"
#include "common/slots.hpp"
#include "control/channel/limits.hpp"
#include "control/channel/session.hpp"
#include "control/clock.hpp"
#include "control/event_loop.hpp"
#include "control/control_thread.hpp"
#include "control/dp_port.hpp"
#include "control/generator_keys.hpp"
#include "dataplane/dataplane.hpp"

namespace {

namespace ch = p3::channel;
using Clock = std::chrono::steady_clock;

constexpr unsigned kRingSize = 4096;       // every port ring (net_ring queue)
constexpr unsigned kGenPoolSize = 16383;   // generator's mbufs (in flight at most this many)
constexpr unsigned kBurst = 32;            // generator and checker burst
constexpr unsigned kEthLen = 14, kIpLen = 20, kUdpLen = 8, kFcs = 4;
constexpr unsigned kPayloadMin = 16;       // magic (8) + sequence (8)
constexpr std::uint64_t kMagic = 0x7033726b65796265ULL;   // "p3rkeybe"
constexpr std::uint16_t kUdpPort = 9;      // discard
constexpr double kRekeyTimeoutS = 60;      // one rekey longer than this: the run is abandoned

struct Opts {
    unsigned rekeys = 1000;
    double pps = 0;                // per direction; 0: as fast as the tunnel takes it (window)
    unsigned frame = 128;          // bytes on the wire, FCS included
    bool both = false;             // traffic B -> A too
    unsigned workers = 2;          // per dataplane
    enum class Init { primary, secondary, alternate } init = Init::alternate;
    double interval_ms = 0;        // least time between rekey starts
    std::uint32_t array_size = 256;
    bool aes256 = false;
    bool size_hiding = false;
    std::string json;
    std::string eal_lcores;        // override of the lcore -> CPU map
    std::string mem_mb = "1024";   // EAL memory (no hugepages): two dataplanes need ~1 GB
    bool verbose = false;
    bool smoke = false;
    bool self_check = false;       // inject one loss, one duplicate, one corruption
};

const char* kUsage =
    "usage: rekey_bench [--rekeys N] [--pps R] [--size BYTES] [--both] [--workers 1..8]\n"
    "                   [--initiator primary|secondary|alternate] [--interval-ms T] [--array-size N]\n"
    "                   [--aes256] [--size-hiding] [--json FILE] [--lcores EAL-MAP] [--mem MB] [--verbose]\n"
    "                   [--smoke] [--self-check]\n";

// ---- ports -------------------------------------------------------------------------------------

std::vector<rte_ring*> make_rings(const std::string& name, unsigned n) {
    std::vector<rte_ring*> v;
    for (unsigned i = 0; i < n; ++i) {
        rte_ring* r = rte_ring_create((name + std::to_string(i)).c_str(), kRingSize, SOCKET_ID_ANY, 0);
        if (!r) throw std::runtime_error("ring " + name);
        v.push_back(r);
    }
    return v;
}

int port_from(const std::string& name, std::vector<rte_ring*>& rx, std::vector<rte_ring*>& tx) {
    return rte_eth_from_rings(name.c_str(), rx.data(), static_cast<unsigned>(rx.size()), tx.data(),
                              static_cast<unsigned>(tx.size()), SOCKET_ID_ANY);
}

void free_rings(std::vector<rte_ring*>& v) {
    for (rte_ring* r : v) {
        void* m;
        while (rte_ring_dequeue(r, &m) == 0) rte_pktmbuf_free(static_cast<rte_mbuf*>(m));
        rte_ring_free(r);
    }
    v.clear();
}

std::string mac_str(const rte_ether_addr& a) {
    char b[18];
    std::snprintf(b, sizeof b, "%02x:%02x:%02x:%02x:%02x:%02x", a.addr_bytes[0], a.addr_bytes[1], a.addr_bytes[2],
                  a.addr_bytes[3], a.addr_bytes[4], a.addr_bytes[5]);
    return b;
}

// ---- the control plane of one dataplane: control_in packets to its Session --------------------

struct ChannelPlane final : p3::control::Plane {
    ch::Session* session = nullptr;
    std::uint32_t sid = 0;
    std::uint64_t control_in = 0, other = 0;
    std::uint8_t buf[ch::limits::kMaxInnerPacket + 64];
    void on_packet(rte_mbuf* m) override {
        const auto& md = p3::dp::meta(m);
        const std::uint32_t len = rte_pktmbuf_pkt_len(m);
        if (md.kind == p3::dp::MsgKind::control_in && md.session == sid && session && len <= sizeof buf) {
            ++control_in;
            const void* p = rte_pktmbuf_read(m, 0, len, buf);
            session->on_control_packet({static_cast<const std::uint8_t*>(p), len});
        } else {
            ++other;
        }
        rte_pktmbuf_free(m);
    }
};

// ---- one appliance -------------------------------------------------------------------------------

struct End {
    std::string name;
    std::vector<rte_ring*> lan_rx, lan_tx;   // the generator feeds lan_rx, the checker drains lan_tx
    int lan_port = -1, wan_port = -1;
    rte_ether_addr lan_mac{}, wan_mac{};
    p3::config::Config cfg;
    std::unique_ptr<p3::dp::Dataplane> dp;
    ChannelPlane plane;
    p3::control::SteadyClock clock;
    std::unique_ptr<p3::control::ControlThread> ctl;   // passes driven by the bench loop
    std::uint32_t sid = 0;
    std::unique_ptr<p3::control::DataplanePort::Link> link;
    std::unique_ptr<ch::Session> session;
};

p3::SecretBytes random_bytes(p3::keys::KeyGenerator& g, std::size_t n) { return g.generate(n); }

// Flows: A -> B (always) and B -> A (--both).
struct Flow {
    const char* label;
    End* from;
    End* to;
    std::vector<rte_ring*>* wire;            // the WAN rings from -> to
    std::string src_ip, dst_ip;
    std::vector<std::uint8_t> tmpl{};        // Ethernet + IPv4 + UDP, as sent
    unsigned frame = 0;                      // bytes in the mbuf (no FCS)
    std::uint64_t next_seq = 0;              // = packets sent into the tunnel
    std::uint64_t received = 0, duplicated = 0, corrupted = 0, unexpected = 0;
    std::uint64_t ring_full = 0, no_mbuf = 0;
    std::vector<std::uint64_t> seen{};       // bitmap by sequence
    unsigned rr = 0;                         // next LAN RX ring
    std::uint64_t phase_sent = 0;            // pacing: offered since the phase began
    // --self-check: the generator itself withholds, doubles and spoils one packet each; the
    // checker must then report lost 2 (the withheld and the spoilt one), duplicated 1, corrupted 1.
    std::uint64_t inject_loss = ~0ULL, inject_dup = ~0ULL, inject_corrupt = ~0ULL;
    std::uint64_t written_off = 0;           // window: given up as lost (so the window reopens)
    std::uint64_t write_offs = 0;
    Clock::time_point last_rx{};

    std::uint64_t lost() const noexcept { return next_seq - received; }
};

std::uint16_t csum16(const std::uint8_t* p, std::size_t n) {
    std::uint32_t acc = 0;
    for (; n > 1; p += 2, n -= 2) acc += static_cast<std::uint32_t>(p[0] << 8 | p[1]);
    if (n) acc += static_cast<std::uint32_t>(p[0] << 8);
    while (acc >> 16) acc = (acc & 0xffff) + (acc >> 16);
    return static_cast<std::uint16_t>(~acc);
}

void put16(std::uint8_t* p, std::uint16_t v) {
    p[0] = static_cast<std::uint8_t>(v >> 8);
    p[1] = static_cast<std::uint8_t>(v);
}

void build_template(Flow& f, unsigned frame) {
    f.frame = frame - kFcs;
    f.tmpl.assign(kEthLen + kIpLen + kUdpLen, 0);
    std::uint8_t* e = f.tmpl.data();
    std::memcpy(e, f.from->lan_mac.addr_bytes, 6);
    const std::uint8_t host[6] = {0x02, 0x00, 0x00, 0x00, 0x10, 0x0a};
    std::memcpy(e + 6, host, 6);
    put16(e + 12, 0x0800);
    std::uint8_t* ip = e + kEthLen;
    const unsigned tot = f.frame - kEthLen;
    ip[0] = 0x45;
    ip[1] = 0;   // best effort, not-ECT
    put16(ip + 2, static_cast<std::uint16_t>(tot));
    put16(ip + 4, 0x1234);
    put16(ip + 6, 0x4000);
    ip[8] = 64;
    ip[9] = 17;
    std::memcpy(ip + 12, p3::IpAddr::parse(f.src_ip)->bytes.data(), 4);
    std::memcpy(ip + 16, p3::IpAddr::parse(f.dst_ip)->bytes.data(), 4);
    put16(ip + 10, csum16(ip, kIpLen));
    std::uint8_t* udp = ip + kIpLen;
    put16(udp, 40000);
    put16(udp + 2, kUdpPort);
    put16(udp + 4, static_cast<std::uint16_t>(tot - kIpLen));
}

// Payload word k of packet seq (k >= 2); words 0 and 1 are the magic and the sequence.
inline std::uint64_t word(std::uint64_t seq, std::size_t k) noexcept { return (seq + 1) * 0x9e3779b97f4a7c15ULL ^ k; }

void fill_payload(std::uint8_t* pl, std::size_t len, std::uint64_t seq) {
    std::memcpy(pl, &kMagic, 8);
    std::memcpy(pl + 8, &seq, 8);
    std::size_t k = 2;
    for (std::size_t off = 16; off < len; off += 8, ++k) {
        const std::uint64_t w = word(seq, k);
        std::memcpy(pl + off, &w, std::min<std::size_t>(8, len - off));
    }
}

// Sends up to n packets; returns how many went into the rings.
unsigned generate(Flow& f, rte_mempool* pool, unsigned n) {
    rte_mbuf* ms[kBurst];
    n = std::min(n, kBurst);
    // An injected fault goes alone in its burst.
    bool fault = false;
    for (std::uint64_t s : {f.inject_loss, f.inject_dup, f.inject_corrupt}) {
        if (s == f.next_seq) n = 1, fault = true;
        else if (s > f.next_seq && s < f.next_seq + n) n = unsigned(s - f.next_seq);
    }
    if (n == 0) return 0;
    if (rte_pktmbuf_alloc_bulk(pool, ms, n) != 0) {
        f.no_mbuf += n;
        return 0;
    }
    const std::size_t hdr = f.tmpl.size(), pl = f.frame - hdr;
    const std::uint64_t first = f.next_seq;
    if (f.seen.size() * 64 < first + n) f.seen.resize((first + n) / 64 + 4096, 0);
    for (unsigned i = 0; i < n; ++i) {
        auto* p = reinterpret_cast<std::uint8_t*>(rte_pktmbuf_append(ms[i], static_cast<std::uint16_t>(f.frame)));
        std::memcpy(p, f.tmpl.data(), hdr);
        fill_payload(p + hdr, pl, first + i);
    }
    rte_ring* r = f.from->lan_rx[f.rr++ % f.from->lan_rx.size()];
    if (fault) {
        std::uint8_t* p = rte_pktmbuf_mtod(ms[0], std::uint8_t*);
        if (first == f.inject_loss) {
            rte_pktmbuf_free(ms[0]);   // numbered and counted as sent, never put in
            ++f.next_seq;
            ++f.phase_sent;
            return 1;
        }
        if (first == f.inject_corrupt) p[f.frame - 1] ^= 0x5a;
        if (first == f.inject_dup) {
            rte_mbuf* c = rte_pktmbuf_copy(ms[0], pool, 0, UINT32_MAX);
            if (c && rte_ring_enqueue(r, c) != 0) rte_pktmbuf_free(c);
        }
    }
    const unsigned q = rte_ring_enqueue_burst(r, reinterpret_cast<void**>(ms), n, nullptr);
    if (q < n) {
        f.ring_full += n - q;
        rte_pktmbuf_free_bulk(ms + q, n - q);
    }
    f.next_seq += q;
    f.phase_sent += q;
    return q;
}

// One frame out of the far LAN.
void check(Flow& f, rte_mbuf* m) {
    std::uint8_t buf[RTE_MBUF_DEFAULT_DATAROOM];
    const std::uint32_t len = rte_pktmbuf_pkt_len(m);
    if (len > sizeof buf || len < kEthLen + kIpLen + kUdpLen + kPayloadMin) {
        ++f.unexpected;
        return;
    }
    const auto* p = static_cast<const std::uint8_t*>(rte_pktmbuf_read(m, 0, len, buf));
    const std::uint8_t* ip = p + kEthLen;
    const std::uint8_t* t = f.tmpl.data() + kEthLen;
    // Not one of ours at all (an ICMP error, ARP, ...): unexpected.
    if (p[12] != 0x08 || p[13] != 0x00 || ip[0] != 0x45 || ip[9] != 17 || std::memcmp(ip + 12, t + 12, 8) != 0 ||
        std::memcmp(ip + kIpLen + 2, t + kIpLen + 2, 2) != 0) {
        ++f.unexpected;
        return;
    }
    const std::uint8_t* pl = ip + kIpLen + kUdpLen;
    std::uint64_t magic, seq;
    std::memcpy(&magic, pl, 8);
    std::memcpy(&seq, pl + 8, 8);
    if (magic != kMagic || seq >= f.next_seq) {
        ++f.corrupted;
        return;
    }
    bool ok = len == f.frame && std::memcmp(ip + 2, t + 2, 2) == 0 && csum16(ip, kIpLen) == 0 &&
              std::memcmp(ip + kIpLen, t + kIpLen, kUdpLen) == 0;
    const std::size_t hdr = f.tmpl.size(), pll = f.frame - hdr;
    std::size_t k = 2;
    for (std::size_t off = 16; ok && off < pll && off < len - hdr; off += 8, ++k) {
        const std::uint64_t w = word(seq, k);
        ok = std::memcmp(pl + off, &w, std::min<std::size_t>(8, pll - off)) == 0;
    }
    if (!ok) {
        ++f.corrupted;
        return;
    }
    std::uint64_t& bits = f.seen[seq / 64];
    const std::uint64_t bit = std::uint64_t{1} << (seq % 64);
    if (bits & bit) {
        ++f.duplicated;
        return;
    }
    bits |= bit;
    ++f.received;
}

// Nothing of this flow queued anywhere between the generator and the checker.
bool rings_empty(const Flow& f) {
    for (const auto* v : {&f.from->lan_rx, f.wire, &f.to->lan_tx})
        for (rte_ring* r : *v)
            if (rte_ring_count(r) != 0) return false;
    return true;
}

unsigned drain(Flow& f) {
    unsigned n = 0;
    rte_mbuf* ms[kBurst];
    for (rte_ring* r : f.to->lan_tx) {
        const unsigned k = rte_ring_dequeue_burst(r, reinterpret_cast<void**>(ms), kBurst, nullptr);
        for (unsigned i = 0; i < k; ++i) check(f, ms[i]);
        if (k) rte_pktmbuf_free_bulk(ms, k);
        n += k;
    }
    if (n) f.last_rx = Clock::now();
    return n;
}

double percentile(std::vector<double> v, double p) {
    if (v.empty()) return 0;
    std::sort(v.begin(), v.end());
    const std::size_t i = static_cast<std::size_t>(std::ceil(p / 100.0 * static_cast<double>(v.size()))) - 1;
    return v[std::min(i, v.size() - 1)];
}

std::uint64_t ms_now() {
    return static_cast<std::uint64_t>(
        std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now().time_since_epoch()).count());
}

// The 1-minute load average: the figures mean little on a busy machine.
std::string loadavg() {
    char b[64] = "?";
    if (FILE* f = std::fopen("/proc/loadavg", "r")) {
        if (std::fscanf(f, "%63s", b) != 1) std::strcpy(b, "?");
        std::fclose(f);
    }
    return b;
}

double secs(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

bool parse(int argc, char** argv, Opts& o) {
    bool rekeys_set = false;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        auto val = [&]() -> const char* { return i + 1 < argc ? argv[++i] : nullptr; };
        const char* v = nullptr;
        if (a == "--rekeys" && (v = val())) o.rekeys = unsigned(std::strtoul(v, nullptr, 10)), rekeys_set = true;
        else if (a == "--pps" && (v = val())) o.pps = std::strtod(v, nullptr);
        else if (a == "--size" && (v = val())) o.frame = unsigned(std::strtoul(v, nullptr, 10));
        else if (a == "--workers" && (v = val())) o.workers = unsigned(std::strtoul(v, nullptr, 10));
        else if (a == "--interval-ms" && (v = val())) o.interval_ms = std::strtod(v, nullptr);
        else if (a == "--array-size" && (v = val())) o.array_size = std::uint32_t(std::strtoul(v, nullptr, 10));
        else if (a == "--json" && (v = val())) o.json = v;
        else if (a == "--lcores" && (v = val())) o.eal_lcores = v;
        else if (a == "--mem" && (v = val())) o.mem_mb = v;
        else if (a == "--initiator" && (v = val())) {
            const std::string s = v;
            if (s == "primary") o.init = Opts::Init::primary;
            else if (s == "secondary") o.init = Opts::Init::secondary;
            else if (s == "alternate") o.init = Opts::Init::alternate;
            else return false;
        } else if (a == "--both") o.both = true;
        else if (a == "--aes256") o.aes256 = true;
        else if (a == "--size-hiding") o.size_hiding = true;
        else if (a == "--verbose") o.verbose = true;
        else if (a == "--smoke") o.smoke = true;
        else if (a == "--self-check") o.self_check = true;
        else if (a == "--help" || a == "-h") return false;
        else return false;
    }
    if (o.smoke && !rekeys_set) o.rekeys = 20;
    const unsigned min_frame = kEthLen + kIpLen + kUdpLen + kPayloadMin + kFcs;
    return o.rekeys > 0 && o.workers >= 1 && o.workers <= 8 && o.frame >= min_frame && o.frame <= 1518 &&
           o.pps >= 0;
}

}  // namespace

int main(int argc, char** argv) {
    Opts o;
    const std::string load_at_start = loadavg();
    if (!parse(argc, argv, o)) {
        std::fputs(kUsage, stderr);
        return 2;
    }

    // EAL: lcore 0 is this thread; the workers of A and B alternate over the CPUs (several
    // lcores per CPU when there are fewer CPUs than lcores, as on a small test machine).
    const std::string prefix = "p3rekey-" + std::to_string(getpid());
    std::string lcores = o.eal_lcores;
    if (lcores.empty()) {
        const long ncpu = std::max(1L, sysconf(_SC_NPROCESSORS_ONLN));
        lcores = "0@0";
        for (unsigned l = 1; l <= 2 * o.workers; ++l) {
            char b[32];
            std::snprintf(b, sizeof b, ",%u@%ld", l, long(l) % ncpu);
            lcores += b;
        }
    }
    const char* eal[] = {"rekey_bench", "--no-huge", "-m", o.mem_mb.c_str(), "--no-pci", "--no-shconf", "--no-telemetry",
                         "--file-prefix", prefix.c_str(), "--lcores", lcores.c_str(), "--log-level", "error"};
    if (rte_eal_init(static_cast<int>(std::size(eal)), const_cast<char**>(eal)) < 0) {
        std::fputs("rekey_bench: rte_eal_init failed\n", stderr);
        std::filesystem::remove_all("/var/run/dpdk/" + prefix);
        return 3;
    }
    struct RunDir {
        std::string d;
        ~RunDir() { std::filesystem::remove_all(d); }
    } run_dir{"/var/run/dpdk/" + prefix};
    // Set-up failures end the process at once: workers may already run on the other lcores.
    const auto die = [&](const std::string& what) {
        std::fprintf(stderr, "rekey_bench: %s\n", what.c_str());
        std::filesystem::remove_all(run_dir.d);
        std::_Exit(3);
    };
    // Warnings and errors show (a failed rekey attempt is worth seeing); --verbose adds every
    // rekey's log lines.
    p3::log::init({.ident = "rekey_bench", .to_stderr = true, .to_syslog = false,
                   .min_level = o.verbose ? p3::log::Level::info : p3::log::Level::warning});

    const unsigned W = o.workers;
    int rc = 0;
    try {
        End a, b;
        a.name = "rka";
        b.name = "rkb";
        std::vector<rte_ring*> ab = make_rings("rkab", W), ba = make_rings("rkba", W);
        for (End* e : {&a, &b}) {
            e->lan_rx = make_rings(e->name + "lr", W);
            e->lan_tx = make_rings(e->name + "lt", W);
            e->lan_port = port_from(e->name + "l", e->lan_rx, e->lan_tx);
        }
        a.wan_port = port_from("rkaw", ba, ab);
        b.wan_port = port_from("rkbw", ab, ba);
        if (a.lan_port < 0 || b.lan_port < 0 || a.wan_port < 0 || b.wan_port < 0) die("net_ring ports could not be made");
        for (End* e : {&a, &b}) {
            rte_eth_macaddr_get(static_cast<std::uint16_t>(e->lan_port), &e->lan_mac);
            rte_eth_macaddr_get(static_cast<std::uint16_t>(e->wan_port), &e->wan_mac);
        }

        p3::keys::KeyGenerator gen(p3::config::KeyGeneration::software);
        const std::size_t klen = o.aes256 ? 32 : 16;
        const p3::SecretBytes k_ab = random_bytes(gen, klen), k_ba = random_bytes(gen, klen);
        const p3::SecretBytes s_ab = random_bytes(gen, 4), s_ba = random_bytes(gen, 4);
        p3::config::SessionParams params;   // the product's defaults, but for:
        params.key_type = o.aes256 ? p3::config::KeyType::aes256 : p3::config::KeyType::aes128;
        params.size_hiding = o.size_hiding;
        params.array_size = o.array_size;
        params.rekey_wait = 3600;           // no timer rekeys in between ours

        struct SideSpec {
            const char *lan, *wan, *lan_gw, *wan_gw, *peer_wan, *peer_subnet;
            std::uint32_t remote_id, tx_id, rx_id;
        };
        const SideSpec sa{"10.1.0.1/24", "192.0.2.1/24", "10.1.0.254", "192.0.2.254", "198.51.100.2", "10.2.0.0/16",
                          2, 0x301, 0x201};
        const SideSpec sb{"10.2.0.1/24", "198.51.100.2/24", "10.2.0.254", "198.51.100.254", "192.0.2.1", "10.1.0.0/16",
                          1, 0x201, 0x301};
        for (auto [e, s, peer] : {std::tuple{&a, &sa, &b}, std::tuple{&b, &sb, &a}}) {
            p3::config::Config& c = e->cfg;
            c.role = e == &a ? p3::config::Role::primary : p3::config::Role::secondary;
            c.local.address = p3::Prefix::parse(s->wan, false)->addr;
            c.dataplane.lan.port_id = static_cast<std::uint16_t>(e->lan_port);
            c.dataplane.lan.address = *p3::Prefix::parse(s->lan, false);
            c.dataplane.lan.gateway = p3::IpAddr::parse(s->lan_gw);
            c.dataplane.lan.gateway_mac = p3::MacAddr::parse("02:00:00:00:00:fe");
            // Our hosts behind the LAN gateway: what the peer routes to us.
            c.local.subnets.push_back(*p3::Prefix::parse((e == &a ? sb : sa).peer_subnet));
            c.dataplane.wan.port_id = static_cast<std::uint16_t>(e->wan_port);
            c.dataplane.wan.address = *p3::Prefix::parse(s->wan, false);
            c.dataplane.wan.gateway = p3::IpAddr::parse(s->wan_gw);
            // The WAN "router" is the other appliance's port: frames go straight to it.
            c.dataplane.wan.gateway_mac = p3::MacAddr::parse(mac_str(peer->wan_mac));
            c.dataplane.rx_queues = static_cast<std::uint16_t>(W);
            c.dataplane.mbufs = 4095;
            c.dataplane.idle_backoff_us = 50;   // several lcores share each CPU
            c.dataplane.idle_polls = 64;
            c.source = "rekey_bench";
            p3::config::Remote r;
            r.id = s->remote_id;
            r.address = *p3::IpAddr::parse(s->peer_wan);
            r.subnets.push_back(*p3::Prefix::parse(s->peer_subnet));
            r.params = params;
            // Epoch 0: static keys stand in for the setup exchange.
            p3::config::StaticKeys k;
            k.tx_id = s->tx_id;
            k.rx_id = s->rx_id;
            const bool is_a = e == &a;
            k.tx_key = p3::SecretBytes((is_a ? k_ab : k_ba).span());
            k.tx_salt = p3::SecretBytes((is_a ? s_ab : s_ba).span());
            k.rx_key = p3::SecretBytes((is_a ? k_ba : k_ab).span());
            k.rx_salt = p3::SecretBytes((is_a ? s_ba : s_ab).span());
            k.lanes = W;
            k.persist_sequence = false;   // throwaway benchmark keys: no state directory
            r.static_keys = std::move(k);
            c.remotes.push_back(std::move(r));
            p3::dp::Options opt;
            opt.name = e->name;
            for (unsigned i = 0; i < W; ++i) opt.lcores.push_back((is_a ? 1 : 1 + W) + i);
            e->dp = std::make_unique<p3::dp::Dataplane>(e->cfg, opt);
            if (!e->dp->init()) die("dataplane " + e->name + " did not start");
            e->ctl = std::make_unique<p3::control::ControlThread>(e->dp->control_port(), &e->plane, e->clock);
            if (!e->dp->start()) die("dataplane " + e->name + " did not start");
            e->sid = e->dp->session_of(s->remote_id);
            e->plane.sid = e->sid;
        }

        p3::control::SteadyClock clock;
        p3::control::EventLoop loop_a(clock), loop_b(clock);
        p3::control::SystemRandom rng;
        ch::GeneratorKeys keys(gen);
        const auto addr = [](const char* s) { return *p3::IpAddr::parse(s); };
        for (End* e : {&a, &b}) {
            const bool is_a = e == &a;
            const p3::control::DataplanePort::LinkIds ids{p3::SessionId(e->sid), p3::RemoteId(is_a ? 2 : 1),
                                                          is_a ? 0x201u : 0x301u, is_a ? 0x301u : 0x201u,
                                                          (is_a ? b : a).dp->tx_lanes(), e->dp->tx_lanes()};
            e->link = std::make_unique<p3::control::DataplanePort::Link>(e->dp->control_port(), ids, o.size_hiding);
            ch::SessionConfig sc;
            sc.role = is_a ? p3::config::Role::primary : p3::config::Role::secondary;
            sc.remote_id = is_a ? 2 : 1;
            sc.name = is_a ? "remote 2" : "primary";
            sc.addrs = is_a ? ch::FrameAddrs{addr("192.0.2.1"), addr("198.51.100.2"), 5653}
                            : ch::FrameAddrs{addr("198.51.100.2"), addr("192.0.2.1"), 5653};
            sc.params = params;
            e->session = std::make_unique<ch::Session>(is_a ? loop_a : loop_b, sc, *e->link, *e->link, rng, keys);
            e->plane.session = e->session.get();
        }
        // Control keys of epoch 0 (what the setup exchange would have derived).
        {
            const p3::SecretBytes c_ab = random_bytes(gen, klen + 4), c_ba = random_bytes(gen, klen + 4);
            auto km = [](const p3::SecretBytes& s) { return ch::KeyMaterial::from_wire(s.span()); };
            a.session->start(ch::InitialKeys{0x201, 0x301, km(c_ab), km(c_ba), a.dp->tx_lanes(), b.dp->tx_lanes()});
            b.session->start(ch::InitialKeys{0x301, 0x201, km(c_ba), km(c_ab), b.dp->tx_lanes(), a.dp->tx_lanes()});
        }

        rte_mempool* pool = rte_pktmbuf_pool_create("rk_gen", kGenPoolSize, 256, 0, RTE_MBUF_DEFAULT_BUF_SIZE,
                                                    SOCKET_ID_ANY);
        if (!pool) die("no generator mbuf pool");
        std::vector<Flow> flows;
        flows.push_back(Flow{.label = "A->B", .from = &a, .to = &b, .wire = &ab, .src_ip = "10.1.9.5", .dst_ip = "10.2.9.5"});
        if (o.both) flows.push_back(Flow{.label = "B->A", .from = &b, .to = &a, .wire = &ba, .src_ip = "10.2.9.5", .dst_ip = "10.1.9.5"});
        for (Flow& f : flows) build_template(f, o.frame);
        if (o.self_check) {
            flows[0].inject_loss = 1000;
            flows[0].inject_dup = 2000;
            flows[0].inject_corrupt = 3000;
        }

        // ---- the loop ---------------------------------------------------------------------------
        // window: as fast as the tunnel takes it, never more than kWindow packets of a flow in
        //         flight, so no ring (4096) ever fills: nothing is dropped for want of room;
        // paced:  --pps per flow, by the clock (what a ring does not take is ring_full).
        enum class Mode { window, paced, off };
        const Mode traffic = o.pps > 0 ? Mode::paced : Mode::window;
        Mode mode = traffic;
        const double pps = o.pps;
        Clock::time_point phase_t0 = Clock::now();
        constexpr std::uint64_t kWindow = kRingSize / 2;
        // The driving thread's longest absence (between two steps) and longest single step: a
        // stall here delays both the traffic and the control channel.
        Clock::duration max_gap{}, max_step{};
        Clock::time_point prev_step = Clock::now();
        auto step = [&]() -> unsigned {
            unsigned work = 0;
            const auto now = Clock::now();
            max_gap = std::max(max_gap, now - prev_step);
            for (Flow& f : flows) {
                if (mode == Mode::window) {
                    const std::uint64_t gone = f.received + f.written_off;
                    const std::uint64_t in_flight = f.next_seq > gone ? f.next_seq - gone : 0;
                    if (in_flight < kWindow) {
                        work += generate(f, pool, unsigned(std::min<std::uint64_t>(kBurst, kWindow - in_flight)));
                    } else if (now - f.last_rx > std::chrono::milliseconds(200) && rings_empty(f)) {
                        // Nothing came out for 200 ms with the window full and nothing queued on
                        // the way: what is missing is lost (the end count says so); reopen the
                        // window. (Queued packets mean a stalled worker, not a loss: wait.)
                        f.written_off = f.next_seq - f.received;
                        ++f.write_offs;
                    }
                } else if (mode == Mode::paced) {
                    const double due = pps * secs(now - phase_t0);
                    if (due > double(f.phase_sent)) {
                        // A stall of this thread is caught up at most half a ring at a time.
                        unsigned want = unsigned(std::min(due - double(f.phase_sent), double(kRingSize / 2)));
                        while (want) {
                            const unsigned n = std::min(want, kBurst);
                            const unsigned got = generate(f, pool, n);
                            work += got;
                            want -= n;
                            if (got < n) {
                                // Not taken now: offered all the same (the pace does not retry it).
                                f.phase_sent += n - got;
                                break;
                            }
                        }
                    }
                }
                work += drain(f);
            }
            const std::uint64_t t = ms_now();
            work += a.ctl->pass(p3::control::at_ms(t));
            work += b.ctl->pass(p3::control::at_ms(t));
            work += unsigned(loop_a.run_due());
            work += unsigned(loop_b.run_due());
            prev_step = Clock::now();
            max_step = std::max(max_step, prev_step - now);
            return work;
        };
        // Nothing to do: yield the CPU briefly (workers share it).
        auto idle = [] { std::this_thread::sleep_for(std::chrono::microseconds(20)); };
        auto run_for = [&](double s) {
            const auto end = Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(s));
            while (Clock::now() < end)
                if (!step()) idle();
        };
        const auto session_ok = [&] {
            return a.session->state() == ch::SessionState::up && b.session->state() == ch::SessionState::up;
        };

        // Warm-up: traffic flows; both key arrays delivered (rekeys then name indices, as in service).
        const auto warm_end = Clock::now() + std::chrono::seconds(30);
        const bool arrays = o.array_size >= ch::limits::kIndicesPerRekey;
        run_for(0.2);
        while (arrays && Clock::now() < warm_end &&
               !(b.session->array_gen(ch::ArrayKind::data) && b.session->array_gen(ch::ArrayKind::control) &&
                 a.session->array_gen(ch::ArrayKind::data) && a.session->array_gen(ch::ArrayKind::control)))
            if (!step()) idle();
        run_for(0.1);

        // ---- rekeys -------------------------------------------------------------------------------
        std::uint64_t sent0 = 0;
        for (Flow& f : flows) sent0 += f.next_seq;
        const std::uint64_t base_p = a.session->stats().rekeys_done, base_s = b.session->stats().rekeys_done;
        std::vector<double> rekey_ms;
        rekey_ms.reserve(o.rekeys);
        // What else happened during a rekey (to read the slow ones): array deliveries, retransmissions.
        struct Slow {
            double ms;
            unsigned index;
            std::uint64_t arrays, retransmits;
        };
        std::vector<Slow> slow;
        const auto retrans = [&] { return a.session->stats().retransmits + b.session->stats().retransmits; };
        const auto run_t0 = Clock::now();
        Clock::time_point last_start{};
        bool aborted = false;
        std::string abort_why;
        for (unsigned i = 0; i < o.rekeys && !aborted; ++i) {
            // Spacing (--interval-ms) between starts.
            while (Clock::now() - last_start < std::chrono::duration<double, std::milli>(o.interval_ms))
                if (!step()) idle();
            const bool by_primary =
                o.init == Opts::Init::primary || (o.init == Opts::Init::alternate && i % 2 == 0);
            const auto t0 = Clock::now();
            last_start = t0;
            const std::uint64_t arr0 = a.session->stats().arrays_delivered, rt0 = retrans();
            (by_primary ? a : b).session->force_rekey();
            for (;;) {
                if (a.session->stats().rekeys_done >= base_p + i + 1 && b.session->stats().rekeys_done >= base_s + i + 1)
                    break;
                if (!session_ok()) {
                    aborted = true;
                    abort_why = "the session was lost";
                    break;
                }
                if (secs(Clock::now() - t0) > kRekeyTimeoutS) {
                    aborted = true;
                    abort_why = "a rekey did not complete in " + std::to_string(int(kRekeyTimeoutS)) + " s";
                    break;
                }
                if (!step()) idle();
            }
            if (aborted) break;
            rekey_ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
            slow.push_back({rekey_ms.back(), i, a.session->stats().arrays_delivered - arr0, retrans() - rt0});
        }
        const double run_s = secs(Clock::now() - run_t0);
        std::uint64_t sent1 = 0;
        for (Flow& f : flows) sent1 += f.next_seq;

        // ---- drain: no new traffic; everything in flight arrives (or is lost) ----------------------
        mode = Mode::off;
        {
            auto last = Clock::now();
            for (;;) {
                const unsigned w = step();
                std::uint64_t missing = 0;
                for (Flow& f : flows) missing += f.lost();
                if (w) last = Clock::now();
                if (missing == 0 && Clock::now() - last > std::chrono::milliseconds(20)) break;
                if (Clock::now() - last > std::chrono::milliseconds(500)) break;
                if (!w) idle();
            }
        }

        // ---- accounting ---------------------------------------------------------------------------
        std::uint64_t sent = 0, received = 0, lost = 0, dup = 0, corrupt = 0, unexpected = 0, ring_full = 0, no_mbuf = 0;
        for (const Flow& f : flows) {
            sent += f.next_seq;
            received += f.received;
            lost += f.lost();
            dup += f.duplicated;
            corrupt += f.corrupted;
            unexpected += f.unexpected;
            ring_full += f.ring_full;
            no_mbuf += f.no_mbuf;
        }
        std::uint64_t auth = 0, replay = 0, dropped = 0;
        struct DpFig {
            p3::dp::SessionTotals t;
            p3::wire::SlotStats slots;
            std::vector<std::pair<std::string, std::uint64_t>> drops;
        } fig[2];
        for (int i = 0; i < 2; ++i) {
            End& e = i ? b : a;
            fig[i].t = e.dp->session_totals(e.sid);
            fig[i].slots = e.dp->slots().stats();
            for (const auto& d : p3::dp::kDrops) {
                const std::uint64_t n = e.dp->drops(d.drop);
                if (n) fig[i].drops.emplace_back(std::string(d.name), n);
                dropped += n;
            }
            auth += fig[i].t.rx_auth + e.session->stats().auth_failures;
            replay += fig[i].t.rx_replay + e.session->stats().replays;
        }
        const auto& ps = a.session->stats();
        const auto& ss = b.session->stats();
        const unsigned done = static_cast<unsigned>(rekey_ms.size());
        const double offered = run_s > 0 ? double(sent1 - sent0) / run_s / double(flows.size()) : 0;
        const double p50 = percentile(rekey_ms, 50), p99 = percentile(rekey_ms, 99),
                     pmax = rekey_ms.empty() ? 0 : *std::max_element(rekey_ms.begin(), rekey_ms.end());

        std::printf("p3 rekey under load: two dataplanes back to back (net_ring), %u worker(s) each, %s%s, "
                    "%u B frames, %s; lcores %s; load average %s\n",
                    W, o.aes256 ? "AES-256" : "AES-128", o.size_hiding ? ", size hiding" : "", o.frame,
                    o.both ? "both directions" : "A->B", lcores.c_str(), load_at_start.c_str());
        if (traffic == Mode::window)
            std::printf("traffic      %.0f pps per direction during the rekeys (as fast as the tunnel takes it, "
                        "at most %lu packets in flight)\n",
                        offered, (unsigned long)kWindow);
        else
            std::printf("traffic      paced at %.0f pps per direction (--pps); %.0f pps sent during the rekeys\n", pps,
                        offered);
        std::printf("rekeys       %u of %u in %.2f s: %.1f rekeys/s (initiator: %s, key arrays of %u)\n", done,
                    o.rekeys, run_s, run_s > 0 ? done / run_s : 0.0,
                    o.init == Opts::Init::primary ? "primary" : o.init == Opts::Init::secondary ? "secondary" : "alternate",
                    o.array_size);
        std::printf("time/rekey   p50 %.3f ms   p99 %.3f ms   max %.3f ms\n", p50, p99, pmax);
        std::sort(slow.begin(), slow.end(), [](const Slow& x, const Slow& y) { return x.ms > y.ms; });
        if (!slow.empty()) {
            std::printf("slowest     ");
            for (std::size_t i = 0; i < std::min<std::size_t>(3, slow.size()); ++i)
                std::printf(" #%u %.2f ms%s%s;", slow[i].index, slow[i].ms, slow[i].arrays ? " (a key array delivery went first)" : "",
                            slow[i].retransmits ? " (a message was retransmitted)" : "");
            std::printf("\n");
        }
        std::printf("packets      sent %lu  received %lu  lost %lu  duplicated %lu  corrupted %lu  unexpected %lu  "
                    "(drops the dataplanes counted: %lu)\n",
                    (unsigned long)sent, (unsigned long)received, (unsigned long)lost, (unsigned long)dup,
                    (unsigned long)corrupt, (unsigned long)unexpected, (unsigned long)dropped);
        if (flows.size() > 1)
            for (const Flow& f : flows)
                std::printf("  %s       sent %lu  received %lu  lost %lu  duplicated %lu  corrupted %lu  unexpected %lu\n",
                            f.label, (unsigned long)f.next_seq, (unsigned long)f.received, (unsigned long)f.lost(),
                            (unsigned long)f.duplicated, (unsigned long)f.corrupted, (unsigned long)f.unexpected);
        std::uint64_t write_offs = 0;
        for (const Flow& f : flows) write_offs += f.write_offs;
        std::printf("generator    ring full %lu  no mbuf %lu  (never sent: not counted as lost)  window reopened %lu "
                    "time(s)  longest gap %.1f ms, longest step %.1f ms\n",
                    (unsigned long)ring_full, (unsigned long)no_mbuf, (unsigned long)write_offs,
                    std::chrono::duration<double, std::milli>(max_gap).count(),
                    std::chrono::duration<double, std::milli>(max_step).count());
        for (int i = 0; i < 2; ++i) {
            const auto& t = fig[i].t;
            std::printf("dataplane %c  tx %lu rx %lu  tx_dropped %lu  rx_auth_failed %lu  rx_replayed %lu  rx_dropped %lu  drops:",
                        i ? 'B' : 'A', (unsigned long)t.tx_pkts, (unsigned long)t.rx_pkts, (unsigned long)t.tx_dropped,
                        (unsigned long)t.rx_auth, (unsigned long)t.rx_replay, (unsigned long)t.rx_dropped);
            if (fig[i].drops.empty()) std::printf(" none");
            for (const auto& [n, v] : fig[i].drops) std::printf(" %s=%lu", n.c_str(), (unsigned long)v);
            // Slots still held after N rekeys: the current inbound epochs (at most 8 per
            // session) and their lanes; anything growing with N would be a leak.
            std::printf("\n             key slots: rx published %u  tx published %u  waiting for RCU %zu  freed %lu\n",
                        fig[i].slots.rx_published, fig[i].slots.tx_published, fig[i].slots.pending,
                        (unsigned long)fig[i].slots.freed);
        }
        for (int i = 0; i < 2; ++i) {
            const auto& s = i ? ss : ps;
            std::printf("channel %c    rekeys %lu  attempts failed %lu  arrays delivered %lu  keys retired %lu  "
                        "sent %lu  retransmits %lu  auth failures %lu  replays %lu  send failures %lu\n",
                        i ? 'B' : 'A', (unsigned long)s.rekeys_done, (unsigned long)s.rekey_attempts_failed,
                        (unsigned long)s.arrays_delivered, (unsigned long)s.keys_retired, (unsigned long)s.sent,
                        (unsigned long)s.retransmits, (unsigned long)s.auth_failures, (unsigned long)s.replays,
                        (unsigned long)(i ? b : a).link->send_failures());
        }
        std::vector<std::string> bad;
        if (aborted) bad.push_back(abort_why);
        if (lost) bad.push_back("lost");
        if (dup) bad.push_back("duplicated");
        if (corrupt || unexpected) bad.push_back("corrupted");
        if (auth) bad.push_back("auth failed");
        if (replay) bad.push_back("replayed");
        if (ps.rekey_attempts_failed) bad.push_back("rekey attempts failed");
        std::string verdict = bad.empty() ? "PASS" : "FAIL:";
        for (const auto& s : bad) verdict += " " + s + ";";
        std::printf("result       %s\n", verdict.c_str());
        rc = bad.empty() ? 0 : 1;

        std::string drops_json = "{";
        for (int i = 0; i < 2; ++i) {
            drops_json += std::string(i ? ",\"B\":{" : "\"A\":{");
            for (std::size_t k = 0; k < fig[i].drops.size(); ++k)
                drops_json += (k ? ",\"" : "\"") + fig[i].drops[k].first + "\":" + std::to_string(fig[i].drops[k].second);
            drops_json += "}";
        }
        drops_json += "}";
        if (!o.json.empty()) {
            FILE* j = std::fopen(o.json.c_str(), "w");
            if (!j) {
                std::fprintf(stderr, "rekey_bench: cannot write %s\n", o.json.c_str());
                rc = rc ? rc : 3;
            } else {
                std::fprintf(j,
                             "{\"suite\":\"rekey\",\"samples\":[{\"rekeys\":%u,\"seconds\":%.4f,\"rekeys_per_s\":%.2f,"
                             "\"rekey_ms_p50\":%.4f,\"rekey_ms_p99\":%.4f,\"rekey_ms_max\":%.4f,"
                             "\"packets_sent\":%lu,\"packets_received\":%lu,\"lost\":%lu,\"duplicated\":%lu,"
                             "\"corrupted\":%lu,\"auth_failed\":%lu,\"replayed\":%lu,\"ring_full_at_generator\":%lu,"
                             "\"pps\":%.0f,\"pps_requested\":%.0f,\"no_mbuf_at_generator\":%lu,\"unexpected\":%lu,"
                             "\"rekey_attempts_failed\":%lu,\"frame\":%u,\"workers\":%u,\"both\":%s,\"key\":%u,"
                             "\"array_size\":%u,\"initiator\":\"%s\",\"passed\":%s,\"drops\":%s}]}\n",
                             done, run_s, run_s > 0 ? done / run_s : 0.0, p50, p99, pmax, (unsigned long)sent,
                             (unsigned long)received, (unsigned long)lost, (unsigned long)dup, (unsigned long)corrupt,
                             (unsigned long)auth, (unsigned long)replay, (unsigned long)ring_full, offered, pps,
                             (unsigned long)no_mbuf, (unsigned long)unexpected,
                             (unsigned long)ps.rekey_attempts_failed, o.frame, W, o.both ? "true" : "false",
                             o.aes256 ? 256u : 128u, o.array_size,
                             o.init == Opts::Init::primary     ? "primary"
                             : o.init == Opts::Init::secondary ? "secondary"
                                                               : "alternate",
                             bad.empty() ? "true" : "false", drops_json.c_str());
                std::fclose(j);
            }
        }

        // ---- teardown: sessions first (they call into the dataplanes) --------------------------------
        for (End* e : {&a, &b}) {
            e->plane.session = nullptr;
            e->session.reset();
        }
        for (End* e : {&a, &b}) {
            e->ctl.reset();
            e->dp->request_stop();
            e->dp->wait();
            e->dp->close();
        }
        for (End* e : {&a, &b}) {
            free_rings(e->lan_rx);
            free_rings(e->lan_tx);
        }
        free_rings(ab);
        free_rings(ba);
        rte_mempool_free(pool);
    } catch (const std::exception& e) {
        die(e.what());
    }
    rte_eal_cleanup();
    return rc;
}
