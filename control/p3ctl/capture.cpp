// See capture.hpp.
#include "control/p3ctl/capture.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "control/p3ctl/admin_client.hpp"

namespace p3::ctl {

namespace {

volatile sig_atomic_t g_stop = 0;
void on_stop(int) { g_stop = 1; }

int fail(int exit, const std::string& msg) {
    std::fprintf(stderr, "p3ctl: capture: %s\n", msg.c_str());
    return exit;
}

// The file p3d writes: FILE (made 0600; removed again if p3d refuses and we made it), standard
// output when it is a regular file, else an unnamed temporary file relayed to it.
struct Output {
    int fd = -1;
    bool relay = false;     // copy fd to standard output as it grows
    bool made = false;      // FILE did not exist before
    std::string path;
    off_t relayed = 0;
};

bool open_output(const std::string& out, Output& o, std::string& why) {
    if (out == "-") {
        struct stat st{};
        if (::fstat(STDOUT_FILENO, &st) == 0 && S_ISREG(st.st_mode) && (::fcntl(STDOUT_FILENO, F_GETFL) & O_ACCMODE) != O_RDONLY) {
            o.fd = STDOUT_FILENO;
            return true;
        }
        const char* tmp = std::getenv("TMPDIR");
        const std::string dir = tmp && *tmp ? tmp : "/tmp";
        o.fd = ::open(dir.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
        if (o.fd < 0) {
            std::string name = dir + "/p3ctl-capture.XXXXXX";
            o.fd = ::mkostemp(name.data(), O_CLOEXEC);
            if (o.fd >= 0) ::unlink(name.c_str());
        }
        if (o.fd < 0) {
            why = "a temporary file in " + dir + " to relay the capture: " + std::strerror(errno);
            return false;
        }
        o.relay = true;
        return true;
    }
    o.path = out;
    o.fd = ::open(out.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (o.fd >= 0) {
        o.made = true;
        return true;
    }
    if (errno == EEXIST) o.fd = ::open(out.c_str(), O_WRONLY | O_TRUNC | O_CLOEXEC);
    if (o.fd < 0) {
        why = out + ": " + std::strerror(errno);
        return false;
    }
    return true;
}

// What p3d wrote since last time, to standard output; what was relayed is freed.
bool relay(Output& o) {
    if (!o.relay) return true;
    char buf[65536];
    for (;;) {
        const ssize_t n = ::pread(o.fd, buf, sizeof buf, o.relayed);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return n == 0;
        for (ssize_t off = 0; off < n;) {
            const ssize_t w = ::write(STDOUT_FILENO, buf + off, static_cast<std::size_t>(n - off));
            if (w < 0 && errno == EINTR) continue;
            if (w <= 0) return false;
            off += w;
        }
        o.relayed += n;
        (void)::fallocate(o.fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, o.relayed);
    }
}

int connect_socket(const std::string& path, std::string& why, int& exit) {
    sockaddr_un sun{};
    if (path.size() >= sizeof sun.sun_path) {
        why = path + ": path too long";
        exit = kBadInput;
        return -1;
    }
    sun.sun_family = AF_UNIX;
    std::memcpy(sun.sun_path, path.c_str(), path.size() + 1);
    const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd >= 0 && ::connect(fd, reinterpret_cast<const sockaddr*>(&sun), sizeof sun) == 0) return fd;
    const int e = errno;
    if (fd >= 0) ::close(fd);
    exit = e == EACCES || e == EPERM ? kDenied : kUnreachable;
    why = exit == kDenied ? "not allowed to use " + path + " (" + std::strerror(e) + "): capture needs p3d's admin group"
                          : "p3d is not reachable at " + path + " (" + std::strerror(e) + ")";
    return -1;
}

// The request line with the file's descriptor attached.
bool send_request(int sock, const std::string& line, int fd) {
    iovec iov{const_cast<char*>(line.data()), line.size()};
    alignas(cmsghdr) char ctl[CMSG_SPACE(sizeof(int))] = {};
    msghdr mh{};
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    mh.msg_control = ctl;
    mh.msg_controllen = sizeof ctl;
    cmsghdr* h = CMSG_FIRSTHDR(&mh);
    h->cmsg_level = SOL_SOCKET;
    h->cmsg_type = SCM_RIGHTS;
    h->cmsg_len = CMSG_LEN(sizeof(int));
    std::memcpy(CMSG_DATA(h), &fd, sizeof fd);
    ssize_t n;
    do n = ::sendmsg(sock, &mh, MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    if (n < 0) return false;
    // The rest of a long line (never more than a few hundred bytes in practice).
    for (std::size_t off = static_cast<std::size_t>(n); off < line.size();) {
        const ssize_t w = ::send(sock, line.data() + off, line.size() - off, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return false;
        off += static_cast<std::size_t>(w);
    }
    return true;
}

// Reads the socket into buf until a whole line is there (returned without its '\n'), relaying
// the file meanwhile. first: p3d must answer within kReplyWaitMs. A stop signal closes our
// sending side once (p3d then ends the capture and answers). false: why.
bool next_line(int sock, std::string& buf, std::string& line, Output& out, bool first, std::string& why) {
    bool stop_sent = false;
    int waited = 0;
    for (;;) {
        if (const auto nl = buf.find('\n'); nl != std::string::npos) {
            line = buf.substr(0, nl);
            buf.erase(0, nl + 1);
            return true;
        }
        if (g_stop && !stop_sent && !first) {
            ::shutdown(sock, SHUT_WR);
            stop_sent = true;
        }
        pollfd p{sock, POLLIN, 0};
        const int r = ::poll(&p, 1, 100);
        if (!relay(out)) {   // standard output went away: stop as on Ctrl-C
            out.relay = false;
            g_stop = 1;
        }
        if (r < 0 && errno != EINTR) {
            why = std::string("poll: ") + std::strerror(errno);
            return false;
        }
        if (r <= 0) {
            if (first && (waited += 100) >= kReplyWaitMs) {
                why = "no answer from p3d within the time allowed";
                return false;
            }
            continue;
        }
        char tmp[4096];
        const ssize_t n = ::recv(sock, tmp, sizeof tmp, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            why = n == 0 ? "p3d closed the connection before the capture's end was told" : std::strerror(errno);
            return false;
        }
        buf.append(tmp, static_cast<std::size_t>(n));
        if (buf.size() > (1u << 20)) {
            why = "p3d's answer is too long";
            return false;
        }
    }
}

}  // namespace

int run_capture(const std::string& socket_path, const CaptureOptions& o, bool json) {
    Json req = {{"v", 1}, {"cmd", "capture"}, {"args", {{"port", o.port}, {"direction", o.direction}}}};
    if (o.count) req["args"]["count"] = o.count;
    if (o.duration_s) req["args"]["duration_s"] = o.duration_s;
    if (o.snaplen) req["args"]["snaplen"] = o.snaplen;
    Output out;
    std::string why;
    int exit = kOk;
    const int sock = connect_socket(socket_path, why, exit);
    if (sock < 0) return fail(exit, why);
    if (!open_output(o.out, out, why)) {
        ::close(sock);
        return fail(kFailed, why);
    }
    auto give_up = [&](int code, const std::string& msg) {
        if (out.made) ::unlink(out.path.c_str());
        if (out.fd != STDOUT_FILENO) ::close(out.fd);
        ::close(sock);
        return fail(code, msg);
    };
    struct sigaction sa{};
    sa.sa_handler = on_stop;   // no SA_RESTART: poll() returns at once
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, nullptr);
    sigaction(SIGTERM, &sa, nullptr);
    signal(SIGPIPE, SIG_IGN);
    if (!send_request(sock, req.dump() + "\n", out.fd)) return give_up(kUnreachable, std::string("send: ") + std::strerror(errno));
    if (out.fd != STDOUT_FILENO && !out.relay) {   // p3d has its own descriptor now
        ::close(out.fd);
        out.fd = -1;
    }
    std::string buf, line;
    if (!next_line(sock, buf, line, out, true, why)) return give_up(kUnreachable, why);
    Outcome first = parse_response(line);
    if (first.exit != kOk) return give_up(first.exit, first.message);
    const Json& r = first.result;
    std::fprintf(stderr, "p3ctl: capturing port %s (DPDK port %s, %s), direction %s, into %s; Ctrl-C stops\n",
                 r.value("port", std::string("?")).c_str(), r.contains("port_id") ? r["port_id"].dump().c_str() : "?",
                 r.value("device", std::string("?")).c_str(), r.value("direction", std::string("?")).c_str(),
                 o.out == "-" ? "standard output" : o.out.c_str());
    const bool ok = next_line(sock, buf, line, out, false, why);
    relay(out);
    if (out.relay) ::close(out.fd);
    ::close(sock);
    if (!ok) return fail(kUnreachable, why);
    const Outcome last = parse_response(line);
    if (last.exit != kOk) return fail(last.exit, last.message);
    const Json& t = last.result;
    if (json) {
        std::fprintf(o.out == "-" ? stderr : stdout, "%s\n", t.dump(2).c_str());
    } else {
        std::fprintf(stderr, "p3ctl: capture ended (%s): %s packets written, %s seen, %s lost\n",
                     t.value("ended", std::string("?")).c_str(), t.contains("written") ? t["written"].dump().c_str() : "?",
                     t.contains("seen") ? t["seen"].dump().c_str() : "?", t.contains("lost") ? t["lost"].dump().c_str() : "?");
    }
    return kOk;
}

}  // namespace p3::ctl
