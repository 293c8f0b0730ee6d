// Secret bytes: key material, salts, pre-shared keys. Wiped (OPENSSL_cleanse) whenever the
// storage is released, deliberately without any formatting or streaming operator, so a
// secret cannot be printed by accident. Copy is explicit (clone()).
//
// Where secrets live (docs/key-slots.md §Secrets in memory): SecretBytes and the key slots
// take their memory from secure_alloc(), a pool of its own mmap'ed pages that are excluded
// from core dumps (MADV_DONTDUMP), zeroed in a forked child (MADV_WIPEONFORK) and locked in RAM
// (mlock) while RLIMIT_MEMLOCK allows; past the limit the pages stay unlocked, counted, and
// logged once (P3-W0006). Small requests come from size classes carved out of 64 KiB chunks
// (one mutex, a free list per class); large ones are whole pages of their own. Freed memory
// is wiped before it goes back (and poisoned under AddressSanitizer, so a use after free of
// a key is caught like one on the heap).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <utility>

namespace p3 {

// Overwrites memory in a way the compiler may not elide.
void secure_wipe(void* p, std::size_t n) noexcept;

// Secret memory: n bytes aligned to align (a power of two up to 64), zero-filled. nullptr when
// no memory is left. secure_free() wipes the n bytes and takes the block back; n and align
// must be the ones it was allocated with. Any thread.
void* secure_alloc(std::size_t n, std::size_t align = 16) noexcept;
void secure_free(void* p, std::size_t n, std::size_t align = 16) noexcept;

struct SecureMemStats {
    std::size_t mapped = 0;          // bytes of secret pages mapped (all excluded from dumps)
    std::size_t locked = 0;          // of which locked in RAM
    std::size_t in_use = 0;          // bytes handed out (rounded to their class)
    std::uint64_t lock_failures = 0; // mappings left unlocked (RLIMIT_MEMLOCK)
};
SecureMemStats secure_mem_stats() noexcept;

// Process start-up, before any secret is read or made: no core dump of this process
// (PR_SET_DUMPABLE 0, which also stops ptrace and /proc/PID/mem by other users, and
// RLIMIT_CORE 0). false with errno set when the kernel refused.
bool harden_process() noexcept;

class SecretBytes {
public:
    SecretBytes() noexcept = default;
    explicit SecretBytes(std::size_t n);
    explicit SecretBytes(std::span<const std::uint8_t> bytes);
    ~SecretBytes() { reset(); }

    SecretBytes(SecretBytes&& o) noexcept
        : data_(std::exchange(o.data_, nullptr)), size_(std::exchange(o.size_, 0)) {}
    SecretBytes& operator=(SecretBytes&& o) noexcept {
        if (this != &o) {
            reset();
            data_ = std::exchange(o.data_, nullptr);
            size_ = std::exchange(o.size_, 0);
        }
        return *this;
    }
    SecretBytes(const SecretBytes&) = delete;
    SecretBytes& operator=(const SecretBytes&) = delete;

    SecretBytes clone() const { return SecretBytes(span()); }

    std::uint8_t* data() noexcept { return data_; }
    const std::uint8_t* data() const noexcept { return data_; }
    std::size_t size() const noexcept { return size_; }
    bool empty() const noexcept { return size_ == 0; }
    std::span<const std::uint8_t> span() const noexcept { return {data_, size_}; }
    std::span<std::uint8_t> span() noexcept { return {data_, size_}; }

    // Wipes and frees.
    void reset() noexcept;

    // Constant-time comparison of contents (sizes are not secret).
    bool equals(std::span<const std::uint8_t> other) const noexcept;

private:
    std::uint8_t* data_ = nullptr;
    std::size_t size_ = 0;
};

}  // namespace p3
