// AES-GCM for the P3 wire format through Intel ipsec-mb (DESIGN.md §Wire format).
//
// Owns two things:
//  - GcmKey: the key material of one key slot, ready for the packet path: the AES-128 or
//    AES-256 key schedule with its GHASH precomputations (ipsec-mb struct gcm_key_data), the
//    4-byte salt, the size-hiding rotation key, and which of the manager's GCM functions
//    (128 or 256) seal and open under it, chosen here so no packet asks the key size. Built once by the control thread when a slot
//    is made, read-only afterwards (so any number of lcores may use it at once), wiped on
//    destruction. Neither copyable nor movable: slots point at it.
//  - GcmEngine: one per worker lcore. Owns that lcore's IMB_MGR (ipsec-mb keeps per-manager
//    state, so an engine is never shared between threads) and a little scratch memory.
//    Seal and open in place, one packet or a burst. No heap, no exceptions, no locks and no
//    syscalls after create().
//
// Nonce (12 B) = salt (4 B) || Sequence (8 B, network order, as in the P3 header).
// AAD (16 B)   = P3 Flags || P3 ID || Sequence: the P3 header itself, exactly as on the wire.
// So every call takes the 16-byte P3 header (`hdr`) and builds the nonce from the key's salt
// and hdr[8..16): the sequence can never differ between the nonce and the authenticated data.
//
// Key schedules depend on the CPU code path ipsec-mb picked (SSE/AVX/AVX2/AVX-512 lay out the
// GHASH powers differently), so GcmKey and every GcmEngine of a process use one process-wide
// choice: the best the CPU offers, or the one forced by set_arch() before the first use.
#pragma once

#include <immintrin.h>
#include <intel-ipsec-mb.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <span>

#include "common/secret.hpp"
#include "common/wire_limits.hpp"

namespace p3::wire {

enum class KeyType : std::uint8_t { aes128 = 16, aes256 = 32 };

constexpr std::size_t key_len(KeyType t) noexcept { return static_cast<std::size_t>(t); }

// Which ipsec-mb code path the process uses (the same for keys and engines).
enum class Arch : std::uint8_t { best = 0, sse, avx, avx2, avx512 };
// Force a code path (tests, benchmarks); only before the first GcmKey or GcmEngine is made.
// false when the CPU cannot run it or it is too late.
bool set_arch(Arch a) noexcept;
// The code path in use ("sse", "avx", "avx2", "avx512"; "none" before first use).
const char* arch_name() noexcept;

class alignas(64) GcmKey {
public:
    // key: 16 (AES-128) or 32 (AES-256) bytes; salt: 4 bytes. On wrong sizes or when ipsec-mb
    // cannot start, valid() is false and the object holds nothing. Control path only.
    GcmKey(std::span<const std::uint8_t> key, std::span<const std::uint8_t> salt) noexcept;
    // key || salt in one buffer (20 or 36 bytes), as lane_key_material() returns it.
    explicit GcmKey(const SecretBytes& key_and_salt) noexcept;
    // A second copy of k (schedule, salt, size-hiding key): a key slot rebuilt around the same
    // key (a TX lane's new outer header). Explicit, so a key is never copied by accident.
    struct Copy {};
    GcmKey(const GcmKey& k, Copy) noexcept;
    ~GcmKey();   // wipes the schedule, the salt and the rotation key
    GcmKey(const GcmKey&) = delete;
    GcmKey& operator=(const GcmKey&) = delete;
    GcmKey(GcmKey&&) = delete;
    GcmKey& operator=(GcmKey&&) = delete;

    bool valid() const noexcept { return valid_; }
    KeyType type() const noexcept { return type_; }
    const gcm_key_data& schedule() const noexcept { return sched_; }
    const std::uint8_t* salt() const noexcept { return salt_; }
    // Size hiding: the secret the per-packet rotation is derived from (common/sizehide.hpp).
    std::uint64_t hide_key() const noexcept { return hide_key_; }
    // The manager's one-call GCM function for this key's size (IMB_MGR::gcm128_enc or
    // gcm256_enc, ..._dec), as a member of whichever lcore's manager runs it.
    using GcmFn = aes_gcm_enc_dec_t IMB_MGR::*;
    GcmFn enc() const noexcept { return enc_; }
    GcmFn dec() const noexcept { return dec_; }

