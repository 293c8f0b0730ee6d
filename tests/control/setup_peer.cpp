// p3-setup-peer: the setup exchange alone, on a kernel UDP socket, for interoperability
// tests (tests/sh/40-strongswan.sh) and manual runs. Reads a p3 configuration file; as a
// primary it answers, as a secondary it initiates to every remote. Each established session
// prints one line on stdout:
//   up remote=<id> peer=<identity> rx=0x<p3 id> tx=0x<p3 id> key=aes128|aes256 nat=<0|1> push=<0|1>
// It exits 0 once --sessions sessions are up (after --linger seconds more), 1 when --timeout seconds pass first or setup
// fails (secondary), 2 on a bad command line or configuration.
//
// --keys-out FILE (tests only) writes the first data keys of each session, hex key‖salt,
// one line "<rx id> <data_rx> <data_tx>", to a new owner-only file, so a test can compare
// them with the peer's own derivation. p3d never does this.
#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <string>

#include "common/log.hpp"
#include "control/setup/udp_setup.hpp"

using namespace p3;
using namespace p3::setup;

namespace {

std::string hex(const SecretBytes& a, const SecretBytes& b) {
    static const char* d = "0123456789abcdef";
    std::string s;
    for (const auto* x : {&a, &b})
        for (auto c : x->span()) {
            s += d[c >> 4];
            s += d[c & 15];
        }
    return s;
}

class PrintingSink final : public SessionSink {
public:
    // Distinct ranges per role, so a test of two peers on one host sees the IDs cross.
    explicit PrintingSink(config::Role r) : next_(r == config::Role::primary ? 0x100 : 0x200) {}
    std::optional<std::uint32_t> reserve_rx_id(std::uint32_t, std::uint32_t) override { return next_++; }
    void release_rx_id(std::uint32_t) override {}
    bool install(EstablishedSession&& s) override {
        std::printf("up remote=%u peer=%s rx=0x%x tx=0x%x key=%s nat=%d push=%d wire=%s esn=%d\n", s.remote_id,
                    s.peer_identity.c_str(), s.rx_p3_id, s.tx_p3_id, s.key_type == config::KeyType::aes256 ? "aes256" : "aes128",
                    s.nat() ? 1 : 0, s.config.secondary_subnets.empty() ? 0 : 1,
                    s.wire == config::WireMode::esp ? "esp" : "p3", s.esn ? 1 : 0);
        std::fflush(stdout);
        if (keys_fd >= 0) {
            const std::string line = std::to_string(s.rx_p3_id) + " " + hex(s.data_rx.key, s.data_rx.salt) + " " +
                                     hex(s.data_tx.key, s.data_tx.salt) + "\n";
            if (::write(keys_fd, line.data(), line.size()) < 0) return false;
        }
        ++up;
        return true;
    }
    void setup_failed(std::uint32_t, Reason) override { ++failed; }
    // ESP remotes (wire = "esp"): the SAs the IKE SA installs after setup, printed.
    bool esp_install_rx(std::uint32_t remote, std::uint32_t spi, const DirectionKeys&, bool esn) override {
        std::printf("esp rx remote=%u spi=0x%x esn=%d\n", remote, spi, esn ? 1 : 0);
        std::fflush(stdout);
        return true;
    }
    bool esp_install_tx(std::uint32_t remote, std::uint32_t spi, const DirectionKeys&, bool esn) override {
        std::printf("esp tx remote=%u spi=0x%x esn=%d\n", remote, spi, esn ? 1 : 0);
        std::fflush(stdout);
        return true;
    }
    void esp_remove_rx(std::uint32_t remote, std::uint32_t spi) override {
        std::printf("esp remove-rx remote=%u spi=0x%x\n", remote, spi);
        std::fflush(stdout);
    }
    void esp_down(std::uint32_t remote, Reason r) override {
        std::printf("esp down remote=%u reason=%s\n", remote, std::string(reason_code(r)).c_str());
        std::fflush(stdout);
    }
    int keys_fd = -1;
    unsigned up = 0, failed = 0;

private:
    std::uint32_t next_;
};

int usage() {
    std::fprintf(stderr, "usage: p3-setup-peer -c FILE [--sessions N] [--timeout SECONDS] [--linger SECONDS] [--keys-out FILE] [-v]\n");
    return 2;
}

}  // namespace

