/* SPDX-License-Identifier: BSD-3-Clause */
/* net_p3src: a traffic source and sink for benchmarks that should measure the application, not
 * its feeder (perf/README.md, "The zero-copy source").
 *
 *   --vdev 'net_p3src0,pcap=FILE[,head=N][,mac=02:..]'   plays FILE's Ethernet frames forever
 *   --vdev 'net_p3src1[,sink=1]'                           (no pcap) a sink: RX never returns a frame
 *
 * RX, per queue: mbufs taken from the queue's pool in one bulk (rte_pktmbuf_alloc_bulk, served
 * by the lcore's mempool cache, as a NIC PMD refills its descriptors), and into each only what
 * must be written: the frame's first `head` bytes (default: all of it) from a template read once
 * at probe, its lengths and its port. head=64 suits an application that reads only the headers
 * and overwrites the payload in place (p3d outbound: the Ethernet, IP and L4 headers are read,
 * the payload is encrypted whatever its bytes); an application that reads the payload (p3d
 * inbound decrypts and verifies it in place) needs the whole frame restored: the default.
 * TX, any port: rte_pktmbuf_free_bulk and count. Queues: up to 64 each way, one per worker; with
 * RSS configured the frames are spread over the RX queues as a NIC's RSS would (Toeplitz hash,
 * round-robin redirection table), otherwise every queue plays every frame.
 * Counters: the ethdev stats (ipackets, ibytes, opackets, obytes, rx_nombuf, per queue).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <immintrin.h>

#include <rte_branch_prediction.h>
#include <rte_cpuflags.h>
#include <rte_devargs.h>
#include <rte_ether.h>
#include <rte_kvargs.h>
#include <rte_log.h>
#include <rte_malloc.h>
#include <rte_mbuf.h>
#include <rte_memcpy.h>
#include <rte_vect.h>

#include "driver_abi.h"

#include "p3src.h"

/* One RX queue: read and written by the one lcore that polls it. */
struct rxq {
	const struct frame *frames;  /* this queue's share, in capture order */
	uint32_t nframes;
	uint32_t next;
	struct rte_mempool *pool;
	uint16_t port_id;
	uint64_t pkts, bytes, nombuf;
	struct frame *share;  /* storage of `frames` */
} __rte_cache_aligned;

struct txq {
	uint64_t pkts, bytes;
} __rte_cache_aligned;

/* --- RX and TX: the fast path --------------------------------------------------------------- */

/* The copy is the only per-packet cost that grows with the frame, so it gets the widest loads
 * and stores the CPU allows (picked at probe, as DPDK's own PMDs pick their vector paths; this
 * DPDK is built for a baseline x86, where rte_memcpy moves 16 bytes at a time). `copy` is a
 * multiple of 64 and the templates are 64-byte aligned and padded: no tail to handle. */
#define P3SRC_RX(name, attr, COPY)                                                            \
	attr static uint16_t name(void *q, struct rte_mbuf **bufs, uint16_t n)                 \
	{                                                                                      \
		struct rxq *r = q;                                                             \
		if (unlikely(r->nframes == 0 || n == 0))                                       \
			return 0;                                                              \
		if (unlikely(rte_pktmbuf_alloc_bulk(r->pool, bufs, n) != 0)) {                 \
			r->nombuf += n;                                                        \
			return 0;                                                              \
		}                                                                              \
		uint32_t next = r->next;                                                       \
		uint64_t bytes = 0;                                                            \
		for (uint16_t i = 0; i < n; i++) {                                             \
			const struct frame *f = &r->frames[next];                              \
			struct rte_mbuf *m = bufs[i];                                          \
			uint8_t *d = rte_pktmbuf_mtod(m, uint8_t *);                           \
			const uint8_t *s = f->data;                                            \
			COPY;                                                                  \
			m->data_len = f->len;                                                  \
			m->pkt_len = f->len;                                                   \
			m->port = r->port_id;                                                  \
			bytes += f->len;                                                       \
			if (++next == r->nframes)                                              \
				next = 0;                                                      \
		}                                                                              \
		r->next = next;                                                                \
		r->pkts += n;                                                                  \
		r->bytes += bytes;                                                             \
		return n;                                                                      \
	}

