// See metrics_http.hpp.
#include "control/p3ctl/metrics_http.hpp"

#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <vector>

#include "control/p3ctl/metrics.hpp"

namespace p3::ctl {

HttpVerdict parse_http_request(std::string_view data) noexcept {
    const std::size_t end = data.find("\r\n\r\n");
    if (end == std::string_view::npos) {
        // Only the request line matters, but a client gets no answer before its head is whole
        // (an answer read before the request is sent would confuse it).
        return data.size() >= kMaxRequest ? HttpVerdict::too_large : HttpVerdict::incomplete;
    }
    if (end + 4 > kMaxRequest) return HttpVerdict::too_large;
    const std::string_view line = data.substr(0, data.find("\r\n"));
    // METHOD SP TARGET SP HTTP/1.x, nothing else on the line.
    const std::size_t sp1 = line.find(' ');
    if (sp1 == std::string_view::npos || sp1 == 0) return HttpVerdict::bad_request;
    const std::size_t sp2 = line.find(' ', sp1 + 1);
    if (sp2 == std::string_view::npos || sp2 == sp1 + 1) return HttpVerdict::bad_request;
    const std::string_view method = line.substr(0, sp1);
    std::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
    const std::string_view version = line.substr(sp2 + 1);
    if (version != "HTTP/1.1" && version != "HTTP/1.0") return HttpVerdict::bad_request;
    for (char c : method)
        if (c < 'A' || c > 'Z') return HttpVerdict::bad_request;
    for (char c : target)
        if (static_cast<unsigned char>(c) <= ' ' || static_cast<unsigned char>(c) >= 0x7f) return HttpVerdict::bad_request;
    if (target.empty() || target[0] != '/') return HttpVerdict::bad_request;
    if (method != "GET" && method != "HEAD") return HttpVerdict::bad_method;
    target = target.substr(0, target.find('?'));
    if (target != "/metrics") return HttpVerdict::not_found;
    return method == "GET" ? HttpVerdict::metrics : HttpVerdict::head_metrics;
}

std::string http_response(HttpVerdict v, const std::function<std::string()>& body) {
    const char* status = "400 Bad Request";
    std::string type = "text/plain; charset=utf-8", text;
    switch (v) {
    case HttpVerdict::metrics:
    case HttpVerdict::head_metrics:
        status = "200 OK";
        type = kOpenMetricsType;
        text = body();
        break;
    case HttpVerdict::not_found: status = "404 Not Found"; text = "only /metrics here\n"; break;
    case HttpVerdict::bad_method: status = "405 Method Not Allowed"; text = "GET /metrics\n"; break;
    case HttpVerdict::too_large: status = "431 Request Header Fields Too Large"; text = "request too large\n"; break;
    default: text = "not an HTTP request\n"; break;
    }
    std::string r = std::string("HTTP/1.1 ") + status + "\r\nContent-Type: " + type +
                    "\r\nContent-Length: " + std::to_string(text.size()) + "\r\nConnection: close\r\n" +
                    (v == HttpVerdict::bad_method ? "Allow: GET, HEAD\r\n" : "") + "\r\n";
    if (v != HttpVerdict::head_metrics) r += text;
    return r;
}

bool parse_listen(std::string_view spec, std::string& host, std::string& port, std::string& error) {
    const std::size_t colon = spec.rfind(':');
    if (colon == std::string_view::npos || colon + 1 == spec.size()) {
        error = "expected ADDR:PORT (127.0.0.1:9105, [::1]:9105)";
        return false;
    }
    std::string_view h = spec.substr(0, colon);
    if (h.size() >= 2 && h.front() == '[' && h.back() == ']') h = h.substr(1, h.size() - 2);
    else if (h.find(':') != std::string_view::npos) {
        error = "an IPv6 address goes in brackets: [::1]:9105";
        return false;
    }
    host = std::string(h);
    port = std::string(spec.substr(colon + 1));
    for (char c : port)
        if (c < '0' || c > '9') {
            error = "the port is not a number";
            return false;
        }
    if (port.size() > 5 || std::stoul(port) == 0 || std::stoul(port) > 65535) {
        error = "the port is not in 1..65535";
        return false;
    }
    addrinfo hints{}, *res = nullptr;
    hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | AI_PASSIVE;
    hints.ai_socktype = SOCK_STREAM;
    if (host.empty() || getaddrinfo(host.c_str(), port.c_str(), &hints, &res) != 0) {
        error = "'" + host + "' is not a numeric IPv4 or IPv6 address";
        return false;
    }
    freeaddrinfo(res);
    return true;
}

namespace {

using Clock = std::chrono::steady_clock;

struct Client {
    int fd = -1;
    Clock::time_point deadline;
    std::string in, out;
    std::size_t sent = 0;
    bool answering = false;
    bool draining = false;   // answered: what the client still sends is read and dropped
};

int listen_on(const std::string& spec) {
    std::string host, port, error;
    if (!parse_listen(spec, host, port, error)) {
        std::fprintf(stderr, "p3ctl: metrics: --listen '%s': %s\n", spec.c_str(), error.c_str());
        return -1;
    }
    addrinfo hints{}, *res = nullptr;
    hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | AI_PASSIVE;
    hints.ai_socktype = SOCK_STREAM;
    if (getaddrinfo(host.c_str(), port.c_str(), &hints, &res) != 0) return -1;
    const int fd = ::socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    const int one = 1;
    if (fd >= 0) ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (fd < 0 || ::bind(fd, res->ai_addr, res->ai_addrlen) != 0 || ::listen(fd, 64) != 0) {
        std::fprintf(stderr, "p3ctl: metrics: --listen %s: %s\n", spec.c_str(), std::strerror(errno));
        if (fd >= 0) ::close(fd);
        freeaddrinfo(res);
        return -1;
    }
    freeaddrinfo(res);
    return fd;
}

// Reads what the client sent; when its head is whole, prepares the answer. false: drop it.
bool on_readable(Client& c, const std::function<std::string()>& body) {
    char buf[2048];
    const ssize_t n = ::recv(c.fd, buf, sizeof buf, 0);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) return false;
    if (n < 0) return true;
    const std::size_t room = kMaxRequest + 1 - std::min(c.in.size(), kMaxRequest + 1);
    c.in.append(buf, std::min<std::size_t>(room, static_cast<std::size_t>(n)));
    const HttpVerdict v = parse_http_request(c.in);
    if (v == HttpVerdict::incomplete) return true;
    c.out = http_response(v, body);
    c.answering = true;
    std::string().swap(c.in);
    return true;
}

// Sends what it can of the answer. false: failed: close it. Once it is sent, our side is shut
// and the client's remaining bytes (a head cut short at 8 KiB) are drained for at most
// kDrainMs: closing with unread data would reset the connection and lose the answer.
constexpr int kDrainMs = 1000;
bool on_writable(Client& c) {
    const ssize_t n = ::send(c.fd, c.out.data() + c.sent, c.out.size() - c.sent, MSG_NOSIGNAL);
    if (n < 0) return errno == EAGAIN || errno == EINTR;
    c.sent += static_cast<std::size_t>(n);
    if (c.sent < c.out.size()) return true;
    ::shutdown(c.fd, SHUT_WR);
    std::string().swap(c.out);
    c.answering = false;
    c.draining = true;
    c.deadline = std::min(c.deadline, Clock::now() + std::chrono::milliseconds(kDrainMs));
    return true;
}

// Drops what a client that has its answer still sends. false: it closed (or failed).
bool on_drain(Client& c) {
    char buf[4096];
    const ssize_t n = ::recv(c.fd, buf, sizeof buf, 0);
    return n > 0 || (n < 0 && (errno == EAGAIN || errno == EINTR));
}

}  // namespace

