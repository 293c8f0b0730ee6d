// One dataplane instance: its two ports, packet pool, rings, routing table, sessions,
// neighbour tables, RCU variable and worker lcores, and the one port the control plane uses
// (control_port(): control_port.hpp). p3d runs one; the in-process tests run two back to back
// in one EAL.
//
// Life: init() (ports started, tables built, static sessions installed; any failure logged
// with its reason code, nothing left open; its steps are the private members declared in its
// order below) -> start() (workers launched on their lcores) ->
// [run_here() on the calling lcore if it is a worker] -> request_stop() -> wait() -> close()
// (ports stopped and closed; also done by the destructor). The control thread is the control
// plane's (its ControlThread): it is started after start() and stopped before wait().
//
// Threads: workers read everything and write only their own Lcore; the control thread is the
// only writer of sessions, routes and neighbours (through the methods marked "control thread").
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include <rte_ether.h>
#include <rte_mempool.h>
#include <rte_rcu_qsbr.h>
#include <rte_ring.h>

#include "common/config.hpp"
#include "dataplane/control_port.hpp"
#include "dataplane/limits.hpp"
#include "dataplane/neighbors.hpp"
#include "dataplane/ports.hpp"
#include "dataplane/routes.hpp"
#include "dataplane/sessions.hpp"
#include "dataplane/stats.hpp"

namespace p3::wire {
class SlotTable;
}

namespace p3::dp {

struct Lcore;
class Resolver;
class SeqReserve;

class PressureLog;
class Capture;

struct Options {
    std::string name = "p3";            // prefix of DPDK object names (unique per instance)
    std::vector<unsigned> lcores;       // worker lcores; empty = every EAL lcore (main included)
    std::uint64_t seq_block = 0;        // static keys: sequences reserved per state write (0 = kSeqBlock)
};

// Addresses of one side, taken from the configuration.
struct SideAddr {
    Prefix addr;                        // interface address and its prefix
    std::optional<IpAddr> gateway;
    std::optional<MacAddr> gateway_mac;
    std::uint16_t mtu = 1500;
};

class Dataplane {
public:
    // cfg must outlive the Dataplane (p3d's main and the tests keep it).
    Dataplane(const config::Config& cfg, Options opts);
    ~Dataplane();
    Dataplane(const Dataplane&) = delete;
    Dataplane& operator=(const Dataplane&) = delete;

    bool init();
    bool start();
    void run_here();          // the worker of the calling lcore, until stop
    void request_stop() noexcept { stop_.store(true, std::memory_order_relaxed); }
    bool stopping() const noexcept { return stop_.load(std::memory_order_relaxed); }
    void wait();
    void close();
    // p3d only, before close() at exit: large tables are left to the exiting process rather
    // than freed (see RouteTable::abandon).
    void abandon_tables_at_exit() noexcept { routes_.abandon(); }

