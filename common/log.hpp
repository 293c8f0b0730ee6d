// One logging facility for both planes: syslog (LOG_DAEMON) and, in the foreground, stderr;
// under journald (stderr is its stream) the stderr lines go to journald's native socket with
// the fields P3_REASON and P3_REMOTE (log.cpp).
// Every message carries a reason code (common/reasons/*.def). Not for the packet path:
// workers count and signal, the control thread logs.
//
// Secrets never reach this file: key material is held in p3::Secret, which has no
// formatting, and callers log key *ids* (P3 IDs, array indices), never bytes.
#pragma once

#include <cstdarg>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "common/reasons.hpp"

namespace p3::log {

// Values are syslog priorities.
enum class Level : int { error = 3, warning = 4, notice = 5, info = 6, debug = 7 };

struct Options {
    std::string ident = "p3d";
    bool to_stderr = true;   // foreground
    bool to_syslog = false;  // daemon facility
    Level min_level = Level::info;
};

void init(const Options& opts);

// A test (or p3ctl) may capture every formatted line instead of / besides stderr.
using Sink = void (*)(Level level, Reason reason, std::string_view line, void* ctx);
void set_sink(Sink sink, void* ctx) noexcept;

void vwrite(Level level, Reason reason, const char* fmt, va_list ap) noexcept;
void write(Level level, Reason reason, const char* fmt, ...) noexcept
    __attribute__((format(printf, 3, 4)));

// The line as it appears on stderr: "p3d: error P3-E0102: /etc/p3.conf:7: syntax error".
std::string format_line(std::string_view ident, Level level, Reason reason, std::string_view msg);

std::string_view level_name(Level level) noexcept;

// The remote a message is about: the number after the first word "remote" ("remote 7 added",
// "setup with remote 7 (192.0.2.7)"); the journal's P3_REMOTE field.
std::optional<std::uint32_t> remote_named(std::string_view msg) noexcept;

// Lines a remote peer can cause (one per bad request in a flood) go through write_peer: per
// reason at most kPeerLinesPerSecond lines in one second; the rest are counted, and one line
// of the same level and reason says how many were left out ("N similar lines suppressed"),
// written with the next line of that reason or by flush_suppressed(), whichever comes first
// after the second is over. Memory is one small slot per reason code. Callable from any
// thread (the same lock as write); lines below the level are dropped before formatting.
inline constexpr unsigned kPeerLinesPerSecond = 10;
void write_peer(Level level, Reason reason, const char* fmt, ...) noexcept __attribute__((format(printf, 3, 4)));
// Writes the summaries of seconds that are over. Cheap when nothing is pending (one atomic
// load): the control thread calls it from its poll.
void flush_suppressed() noexcept;
// Lines left out by write_peer since start (all reasons).
std::uint64_t suppressed_total() noexcept;
// Milliseconds of a monotonic clock; tests replace it (nullptr: the steady clock again).
using NowMs = std::uint64_t (*)() noexcept;
void set_time_source(NowMs now) noexcept;

}  // namespace p3::log

#define P3_LOG_ERROR(reason, ...) ::p3::log::write(::p3::log::Level::error, ::p3::Reason::reason, __VA_ARGS__)
#define P3_LOG_WARN(reason, ...) ::p3::log::write(::p3::log::Level::warning, ::p3::Reason::reason, __VA_ARGS__)
#define P3_LOG_NOTICE(reason, ...) ::p3::log::write(::p3::log::Level::notice, ::p3::Reason::reason, __VA_ARGS__)
#define P3_LOG_INFO(reason, ...) ::p3::log::write(::p3::log::Level::info, ::p3::Reason::reason, __VA_ARGS__)
#define P3_LOG_DEBUG(reason, ...) ::p3::log::write(::p3::log::Level::debug, ::p3::Reason::reason, __VA_ARGS__)
// A line a remote peer can cause: rate-limited per reason (write_peer).
#define P3_PEER_LOG(level, reason, ...) ::p3::log::write_peer(::p3::log::Level::level, (reason), __VA_ARGS__)
