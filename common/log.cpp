// Logging: format once, send to the sinks that are switched on. A mutex keeps lines whole
// when the main, control and admin threads log at once (never taken on the packet path).
// Lines a peer can cause are rate-limited per reason (write_peer): one slot per reason code.
//
// Under journald: when stderr is the journal's stream (systemd sets JOURNAL_STREAM to its
// device:inode), the lines meant for stderr go to journald's native socket instead, one
// datagram each with MESSAGE, PRIORITY, SYSLOG_IDENTIFIER, SYSLOG_FACILITY, P3_REASON and,
// when the message names a remote ("remote 7"), P3_REMOTE: `journalctl P3_REASON=P3-W0214`.
// The native protocol (systemd's "Native Journal Protocol": KEY=VALUE lines, the binary form
// for a value with a newline) is a sendto() on a datagram socket; p3d already speaks
// sd_notify's the same way (p3d/sd_notify.cpp), so libsystemd is not linked for it. If a send
// fails, stderr takes over for good (P3-W0014 says so once). P3_JOURNAL_SOCKET names another
// socket (tests). Syslog and a stderr that is not the journal's are unchanged.
#include "common/log.hpp"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <syslog.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>

#include <array>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cerrno>
#include <mutex>
#include <optional>

namespace p3::log {

namespace {

constexpr std::size_t kReasons = 0
#define P3_REASON(ident, code, meaning, action) +1
#include "common/reasons/all.def"
#undef P3_REASON
    ;
constexpr std::uint64_t kWindowMs = 1000;

// One reason's second: lines written in it, lines left out (and at which level).
struct Budget {
    std::uint64_t window_start = 0;
    std::uint32_t written = 0;
    std::uint32_t suppressed = 0;
    Level level = Level::info;
};

std::uint64_t steady_ms() noexcept {
    return std::uint64_t(std::chrono::duration_cast<std::chrono::milliseconds>(
                             std::chrono::steady_clock::now().time_since_epoch())
                             .count());
}

struct State {
    std::mutex mu;
    Options opts;
    bool syslog_open = false;
    int journal_fd = -1;          // stderr lines go to journald's native socket instead
    sockaddr_un journal_addr{};
    Sink sink = nullptr;
    void* sink_ctx = nullptr;
    std::atomic<int> min_level{static_cast<int>(Level::info)};  // read before formatting
    std::array<Budget, kReasons> budget{};
    std::atomic<bool> pending{false};        // some budget holds suppressed lines
    std::atomic<std::uint64_t> suppressed_total{0};
    std::atomic<NowMs> now{&steady_ms};
};

State& state() {
    static State s;
    return s;
}
}  // namespace

std::string_view level_name(Level level) noexcept {
    switch (level) {
        case Level::error: return "error";
        case Level::warning: return "warning";
        case Level::notice: return "notice";
        case Level::info: return "info";
        case Level::debug: return "debug";
    }
    return "?";
}

namespace {

// stderr is journald's stream: JOURNAL_STREAM is "DEV:INODE" of stderr (systemd.exec(5)).
bool stderr_is_journal() {
    const char* js = std::getenv("JOURNAL_STREAM");
    struct stat st {};
    if (js == nullptr || ::fstat(STDERR_FILENO, &st) != 0) return false;
    unsigned long long dev = 0, ino = 0;
    char tail = 0;
    if (std::sscanf(js, "%llu:%llu%c", &dev, &ino, &tail) != 2) return false;
    return dev == static_cast<unsigned long long>(st.st_dev) && ino == static_cast<unsigned long long>(st.st_ino);
}

// The journal socket when stderr lines should go there; s.mu held.
void open_journal_locked(State& s) {
    if (s.journal_fd >= 0) ::close(s.journal_fd);
    s.journal_fd = -1;
    if (!s.opts.to_stderr || !stderr_is_journal()) return;
    const char* path = std::getenv("P3_JOURNAL_SOCKET");
    if (path == nullptr || *path == '\0') path = "/run/systemd/journal/socket";
    if (std::strlen(path) >= sizeof s.journal_addr.sun_path) return;
    s.journal_addr = sockaddr_un{};
    s.journal_addr.sun_family = AF_UNIX;
    std::strcpy(s.journal_addr.sun_path, path);
    s.journal_fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
}

}  // namespace

void init(const Options& opts) {
    auto& s = state();
    std::lock_guard lock(s.mu);
    if (s.syslog_open) {
        closelog();
        s.syslog_open = false;
    }
    s.opts = opts;
    open_journal_locked(s);
    s.min_level.store(static_cast<int>(opts.min_level), std::memory_order_relaxed);
    s.budget.fill(Budget{});  // a new configuration starts with full budgets
    s.pending.store(false, std::memory_order_relaxed);
    if (opts.to_syslog) {
        // openlog keeps the pointer: the ident string lives in s.opts for the process.
        openlog(s.opts.ident.c_str(), LOG_PID | LOG_NDELAY, LOG_DAEMON);
        s.syslog_open = true;
    }
}

void set_sink(Sink sink, void* ctx) noexcept {
    auto& s = state();
    std::lock_guard lock(s.mu);
    s.sink = sink;
    s.sink_ctx = ctx;
    s.budget.fill(Budget{});
    s.pending.store(false, std::memory_order_relaxed);
}

void set_time_source(NowMs now) noexcept {
    auto& s = state();
    std::lock_guard lock(s.mu);
    s.now.store(now ? now : &steady_ms);
    s.budget.fill(Budget{});
    s.pending.store(false, std::memory_order_relaxed);
}

std::optional<std::uint32_t> remote_named(std::string_view msg) noexcept {
    constexpr std::string_view kWord = "remote ";
    const auto alnum = [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; };
    for (std::size_t at = msg.find(kWord); at != std::string_view::npos; at = msg.find(kWord, at + 1)) {
        if (at > 0 && alnum(msg[at - 1])) continue;
        std::size_t i = at + kWord.size();
        std::uint64_t v = 0;
        std::size_t digits = 0;
        while (i < msg.size() && msg[i] >= '0' && msg[i] <= '9' && digits < 11) v = v * 10 + std::uint64_t(msg[i++] - '0'), ++digits;
        if (digits == 0 || digits > 10 || v > 0xffffffffull || (i < msg.size() && alnum(msg[i]))) continue;
        return static_cast<std::uint32_t>(v);
    }
    return std::nullopt;
}

std::string format_line(std::string_view ident, Level level, Reason reason, std::string_view msg) {
    std::string line;
    line.reserve(ident.size() + msg.size() + 32);
    line += ident;
    line += ": ";
    line += level_name(level);
    line += ' ';
    line += reason_code(reason);
    line += ": ";
    line += msg;
    return line;
}

namespace {

bool enabled(const State& s, Level level) noexcept {
    return static_cast<int>(level) <= s.min_level.load(std::memory_order_relaxed);
}

// One field of a native journal datagram: KEY=VALUE, or the binary form for a value with
// a newline (KEY, newline, its length as 64-bit little endian, the bytes, newline).
void journal_field(std::string& d, std::string_view key, std::string_view value) {
    d += key;
    if (value.find('\n') == std::string_view::npos) {
        d += '=';
        d += value;
    } else {
        d += '\n';
        std::uint64_t n = value.size();
        for (int i = 0; i < 8; ++i, n >>= 8) d += static_cast<char>(n & 0xff);
        d += value;
    }
    d += '\n';
}

// Sends the line to journald; false when the socket refused it. s.mu held.
bool journal_send_locked(State& s, Level level, Reason reason, const char* msg) {
    std::string d;
    d.reserve(std::strlen(msg) + 160);
    std::string text(level_name(level));
    text.append(" ").append(reason_code(reason)).append(": ").append(msg);   // as in syslog
    journal_field(d, "MESSAGE", text);
    journal_field(d, "PRIORITY", std::to_string(static_cast<int>(level)));
    journal_field(d, "SYSLOG_FACILITY", "3");   // daemon, as the syslog lines
    journal_field(d, "SYSLOG_IDENTIFIER", s.opts.ident);
    journal_field(d, "P3_REASON", reason_code(reason));
    if (const auto r = remote_named(msg)) journal_field(d, "P3_REMOTE", std::to_string(*r));
    return ::sendto(s.journal_fd, d.data(), d.size(), MSG_NOSIGNAL, reinterpret_cast<const sockaddr*>(&s.journal_addr),
                    sizeof s.journal_addr) == static_cast<ssize_t>(d.size());
}

// Sends one formatted message to the sinks; s.mu held.
void emit_locked(State& s, Level level, Reason reason, const char* msg) {
    if (s.syslog_open) syslog(static_cast<int>(level), "%s %s: %s", level_name(level).data(), reason_code(reason).data(), msg);
    bool to_stderr = s.opts.to_stderr;
    if (to_stderr && s.journal_fd >= 0) {
        if (journal_send_locked(s, level, reason, msg)) {
            to_stderr = false;
        } else {
            const int err = errno;
            ::close(s.journal_fd);
            s.journal_fd = -1;
            std::string why = format_line(s.opts.ident, Level::warning, Reason::JOURNAL_FAILED,
                                          std::string("journald's socket ") + s.journal_addr.sun_path + ": " +
                                              std::strerror(err) + "; logging to stderr from now on\n");
            std::fwrite(why.data(), 1, why.size(), stderr);
        }
    }
    if (to_stderr || s.sink) {
        std::string line = format_line(s.opts.ident, level, reason, msg);
        if (s.sink) s.sink(level, reason, line, s.sink_ctx);
        if (to_stderr) {
            line += '\n';
            std::fwrite(line.data(), 1, line.size(), stderr);
        }
    }
}

// The summary of a finished second with suppressed lines; s.mu held.
void summarise_locked(State& s, std::size_t i, Budget& b) {
    if (b.suppressed == 0) return;
    char msg[128];
    std::snprintf(msg, sizeof msg, "%u similar line(s) suppressed (at most %u a second are written)", b.suppressed,
                  kPeerLinesPerSecond);
    b.suppressed = 0;
    emit_locked(s, b.level, static_cast<Reason>(i), msg);
}

}  // namespace

void vwrite(Level level, Reason reason, const char* fmt, va_list ap) noexcept {
    auto& s = state();
    if (!enabled(s, level)) return;
    char msg[1024];
    std::vsnprintf(msg, sizeof msg, fmt, ap);
    try {
        std::lock_guard lock(s.mu);
        emit_locked(s, level, reason, msg);
    } catch (...) {
        // Out of memory while logging: nothing sensible is left to do with the line.
    }
}

void write_peer(Level level, Reason reason, const char* fmt, ...) noexcept {
    auto& s = state();
    if (!enabled(s, level)) return;
    const auto i = static_cast<std::size_t>(reason);
    if (i >= kReasons) return;
    try {
        std::lock_guard lock(s.mu);
        Budget& b = s.budget[i];
        const std::uint64_t now = s.now.load()();
        if (now - b.window_start >= kWindowMs) {
            summarise_locked(s, i, b);
            b.window_start = now;
            b.written = 0;
        }
        if (b.written >= kPeerLinesPerSecond) {
            ++b.suppressed;
            b.level = level;
            s.suppressed_total.fetch_add(1, std::memory_order_relaxed);
            s.pending.store(true, std::memory_order_relaxed);
            return;
        }
        ++b.written;
        char msg[1024];
        va_list ap;
        va_start(ap, fmt);
        std::vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
        emit_locked(s, level, reason, msg);
    } catch (...) {
    }
}

void flush_suppressed() noexcept {
    auto& s = state();
    if (!s.pending.load(std::memory_order_relaxed)) return;
    try {
        std::lock_guard lock(s.mu);
        const std::uint64_t now = s.now.load()();
        bool left = false;
        for (std::size_t i = 0; i < kReasons; ++i) {
            Budget& b = s.budget[i];
            if (b.suppressed == 0) continue;
            if (now - b.window_start < kWindowMs) {
                left = true;
                continue;
            }
            summarise_locked(s, i, b);
        }
        s.pending.store(left, std::memory_order_relaxed);
    } catch (...) {
    }
}

std::uint64_t suppressed_total() noexcept { return state().suppressed_total.load(std::memory_order_relaxed); }

void write(Level level, Reason reason, const char* fmt, ...) noexcept {
    va_list ap;
    va_start(ap, fmt);
    vwrite(level, reason, fmt, ap);
    va_end(ap);
}

}  // namespace p3::log
