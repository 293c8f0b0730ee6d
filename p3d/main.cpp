// p3d: the appliance process. DPDK convention for the command line:
//
//   p3d [EAL options] -- -c FILE [-f] [-v] [--insecure-key-log FILE]
//
// p3d wires the planes: configuration -> dataplane (dataplane/dataplane.hpp) -> control plane
// on the dataplane's ControlPort (control/appliance.hpp, run by control/control_thread.hpp)
// -> telemetry (dataplane/telemetry.hpp). Neither plane knows this file.
//
// Order of events: EAL -> configuration -> setup credentials and key generator -> ports, pool,
// tables, sessions -> the control plane and its thread's first published view -> telemetry ->
// privileges dropped (p3d/privileges.hpp) -> workers on every EAL lcore (the main lcore too),
// then the control thread (the setup exchange and the control channel) -> wait for SIGINT/SIGTERM -> the control thread says goodbye to
// every peer while the workers still run (a goodbye leaves through worker 0), waits for the
// answers (at most kStopGrace, 0.5 s), then asks the workers to stop -> stop the control
// thread, then the workers -> stop and close every port -> rte_eal_cleanup -> exit 0. A second
// signal during the goodbyes stops the workers at once.
// Stopping on purpose says goodbye so the peers recover at once (DESIGN.md §Session life 5);
// a p3d that is killed says nothing, and its peers find out by heartbeat_fail.
// Anything the administrator must fix first (bad EAL options, bad configuration, missing
// port, unreadable pre-shared key or certificate, missing hardware key generator) is one log
// line with its reason code and exit status 2, with nothing left running.
//
// Logging: always to syslog (daemon facility); -f (foreground) copies every line to stderr.
// p3d never forks: a service manager or the shell runs it. Under systemd (Type=notify,
// dist/systemd/p3d.service) it says READY=1 once it forwards and WATCHDOG=1 from the control
// thread's pass (p3d/sd_notify.hpp).
#include <getopt.h>
#include <grp.h>
#include <sys/resource.h>
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_lcore.h>
#include <rte_version.h>

#include "common/config.hpp"
#include "common/keygen.hpp"
#include "common/log.hpp"
#include "common/secret.hpp"
#include "control/admin/admin_server.hpp"
#include "control/admin/audit.hpp"
#include "control/appliance.hpp"
#include "control/clock.hpp"
#include "control/control_thread.hpp"
#include "control/keylog.hpp"
#include "control/setup/ike_auth.hpp"
#include "dataplane/dataplane.hpp"
#include "dataplane/telemetry.hpp"
#include "p3d/privileges.hpp"
#include "p3d/sd_notify.hpp"

