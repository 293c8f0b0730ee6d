// p3d/privileges.hpp: the privilege drop once p3d has started (docs/operations.md
// "Privileges").
//
// Everything that needs root happens before it: EAL initialisation (hugepages, VFIO, device
// files), port start (af_packet and tap sockets, promiscuous mode, MTU), the admin socket's
// bind and chown, the audit file's open. What p3d does afterwards needs at most:
//
//   CAP_IPC_LOCK   key memory is locked in RAM as sessions and rekeys need more of it
//                  (common/secret.cpp), and DPDK memory added at run time is locked and, with
//                  VFIO, DMA-mapped: both count against RLIMIT_MEMLOCK without it.
//   CAP_CHOWN      `p3ctl config save` gives the new file the owner and group of the file it
//                  replaces (common/config_live.cpp).
//   CAP_SYS_ADMIN  only when DPDK runs with IOVA as physical addresses on hugepages (uio, or
//                  no IOMMU): memory it adds at run time needs /proc/self/pagemap's physical
//                  frame numbers, which Linux gives only to CAP_SYS_ADMIN. VFIO with an IOMMU
//                  (IOVA as virtual addresses) and --no-huge need nothing of it.
//
// p3d stays uid 0 (as strongSwan's charon and VPP do): its configuration, key files, audit
// file, admin socket directory and DPDK's runtime files are root's, and it reads, writes and
// removes them as their owner, with no CAP_DAC_OVERRIDE. Capabilities, the bounding set and
// no_new_privs are per thread in Linux: DPDK's threads (lcores, interrupts, multi-process,
// telemetry) exist already, so each is made to apply the same set (a signal it handles with
// plain system calls), as glibc does for setuid().
#pragma once

namespace p3::priv {

// Drop to the set above in every thread, empty the bounding set, clear the ambient set and set
// no_new_privs. Logs P3-I0016 (or P3-W0018 without capabilities, P3-W0019 per capability
// missing at start). false: logged P3-E0017; p3d must stop.
bool drop_after_start();

}  // namespace p3::priv
