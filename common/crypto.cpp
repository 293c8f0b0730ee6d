// AES-GCM through ipsec-mb: key schedules (GcmKey) and per-lcore engines (GcmEngine).
// See crypto.hpp. The one piece of process-wide state is the code path choice and the
// manager the control thread uses to expand keys (its function pointers only; expanding a
// key writes nothing into the manager, so concurrent key setup is safe once it exists).
#include "common/crypto.hpp"

#include <openssl/crypto.h>
#include <rte_malloc.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <new>

#include "common/sizehide.hpp"

namespace p3::wire {

namespace {

std::atomic<Arch> g_arch_wanted{Arch::best};
std::atomic<Arch> g_arch_used{Arch::best};   // best = not decided yet
std::once_flag g_once;
IMB_MGR* g_key_mgr = nullptr;

// Initialises mgr for the process-wide code path; false when the CPU cannot run it.
bool init_mgr(IMB_MGR* mgr, Arch a) noexcept {
    switch (a) {
        case Arch::sse: init_mb_mgr_sse(mgr); break;
        case Arch::avx: init_mb_mgr_avx(mgr); break;
        case Arch::avx2: init_mb_mgr_avx2(mgr); break;
        case Arch::avx512: init_mb_mgr_avx512(mgr); break;
        case Arch::best: {
            IMB_ARCH got = IMB_ARCH_NONE;
            init_mb_mgr_auto(mgr, &got);
            break;
        }
    }
    return imb_get_errno(mgr) == 0;
}

Arch arch_of(IMB_ARCH a) noexcept {
    switch (a) {
        case IMB_ARCH_AVX512: return Arch::avx512;
        case IMB_ARCH_AVX2: return Arch::avx2;
        case IMB_ARCH_AVX: return Arch::avx;
        default: return Arch::sse;
    }
}

// Decides the code path once (the first key or engine) and keeps a manager for key setup.
IMB_MGR* key_mgr() noexcept {
    std::call_once(g_once, [] {
        IMB_MGR* m = alloc_mb_mgr(0);
        if (m == nullptr) return;
        Arch a = g_arch_wanted.load();
        if (a == Arch::best) {
            IMB_ARCH got = IMB_ARCH_NONE;
            init_mb_mgr_auto(m, &got);
            if (imb_get_errno(m) != 0 || got == IMB_ARCH_NONE || got == IMB_ARCH_NOAESNI) {
                free_mb_mgr(m);
                return;
            }
            a = arch_of(got);
        }
        if (!init_mgr(m, a)) {
            free_mb_mgr(m);
            return;
        }
        g_arch_used.store(a);
        g_key_mgr = m;
    });
    return g_key_mgr;
}

}  // namespace

bool set_arch(Arch a) noexcept {
    if (g_key_mgr != nullptr) return g_arch_used.load() == a || a == Arch::best;
    if (a != Arch::best) {
        IMB_MGR* m = alloc_mb_mgr(0);
        if (m == nullptr) return false;
        const bool ok = init_mgr(m, a);
        free_mb_mgr(m);
        if (!ok) return false;
    }
    g_arch_wanted.store(a);
    return true;
}

const char* arch_name() noexcept {
    if (g_key_mgr == nullptr) return "none";
    switch (g_arch_used.load()) {
        case Arch::sse: return "sse";
        case Arch::avx: return "avx";
        case Arch::avx2: return "avx2";
        case Arch::avx512: return "avx512";
        default: return "none";
    }
}


// ---- GcmKey -------------------------------------------------------------------------------

GcmKey::GcmKey(std::span<const std::uint8_t> key, std::span<const std::uint8_t> salt) noexcept {
    std::memset(&sched_, 0, sizeof sched_);
    if ((key.size() != kAes128KeyLen && key.size() != kAes256KeyLen) || salt.size() != kSaltLen) return;
    IMB_MGR* m = key_mgr();
    if (m == nullptr) return;
    type_ = key.size() == kAes128KeyLen ? KeyType::aes128 : KeyType::aes256;
    if (type_ == KeyType::aes128) {
        IMB_AES128_GCM_PRE(m, key.data(), &sched_);
    } else {
        IMB_AES256_GCM_PRE(m, key.data(), &sched_);
        enc_ = &IMB_MGR::gcm256_enc;
        dec_ = &IMB_MGR::gcm256_dec;
    }
    std::memcpy(salt_, salt.data(), kSaltLen);
    hide_key_ = sizehide_key(key, salt);
    valid_ = true;
}

GcmKey::GcmKey(const SecretBytes& key_and_salt) noexcept
    : GcmKey(key_and_salt.size() > kSaltLen ? key_and_salt.span().first(key_and_salt.size() - kSaltLen)
                                            : std::span<const std::uint8_t>{},
             key_and_salt.size() > kSaltLen ? key_and_salt.span().last(kSaltLen) : std::span<const std::uint8_t>{}) {}

GcmKey::GcmKey(const GcmKey& k, Copy) noexcept
    : sched_(k.sched_), hide_key_(k.hide_key_), enc_(k.enc_), dec_(k.dec_), type_(k.type_), valid_(k.valid_) {
    std::memcpy(salt_, k.salt_, kSaltLen);
}

GcmKey::~GcmKey() {
    OPENSSL_cleanse(&sched_, sizeof sched_);
    OPENSSL_cleanse(salt_, sizeof salt_);
    OPENSSL_cleanse(&hide_key_, sizeof hide_key_);
}

std::unique_ptr<GcmKey> GcmKey::make(std::span<const std::uint8_t> key, std::span<const std::uint8_t> salt) {
    auto k = std::make_unique<GcmKey>(key, salt);
    if (!k->valid()) return nullptr;
    return k;
}

// ---- GcmEngine ------------------------------------------------------------------------------

GcmEngine* GcmEngine::create(int socket_id) noexcept {
    if (key_mgr() == nullptr) return nullptr;   // decides the code path for the process
    void* mem;
    const bool dpdk = socket_id >= 0;
    if (dpdk) mem = rte_zmalloc_socket("p3_gcm_engine", sizeof(GcmEngine), 64, socket_id);
    else mem = std::aligned_alloc(64, (sizeof(GcmEngine) + 63) / 64 * 64);
    if (mem == nullptr) return nullptr;
    GcmEngine* e = new (mem) GcmEngine();
    e->dpdk_mem_ = dpdk;
    const std::size_t msize = imb_get_mb_mgr_size();
    void* mm = dpdk ? rte_zmalloc_socket("p3_imb_mgr", msize, 64, socket_id) : std::aligned_alloc(64, (msize + 63) / 64 * 64);
    if (mm == nullptr) {
        destroy(e);
        return nullptr;
    }
    e->mgr_ = imb_set_pointers_mb_mgr(mm, 0, 1);
    if (e->mgr_ == nullptr || !init_mgr(e->mgr_, g_arch_used.load())) {
        if (e->mgr_ == nullptr) {
            if (dpdk) rte_free(mm);
            else std::free(mm);
        }
        destroy(e);
        return nullptr;
    }
    return e;
}

void GcmEngine::destroy(GcmEngine* e) noexcept {
    if (e == nullptr) return;
    const bool dpdk = e->dpdk_mem_;
    if (e->mgr_ != nullptr) {
        if (dpdk) rte_free(e->mgr_);
        else std::free(e->mgr_);
    }
    // Scratch and context held plaintext and GHASH state.
    OPENSSL_cleanse(e->scratch_, sizeof e->scratch_);
    OPENSSL_cleanse(&e->ctx_, sizeof e->ctx_);
    e->~GcmEngine();
    if (dpdk) rte_free(e);
    else std::free(e);
}

using detail::make_iv;

void GcmEngine::seal_sgl(const GcmKey& k, const std::uint8_t* hdr, std::span<const IoSeg> segs, std::uint8_t* tag,
                         const std::uint8_t* aad, std::size_t aad_len) noexcept {
    if (aad == nullptr) aad = hdr;
    alignas(16) std::uint8_t iv[16];
    make_iv(iv, k, hdr);
    const gcm_key_data* s = &k.schedule();
    if (k.type() == KeyType::aes128) {
        IMB_AES128_GCM_INIT(mgr_, s, &ctx_, iv, aad, aad_len);
        for (const IoSeg& g : segs)
            if (g.len) IMB_AES128_GCM_ENC_UPDATE(mgr_, s, &ctx_, g.data, g.data, g.len);
        IMB_AES128_GCM_ENC_FINALIZE(mgr_, s, &ctx_, tag, kIcvLen);
    } else {
        IMB_AES256_GCM_INIT(mgr_, s, &ctx_, iv, aad, aad_len);
        for (const IoSeg& g : segs)
            if (g.len) IMB_AES256_GCM_ENC_UPDATE(mgr_, s, &ctx_, g.data, g.data, g.len);
        IMB_AES256_GCM_ENC_FINALIZE(mgr_, s, &ctx_, tag, kIcvLen);
    }
}

bool GcmEngine::open_sgl(const GcmKey& k, const std::uint8_t* hdr, std::span<const IoSeg> segs,
                         const std::uint8_t* tag, const std::uint8_t* aad, std::size_t aad_len) noexcept {
    if (aad == nullptr) aad = hdr;
    alignas(16) std::uint8_t iv[16];
    alignas(16) std::uint8_t got[kIcvLen];
    make_iv(iv, k, hdr);
    const gcm_key_data* s = &k.schedule();
    if (k.type() == KeyType::aes128) {
        IMB_AES128_GCM_INIT(mgr_, s, &ctx_, iv, aad, aad_len);
        for (const IoSeg& g : segs)
            if (g.len) IMB_AES128_GCM_DEC_UPDATE(mgr_, s, &ctx_, g.data, g.data, g.len);
        IMB_AES128_GCM_DEC_FINALIZE(mgr_, s, &ctx_, got, kIcvLen);
    } else {
        IMB_AES256_GCM_INIT(mgr_, s, &ctx_, iv, aad, aad_len);
        for (const IoSeg& g : segs)
            if (g.len) IMB_AES256_GCM_DEC_UPDATE(mgr_, s, &ctx_, g.data, g.data, g.len);
        IMB_AES256_GCM_DEC_FINALIZE(mgr_, s, &ctx_, got, kIcvLen);
    }
    return tag_equal(got, tag);
}

}  // namespace p3::wire
