/* SPDX-License-Identifier: BSD-3-Clause */
/* net_p3src's input: the frames of a pcap file, and where an RSS NIC would put each. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <rte_ethdev.h>
#include <rte_ip.h>
#include <rte_malloc.h>
#include <rte_thash.h>

#include "p3src.h"

static uint32_t
rd32(const uint8_t *p, int swap)
{
	uint32_t v;
	memcpy(&v, p, 4);
	return swap ? __builtin_bswap32(v) : v;
}

/* Default Toeplitz key (the one most NICs ship with), used when the application sets none. */
const uint8_t p3src_default_rss_key[40] = {
	0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2, 0x41, 0x67, 0x25, 0x3d, 0x43, 0xa3, 0x8f, 0xb0,
	0xd0, 0xca, 0x2b, 0xcb, 0xae, 0x7b, 0x30, 0xb4, 0x77, 0xcb, 0x2d, 0xa3, 0x80, 0x30, 0xf2, 0x0c,
	0x6a, 0x42, 0xb7, 0x3b, 0xbe, 0xac, 0x01, 0xfa,
};

/* What an RSS NIC hashes: IPv4/IPv6 addresses, and the ports of an unfragmented TCP or UDP
 * packet when asked for; anything else hashes to 0 (queue 0). */
uint32_t
p3src_frame_hash(const uint8_t *f, uint32_t len, const uint8_t *key, uint64_t rss_hf)
{
	union rte_thash_tuple t;
	uint32_t words;
	uint8_t proto;
	const uint8_t *l4;
	int frag;
	memset(&t, 0, sizeof(t));
	if (len < 14)
		return 0;
	uint16_t et = (uint16_t)(f[12] << 8 | f[13]);
	if (et == RTE_ETHER_TYPE_IPV4 && len >= 14 + 20) {
		const struct rte_ipv4_hdr *ip = (const void *)(f + 14);
		t.v4.src_addr = rte_be_to_cpu_32(ip->src_addr);
		t.v4.dst_addr = rte_be_to_cpu_32(ip->dst_addr);
		words = RTE_THASH_V4_L3_LEN;
		proto = ip->next_proto_id;
		l4 = f + 14 + rte_ipv4_hdr_len(ip);
		frag = (rte_be_to_cpu_16(ip->fragment_offset) & (RTE_IPV4_HDR_MF_FLAG | RTE_IPV4_HDR_OFFSET_MASK)) != 0;
		if (!frag && l4 + 4 <= f + len &&
		    ((proto == IPPROTO_UDP && (rss_hf & RTE_ETH_RSS_NONFRAG_IPV4_UDP)) ||
		     (proto == IPPROTO_TCP && (rss_hf & RTE_ETH_RSS_NONFRAG_IPV4_TCP)))) {
			t.v4.sport = (uint16_t)(l4[0] << 8 | l4[1]);
			t.v4.dport = (uint16_t)(l4[2] << 8 | l4[3]);
			words = RTE_THASH_V4_L4_LEN;
		}
	} else if (et == RTE_ETHER_TYPE_IPV6 && len >= 14 + 40) {
		const struct rte_ipv6_hdr *ip = (const void *)(f + 14);
		rte_thash_load_v6_addrs(ip, &t);
		words = RTE_THASH_V6_L3_LEN;
		proto = ip->proto;
		l4 = f + 14 + 40;
		if (l4 + 4 <= f + len &&
		    ((proto == IPPROTO_UDP && (rss_hf & RTE_ETH_RSS_NONFRAG_IPV6_UDP)) ||
		     (proto == IPPROTO_TCP && (rss_hf & RTE_ETH_RSS_NONFRAG_IPV6_TCP)))) {
			t.v6.sport = (uint16_t)(l4[0] << 8 | l4[1]);
			t.v6.dport = (uint16_t)(l4[2] << 8 | l4[3]);
			words = RTE_THASH_V6_L4_LEN;
		}
	} else {
		return 0;
	}
	return rte_softrss((uint32_t *)&t, words, key);
}

/* Reads a classic pcap file (either byte order, micro- or nanosecond stamps, Ethernet link
 * type) into 64-byte aligned templates. The file is the operator's, read once at probe; every
 * length is still checked against the file and the limits above. */
int
p3src_load_pcap(struct p3src *s, const char *path)
{
	FILE *fp = fopen(path, "rb");
	if (fp == NULL) {
		LOG(ERR, "%s: %s\n", path, strerror(errno));
		return -errno;
	}
	int rc = -EINVAL;
	uint8_t gh[24], rh[16];
	uint8_t *buf = NULL;
	struct frame *frames = NULL;
	uint64_t total = 0;
	uint32_t n = 0, cap = 0;
	if (fread(gh, 1, sizeof(gh), fp) != sizeof(gh))
		goto bad;
	uint32_t magic = rd32(gh, 0);
	int swap;
	if (magic == 0xa1b2c3d4 || magic == 0xa1b23c4d)
		swap = 0;
	else if (magic == 0xd4c3b2a1 || magic == 0x4d3cb2a1)
		swap = 1;
	else
		goto bad;
	if (rd32(gh + 20, swap) != 1) {
		LOG(ERR, "%s: link type %u, not Ethernet\n", path, rd32(gh + 20, swap));
		goto out;
	}
	/* First pass: count and size. */
	while (fread(rh, 1, sizeof(rh), fp) == sizeof(rh)) {
		uint32_t incl = rd32(rh + 8, swap);
		if (incl > P3SRC_MAX_FRAME || fseek(fp, incl, SEEK_CUR) != 0)
			goto bad;
		if (incl < RTE_ETHER_HDR_LEN)
			continue;
		if (++cap > P3SRC_MAX_FRAMES) {
			LOG(ERR, "%s: more than %u frames\n", path, P3SRC_MAX_FRAMES);
			goto out;
		}
		total += RTE_ALIGN_CEIL(incl, RTE_CACHE_LINE_SIZE);
	}
	if (cap == 0) {
		LOG(ERR, "%s: no frame\n", path);
		goto out;
	}
	buf = rte_zmalloc("p3src_templates", total, RTE_CACHE_LINE_SIZE);
	frames = rte_zmalloc("p3src_frames", cap * sizeof(*frames), RTE_CACHE_LINE_SIZE);
	if (buf == NULL || frames == NULL) {
		rc = -ENOMEM;
		goto out;
	}
	if (fseek(fp, sizeof(gh), SEEK_SET) != 0)
		goto bad;
	uint64_t off = 0;
	while (n < cap && fread(rh, 1, sizeof(rh), fp) == sizeof(rh)) {
		uint32_t incl = rd32(rh + 8, swap);
		if (incl > P3SRC_MAX_FRAME || off + incl > total)
			goto bad;
		if (incl < RTE_ETHER_HDR_LEN) {
			if (fseek(fp, incl, SEEK_CUR) != 0)
				goto bad;
			continue;
		}
		if (fread(buf + off, 1, incl, fp) != incl)
			goto bad;
		frames[n].data = buf + off;
		frames[n].len = (uint16_t)incl;
		frames[n].copy = (uint16_t)RTE_ALIGN_CEIL(s->head && s->head < incl ? s->head : incl, 64);
		n++;
		off += RTE_ALIGN_CEIL(incl, RTE_CACHE_LINE_SIZE);
	}
	if (n != cap)
		goto bad;
	s->templates = buf;
	s->frames = frames;
	s->nframes = n;
	fclose(fp);
	return 0;
bad:
	LOG(ERR, "%s: not a readable pcap file\n", path);
out:
	rte_free(buf);
	rte_free(frames);
	fclose(fp);
	return rc;
}
