// p3d/privileges.cpp: see privileges.hpp. libcap-ng computes and applies the set on the
// calling thread (and reads it back to check); the other threads copy it with capset(2) from
// a signal handler, because Linux lets a thread change only its own capabilities.
#include "p3d/privileges.hpp"

#include <cap-ng.h>
#include <dirent.h>
#include <linux/capability.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <set>
#include <string>
#include <vector>

#include <rte_eal.h>

#include "common/log.hpp"

namespace p3::priv {
namespace {

struct Keep {
    unsigned cap;
    const char* why;
};

// What the run time really does (privileges.hpp says each in full).
std::vector<Keep> needed() {
    std::vector<Keep> k{
        {CAP_IPC_LOCK, "key memory and DPDK memory locked as they grow"},
        {CAP_CHOWN, "config save keeps the file's owner and group"},
    };
    if (rte_eal_iova_mode() == RTE_IOVA_PA && rte_eal_has_hugepages())
        k.push_back({CAP_SYS_ADMIN, "IOVA as PA: physical addresses of hugepages added at run time"});
    return k;
}

// The set every other thread copies, read back from the calling thread once libcap-ng applied it.
__user_cap_header_struct g_hdr{};
__user_cap_data_struct g_data[_LINUX_CAPABILITY_U32S_3]{};
std::atomic<int> g_answers{0};
std::atomic<int> g_failures{0};
bool g_bounds = true;   // false without capabilities: no CAP_SETPCAP to empty the bounding set

// Runs in each other thread: plain system calls only (async-signal-safe). Idempotent: a
// thread made after the drop by a thread already dropped has nothing left to drop.
extern "C" void on_drop_signal(int) {
    const int saved = errno;
    bool ok = true;
    for (long cap = 0; g_bounds && cap < 64; ++cap) {   // the bounding set first: it needs CAP_SETPCAP
        const int in = prctl(PR_CAPBSET_READ, cap, 0, 0, 0);
        if (in < 0) break;                  // past the kernel's last capability
        if (in == 1 && prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0) ok = false;
    }
    prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);   // EINVAL on old kernels: none there
    __user_cap_header_struct hdr = g_hdr;
    __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3];
    std::memcpy(data, g_data, sizeof data);
    if (syscall(SYS_capset, &hdr, data) != 0) ok = false;
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) ok = false;
    if (!ok) g_failures.fetch_add(1, std::memory_order_relaxed);
    g_answers.fetch_add(1, std::memory_order_release);
    errno = saved;
}

std::vector<pid_t> other_threads() {
    std::vector<pid_t> tids;
    const pid_t self = static_cast<pid_t>(syscall(SYS_gettid));
    if (DIR* d = opendir("/proc/self/task")) {
        while (const dirent* e = readdir(d)) {
            const pid_t t = static_cast<pid_t>(std::atoi(e->d_name));
            if (t > 0 && t != self) tids.push_back(t);
        }
        closedir(d);
    }
    return tids;
}

// Every other thread applies g_hdr/g_data; until a pass over /proc/self/task finds none new
// (DPDK's telemetry thread makes a thread per client: one made while we signal is caught by
// the next pass). false: why says which thread or step.
bool drop_other_threads(std::string& why) {
    const int sig = SIGRTMIN + 3;   // unused by p3d and DPDK; glibc keeps the first two
    struct sigaction sa{};
    sa.sa_handler = on_drop_signal;
    sa.sa_flags = SA_RESTART;        // DPDK's threads block in read/recvmsg/accept: resume them
    sigemptyset(&sa.sa_mask);
    if (sigaction(sig, &sa, nullptr) != 0) { why = std::string("sigaction: ") + std::strerror(errno); return false; }
    std::set<pid_t> done;
    int sent = 0;
    bool ok = true;
    // One thread at a time: an answer missing is that thread's.
    const timespec ms{0, 1000000};
    for (int pass = 0; pass < 8 && ok; ++pass) {
        int fresh = 0;
        for (pid_t t : other_threads()) {
            if (!ok || !done.insert(t).second) continue;
            if (syscall(SYS_tgkill, getpid(), t, sig) != 0) {
                if (errno != ESRCH) why = "tgkill " + std::to_string(t) + ": " + std::strerror(errno), ok = false;
                continue;   // ESRCH: it ended before the signal
            }
            ++fresh;
            // Answered within a scheduling round; 2 s is a thread that never will, unless it
            // ended meanwhile (a telemetry client's thread).
            int i = 0;
            while (i < 2000 && g_answers.load(std::memory_order_acquire) == sent) nanosleep(&ms, nullptr), ++i;
            if (g_answers.load(std::memory_order_acquire) > sent) { ++sent; continue; }
            const std::string task = "/proc/self/task/" + std::to_string(t);
            if (access(task.c_str(), F_OK) == 0) why = "thread " + std::to_string(t) + " did not answer in 2 s", ok = false;
            else ++sent, g_answers.fetch_add(1);   // ended meanwhile: nothing left to drop
        }
        if (fresh == 0) break;
    }
    // Ignored from now on, not the default (which ends the process): a thread that did not
    // answer in time must not take p3d down while it stops in order.
    sa.sa_handler = SIG_IGN;
    sigaction(sig, &sa, nullptr);
    if (ok && g_failures.load() != 0) {
        why = std::to_string(g_failures.load()) + " thread(s) could not apply the reduced set";
        ok = false;
    }
    return ok;
}

