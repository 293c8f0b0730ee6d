// Secrets in memory (common/secret.hpp, docs/key-slots.md §Secrets in memory): what the kernel
// says about the pages holding SecretBytes and key slots (/proc/self/smaps VmFlags: "dd" =
// excluded from core dumps, "lo" = locked), the fallback when RLIMIT_MEMLOCK stops locking,
// and the process hardening p3d runs first (PR_SET_DUMPABLE 0, RLIMIT_CORE 0).
#include <catch2/catch.hpp>

#include <linux/capability.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "common/log.hpp"
#include "common/secret.hpp"
#include "common/slots.hpp"

namespace {

// The VmFlags of the mapping that holds address p ("" when none does).
std::string vm_flags(const void* p) {
    const auto a = reinterpret_cast<std::uintptr_t>(p);
    std::ifstream f("/proc/self/smaps");
    std::string line;
    bool inside = false;
    while (std::getline(f, line)) {
        unsigned long lo = 0, hi = 0;
        if (std::sscanf(line.c_str(), "%lx-%lx ", &lo, &hi) == 2 && line.find(':') > line.find(' ')) {
            inside = a >= lo && a < hi;
            continue;
        }
        if (inside && line.rfind("VmFlags:", 0) == 0) return line.substr(8) + " ";
    }
    return "";
}
bool has_flag(const std::string& flags, const char* f) { return flags.find(std::string(" ") + f + " ") != std::string::npos; }

bool can_lock_ipc() {
    __user_cap_header_struct h{_LINUX_CAPABILITY_VERSION_3, 0};
    __user_cap_data_struct d[2]{};
    if (syscall(SYS_capget, &h, d) != 0) return false;
    return (d[0].effective & (1u << CAP_IPC_LOCK)) != 0;
}
// Locking is allowed when the process may lock without limit or the limit leaves room.
bool lock_allowed() {
    rlimit rl{};
    getrlimit(RLIMIT_MEMLOCK, &rl);
    return can_lock_ipc() || rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur >= (8u << 20);
}

}  // namespace

TEST_CASE("secrets: SecretBytes live in pages excluded from core dumps, locked where the limit allows", "[secret]") {
    p3::SecretBytes small(32);
    p3::SecretBytes large(100 * 1024);   // pages of its own
    for (const p3::SecretBytes* s : {&small, &large}) {
        const std::string f = vm_flags(s->data());
        INFO("VmFlags:" << f);
        REQUIRE_FALSE(f.empty());
        CHECK(has_flag(f, "dd"));
        if (lock_allowed()) CHECK(has_flag(f, "lo"));
        else WARN("no CAP_IPC_LOCK and a small RLIMIT_MEMLOCK: locking not checked");
    }
    // The content is what was asked (zeroed, usable) and cheap things stay cheap: a few bytes
    // take a small class, not a page.
    for (auto b : small.span()) REQUIRE(b == 0);
    const auto before = p3::secure_mem_stats().in_use;
    {
        std::vector<p3::SecretBytes> many;
        for (int i = 0; i < 1000; ++i) many.emplace_back(36);
        CHECK(p3::secure_mem_stats().in_use - before == 1000 * 48);
    }
    CHECK(p3::secure_mem_stats().in_use == before);
}

TEST_CASE("secrets: a freed secret is wiped before its block is reused", "[secret]") {
    auto* p = static_cast<std::uint8_t*>(p3::secure_alloc(64));
    REQUIRE(p != nullptr);
    std::memset(p, 0xab, 64);
    p3::secure_free(p, 64);
    auto* q = static_cast<std::uint8_t*>(p3::secure_alloc(64));
    REQUIRE(q == p);   // the class's free list gives the block back
    for (int i = 0; i < 64; ++i) REQUIRE(q[i] == 0);
    p3::secure_free(q, 64);
}