namespace {

constexpr int kExitUsage = 2;

p3::dp::Dataplane* g_dp = nullptr;
p3::control::ControlThread* g_ctl = nullptr;
volatile std::sig_atomic_t g_signal = 0;
std::atomic<int> g_stops{0};   // SIGINT/SIGTERM received so far
static_assert(std::atomic<int>::is_always_lock_free, "the signal handler's counter");

p3::control::Appliance* g_app = nullptr;

// SIGHUP: re-read the configuration (an atomic store; the control thread does the work).
extern "C" void on_hangup(int) {
    if (g_app) g_app->request_reload();
}

// SIGINT/SIGTERM: the first asks the control thread to say goodbye and then stop the workers;
// a second (or one before the control thread exists) stops the workers at once. Only atomic
// stores and a lock-free fetch_add: async-signal-safe.
extern "C" void on_signal(int sig) {
    g_signal = sig;
    if (g_stops.fetch_add(1, std::memory_order_relaxed) == 0 && g_ctl)
        g_ctl->request_stop();
    else if (g_dp)
        g_dp->request_stop();
}

void usage(FILE* out) {
    std::fputs(
        "usage: p3d [EAL options] -- -c FILE [-f] [-v] [--insecure-key-log FILE]\n"
        "       p3d --version\n"
        "\n"
        "  -c, --config FILE   configuration (libconfig or the legacy line format)\n"
        "  -f, --foreground    log to stderr as well as syslog\n"
        "  -v, --verbose       log debug messages too\n"
        "  -h, --help          this text\n"
        "  --insecure-key-log FILE\n"
        "                      TESTS ONLY: append every data key installed, in clear, to FILE\n"
        "                      (created 0600; the format is in control/keylog.hpp)\n"
        "\n"
        "EAL options are DPDK's (-l, -a, --vdev, --file-prefix, ...). Without hugepages or PCI:\n"
        "  p3d --no-huge -m 512 --no-pci --vdev net_ring0 --vdev net_ring1 -- -c p3d.conf -f\n"
        "Workers run on every EAL lcore, the main lcore included; -l 0 is enough.\n"
        "Stops on SIGINT or SIGTERM (exit 0), first saying goodbye to every peer (at most 0.5 s;\n"
        "a second signal stops at once); SIGHUP re-reads the configuration file and applies\n"
        "what changed (as p3ctl reload). Exit 2: bad arguments, configuration or port.\n",
        out);
}

bool wants_help(int argc, char** argv) {
    for (int i = 1; i < argc; ++i) {
        if (std::strcmp(argv[i], "--") == 0) {
            for (int j = i + 1; j < argc; ++j)
                if (!std::strcmp(argv[j], "-h") || !std::strcmp(argv[j], "--help")) return true;
            return false;
        }
    }
    // No "--": "p3d --help" / "p3d -h" alone asks for our help, not EAL's.
    return argc == 2 && (!std::strcmp(argv[1], "-h") || !std::strcmp(argv[1], "--help"));
}

struct AppArgs {
    std::string config;
    std::string key_log;    // --insecure-key-log FILE (tests only): keys in clear
    bool foreground = false;
    bool verbose = false;
};

bool parse_app_args(int argc, char** argv, AppArgs& a) {
    static const option longopts[] = {
        {"config", required_argument, nullptr, 'c'},
        {"foreground", no_argument, nullptr, 'f'},
        {"verbose", no_argument, nullptr, 'v'},
        {"help", no_argument, nullptr, 'h'},
        {"insecure-key-log", required_argument, nullptr, 'K'},
        {nullptr, 0, nullptr, 0},
    };
    optind = 1;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, "c:fvh", longopts, nullptr)) != -1) {
        switch (c) {
            case 'c': a.config = optarg; break;
            case 'f': a.foreground = true; break;
            case 'v': a.verbose = true; break;
            case 'K': a.key_log = optarg; break;
            default:
                P3_LOG_ERROR(USAGE, "unknown or incomplete option '%s' after -- (see p3d -- --help)",
                             argv[optind - 1]);
                return false;
        }
    }
    if (optind < argc) {
        P3_LOG_ERROR(USAGE, "unexpected argument '%s' (see p3d -- --help)", argv[optind]);
        return false;
    }
    if (a.config.empty()) {
        P3_LOG_ERROR(USAGE, "no configuration: p3d [EAL options] -- -c FILE");
        return false;
    }
    return true;
}

// Where keys live, for the operator: core dumps off, key memory out of dumps, and how much of
// it can be locked in RAM.
void announce_secret_memory() {
    rlimit rl{};
    getrlimit(RLIMIT_MEMLOCK, &rl);
    char lim[64];
    if (rl.rlim_cur == RLIM_INFINITY)
        std::snprintf(lim, sizeof lim, "locked in RAM");
    else   // with CAP_IPC_LOCK the limit does not apply; P3-W0006 says when locking stops
        std::snprintf(lim, sizeof lim, "locked in RAM (RLIMIT_MEMLOCK %llu KiB)",
                      static_cast<unsigned long long>(rl.rlim_cur / 1024));
    P3_LOG_INFO(SECRETS_PROTECTED, "core dumps off; key memory excluded from dumps and %s", lim);
}

// The admin socket's path: local.admin.socket, else /run/p3/p3d.sock, or /run/p3/NAME.sock for a
// p3d started with EAL --file-prefix NAME (so p3ctl --prefix NAME finds it).
std::string admin_socket_path(const p3::config::Config& cfg, int argc, char** argv) {
    if (!cfg.local.admin.socket.empty()) return cfg.local.admin.socket;
    std::string prefix;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        if (a == "--") break;
        if (a == "--file-prefix" && i + 1 < argc) prefix = argv[++i];
        else if (a.rfind("--file-prefix=", 0) == 0) prefix = a.substr(14);
    }
    if (prefix.empty() || prefix == "rte") return "/run/p3/p3d.sock";
    return "/run/p3/" + prefix + ".sock";
}

}  // namespace

