// p3-traffic: numbered UDP datagrams at a steady rate, and the receiver that counts them. Run
// one per direction and end (in a network namespace: `ip netns exec NS p3-traffic ...`):
//
//   p3-traffic send --to 10.2.0.2 [--port 9000] --rate PPS --duration S [--size B] [--stream N]
//   p3-traffic recv [--port 9000] [--duration S] [--idle S]
//
// Each datagram carries magic "p3tg" | stream (u32) | sequence (u64, from 1) | filler, all
// big-endian, padded to --size bytes of UDP payload (at least 16). The sender paces by the
// clock: at every turn it sends what is due (rate x elapsed - sent), up to 64 datagrams in one
// sendmmsg, then sleeps briefly; so a short stall is caught up at once and the average rate
// holds. The receiver reads batches with recvmmsg until --duration seconds have passed, or
// --idle seconds without a datagram once the first one came, or SIGINT/SIGTERM.
//
// Both print one JSON object on stdout (and to --json FILE): the sender what it sent; the
// receiver per stream what arrived: received, unique, duplicated (a sequence seen before),
// reordered (below the highest seen so far), lost (highest - unique: sequences never seen up
// to the last that came; a lost tail is what `sent - unique` shows), first and last sequence.
// Several thousand datagrams per second are a small fraction of one core.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <vector>

