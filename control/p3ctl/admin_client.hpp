// p3ctl's client of p3d's admin socket (docs/p3ctl.md, DESIGN.md §Administration): where the
// socket is, one request line out, one response line back (bounded in size and time), and the
// response turned into p3ctl's exit status and message. Also the parsing of what a user types
// for a request (remote ids, audit --since times), so bad input is refused before p3d sees it.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace p3::ctl {

using Json = nlohmann::ordered_json;   // keeps p3d's member order for --json

// p3ctl's exit statuses (docs/p3ctl.md §Exit status).
enum Exit : int { kOk = 0, kUnreachable = 1, kBadInput = 2, kDenied = 3, kUnknownId = 4, kFailed = 5 };

// A response line may be longer than a request's 64 KiB (audit: up to 1000 lines; status of
// many sessions); p3ctl still bounds what it reads.
inline constexpr std::size_t kMaxResponse = 16u << 20;
inline constexpr int kReplyWaitMs = 5000;

// -s PATH wins; else --prefix NAME -> /run/p3/NAME.sock; else /run/p3/p3d.sock.
std::string admin_socket(std::string_view path, std::string_view prefix);

// The exit status for a response's error kind ("denied" -> 3, "unknown_id" -> 4,
// "bad_request" -> 2, anything else -> 5).
int exit_for_kind(std::string_view kind);

struct Outcome {
    int exit = kOk;
    Json result;            // the response's result object when exit == kOk
    std::string message;    // what went wrong otherwise (to print after "p3ctl: CMD: ")
};

// Sends request (one JSON line) to the socket and reads one response line, waiting at most
// timeout_ms in all. Never throws.
Outcome admin_call(const std::string& socket_path, const Json& request, int timeout_ms = kReplyWaitMs);

// Interprets one response line (without its newline): the result or the error. Never throws;
// a line that is not a protocol response gives kUnreachable with a message.
Outcome parse_response(std::string_view line);

// A remote id as typed: decimal digits only, 1..9 of them.
std::optional<std::uint32_t> parse_id(std::string_view s);

// audit --since: unix seconds, or RFC3339 (2026-12-07T01:00:00Z, fraction and +hh:mm offset
// allowed). nullopt when it is neither.
std::optional<std::int64_t> parse_since(std::string_view s);

}  // namespace p3::ctl