TEST_CASE("secrets: key slots live in pages excluded from core dumps", "[secret][slots]") {
    rte_rcu_qsbr* q = p3::wire::qsbr_create(1);
    REQUIRE(q != nullptr);
    {
        p3::wire::SlotTable t(p3::wire::SlotTableConfig{64, 4, 2}, q);
        const std::uint8_t key[16] = {1, 2, 3};
        const std::uint8_t salt[4] = {9, 9, 9, 9};
        auto id = t.reserve_rx(1);
        REQUIRE(id);
        REQUIRE(t.publish_rx(*id, key, salt, p3::wire::RxParams{}));
        p3::wire::TxParams tp;
        tp.session = 1;
        tp.peer_id = 0x101;
        tp.outer.src = *p3::IpAddr::parse("192.0.2.1");
        tp.outer.dst = *p3::IpAddr::parse("192.0.2.2");
        REQUIRE(t.publish_tx(key, salt, tp));
        for (const void* slot : {static_cast<const void*>(t.rx(id->raw())), static_cast<const void*>(t.tx(1, 0))}) {
            REQUIRE(slot != nullptr);
            const std::string f = vm_flags(slot);
            INFO("VmFlags:" << f);
            CHECK(has_flag(f, "dd"));
            if (lock_allowed()) CHECK(has_flag(f, "lo"));
            CHECK(reinterpret_cast<std::uintptr_t>(slot) % RTE_CACHE_LINE_SIZE == 0);
        }
    }
    p3::wire::qsbr_free(q);
}

// In a child: no CAP_IPC_LOCK, RLIMIT_MEMLOCK of 64 KiB. Secrets beyond it are still made,
// still excluded from dumps, counted unlocked, and P3-W0006 is logged once.
TEST_CASE("secrets: past RLIMIT_MEMLOCK secrets stay usable and out of dumps, and it is said once", "[secret]") {
    const pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        __user_cap_header_struct h{_LINUX_CAPABILITY_VERSION_3, 0};
        __user_cap_data_struct d[2]{};
        syscall(SYS_capget, &h, d);
        d[0].effective &= ~(1u << CAP_IPC_LOCK);
        if (syscall(SYS_capset, &h, d) != 0) _exit(10);
        const rlimit lim{64 * 1024, 64 * 1024};
        if (setrlimit(RLIMIT_MEMLOCK, &lim) != 0) _exit(11);
        static unsigned w0006 = 0;
        p3::log::Options o;
        o.to_stderr = false;
        p3::log::init(o);
        p3::log::set_sink([](p3::log::Level, p3::Reason r, std::string_view, void*) {
            if (r == p3::Reason::SECRETS_UNLOCKED) ++w0006;
        }, nullptr);
        const auto before = p3::secure_mem_stats();
        std::vector<p3::SecretBytes> keys;
        for (int i = 0; i < 64; ++i) keys.emplace_back(8192);   // 512 KiB, pages of their own
        const auto after = p3::secure_mem_stats();
        int rc = 0;
        if (after.lock_failures <= before.lock_failures) rc |= 1;
        if (!has_flag(vm_flags(keys.back().data()), "dd")) rc |= 2;
        if (has_flag(vm_flags(keys.back().data()), "lo")) rc |= 4;
        if (w0006 != 1) rc |= 8;
        keys.back().data()[0] = 1;   // usable
        _exit(rc);
    }
    int status = 0;
    REQUIRE(waitpid(pid, &status, 0) == pid);
    REQUIRE(WIFEXITED(status));
    // 1: nothing counted unlocked; 2: not excluded from dumps; 4: locked anyway; 8: not logged
    // exactly once; 10/11: the child could not drop the capability or set the limit.
    CHECK(WEXITSTATUS(status) == 0);
}

TEST_CASE("secrets: the process hardening p3d runs first switches core dumps off", "[secret][harden]") {
    const pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        int rc = 0;
        if (prctl(PR_GET_DUMPABLE) != 1) rc |= 1;   // the starting point: dumpable
        if (!p3::harden_process()) rc |= 2;
        if (prctl(PR_GET_DUMPABLE) != 0) rc |= 4;
        rlimit rl{};
        getrlimit(RLIMIT_CORE, &rl);
        if (rl.rlim_cur != 0 || rl.rlim_max != 0) rc |= 8;
        _exit(rc);
    }
    int status = 0;
    REQUIRE(waitpid(pid, &status, 0) == pid);
    REQUIRE(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 0);
}
