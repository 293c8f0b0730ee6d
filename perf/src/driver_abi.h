/* The part of DPDK's driver interface (ethdev_driver.h, bus_vdev_driver.h) that net_p3src uses.
 *
 * A distribution's DPDK 22.11 (Debian's among them) installs only the application headers; the
 * driver SDK headers come with `-Denable_driver_sdk=true`. Where they are installed they are
 * used as they are. Otherwise this file declares the leading members of the structures the
 * PMD touches, in DPDK 22.11's order (an LTS keeps this ABI through its point releases), and
 * nothing after them: the PMD only ever receives these structures from DPDK, never sizes or
 * copies them. p3src.c checks at probe that the layout matches the running library (the port's
 * name and id read through these members must be the ones ethdev reports) and refuses the
 * device otherwise, so a mismatch is an error message, never a silent corruption.
 */
#ifndef P3SRC_DRIVER_ABI_H
#define P3SRC_DRIVER_ABI_H

#if defined(__has_include) && __has_include(<ethdev_driver.h>) && __has_include(<bus_vdev_driver.h>)
#include <ethdev_driver.h>
#include <bus_vdev_driver.h>
#define P3SRC_VDEV_DEVICE(v) (&(v)->device)
#else
#include <stdint.h>
#include <sys/queue.h>
#include <rte_common.h>
#include <rte_dev.h>
#include <rte_ethdev.h>

struct rte_eth_dev;

/* struct rte_driver (dev_driver.h) */
struct rte_driver {
	TAILQ_ENTRY(rte_driver) next;
	const char *name;
	const char *alias;
};

/* struct rte_vdev_device / rte_vdev_driver (bus_vdev_driver.h) */
/* struct rte_device is opaque to applications in 22.11: only its address is used, through
 * rte_dev_name() and rte_dev_devargs(). */
struct rte_vdev_device {
	TAILQ_ENTRY(rte_vdev_device) next;
	uint64_t device[];
};
#define P3SRC_VDEV_DEVICE(v) ((struct rte_device *)(void *)(v)->device)
typedef int (rte_vdev_probe_t)(struct rte_vdev_device *dev);
typedef int (rte_vdev_remove_t)(struct rte_vdev_device *dev);
struct rte_vdev_driver {
	TAILQ_ENTRY(rte_vdev_driver) next;
	struct rte_driver driver;
	rte_vdev_probe_t *probe;
	rte_vdev_remove_t *remove;
	void *dma_map;
	void *dma_unmap;
	uint32_t drv_flags;
};
void rte_vdev_register(struct rte_vdev_driver *driver);

/* struct rte_eth_dev_data (ethdev_driver.h), up to port_id */
struct rte_eth_dev_data {
	char name[RTE_ETH_NAME_MAX_LEN];
	void **rx_queues;
	void **tx_queues;
	uint16_t nb_rx_queues;
	uint16_t nb_tx_queues;
	struct rte_eth_dev_sriov sriov;
	void *dev_private;
	struct rte_eth_link dev_link;
	struct rte_eth_conf dev_conf;
	uint16_t mtu;
	uint32_t min_rx_buf_size;
	uint64_t rx_mbuf_alloc_failed;
	struct rte_ether_addr *mac_addrs;
	uint64_t mac_pool_sel[RTE_ETH_NUM_RECEIVE_MAC_ADDR];
	struct rte_ether_addr *hash_mac_addrs;
	uint16_t port_id;
};

typedef int (*p3src_dev_fn)(struct rte_eth_dev *dev);
/* struct eth_dev_ops (ethdev_driver.h), up to tx_queue_release; the rest stays NULL. */
struct eth_dev_ops {
	p3src_dev_fn dev_configure, dev_start, dev_stop, dev_set_link_up, dev_set_link_down, dev_close,
		dev_reset;
	int (*link_update)(struct rte_eth_dev *dev, int wait_to_complete);
	void *is_removed;
	p3src_dev_fn promiscuous_enable, promiscuous_disable, allmulticast_enable, allmulticast_disable;
	void *mac_addr_remove, *mac_addr_add, *mac_addr_set, *set_mc_addr_list;
	int (*mtu_set)(struct rte_eth_dev *dev, uint16_t mtu);
	int (*stats_get)(struct rte_eth_dev *dev, struct rte_eth_stats *stats);
	p3src_dev_fn stats_reset;
	void *xstats_get, *xstats_reset, *xstats_get_names, *queue_stats_mapping_set;
	int (*dev_infos_get)(struct rte_eth_dev *dev, struct rte_eth_dev_info *info);
	void *rxq_info_get, *txq_info_get, *rx_burst_mode_get, *tx_burst_mode_get, *fw_version_get;
	void *dev_supported_ptypes_get, *dev_ptypes_set;
	void *vlan_filter_set, *vlan_tpid_set, *vlan_strip_queue_set, *vlan_offload_set, *vlan_pvid_set;
	void *rx_queue_start, *rx_queue_stop, *tx_queue_start, *tx_queue_stop;
	int (*rx_queue_setup)(struct rte_eth_dev *dev, uint16_t q, uint16_t nb_desc, unsigned int socket,
			      const struct rte_eth_rxconf *conf, struct rte_mempool *pool);
	void (*rx_queue_release)(struct rte_eth_dev *dev, uint16_t q);
	void *rx_queue_intr_enable, *rx_queue_intr_disable;
	int (*tx_queue_setup)(struct rte_eth_dev *dev, uint16_t q, uint16_t nb_desc, unsigned int socket,
			      const struct rte_eth_txconf *conf);
	void (*tx_queue_release)(struct rte_eth_dev *dev, uint16_t q);
	void *rest[128];  /* the ops after tx_queue_release (fewer than 128 in 22.11): none */
};

/* struct rte_eth_dev (ethdev_driver.h), up to device */
struct rte_eth_dev {
	eth_rx_burst_t rx_pkt_burst;
	eth_tx_burst_t tx_pkt_burst;
	void *tx_pkt_prepare;
	void *rx_queue_count;
	void *rx_descriptor_status;
	void *tx_descriptor_status;
	struct rte_eth_dev_data *data;
	void *process_private;
	const struct eth_dev_ops *dev_ops;
	struct rte_device *device;
};

struct rte_eth_dev *rte_eth_dev_allocate(const char *name);
struct rte_eth_dev *rte_eth_dev_allocated(const char *name);
int rte_eth_dev_release_port(struct rte_eth_dev *dev);
void rte_eth_dev_probing_finish(struct rte_eth_dev *dev);
#endif

#endif
