// p3d's messages to systemd (sd_notify(3) protocol): READY=1 once p3d forwards, STATUS=
// lines, STOPPING=1, and WATCHDOG=1 from the control thread's pass.
//
// Written against the protocol, not libsystemd: one datagram per message to the Unix socket
// named by NOTIFY_SOCKET (a path, or '@' for the abstract namespace), which is all
// sd_notify() does for a process that passes no file descriptors. It keeps p3d's
// dependencies to what the dataplane needs and works where libsystemd-dev is not installed.
// Without NOTIFY_SOCKET (a shell, a test) every call does nothing.
//
// Threads: the constructor and send() on the main thread; tick() on the control thread only
// (it alone touches next_). sendto on one datagram socket from two threads is safe.
#pragma once

#include <sys/socket.h>
#include <sys/un.h>

#include <chrono>
#include <string_view>

namespace p3::sd {

class Notifier {
public:
    using Clock = std::chrono::steady_clock;

    // Reads NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID (the watchdog is ours only when
    // WATCHDOG_PID is unset or names this process).
    Notifier() noexcept;
    ~Notifier();
    Notifier(const Notifier&) = delete;
    Notifier& operator=(const Notifier&) = delete;

    bool active() const noexcept { return fd_ >= 0; }
    // One message ("READY=1\nSTATUS=..."); false when it could not be sent (errno set).
    bool send(std::string_view msg) const noexcept;
    // systemd's watchdog interval (0: none asked).
    std::chrono::microseconds watchdog() const noexcept { return watchdog_; }
    // WATCHDOG=1 when half the interval has passed since the last one: call it every pass.
    void tick(Clock::time_point now) noexcept;

private:
    int fd_ = -1;
    sockaddr_un addr_{};
    socklen_t addr_len_ = 0;
    std::chrono::microseconds watchdog_{0};
    Clock::time_point next_{};
};

}  // namespace p3::sd
