// setup_bench: how fast one primary brings up N secondaries, and what a session costs it in
// memory (perf/setup/README-setup.md).
//
//   setup_bench [--remotes 1000] [--groups x25519,p256] [--cookies p3d,off] [--runs 3]
//               [--threads 2] [--lanes 0] [--workers 1] [--timeout 120] [--json FILE] [--smoke]
//
// One run = one primary and N secondaries in this process, all of them the real setup engine
// (control/setup/setup_engine.hpp) as p3d runs it: the primary is configured with N remotes
// (distinct addresses 198.18.0.1.., identities sN.bench.p3, PSK authentication) and its
// SessionSink is the DataplanePort on a real Dataplane (net_ring ports; init() only, no worker
// launched: nothing is forwarded, but every session's key slots are built and published into
// the dataplane's slot table as p3d does). The secondaries record when their session is up.
// Datagrams travel through two in-memory mailboxes (no sockets: loopback UDP would add two
// syscalls and a copy per datagram to both sides and measure the kernel, not the engine; the
// engine's socket code is tested on its own).
//
// Timeline of a run: all N secondaries call connect() while the clock stands still, so the
// primary finds N IKE_SA_INIT requests waiting when the clock starts (t = 0): "all start at
// once". Then the primary (this thread) and the secondaries (a second thread with --threads 2,
// the default, standing in for N other machines; --threads 1 runs both on this thread) answer
// what arrives until every secondary is up or has failed. Retransmission timers are real
// (1 s, doubling): a secondary the primary has not answered within a second sends again,
// exactly as on a network. t for a session = when the secondary has its keys (both ends up).
//
// Lanes: the primary builds an inbound key slot per lane the secondary sends on, which a p3
// secondary announces in its IKE_AUTH request (notify p3_lanes). --lanes L: each simulated
// secondary announces L lanes (default 1: a secondary with one worker lcore) and every remote's
// `lanes` is L; --lanes 0 announces nothing, as a standard IKEv2 peer, and the DataplanePort
// then reserves and publishes the whole block of 64. --workers W gives the primary W worker
// lcores (never launched), hence W outbound slots per session.
//
// Cookie policy (--cookies): "p3d" = the engine's defaults, which p3d uses and an operator
// cannot change (COOKIE demanded from 64 half-open exchanges on, at most 4096 half-open):
// a burst of N > 64 initiators costs most of them one extra round trip. "off" = threshold
// above N (no cookies), what a bulk bring-up on a trusted network would choose.
//
// Memory (per session = growth / N), measured after malloc_trim(0) against a baseline taken
// the same way after the Dataplane and all engines exist, before any connect():
//  - "at up": when all are up. The primary still keeps each responder SA (its cached last
//    response, for a retransmitted IKE_AUTH) for the half-open timeout (30 s);
//  - "steady": after that cache expired (the clock is moved on 31 s and the primary's timer
//    runs): what a live session keeps costing the primary: its key slots.
//  heap = mallinfo2() in use (all arenas, incl. mmapped chunks), rss = /proc/self/statm,
//  dpdk = rte_malloc heap in use (the slot table is preallocated at init, slots come from the
//  C++ heap, so this is expected to stay ~0). The secondaries' own state is gone when they are
//  up (an initiator drops its SA once established), so the growth is the primary's.
//
// CPU: cpu_s = the primary's thread CPU time spent handling datagrams and timers;
// primary_setups_per_s = N / cpu_s, what one core of a primary sustains. cpu_total_s = the
// whole process (both sides) over the run.
#include <rte_eal.h>
#include <rte_eth_ring.h>
#include <rte_ethdev.h>
#include <rte_malloc.h>
#include <rte_mbuf.h>
#include <rte_ring.h>

#include <malloc.h>
#include <sched.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/log.hpp"
#include "common/slots.hpp"
#include "control/dp_port.hpp"
#include "control/setup/setup_engine.hpp"
#include "dataplane/dataplane.hpp"

