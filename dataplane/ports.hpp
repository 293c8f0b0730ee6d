// DPDK ports of one dataplane: resolving the configured LAN/WAN port (by id or device name),
// sizing queues and descriptors to the pool, configuring (RSS when the device has it),
// starting, and stopping + closing at exit. State: resolved -> configured -> started ->
// closed; every failure is logged with its reason code and leaves the port closed.
#pragma once

#include <rte_ether.h>
#include <rte_mempool.h>

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

}  // namespace p3::dp
