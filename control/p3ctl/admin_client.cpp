// See admin_client.hpp.
#include "control/p3ctl/admin_client.hpp"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <ctime>

namespace p3::ctl {

std::string admin_socket(std::string_view path, std::string_view prefix) {
    if (!path.empty()) return std::string(path);
    if (!prefix.empty()) return "/run/p3/" + std::string(prefix) + ".sock";
    return "/run/p3/p3d.sock";
}

int exit_for_kind(std::string_view kind) {
    if (kind == "denied") return kDenied;
    if (kind == "unknown_id") return kUnknownId;
    if (kind == "bad_request") return kBadInput;
    return kFailed;
}

namespace {

Outcome fail(int exit, std::string message) {
    Outcome o;
    o.exit = exit;
    o.message = std::move(message);
    return o;
}

int remaining_ms(std::chrono::steady_clock::time_point deadline) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    return left.count() > 0 ? static_cast<int>(left.count()) : 0;
}

// Connects; an error message naming the socket (and the exit status) when it cannot.
int connect_to(const std::string& path, std::string& error, int& exit) {
    sockaddr_un sun{};
    if (path.size() >= sizeof sun.sun_path) {
        error = path + ": path too long";
        exit = kBadInput;
        return -1;
    }
    sun.sun_family = AF_UNIX;
    std::memcpy(sun.sun_path, path.c_str(), path.size() + 1);
    const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        error = std::string("socket: ") + std::strerror(errno);
        exit = kUnreachable;
        return -1;
    }
    if (::connect(fd, reinterpret_cast<const sockaddr*>(&sun), sizeof sun) == 0) return fd;
    const int e = errno;
    ::close(fd);
    if (e == EACCES || e == EPERM) {
        error = "not allowed to use " + path + " (" + std::strerror(e) +
                "): run as root or as a member of p3d's admin or viewer group";
        exit = kDenied;
    } else {
        error = "p3d is not reachable at " + path + " (" + std::strerror(e) +
                "); is p3d running? (-s PATH or --prefix NAME for another socket)";
        exit = kUnreachable;
    }
    return -1;
}

bool send_all(int fd, const std::string& s, std::string& error) {
    std::size_t off = 0;
    while (off < s.size()) {
        const ssize_t n = ::send(fd, s.data() + off, s.size() - off, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            error = std::string("send: ") + std::strerror(errno);
            return false;
        }
        off += static_cast<std::size_t>(n);
    }
    return true;
}

// Reads up to the first '\n' (not kept), at most kMaxResponse bytes, before the deadline.
bool read_line(int fd, std::chrono::steady_clock::time_point deadline, std::string& line, std::string& error) {
    char buf[16384];
    for (;;) {
        pollfd p{fd, POLLIN, 0};
        const int r = ::poll(&p, 1, remaining_ms(deadline));
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            error = r == 0 ? "no answer within the time allowed" : std::string("poll: ") + std::strerror(errno);
            return false;
        }
        const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            error = std::string("recv: ") + std::strerror(errno);
            return false;
        }
        if (n == 0) {
            error = line.empty() ? "p3d closed the connection without an answer" : "p3d's answer ends without a newline";
            return false;
        }
        const char* nl = static_cast<const char*>(std::memchr(buf, '\n', static_cast<std::size_t>(n)));
        line.append(buf, nl ? static_cast<std::size_t>(nl - buf) : static_cast<std::size_t>(n));
        if (line.size() > kMaxResponse) {
            error = "p3d's answer is longer than 16 MiB";
            return false;
        }
        if (nl) return true;
    }
}

}  // namespace

Outcome parse_response(std::string_view line) {
    Json j = Json::parse(line.begin(), line.end(), nullptr, false);
    if (j.is_discarded() || !j.is_object()) return fail(kUnreachable, "p3d's answer is not a JSON object");
    const auto ok = j.find("ok");
    if (ok == j.end() || !ok->is_boolean()) return fail(kUnreachable, "p3d's answer has no \"ok\"");
    if (ok->get<bool>()) {
        const auto r = j.find("result");
        if (r == j.end() || !r->is_object()) return fail(kUnreachable, "p3d's answer has no result object");
        Outcome o;
        o.result = std::move(*r);
        return o;
    }
    const auto e = j.find("error");
    std::string kind = "failed", message;
    if (e != j.end() && e->is_object()) {
        if (auto k = e->find("kind"); k != e->end() && k->is_string()) kind = k->get<std::string>();
        if (auto m = e->find("message"); m != e->end() && m->is_string()) message = m->get<std::string>();
    }
    const int exit = exit_for_kind(kind);
    std::string what = exit == kDenied       ? "not allowed"
                       : exit == kUnknownId  ? "unknown remote id or group"
                       : exit == kBadInput   ? "p3d refused the request"
                       : kind == "unsupported" ? "not supported by this p3d"
                                             : "failed";
    if (!message.empty()) what += ": " + message;
    return fail(exit, what);
}

