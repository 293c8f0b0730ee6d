// DPDK telemetry commands of p3d (dpdk-telemetry.py, or any client of the v2 socket):
//   /p3/stats            totals: every lcore counter summed, drops by reason
//   /p3/drops            drops by reason (non-zero and zero), with the control thread's
//   /p3/lcores           per worker lcore: id, queues, every counter
//   /p3/ports            per port: role, device, DPDK's ethdev stats and our counters
//   /p3/sessions         session ids in use with remote id, state and totals
//   /p3/session,<rid>    one session by remote id: state, peer, lanes, groups, subnets, counters
//                        (tx/rx packets and bytes, tx_dropped, rx_auth_failed, rx_replayed,
//                        rx_old_key, rx_policy, tx_down, rx_dropped, tx_max_seq)
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