namespace {

using p3::setup::Endpoint;
using SteadyTp = std::chrono::steady_clock::time_point;

// ---- clock: stands still while the secondaries prepare, then runs; can jump ahead ------------

class BenchClock final : public p3::control::Clock {
public:
    BenchClock() : frozen_(std::chrono::steady_clock::now().time_since_epoch().count()) {}
    p3::control::TimePoint now() const noexcept override {
        if (!running_.load(std::memory_order_acquire)) return tp(frozen_);
        return tp(std::chrono::steady_clock::now().time_since_epoch().count() + offset_.load(std::memory_order_relaxed));
    }
    // From here on time runs, continuing from the frozen instant.
    void start() noexcept {
        offset_.store(frozen_ - std::chrono::steady_clock::now().time_since_epoch().count(), std::memory_order_relaxed);
        running_.store(true, std::memory_order_release);
    }
    void jump(std::chrono::nanoseconds d) noexcept { offset_.fetch_add(d.count(), std::memory_order_relaxed); }
    p3::control::TimePoint origin() const noexcept { return tp(frozen_); }

private:
    static p3::control::TimePoint tp(std::int64_t ns) {
        return p3::control::TimePoint(p3::control::Duration(ns));
    }
    std::int64_t frozen_;
    std::atomic<std::int64_t> offset_{0};
    std::atomic<bool> running_{false};
};

double thread_cpu_s() {
    timespec ts{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return double(ts.tv_sec) + double(ts.tv_nsec) * 1e-9;
}

double process_cpu_s() {
    timespec ts{};
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return double(ts.tv_sec) + double(ts.tv_nsec) * 1e-9;
}

// ---- memory --------------------------------------------------------------------------------

struct Mem {
    double heap = 0, rss = 0, dpdk = 0;  // bytes in use
};

Mem measure_mem() {
    malloc_trim(0);  // freed memory of either side back to the system: RSS = what is live
    Mem m;
    const struct mallinfo2 mi = mallinfo2();
    m.heap = double(mi.uordblks + mi.hblkhd);
    long pages = 0, resident = 0;
    if (FILE* f = std::fopen("/proc/self/statm", "r")) {
        if (std::fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = 0;
        std::fclose(f);
    }
    m.rss = double(resident) * double(sysconf(_SC_PAGESIZE));
    for (unsigned i = 0; i < rte_socket_count(); ++i) {
        rte_malloc_socket_stats st{};
        if (rte_malloc_get_socket_stats(rte_socket_id_by_idx(i), &st) == 0) m.dpdk += double(st.heap_allocsz_bytes);
    }
    return m;
}

// ---- the network between them: two mailboxes -------------------------------------------------

struct Datagram {
    Endpoint from, to;
    p3::setup::Bytes data;
};

// A datagram is delivered at once (one per send, as a network would). The receiver spins for a
// while before it sleeps, so two busy sides hand datagrams over without a futex wake-up each.
class Mailbox final : public p3::setup::Transport {
public:
    void send(const Endpoint& from, const Endpoint& to, p3::setup::ByteView d, p3::setup::Framing) override {
        bool wake;
        {
            std::lock_guard<std::mutex> g(mu_);
            q_.push_back(Datagram{from, to, p3::setup::Bytes(d.begin(), d.end())});
            pending_.store(true, std::memory_order_release);
            wake = sleeping_;
        }
        if (wake) cv_.notify_one();
        sent_.fetch_add(1, std::memory_order_relaxed);
    }
    // Everything waiting (swapped into out); waits up to `wait` if nothing is.
    void take(std::vector<Datagram>& out, std::chrono::microseconds wait) {
        out.clear();
        if (wait.count() > 0 && !pending_.load(std::memory_order_acquire)) {
            const auto spin_end = std::chrono::steady_clock::now() + std::chrono::microseconds(200);
            while (!pending_.load(std::memory_order_acquire) && std::chrono::steady_clock::now() < spin_end)
                std::this_thread::yield();
        }
        std::unique_lock<std::mutex> g(mu_);
        if (q_.empty() && wait.count() > 0) {
            sleeping_ = true;
            cv_.wait_for(g, wait, [&] { return !q_.empty(); });
            sleeping_ = false;
        }
        out.swap(q_);
        pending_.store(false, std::memory_order_relaxed);
    }
    void wake() {
        std::lock_guard<std::mutex> g(mu_);
        cv_.notify_all();
    }
    std::uint64_t sent() const { return sent_.load(std::memory_order_relaxed); }

private:
    std::mutex mu_;
    std::condition_variable cv_;
    std::vector<Datagram> q_;
    bool sleeping_ = false;
    std::atomic<bool> pending_{false};
    std::atomic<std::uint64_t> sent_{0};
};

// ---- the secondaries -------------------------------------------------------------------------

struct Outcome {
    std::vector<double> up_at;  // per secondary: seconds after t = 0 its session came up; <0 = not (yet)
    std::atomic<std::uint32_t> up{0}, failed{0};
};

// Each secondary's SessionSink: P3 IDs of its own (another machine's table), and the moment
// its session is up. The keys are dropped (wiped) at once.
class SecondarySink final : public p3::setup::SessionSink {
public:
    SecondarySink(Outcome& o, const BenchClock& c, std::uint32_t idx, std::uint32_t lanes)
        : o_(o), clock_(c), idx_(idx), lanes_(lanes) {}
    std::optional<std::uint32_t> reserve_rx_id(std::uint32_t, std::uint32_t) override { return 64 * ++next_; }  // blocks of 64
    std::uint32_t local_lanes() const override { return lanes_; }
    void release_rx_id(std::uint32_t) override {}
    bool install(p3::setup::EstablishedSession&&) override {
        o_.up_at[idx_] = std::chrono::duration<double>(clock_.now() - clock_.origin()).count();
        o_.up.fetch_add(1, std::memory_order_release);
        return true;
    }
    void setup_failed(std::uint32_t, p3::Reason) override { o_.failed.fetch_add(1, std::memory_order_release); }

private:
    Outcome& o_;
    const BenchClock& clock_;
    std::uint32_t idx_, lanes_, next_ = 0;
};

constexpr std::uint32_t kSecondaryBase = (198u << 24) | (18u << 16) | 1;  // 198.18.0.1 (RFC 2544 range)

p3::IpAddr secondary_addr(std::uint32_t i) { return p3::IpAddr::v4(kSecondaryBase + i); }
std::string secondary_identity(std::uint32_t i) {
    char b[32];
    std::snprintf(b, sizeof b, "s%u.bench.p3", i);
    return b;
}

// Every secondary has its own pre-shared key (credentials are per remote): secondary i is
// the primary's remote i + 1 and holds the same key under its remote 1 (the primary).
std::string psk_of(std::uint32_t i) { return "setup-bench pre-shared key of secondary " + std::to_string(i); }

void add_psk(p3::setup::Credentials& c, std::uint32_t remote_id, const std::string& k) {
    c.add_psk(remote_id, p3::setup::ByteView(reinterpret_cast<const std::uint8_t*>(k.data()), k.size()));
}

p3::setup::Credentials secondary_psk(std::uint32_t i) {
    p3::setup::Credentials c;
    add_psk(c, 1, psk_of(i));
    return c;
}

p3::setup::Credentials primary_psks(std::uint32_t n) {
    p3::setup::Credentials c;
    for (std::uint32_t i = 0; i < n; ++i) add_psk(c, i + 1, psk_of(i));
    return c;
}

class Secondaries {
public:
    Secondaries(std::uint32_t n, const p3::setup::SetupOptions& opts, const BenchClock& clock,
                p3::control::Random& rnd, Mailbox& to_primary, Outcome& out, std::uint32_t lanes)
        : clock_(clock) {
        engines_.reserve(n);
        sinks_.reserve(n);
        for (std::uint32_t i = 0; i < n; ++i) {
            p3::config::Config c;
            c.role = p3::config::Role::secondary;
            c.local.address = secondary_addr(i);
            c.local.identity = secondary_identity(i);
            c.dataplane.lan.address = p3::Prefix{p3::IpAddr::v4((10u << 24) | ((64u + i / 256) << 16) | ((i % 256) << 8) | 1), 24};
            p3::config::Remote r;
            r.id = 1;
            r.address = *p3::IpAddr::parse("192.0.2.1");
            r.identity = "primary.bench.p3";
            c.remotes.push_back(std::move(r));
            sinks_.push_back(std::make_unique<SecondarySink>(out, clock, i, lanes));
            engines_.push_back(std::make_unique<p3::setup::SetupEngine>(c, secondary_psk(i), opts, clock, rnd, to_primary, *sinks_.back()));
        }
    }
    // All of them start their exchange (the clock stands still meanwhile).
    std::uint32_t connect_all() {
        std::uint32_t ok = 0;
        for (auto& e : engines_) ok += e->connect(1) ? 1 : 0;
        return ok;
    }
    void deliver(const Datagram& d) {
        if (!d.to.addr.is_v4()) return;
        const std::uint32_t i = d.to.addr.v4_host() - kSecondaryBase;
        if (i < engines_.size()) engines_[i]->on_datagram(d.from, d.to, d.data);
        else ++misdelivered;
    }
    // Retransmissions due (a real secondary's event loop does this on its own).
    void timers() {
        const auto now = clock_.now();
        for (auto& e : engines_)
            if (auto t = e->next_deadline(); t && *t <= now) e->on_timer();
    }
    p3::setup::SetupCounters totals() const {
        p3::setup::SetupCounters t;
        for (const auto& e : engines_) {
            const auto& c = e->counters();
            t.retransmits += c.retransmits;
            t.failed += c.failed;
            t.established += c.established;
            t.sent += c.sent;
        }
        return t;
    }
    std::uint64_t misdelivered = 0;

private:
    const BenchClock& clock_;
    std::vector<std::unique_ptr<SecondarySink>> sinks_;
    std::vector<std::unique_ptr<p3::setup::SetupEngine>> engines_;
};

// The primary's sink: the DataplanePort, with the CPU time its install (key slots for every
// lane) takes, so the table can say how much of a setup is the dataplane's part.
class TimedSink final : public p3::setup::SessionSink {
public:
    explicit TimedSink(p3::control::DataplanePort& s) : s_(s) {}
    std::optional<std::uint32_t> reserve_rx_id(std::uint32_t remote_id, std::uint32_t peer_lanes) override {
        return s_.reserve_rx_id(remote_id, peer_lanes);
    }
    std::uint32_t local_lanes() const override { return s_.local_lanes(); }
    void release_rx_id(std::uint32_t rx_id) override { s_.release_rx_id(rx_id); }
    bool install(p3::setup::EstablishedSession&& e) override {
        const double c0 = thread_cpu_s();
        const bool ok = s_.install(std::move(e));
        install_cpu += thread_cpu_s() - c0;
        return ok;
    }
    void setup_failed(std::uint32_t remote_id, p3::Reason r) override { s_.setup_failed(remote_id, r); }
    double install_cpu = 0;

private:
    p3::control::DataplanePort& s_;
};

// ---- log lines: counted, the first errors kept for the report ---------------------------------

struct LogTally {
    struct Seen {
        std::uint64_t count = 0;
        std::string first;
    };
    std::mutex mu;
    std::map<std::pair<int, p3::Reason>, Seen> by_reason;  // (level, reason)
    std::uint64_t errors = 0;
    static void on_line(p3::log::Level lv, p3::Reason r, std::string_view line, void* ctx) {
        auto* t = static_cast<LogTally*>(ctx);
        if (lv > p3::log::Level::warning) return;
        std::lock_guard<std::mutex> g(t->mu);
        if (lv == p3::log::Level::error) ++t->errors;
        Seen& s = t->by_reason[{int(lv), r}];
        if (s.count++ == 0) s.first = std::string(line);
    }
};
LogTally g_log;

// ---- one run -------------------------------------------------------------------------------

struct Params {
    std::uint32_t remotes = 1000;
    std::vector<std::string> groups{"x25519", "p256"};
    std::vector<std::string> cookies{"p3d", "off"};
    unsigned runs = 3, threads = 2, lanes = 1, workers = 1;
    double timeout_s = 120;
    std::string json;
};

struct Sample {
    std::string group, cookies;
    std::uint32_t remotes = 0, up = 0, failures = 0, primary_failed = 0, installed = 0;
    std::uint32_t timed_out = 0;  // of the failures: still running when --timeout ran out
    double wall_s = 0, setups_per_s = 0, t_first_s = 0, t50_s = 0, t99_s = 0;
    double cpu_s = 0, primary_setups_per_s = 0, cpu_total_s = 0, install_cpu_s = 0, secondaries_cpu_s = 0;
    Mem at_up, steady;  // per session
    std::uint64_t retransmits = 0, cookies_sent = 0, responses_resent = 0, half_open_full = 0, datagrams = 0;
    std::size_t peak_half_open = 0;
    std::uint32_t rx_slots = 0, tx_slots = 0;  // published in the dataplane when all were up
};

std::uint16_t group_id(const std::string& g) {
    if (g == "x25519") return p3::setup::group_x25519;
    if (g == "p256") return p3::setup::group_ecp256;
    if (g == "p384") return p3::setup::group_ecp384;
    return 0;
}

double pct(std::vector<double> v, double p) {
    if (v.empty()) return 0;
    std::sort(v.begin(), v.end());
    std::size_t i = std::size_t(std::ceil(p * double(v.size()))) ;
    if (i > 0) --i;
    return v[std::min(i, v.size() - 1)];
}

rte_ring* make_ring(const std::string& name) {
    return rte_ring_create(name.c_str(), 1024, SOCKET_ID_ANY, RING_F_SP_ENQ | RING_F_SC_DEQ);
}

void free_ring(rte_ring* r) {
    if (!r) return;
    void* m;
    while (rte_ring_dequeue(r, &m) == 0) rte_pktmbuf_free(static_cast<rte_mbuf*>(m));
    rte_ring_free(r);
}

bool run_one(const Params& P, const std::string& group, const std::string& cookie_policy, unsigned seq, Sample& s) {
    const std::uint32_t n = P.remotes;
    s.group = group;
    s.cookies = cookie_policy;
    s.remotes = n;
    const std::string name = "sb" + std::to_string(seq);
    // Ring ports with a queue pair per worker, so every worker polls a LAN queue and sends on
    // a lane of its own, as on an appliance with RSS.
    std::vector<rte_ring*> rings;
    std::vector<rte_ring*> q[4];  // LAN rx, LAN tx, WAN rx, WAN tx
    const char* sfx[4] = {"lr", "lt", "wr", "wt"};
    for (int k = 0; k < 4; ++k)
        for (unsigned w = 0; w < P.workers; ++w) {
            q[k].push_back(make_ring(name + sfx[k] + std::to_string(w)));
            rings.push_back(q[k].back());
        }
    auto cleanup_rings = [&] {
        for (auto* r : rings) free_ring(r);
    };
    if (std::find(rings.begin(), rings.end(), nullptr) != rings.end()) {
        std::fprintf(stderr, "setup_bench: cannot create rings\n");
        cleanup_rings();
        return false;
    }
    const int lan = rte_eth_from_rings((name + "l").c_str(), q[0].data(), P.workers, q[1].data(), P.workers, SOCKET_ID_ANY);
    const int wan = rte_eth_from_rings((name + "w").c_str(), q[2].data(), P.workers, q[3].data(), P.workers, SOCKET_ID_ANY);
    if (lan < 0 || wan < 0) {
        std::fprintf(stderr, "setup_bench: cannot create ring ports\n");
        cleanup_rings();
        return false;
    }

    // The primary's configuration: p3d's, with N remotes.
    p3::config::Config cfg;
    cfg.role = p3::config::Role::primary;
    cfg.local.address = *p3::IpAddr::parse("192.0.2.1");
    cfg.local.identity = "primary.bench.p3";
    cfg.dataplane.lan.port_id = static_cast<std::uint16_t>(lan);
    cfg.dataplane.lan.address = *p3::Prefix::parse("10.1.0.1/24", false);
    cfg.dataplane.lan.gateway = p3::IpAddr::parse("10.1.0.254");
    cfg.dataplane.lan.gateway_mac = p3::MacAddr::parse("02:00:00:00:00:fd");
    cfg.dataplane.wan.port_id = static_cast<std::uint16_t>(wan);
    cfg.dataplane.wan.address = *p3::Prefix::parse("192.0.2.1/24", false);
    cfg.dataplane.wan.gateway = p3::IpAddr::parse("192.0.2.254");
    cfg.dataplane.wan.gateway_mac = p3::MacAddr::parse("02:00:00:00:00:fe");
    cfg.dataplane.mbufs = P.workers > 1 ? 4095 : 1023;
    cfg.dataplane.rx_queues = 0;  // one per worker
    cfg.remotes.reserve(n);
    for (std::uint32_t i = 0; i < n; ++i) {
        p3::config::Remote r;
        r.id = i + 1;
        r.address = secondary_addr(i);
        r.identity = secondary_identity(i);
        r.subnets.push_back(p3::Prefix{p3::IpAddr::v4((10u << 24) | ((64u + i / 256) << 16) | ((i % 256) << 8)), 24});
        r.params.lanes = P.lanes;
        cfg.remotes.push_back(std::move(r));
    }

    p3::setup::SetupOptions opts;
    opts.groups = {group_id(group)};
    if (cookie_policy == "off") opts.cookie_threshold = std::max<std::size_t>(opts.half_open_max, n) + 1;

    p3::dp::Options o;
    o.name = name;
    for (unsigned w = 1; w <= P.workers; ++w) o.lcores.push_back(w);
    // no ControlThread: this thread calls the sink itself, as the control thread would
    auto dp = std::make_unique<p3::dp::Dataplane>(cfg, o);
    if (!dp->init()) {
        std::fprintf(stderr, "setup_bench: dataplane init failed\n");
        dp.reset();
        cleanup_rings();
        return false;
    }

    BenchClock clock;
    p3::control::SystemRandom rnd;
    Mailbox to_primary, to_secondaries;
    Outcome out;
    out.up_at.assign(n, -1.0);
    p3::control::DataplanePort sink(dp->control_port());
    TimedSink timed(sink);
    auto primary = std::make_unique<p3::setup::SetupEngine>(cfg, primary_psks(n), opts, clock, rnd, to_secondaries, timed);
    auto secs = std::make_unique<Secondaries>(n, opts, clock, rnd, to_primary, out, P.lanes);

    // The secondaries' side: another thread (other machines), or interleaved here.
    std::atomic<int> phase{0};  // 0 wait, 1 connect, 2 connected, 3 run, 4 stop
    std::mutex pm;
    std::condition_variable pcv;
    auto set_phase = [&](int p) {
        {
            std::lock_guard<std::mutex> g(pm);
            phase.store(p);
        }
        pcv.notify_all();
        to_secondaries.wake();
    };
    auto wait_phase = [&](int p) {
        std::unique_lock<std::mutex> g(pm);
        pcv.wait(g, [&] { return phase.load() >= p; });
    };
    std::vector<Datagram> sbatch;
    std::thread th;
    double sec_cpu = 0;
    if (P.threads >= 2) {
        th = std::thread([&] {
            wait_phase(1);
            secs->connect_all();
            set_phase(2);
            wait_phase(3);
            auto next_timers = std::chrono::steady_clock::now();
            while (phase.load() < 4) {
                to_secondaries.take(sbatch, std::chrono::microseconds(2000));
                const double c0 = thread_cpu_s();  // the work, not the wait
                for (const auto& d : sbatch) secs->deliver(d);
                if (std::chrono::steady_clock::now() >= next_timers) {
                    secs->timers();
                    next_timers = std::chrono::steady_clock::now() + std::chrono::milliseconds(10);
                }
                sec_cpu += thread_cpu_s() - c0;
            }
        });
    }

    const Mem base = measure_mem();
    if (P.threads >= 2) {
        set_phase(1);
        wait_phase(2);
    } else {
        secs->connect_all();
    }
    const double cpu_proc0 = process_cpu_s();
    clock.start();  // t = 0: N IKE_SA_INIT requests are waiting for the primary
    if (P.threads >= 2) set_phase(3);

    double pcpu = 0;
    std::vector<Datagram> pbatch;
    const auto t_end = std::chrono::steady_clock::now() + std::chrono::duration_cast<std::chrono::nanoseconds>(
                                                                 std::chrono::duration<double>(P.timeout_s));
    auto next_ptimer = std::chrono::steady_clock::now(), next_stimer = next_ptimer;
    while (out.up.load(std::memory_order_acquire) + out.failed.load(std::memory_order_acquire) < n &&
           std::chrono::steady_clock::now() < t_end) {
        std::size_t did = 0;
        to_primary.take(pbatch, std::chrono::microseconds(P.threads >= 2 ? 2000 : 0));
        const double c0 = thread_cpu_s();
        for (const auto& d : pbatch) primary->on_datagram(d.from, d.to, d.data);
        did += pbatch.size();
        s.peak_half_open = std::max(s.peak_half_open, primary->half_open());
        if (std::chrono::steady_clock::now() >= next_ptimer) {
            if (auto t = primary->next_deadline(); t && *t <= clock.now()) primary->on_timer();
            next_ptimer = std::chrono::steady_clock::now() + std::chrono::milliseconds(100);
        }
        pcpu += thread_cpu_s() - c0;
        if (P.threads < 2) {
            to_secondaries.take(sbatch, std::chrono::microseconds(0));
            const double c1 = thread_cpu_s();
            for (const auto& d : sbatch) secs->deliver(d);
            did += sbatch.size();
            if (std::chrono::steady_clock::now() >= next_stimer) {
                secs->timers();
                next_stimer = std::chrono::steady_clock::now() + std::chrono::milliseconds(10);
            }
            sec_cpu += thread_cpu_s() - c1;
            if (did == 0) std::this_thread::sleep_for(std::chrono::microseconds(200));
        }
    }
    const double cpu_total = process_cpu_s() - cpu_proc0;
    if (P.threads >= 2) {
        set_phase(4);
        th.join();
    }
    // What the sessions hold in the dataplane: published inbound and outbound key slots.
    const p3::wire::SlotStats slots = dp->slots().stats();
    s.rx_slots = slots.rx_published;
    s.tx_slots = slots.tx_published;
    // The batches' capacity is the network's, not a session's.
    pbatch = {};
    sbatch = {};
    const Mem up_mem = measure_mem();

    // The primary's cached responder SAs expire; what stays is what a live session costs.
    clock.jump(std::chrono::duration_cast<std::chrono::nanoseconds>(opts.half_open_timeout) + std::chrono::seconds(1));
    primary->on_timer();
    const Mem steady_mem = measure_mem();

    std::vector<double> times;
    for (double t : out.up_at)
        if (t >= 0) times.push_back(t);
    const auto sc = secs->totals();
    const auto& pc = primary->counters();
    s.up = std::uint32_t(times.size());
    s.failures = n - s.up;
    s.timed_out = n - s.up - std::min(n - s.up, out.failed.load());
    s.primary_failed = std::uint32_t(pc.failed);
    s.installed = std::uint32_t(sink.installed());
    s.wall_s = times.empty() ? 0 : pct(times, 1.0);
    s.setups_per_s = s.wall_s > 0 ? double(s.up) / s.wall_s : 0;
    s.t_first_s = pct(times, 0.0 + 1e-12);
    s.t50_s = pct(times, 0.50);
    s.t99_s = pct(times, 0.99);
    s.cpu_s = pcpu;
    s.primary_setups_per_s = pcpu > 0 ? double(s.up) / pcpu : 0;
    s.cpu_total_s = cpu_total;
    s.install_cpu_s = timed.install_cpu;
    s.secondaries_cpu_s = sec_cpu;
    auto per = [&](const Mem& m) {
        return Mem{(m.heap - base.heap) / n, (m.rss - base.rss) / n, (m.dpdk - base.dpdk) / n};
    };
    s.at_up = per(up_mem);
    s.steady = per(steady_mem);
    s.retransmits = sc.retransmits;
    s.cookies_sent = pc.cookies_sent;
    s.responses_resent = pc.responses_resent;
    s.half_open_full = pc.half_open_full;
    s.datagrams = to_primary.sent() + to_secondaries.sent();
    if (secs->misdelivered) std::fprintf(stderr, "setup_bench: %lu datagrams to no secondary\n", (unsigned long)secs->misdelivered);

    secs.reset();
    primary.reset();
    dp->close();
    dp.reset();
    cleanup_rings();  // the ports were closed with the dataplane
    return true;
}

// ---- output --------------------------------------------------------------------------------

struct Stat {
    double med = 0, min = 0, max = 0;
};

Stat stat(std::vector<double> v) {
    Stat s;
    if (v.empty()) return s;
    std::sort(v.begin(), v.end());
    s.med = v[v.size() / 2];
    s.min = v.front();
    s.max = v.back();
    return s;
}

template <class F>
Stat stat_of(const std::vector<const Sample*>& ss, F f) {
    std::vector<double> v;
    for (const auto* s : ss) v.push_back(f(*s));
    return stat(v);
}

// The machine's load when the benchmark started: wall times are only meaningful when the
// primary's thread had a CPU to itself (pri cpu close to wall).
std::string load_average() {
    char buf[64] = {};
    if (FILE* f = std::fopen("/proc/loadavg", "r")) {
        if (!std::fgets(buf, sizeof buf, f)) buf[0] = 0;
        std::fclose(f);
    }
    std::string s(buf);
    const auto sp = s.find(' ');
    return sp == std::string::npos ? s : s.substr(0, sp);
}
std::string g_load;

// The samples of one key exchange group and cookie policy.
std::vector<const Sample*> samples_of(const std::vector<Sample>& all, const std::string& group, const std::string& cookies) {
    std::vector<const Sample*> ss;
    for (const auto& s : all)
        if (s.group == group && s.cookies == cookies) ss.push_back(&s);
    return ss;
}

void print_table(const Params& P, const std::vector<Sample>& all) {
    std::printf("\nsetup: one primary, %u secondaries starting at once, PSK, %s, primary with %u worker(s), "
                "lanes %u%s;\nload average %s on %ld CPUs at start; median of %u run(s) [min..max]\n",
                P.remotes, P.threads >= 2 ? "secondaries on a second thread" : "both sides on one thread", P.workers,
                P.lanes, P.lanes == 0 ? " (not announced: 64 inbound slots per session)" : " announced by each secondary", g_load.c_str(),
                sysconf(_SC_NPROCESSORS_ONLN), P.runs);
    std::printf("%-7s %-7s | %8s %9s | %7s %7s %7s | %7s %9s %7s %7s | %9s %9s %7s | %6s %6s %4s\n", "group",
                "cookies", "wall s", "setups/s", "first s", "t50 s", "t99 s", "pri cpu", "pri set/s", "slots s",
                "sec cpu", "heap B/s", "rss B/s", "dpdk B", "retx", "cookie", "fail");
    for (const auto& g : P.groups)
        for (const auto& c : P.cookies) {
            const std::vector<const Sample*> ss = samples_of(all, g, c);
            if (ss.empty()) continue;
            const Stat wall = stat_of(ss, [](const Sample& s) { return s.wall_s; });
            const Stat rate = stat_of(ss, [](const Sample& s) { return s.setups_per_s; });
            const Stat first = stat_of(ss, [](const Sample& s) { return s.t_first_s; });
            const Stat t50 = stat_of(ss, [](const Sample& s) { return s.t50_s; });
            const Stat t99 = stat_of(ss, [](const Sample& s) { return s.t99_s; });
            const Stat cpu = stat_of(ss, [](const Sample& s) { return s.cpu_s; });
            const Stat prate = stat_of(ss, [](const Sample& s) { return s.primary_setups_per_s; });
            const Stat inst = stat_of(ss, [](const Sample& s) { return s.install_cpu_s; });
            const Stat scpu = stat_of(ss, [](const Sample& s) { return s.secondaries_cpu_s; });
            const Stat heap = stat_of(ss, [](const Sample& s) { return s.at_up.heap; });
            const Stat rss = stat_of(ss, [](const Sample& s) { return s.at_up.rss; });
            const Stat dpdk = stat_of(ss, [](const Sample& s) { return s.at_up.dpdk; });
            const Stat retx = stat_of(ss, [](const Sample& s) { return double(s.retransmits); });
            const Stat ck = stat_of(ss, [](const Sample& s) { return double(s.cookies_sent); });
            double fail = 0;
            for (const auto* s : ss) fail += s->failures;
            std::printf("%-7s %-7s | %8.3f %9.0f | %7.3f %7.3f %7.3f | %7.3f %9.0f %7.3f %7.3f | %9.0f %9.0f %7.0f | %6.0f "
                        "%6.0f %4.0f\n",
                        g.c_str(), c.c_str(), wall.med, rate.med, first.med, t50.med, t99.med, cpu.med, prate.med,
                        inst.med, scpu.med, heap.med, rss.med, dpdk.med, retx.med, ck.med, fail);
            if (ss.size() > 1) {
                auto rg = [](const Stat& x, const char* fmt) {
                    char a[24], b[24], out[64];
                    std::snprintf(a, sizeof a, fmt, x.min);
                    std::snprintf(b, sizeof b, fmt, x.max);
                    std::snprintf(out, sizeof out, "%s..%s", a, b);
                    return std::string(out);
                };
                std::printf("%15s | %18s | %7s %15s | %17s %15s | %19s %7s |\n", "min..max",
                            (rg(wall, "%.2f") + " " + rg(rate, "%.0f")).c_str(), "", rg(t50, "%.3f").c_str(),
                            (rg(cpu, "%.2f") + " " + rg(prate, "%.0f")).c_str(), "",
                            (rg(heap, "%.0f") + " " + rg(rss, "%.0f")).c_str(), "");
            }
        }
    std::printf("steady state (after the primary's 30 s cache of finished exchanges expired), per session:\n");
    for (const auto& g : P.groups)
        for (const auto& c : P.cookies) {
            const std::vector<const Sample*> ss = samples_of(all, g, c);
            if (ss.empty()) continue;
            const Sample& f = *ss.front();
            std::printf("  %-7s %-7s heap %8.0f B  rss %8.0f B  dpdk %6.0f B   key slots per session: %.1f in, %.1f out\n",
                        g.c_str(), c.c_str(), stat_of(ss, [](const Sample& s) { return s.steady.heap; }).med,
                        stat_of(ss, [](const Sample& s) { return s.steady.rss; }).med,
                        stat_of(ss, [](const Sample& s) { return s.steady.dpdk; }).med,
                        f.up ? double(f.rx_slots) / f.up : 0.0, f.up ? double(f.tx_slots) / f.up : 0.0);
        }
    std::printf("wall = last secondary up; setups/s = N / wall; pri cpu = primary's CPU s; pri set/s = N / pri cpu;\n"
                "slots s = of pri cpu, building and publishing key slots; sec cpu = the simulated secondaries' CPU s;\n"
                "B/s = bytes per session when all are up; retx = secondaries' retransmissions; cookie = COOKIEs sent.\n");
}

bool write_json(const Params& P, const std::vector<Sample>& all) {
    FILE* f = std::fopen(P.json.c_str(), "w");
    if (!f) {
        std::fprintf(stderr, "setup_bench: cannot write %s\n", P.json.c_str());
        return false;
    }
    std::fprintf(f,
                 "{\"suite\":\"setup\",\"threads\":%u,\"lanes\":%u,\"workers\":%u,\"auth\":\"psk\",\"loadavg\":%s,"
                 "\"cpus\":%ld,\"samples\":[",
                 P.threads, P.lanes, P.workers, g_load.empty() ? "null" : g_load.c_str(), sysconf(_SC_NPROCESSORS_ONLN));
    for (std::size_t i = 0; i < all.size(); ++i) {
        const Sample& s = all[i];
        std::string o = "{";
        auto num = [&](const char* k, double v, const char* fmt) {
            char b[64];
            std::snprintf(b, sizeof b, fmt, v);
            if (o.size() > 1) o += ",";
            o += std::string("\"") + k + "\":" + b;
        };
        auto str = [&](const char* k, const std::string& v) {
            if (o.size() > 1) o += ",";
            o += std::string("\"") + k + "\":\"" + v + "\"";
        };
        str("group", s.group);
        str("cookies", s.cookies);
        num("remotes", s.remotes, "%.0f");
        num("wall_s", s.wall_s, "%.6f");
        num("setups_per_s", s.setups_per_s, "%.1f");
        num("t_first_s", s.t_first_s, "%.6f");
        num("t50_s", s.t50_s, "%.6f");
        num("t99_s", s.t99_s, "%.6f");
        num("cpu_s", s.cpu_s, "%.6f");
        num("primary_setups_per_s", s.primary_setups_per_s, "%.1f");
        num("cpu_total_s", s.cpu_total_s, "%.6f");
        num("install_cpu_s", s.install_cpu_s, "%.6f");
        num("secondaries_cpu_s", s.secondaries_cpu_s, "%.6f");
        num("rss_bytes_per_session", s.at_up.rss, "%.0f");
        num("heap_bytes_per_session", s.at_up.heap, "%.0f");
        num("dpdk_bytes_per_session", s.at_up.dpdk, "%.0f");
        num("steady_rss_bytes_per_session", s.steady.rss, "%.0f");
        num("steady_heap_bytes_per_session", s.steady.heap, "%.0f");
        num("steady_dpdk_bytes_per_session", s.steady.dpdk, "%.0f");
        num("retransmits", double(s.retransmits), "%.0f");
        num("cookies_sent", double(s.cookies_sent), "%.0f");
        num("responses_resent", double(s.responses_resent), "%.0f");
        num("half_open_full", double(s.half_open_full), "%.0f");
        num("peak_half_open", double(s.peak_half_open), "%.0f");
        num("rx_slots", s.rx_slots, "%.0f");
        num("tx_slots", s.tx_slots, "%.0f");
        num("datagrams", double(s.datagrams), "%.0f");
        num("installed", s.installed, "%.0f");
        num("primary_failed", s.primary_failed, "%.0f");
        num("timed_out", s.timed_out, "%.0f");
        num("failures", s.failures, "%.0f");
        std::fprintf(f, "%s\n%s}", i ? "," : "", o.c_str());
    }
    std::fprintf(f, "\n]}\n");
    return std::fclose(f) == 0;
}

std::vector<std::string> split(const std::string& s) {
    std::vector<std::string> v;
    std::size_t a = 0;
    while (a <= s.size()) {
        const std::size_t c = s.find(',', a);
        const std::string x = s.substr(a, c == std::string::npos ? std::string::npos : c - a);
        if (!x.empty()) v.push_back(x);
        if (c == std::string::npos) break;
        a = c + 1;
    }
    return v;
}

int usage() {
    std::fputs("usage: setup_bench [--remotes N] [--groups x25519,p256,p384] [--cookies p3d,off] [--runs R]\n"
               "                   [--threads 1|2] [--lanes L] [--workers W] [--timeout S] [--json FILE] [--smoke]\n",
               stderr);
    return 2;
}

}  // namespace

int main(int argc, char** argv) {
    Params P;
    bool smoke = false, runs_set = false, remotes_set = false;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        const bool more = i + 1 < argc;
        if (a == "--remotes" && more) P.remotes = std::uint32_t(std::strtoul(argv[++i], nullptr, 10)), remotes_set = true;
        else if (a == "--groups" && more) P.groups = split(argv[++i]);
        else if (a == "--cookies" && more) P.cookies = split(argv[++i]);
        else if (a == "--runs" && more) P.runs = unsigned(std::strtoul(argv[++i], nullptr, 10)), runs_set = true;
        else if (a == "--threads" && more) P.threads = unsigned(std::strtoul(argv[++i], nullptr, 10));
        else if (a == "--lanes" && more) P.lanes = unsigned(std::strtoul(argv[++i], nullptr, 10));
        else if (a == "--workers" && more) P.workers = unsigned(std::strtoul(argv[++i], nullptr, 10));
        else if (a == "--timeout" && more) P.timeout_s = std::strtod(argv[++i], nullptr);
        else if (a == "--json" && more) P.json = argv[++i];
        else if (a == "--smoke") smoke = true;
        else return usage();
    }
    if (smoke) {
        if (!remotes_set) P.remotes = 20;
        if (!runs_set) P.runs = 1;
    }
    for (const auto& g : P.groups)
        if (group_id(g) == 0) {
            std::fprintf(stderr, "setup_bench: unknown group %s (x25519, p256, p384)\n", g.c_str());
            return 2;
        }
    for (const auto& c : P.cookies)
        if (c != "p3d" && c != "off") {
            std::fprintf(stderr, "setup_bench: unknown cookie policy %s (p3d, off)\n", c.c_str());
            return 2;
        }
    if (P.remotes == 0 || P.remotes > 16384 || P.runs == 0 || P.groups.empty() || P.cookies.empty() || P.lanes > 64 ||
        P.workers == 0 || P.workers > 16)
        return usage();

    // EAL pins this thread to one CPU; the secondaries' thread must be free to run on the other.
    cpu_set_t cpus;
    CPU_ZERO(&cpus);
    const bool have_cpus = sched_getaffinity(0, sizeof cpus, &cpus) == 0;
    const std::string prefix = "p3setupbench-" + std::to_string(getpid());
    // Lcore 0 = this thread; 1..W = the primary's workers (never launched: lcore ids only).
    std::string lcores = "0@0";
    for (unsigned w = 1; w <= P.workers; ++w) lcores += "," + std::to_string(w) + "@" + std::to_string(w % 2);
    const char* eal[] = {"setup_bench", "--no-huge", "-m", "1024", "--no-pci", "--no-shconf", "--no-telemetry",
                         "--file-prefix", prefix.c_str(), "--lcores", lcores.c_str(), "--log-level", "error"};
    if (rte_eal_init(static_cast<int>(std::size(eal)), const_cast<char**>(eal)) < 0) {
        std::fputs("setup_bench: rte_eal_init failed\n", stderr);
        return 1;
    }
    if (have_cpus) sched_setaffinity(0, sizeof cpus, &cpus);
    p3::log::init({.ident = "setup_bench", .to_stderr = false, .to_syslog = false, .min_level = p3::log::Level::info});
    p3::log::set_sink(&LogTally::on_line, &g_log);

    g_load = load_average();
    std::vector<Sample> all;
    bool ok = true;
    unsigned seq = 0;
    // Runs interleaved (run 1 of every point, then run 2, ...) so drift on a shared machine
    // spreads over all points.
    for (unsigned r = 0; r < P.runs && ok; ++r)
        for (const auto& g : P.groups)
            for (const auto& c : P.cookies) {
                Sample s;
                if (!run_one(P, g, c, seq++, s)) {
                    ok = false;
                    break;
                }
                std::fprintf(stderr,
                             "  run %u %-6s cookies %-3s: %u/%u up in %.3f s, primary cpu %.3f s (slots %.3f), "
                             "secondaries cpu %.3f s, retx %lu, cookies %lu, fail %u\n",
                             r + 1, g.c_str(), c.c_str(), s.up, s.remotes, s.wall_s, s.cpu_s, s.install_cpu_s,
                             s.secondaries_cpu_s, (unsigned long)s.retransmits, (unsigned long)s.cookies_sent,
                             s.failures);
                all.push_back(std::move(s));
            }
    print_table(P, all);
    // A setup fails when its secondary is not up at the end; the primary's own count of failed
    // exchanges and of installed sessions must agree with that.
    std::uint64_t failures = 0, total = 0, timed_out = 0, inconsistent = 0;
    for (const auto& s : all) {
        failures += s.failures;
        total += s.remotes;
        timed_out += s.timed_out;
        // Only a finished run can be compared: at a timeout the primary may have installed a
        // session whose last message has not reached its secondary yet.
        if (s.timed_out == 0 && (s.primary_failed != s.failures || s.installed != s.up)) ++inconsistent;
    }
    if (!g_log.by_reason.empty()) {
        std::printf("log lines (warnings and errors), by reason code (the first of each):\n");
        for (const auto& [k, v] : g_log.by_reason) std::printf("  %5lu x %s\n", (unsigned long)v.count, v.first.c_str());
    }
    if (!P.json.empty() && !write_json(P, all)) ok = false;
    p3::log::set_sink(nullptr, nullptr);
    rte_eal_cleanup();
    std::filesystem::remove_all("/var/run/dpdk/" + prefix);
    if (failures)
        std::printf("FAILED: %lu of %lu setups did not complete (%lu still running at the timeout)\n",
                    (unsigned long)failures, (unsigned long)total, (unsigned long)timed_out);
    if (inconsistent)
        std::printf("FAILED: in %lu run(s) the primary's failed/installed counts disagree with the secondaries'\n",
                    (unsigned long)inconsistent);
    return ok && failures == 0 && inconsistent == 0 ? 0 : 1;
}