Outcome admin_call(const std::string& socket_path, const Json& request, int timeout_ms) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    std::string error;
    int exit = kUnreachable;
    const int fd = connect_to(socket_path, error, exit);
    if (fd < 0) return fail(exit, error);
    std::string line;
    Outcome o;
    if (!send_all(fd, request.dump() + "\n", error) || !read_line(fd, deadline, line, error))
        o = fail(kUnreachable, "p3d at " + socket_path + ": " + error);
    else
        o = parse_response(line);
    ::close(fd);
    return o;
}

std::optional<std::uint32_t> parse_id(std::string_view s) {
    if (s.empty() || s.size() > 9) return std::nullopt;
    std::uint32_t v = 0;
    for (char c : s) {
        if (c < '0' || c > '9') return std::nullopt;
        v = v * 10 + static_cast<std::uint32_t>(c - '0');
    }
    return v;
}

namespace {

// n digits at s[pos], advancing pos; -1 when they are not there.
int digits(std::string_view s, std::size_t& pos, std::size_t n) {
    if (s.size() - pos < n) return -1;
    int v = 0;
    for (std::size_t i = 0; i < n; ++i) {
        const char c = s[pos + i];
        if (c < '0' || c > '9') return -1;
        v = v * 10 + (c - '0');
    }
    pos += n;
    return v;
}

bool expect(std::string_view s, std::size_t& pos, std::string_view chars) {
    if (pos >= s.size() || chars.find(s[pos]) == std::string_view::npos) return false;
    ++pos;
    return true;
}

}  // namespace

std::optional<std::int64_t> parse_since(std::string_view s) {
    if (s.empty()) return std::nullopt;
    if (s.find_first_not_of("0123456789") == std::string_view::npos) {
        if (s.size() > 12) return std::nullopt;
        std::int64_t v = 0;
        for (char c : s) v = v * 10 + (c - '0');
        return v;
    }
    std::size_t p = 0;
    std::tm tm{};
    const int y = digits(s, p, 4);
    if (y < 1970 || !expect(s, p, "-")) return std::nullopt;
    const int mo = digits(s, p, 2);
    if (mo < 1 || mo > 12 || !expect(s, p, "-")) return std::nullopt;
    const int d = digits(s, p, 2);
    if (d < 1 || d > 31 || !expect(s, p, "Tt ")) return std::nullopt;
    const int h = digits(s, p, 2);
    if (h < 0 || h > 23 || !expect(s, p, ":")) return std::nullopt;
    const int mi = digits(s, p, 2);
    if (mi < 0 || mi > 59 || !expect(s, p, ":")) return std::nullopt;
    const int se = digits(s, p, 2);
    if (se < 0 || se > 60) return std::nullopt;
    if (p < s.size() && s[p] == '.') {
        ++p;
        const std::size_t start = p;
        while (p < s.size() && s[p] >= '0' && s[p] <= '9') ++p;
        if (p == start) return std::nullopt;
    }
    int offset = 0;
    if (expect(s, p, "Zz")) {
    } else if (p < s.size() && (s[p] == '+' || s[p] == '-')) {
        const int sign = s[p++] == '-' ? -1 : 1;
        const int oh = digits(s, p, 2);
        if (oh < 0 || oh > 23 || !expect(s, p, ":")) return std::nullopt;
        const int om = digits(s, p, 2);
        if (om < 0 || om > 59) return std::nullopt;
        offset = sign * (oh * 3600 + om * 60);
    } else {
        return std::nullopt;
    }
    if (p != s.size()) return std::nullopt;
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = se;
    const std::time_t t = ::timegm(&tm);
    if (t == static_cast<std::time_t>(-1)) return std::nullopt;
    return static_cast<std::int64_t>(t) - offset;
}

}  // namespace p3::ctl
