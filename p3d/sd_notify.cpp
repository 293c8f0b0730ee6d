// See sd_notify.hpp.
#include "p3d/sd_notify.hpp"

#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdlib>
#include <cstring>

namespace p3::sd {

namespace {

// A positive decimal environment value, 0 when unset or not a number.
unsigned long long env_number(const char* name) noexcept {
    const char* v = std::getenv(name);
    if (v == nullptr || *v == '\0') return 0;
    char* end = nullptr;
    errno = 0;
    const unsigned long long n = std::strtoull(v, &end, 10);
    return errno == 0 && *end == '\0' ? n : 0;
}

}  // namespace

Notifier::Notifier() noexcept {
    const char* path = std::getenv("NOTIFY_SOCKET");
    if (path == nullptr) return;
    const std::size_t len = std::strlen(path);
    // A path ("/run/systemd/notify") or an abstract name ("@..."): nothing else is systemd's.
    if ((path[0] != '/' && path[0] != '@') || len < 2 || len >= sizeof addr_.sun_path) return;
    addr_.sun_family = AF_UNIX;
    std::memcpy(addr_.sun_path, path, len);
    if (path[0] == '@') addr_.sun_path[0] = '\0';
    addr_len_ = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + len);
    fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd_ < 0) return;
    const unsigned long long pid = env_number("WATCHDOG_PID");
    if (pid == 0 || pid == static_cast<unsigned long long>(::getpid()))
        watchdog_ = std::chrono::microseconds(env_number("WATCHDOG_USEC"));
}

Notifier::~Notifier() {
    if (fd_ >= 0) ::close(fd_);
}

bool Notifier::send(std::string_view msg) const noexcept {
    if (fd_ < 0) return true;
    return ::sendto(fd_, msg.data(), msg.size(), MSG_NOSIGNAL, reinterpret_cast<const sockaddr*>(&addr_),
                    addr_len_) == static_cast<ssize_t>(msg.size());
}

void Notifier::tick(Clock::time_point now) noexcept {
    if (watchdog_.count() == 0 || now < next_) return;
    // Half the interval, as sd_watchdog_enabled(3) advises: one late pass is not a restart.
    next_ = now + watchdog_ / 2;
    send("WATCHDOG=1");
}

}  // namespace p3::sd
