// p3-swarm's I/O and measurement helpers (perf/swarm/README-swarm.md): the raw AF_PACKET
// socket all secondaries share, Ethernet/IPv4/UDP framing of setup datagrams, the primary's
// figures from /proc (RSS, the control thread's CPU) and from DPDK telemetry (/p3/stats).
#pragma once

#include <arpa/inet.h>
#include <dirent.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/bytes.hpp"
#include "common/checksum.hpp"

namespace swarm {

// One raw socket on the tool's end of the veth: every frame of every secondary goes out and
// comes in here (the kernel of the tool's namespace owns none of the secondaries' addresses,
// so it drops what it sees of them; nothing answers for them but this process).
class RawPort {
public:
    bool open(const std::string& ifname) {
        fd_ = ::socket(AF_PACKET, SOCK_RAW | SOCK_NONBLOCK, htons(ETH_P_ALL));
        if (fd_ < 0) return false;
        ifindex_ = static_cast<int>(if_nametoindex(ifname.c_str()));
        if (ifindex_ == 0) return false;
        sockaddr_ll sll{};
        sll.sll_family = AF_PACKET;
        sll.sll_protocol = htons(ETH_P_ALL);
        sll.sll_ifindex = ifindex_;
        if (::bind(fd_, reinterpret_cast<sockaddr*>(&sll), sizeof sll) != 0) return false;
        // A bring-up of thousands answers in bursts: room for them (FORCE needs root; plain is
        // capped by rmem_max).
        int sz = 32 << 20;
        if (setsockopt(fd_, SOL_SOCKET, SO_RCVBUFFORCE, &sz, sizeof sz) != 0)
            setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &sz, sizeof sz);
        if (setsockopt(fd_, SOL_SOCKET, SO_SNDBUFFORCE, &sz, sizeof sz) != 0)
            setsockopt(fd_, SOL_SOCKET, SO_SNDBUF, &sz, sizeof sz);
        // Our own transmissions are not handed back to us.
        int one = 1;
        setsockopt(fd_, SOL_PACKET, PACKET_IGNORE_OUTGOING, &one, sizeof one);
        return true;
    }
    ~RawPort() {
        if (fd_ >= 0) ::close(fd_);
    }
    int fd() const noexcept { return fd_; }
    bool send(const std::uint8_t* f, std::size_t len) {
        for (int tries = 0; tries < 1000; ++tries) {
            if (::send(fd_, f, len, 0) == static_cast<ssize_t>(len)) {
                ++sent;
                return true;
            }
            if (errno != EAGAIN && errno != ENOBUFS) break;
            usleep(50);   // socket buffer full: let the veth drain
        }
        ++send_failed;
        return false;
    }
    // One frame, or 0 when none waits.
    ssize_t recv(std::uint8_t* buf, std::size_t cap) {
        sockaddr_ll from{};
        socklen_t fl = sizeof from;
        for (;;) {
            const ssize_t n = ::recvfrom(fd_, buf, cap, 0, reinterpret_cast<sockaddr*>(&from), &fl);
            if (n < 0) return 0;
            if (from.sll_pkttype == PACKET_OUTGOING) continue;
            return n;
        }
    }
    // Frames the kernel dropped for want of buffer room since the last call.
    std::uint64_t drops() {
        tpacket_stats st{};
        socklen_t l = sizeof st;
        if (getsockopt(fd_, SOL_PACKET, PACKET_STATISTICS, &st, &l) != 0) return 0;
        return st.tp_drops;
    }
    std::uint64_t sent = 0, send_failed = 0;

private:
    int fd_ = -1;
    int ifindex_ = 0;
};

inline bool parse_mac(const std::string& s, std::uint8_t out[6]) {
    unsigned v[6];
    if (std::sscanf(s.c_str(), "%x:%x:%x:%x:%x:%x", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5]) != 6) return false;
    for (int i = 0; i < 6; ++i) out[i] = static_cast<std::uint8_t>(v[i]);
    return true;
}

// An IPv4 header (20 bytes, DF, TTL 64) at p for a payload of len bytes, checksum filled.
inline void ipv4_header(std::uint8_t* p, std::uint32_t src, std::uint32_t dst, std::uint8_t proto, std::size_t len,
                        std::uint16_t ident) {
    std::memset(p, 0, 20);
    p[0] = 0x45;
    p3::be::put16(p + 2, static_cast<std::uint16_t>(20 + len));
    p3::be::put16(p + 4, ident);
    p[6] = 0x40;
    p[8] = 64;
    p[9] = proto;
    p3::be::put32(p + 12, src);
    p3::be::put32(p + 16, dst);
    p3::be::put16(p + 10, p3::csum::ipv4_header(p, 20));
}

