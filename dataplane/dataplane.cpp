// Dataplane set-up and tear-down, lcore assignment, and the read-only views. init() is a
// row of named steps (workers, ports, pool, rings/RCU, tables, shared view, per-lcore state,
// queues, lanes, static remotes), each of which logs its own failure; close() undoes them all.
//
// Queue assignment: every (port, RX queue) pair is given to one worker, round robin in the
// order (lan q0, wan q0, lan q1, wan q1, ...), so with two workers and one queue per port one
// worker polls the LAN and the other the WAN. Every worker has its own TX queue on both ports
// (TX queue = worker index), so TX never locks. Inbound lanes have owners among the workers
// that poll the WAN, with a handoff ring each when there are several (create_handoff).
#include "dataplane/dataplane.hpp"

#include <rte_cycles.h>
#include <rte_ethdev.h>
#include <rte_lcore.h>
#include <rte_malloc.h>
#include <rte_mbuf.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <new>
#include <thread>

#include "common/log.hpp"
#include "dataplane/capture.hpp"
#include "dataplane/fastpath.hpp"
#include "common/slots.hpp"
#include "dataplane/pressure.hpp"
#include "dataplane/resolver.hpp"
#include "dataplane/seq_reserve.hpp"

namespace p3::dp {

int g_meta_offset = -1;

bool register_meta() {
    if (g_meta_offset >= 0) return true;
    static const rte_mbuf_dynfield desc = {"p3_pkt_meta", sizeof(PktMeta), alignof(PktMeta), 0};
    g_meta_offset = rte_mbuf_dynfield_register(&desc);
    if (g_meta_offset < 0) {
        P3_LOG_ERROR(DP_TABLES, "mbuf metadata field: %s", rte_strerror(rte_errno));
        return false;
    }
    return true;
}

Dataplane::Dataplane(const config::Config& cfg, Options opts) : cfg_(cfg), opts_(std::move(opts)) {}

Dataplane::~Dataplane() {
    if (started_) {
        request_stop();
        wait();
    }
    close();
}

static SideAddr side_addr(const config::PortConfig& pc) {
    SideAddr a;
    a.addr = pc.address;
    a.gateway = pc.gateway;
    a.gateway_mac = pc.gateway_mac;
    a.mtu = pc.mtu;
    return a;
}

// init() in the order it builds: any step that fails has logged why and returns false;
// close() (called by the owner, or the destructor) releases whatever the earlier steps opened.
bool Dataplane::init() {
    if (!register_meta()) return false;
    std::vector<unsigned> lc;
    if (!check_workers(lc)) return false;
    const auto nworkers = static_cast<std::uint16_t>(lc.size());
    std::uint16_t pid[kSides];
    if (!resolve_ports(pid)) return false;
    const unsigned nmbufs = std::max<unsigned>(cfg_.dataplane.mbufs, kMinMbufs);
    if (!create_pool(nmbufs, nworkers)) return false;
    if (!start_ports(pid, nworkers, nmbufs)) return false;
    if (!create_rings(nworkers, nmbufs)) return false;
    if (!create_tables(nworkers, nmbufs)) return false;
    build_shared();
    // Outer reassembly holds at most 1/kReassemblyShareDiv of the pool, split between the
    // workers that poll the WAN (each has its own table).
    const unsigned wan_workers = std::max(1u, std::min<unsigned>(nworkers, ports_[1].rx_queues));
    reasm_bound_ = std::min<std::uint32_t>(kReassemblyFlows, nmbufs / kReassemblyShareDiv / wan_workers);
    pressure_ = std::make_unique<PressureLog>(*this);
    if (!setup_lcores(lc)) return false;
    assign_queues();
    assign_lanes();
    if (!cluster_init()) return false;
    if (!create_handoff(nmbufs)) return false;
    if (!install_remotes()) return false;
    inited_ = true;
    return true;
}

// The worker lcores (the EAL's, unless the options name them) and the burst size.
bool Dataplane::check_workers(std::vector<unsigned>& lc) {
    const auto& dc = cfg_.dataplane;
    lc = opts_.lcores;
    if (lc.empty()) {
        unsigned id;
        RTE_LCORE_FOREACH(id) lc.push_back(id);
    }
    if (lc.empty() || lc.size() > kMaxWorkers) {
        P3_LOG_ERROR(DP_CONFIG, "%zu worker lcores: between 1 and %u are supported", lc.size(), kMaxWorkers);
        return false;
    }
    if (dc.burst == 0 || dc.burst > kMaxBurst) {
        P3_LOG_ERROR(DP_CONFIG, "dataplane.burst %u: between 1 and %u", dc.burst, kMaxBurst);
        return false;
    }
    return true;
}

// The two DPDK ports the configuration names (two different ones) and their addresses.
bool Dataplane::resolve_ports(std::uint16_t (&pid)[kSides]) {
    const auto& dc = cfg_.dataplane;
    if (!resolve_port(dc.lan, Side::lan, pid[0]) || !resolve_port(dc.wan, Side::wan, pid[1])) return false;
    if (pid[0] == pid[1]) {
        P3_LOG_ERROR(PORT_SAME, "dataplane.lan and dataplane.wan are both DPDK port %u", pid[0]);
        return false;
    }
    addr_[0] = side_addr(dc.lan);
    addr_[1] = side_addr(dc.wan);
    return true;
}

// Packet pool: small without hugepages, one cache per lcore.
bool Dataplane::create_pool(unsigned nmbufs, unsigned nworkers) {
    const unsigned cache = std::min<unsigned>(kMbufCache, nmbufs / (2 * nworkers + 2));
    std::string pname = opts_.name + "_pool";
    pool_ = rte_pktmbuf_pool_create(pname.c_str(), nmbufs, cache, 0, RTE_MBUF_DEFAULT_BUF_SIZE,
                                    static_cast<int>(rte_socket_id()));
    if (!pool_) {
        P3_LOG_ERROR(MEMPOOL, "%u packet buffers: %s", nmbufs, rte_strerror(rte_errno));
        return false;
    }
    return true;
}

// Both ports configured and started: a TX queue per worker, RX queues as configured (or one
// per worker).
bool Dataplane::start_ports(const std::uint16_t (&pid)[kSides], std::uint16_t nworkers, unsigned nmbufs) {
    const auto& dc = cfg_.dataplane;
    const std::uint16_t rxq = dc.rx_queues == 0 ? nworkers : dc.rx_queues;
    for (unsigned s = 0; s < kSides; ++s) {
        const auto side = static_cast<Side>(s);
        if (!setup_port(pid[s], side, rxq, nworkers, nmbufs / 2, addr_[s].mtu, pool_, ports_[s])) return false;
    }
    return true;
}

// The rings to the control thread (one per class) and back to the workers, and the RCU variable.
bool Dataplane::create_rings(unsigned nworkers, unsigned nmbufs) {
    static constexpr const char* kCtlSuffix[kCtlClasses] = {"_ctl_t", "_ctl_n", "_ctl_s"};
    static constexpr unsigned kCtlSize[kCtlClasses] = {kTrustedRingSize, kNeighRingSize, kSetupRingSize};
    // A ring holds at most a quarter of the pool: a small pool (dataplane.mbufs down to 511)
    // must not end up all in the setup ring while the control thread is busy, with nothing left
    // for the ports to receive into.
    const unsigned ring_cap = std::max(64u, rte_align32prevpow2(nmbufs / 4));
    bool rings_ok = true;
    for (unsigned c = 0; c < kCtlClasses; ++c) {
        const std::string rn = opts_.name + kCtlSuffix[c];
        to_control_[c] = rte_ring_create(rn.c_str(), std::min(kCtlSize[c], ring_cap), SOCKET_ID_ANY, RING_F_SC_DEQ);
        rings_ok &= to_control_[c] != nullptr;
    }
    const std::string rn = opts_.name + "_to_wrk";
    to_workers_ = rte_ring_create(rn.c_str(), kToWorkerRingSize, SOCKET_ID_ANY, RING_F_SC_DEQ);
    // RCU readers: the workers (ids 0..n-1) and telemetry (n), which reads key slots too.
    rcu_readers_ = nworkers + 1;
    const std::size_t qsz = rte_rcu_qsbr_get_memsize(rcu_readers_);
    qsbr_ = static_cast<rte_rcu_qsbr*>(rte_zmalloc(nullptr, qsz, RTE_CACHE_LINE_SIZE));
    if (!rings_ok || !to_workers_ || !qsbr_ || rte_rcu_qsbr_init(qsbr_, rcu_readers_) != 0) {
        P3_LOG_ERROR(DP_TABLES, "rings / RCU variable: %s", rte_strerror(rte_errno));
        return false;
    }
    return true;
}

// Routes, key slots, sessions, neighbour tables, and the configured gateways: a static MAC,
// or resolved from the control thread's first pass on (docs/dataplane.md "Neighbours").
bool Dataplane::create_tables(unsigned nworkers, unsigned nmbufs) {
    if (!routes_.create(opts_.name.c_str(), qsbr_)) return false;
    // TX slots per session: as many lanes as any remote may send on (one per sending worker, or
    // its lanes setting, or its static keys' lanes), within wire::kMaxLanes.
    unsigned lanes = nworkers;
    for (const auto& r : cfg_.remotes) {
        lanes = std::max(lanes, r.params.lanes);
        if (r.static_keys) lanes = std::max(lanes, r.static_keys->lanes);
    }
    if (!keys_create(std::min<unsigned>(lanes, wire::kMaxLanes))) return false;
    sessions_ = std::make_unique<SessionTable>();
    for (auto& n : neigh_) n = std::make_unique<NeighborTable>();
    resolver_ = std::make_unique<Resolver>(*this, held_per_side(nmbufs));
    for (unsigned s = 0; s < kSides; ++s) {
        if (addr_[s].gateway && addr_[s].gateway_mac) {
            rte_ether_addr mac;
            std::memcpy(mac.addr_bytes, addr_[s].gateway_mac->bytes.data(), 6);
            resolver_->set_static(static_cast<Side>(s), *addr_[s].gateway, mac);
        } else if (addr_[s].gateway) {
            resolver_->add_configured(static_cast<Side>(s), *addr_[s].gateway);
        }
    }
    return true;
}

// What the workers read.
void Dataplane::build_shared() {
    const auto& dc = cfg_.dataplane;
    shared_ = std::make_unique<Shared>();
    Shared& S = *shared_;
    for (unsigned s = 0; s < kSides; ++s) {
        S.port_id[s] = ports_[s].port_id;
        S.mac[s] = ports_[s].mac;
        S.prefix[s] = addr_[s].addr;
        S.gateway[s] = addr_[s].gateway;
        S.mtu[s] = addr_[s].mtu;
        S.neigh[s] = neigh_[s].get();
    }
    S.setup_port = cfg_.local.port;
    S.nat_port = cfg_.local.nat_port;
    S.replay_window = dc.replay_window;
    for (unsigned c = 0; c < kCtlClasses; ++c) S.to_control[c] = to_control_[c];
    S.to_workers = to_workers_;
    S.qsbr = qsbr_;
    S.pool = pool_;
    S.routes = &routes_;
    S.sessions = sessions_.get();
    S.slots = &slots();
    S.burst = dc.burst;
    S.idle_polls = std::max<std::uint32_t>(1, dc.idle_polls);
    S.idle_backoff_us = dc.idle_backoff_us;
    S.drain_tsc = (rte_get_tsc_hz() + 1000000 - 1) / 1000000 * kTxDrainUs;
    S.stop = &stop_;
    S.wan_blocked = &wan_blocked_;
    const std::uint16_t capture_ports[kSides] = {ports_[0].port_id, ports_[1].port_id};
    capture_ = std::make_unique<Capture>(opts_.name, capture_ports, static_cast<int>(rte_socket_id()));
    S.capture = capture_.get();
    S.add_local(addr_[0].addr);   // the LAN port's own prefix (host bits masked)
    for (const auto& p : cfg_.local.subnets) S.add_local(p);
}

// Per-lcore state, on each lcore's socket: session counters, reassembly table, rate limits
// and the wire engine.
bool Dataplane::setup_lcores(const std::vector<unsigned>& lc) {
    Shared& S = *shared_;
    for (unsigned i = 0; i < lc.size(); ++i) {
        const unsigned socket = rte_lcore_to_socket_id(lc[i]);
        void* mem = rte_zmalloc_socket("p3_lcore", sizeof(Lcore), RTE_CACHE_LINE_SIZE, static_cast<int>(socket));
        auto* sc = static_cast<SessionCounters*>(
            rte_zmalloc_socket("p3_sess_ctr", sizeof(SessionCounters) * kMaxSessions, RTE_CACHE_LINE_SIZE,
                               static_cast<int>(socket)));
        if (!mem || !sc) {
            rte_free(mem);
            rte_free(sc);
            P3_LOG_ERROR(OUT_OF_MEMORY, "per-lcore state of lcore %u", lc[i]);
            return false;
        }
        Lcore* L = new (mem) Lcore();
        L->lcore_id = lc[i];
        L->index = i;
        L->sessions = sc;
        lcores_.push_back(L);
        if (!L->reasm.init(reasm_bound_, kReassemblyTimeoutMs, static_cast<int>(socket), pool_,
                           rte_get_tsc_hz())) {
            P3_LOG_ERROR(OUT_OF_MEMORY, "reassembly table of lcore %u", lc[i]);
            return false;
        }
        const std::uint64_t hz = rte_get_tsc_hz(), now = rte_rdtsc();
        L->replies.configure(hz, kDefaultReplyRate, kDefaultReplyBurst, now);
        L->setup_rate.configure(hz, kSetupRate, kSetupBurst, now);
        L->neigh_rate.configure(hz, kNeighRate, kNeighBurst, now);
        L->hold_rate.configure(hz, kHoldRate, kHoldBurst, now);
        L->moved_open.configure(hz, kMovedOpenRate, kMovedOpenBurst, now);
        L->moved_rate.configure(hz, kPeerMovedRate, kPeerMovedBurst, now);
        if (!wire_engine_create(*L, S)) return false;
    }
    return true;
}

// LAN queue q -> worker q mod n; WAN queue q -> worker (q + 1) mod n. With one queue per
// port and two workers, one polls the LAN and the other the WAN; with a queue per worker
// (RSS), every worker polls one of each.
void Dataplane::assign_queues() {
    const auto nworkers = static_cast<unsigned>(lcores_.size());
    for (unsigned s = 0; s < kSides; ++s) {
        for (std::uint16_t q = 0; q < ports_[s].rx_queues; ++q) {
            Lcore& L = *lcores_[(q + s) % nworkers];
            if (L.nrx == kMaxRxPerWorker) continue;
            L.rx[L.nrx++] = RxQueue{ports_[s].port_id, q, static_cast<Side>(s)};
        }
    }
}

// Lanes: every worker that encrypts (polls a LAN queue, or is worker 0, which drains the
// control ring) sends under its own lane, numbered densely from 0. Logs each worker's share.
void Dataplane::assign_lanes() {
    tx_lanes_ = 0;
    for (Lcore* L : lcores_) {
        bool sends = L->index == 0;
        for (unsigned r = 0; r < L->nrx; ++r) sends |= L->rx[r].side == Side::lan;
        L->lane = sends ? tx_lanes_++ : kNoLane;
    }
    shared_->senders = static_cast<std::uint16_t>(std::max(1u, tx_lanes_));
    for (auto* L : lcores_) {
        std::string q;
        for (unsigned r = 0; r < L->nrx; ++r)
            q += std::string(r ? ", " : "") + side_name(L->rx[r].side) + " q" + std::to_string(L->rx[r].queue);
        std::string lane = L->lane == kNoLane ? std::string("does not encrypt") : "sends on lane " + std::to_string(L->lane);
        P3_LOG_INFO(LCORES, "worker %u on lcore %u (socket %u): polls %s; TX queue %u on both ports; %s",
                    L->index, L->lcore_id, rte_lcore_to_socket_id(L->lcore_id), q.empty() ? "nothing" : q.c_str(),
                    L->index, lane.c_str());
    }
}

// Inbound lanes: lane n of every session is owned by the n-th WAN-polling worker in turn
// (W[n mod m], W in the order of the lowest WAN queue each polls: where lane n's packets
// land when something upstream spreads lanes by queue, as the sender's TX queue = lane
// does on the test rigs); with two or more of them, each gets a handoff ring (MP/SC) for the
// packets of its lanes that another one receives, at most kHandoffRingSize and, like the
// control rings, at most a quarter of the pool for all of them together (so handed packets
// cannot take the buffers the ports receive into).
bool Dataplane::create_handoff(unsigned nmbufs) {
    std::vector<std::pair<std::uint16_t, unsigned>> by_queue;   // (WAN queue, worker)
    for (const Lcore* L : lcores_)
        for (unsigned r = 0; r < L->nrx; ++r)
            if (L->rx[r].side == Side::wan) by_queue.emplace_back(L->rx[r].queue, L->index);
    std::sort(by_queue.begin(), by_queue.end());
    std::vector<unsigned> wan;
    for (const auto& [q, w] : by_queue)
        if (std::find(wan.begin(), wan.end(), w) == wan.end()) wan.push_back(w);
    Shared& S = *shared_;
    for (unsigned n = 0; n < wire::kMaxLanes; ++n)
        S.lane_owner[n] = static_cast<std::uint8_t>(wan.empty() ? 0 : wan[n % wan.size()]);
    if (wan.size() < 2) return true;
    // Spread only when RSS cannot: with at least as many P3 remotes as WAN-polling workers,
    // RSS already puts sessions on every worker, and handing half of every session's packets
    // to another core costs more than it balances (measured: 2 workers, 64 sessions, 64 B
    // inbound: 12.0-16.6 Mpps handed off against 19.8-22.1 opened where received). Then each
    // session's lanes are opened by the worker its queue reaches, one writer since RSS keeps a
    // session on one queue (docs/dataplane.md §Lanes).
    const auto p3_remotes = static_cast<std::size_t>(std::count_if(
        cfg_.remotes.begin(), cfg_.remotes.end(), [](const config::Remote& r) { return r.wire == config::WireMode::p3; }));
    if (!cfg_.dataplane.spread_lanes) {
        P3_LOG_INFO(LCORES, "inbound lanes opened where they are received (dataplane.spread_lanes = false)");
        return true;
    }
    if (p3_remotes >= wan.size()) {
        P3_LOG_INFO(LCORES, "inbound lanes opened where they are received: %zu P3 remote(s) for %zu WAN-polling workers, RSS spreads sessions",
                    p3_remotes, wan.size());
        return true;
    }
    const unsigned size = std::min<unsigned>(
        kHandoffRingSize, std::max(64u, rte_align32prevpow2(nmbufs / 4 / static_cast<unsigned>(wan.size()))));
    for (unsigned w : wan) {
        const std::string rn = opts_.name + "_ho" + std::to_string(w);
        rte_ring* r = rte_ring_create(rn.c_str(), size, static_cast<int>(rte_lcore_to_socket_id(lcores_[w]->lcore_id)),
                                      RING_F_SC_DEQ);
        if (r == nullptr) {
            P3_LOG_ERROR(DP_TABLES, "handoff ring of worker %u: %s", w, rte_strerror(rte_errno));
            return false;
        }
        lcores_[w]->handoff = r;
        S.handoff[w] = r;
    }
    std::string owners;
    for (unsigned i = 0; i < wan.size(); ++i) owners += std::string(i ? ", " : "") + std::to_string(wan[i]);
    P3_LOG_INFO(LCORES, "inbound lane n of each session is opened by worker [%s][n mod %zu]; handoff rings of %u",
                owners.c_str(), wan.size(), size);
    return true;
}

// The configured remotes, with their static sessions, and the persisted sequence marks.
bool Dataplane::install_remotes() {
    seq_ = std::make_unique<SeqReserve>(cfg_.local.state_dir, opts_.seq_block);
    for (const auto& r : cfg_.remotes)
        if (add_remote(r) == 0) return false;
    return true;
}

bool Dataplane::start() {
    if (!inited_) return false;
    args_.clear();
    args_.reserve(lcores_.size());   // never reallocated while workers hold pointers into it
    for (unsigned i = 0; i < lcores_.size(); ++i) args_.push_back({this, i});
    for (unsigned i = 0; i < lcores_.size(); ++i) {
        const unsigned id = lcores_[i]->lcore_id;
        if (id == rte_lcore_id()) continue;   // run_here()
        int rc = rte_eal_remote_launch(
            [](void* p) -> int {
                auto* a = static_cast<LaunchArg*>(p);
                a->dp->worker_main(a->index);
                return 0;
            },
            &args_[i], id);
        if (rc != 0) {
            P3_LOG_ERROR(DP_CONFIG, "lcore %u is busy or not a worker lcore: %s", id, rte_strerror(-rc));
            return false;
        }
        launched_[id] = true;
    }
    started_ = true;
    P3_LOG_INFO(DP_WORKERS, "%u worker lcore(s) running; idle back-off %u us after %u empty polls",
                workers(), cfg_.dataplane.idle_backoff_us, cfg_.dataplane.idle_polls);
    return true;
}

void Dataplane::run_here() {
    const unsigned me = rte_lcore_id();
    for (unsigned i = 0; i < lcores_.size(); ++i) {
        if (lcores_[i]->lcore_id == me) {
            worker_main(i);
            return;
        }
    }
    while (!stopping()) std::this_thread::sleep_for(std::chrono::milliseconds(10));
}

void Dataplane::wait() {
    for (unsigned id = 0; id < RTE_MAX_LCORE; ++id) {
        if (launched_[id]) {
            rte_eal_wait_lcore(id);
            launched_[id] = false;
        }
    }
    started_ = false;
}

void Dataplane::close() {
    capture_.reset();   // a capture still running is stopped and its file completed
    for (auto& p : ports_) close_port(p);
    // Frames still queued between the threads.
    for (rte_ring* r : {to_control_[0], to_control_[1], to_control_[2], to_workers_}) {
        if (!r) continue;
        void* m;
        while (rte_ring_dequeue(r, &m) == 0) rte_pktmbuf_free(static_cast<rte_mbuf*>(m));
        rte_ring_free(r);
    }
    for (auto& r : to_control_) r = nullptr;
    to_workers_ = nullptr;
    for (Lcore* L : lcores_) {
        void* m;
        while (L->handoff && rte_ring_dequeue(L->handoff, &m) == 0) rte_pktmbuf_free(static_cast<rte_mbuf*>(m));
        rte_ring_free(L->handoff);
        L->handoff = nullptr;
        for (auto& b : L->hand) {
            rte_pktmbuf_free_bulk(b.pkts, b.n);
            b.n = 0;
        }
    }
    if (sessions_) {
        for (std::uint32_t sid = 1; sid < kMaxSessions; ++sid) clear_keys_now(sid);
    }
    keys_destroy();
    resolver_.reset();
    for (Lcore* L : lcores_) {
        wire_engine_free(*L);
        for (auto& b : L->tx) {
            rte_pktmbuf_free_bulk(b.pkts, b.n);
            b.n = 0;
        }
        rte_free(L->sessions);
        L->~Lcore();
        rte_free(L);
    }
    lcores_.clear();
    if (qsbr_) {
        // The route table's defer queue refers to the variable: free the tables first.
        routes_.~RouteTable();
        new (&routes_) RouteTable();
        rte_free(qsbr_);
        qsbr_ = nullptr;
    }
    if (pool_) {
        rte_mempool_free(pool_);
        pool_ = nullptr;
    }
    inited_ = false;
}

// ---- control thread ------------------------------------------------------------------

bool Dataplane::send_to_workers(rte_mbuf* m) noexcept { return rte_ring_mp_enqueue(to_workers_, m) == 0; }

// ---- read-only views ------------------------------------------------------------------

std::uint64_t Dataplane::drops(Drop d) const noexcept {
    std::uint64_t t = resolver_ ? resolver_->stats().drops[static_cast<unsigned>(d)].get() : 0;
    for (const Lcore* L : lcores_) t += L->stats.drops[static_cast<unsigned>(d)].get();
    return t;
}

std::uint64_t Dataplane::sum(Counter LcoreStats::*c) const noexcept {
    std::uint64_t t = resolver_ ? (resolver_->stats().*c).get() : 0;
    for (const Lcore* L : lcores_) t += (L->stats.*c).get();
    return t;
}

SessionTotals Dataplane::session_totals(std::uint32_t sid) const noexcept {
    SessionTotals t;
    if (sid >= kMaxSessions) return t;
    for (const Lcore* L : lcores_) {
        const SessionCounters& c = L->sessions[sid];
        t.tx_pkts += c.tx_pkts.get();
        t.tx_bytes += c.tx_bytes.get();
        t.rx_pkts += c.rx_pkts.get();
        t.rx_bytes += c.rx_bytes.get();
        t.tx_dropped += c.tx_dropped.get();
        t.rx_auth += c.rx_auth.get();
        t.rx_replay += c.rx_replay.get();
        t.rx_dropped += c.rx_dropped.get();
        t.rx_old_key += c.rx_old_key.get();
        t.rx_policy += c.rx_policy.get();
        t.tx_down += c.tx_down.get();
    }
    return t;
}

unsigned Dataplane::control_backlog(CtlClass c) const noexcept {
    rte_ring* r = to_control_[static_cast<unsigned>(c)];
    return r ? rte_ring_count(r) : 0;
}

std::uint32_t Dataplane::reassembly_source_quota() const noexcept {
    return lcores_.empty() ? 0 : lcores_[0]->reasm.per_source();
}

const LcoreStats* Dataplane::control_stats() const noexcept { return resolver_ ? &resolver_->stats() : nullptr; }
unsigned Dataplane::held_bound() const noexcept { return resolver_ ? resolver_->held_bound() : 0; }
unsigned Dataplane::hold_per_hop() const noexcept { return resolver_ ? resolver_->hold_per_hop() : 0; }

}  // namespace p3::dp
