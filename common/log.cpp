// Logging: format once, send to the sinks that are switched on. A mutex keeps lines whole
// when the main, control and admin threads log at once (never taken on the packet path).
// Lines a peer can cause are rate-limited per reason (write_peer): one slot per reason code.
#include "common/log.hpp"

#include <syslog.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <mutex>

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

void init(const Options& opts) {
    auto& s = state();
    std::lock_guard lock(s.mu);
    if (s.syslog_open) {
        closelog();
        s.syslog_open = false;
    }
    s.opts = opts;
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

// Sends one formatted message to the sinks; s.mu held.
void emit_locked(State& s, Level level, Reason reason, const char* msg) {
    if (s.syslog_open) syslog(static_cast<int>(level), "%s %s: %s", level_name(level).data(), reason_code(reason).data(), msg);
    if (s.opts.to_stderr || s.sink) {
        std::string line = format_line(s.opts.ident, level, reason, msg);
        if (s.sink) s.sink(level, reason, line, s.sink_ctx);
        if (s.opts.to_stderr) {
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