    // Convenience for slot code that holds keys by pointer; nullptr on bad sizes.
    static std::unique_ptr<GcmKey> make(std::span<const std::uint8_t> key, std::span<const std::uint8_t> salt);

private:
    gcm_key_data sched_;
    std::uint8_t salt_[kSaltLen] = {};
    std::uint64_t hide_key_ = 0;
    GcmFn enc_ = &IMB_MGR::gcm128_enc;
    GcmFn dec_ = &IMB_MGR::gcm128_dec;
    KeyType type_ = KeyType::aes128;
    bool valid_ = false;
};

// A piece of a scattered buffer (one segment of a chained mbuf).
struct IoSeg {
    std::uint8_t* data;
    std::uint32_t len;
};

class GcmEngine {
public:
    // socket_id >= 0: memory from DPDK on that NUMA socket (EAL must be up); -1: from the heap.
    // nullptr when ipsec-mb cannot start or memory is short. Control path.
    static GcmEngine* create(int socket_id = -1) noexcept;
    static void destroy(GcmEngine* e) noexcept;
    struct Deleter {
        void operator()(GcmEngine* e) const noexcept { destroy(e); }
    };
    using Ptr = std::unique_ptr<GcmEngine, Deleter>;
    static Ptr make(int socket_id = -1) noexcept { return Ptr(create(socket_id)); }

    GcmEngine(const GcmEngine&) = delete;
    GcmEngine& operator=(const GcmEngine&) = delete;

    // Contiguous, in place; hdr = the 16-byte P3 header (AAD, and nonce = salt || hdr[8..16)).
    // open() compares the tag in constant time; on false the data is garbage (the caller
    // drops the packet). No burst form: encap_burst / decap_burst seal or open each packet
    // in the pass that writes or parses its headers (wire.cpp).
    // (Inline below: the packet path calls them once per packet.)
    inline void seal(const GcmKey& k, const std::uint8_t* hdr, std::uint8_t* data, std::size_t len,
                     std::uint8_t* tag) noexcept;
    inline bool open(const GcmKey& k, const std::uint8_t* hdr, std::uint8_t* data, std::size_t len,
                     const std::uint8_t* tag) noexcept;

    // The same with the AAD apart from hdr (ESP, docs/wire-format.md §Standard ESP): the nonce
    // still = salt || hdr[8..16) (ESP's IV field), the AAD = aad_len bytes at aad.
    inline void seal_aad(const GcmKey& k, const std::uint8_t* hdr, const std::uint8_t* aad, std::size_t aad_len,
                         std::uint8_t* data, std::size_t len, std::uint8_t* tag) noexcept;
    inline bool open_aad(const GcmKey& k, const std::uint8_t* hdr, const std::uint8_t* aad, std::size_t aad_len,
                         std::uint8_t* data, std::size_t len, const std::uint8_t* tag) noexcept;

    // Scattered (chained mbufs), in place, segments in order; empty segments allowed. aad
    // nullptr: the AAD is hdr (P3); else aad_len bytes at aad (ESP).
    void seal_sgl(const GcmKey& k, const std::uint8_t* hdr, std::span<const IoSeg> segs, std::uint8_t* tag,
                  const std::uint8_t* aad = nullptr, std::size_t aad_len = kAadLen) noexcept;
    bool open_sgl(const GcmKey& k, const std::uint8_t* hdr, std::span<const IoSeg> segs, const std::uint8_t* tag,
                  const std::uint8_t* aad = nullptr, std::size_t aad_len = kAadLen) noexcept;

