// UDP socket and loop timer around the setup engine (see udp_setup.hpp).
#include "control/setup/udp_setup.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/log.hpp"

namespace p3::setup {

namespace {

socklen_t to_sockaddr(const Endpoint& ep, sockaddr_storage& ss) {
    std::memset(&ss, 0, sizeof ss);
    if (ep.addr.is_v6()) {
        sockaddr_in6 a{};
        a.sin6_family = AF_INET6;
        a.sin6_port = htons(ep.port);
        std::memcpy(&a.sin6_addr, ep.addr.bytes.data(), 16);
        std::memcpy(&ss, &a, sizeof a);
        return sizeof a;
    }
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(ep.port);
    std::memcpy(&a.sin_addr, ep.addr.bytes.data(), 4);
    std::memcpy(&ss, &a, sizeof a);
    return sizeof a;
}

Endpoint from_sockaddr(const sockaddr_storage& ss) {
    Endpoint ep;
    if (ss.ss_family == AF_INET6) {
        sockaddr_in6 a;
        std::memcpy(&a, &ss, sizeof a);
        ep.addr.family = 6;
        std::memcpy(ep.addr.bytes.data(), &a.sin6_addr, 16);
        ep.port = ntohs(a.sin6_port);
    } else {
        sockaddr_in a;
        std::memcpy(&a, &ss, sizeof a);
        ep.addr.family = 4;
        std::memcpy(ep.addr.bytes.data(), &a.sin_addr, 4);
        ep.port = ntohs(a.sin_port);
    }
    return ep;
}

constexpr std::uint8_t non_esp_marker[4] = {0, 0, 0, 0};

}  // namespace

UdpSetup::UdpSetup(control::EventLoop& loop, const config::Config& cfg, Credentials creds, SetupOptions opts,
                   control::Random& random, SessionSink& sink)
    : loop_(loop), local_{cfg.local.address, cfg.local.port} {
    if (cfg.role == config::Role::primary && cfg.local.nat_port != 0 && cfg.local.nat_port != cfg.local.port)
        nat_port_ = cfg.local.nat_port;
    for (const auto& r : cfg.remotes)
        if (!r.static_keys) remotes_.push_back(r.id);
    engine_ = std::make_unique<SetupEngine>(cfg, std::move(creds), std::move(opts), loop.clock(), random,
                                            static_cast<Transport&>(*this), sink);
}

UdpSetup::~UdpSetup() {
    if (timer_) loop_.cancel(timer_);
    for (const auto& s : sockets_) {
        loop_.remove_fd(s.fd);
        ::close(s.fd);
    }
}

bool UdpSetup::open_one(const Endpoint& local, std::string& error) {
    const int fd = ::socket(local.addr.is_v6() ? AF_INET6 : AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        error = std::string("socket: ") + std::strerror(errno);
        return false;
    }
    sockaddr_storage ss;
    const socklen_t len = to_sockaddr(local, ss);
    if (::bind(fd, reinterpret_cast<const sockaddr*>(&ss), len) != 0) {
        error = "bind " + local.str() + ": " + std::strerror(errno);
        ::close(fd);
        return false;
    }
    sockets_.push_back(Socket{fd, local});
    const std::size_t idx = sockets_.size() - 1;
    if (!loop_.add_fd(fd, [this, idx](std::uint32_t) { on_readable(sockets_[idx]); })) {
        error = "event loop refused the socket";
        return false;
    }
    return true;
}

bool UdpSetup::open(std::string& error) {
    if (!open_one(local_, error)) return false;
    if (nat_port_ && !open_one(Endpoint{local_.addr, nat_port_}, error)) return false;
    rearm();
    return true;
}

void UdpSetup::connect_all() {
    for (auto id : remotes_) engine_->connect(id);
    rearm();
}

void UdpSetup::send(const Endpoint& from, const Endpoint& to, ByteView datagram, Framing framing) {
    if (sockets_.empty()) return;
    int fd = sockets_[0].fd;  // the engine answers from the port a request arrived on
    for (const auto& s : sockets_)
        if (s.local.port == from.port) fd = s.fd;
    sockaddr_storage ss;
    const socklen_t len = to_sockaddr(to, ss);
    Bytes framed;
    ByteView out = datagram;
    if (framing == Framing::non_esp_marker) {
        framed.reserve(sizeof non_esp_marker + datagram.size());
        append(framed, ByteView(non_esp_marker, sizeof non_esp_marker));
        append(framed, datagram);
        out = framed;
    }
    if (::sendto(fd, out.data(), out.size(), 0, reinterpret_cast<const sockaddr*>(&ss), len) < 0) ++send_errors_;
}

void UdpSetup::on_readable(const Socket& sock) {
    std::uint8_t buf[limits::max_message + 4];
    for (;;) {
        sockaddr_storage ss;
        socklen_t slen = sizeof ss;
        const ssize_t n = ::recvfrom(sock.fd, buf, sizeof buf, MSG_TRUNC, reinterpret_cast<sockaddr*>(&ss), &slen);
        if (n < 0) break;  // EAGAIN: drained
        const Endpoint from = from_sockaddr(ss);
        ByteView d(buf, std::min<std::size_t>(std::size_t(n), sizeof buf));
        if (std::size_t(n) > sizeof buf) {
            engine_->on_datagram(from, sock.local, ByteView{});  // counted as malformed
            continue;
        }
        if (d.size() == 1 && d[0] == 0xff) continue;  // NAT keepalive (RFC 3948 §2.3)
        Framing framing = Framing::plain;
        if (d.size() >= 4 && std::memcmp(d.data(), non_esp_marker, 4) == 0) {
            framing = Framing::non_esp_marker;
            d = d.subspan(4);
        }
        engine_->on_datagram(from, sock.local, d, framing);
    }
    log::flush_suppressed();
    rearm();
}

void UdpSetup::rearm() {
    const auto next = engine_->next_deadline();
    if (!next) {
        if (timer_) loop_.cancel(timer_);
        timer_ = {};
        return;
    }
    if (timer_ && timer_at_ == *next) return;
    if (timer_) loop_.cancel(timer_);
    timer_at_ = *next;
    timer_ = loop_.at(*next, [this] {
        timer_ = {};
        engine_->on_timer();
        rearm();
    });
}

}  // namespace p3::setup
