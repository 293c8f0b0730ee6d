// cpg_probe: the cluster engine on real corosync (tests/sh/85-cluster-cpg.sh): one member that
// joins the CPG group and prints what it sees, one line each, on stdout:
//   members 1,2,3                      the members in view (after each change)
//   session R epoch E keys ok|bad      a SESSION record applied (keys checked against the
//                                      pattern the publisher used)
//   role M primary|backup              a ROLE from member M
//   synced N                           (with --expect N) N sessions held, each keys ok
//
//   cpg_probe --member N --group G --key FILE [--role primary|backup] [--publish N]
//
// --publish N: as this member's own sessions, remotes 1..N at epoch 1 (key material a pattern
// of remote and epoch). SIGUSR1: every published session to the next epoch (a rekey).
// SIGUSR2: promote (ROLE primary). SIGTERM/SIGINT: leave and exit 0.
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "common/log.hpp"
#include "control/cluster/cpg_transport.hpp"
#include "control/cluster/settings.hpp"
#include "control/clock.hpp"
#include "control/event_loop.hpp"

using namespace p3;
using namespace p3::cluster;

namespace {

volatile std::sig_atomic_t g_stop = 0, g_rekey = 0, g_promote = 0;

std::vector<std::uint8_t> pattern(std::uint32_t remote, std::uint32_t epoch, std::uint8_t which) {
    std::vector<std::uint8_t> v(36);
    for (std::size_t i = 0; i < v.size(); ++i) v[i] = static_cast<std::uint8_t>(remote * 31 + epoch * 17 + which * 5 + i);
    return v;
}

SessionRecord make(std::uint32_t remote, std::uint32_t epoch) {
    SessionRecord r;
    r.remote_id = remote;
    r.epoch = epoch;
    r.peer_addr = {192, 0, 2, static_cast<std::uint8_t>(remote)};
    r.peer_port = 5653;
    r.lanes = 8;
    r.rx_ids = {0x1000 + remote};
    r.tx_ids = {0x2000 + remote};
    r.rx_cur = SecretBytes(pattern(remote, epoch, 0));
    r.rx_next = SecretBytes(pattern(remote, epoch, 1));
    r.tx_cur = SecretBytes(pattern(remote, epoch, 2));
    r.tx_next = SecretBytes(pattern(remote, epoch, 3));
    return r;
}

struct Printer final : ReplicaSink {
    void on_session(const SessionRecord& r) override {
        const bool ok = r.rx_cur.equals(pattern(r.remote_id, r.epoch, 0)) && r.rx_next.equals(pattern(r.remote_id, r.epoch, 1)) &&
                        r.tx_cur.equals(pattern(r.remote_id, r.epoch, 2)) && r.tx_next.equals(pattern(r.remote_id, r.epoch, 3));
        std::printf("session %u epoch %u keys %s\n", r.remote_id, r.epoch, ok ? "ok" : "bad");
    }
    void on_role(std::uint8_t m, Role r) override { std::printf("role %u %s\n", m, role_name(r).data()); }
    void on_members(std::span<const Member> ms) override {
        std::vector<unsigned> n;
        for (const auto& m : ms) n.push_back(m.number);
        std::sort(n.begin(), n.end());
        std::printf("members");
        for (std::size_t i = 0; i < n.size(); ++i) std::printf("%c%u", i ? ',' : ' ', n[i]);
        std::printf("\n");
    }
};

[[noreturn]] void usage() {
    std::fprintf(stderr, "usage: cpg_probe --member N --group G --key FILE [--role primary|backup] [--publish N]\n");
    std::exit(2);
}

}  // namespace

int main(int argc, char** argv) {
    ClusterSettings s;
    s.enabled = true;
    unsigned publish = 0;
    for (int i = 1; i + 1 < argc; i += 2) {
        const std::string k = argv[i], v = argv[i + 1];
        if (k == "--member") s.member = static_cast<std::uint8_t>(std::atoi(v.c_str()));
        else if (k == "--group") s.group = v;
        else if (k == "--key") s.key_file = v;
        else if (k == "--role") s.role = v == "primary" ? Role::primary : Role::backup;
        else if (k == "--publish") publish = static_cast<unsigned>(std::atoi(v.c_str()));
        else usage();
    }
    std::string why;
    SecretBytes key;
    if (!check(s, why) || !config::read_cluster_key(s.key_file, key, why)) {
        std::fprintf(stderr, "cpg_probe: %s\n", why.c_str());
        return 2;
    }
    std::setvbuf(stdout, nullptr, _IOLBF, 0);
    log::init({"cpg_probe", true, false, log::Level::info});
    std::signal(SIGTERM, [](int) { g_stop = 1; });
    std::signal(SIGINT, [](int) { g_stop = 1; });
    std::signal(SIGUSR1, [](int) { g_rekey = 1; });
    std::signal(SIGUSR2, [](int) { g_promote = 1; });

    control::SteadyClock clock;
    control::EventLoop loop(clock);
    const SealKey seal_key(key.span());
    Printer printer;
    CpgTransport transport(loop, s.group);
    EngineConfig ec;
    ec.member = s.member;
    ec.max_members = s.max_members;
    ec.role = s.role;
    ec.boot_id = static_cast<std::uint64_t>(::getpid());
    Engine engine(ec, seal_key, transport, printer, [&clock] {
        return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(clock.now().time_since_epoch()).count());
    });
    engine.on_role = [](Role r) { std::printf("this member is %s\n", role_name(r).data()); };
    transport.attach(engine);
    std::uint32_t epoch = 1;
    for (unsigned r = 1; r <= publish; ++r) engine.publish(make(r, epoch));
    transport.start();

    std::function<void()> tick = [&] {
        engine.tick();
        loop.after(std::chrono::milliseconds(Engine::kHelloEveryMs), tick);
    };
    loop.after(std::chrono::milliseconds(Engine::kHelloEveryMs), tick);
    while (!g_stop) {
        loop.run_once(std::chrono::milliseconds(100));
        if (g_rekey) {
            g_rekey = 0;
            ++epoch;
            for (unsigned r = 1; r <= publish; ++r) engine.publish(make(r, epoch));
            std::printf("published epoch %u\n", epoch);
        }
        if (g_promote) {
            g_promote = 0;
            engine.set_role(Role::primary);
        }
    }
    const EngineCounters& c = engine.counters();
    std::printf("counters sent %llu send_failed %llu received %llu refused %llu reconnects %llu\n",
                static_cast<unsigned long long>(c.sent), static_cast<unsigned long long>(c.send_failed),
                static_cast<unsigned long long>(c.received), static_cast<unsigned long long>(c.refused_total()),
                static_cast<unsigned long long>(transport.reconnects()));
    transport.stop();
    return 0;
}