    IMB_MGR* mgr() noexcept { return mgr_; }
    // Scratch the wire code may use between calls (size hiding rotation): kScratchLen bytes.
    static constexpr std::size_t kScratchLen = kMaxInnerLen + kSizeHideBucket + 64;
    std::uint8_t* scratch() noexcept { return scratch_; }

private:
    GcmEngine() = default;
    ~GcmEngine() = default;
    IMB_MGR* mgr_ = nullptr;
    bool dpdk_mem_ = false;
    alignas(64) gcm_context_data ctx_{};
    alignas(64) std::uint8_t scratch_[kScratchLen];
};

// Constant-time equality of two 16-byte tags.
inline bool tag_equal(const std::uint8_t* a, const std::uint8_t* b) noexcept {
    std::uint64_t x[2], y[2];
    std::memcpy(x, a, 16);
    std::memcpy(y, b, 16);
    return ((x[0] ^ y[0]) | (x[1] ^ y[1])) == 0;
}

namespace detail {
// Nonce = salt || the sequence bytes of the P3 header.
// iv must have 16 bytes: it is written with one 16-byte store (bytes 12..15 = 0 0 0 1, the
// GCM counter start), so ipsec-mb's load of it forwards from one store instead of stalling on
// two smaller ones.
inline void make_iv(std::uint8_t* iv, const GcmKey& k, const std::uint8_t* hdr) noexcept {
    static_assert(kSaltLen == 4 && kSeqLen == 8);
    std::uint32_t salt;
    std::uint64_t seq;
    std::memcpy(&salt, k.salt(), 4);
    std::memcpy(&seq, hdr + kFlagsLen + kIdLen, 8);
    const __m128i v = _mm_set_epi32(0x01000000, static_cast<int>(seq >> 32), static_cast<int>(seq),
                                    static_cast<int>(salt));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(iv), v);
}
}  // namespace detail

// The direct GCM functions, one packet per call: measured faster than the job API for
// single-buffer AES-GCM (perf/wire/bench_wire, docs/wire-format.md), since GCM is not a
// multi-buffer algorithm in ipsec-mb and the job manager only adds its queue around the same
// code.
inline void GcmEngine::seal(const GcmKey& k, const std::uint8_t* hdr, std::uint8_t* data, std::size_t len,
                            std::uint8_t* tag) noexcept {
    alignas(16) std::uint8_t iv[16];
    detail::make_iv(iv, k, hdr);
    // What IMB_AES128/256_GCM_ENC expand to, with the function the key chose.
    (mgr_->*k.enc())(&k.schedule(), &ctx_, data, data, len, iv, hdr, kAadLen, tag, kIcvLen);
}

inline bool GcmEngine::open(const GcmKey& k, const std::uint8_t* hdr, std::uint8_t* data, std::size_t len,
                            const std::uint8_t* tag) noexcept {
    alignas(16) std::uint8_t iv[16];
    alignas(16) std::uint8_t got[kIcvLen];
    detail::make_iv(iv, k, hdr);
    (mgr_->*k.dec())(&k.schedule(), &ctx_, data, data, len, iv, hdr, kAadLen, got, kIcvLen);
    return tag_equal(got, tag);
}

inline void GcmEngine::seal_aad(const GcmKey& k, const std::uint8_t* hdr, const std::uint8_t* aad,
                                std::size_t aad_len, std::uint8_t* data, std::size_t len, std::uint8_t* tag) noexcept {
    alignas(16) std::uint8_t iv[16];
    detail::make_iv(iv, k, hdr);
    (mgr_->*k.enc())(&k.schedule(), &ctx_, data, data, len, iv, aad, aad_len, tag, kIcvLen);
}

inline bool GcmEngine::open_aad(const GcmKey& k, const std::uint8_t* hdr, const std::uint8_t* aad,
                                std::size_t aad_len, std::uint8_t* data, std::size_t len,
                                const std::uint8_t* tag) noexcept {
    alignas(16) std::uint8_t iv[16];
    alignas(16) std::uint8_t got[kIcvLen];
    detail::make_iv(iv, k, hdr);
    (mgr_->*k.dec())(&k.schedule(), &ctx_, data, data, len, iv, aad, aad_len, got, kIcvLen);
    return tag_equal(got, tag);
}

}  // namespace p3::wire
