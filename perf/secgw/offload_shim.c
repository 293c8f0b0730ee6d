/* LD_PRELOAD shim for running an unmodified DPDK ipsec-secgw on net_pcap / net_null ports.
 *
 * ipsec-secgw configures every port with RTE_ETH_RX_OFFLOAD_CHECKSUM (port_conf in
 * ipsec-secgw.c) and exits when the port does not offer it; net_pcap and net_null offer no
 * offload. Its packet path never reads the RX checksum flags (only the security ones), so
 * the capability is only a start-up gate: this shim adds it to what rte_eth_dev_info_get
 * reports for those two drivers (ethdev's own checks call the same exported function through
 * the PLT, so they agree). Nothing on the packet path is touched. Built and preloaded by
 * perf/secgw/cmp.py; see perf/README.md.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <string.h>

#include <rte_ethdev.h>

typedef int (*info_get_fn)(uint16_t, struct rte_eth_dev_info *);

int rte_eth_dev_info_get(uint16_t port_id, struct rte_eth_dev_info *dev_info)
{
	static info_get_fn real;
	int ret;

	if (real == NULL)
		real = (info_get_fn)dlsym(RTLD_NEXT, "rte_eth_dev_info_get");
	if (real == NULL)
		return -ENOSYS;
	ret = real(port_id, dev_info);
	if (ret == 0 && dev_info->driver_name != NULL &&
	    (strcmp(dev_info->driver_name, "net_pcap") == 0 ||
	     strcmp(dev_info->driver_name, "net_null") == 0))
		dev_info->rx_offload_capa |= RTE_ETH_RX_OFFLOAD_CHECKSUM;
	return ret;
}