    // --- control thread ------------------------------------------------------------
    // The control plane's port (rings, neighbour hand-off, key slots, published views).
    ControlPort& control_port() noexcept { return port_; }
    const ControlPort& control_port() const noexcept { return port_; }
    bool send_to_workers(rte_mbuf* m) noexcept;   // meta(m) says how
    SessionTable& sessions() noexcept { return *sessions_; }
    RouteTable& routes() noexcept { return routes_; }
    // Remotes (remotes.cpp; the contract is ControlPort's). add_remote installs a session (down
    // until keys arrive) and its routes; with static keys, up. Returns its session id, 0 on
    // failure (logged, nothing left). remove_remote: false when the remote has no session.
    std::uint32_t add_remote(const config::Remote& r);
    bool remove_remote(std::uint32_t remote_id);
    bool set_subnets(std::uint32_t sid, std::span<const Prefix> subnets);
    void set_groups(std::uint32_t sid, std::vector<std::string> groups);
    std::uint32_t session_of(std::uint32_t remote_id) const noexcept;   // 0 = none
    // Keys of a session (keys.cpp; the contract is in control_port.hpp). Publishing
    // TX keys sets the session up; clearing sets it down and retires its slots through RCU
    // (wiped when freed).
    bool install_static(const config::Remote& r, std::uint32_t sid);
    std::optional<std::uint32_t> reserve_rx_ids(std::uint32_t lanes);
    bool install_rx(std::uint32_t sid, std::uint32_t base_id, const LaneKeys& k);
    bool install_tx(std::uint32_t sid, std::uint32_t peer_base_id, const LaneKeys& k);
    bool install_next_rx(std::uint32_t sid, const LaneKeys& k);
    void rx_switch_at(std::uint32_t sid, std::span<const std::uint64_t> first_seq);
    bool rx_next_seen(std::uint32_t sid) const noexcept;
    void promote_rx(std::uint32_t sid);
    void drop_next_rx(std::uint32_t sid);
    bool switch_tx(std::uint32_t sid, const LaneKeys& k, std::span<std::uint64_t> first_seq_out);
    // Standard ESP SAs of a session (keys.cpp; contract in control_port.hpp).
    bool esp_install_rx(std::uint32_t sid, const EspSa& sa);
    bool esp_install_tx(std::uint32_t sid, const EspSa& sa);
    void esp_remove_rx(std::uint32_t sid, std::uint32_t spi);
    std::uint64_t tx_packets(std::uint32_t sid) const noexcept;
    void clear_keys(std::uint32_t sid);
    bool set_peer(std::uint32_t sid, const IpAddr& peer, std::uint16_t udp_src, std::uint16_t udp_dst);
    // A worker's peer_moved (keys.cpp): the session follows its peer. false: stale or no change.
    bool move_peer(std::uint32_t sid, const PeerMoved& pm, std::uint64_t now_ms);
    std::uint64_t tx_last_seq(std::uint32_t sid, std::uint16_t lane) const noexcept;
    wire::SlotTable& slots() noexcept;
    // Cluster role (cluster.cpp; docs/cluster.md): primary or backup. With director = "none"
    // a primary answers ARP/ND for the WAN address and announces it, a backup forwards
    // nothing on the WAN; behind a director ("lvs") the WAN is the same either way. false
    // (logged): not a cluster member.
    bool set_cluster_role(bool primary);
    bool cluster_primary() const noexcept { return cluster_primary_; }
    bool wan_blocked() const noexcept { return wan_blocked_.load(std::memory_order_relaxed); }
    // Packet capture (capture.hpp): one at a time, started and drained by the control thread.
    Capture& capture() noexcept { return *capture_; }

    // --- read-only views (any thread) -------------------------------------------------
    const config::Config& config() const noexcept { return cfg_; }
    const PortInfo& port(Side s) const noexcept { return ports_[static_cast<unsigned>(s)]; }
    const LinkWatch& links() const noexcept { return links_; }   // the ports' link state (ports.hpp)
    const SideAddr& addr(Side s) const noexcept { return addr_[static_cast<unsigned>(s)]; }
    unsigned workers() const noexcept { return static_cast<unsigned>(lcores_.size()); }
    unsigned tx_lanes() const noexcept { return tx_lanes_; }   // lanes this appliance sends on
    const Lcore& lcore(unsigned i) const noexcept { return *lcores_[i]; }
    // A worker's state, for driving it by hand when no worker runs (tests, fuzzing).
    Lcore& lcore_for_test(unsigned i) noexcept { return *lcores_[i]; }
    rte_mempool* pool() const noexcept { return pool_; }
    rte_rcu_qsbr* qsbr() const noexcept { return qsbr_; }
    // The RCU reader id of telemetry (dataplane/telemetry.cpp): one past the workers'.
    unsigned telemetry_reader_id() const noexcept { return rcu_readers_ - 1; }
    NeighborTable& neighbors(Side s) noexcept { return *neigh_[static_cast<unsigned>(s)]; }
    const std::string& name() const noexcept { return opts_.name; }
    // Sum of one lcore counter / drop reason over all workers.
    std::uint64_t drops(Drop d) const noexcept;
    std::uint64_t sum(Counter LcoreStats::*c) const noexcept;
    SessionTotals session_totals(std::uint32_t sid) const noexcept;
    const LcoreStats* control_stats() const noexcept;   // the control thread's drops (neighbours)
    // What the control thread published last (control_port.hpp).
    ControlCounters control_counters() const noexcept { return port_.counters(); }
    // Fragments one worker's outer reassembly may hold, and one source of them.
    std::uint32_t reassembly_bound() const noexcept { return reasm_bound_; }
    // Frames held for unresolved next hops: per side, and per next hop.
    unsigned held_bound() const noexcept;
    unsigned hold_per_hop() const noexcept;
    std::uint32_t reassembly_source_quota() const noexcept;
    // Messages waiting on one worker -> control ring now.
    unsigned control_backlog(CtlClass c) const noexcept;

