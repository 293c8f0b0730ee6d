// p3ctl metrics --listen ADDR:PORT: the metrics text over HTTP/1.x for Prometheus. One thread,
// one poll() loop, bounded in every way a network client could push: at most kMaxClients
// connections (more wait in the listen backlog), a request head of at most kMaxRequest bytes,
// kClientTimeoutMs from accept to the last byte of the answer (then at most 1 s to drain what
// the client still sends, so the answer is not lost to a reset), one request per connection
// (Connection: close). GET /metrics (a query string is ignored) answers 200 with the
// OpenMetrics text, made afresh for each request (while p3d is asked, other clients wait: at
// most the telemetry and admin timeouts); any other path 404; a method other than GET
// or HEAD 405; a head that is not HTTP 400; a head too large 431.
//
// Why our own: the server answers one path to one kind of client. Debian's libmicrohttpd is
// well kept but brings its own threads and a large surface for that; cpp-httplib runs a
// thread per connection. A small poll() loop is easy to bound and to fuzz
// (tests/control/fuzz_metrics_http.cpp).
#pragma once

#include <cstddef>
#include <functional>
#include <string>
#include <string_view>

namespace p3::ctl {

inline constexpr std::size_t kMaxRequest = 8192;
inline constexpr unsigned kMaxClients = 16;
inline constexpr int kClientTimeoutMs = 10000;

enum class HttpVerdict { incomplete, metrics, head_metrics, not_found, bad_method, bad_request, too_large };

// What the bytes read so far from one client ask for. Never throws, never reads past data.
HttpVerdict parse_http_request(std::string_view data) noexcept;

// The whole response for a verdict (not incomplete); body() is called for metrics only.
std::string http_response(HttpVerdict v, const std::function<std::string()>& body);

// "127.0.0.1:9105", "[::1]:9105", "0.0.0.0:9105" (numeric only). false with why.
bool parse_listen(std::string_view spec, std::string& host, std::string& port, std::string& error);

// Binds and serves until a signal ends the process; returns (non-zero) only when binding
// fails, with the message printed to stderr.
int serve_metrics(const std::string& listen, const std::function<std::string()>& body);

}  // namespace p3::ctl