P3SRC_RX(p3src_rx, , rte_memcpy(d, s, f->copy))
P3SRC_RX(p3src_rx_avx2, __attribute__((target("avx2"))),
	 for (uint32_t o = 0; o < f->copy; o += 32)
		 _mm256_storeu_si256((__m256i *)(void *)(d + o), _mm256_load_si256((const __m256i *)(const void *)(s + o))))
P3SRC_RX(p3src_rx_avx512, __attribute__((target("avx512f"))),
	 for (uint32_t o = 0; o < f->copy; o += 64)
		 _mm512_storeu_si512((void *)(d + o), _mm512_load_si512((const void *)(s + o))))

static uint16_t
p3src_tx(void *q, struct rte_mbuf **bufs, uint16_t n)
{
	struct txq *t = q;
	uint64_t bytes = 0;
	for (uint16_t i = 0; i < n; i++)
		bytes += bufs[i]->pkt_len;
	rte_pktmbuf_free_bulk(bufs, n);
	t->pkts += n;
	t->bytes += bytes;
	return n;
}

/* --- ethdev operations ---------------------------------------------------------------------- */

static struct p3src *
priv(struct rte_eth_dev *dev)
{
	return dev->data->dev_private;
}

static int
p3src_configure(struct rte_eth_dev *dev __rte_unused)
{
	return 0;
}

/* Each RX queue gets its share of the frames: with RSS, those whose hash the default
 * redirection table (entry i -> queue i mod n, indexed by the hash's low 7 bits) sends to it,
 * as a NIC would; without, all of them. A queue may get none, as on a NIC. */
static int
p3src_start(struct rte_eth_dev *dev)
{
	struct p3src *s = priv(dev);
	struct rte_eth_dev_data *d = dev->data;
	const struct rte_eth_rss_conf *rc = &d->dev_conf.rx_adv_conf.rss_conf;
	int rss = d->dev_conf.rxmode.mq_mode == RTE_ETH_MQ_RX_RSS && d->nb_rx_queues > 1;
	const uint8_t *key = rc->rss_key != NULL && rc->rss_key_len >= 40 ? rc->rss_key : p3src_default_rss_key;
	for (uint32_t i = 0; i < s->nframes; i++)
		s->frames[i].hash = rss ? p3src_frame_hash(s->frames[i].data, s->frames[i].len, key, rc->rss_hf) : 0;
	for (uint16_t q = 0; q < d->nb_rx_queues; q++) {
		struct rxq *r = d->rx_queues[q];
		if (r == NULL)
			continue;
		uint32_t n = 0;
		for (uint32_t i = 0; i < s->nframes; i++)
			if (!rss || (s->frames[i].hash & 127) % d->nb_rx_queues == q)
				r->share[n++] = s->frames[i];
		r->frames = r->share;
		r->nframes = n;
		r->next = 0;
		if (s->nframes)
			LOG(INFO, "%s: RX queue %u plays %u of %u frames\n", d->name, q, n, s->nframes);
	}
	d->dev_link.link_status = RTE_ETH_LINK_UP;
	return 0;
}

static int
p3src_stop(struct rte_eth_dev *dev)
{
	dev->data->dev_link.link_status = RTE_ETH_LINK_DOWN;
	return 0;
}

static void
p3src_rxq_release(struct rte_eth_dev *dev, uint16_t q)
{
	struct rxq *r = dev->data->rx_queues[q];
	if (r != NULL) {
		rte_free(r->share);
		rte_free(r);
		dev->data->rx_queues[q] = NULL;
	}
}

static void
p3src_txq_release(struct rte_eth_dev *dev, uint16_t q)
{
	rte_free(dev->data->tx_queues[q]);
	dev->data->tx_queues[q] = NULL;
}

static int
p3src_close(struct rte_eth_dev *dev)
{
	struct p3src *s = priv(dev);
	for (uint16_t q = 0; q < dev->data->nb_rx_queues; q++)
		p3src_rxq_release(dev, q);
	for (uint16_t q = 0; q < dev->data->nb_tx_queues; q++)
		p3src_txq_release(dev, q);
	if (s != NULL) {
		rte_free(s->frames);
		rte_free(s->templates);
		s->frames = NULL;
		s->templates = NULL;
		s->nframes = 0;
	}
	return 0;
}