    // The worker's fast path reaches these directly.
    struct Shared;
    const Shared& shared() const noexcept { return *shared_; }

private:
    friend class ControlPort;
    void worker_main(unsigned index);
    // init()'s steps, in its order (dataplane.cpp); each logs why it fails.
    bool check_workers(std::vector<unsigned>& lc);
    bool resolve_ports(std::uint16_t (&pid)[kSides]);
    bool create_pool(unsigned nmbufs, unsigned nworkers);
    bool start_ports(const std::uint16_t (&pid)[kSides], std::uint16_t nworkers, unsigned nmbufs);
    bool create_rings(unsigned nworkers, unsigned nmbufs);
    bool create_tables(unsigned nworkers, unsigned nmbufs);
    void build_shared();
    bool setup_lcores(const std::vector<unsigned>& lc);
    void assign_queues();
    void assign_lanes();
    bool create_handoff(unsigned nmbufs);
    bool install_remotes();
    bool cluster_init();                      // cluster.cpp, after assign_lanes
    void apply_cluster_role(bool primary);
    void clear_keys_now(std::uint32_t sid);   // at close: no reader left
    // remotes.cpp
    std::uint32_t free_session(std::uint32_t remote_id) const noexcept;
    bool routes_free(std::span<const Prefix> ps, std::uint32_t sid, std::uint32_t remote_id) const;
    void retire_session(std::uint32_t sid);

    struct LaunchArg {
        Dataplane* dp;
        unsigned index;
    };

    const config::Config& cfg_;
    Options opts_;
    PortInfo ports_[kSides];
    LinkWatch links_;   // read by the control thread's housekeeping
    SideAddr addr_[kSides];
    rte_mempool* pool_ = nullptr;
    rte_ring* to_control_[kCtlClasses] = {};   // by CtlClass
    std::unique_ptr<PressureLog> pressure_;
    std::unique_ptr<Capture> capture_;
    rte_ring* to_workers_ = nullptr;
    rte_rcu_qsbr* qsbr_ = nullptr;
    unsigned rcu_readers_ = 0;         // workers + telemetry
    RouteTable routes_;
    std::unique_ptr<SessionTable> sessions_;
    std::unique_ptr<NeighborTable> neigh_[kSides];
    std::unique_ptr<Resolver> resolver_;
    std::unique_ptr<SeqReserve> seq_;   // static keys' persisted sequence marks (control thread)
    bool install_tx_at(std::uint32_t sid, std::uint32_t peer_base_id, const LaneKeys& k, std::uint64_t last_seq,
                       std::uint64_t seq_limit);
    std::vector<Lcore*> lcores_;
    std::unique_ptr<Shared> shared_;
    std::vector<LaunchArg> args_;
    struct KeyState;
    KeyState* keys_ = nullptr;         // keys.cpp: slot tables of the sessions
    bool keys_create(unsigned lanes);
    void keys_destroy() noexcept;
    std::atomic<bool> stop_{false};
    std::atomic<bool> wan_blocked_{false};    // a failover backup: nothing on the WAN
    bool cluster_primary_ = false;
    bool started_ = false, inited_ = false;
    unsigned tx_lanes_ = 0;
    std::uint32_t reasm_bound_ = 0;
    bool launched_[RTE_MAX_LCORE] = {};
    ControlPort port_{*this};
};

}  // namespace p3::dp