int main(int argc, char** argv) {
    if (wants_help(argc, argv)) {
        usage(stdout);
        return 0;
    }
    if (argc == 2 && (!std::strcmp(argv[1], "--version") || !std::strcmp(argv[1], "-V"))) {
        std::printf("p3d %s (%s)\n", P3_VERSION, rte_version());
        return 0;
    }
    // A SIGHUP before the control plane runs changes nothing (and does not kill p3d).
    std::signal(SIGHUP, SIG_IGN);
    // Until p3d has started, every line goes to stderr as well: whoever started it (a shell,
    // a service manager) sees why it refused. From then on, stderr only with -f.
    p3::log::init({.ident = "p3d", .to_stderr = true, .to_syslog = true,
                   .min_level = p3::log::Level::info});
    // Before anything reads or makes a key: no core dump of this process (secret.hpp).
    if (!p3::harden_process()) {
        P3_LOG_ERROR(HARDEN_FAILED, "core dumps cannot be switched off: %s", std::strerror(errno));
        return kExitUsage;
    }

    // systemd's notification socket, read before EAL (which may change the environment).
    p3::sd::Notifier notify;

    // rte_eal_init reorders argv: the EAL options as given, for the admin socket's name.
    const std::vector<char*> given(argv, argv + argc);
    int eal_args = rte_eal_init(argc, argv);
    if (eal_args < 0) {
        P3_LOG_ERROR(EAL_INIT, "rte_eal_init: %s (EAL options come before --)", rte_strerror(rte_errno));
        return kExitUsage;
    }
    argc -= eal_args;
    argv += eal_args;

    AppArgs args;
    if (!parse_app_args(argc, argv, args)) {
        rte_eal_cleanup();
        return kExitUsage;
    }
    const p3::log::Options running{.ident = "p3d", .to_stderr = args.foreground, .to_syslog = true,
                                   .min_level = args.verbose ? p3::log::Level::debug : p3::log::Level::info};
    p3::log::init({.ident = "p3d", .to_stderr = true, .to_syslog = true, .min_level = running.min_level});

    auto loaded = p3::config::load_file(args.config);
    if (auto* err = std::get_if<p3::config::Error>(&loaded)) {
        p3::log::write(p3::log::Level::error, err->reason, "%s", err->str().c_str());
        rte_eal_cleanup();
        return kExitUsage;
    }
    const auto& cfg = std::get<p3::config::Config>(loaded);
    // What would keep it from forwarding (p3ctl config check refuses it): said, not refused,
    // so a half-provisioned appliance still comes up to be administered.
    for (const auto& e : p3::config::check_start(cfg))
        p3::log::write(p3::log::Level::warning, e.reason, "%s", e.str().c_str());

    // Before any key is installed; loud (P3-W0009) because it defeats everything else here.
    if (!args.key_log.empty()) {
        std::string why;
        if (!p3::control::keylog::open(args.key_log, why)) {
            P3_LOG_ERROR(KEYLOG_FAILED, "--insecure-key-log %s", why.c_str());
            rte_eal_cleanup();
            return kExitUsage;
        }
    }

    announce_secret_memory();

    // Keys for rekeys and key arrays: a generator that cannot work stops p3d now, not at the
    // first rekey (announce() logs which source, or why none).
    p3::keys::KeyGenerator keygen(cfg.local.key_generation);
    if (!keygen.announce()) {
        rte_eal_cleanup();
        return kExitUsage;
    }
    // Credentials of the setup exchange, per remote (its own psk_file, or the local
    // certificate), needed when a remote has no static keys. A remote whose psk_file does not
    // exist yet (P3-W0110), or that has no credential at all (P3-W0418), stays down and is
    // logged; the others run. Any other unusable key file stops p3d.
    std::optional<p3::setup::Credentials> creds;
    {   // also with no remote to set up yet: one may be added at run time
        std::string err;
        p3::Reason why = p3::Reason::SETUP_CREDENTIALS;
        creds = p3::setup::Credentials::load(cfg, err, why);
        if (!creds) {
            p3::log::write(p3::log::Level::error, why, "setup credentials: %s", err.c_str());
            rte_eal_cleanup();
            return kExitUsage;
        }
    }
    p3::dp::Options opts;
    opts.name = "p3";
    p3::dp::Dataplane dp(cfg, opts);
    if (!dp.init()) {
        dp.close();
        rte_eal_cleanup();
        return kExitUsage;
    }
    // The control plane on the dataplane's port, and its thread on one clock. Declared after
    // the dataplane: the thread is joined (ctl.stop()) before anything below goes.
    p3::control::SteadyClock clock;
    p3::control::Appliance control(cfg, std::move(creds), keygen, clock, dp.control_port());
    p3::control::ControlThread ctl(dp.control_port(), &control, clock);
    // The admin socket and the audit trail, served on the control thread's pass. Neither can
    // be made: p3d does not start (an appliance nobody can administer or audit).
    const p3::config::Admin& ac = cfg.local.admin;
    p3::admin::Audit audit;
    p3::admin::ServerOptions aopt{admin_socket_path(cfg, static_cast<int>(given.size()), const_cast<char**>(given.data())),
                                  ac.group, ac.viewer_group, {}};
    p3::admin::AdminServer admin(aopt, control, audit, clock);
    {
        std::string why;
        if (!audit.open(ac.audit, why)) {
            P3_LOG_ERROR(AUDIT_OPEN, "audit file: %s", why.c_str());
            dp.close();
            rte_eal_cleanup();
            return kExitUsage;
        }
        if (!admin.open(why)) {
            P3_LOG_ERROR(ADMIN_SOCKET, "admin socket: %s", why.c_str());
            dp.close();
            rte_eal_cleanup();
            return kExitUsage;
        }
        if (!admin.note().empty()) P3_LOG_WARN(ADMIN_VIEWER_ACL, "admin socket: %s", admin.note().c_str());
        if (!getgrnam(ac.group.c_str()))
            P3_LOG_WARN(ADMIN_NO_GROUP, "admin group '%s' does not exist: only root may change anything", ac.group.c_str());
        P3_LOG_INFO(ADMIN_READY, "admin socket %s (group %s, viewers %s), audit %s", aopt.socket_path.c_str(),
                    ac.group.c_str(), ac.viewer_group.c_str(), ac.audit.c_str());
    }
    control.set_audit(&audit);
    ctl.set_admin([&admin, &notify](p3::control::TimePoint now) {
        notify.tick(std::chrono::time_point_cast<p3::sd::Notifier::Clock::duration>(now));
        return admin.poll(now);
    });
    p3::dp::Telemetry telemetry;
    telemetry.attach(&dp);
    p3::dp::register_pdump();

    // A stop on purpose: the goodbyes first, then the workers (see the top of this file).
    ctl.set_on_stopped([&dp] { dp.request_stop(); });
    g_dp = &dp;
    g_ctl = &ctl;
    g_app = &control;
    struct sigaction sa{};
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, nullptr);
    sigaction(SIGTERM, &sa, nullptr);
    sa.sa_handler = on_hangup;
    sigaction(SIGHUP, &sa, nullptr);
    std::signal(SIGPIPE, SIG_IGN);

    // Everything that needs root is done (EAL, ports, admin socket, audit file): down to what
    // the run time needs, in every thread, before the workers and the control thread run
    // (p3d/privileges.hpp). A drop that fails stops p3d.
    const bool dropped = p3::priv::drop_after_start();
    if (!dropped || !dp.start() || !ctl.start("p3-ctl")) {
        dp.request_stop();
        ctl.stop();
        admin.close();
        dp.wait();
        telemetry.detach();
        g_dp = nullptr;
        g_ctl = nullptr;
        g_app = nullptr;
        dp.close();
        rte_eal_cleanup();
        return 1;
    }
    P3_LOG_NOTICE(START_OK, "p3d started: role %s, %u worker lcore(s), %zu remote(s), pid %d",
                  cfg.role == p3::config::Role::primary ? "primary" : "secondary", dp.workers(),
                  cfg.remotes.size(), static_cast<int>(getpid()));
    if (notify.active()) {
        char msg[160];
        std::snprintf(msg, sizeof msg, "READY=1\nSTATUS=%s, %u worker lcore(s), %zu remote(s)",
                      cfg.role == p3::config::Role::primary ? "primary" : "secondary", dp.workers(),
                      cfg.remotes.size());
        if (!notify.send(msg))
            P3_LOG_WARN(SD_NOTIFY_FAILED, "READY=1 to NOTIFY_SOCKET: %s", std::strerror(errno));
        else
            P3_LOG_INFO(SD_READY, "told systemd p3d is ready (watchdog %lld ms, 0: none)",
                        static_cast<long long>(notify.watchdog().count() / 1000));
    }
    p3::log::init(running);
    dp.run_here();   // the main lcore's worker; returns once the goodbyes are done (or a second signal)
    notify.send("STOPPING=1\nSTATUS=stopping");
    ctl.stop();      // the control plane first: it sends through the workers' ring
    admin.close();   // its clients closed, the socket file unlinked
    dp.wait();
    telemetry.detach();
    g_dp = nullptr;
    g_ctl = nullptr;
    g_app = nullptr;
    dp.abandon_tables_at_exit();   // exiting: no seconds spent zeroing route tables
    dp.close();
    p3::dp::unregister_pdump();
    rte_eal_cleanup();
    p3::control::keylog::close();
    P3_LOG_NOTICE(STOP_OK, "p3d stopped on signal %d", static_cast<int>(g_signal));
    return 0;
}