// IPv4 + UDP (checksum over the pseudo header) around payload, into out (replaced).
inline void ipv4_udp(std::vector<std::uint8_t>& out, std::uint32_t src, std::uint16_t sport, std::uint32_t dst,
                     std::uint16_t dport, const std::uint8_t* payload, std::size_t len, std::uint16_t ident) {
    out.assign(28 + len, 0);
    std::uint8_t* u = out.data() + 20;
    const std::uint16_t ul = static_cast<std::uint16_t>(8 + len);
    p3::be::put16(u, sport);
    p3::be::put16(u + 2, dport);
    p3::be::put16(u + 4, ul);
    if (len) std::memcpy(u + 8, payload, len);
    ipv4_header(out.data(), src, dst, 17, ul, ident);
    const std::uint16_t c = p3::csum::l4(false, out.data() + 12, out.data() + 16, 17, u, ul);
    p3::be::put16(u + 6, c == 0 ? 0xffff : c);   // RFC 768: a computed 0 is sent as all ones
}

// ---- the primary's figures ---------------------------------------------------------------------

inline double rss_bytes(int pid) {
    std::ifstream f("/proc/" + std::to_string(pid) + "/statm");
    long pages = 0, resident = 0;
    if (!(f >> pages >> resident)) return -1;
    return double(resident) * double(sysconf(_SC_PAGESIZE));
}

// utime + stime of the thread of pid whose name (comm) is `name`, in seconds; -1: not found.
inline double thread_cpu_s(int pid, const std::string& name) {
    const std::string base = "/proc/" + std::to_string(pid) + "/task";
    DIR* d = opendir(base.c_str());
    if (!d) return -1;
    double out = -1;
    while (dirent* e = readdir(d)) {
        if (e->d_name[0] == '.') continue;
        std::ifstream c(base + "/" + e->d_name + "/comm");
        std::string comm;
        std::getline(c, comm);
        if (comm != name) continue;
        std::ifstream s(base + "/" + e->d_name + "/stat");
        std::string line;
        std::getline(s, line);
        const auto rp = line.rfind(')');
        if (rp == std::string::npos) break;
        std::istringstream is(line.substr(rp + 2));
        std::string tok;
        unsigned long ut = 0, st = 0;
        for (int field = 3; is >> tok; ++field) {   // field 3 = state
            if (field == 14) ut = std::stoul(tok);
            if (field == 15) {
                st = std::stoul(tok);
                break;
            }
        }
        out = double(ut + st) / double(sysconf(_SC_CLK_TCK));
        break;
    }
    closedir(d);
    return out;
}

// One DPDK telemetry v2 command against p3d's file prefix; null on any failure.
inline nlohmann::json telemetry(const std::string& prefix, const std::string& cmd) {
    const std::string path = "/var/run/dpdk/" + prefix + "/dpdk_telemetry.v2";
    const int fd = ::socket(AF_UNIX, SOCK_SEQPACKET, 0);
    if (fd < 0) return nullptr;
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::snprintf(a.sun_path, sizeof a.sun_path, "%s", path.c_str());
    nlohmann::json out = nullptr;
    std::vector<char> buf(1 << 20);
    // Never wait long on p3d: a probe must not stall the secondaries' heartbeats.
    timeval tv{1, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 && ::recv(fd, buf.data(), buf.size(), 0) > 0 &&
        ::send(fd, cmd.data(), cmd.size(), 0) == static_cast<ssize_t>(cmd.size())) {
        const ssize_t n = ::recv(fd, buf.data(), buf.size(), 0);
        if (n > 0) {
            auto j = nlohmann::json::parse(std::string(buf.data(), std::size_t(n)), nullptr, false);
            if (!j.is_discarded() && j.contains(cmd)) out = j[cmd];
        }
    }
    ::close(fd);
    return out;
}

inline std::uint64_t jnum(const nlohmann::json& j, const char* k) {
    return j.is_object() && j.contains(k) && j[k].is_number() ? j[k].get<std::uint64_t>() : 0;
}

// The sum of every drop counter of /p3/drops.
inline std::uint64_t drops_total(const nlohmann::json& j) {
    std::uint64_t t = 0;
    if (j.is_object())
        for (auto& [k, v] : j.items())
            if (v.is_number()) t += v.get<std::uint64_t>();
    return t;
}

// The drop counters that grew between two /p3/drops readings, by name.
inline nlohmann::json nonzero(const nlohmann::json& now, const nlohmann::json& before) {
    nlohmann::json out = nlohmann::json::object();
    if (now.is_object())
        for (auto& [k, v] : now.items())
            if (v.is_number() && v.get<std::uint64_t>() > jnum(before, k.c_str()))
                out[k] = v.get<std::uint64_t>() - jnum(before, k.c_str());
    return out;
}

}  // namespace swarm
