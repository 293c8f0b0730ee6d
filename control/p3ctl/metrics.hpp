// p3ctl metrics: every counter of a running p3d as OpenMetrics text (docs/metrics.md), for
// Prometheus and for people. Sources: DPDK telemetry (/p3/stats, /p3/drops, /p3/ports and the
// paged /p3/lcores and /p3/sessions, read as `p3ctl stats` reads them) and, when p3ctl may
// reach it, the admin socket's status (rekeys, key age, receive lanes, the setup exchange and
// the control channel's counters). Names are stable and prefixed p3_; a counter family's
// samples end in _total; labels: remote, port, worker, reason.
//
// The rendering is a pure function of the replies (tests feed it fixtures); collect_metrics
// does the I/O. Values from p3d are read defensively: a member missing or not a number is
// left out, never a throw.
#pragma once

#include <string>

#include "control/p3ctl/admin_client.hpp"

namespace p3::ctl {

// The replies to render; a null Json is a source that did not answer.
struct MetricsInput {
    Json stats, drops, ports, lcores, sessions;   // the objects under "/p3/..." of each reply
    Json status;                                  // the admin status result (role, sessions, control)
    bool telemetry_up = false;
    bool admin_up = false;
};

// OpenMetrics 1.0 text: # TYPE / # HELP per family, families not interleaved, ends "# EOF\n".
std::string render_metrics(const MetricsInput& in);

// Where to read: the telemetry socket (admin::telemetry_socket) and the admin socket (empty:
// do not ask it).
struct MetricsSources {
    std::string telemetry_socket;
    std::string admin_socket;
};

// Asks p3d and fills in; false (with why) when telemetry did not answer, in which case in
// still renders p3_up 0.
bool collect_metrics(const MetricsSources& src, MetricsInput& in, std::string& error);

// The Content-Type of render_metrics' text.
inline constexpr const char* kOpenMetricsType = "application/openmetrics-text; version=1.0.0; charset=utf-8";

}  // namespace p3::ctl
