// Secret bytes and the memory they live in (secret.hpp).
//
// The pool: one mutex; per size class a free list and the unused tail of its current 64 KiB
// chunk. Chunks and large blocks are anonymous mappings made for secrets only, so the
// madvise/mlock flags cover nothing else. Chunks are never given back (a freed block is
// wiped and reused by its class); a large block is wiped and unmapped when freed. The pool
// itself is never destroyed: a static SecretBytes may be freed during exit.
//
// Why not OpenSSL's secure heap (CRYPTO_secure_malloc): its arena has one size fixed at
// start (a primary with 10,000 remotes holds ~100 MB of slots and arrays, a test holds
// kilobytes), it fails when full instead of growing, rounds every block up to a power of two
// (a 1352-byte key slot takes 2048), and locks all of it or none. This pool grows on demand,
// keeps slots within 1.5x of their size, and locks chunk by chunk up to the limit.
#include "common/secret.hpp"

#include <openssl/crypto.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cstring>
#include <iterator>
#include <mutex>
#include <new>
#include <unordered_map>
#include <vector>

#include "common/log.hpp"

#if defined(__SANITIZE_ADDRESS__)
#define P3_SECRET_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define P3_SECRET_ASAN 1
#endif
#endif
#ifdef P3_SECRET_ASAN
#include <sanitizer/asan_interface.h>
#define P3_POISON(p, n) ASAN_POISON_MEMORY_REGION(p, n)
#define P3_UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION(p, n)
#else
#define P3_POISON(p, n) ((void)(p), (void)(n))
#define P3_UNPOISON(p, n) ((void)(p), (void)(n))
#endif

