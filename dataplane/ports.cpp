// Port set-up. Descriptor counts are cut to the pool: a NIC fills every RX descriptor with
// an mbuf, so a small pool (no hugepages) with many queues would otherwise leave none for
// the packet path.
#include "dataplane/ports.hpp"

#include <rte_ethdev.h>

#include <algorithm>
#include <atomic>

#include "common/log.hpp"
#include "dataplane/limits.hpp"

namespace p3::dp {

bool resolve_port(const config::PortConfig& pc, Side side, std::uint16_t& port_id) {
    if (!pc.port_name.empty()) {
        std::uint16_t id = 0;
        if (rte_eth_dev_get_port_by_name(pc.port_name.c_str(), &id) != 0) {
            P3_LOG_ERROR(PORT_MISSING, "dataplane.%s.port \"%s\": no such DPDK device (%u ports present)",
                         side_name(side), pc.port_name.c_str(), rte_eth_dev_count_avail());
            return false;
        }
        port_id = id;
        return true;
    }
    if (!rte_eth_dev_is_valid_port(pc.port_id)) {
        P3_LOG_ERROR(PORT_MISSING, "dataplane.%s.port %u: no such DPDK port (%u ports present)",
                     side_name(side), pc.port_id, rte_eth_dev_count_avail());
        return false;
    }
    port_id = pc.port_id;
    return true;
}

namespace {

// Set by DPDK's interrupt thread when a port with LSC interrupts reports a link change: the
// control thread's next LinkWatch::poll reads the links at once instead of within a second.
std::atomic<bool> g_lsc_event{false};

int on_lsc(std::uint16_t, rte_eth_event_type, void*, void*) {
    g_lsc_event.store(true, std::memory_order_relaxed);
    return 0;
}

}  // namespace

static std::uint16_t floor_pow2(unsigned v) {
    unsigned p = 1;
    while (p * 2 <= v) p *= 2;
    return static_cast<std::uint16_t>(p);
}

bool setup_port(std::uint16_t port_id, Side side, std::uint16_t rx_queues, std::uint16_t tx_queues,
                unsigned mbufs, std::uint16_t mtu, rte_mempool* pool, PortInfo& out) {
    out = PortInfo{};
    out.port_id = port_id;
    char name[RTE_ETH_NAME_MAX_LEN] = {};
    rte_eth_dev_get_name_by_port(port_id, name);
    out.name = name;

    rte_eth_dev_info info{};
    int rc = rte_eth_dev_info_get(port_id, &info);
    if (rc != 0) {
        P3_LOG_ERROR(PORT_SETUP, "%s port %u (%s): device info: %s", side_name(side), port_id, name,
                     rte_strerror(-rc));
        return false;
    }
    out.driver = info.driver_name ? info.driver_name : "?";
    if (tx_queues > info.max_tx_queues) {
        P3_LOG_ERROR(PORT_QUEUES, "%s port %u (%s): %u worker lcores need %u TX queues, the device has %u",
                     side_name(side), port_id, name, tx_queues, tx_queues, info.max_tx_queues);
        return false;
    }
    rx_queues = std::max<std::uint16_t>(1, std::min<std::uint16_t>(rx_queues, info.max_rx_queues));
    rx_queues = std::min<std::uint16_t>(rx_queues, kMaxQueuesPerPort);

    rte_eth_conf conf{};
    const std::uint64_t want_rss = RTE_ETH_RSS_IP | RTE_ETH_RSS_UDP | RTE_ETH_RSS_TCP;
    if (rx_queues > 1 && (info.flow_type_rss_offloads & want_rss) != 0) {
        conf.rxmode.mq_mode = RTE_ETH_MQ_RX_RSS;
        conf.rx_adv_conf.rss_conf.rss_hf = info.flow_type_rss_offloads & want_rss;
        out.rss = true;
    } else if (rx_queues > 1) {
        // Without RSS the extra queues would never see a packet unless the device spreads by
        // itself (net_ring, net_pcap queues are fed independently): keep them, say so.
        out.rss = false;
    }
    if (info.tx_offload_capa & RTE_ETH_TX_OFFLOAD_MBUF_FAST_FREE)
        conf.txmode.offloads |= RTE_ETH_TX_OFFLOAD_MBUF_FAST_FREE;
    // Link-state interrupts where the PMD has them (LinkWatch): a change is seen at once.
    const bool lsc = info.dev_flags != nullptr && (*info.dev_flags & RTE_ETH_DEV_INTR_LSC) != 0;
    if (lsc) {
        conf.intr_conf.lsc = 1;
        rte_eth_dev_callback_register(port_id, RTE_ETH_EVENT_INTR_LSC, on_lsc, nullptr);
    }

    rc = rte_eth_dev_configure(port_id, rx_queues, tx_queues, &conf);
    if (rc != 0) {
        P3_LOG_ERROR(PORT_SETUP, "%s port %u (%s): configure %u rx / %u tx queues: %s", side_name(side),
                     port_id, name, rx_queues, tx_queues, rte_strerror(-rc));
        return false;
    }
    // A quarter of the pool for all RX rings of this port, at least 64 each.
    std::uint16_t rxd = std::min<unsigned>(kRxDesc, std::max<unsigned>(64u, floor_pow2(mbufs / 4 / rx_queues)));
    std::uint16_t txd = kTxDesc;
    rte_eth_dev_adjust_nb_rx_tx_desc(port_id, &rxd, &txd);
    out.rx_desc = rxd;
    out.tx_desc = txd;
    const int socket = std::max(0, rte_eth_dev_socket_id(port_id));
    for (std::uint16_t q = 0; q < rx_queues; ++q) {
        rte_eth_rxconf rxc = info.default_rxconf;
        rc = rte_eth_rx_queue_setup(port_id, q, rxd, socket, &rxc, pool);
        if (rc != 0) {
            P3_LOG_ERROR(PORT_SETUP, "%s port %u (%s): RX queue %u: %s", side_name(side), port_id, name, q,
                         rte_strerror(-rc));
            rte_eth_dev_close(port_id);
            return false;
        }
    }
    for (std::uint16_t q = 0; q < tx_queues; ++q) {
        rte_eth_txconf txc = info.default_txconf;
        txc.offloads = conf.txmode.offloads;
        rc = rte_eth_tx_queue_setup(port_id, q, txd, socket, &txc);
        if (rc != 0) {
            P3_LOG_ERROR(PORT_SETUP, "%s port %u (%s): TX queue %u: %s", side_name(side), port_id, name, q,
                         rte_strerror(-rc));
            rte_eth_dev_close(port_id);
            return false;
        }
    }
    // The MTU is the device's business when it has one; virtual devices often do not.
    rc = rte_eth_dev_set_mtu(port_id, mtu);
    if (rc != 0 && rc != -ENOTSUP && rc != -EINVAL) {
        P3_LOG_WARN(PORT_SETUP, "%s port %u (%s): set MTU %u: %s (continuing)", side_name(side), port_id,
                    name, mtu, rte_strerror(-rc));
    }
    rc = rte_eth_dev_start(port_id);
    if (rc != 0) {
        P3_LOG_ERROR(PORT_SETUP, "%s port %u (%s): start: %s", side_name(side), port_id, name,
                     rte_strerror(-rc));
        rte_eth_dev_close(port_id);
        return false;
    }
    // Promiscuous is harmless (we filter by MAC ourselves) and needed on some virtual devices.
    rte_eth_promiscuous_enable(port_id);
    rte_eth_macaddr_get(port_id, &out.mac);
    out.rx_queues = rx_queues;
    out.tx_queues = tx_queues;
    out.started = true;
    char mac[RTE_ETHER_ADDR_FMT_SIZE];
    rte_ether_format_addr(mac, sizeof mac, &out.mac);
    P3_LOG_INFO(PORT_UP, "%s port %u (%s, driver %s, %s): %u rx queue(s)%s, %u tx queue(s), %u/%u descriptors, mtu %u",
                side_name(side), port_id, name, out.driver.c_str(), mac, rx_queues, out.rss ? " with RSS" : "",
                tx_queues, rxd, txd, mtu);
    return true;
}

void close_port(PortInfo& p) {
    if (!p.started) return;
    rte_eth_dev_callback_unregister(p.port_id, RTE_ETH_EVENT_INTR_LSC, on_lsc, nullptr);   // -ENOENT when none
    rte_eth_dev_stop(p.port_id);
    rte_eth_dev_close(p.port_id);
    p.started = false;
    P3_LOG_INFO(PORT_CLOSED, "port %u (%s) stopped and closed", p.port_id, p.name.c_str());
}

void LinkWatch::poll(const PortInfo (&ports)[kSides], std::uint64_t now_ms) noexcept {
    const bool event = g_lsc_event.exchange(false, std::memory_order_relaxed);
    if (polled_ && !event && now_ms - last_ms_ < kLinkPollMs) return;
    polled_ = true;
    last_ms_ = now_ms;
    for (unsigned i = 0; i < kSides; ++i) {
        const PortInfo& p = ports[i];
        if (!p.started) continue;
        rte_eth_link l{};
        if (rte_eth_link_get_nowait(p.port_id, &l) != 0) continue;
        State& st = state_[i];
        const bool up = l.link_status == RTE_ETH_LINK_UP;
        const std::uint32_t speed = up && l.link_speed != RTE_ETH_SPEED_NUM_UNKNOWN ? l.link_speed : 0;
        const bool first = !st.known.load(std::memory_order_relaxed);
        if (!first && up == st.up.load(std::memory_order_relaxed) && speed == st.speed.load(std::memory_order_relaxed))
            continue;
        st.up.store(up, std::memory_order_relaxed);
        st.speed.store(speed, std::memory_order_relaxed);
        st.known.store(true, std::memory_order_relaxed);
        if (!first) st.changes.store(st.changes.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
        const char* when = first ? " (at start)" : "";
        if (up)
            P3_LOG_INFO(PORT_LINK_UP, "%s port %u (%s): link up%s, %u Mbps %s-duplex%s", side_name(static_cast<Side>(i)),
                        p.port_id, p.name.c_str(), when, speed,
                        l.link_duplex == RTE_ETH_LINK_FULL_DUPLEX ? "full" : "half",
                        l.link_autoneg == RTE_ETH_LINK_AUTONEG ? ", autoneg" : "");
        else
            P3_LOG_WARN(PORT_LINK_DOWN, "%s port %u (%s): link down%s", side_name(static_cast<Side>(i)), p.port_id,
                        p.name.c_str(), when);
    }
}

}  // namespace p3::dp
