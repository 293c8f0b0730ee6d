// The setup exchange over loopback UDP: a primary and a secondary engine, each on its own
// socket, driven by one EventLoop on the steady clock; and the NAT-T framing (non-ESP marker)
// that a peer which floated to port 4500 puts in front of IKE.
#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "control/setup/udp_setup.hpp"
#include "setup_harness.hpp"

using namespace p3;
using namespace p3::setup;
using namespace p3::setup::test;
using namespace std::chrono_literals;

namespace {

// Two free UDP ports on 127.0.0.1 (bound, read back, released).
std::uint16_t free_port() {
    const int fd = ::socket(AF_INET, SOCK_DGRAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
    socklen_t l = sizeof a;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &l);
    ::close(fd);
    return ntohs(a.sin_port);
}

struct UdpPair {
    std::uint16_t pport = free_port(), sport = free_port(), natport = free_port();
    config::Config pc, sc;
    control::SteadyClock clock;
    control::SystemRandom rnd;
    control::EventLoop loop{clock};
    RecordingSink sink_p{0x1000}, sink_s{0x2000};
    std::unique_ptr<UdpSetup> p, s;
    UdpPair() {
        pc = primary_config(PairConfig{});
        sc = secondary_config(PairConfig{});
        pc.local.address = sc.local.address = *IpAddr::parse("127.0.0.1");
        pc.local.port = pport;
        pc.local.nat_port = natport;
        sc.local.port = sport;
        pc.remotes[0].address = sc.local.address;
        sc.remotes[0].address = pc.local.address;
        sc.remotes[0].port = pport;
        p = std::make_unique<UdpSetup>(loop, pc, psk("udp test key, 16+ bytes"), SetupOptions{}, rnd, sink_p);
        s = std::make_unique<UdpSetup>(loop, sc, psk("udp test key, 16+ bytes"), SetupOptions{}, rnd, sink_s);
        std::string err;
        REQUIRE(p->open(err));
        REQUIRE(s->open(err));
    }
    bool run_until_up(std::chrono::milliseconds limit) {
        const auto end = clock.now() + limit;
        while (clock.now() < end && !(sink_p.sessions.size() == 1 && sink_s.sessions.size() == 1))
            loop.run_once(20ms);
        return sink_p.sessions.size() == 1 && sink_s.sessions.size() == 1;
    }
};

}  // namespace

TEST_CASE("setup over loopback UDP: a secondary comes up with its primary") {
    UdpPair u;
    u.s->connect_all();
    REQUIRE(u.run_until_up(5000ms));
    const auto& s = u.sink_s.sessions[0];
    const auto& p = u.sink_p.sessions[0];
    CHECK(s.tx_p3_id == p.rx_p3_id);
    CHECK(p.peer.port == u.sport);
    CHECK(!s.nat());
    CHECK(u.p->engine().counters().received == 2);
    CHECK(u.s->engine().counters().received == 2);
    CHECK(u.s->send_errors() == 0);
}

TEST_CASE("setup over UDP: IKE behind a non-ESP marker on the NAT-T port is understood and answered with the marker") {
    UdpPair u;
    // A raw socket plays the secondary: it sends the engine-built IKE_SA_INIT with the marker.
    Pair pr(PairConfig{}, psk("udp test key, 16+ bytes"), psk("udp test key, 16+ bytes"));
    REQUIRE(pr.s->connect(1));
    const Bytes init = pr.to_p.q.front().data;
    const int fd = ::socket(AF_INET, SOCK_DGRAM, 0);
    sockaddr_in to{};
    to.sin_family = AF_INET;
    to.sin_port = htons(u.natport);  // the primary's NAT-T port
    to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    Bytes framed{0, 0, 0, 0};
    append(framed, init);
    REQUIRE(::sendto(fd, framed.data(), framed.size(), 0, reinterpret_cast<sockaddr*>(&to), sizeof to) ==
            ssize_t(framed.size()));
    const std::uint8_t keepalive = 0xff;
    ::sendto(fd, &keepalive, 1, 0, reinterpret_cast<sockaddr*>(&to), sizeof to);
    for (int i = 0; i < 20 && u.p->engine().counters().received == 0; ++i) u.loop.run_once(20ms);
    CHECK(u.p->engine().counters().received == 1);  // the keepalive never reaches the engine
    CHECK(u.p->engine().counters().malformed == 0);
    std::uint8_t buf[2048];
    timeval tv{2, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    ::close(fd);
    REQUIRE(n > 32);
    CHECK(buf[0] == 0);
    CHECK(buf[1] == 0);
    CHECK(buf[2] == 0);
    CHECK(buf[3] == 0);
    Message m;
    REQUIRE(decode(ByteView(buf + 4, std::size_t(n) - 4), m) == DecodeError::ok);
    CHECK(m.hdr.is_response());
    CHECK(m.find<KePayload>(pt::ke));
}