namespace {

constexpr std::uint32_t kMagic = 0x70337467;   // "p3tg"
constexpr std::size_t kHeader = 16;
constexpr unsigned kBatch = 64;
volatile std::sig_atomic_t g_stop = 0;

double now_s() {
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return double(ts.tv_sec) + double(ts.tv_nsec) * 1e-9;
}

void put32(std::uint8_t* p, std::uint32_t v) { v = htonl(v); std::memcpy(p, &v, 4); }
void put64(std::uint8_t* p, std::uint64_t v) { put32(p, std::uint32_t(v >> 32)); put32(p + 4, std::uint32_t(v)); }
std::uint32_t get32(const std::uint8_t* p) { std::uint32_t v; std::memcpy(&v, p, 4); return ntohl(v); }
std::uint64_t get64(const std::uint8_t* p) { return (std::uint64_t(get32(p)) << 32) | get32(p + 4); }

struct Args {
    std::string mode, to, json;
    unsigned port = 9000, size = 64, stream = 1;
    double rate = 1000, duration = 10, idle = 0;
};

void usage() {
    std::fprintf(stderr,
                 "usage: p3-traffic send --to ADDR [--port P] --rate PPS --duration S [--size B] [--stream N] [--json F]\n"
                 "       p3-traffic recv [--port P] [--duration S] [--idle S] [--json F]\n");
}

bool parse(int argc, char** argv, Args& a) {
    if (argc < 2) return false;
    a.mode = argv[1];
    if (a.mode != "send" && a.mode != "recv") return false;
    for (int i = 2; i < argc; ++i) {
        std::string k = argv[i];
        if (i + 1 >= argc) return false;
        const char* v = argv[++i];
        if (k == "--to") a.to = v;
        else if (k == "--port") a.port = unsigned(std::strtoul(v, nullptr, 10));
        else if (k == "--rate") a.rate = std::strtod(v, nullptr);
        else if (k == "--duration") a.duration = std::strtod(v, nullptr);
        else if (k == "--idle") a.idle = std::strtod(v, nullptr);
        else if (k == "--size") a.size = unsigned(std::strtoul(v, nullptr, 10));
        else if (k == "--stream") a.stream = unsigned(std::strtoul(v, nullptr, 10));
        else if (k == "--json") a.json = v;
        else return false;
    }
    if (a.port == 0 || a.port > 65535 || a.size < kHeader || a.size > 8972 || a.rate <= 0 || a.duration <= 0)
        return false;
    return a.mode == "recv" || !a.to.empty();
}

void emit(const Args& a, const std::string& js) {
    std::printf("%s\n", js.c_str());
    std::fflush(stdout);
    if (!a.json.empty()) {
        if (FILE* f = std::fopen(a.json.c_str(), "w")) {
            std::fprintf(f, "%s\n", js.c_str());
            std::fclose(f);
        }
    }
}

int run_send(const Args& a) {
    sockaddr_in dst{};
    dst.sin_family = AF_INET;
    dst.sin_port = htons(std::uint16_t(a.port));
    if (inet_pton(AF_INET, a.to.c_str(), &dst.sin_addr) != 1) {
        std::fprintf(stderr, "p3-traffic: bad address %s\n", a.to.c_str());
        return 2;
    }
    const int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, reinterpret_cast<sockaddr*>(&dst), sizeof dst) != 0) {
        std::perror("p3-traffic: socket/connect");
        return 2;
    }
    int sndbuf = 4 << 20;
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
    std::vector<std::uint8_t> buf(std::size_t(kBatch) * a.size, 0);
    mmsghdr msgs[kBatch]{};
    iovec iov[kBatch]{};
    for (unsigned i = 0; i < kBatch; ++i) {
        std::uint8_t* p = buf.data() + std::size_t(i) * a.size;
        put32(p, kMagic);
        put32(p + 4, a.stream);
        for (unsigned k = kHeader; k < a.size; ++k) p[k] = std::uint8_t(k);
        iov[i] = {p, a.size};
        msgs[i].msg_hdr.msg_iov = &iov[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
    }
    const std::uint64_t total = std::uint64_t(a.rate * a.duration + 0.5);
    std::uint64_t seq = 0, errors = 0, refused = 0;
    const double t0 = now_s();
    double t = t0;
    while (seq < total && !g_stop) {
        t = now_s();
        std::uint64_t due = std::uint64_t((t - t0) * a.rate) + 1;
        if (due > total) due = total;
        if (due <= seq) {
            timespec nap{0, 100000};   // 0.1 ms: at 3000/s a turn sends a datagram or so
            nanosleep(&nap, nullptr);
            continue;
        }
        const unsigned n = unsigned(std::min<std::uint64_t>(due - seq, kBatch));
        for (unsigned i = 0; i < n; ++i) put64(buf.data() + std::size_t(i) * a.size + 8, seq + 1 + i);
        int sent = sendmmsg(fd, msgs, n, 0);
        if (sent < 0) {
            // ECONNREFUSED: an ICMP port unreachable came back (the receiver is not there yet);
            // ENOBUFS: the qdisc is full. Either way these sequences go again next turn.
            if (errno == ECONNREFUSED) ++refused;
            else if (errno != EINTR) ++errors;
            if (errno == ENOBUFS || errno == EAGAIN) {
                timespec nap{0, 50000};
                nanosleep(&nap, nullptr);
            }
            continue;
        }
        seq += unsigned(sent);
    }
    const double elapsed = now_s() - t0;
    close(fd);
    char js[512];
    std::snprintf(js, sizeof js,
                  "{\"mode\": \"send\", \"stream\": %u, \"to\": \"%s\", \"port\": %u, \"size\": %u, "
                  "\"rate\": %.1f, \"duration_s\": %.3f, \"sent\": %llu, \"achieved_pps\": %.1f, "
                  "\"send_errors\": %llu, \"refused\": %llu}",
                  a.stream, a.to.c_str(), a.port, a.size, a.rate, elapsed, static_cast<unsigned long long>(seq),
                  elapsed > 0 ? double(seq) / elapsed : 0.0, static_cast<unsigned long long>(errors),
                  static_cast<unsigned long long>(refused));
    emit(a, js);
    return seq == total ? 0 : 1;
}

struct Stream {
    std::vector<std::uint8_t> seen;   // by sequence
    std::uint64_t received = 0, unique = 0, duplicated = 0, reordered = 0, first = 0, highest = 0;
};

