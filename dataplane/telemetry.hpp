// DPDK telemetry commands of p3d (dpdk-telemetry.py, or any client of the v2 socket):
//   /p3/stats            totals: every lcore counter summed, drops by reason
//   /p3/drops            drops by reason (non-zero and zero), with the control thread's
//   /p3/lcores[,N]       per worker lcore: id, queues, every counter (paged, from worker N)
//   /p3/ports            per port: role, device, DPDK's ethdev stats, our counters and the
//                        link (link_up, link_speed_mbps, link_changes)
//   /p3/sessions[,N]     sessions in use by remote id, with state and totals (paged, from
//                        the Nth session)
//   /p3/session,<rid>    one session by remote id: state, peer, lanes, groups, subnets, counters
//                        (tx/rx packets and bytes, tx_dropped, rx_auth_failed, rx_replayed,
//                        rx_old_key, rx_policy, tx_down, rx_dropped, tx_max_seq)
// Paging: DPDK cuts a reply at 16 KiB (RTE_TEL_MAX_OUTPUT_LEN) without a word, which held
// about 74 sessions. A paged command returns at most a page from its parameter N (default 0)
// and, when more follow, a "next" member with the N of the next page; a client asks again
// until there is none (control/admin/telemetry_client.hpp). Each page is consistent; a
// session added or removed between two pages may be missed or shown twice (by its key, once).
// DPDK 22.11 callbacks carry no context and cannot be unregistered, so the commands serve
// the Dataplane attached last (p3d runs one), under a mutex that detach() also takes.
// What the control thread owns (sessions: state, peer, lanes, groups, subnets; route counts;
// its own counters) is read only as the control thread published it (ControlPort::counters()
// and sessions_view(), control_port.hpp), never from the tables it writes; worker counters
// (one writer each) are summed directly. Every command reads as a reader of the dataplane's
// RCU (its own reader id, online only while the command runs), so the key slots and the
// sessions view it looks at are never freed under it.
//
// rte_pdump: registered so dpdk-dumpcap can capture on an appliance with hugepages and a
// shared configuration; a --no-huge or --no-shconf primary cannot serve a secondary.
#pragma once

struct rte_tel_data;

namespace p3::dp {

class Dataplane;

// Entries per page: a session is at most ~600 bytes of JSON (18 members, 20-digit counters,
// an IPv6 peer), a worker ~1.1 KiB (31 members); a page stays under 12 KiB of the 16 KiB.
inline constexpr unsigned kSessionsPerPage = 20;
inline constexpr unsigned kLcoresPerPage = 8;

class Telemetry {
public:
    void attach(Dataplane* dp);
    void detach();
    ~Telemetry() { detach(); }
};

// Runs one /p3 command in-process, exactly as the telemetry socket does (tests).
int telemetry_call(const char* cmd, const char* params, rte_tel_data* d);
// Test hook: called by a command after it loaded a key slot and before it reads it.
void set_telemetry_read_hook(void (*hook)(void*), void* ctx) noexcept;

bool register_pdump();
void unregister_pdump();

}  // namespace p3::dp