static int
p3src_rxq_setup(struct rte_eth_dev *dev, uint16_t q, uint16_t nb_desc __rte_unused, unsigned int socket,
		const struct rte_eth_rxconf *conf __rte_unused, struct rte_mempool *pool)
{
	struct p3src *s = priv(dev);
	uint32_t room = rte_pktmbuf_data_room_size(pool);
	for (uint32_t i = 0; i < s->nframes; i++)
		if (RTE_PKTMBUF_HEADROOM + (uint32_t)s->frames[i].copy > room) {
			LOG(ERR, "%s: frame %u (%u bytes) does not fit the pool's %u-byte buffers\n", dev->data->name,
			    i, s->frames[i].len, room);
			return -EINVAL;
		}
	p3src_rxq_release(dev, q);
	struct rxq *r = rte_zmalloc_socket("p3src_rxq", sizeof(*r), RTE_CACHE_LINE_SIZE, (int)socket);
	if (r == NULL)
		return -ENOMEM;
	if (s->nframes) {
		r->share = rte_zmalloc_socket("p3src_share", s->nframes * sizeof(struct frame), RTE_CACHE_LINE_SIZE,
					      (int)socket);
		if (r->share == NULL) {
			rte_free(r);
			return -ENOMEM;
		}
	}
	r->pool = pool;
	r->port_id = dev->data->port_id;
	dev->data->rx_queues[q] = r;
	return 0;
}

static int
p3src_txq_setup(struct rte_eth_dev *dev, uint16_t q, uint16_t nb_desc __rte_unused, unsigned int socket,
		const struct rte_eth_txconf *conf __rte_unused)
{
	p3src_txq_release(dev, q);
	struct txq *t = rte_zmalloc_socket("p3src_txq", sizeof(*t), RTE_CACHE_LINE_SIZE, (int)socket);
	if (t == NULL)
		return -ENOMEM;
	dev->data->tx_queues[q] = t;
	return 0;
}

static int
p3src_info(struct rte_eth_dev *dev __rte_unused, struct rte_eth_dev_info *info)
{
	info->max_mac_addrs = 1;
	info->max_rx_pktlen = P3SRC_MAX_FRAME;
	info->max_rx_queues = P3SRC_MAX_QUEUES;
	info->max_tx_queues = P3SRC_MAX_QUEUES;
	info->min_rx_bufsize = 0;
	info->flow_type_rss_offloads = RTE_ETH_RSS_IP | RTE_ETH_RSS_UDP | RTE_ETH_RSS_TCP;
	info->hash_key_size = 40;
	info->reta_size = 128;
	info->tx_offload_capa = RTE_ETH_TX_OFFLOAD_MBUF_FAST_FREE | RTE_ETH_TX_OFFLOAD_MULTI_SEGS;
	return 0;
}

static int
p3src_link_update(struct rte_eth_dev *dev __rte_unused, int wait __rte_unused)
{
	return 0;
}

static int
p3src_stats(struct rte_eth_dev *dev, struct rte_eth_stats *st)
{
	for (uint16_t q = 0; q < dev->data->nb_rx_queues; q++) {
		const struct rxq *r = dev->data->rx_queues[q];
		if (r == NULL)
			continue;
		st->ipackets += r->pkts;
		st->ibytes += r->bytes;
		st->rx_nombuf += r->nombuf;
		if (q < RTE_ETHDEV_QUEUE_STAT_CNTRS) {
			st->q_ipackets[q] = r->pkts;
			st->q_ibytes[q] = r->bytes;
		}
	}
	for (uint16_t q = 0; q < dev->data->nb_tx_queues; q++) {
		const struct txq *t = dev->data->tx_queues[q];
		if (t == NULL)
			continue;
		st->opackets += t->pkts;
		st->obytes += t->bytes;
		if (q < RTE_ETHDEV_QUEUE_STAT_CNTRS) {
			st->q_opackets[q] = t->pkts;
			st->q_obytes[q] = t->bytes;
		}
	}
	return 0;
}

