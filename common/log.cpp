// Logging: format once, send to the sinks that are switched on. A mutex keeps lines whole
// when the main, control and admin threads log at once (never taken on the packet path).
#include "common/log.hpp"

#include <syslog.h>

#include <cstdio>
#include <mutex>

namespace p3::log {

namespace {
struct State {
    std::mutex mu;
    Options opts;
    bool syslog_open = false;
    Sink sink = nullptr;
    void* sink_ctx = nullptr;
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

void vwrite(Level level, Reason reason, const char* fmt, va_list ap) noexcept {
    auto& s = state();
    char msg[1024];
    std::vsnprintf(msg, sizeof msg, fmt, ap);
    try {
        std::lock_guard lock(s.mu);
        if (static_cast<int>(level) > static_cast<int>(s.opts.min_level)) return;
        if (s.syslog_open) {
            syslog(static_cast<int>(level), "%s %s: %s", level_name(level).data(),
                   reason_code(reason).data(), msg);
        }
        if (s.opts.to_stderr || s.sink) {
            std::string line = format_line(s.opts.ident, level, reason, msg);
            if (s.sink) s.sink(level, reason, line, s.sink_ctx);
            if (s.opts.to_stderr) {
                line += '\n';
                std::fwrite(line.data(), 1, line.size(), stderr);
            }
        }
    } catch (...) {
        // Out of memory while logging: nothing sensible is left to do with the line.
    }
}

void write(Level level, Reason reason, const char* fmt, ...) noexcept {
    va_list ap;
    va_start(ap, fmt);
    vwrite(level, reason, fmt, ap);
    va_end(ap);
}

}  // namespace p3::log
