// p3ctl's view of a running p3d's counters: one request over DPDK's telemetry v2 socket
// (what dpdk-telemetry.py uses; p3d registers /p3/stats, /p3/drops, /p3/lcores, /p3/ports,
// /p3/sessions and /p3/session,ID: docs/dataplane.md §Counters), and the JSON reply flattened
// into "path value" pairs for people and scripts.
//
// The reply is parsed as untrusted input (it comes through a socket any root process could
// serve): bounded depth and size, every malformed document refused with a reason, never a
// crash (tests/control/fuzz_telemetry_json.cpp).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace p3::admin {

// The socket of the p3d started with EAL --file-prefix PREFIX, DIR/dpdk/PREFIX/dpdk_telemetry.v2,
// where EAL puts it: DIR is $RUNTIME_DIRECTORY when set (systemd's RuntimeDirectory=), /var/run
// for root, else $XDG_RUNTIME_DIR or /tmp. p3ctl does not share p3d's environment, so it takes
// the first that exists of $RUNTIME_DIRECTORY, /run/p3 (p3d.service's RuntimeDirectory=p3),
// /var/run, $XDG_RUNTIME_DIR and /tmp; none: the first of $RUNTIME_DIRECTORY and /var/run.
std::string telemetry_socket(std::string_view prefix);

// Sends cmd ("/p3/stats", "/p3/session,3") and returns the JSON reply in reply. false with
// a message in error when the socket cannot be reached or the reply does not come.
bool telemetry_query(const std::string& socket_path, const std::string& cmd, std::string& reply,
                     std::string& error);

// Like telemetry_query, but follows a paged command (/p3/sessions, /p3/lcores: dataplane/
// telemetry.hpp) to its end on one connection: while a reply's object has a "next" member,
// asks again with ",NEXT", and returns one reply {"CMD": {...}} with every page's members
// (the "next" members left out). A command without pages gives its one reply unchanged. A
// reply that is not JSON, a "next" that does not move forward, or more than kMaxPages pages
// is an error, never a partial answer.
inline constexpr unsigned kMaxPages = 4096;
bool telemetry_query_all(const std::string& socket_path, const std::string& cmd, std::string& reply,
                         std::string& error);

inline constexpr unsigned kMaxJsonDepth = 16;
inline constexpr std::size_t kMaxJsonLeaves = 1u << 16;

// Flattens a JSON document (parsed by nlohmann-json's SAX reader) into (path, value) pairs,
// depth first in document order: object members join the path with '.', array elements with
// their index; strings are unquoted (escapes decoded, \u as UTF-8), floating-point numbers kept
// as written, integers, true, false and null in their JSON form. false with a reason in error
// for anything that is not one whole JSON value (invalid UTF-8 included), more than
// kMaxJsonDepth containers deep or with more than kMaxJsonLeaves leaves.
bool flatten_json(std::string_view text, std::vector<std::pair<std::string, std::string>>& out,
                  std::string& error);

}  // namespace p3::admin