int main(int argc, char** argv) {
    std::string conf, keys_out;
    unsigned sessions = 1, timeout_s = 30, linger_s = 0;
    bool verbose = false;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        auto val = [&]() -> const char* { return i + 1 < argc ? argv[++i] : nullptr; };
        if (a == "-c") { const char* v = val(); if (!v) return usage(); conf = v; }
        else if (a == "--sessions") { const char* v = val(); if (!v) return usage(); sessions = unsigned(std::stoul(v)); }
        else if (a == "--timeout") { const char* v = val(); if (!v) return usage(); timeout_s = unsigned(std::stoul(v)); }
        else if (a == "--linger") { const char* v = val(); if (!v) return usage(); linger_s = unsigned(std::stoul(v)); }
        else if (a == "--keys-out") { const char* v = val(); if (!v) return usage(); keys_out = v; }
        else if (a == "-v") verbose = true;
        else return usage();
    }
    if (conf.empty()) return usage();
    log::Options lo;
    lo.ident = "p3-setup-peer";
    lo.min_level = verbose ? log::Level::debug : log::Level::info;
    log::init(lo);

    auto loaded = config::load_file(conf);
    if (auto* e = std::get_if<config::Error>(&loaded)) {
        std::fprintf(stderr, "%s\n", e->str().c_str());
        return 2;
    }
    const config::Config& cfg = std::get<config::Config>(loaded);
    std::string err;
    Reason why = Reason::SETUP_CREDENTIALS;
    auto creds = Credentials::load(cfg, err, why);
    if (!creds) {
        log::write(log::Level::error, why, "%s", err.c_str());
        return 2;
    }
    PrintingSink sink(cfg.role);
    if (!keys_out.empty()) {
        sink.keys_fd = ::open(keys_out.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (sink.keys_fd < 0) {
            std::fprintf(stderr, "%s: %s\n", keys_out.c_str(), std::strerror(errno));
            return 2;
        }
    }
    control::SteadyClock clock;
    control::SystemRandom random;
    control::EventLoop loop(clock);
    UdpSetup udp(loop, cfg, std::move(*creds), SetupOptions{}, random, sink);
    if (!udp.open(err)) {
        std::fprintf(stderr, "%s\n", err.c_str());
        return 2;
    }
    if (cfg.role == config::Role::secondary) udp.connect_all();
    const auto deadline = clock.now() + std::chrono::seconds(timeout_s);
    int rc = 1;
    while (clock.now() < deadline) {
        loop.run_once(std::chrono::milliseconds(100));
        if (sink.up >= sessions) {
            rc = 0;
            break;
        }
        if (cfg.role == config::Role::secondary && sink.failed > 0 && udp.engine().exchanges() == 0) break;
    }
    // Stay a little to answer a retransmitted last request with the cached response.
    const auto linger_end = clock.now() + std::chrono::seconds(rc == 0 ? linger_s : 0);
    while (clock.now() < linger_end) loop.run_once(std::chrono::milliseconds(100));
    const auto& c = udp.engine().counters();
    std::fprintf(stderr,
                 "p3-setup-peer: received %llu sent %llu malformed %llu retransmits %llu resent %llu cookies %llu "
                 "established %llu failed %llu\n",
                 (unsigned long long)c.received, (unsigned long long)c.sent, (unsigned long long)c.malformed,
                 (unsigned long long)c.retransmits, (unsigned long long)c.responses_resent,
                 (unsigned long long)c.cookies_sent, (unsigned long long)c.established, (unsigned long long)c.failed);
    if (sink.keys_fd >= 0) ::close(sink.keys_fd);
    return rc;
}