int run_recv(const Args& a) {
    const int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_in me{};
    me.sin_family = AF_INET;
    me.sin_port = htons(std::uint16_t(a.port));
    me.sin_addr.s_addr = htonl(INADDR_ANY);
    int rcvbuf = 8 << 20;
    if (fd < 0) {
        std::perror("p3-traffic: socket");
        return 2;
    }
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof rcvbuf);
    if (bind(fd, reinterpret_cast<sockaddr*>(&me), sizeof me) != 0) {
        std::perror("p3-traffic: bind");
        return 2;
    }
    timeval tv{0, 100000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    // Ready: a script waits for this line before starting the sender.
    std::fprintf(stderr, "p3-traffic: receiving on port %u\n", a.port);
    std::vector<std::uint8_t> buf(std::size_t(kBatch) * 2048);
    mmsghdr msgs[kBatch]{};
    iovec iov[kBatch]{};
    for (unsigned i = 0; i < kBatch; ++i) {
        iov[i] = {buf.data() + std::size_t(i) * 2048, 2048};
        msgs[i].msg_hdr.msg_iov = &iov[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
    }
    std::map<std::uint32_t, Stream> streams;
    std::uint64_t foreign = 0, truncated = 0;
    const double t0 = now_s();
    double last = 0;
    while (!g_stop) {
        const double t = now_s();
        if (t - t0 >= a.duration) break;
        if (a.idle > 0 && last > 0 && t - last >= a.idle) break;
        const int n = recvmmsg(fd, msgs, kBatch, MSG_WAITFORONE, nullptr);
        if (n <= 0) continue;
        last = now_s();
        for (int i = 0; i < n; ++i) {
            const std::uint8_t* p = buf.data() + std::size_t(i) * 2048;
            if (msgs[i].msg_len < kHeader || get32(p) != kMagic) {
                ++foreign;
                continue;
            }
            if (msgs[i].msg_hdr.msg_flags & MSG_TRUNC) ++truncated;
            Stream& s = streams[get32(p + 4)];
            const std::uint64_t seq = get64(p + 8);
            ++s.received;
            if (seq == 0 || seq > (std::uint64_t{1} << 32)) {
                ++foreign;
                continue;
            }
            if (s.seen.size() <= seq) s.seen.resize(std::max<std::size_t>(seq + 1, s.seen.size() * 2), 0);
            if (s.seen[seq]) {
                ++s.duplicated;
                continue;
            }
            s.seen[seq] = 1;
            ++s.unique;
            if (!s.first) s.first = seq;
            if (seq < s.highest) ++s.reordered;
            else s.highest = seq;
        }
    }
    close(fd);
    std::string js;
    char part[512];
    std::snprintf(part, sizeof part,
                  "{\"mode\": \"recv\", \"port\": %u, \"duration_s\": %.3f, \"foreign\": %llu, "
                  "\"truncated\": %llu, \"streams\": {",
                  a.port, now_s() - t0, static_cast<unsigned long long>(foreign),
                  static_cast<unsigned long long>(truncated));
    js.append(part);
    bool sep = false;
    for (const auto& [id, s] : streams) {
        std::snprintf(part, sizeof part,
                      "%s\"%u\": {\"received\": %llu, \"unique\": %llu, \"duplicated\": %llu, "
                      "\"reordered\": %llu, \"lost\": %llu, \"first\": %llu, \"highest\": %llu}",
                      sep ? ", " : "", id, static_cast<unsigned long long>(s.received),
                      static_cast<unsigned long long>(s.unique), static_cast<unsigned long long>(s.duplicated),
                      static_cast<unsigned long long>(s.reordered),
                      static_cast<unsigned long long>(s.highest - s.unique), static_cast<unsigned long long>(s.first),
                      static_cast<unsigned long long>(s.highest));
        js.append(part);
        sep = true;
    }
    js.append("}}");
    emit(a, js);
    return 0;
}

void on_signal(int) { g_stop = 1; }

}  // namespace

int main(int argc, char** argv) {
    Args a;
    if (!parse(argc, argv, a)) {
        usage();
        return 2;
    }
    struct sigaction sa{};
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, nullptr);
    sigaction(SIGTERM, &sa, nullptr);
    return a.mode == "send" ? run_send(a) : run_recv(a);
}