namespace p3 {

void secure_wipe(void* p, std::size_t n) noexcept {
    if (p && n) OPENSSL_cleanse(p, n);
}

namespace {

// Steps of 1.5x: a block wastes at most a third. Every class from 64 up is a multiple of 64,
// so cache-line-aligned requests (key slots) are served from the same chunks.
constexpr std::size_t kClasses[] = {16, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048, 3072, 4096};
constexpr std::size_t kNumClasses = std::size(kClasses);
constexpr std::size_t kChunk = 64 * 1024;

int class_of(std::size_t n, std::size_t align) noexcept {
    if (n == 0) n = 1;
    for (std::size_t i = 0; i < kNumClasses; ++i)
        if (kClasses[i] >= n && kClasses[i] % align == 0) return static_cast<int>(i);
    return -1;   // large: pages of its own
}

std::size_t page_size() noexcept {
    static const std::size_t ps = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
    return ps;
}

struct Pool {
    std::mutex mu;
    std::vector<void*> free_list[kNumClasses];
    std::uint8_t* tail[kNumClasses] = {};
    std::size_t tail_left[kNumClasses] = {};
    std::unordered_map<void*, bool> large;   // large block -> locked
    SecureMemStats st;
    bool warned = false;
};

Pool& pool() noexcept {
    static Pool* p = new Pool;   // never destroyed (see the file comment)
    return *p;
}

// len bytes (whole pages) for secrets only; nullptr when the kernel refuses the mapping or
// cannot keep it out of core dumps. locked: mlock succeeded (RLIMIT_MEMLOCK allowing).
void* map_secret(Pool& P, std::size_t len, bool& locked) noexcept {
    void* p = mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return nullptr;
    if (madvise(p, len, MADV_DONTDUMP) != 0) {   // fail closed: no secret where a dump sees it
        munmap(p, len);
        return nullptr;
    }
    // A forked child gets zeros there, not our keys (and no dangling pool: the pages exist).
    (void)madvise(p, len, MADV_WIPEONFORK);
    locked = mlock(p, len) == 0;
    P.st.mapped += len;
    if (locked) P.st.locked += len;
    else ++P.st.lock_failures;
    return p;
}

}  // namespace

void* secure_alloc(std::size_t n, std::size_t align) noexcept {
    if (align < 16) align = 16;
    if (align > 64 || (align & (align - 1)) != 0) return nullptr;
    Pool& P = pool();
    const int c = class_of(n, align);
    void* out = nullptr;
    bool locked = true, warn = false;
    {
        std::lock_guard lock(P.mu);
        if (c < 0) {
            const std::size_t len = (n + page_size() - 1) / page_size() * page_size();
            out = map_secret(P, len, locked);
            if (out) {
                try {
                    P.large.emplace(out, locked);
                } catch (...) {
                    munmap(out, len);
                    return nullptr;
                }
                P.st.in_use += len;
            }
        } else {
            const std::size_t sz = kClasses[c];
            auto& fl = P.free_list[c];
            if (!fl.empty()) {
                out = fl.back();
                fl.pop_back();
            } else {
                if (P.tail_left[c] < sz) {
                    auto* chunk = static_cast<std::uint8_t*>(map_secret(P, kChunk, locked));
                    if (!chunk) return nullptr;
                    P.tail[c] = chunk;
                    P.tail_left[c] = kChunk;
                }
                out = P.tail[c];
                P.tail[c] += sz;
                P.tail_left[c] -= sz;
            }
            P.st.in_use += sz;
            P3_POISON(out, sz);
        }
        if (!locked && !P.warned) warn = P.warned = true;
    }
    if (!out) return nullptr;
    P3_UNPOISON(out, n);
    std::memset(out, 0, n);
    if (warn) {
        rlimit rl{};
        getrlimit(RLIMIT_MEMLOCK, &rl);
        P3_LOG_WARN(SECRETS_UNLOCKED, "key memory beyond %llu KiB is not locked in RAM (RLIMIT_MEMLOCK); it stays "
                    "out of core dumps", static_cast<unsigned long long>(rl.rlim_cur / 1024));
    }
    return out;
}

void secure_free(void* p, std::size_t n, std::size_t align) noexcept {
    if (!p) return;
    if (align < 16) align = 16;
    secure_wipe(p, n);
    Pool& P = pool();
    const int c = class_of(n, align);
    std::lock_guard lock(P.mu);
    if (c < 0) {
        const std::size_t len = (n + page_size() - 1) / page_size() * page_size();
        auto it = P.large.find(p);
        if (it == P.large.end()) return;   // not ours: never unmap what we did not map
        if (it->second) P.st.locked -= len;
        P.large.erase(it);
        munmap(p, len);
        P.st.mapped -= len;
        P.st.in_use -= len;
        return;
    }
    P.st.in_use -= kClasses[c];
    P3_POISON(p, kClasses[c]);
    try {
        P.free_list[c].push_back(p);
    } catch (...) {
        // No memory for the list: the wiped block is lost, nothing else.
    }
}

SecureMemStats secure_mem_stats() noexcept {
    Pool& P = pool();
    std::lock_guard lock(P.mu);
    return P.st;
}

bool harden_process() noexcept {
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) return false;
    // Soft and hard limit: a core_pattern that ignores dumpability still gets nothing, and the
    // process cannot raise it again.
    const rlimit none{0, 0};
    return setrlimit(RLIMIT_CORE, &none) == 0;
}

// ---- SecretBytes -------------------------------------------------------------------------

SecretBytes::SecretBytes(std::size_t n) : data_(nullptr), size_(0) {
    if (n == 0) return;
    data_ = static_cast<std::uint8_t*>(secure_alloc(n));
    if (!data_) throw std::bad_alloc();
    size_ = n;
}

SecretBytes::SecretBytes(std::span<const std::uint8_t> bytes) : SecretBytes(bytes.size()) {
    if (size_) std::memcpy(data_, bytes.data(), size_);
}

void SecretBytes::reset() noexcept {
    secure_free(data_, size_);   // wipes
    data_ = nullptr;
    size_ = 0;
}

bool SecretBytes::equals(std::span<const std::uint8_t> other) const noexcept {
    if (other.size() != size_) return false;
    return size_ == 0 || CRYPTO_memcmp(data_, other.data(), size_) == 0;
}

}  // namespace p3
