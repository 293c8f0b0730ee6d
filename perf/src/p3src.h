/* SPDX-License-Identifier: BSD-3-Clause */
/* net_p3src (p3src.c): what the device and its capture reader (p3src_pcap.c) share. */
#ifndef P3SRC_H
#define P3SRC_H

#include <stdint.h>

#include <rte_ether.h>
#include <rte_log.h>

#define P3SRC_MAX_QUEUES 64
#define P3SRC_MAX_FRAMES 65536
#define P3SRC_MAX_FRAME 9216

#define LOG(level, ...) rte_log(RTE_LOG_##level, RTE_LOGTYPE_PMD, "net_p3src: " __VA_ARGS__)

struct frame {
	const uint8_t *data;  /* the template, 64-byte aligned */
	uint16_t len;         /* frame length */
	uint16_t copy;        /* bytes written into the mbuf per packet */
	uint32_t hash;        /* Toeplitz hash, for the queue it lands on */
};

struct p3src {
	struct frame *frames;  /* every frame of the capture */
	uint32_t nframes;
	uint8_t *templates;
	uint32_t head;         /* 0: whole frames */
	struct rte_ether_addr mac;
};

/* Reads a classic pcap file into 64-byte aligned templates (s->frames, s->templates). */
int p3src_load_pcap(struct p3src *s, const char *path);

/* The Toeplitz hash an RSS NIC computes for frame f; key: 40 bytes. */
uint32_t p3src_frame_hash(const uint8_t *f, uint32_t len, const uint8_t *key, uint64_t rss_hf);

extern const uint8_t p3src_default_rss_key[40];

#endif