static int
p3src_stats_reset(struct rte_eth_dev *dev)
{
	for (uint16_t q = 0; q < dev->data->nb_rx_queues; q++) {
		struct rxq *r = dev->data->rx_queues[q];
		if (r != NULL)
			r->pkts = r->bytes = r->nombuf = 0;
	}
	for (uint16_t q = 0; q < dev->data->nb_tx_queues; q++) {
		struct txq *t = dev->data->tx_queues[q];
		if (t != NULL)
			t->pkts = t->bytes = 0;
	}
	return 0;
}

static int
p3src_noop(struct rte_eth_dev *dev __rte_unused)
{
	return 0;
}

static int
p3src_mtu(struct rte_eth_dev *dev __rte_unused, uint16_t mtu __rte_unused)
{
	return 0;
}

static const struct eth_dev_ops p3src_ops = {
	.dev_configure = p3src_configure,
	.dev_start = p3src_start,
	.dev_stop = p3src_stop,
	.dev_close = p3src_close,
	.link_update = p3src_link_update,
	.promiscuous_enable = p3src_noop,
	.promiscuous_disable = p3src_noop,
	.allmulticast_enable = p3src_noop,
	.allmulticast_disable = p3src_noop,
	.mtu_set = p3src_mtu,
	.stats_get = p3src_stats,
	.stats_reset = p3src_stats_reset,
	.dev_infos_get = p3src_info,
	.rx_queue_setup = p3src_rxq_setup,
	.rx_queue_release = p3src_rxq_release,
	.tx_queue_setup = p3src_txq_setup,
	.tx_queue_release = p3src_txq_release,
};

/* --- probe and remove ----------------------------------------------------------------------- */

static int
kv_string(const char *key __rte_unused, const char *value, void *out)
{
	*(const char **)out = value;
	return 0;
}

/* The PMD reaches into ethdev's structures through driver_abi.h: check that what it reads is
 * what ethdev itself reports (the name at allocation, the port id once probed). */
static int
layout_ok(struct rte_eth_dev *dev, const char *name, int probed)
{
	uint16_t pid;
	if (rte_eth_dev_allocated(name) != dev || strcmp(dev->data->name, name) != 0)
		return 0;
	return !probed || (rte_eth_dev_get_port_by_name(name, &pid) == 0 && dev->data->port_id == pid);
}

