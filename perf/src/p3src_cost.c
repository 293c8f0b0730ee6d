/* SPDX-License-Identifier: BSD-3-Clause */
/* p3src_cost: what net_p3src costs the lcore that polls it, in cycles per packet.
 *
 *   p3src_cost --no-huge -m 256 --no-pci -l 1 -d build/perf/librte_net_p3src.so \
 *              --vdev 'net_p3src0,pcap=FILE[,head=64]' [-- PACKETS]
 *
 * On one lcore, bursts of 32: (a) rte_pktmbuf_alloc_bulk + rte_pktmbuf_free_bulk alone — the
 * refill and free any PMD pays, a NIC's included; (b) rte_eth_rx_burst on the source and
 * rte_eth_tx_burst of the same mbufs back to it (the sink). (b) - (a) is what the source
 * writes per packet. A measurement printed, not a test: nothing is asserted.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <rte_cycles.h>
#include <rte_eal.h>
#include <rte_ethdev.h>
#include <rte_mbuf.h>

#define BURST 32

/* Cycles this thread ran (its CPU time at the TSC rate): time it spent preempted on a shared
 * machine is not counted. */
static uint64_t
cpu_cycles(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (uint64_t)((double)ts.tv_sec * (double)rte_get_tsc_hz() + (double)ts.tv_nsec * 1e-9 * (double)rte_get_tsc_hz());
}

int
main(int argc, char **argv)
{
	int n = rte_eal_init(argc, argv);
	if (n < 0) {
		fprintf(stderr, "p3src_cost: EAL init failed\n");
		return 2;
	}
	argc -= n;
	argv += n;
	unsigned long packets = argc > 1 ? strtoul(argv[1], NULL, 0) : 4000000;
	if (rte_eth_dev_count_avail() < 1) {
		fprintf(stderr, "p3src_cost: no port (--vdev net_p3src0,pcap=FILE)\n");
		return 2;
	}
	/* The pool and cache p3d would make for one worker. */
	struct rte_mempool *pool = rte_pktmbuf_pool_create("cost", 8191, 256, 0, RTE_MBUF_DEFAULT_BUF_SIZE,
							   (int)rte_socket_id());
	struct rte_eth_conf conf = {0};
	if (pool == NULL || rte_eth_dev_configure(0, 1, 1, &conf) != 0 ||
	    rte_eth_rx_queue_setup(0, 0, 1024, rte_socket_id(), NULL, pool) != 0 ||
	    rte_eth_tx_queue_setup(0, 0, 1024, rte_socket_id(), NULL) != 0 || rte_eth_dev_start(0) != 0) {
		fprintf(stderr, "p3src_cost: port 0 set-up failed\n");
		return 1;
	}
	struct rte_mbuf *pk[BURST];
	unsigned long bursts = packets / BURST;
	/* (a) refill and free only */
	for (unsigned long i = 0; i < 1000; i++)
		if (rte_pktmbuf_alloc_bulk(pool, pk, BURST) == 0)
			rte_pktmbuf_free_bulk(pk, BURST);
	uint64_t t0 = cpu_cycles();
	for (unsigned long i = 0; i < bursts; i++)
		if (rte_pktmbuf_alloc_bulk(pool, pk, BURST) == 0)
			rte_pktmbuf_free_bulk(pk, BURST);
	uint64_t t1 = cpu_cycles();
	/* (b) the source and the sink */
	unsigned long got = 0;
	for (unsigned long i = 0; i < 1000; i++) {
		uint16_t k = rte_eth_rx_burst(0, 0, pk, BURST);
		rte_eth_tx_burst(0, 0, pk, k);
	}
	uint64_t t2 = cpu_cycles();
	for (unsigned long i = 0; i < bursts; i++) {
		uint16_t k = rte_eth_rx_burst(0, 0, pk, BURST);
		got += rte_eth_tx_burst(0, 0, pk, k);
	}
	uint64_t t3 = cpu_cycles();
	if (got == 0) {
		fprintf(stderr, "p3src_cost: the source gave no packet (no pcap= on port 0?)\n");
		return 1;
	}
	double a = (double)(t1 - t0) / (double)(bursts * BURST);
	double b = (double)(t3 - t2) / (double)got;
	printf("{\"packets\": %lu, \"alloc_free_cycles\": %.1f, \"source_sink_cycles\": %.1f, "
	       "\"writes_cycles\": %.1f, \"tsc_hz\": %" PRIu64 "}\n", got, a, b, b - a, rte_get_tsc_hz());
	rte_eth_dev_stop(0);
	rte_eth_dev_close(0);
	rte_eal_cleanup();
	return 0;
}
