// DPDK ports of one dataplane: resolving the configured LAN/WAN port (by id or device name),
// sizing queues and descriptors to the pool, configuring (RSS when the device has it),
// starting, and stopping + closing at exit. State: resolved -> configured -> started ->
// closed; every failure is logged with its reason code and leaves the port closed.
#pragma once

#include <rte_ether.h>
#include <rte_mempool.h>

#include <atomic>
#include <cstdint>
#include <string>

#include "common/config.hpp"

namespace p3::dp {

enum class Side : std::uint8_t { lan = 0, wan = 1 };
inline constexpr unsigned kSides = 2;
inline const char* side_name(Side s) noexcept { return s == Side::lan ? "lan" : "wan"; }

struct PortInfo {
    std::uint16_t port_id = 0;
    std::string name;            // device name ("net_ring0", "0000:03:00.0")
    std::string driver;
    rte_ether_addr mac{};
    std::uint16_t rx_queues = 0;
    std::uint16_t tx_queues = 0;
    std::uint16_t rx_desc = 0, tx_desc = 0;
    bool rss = false;
    bool started = false;
};

// Finds the DPDK port a PortConfig names. Logs PORT_MISSING and returns false when absent.
bool resolve_port(const config::PortConfig& pc, Side side, std::uint16_t& port_id);

// Configures and starts one port with rx_queues RX queues (RSS across them when the device
// supports it) and tx_queues TX queues (one per worker). rx_queues is reduced to what the
// device offers; tx_queues is not (PORT_QUEUES when short).
bool setup_port(std::uint16_t port_id, Side side, std::uint16_t rx_queues, std::uint16_t tx_queues,
                unsigned mbufs, std::uint16_t mtu, rte_mempool* pool, PortInfo& out);

// Stops and closes; safe to call twice.
void close_port(PortInfo& p);

// The link state of the two ports, watched by the control thread (never a worker: reading a
// link may take a syscall or a register read). Where the PMD raises link-state interrupts
// (RTE_ETH_DEV_INTR_LSC, asked for by setup_port), DPDK's interrupt thread only sets a flag
// and the next pass reads the link at once; otherwise, and as a safety net, the link is read
// with rte_eth_link_get_nowait every kLinkPollMs. A change is logged (P3-I0213 up with speed
// and duplex, P3-W0214 down) and counted per port; the state at start is logged, not counted.
// Telemetry reads up(), speed_mbps() and changes() from its own thread (relaxed atomics).
inline constexpr std::uint64_t kLinkPollMs = 1000;

class LinkWatch {
public:
    // Control thread, every pass.
    void poll(const PortInfo (&ports)[kSides], std::uint64_t now_ms) noexcept;

    bool up(Side s) const noexcept { return side(s).up.load(std::memory_order_relaxed); }
    std::uint32_t speed_mbps(Side s) const noexcept { return side(s).speed.load(std::memory_order_relaxed); }
    std::uint64_t changes(Side s) const noexcept { return side(s).changes.load(std::memory_order_relaxed); }
    bool known(Side s) const noexcept { return side(s).known.load(std::memory_order_relaxed); }

private:
    struct State {
        std::atomic<bool> known{false}, up{false};
        std::atomic<std::uint32_t> speed{0};
        std::atomic<std::uint64_t> changes{0};
    };
    const State& side(Side s) const noexcept { return state_[static_cast<unsigned>(s)]; }

    State state_[kSides];
    std::uint64_t last_ms_ = 0;
    bool polled_ = false;
};

}  // namespace p3::dp
