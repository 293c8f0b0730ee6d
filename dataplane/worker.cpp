// The worker loop (worker.hpp draws it): RCU quiescent state at the top, RX bursts from the
// lcore's queues through classification and its path (classify.cpp -> outbound.cpp /
// inbound.cpp), worker 0's drain of the control->worker ring (tx.cpp), the TSC timer that
// flushes the TX buffers and expires outer fragments, and the idle back-off (offline for RCU
// while asleep). Also the life of each worker's AES-GCM engine.
#include "dataplane/worker.hpp"

#include <rte_cycles.h>
#include <rte_ethdev.h>
#include <rte_lcore.h>

#include "common/crypto.hpp"
#include "common/log.hpp"
#include "dataplane/capture.hpp"
#include "dataplane/fastpath.hpp"

namespace p3::dp {

// ---- the loop -------------------------------------------------------------------------

void Dataplane::worker_main(unsigned index) {
    Lcore& L = *lcores_[index];
    const Shared& S = *shared_;
    rte_rcu_qsbr_thread_register(S.qsbr, index);
    rte_rcu_qsbr_thread_online(S.qsbr, index);
    rte_mbuf* pkts[kMaxBurst];
    const std::uint16_t burst = S.burst;
    L.last_drain_tsc = rte_rdtsc();

    while (!S.stop->load(std::memory_order_relaxed)) {
        rte_rcu_qsbr_quiescent(S.qsbr, index);
        L.stats.polls.add();
        unsigned got = 0;
        for (unsigned q = 0; q < L.nrx; ++q) {
            const RxQueue& rq = L.rx[q];
            const std::uint16_t n = rte_eth_rx_burst(rq.port, rq.queue, pkts, burst);
            if (n == 0) continue;
            got += n;
            capture_tap(*S.capture, L.index, rq.side, kCaptureRx, rq.port, rq.queue, pkts, n);
            if (rq.side == Side::wan && S.wan_blocked->load(std::memory_order_relaxed)) [[unlikely]] {
                L.stats.drop(Drop::CLUSTER_BACKUP, n);
                rte_pktmbuf_free_bulk(pkts, n);
                continue;
            }
            rx_burst(L, S, rq.side, pkts, n);
        }
        // Packets of lanes this worker owns that other workers received (none with one
        // WAN-polling worker: no ring).
        if (L.handoff != nullptr) got += handoff_in(L, S, pkts, burst);
        if (index == 0) got += drain_control(L, S);
        const std::uint64_t now = rte_rdtsc();
        if (now - L.last_drain_tsc >= S.drain_tsc) {
            tx_flush(L, S, Side::lan);
            tx_flush(L, S, Side::wan);
            L.reasm.end_burst(now);   // expire fragments even when the WAN is quiet
            count_reassembly(L);
            L.last_drain_tsc = now;
        }
        if (got) {
            L.stats.busy_polls.add();
            L.idle = 0;
            continue;
        }
        if (S.idle_backoff_us && ++L.idle >= S.idle_polls) {
            // Nothing to do for a while: flush, leave RCU (so writers need not wait), sleep.
            tx_flush(L, S, Side::lan);
            tx_flush(L, S, Side::wan);
            rte_rcu_qsbr_thread_offline(S.qsbr, index);
            rte_delay_us_sleep(S.idle_backoff_us);
            rte_rcu_qsbr_thread_online(S.qsbr, index);
            L.stats.idle_sleeps.add();
            L.idle = 0;
        }
    }
    tx_flush(L, S, Side::lan);
    tx_flush(L, S, Side::wan);
    rte_rcu_qsbr_thread_offline(S.qsbr, index);
    rte_rcu_qsbr_thread_unregister(S.qsbr, index);
}

// ---- per-lcore engines ------------------------------------------------------------------------

bool wire_engine_create(Lcore& L, const Dataplane::Shared&) {
    L.wire = wire::GcmEngine::create(static_cast<int>(rte_lcore_to_socket_id(L.lcore_id)));
    if (L.wire == nullptr) {
        P3_LOG_ERROR(DP_CRYPTO_ENGINE, "AES-GCM engine of lcore %u could not be created", L.lcore_id);
        return false;
    }
    return true;
}

void wire_engine_free(Lcore& L) {
    wire::GcmEngine::destroy(L.wire);
    L.wire = nullptr;
}

}  // namespace p3::dp
