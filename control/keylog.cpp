// The insecure key log (see keylog.hpp): one file descriptor behind a lock, one write(2) per
// line (O_APPEND: lines from a restarted p3d follow the old ones whole), the line buffer wiped.
#include "control/keylog.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <mutex>

#include "common/log.hpp"
#include "common/secret.hpp"

namespace p3::control::keylog {

namespace {
std::mutex g_lock;
int g_fd = -1;
std::atomic<bool> g_on{false};
bool g_failed_logged = false;

// Enough for a 32-byte key and a 4-byte salt in hex and every field.
// (ESP lines add the wire, ESN and two IPv6 addresses.)
constexpr std::size_t kLineMax = 384;

std::size_t put_hex(char* out, std::span<const std::uint8_t> b) {
    static constexpr char kHex[] = "0123456789abcdef";
    std::size_t n = 0;
    for (std::uint8_t c : b) {
        out[n++] = kHex[c >> 4];
        out[n++] = kHex[c & 15];
    }
    return n;
}
}  // namespace

bool open(const std::string& path, std::string& why) {
    std::lock_guard<std::mutex> g(g_lock);
    const int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        why = path + ": " + std::strerror(errno);
        return false;
    }
    struct stat st{};
    if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || (st.st_mode & 077)) {
        char mode[8];
        std::snprintf(mode, sizeof mode, "%04o", unsigned(st.st_mode & 07777));
        why = path + (S_ISREG(st.st_mode) ? std::string(": mode ") + mode + ", readable by group or others"
                                          : std::string(": not a regular file"));
        ::close(fd);
        return false;
    }
    if (g_fd >= 0) ::close(g_fd);
    g_fd = fd;
    g_failed_logged = false;
    g_on.store(true, std::memory_order_release);
    P3_LOG_WARN(KEYLOG_ON,
                "INSECURE: --insecure-key-log %s: every data key installed is written there IN CLEAR "
                "(tests and debugging only; anyone who reads the file decrypts the traffic)",
                path.c_str());
    return true;
}

bool enabled() noexcept { return g_on.load(std::memory_order_acquire); }

namespace {
// One line: prefix (fields before the key), key, salt, suffix (fields after it), newline;
// written whole, then the buffer wiped.
void write_line(const char* prefix, std::span<const std::uint8_t> key, std::span<const std::uint8_t> salt,
                const char* suffix) noexcept {
    char line[kLineMax];
    const std::size_t pn = std::strlen(prefix), sn = std::strlen(suffix);
    if (pn + sn + 2 * (key.size() + salt.size()) + 8 > sizeof line) return;
    std::size_t len = pn;
    std::memcpy(line, prefix, pn);
    len += put_hex(line + len, key);
    std::memcpy(line + len, " salt=", 6);
    len += 6;
    len += put_hex(line + len, salt);
    std::memcpy(line + len, suffix, sn);
    len += sn;
    line[len++] = '\n';
    std::lock_guard<std::mutex> g(g_lock);
    if (g_fd >= 0) {
        ssize_t w;
        do w = ::write(g_fd, line, len);
        while (w < 0 && errno == EINTR);
        if (w != static_cast<ssize_t>(len) && !g_failed_logged) {
            g_failed_logged = true;
            P3_LOG_ERROR(KEYLOG_FAILED, "--insecure-key-log: a write failed (%s); later lines may be missing",
                         w < 0 ? std::strerror(errno) : "short write");
        }
    }
    secure_wipe(line, sizeof line);
}

// "<time> session=.. remote=.. dir=.. p3_id=0x.. lanes=.. key=" into buf.
bool prefix(char* buf, std::size_t n, std::uint32_t session, std::uint32_t remote, Dir dir, std::uint32_t p3_base,
            std::uint32_t lanes) noexcept {
    timespec ts{};
    ::clock_gettime(CLOCK_REALTIME, &ts);
    const int w = std::snprintf(buf, n,
                                "%lld.%06ld session=%" PRIu32 " remote=%" PRIu32 " dir=%s p3_id=0x%" PRIx32
                                " lanes=%" PRIu32 " key=",
                                static_cast<long long>(ts.tv_sec), ts.tv_nsec / 1000, session, remote,
                                dir == Dir::rx ? "rx" : "tx", p3_base, lanes);
    return w > 0 && std::size_t(w) < n;
}
}  // namespace

void write(std::uint32_t session, std::uint32_t remote, Dir dir, std::uint32_t p3_base, std::uint32_t lanes,
           std::span<const std::uint8_t> key, std::span<const std::uint8_t> salt) noexcept {
    if (!enabled()) return;
    if (key.size() > 32 || salt.size() > 16) return;   // not key material
    char pre[160];
    if (!prefix(pre, sizeof pre, session, remote, dir, p3_base, lanes)) return;
    write_line(pre, key, salt, "");
}

void write_esp(std::uint32_t session, std::uint32_t remote, Dir dir, std::uint32_t spi, std::span<const std::uint8_t> key,
               std::span<const std::uint8_t> salt, bool esn, const std::string& src, const std::string& dst) noexcept {
    if (!enabled()) return;
    if (key.size() > 32 || salt.size() > 16 || src.size() > 64 || dst.size() > 64) return;
    char pre[160];
    if (!prefix(pre, sizeof pre, session, remote, dir, spi, 1)) return;
    char suf[176];
    const int w = std::snprintf(suf, sizeof suf, " wire=esp esn=%d src=%s dst=%s", esn ? 1 : 0, src.c_str(), dst.c_str());
    if (w <= 0 || std::size_t(w) >= sizeof suf) return;
    write_line(pre, key, salt, suf);
}

void close() noexcept {
    std::lock_guard<std::mutex> g(g_lock);
    g_on.store(false, std::memory_order_release);
    if (g_fd >= 0) ::close(g_fd);
    g_fd = -1;
}

}  // namespace p3::control::keylog
