// p3ctl's human output of admin results (docs/p3ctl.md): the status table, the one line of
// rekey / keyarray, the audit lines. Every field is read defensively: a member missing or of
// another type prints as "-", never a throw.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "control/p3ctl/admin_client.hpp"

namespace p3::ctl {

// 42s, 5m12s, 3h04m, 2d03h; "-" for a negative value.
std::string format_duration(std::int64_t seconds);

// "role: primary" then one row per session under a header.
std::string render_status(const Json& result);

// "rekey: done for 1 2 5" (what: the verb as typed); "...: no session" when the list is empty.
std::string render_done(std::string_view what, const Json& result);

// What a configuration change did (remote add|set|remove, reload): added, removed, changed
// (applied in place or the session set up again), and what waits for a restart.
std::string render_diff(std::string_view what, const Json& result);
// "config save: written to PATH (previous file kept as PATH.prev)".
std::string render_saved(const Json& result);

// One line per audit object: time user(uid) cmd target result.
std::string render_audit(const Json& result);

// result as one JSON line (what --json prints).
std::string render_json(const Json& result);

}  // namespace p3::ctl