static int
p3src_probe(struct rte_vdev_device *vdev)
{
	struct rte_device *rdev = P3SRC_VDEV_DEVICE(vdev);
	const char *name = rte_dev_name(rdev);
	const struct rte_devargs *da = rte_dev_devargs(rdev);
	const char *args = da != NULL ? da->args : "";
	static const char *const keys[] = {"pcap", "head", "mac", "sink", NULL};
	const char *pcap = NULL, *head = NULL, *mac = NULL, *sink = NULL;
	struct rte_kvargs *kv = rte_kvargs_parse(args, keys);
	if (kv == NULL) {
		LOG(ERR, "%s: bad arguments '%s' (pcap=FILE, head=BYTES, mac=XX:.., sink=1)\n", name, args);
		return -EINVAL;
	}
	rte_kvargs_process(kv, "pcap", kv_string, &pcap);
	rte_kvargs_process(kv, "head", kv_string, &head);
	rte_kvargs_process(kv, "mac", kv_string, &mac);
	rte_kvargs_process(kv, "sink", kv_string, &sink);
	if (sink != NULL && (strcmp(sink, "1") != 0 || pcap != NULL)) {
		LOG(ERR, "%s: sink=1 takes no pcap= (a sink only takes TX)\n", name);
		rte_kvargs_free(kv);
		return -EINVAL;
	}

	int rc = -ENOMEM;
	struct p3src *s = rte_zmalloc_socket(name, sizeof(*s), RTE_CACHE_LINE_SIZE, rte_socket_id());
	struct rte_ether_addr *macs = rte_zmalloc_socket(name, sizeof(*macs), 0, rte_socket_id());
	struct rte_eth_dev *dev = NULL;
	if (s == NULL || macs == NULL)
		goto fail;
	rc = -EINVAL;
	if (head != NULL) {
		char *end;
		unsigned long h = strtoul(head, &end, 10);
		if (*end != '\0' || h > P3SRC_MAX_FRAME) {
			LOG(ERR, "%s: head=%s: bytes, 0 (whole frames) .. %u\n", name, head, P3SRC_MAX_FRAME);
			goto fail;
		}
		s->head = (uint32_t)h;
	}
	if (mac != NULL) {
		if (rte_ether_unformat_addr(mac, &s->mac) != 0) {
			LOG(ERR, "%s: mac=%s is not a MAC address\n", name, mac);
			goto fail;
		}
	} else {
		/* 02:70:33:73:72:NN: locally administered, NN from the device's instance number. */
		const char *p = name + strlen(name);
		while (p > name && p[-1] >= '0' && p[-1] <= '9')
			p--;
		struct rte_ether_addr a = {{0x02, 0x70, 0x33, 0x73, 0x72, (uint8_t)atoi(p)}};
		s->mac = a;
	}
	if (pcap != NULL && (rc = p3src_load_pcap(s, pcap)) != 0)
		goto fail;
	rc = -ENOSPC;
	dev = rte_eth_dev_allocate(name);
	if (dev == NULL)
		goto fail;
	rc = -ENOTSUP;
	if (!layout_ok(dev, name, 0)) {
		rte_eth_dev_release_port(dev);
		goto bad_layout;
	}
	*macs = s->mac;
	dev->data->dev_private = s;
	dev->data->mac_addrs = macs;
	dev->data->dev_link.link_speed = RTE_ETH_SPEED_NUM_100G;
	dev->data->dev_link.link_duplex = RTE_ETH_LINK_FULL_DUPLEX;
	dev->data->dev_link.link_autoneg = RTE_ETH_LINK_FIXED;
	dev->data->dev_link.link_status = RTE_ETH_LINK_DOWN;
	dev->device = rdev;
	dev->dev_ops = &p3src_ops;
	dev->rx_pkt_burst = p3src_rx;
	const char *path = "sse";
	if (rte_vect_get_max_simd_bitwidth() >= RTE_VECT_SIMD_512 && rte_cpu_get_flag_enabled(RTE_CPUFLAG_AVX512F)) {
		dev->rx_pkt_burst = p3src_rx_avx512;
		path = "avx512";
	} else if (rte_vect_get_max_simd_bitwidth() >= RTE_VECT_SIMD_256 && rte_cpu_get_flag_enabled(RTE_CPUFLAG_AVX2)) {
		dev->rx_pkt_burst = p3src_rx_avx2;
		path = "avx2";
	}
	dev->tx_pkt_burst = p3src_tx;
	rte_eth_dev_probing_finish(dev);
	if (!layout_ok(dev, name, 1)) {
		rte_free(s->templates);
		rte_free(s->frames);
		rte_eth_dev_release_port(dev);  /* frees s and macs */
		s = NULL;
		macs = NULL;
		goto bad_layout;
	}
	if (pcap != NULL)
		LOG(INFO, "%s: %s: %u frames, %s rewritten per packet (%s copy)\n", name, pcap, s->nframes,
		    s->head ? "their first bytes" : "whole frames", path);
	else
		LOG(INFO, "%s: a sink (no pcap=): RX gives nothing, TX frees and counts\n", name);
	rte_kvargs_free(kv);
	return 0;
bad_layout:
	LOG(ERR, "%s: this DPDK's ethdev layout is not the 22.11 one net_p3src was built for; "
		 "rebuild it with the DPDK driver SDK headers installed\n", name);
fail:
	if (s != NULL) {
		rte_free(s->frames);
		rte_free(s->templates);
	}
	rte_free(s);
	rte_free(macs);
	rte_kvargs_free(kv);
	return rc;
}

static int
p3src_remove(struct rte_vdev_device *vdev)
{
	struct rte_eth_dev *dev = rte_eth_dev_allocated(rte_dev_name(P3SRC_VDEV_DEVICE(vdev)));
	if (dev == NULL)
		return 0;  /* closed by the application already */
	p3src_close(dev);
	return rte_eth_dev_release_port(dev);
}

static struct rte_vdev_driver p3src_driver = {
	.driver = {.name = "net_p3src"},
	.probe = p3src_probe,
	.remove = p3src_remove,
};

RTE_INIT(p3src_register)
{
	rte_vdev_register(&p3src_driver);
}