// The calling thread as Linux now sees it (libcap-ng may report success for a bounding set it
// could not empty): "" when it holds exactly `kept` and, when it could empty it (bounds), nothing
// is left in the bounding set.
std::string check_self(const std::vector<unsigned>& kept, bool bounds) {
    for (unsigned long cap = 0; bounds && cap < 64; ++cap) {
        const int in = prctl(PR_CAPBSET_READ, cap, 0, 0, 0);
        if (in < 0) break;
        if (in == 1)
            return std::string("the bounding set still holds ") + capng_capability_to_name(static_cast<unsigned>(cap)) +
                   " (emptying it needs CAP_SETPCAP)";
    }
    capng_clear(CAPNG_SELECT_ALL);
    if (capng_get_caps_process() != 0) return "cannot read the capabilities back";
    for (unsigned c : kept)
        if (capng_have_capability(CAPNG_EFFECTIVE, c) != 1) return std::string(capng_capability_to_name(c)) + " was not kept";
    unsigned held = 0;
    for (unsigned c = 0; c < 64; ++c) held += capng_have_capability(CAPNG_PERMITTED, c) == 1;
    if (held != kept.size()) return std::to_string(held) + " capabilities permitted, " + std::to_string(kept.size()) + " wanted";
    return {};
}

}  // namespace

bool drop_after_start() {
    if (capng_get_caps_process() != 0) {
        P3_LOG_ERROR(PRIV_DROP_FAILED, "privileges: cannot read this process's capabilities");
        return false;
    }
    std::string kept_text;
    std::vector<unsigned> kept;
    const bool had_caps = capng_have_capabilities(CAPNG_SELECT_CAPS) != CAPNG_NONE;
    if (had_caps) {
        for (const Keep& k : needed()) {
            const char* name = capng_capability_to_name(k.cap);
            if (capng_have_capability(CAPNG_PERMITTED, k.cap) != 1) {
                P3_LOG_WARN(PRIV_CAP_MISSING, "privileges: %s not held at start; needed for: %s", name, k.why);
                continue;
            }
            kept.push_back(k.cap);
            kept_text += std::string(kept_text.empty() ? "" : ", ") + name + " (" + k.why + ")";
        }
    }
    // The calling thread through libcap-ng: the set above in permitted and effective, nothing
    // inheritable or ambient, the bounding set empty (p3d never executes a program).
    capng_clear(CAPNG_SELECT_ALL);
    for (unsigned c : kept) capng_update(CAPNG_ADD, static_cast<capng_type_t>(CAPNG_EFFECTIVE | CAPNG_PERMITTED), c);
    g_bounds = had_caps;
    const int rc = had_caps ? capng_apply(CAPNG_SELECT_ALL) : 0;
    std::string why;
    if (rc == 0 && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) why = std::string("no_new_privs: ") + std::strerror(errno);
    else if (rc != 0) why = "capng_apply: " + std::to_string(rc) + " (the bounding set needs CAP_SETPCAP)";
    if (why.empty()) why = check_self(kept, had_caps);
    if (why.empty()) {
        g_hdr.version = _LINUX_CAPABILITY_VERSION_3;
        g_hdr.pid = 0;
        if (syscall(SYS_capget, &g_hdr, g_data) != 0) why = std::string("capget: ") + std::strerror(errno);
    }
    if (why.empty()) drop_other_threads(why);
    if (!why.empty()) {
        P3_LOG_ERROR(PRIV_DROP_FAILED, "privileges: %s", why.c_str());
        return false;
    }
    if (!had_caps)
        P3_LOG_WARN(PRIV_NONE, "privileges: started without capabilities; none to drop, no_new_privs set");
    else
        P3_LOG_INFO(PRIV_DROPPED, "privileges dropped in every thread: kept %s; bounding set empty, no_new_privs set",
                    kept_text.empty() ? "no capability" : kept_text.c_str());
    return true;
}

}  // namespace p3::priv
