// Pressure lines from counters, at most one per kind per kPressureLogMs (see pressure.hpp).
#include "dataplane/pressure.hpp"

#include <rte_ethdev.h>
#include <rte_mempool.h>

#include <cstdio>

#include "common/log.hpp"
#include "dataplane/dataplane.hpp"

namespace p3::dp {

PressureLog::Snapshot PressureLog::take() const {
    Snapshot s;
    for (const auto& d : kDrops) s.drops[static_cast<unsigned>(d.drop)] = dp_.drops(d.drop);
    const ControlCounters c = dp_.control_counters();   // as the control thread published them
    s.setup_waited = c.setup_waited;
    s.setup = c.setup;
    s.trusted = c.trusted;
    for (unsigned i = 0; i < kSides; ++i) {
        const PortInfo& p = dp_.port(static_cast<Side>(i));
        rte_eth_stats es{};
        if (p.started && rte_eth_stats_get(p.port_id, &es) == 0) {
            s.rx_nombuf[i] = es.rx_nombuf;
            s.imissed[i] = es.imissed;
        }
    }
    return s;
}

void PressureLog::poll(std::uint64_t now_ms) {
    if (started_ && now_ms - last_ms_ < kPressureLogMs) return;
    const Snapshot now = take();
    // "in 1.0 s": since the last report; the first one counts from the start.
    char span[32] = "since the start";
    if (started_) std::snprintf(span, sizeof span, "in %.1f s", static_cast<double>(now_ms - last_ms_) / 1000.0);
    started_ = true;
    auto d = [&](Drop x) {
        const unsigned i = static_cast<unsigned>(x);
        return static_cast<unsigned long>(now.drops[i] - last_.drops[i]);
    };
    if (auto a = d(Drop::SETUP_POLICED), b = d(Drop::NEIGH_POLICED), h = d(Drop::HOLD_POLICED); a + b + h)
        P3_LOG_WARN(DP_POLICED, "%s the workers dropped over their rate to the control thread: "
                    "%lu setup datagrams, %lu ARP/ND frames, %lu frames for unresolved next hops",
                    span, a, b, h);
    if (auto c = d(Drop::RING_FULL_CONTROL), s = d(Drop::RING_FULL_SETUP), n = d(Drop::RING_FULL_NEIGH),
        h = d(Drop::RING_FULL_HOLD), w = d(Drop::CONTROL_RING_FULL);
        c + s + n + h + w)
        P3_LOG_WARN(DP_RING_FULL, "%s rings between the planes were full: dropped %lu control, "
                    "%lu setup, %lu ARP/ND, %lu held (to the control thread), %lu to the workers",
                    span, c, s, n, h, w);
    if (auto a = d(Drop::REASM_SHARE), b = d(Drop::REASM_SOURCE); a + b)
        P3_LOG_WARN(DP_REASSEMBLY_FULL, "%s outer reassembly dropped %lu fragments to stay within its "
                    "share of the buffers (%u per worker) and %lu over a source's quota (%u)",
                    span, a, dp_.reassembly_bound(), b, dp_.reassembly_source_quota());
    if (auto t = d(Drop::NEIGH_TABLE_FULL), h = d(Drop::NEIGH_HOLD_TOTAL), q = d(Drop::NEIGH_HOLD); t + h + q)
        P3_LOG_WARN(DP_NEIGH_FULL, "%s neighbour resolution dropped %lu frames for want of an entry "
                    "(%u next hops at most), %lu over all hold queues (%u frames), %lu over one next hop's (%u)",
                    span, t, kMaxPendingNeighbors, h, dp_.held_bound(), q, dp_.hold_per_hop());
    if (now.setup_waited != last_.setup_waited)
        P3_LOG_WARN(DP_CONTROL_BUSY, "%s setup datagrams waited on the control thread after %lu passes "
                    "(%lu setup and %lu authenticated control messages handled; the latter first)",
                    span, static_cast<unsigned long>(now.setup_waited - last_.setup_waited),
                    static_cast<unsigned long>(now.setup - last_.setup),
                    static_cast<unsigned long>(now.trusted - last_.trusted));
    std::uint64_t nombuf = 0;
    for (unsigned i = 0; i < kSides; ++i) nombuf += now.rx_nombuf[i] - last_.rx_nombuf[i];
    if (auto a = d(Drop::MBUF_ALLOC); a + nombuf)
        P3_LOG_WARN(PORT_NO_MBUF, "%s the packet pool ran dry: %lu buffers not allocated, %lu frames "
                    "not received for want of one; %u of %u free now",
                    span, a, static_cast<unsigned long>(nombuf), rte_mempool_avail_count(dp_.pool()),
                    dp_.pool()->size);
    for (unsigned i = 0; i < kSides; ++i) {
        if (now.imissed[i] != last_.imissed[i])
            P3_LOG_WARN(PORT_RX_MISSED, "%s port %s lost %lu received frames (imissed: its RX queues were full)",
                        span, side_name(static_cast<Side>(i)),
                        static_cast<unsigned long>(now.imissed[i] - last_.imissed[i]));
    }
    last_ = now;
    last_ms_ = now_ms;
}

}  // namespace p3::dp