int serve_metrics(const std::string& listen, const std::function<std::string()>& body) {
    const int lfd = listen_on(listen);
    if (lfd < 0) return 1;
    std::fprintf(stderr, "p3ctl: metrics: serving http://%s/metrics\n", listen.c_str());
    std::vector<Client> clients;
    std::vector<pollfd> fds;
    for (;;) {
        fds.clear();
        // Full: the listening socket is not polled; new clients wait in its backlog.
        fds.push_back({lfd, static_cast<short>(clients.size() < kMaxClients ? POLLIN : 0), 0});
        const auto now = Clock::now();
        int wait_ms = -1;
        for (const Client& c : clients) {
            fds.push_back({c.fd, static_cast<short>(c.answering ? POLLOUT : POLLIN), 0});
            const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(c.deadline - now).count();
            wait_ms = wait_ms < 0 ? static_cast<int>(std::max<long long>(0, left))
                                  : std::min(wait_ms, static_cast<int>(std::max<long long>(0, left)));
        }
        if (::poll(fds.data(), fds.size(), wait_ms) < 0 && errno != EINTR) {
            std::fprintf(stderr, "p3ctl: metrics: poll: %s\n", std::strerror(errno));
            return 1;
        }
        const auto after = Clock::now();
        std::vector<Client> keep;
        for (std::size_t i = 0; i < clients.size(); ++i) {
            Client& c = clients[i];
            const short re = fds[i + 1].revents;
            bool alive = after < c.deadline;
            if (alive && (re & (POLLERR | POLLNVAL))) alive = false;
            else if (alive && c.draining && (re & (POLLIN | POLLHUP))) alive = on_drain(c);
            else if (alive && c.answering && (re & (POLLOUT | POLLHUP))) alive = on_writable(c);
            else if (alive && !c.answering && !c.draining && (re & (POLLIN | POLLHUP))) alive = on_readable(c, body);
            if (alive) keep.push_back(std::move(c));
            else ::close(c.fd);
        }
        clients.swap(keep);
        if (fds[0].revents & POLLIN) {
            while (clients.size() < kMaxClients) {
                const int fd = ::accept4(lfd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
                if (fd < 0) break;
                clients.push_back(Client{fd, Clock::now() + std::chrono::milliseconds(kClientTimeoutMs), {}, {}, 0, false, false});
            }
        }
    }
}

}  // namespace p3::ctl
