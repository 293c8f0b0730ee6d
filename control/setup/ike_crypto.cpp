// OpenSSL 3 EVP behind the setup exchange's crypto interface. Every function returns a
// failure value rather than throwing; intermediate secrets live in SecretBytes.
#include "control/setup/ike_crypto.hpp"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/params.h>

#include <climits>

namespace p3::setup {

namespace {
const char* curve_name(std::uint16_t group) {
    switch (group) {
        case group_ecp256: return "P-256";
        case group_ecp384: return "P-384";
        default: return nullptr;
    }
}
const EVP_MD* prf_md(std::uint16_t alg) {
    switch (alg) {
        case prf_hmac_sha2_256: return EVP_sha256();
        case prf_hmac_sha2_384: return EVP_sha384();
        default: return nullptr;
    }
}
const EVP_CIPHER* gcm_cipher(std::size_t keylen) {
    return keylen == 16 ? EVP_aes_128_gcm() : keylen == 32 ? EVP_aes_256_gcm() : nullptr;
}
}  // namespace

std::size_t KeyExchange::public_size(std::uint16_t group) noexcept {
    switch (group) {
        case group_ecp256: return 64;
        case group_ecp384: return 96;
        case group_x25519: return 32;
        default: return 0;
    }
}

KeyExchange::~KeyExchange() { EVP_PKEY_free(key_); }

std::unique_ptr<KeyExchange> KeyExchange::create(std::uint16_t group) {
    std::unique_ptr<KeyExchange> kx(new KeyExchange());
    kx->group_ = group;
    if (group == group_x25519) {
        kx->key_ = EVP_PKEY_Q_keygen(nullptr, nullptr, "X25519");
        if (!kx->key_) return nullptr;
        kx->pub_.resize(32);
        std::size_t len = 32;
        if (EVP_PKEY_get_raw_public_key(kx->key_, kx->pub_.data(), &len) != 1 || len != 32) return nullptr;
        return kx;
    }
    const char* curve = curve_name(group);
    if (!curve) return nullptr;
    kx->key_ = EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", curve);
    if (!kx->key_) return nullptr;
    std::uint8_t buf[1 + 96];
    std::size_t len = 0;
    if (EVP_PKEY_get_octet_string_param(kx->key_, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, buf, sizeof buf, &len) != 1 ||
        len != 1 + public_size(group) || buf[0] != 0x04)
        return nullptr;
    kx->pub_.assign(buf + 1, buf + len);  // RFC 5903 §7: x ‖ y, no point-format octet
    return kx;
}

bool KeyExchange::check_public(std::uint16_t group, ByteView peer) noexcept {
    const std::size_t n = public_size(group);
    if (n == 0 || peer.size() != n) return false;
    if (group == group_x25519) return true;  // every 32-byte string is a u-coordinate (RFC 7748)
    std::uint8_t pt[1 + 96];
    pt[0] = 0x04;
    std::copy(peer.begin(), peer.end(), pt + 1);
    OSSL_PARAM params[3];
    params[0] = OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, const_cast<char*>(curve_name(group)), 0);
    params[1] = OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, pt, 1 + n);
    params[2] = OSSL_PARAM_construct_end();
    EVP_PKEY* key = nullptr;
    EVP_PKEY_CTX* fctx = EVP_PKEY_CTX_new_from_name(nullptr, "EC", nullptr);
    if (fctx && EVP_PKEY_fromdata_init(fctx) == 1) EVP_PKEY_fromdata(fctx, &key, EVP_PKEY_PUBLIC_KEY, params);
    EVP_PKEY_CTX_free(fctx);
    if (!key) return false;
    EVP_PKEY_CTX* cctx = EVP_PKEY_CTX_new(key, nullptr);
    const bool ok = cctx && EVP_PKEY_public_check(cctx) == 1;
    EVP_PKEY_CTX_free(cctx);
    EVP_PKEY_free(key);
    return ok;
}

std::optional<SecretBytes> KeyExchange::shared_secret(ByteView peer) const {
    if (peer.size() != public_size(group_)) return std::nullopt;
    EVP_PKEY* peer_key = nullptr;
    if (group_ == group_x25519) {
        peer_key = EVP_PKEY_new_raw_public_key(EVP_PKEY_X25519, nullptr, peer.data(), peer.size());
    } else {
        std::uint8_t pt[1 + 96];
        pt[0] = 0x04;
        std::copy(peer.begin(), peer.end(), pt + 1);
        OSSL_PARAM params[3];
        params[0] = OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, const_cast<char*>(curve_name(group_)), 0);
        params[1] = OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, pt, 1 + peer.size());
        params[2] = OSSL_PARAM_construct_end();
        EVP_PKEY_CTX* fctx = EVP_PKEY_CTX_new_from_name(nullptr, "EC", nullptr);
        if (fctx && EVP_PKEY_fromdata_init(fctx) == 1)
            EVP_PKEY_fromdata(fctx, &peer_key, EVP_PKEY_PUBLIC_KEY, params);
        EVP_PKEY_CTX_free(fctx);
    }
    if (!peer_key) return std::nullopt;
    std::optional<SecretBytes> result;
    EVP_PKEY_CTX* ctx = EVP_PKEY_CTX_new(key_, nullptr);
    std::size_t len = 0;
    // EVP_PKEY_derive_set_peer_ex with validate=1 checks the point is on the curve.
    if (ctx && EVP_PKEY_derive_init(ctx) == 1 && EVP_PKEY_derive_set_peer_ex(ctx, peer_key, 1) == 1 &&
        EVP_PKEY_derive(ctx, nullptr, &len) == 1 && len > 0 && len <= 66) {
        SecretBytes s(len);
        if (EVP_PKEY_derive(ctx, s.data(), &len) == 1 && len == s.size()) {
            // RFC 8031 §2.3: an all-zero X25519 result means a low-order peer point.
            std::uint8_t acc = 0;
            for (auto b : s.span()) acc |= b;
            if (acc != 0) result = std::move(s);
        }
    }
    EVP_PKEY_CTX_free(ctx);
    EVP_PKEY_free(peer_key);
    return result;
}

std::size_t prf_size(std::uint16_t alg) noexcept {
    const EVP_MD* md = prf_md(alg);
    return md ? static_cast<std::size_t>(EVP_MD_get_size(md)) : 0;
}

SecretBytes prf(std::uint16_t alg, ByteView key, ByteView data) {
    const EVP_MD* md = prf_md(alg);
    if (!md || key.size() > INT_MAX) return {};
    SecretBytes out(static_cast<std::size_t>(EVP_MD_get_size(md)));
    unsigned len = 0;
    if (!HMAC(md, key.data(), static_cast<int>(key.size()), data.data(), data.size(), out.data(), &len) ||
        len != out.size())
        return {};
    return out;
}

SecretBytes prf_plus(std::uint16_t alg, ByteView key, ByteView seed, std::size_t len) {
    const std::size_t h = prf_size(alg);
    if (h == 0 || len > 255 * h) return {};
    SecretBytes out(len);
    Bytes block;  // T(n-1) | S | n
    std::size_t done = 0;
    SecretBytes t;
    for (unsigned n = 1; done < len; ++n) {
        block.clear();
        append(block, t.span());
        append(block, seed);
        block.push_back(static_cast<std::uint8_t>(n));
        t = prf(alg, key, block);
        if (t.empty()) {
            secure_wipe(block.data(), block.size());  // holds T(n-1)
            return {};
        }
        const std::size_t take = std::min(h, len - done);
        std::copy(t.data(), t.data() + take, out.data() + done);
        done += take;
    }
    secure_wipe(block.data(), block.size());
    return out;
}

bool gcm_seal(ByteView key, ByteView salt, ByteView iv, ByteView aad, ByteView plain, Bytes& out) {
    const EVP_CIPHER* c = gcm_cipher(key.size());
    if (!c || salt.size() != 4 || iv.size() != 8 || plain.size() > INT_MAX) return false;
    std::uint8_t nonce[12];
    std::copy(salt.begin(), salt.end(), nonce);
    std::copy(iv.begin(), iv.end(), nonce + 4);
    EVP_CIPHER_CTX* ctx = EVP_CIPHER_CTX_new();
    bool ok = ctx && EVP_EncryptInit_ex(ctx, c, nullptr, nullptr, nullptr) == 1 &&
              EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, 12, nullptr) == 1 &&
              EVP_EncryptInit_ex(ctx, nullptr, nullptr, key.data(), nonce) == 1;
    int len = 0;
    if (ok && !aad.empty()) ok = EVP_EncryptUpdate(ctx, nullptr, &len, aad.data(), static_cast<int>(aad.size())) == 1;
    out.assign(plain.size() + 16, 0);
    if (ok && !plain.empty()) ok = EVP_EncryptUpdate(ctx, out.data(), &len, plain.data(), static_cast<int>(plain.size())) == 1;
    if (ok) ok = EVP_EncryptFinal_ex(ctx, out.data() + plain.size(), &len) == 1;
    if (ok) ok = EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, 16, out.data() + plain.size()) == 1;
    EVP_CIPHER_CTX_free(ctx);
    return ok;
}

bool gcm_open(ByteView key, ByteView salt, ByteView iv, ByteView aad, ByteView ct, SecretBytes& out) {
    const EVP_CIPHER* c = gcm_cipher(key.size());
    if (!c || salt.size() != 4 || iv.size() != 8 || ct.size() < 16 || ct.size() > INT_MAX) return false;
    std::uint8_t nonce[12];
    std::copy(salt.begin(), salt.end(), nonce);
    std::copy(iv.begin(), iv.end(), nonce + 4);
    const std::size_t n = ct.size() - 16;
    SecretBytes plain(n == 0 ? 1 : n);
    std::uint8_t tag[16];
    std::copy(ct.end() - 16, ct.end(), tag);
    EVP_CIPHER_CTX* ctx = EVP_CIPHER_CTX_new();
    int len = 0;
    bool ok = ctx && EVP_DecryptInit_ex(ctx, c, nullptr, nullptr, nullptr) == 1 &&
              EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, 12, nullptr) == 1 &&
              EVP_DecryptInit_ex(ctx, nullptr, nullptr, key.data(), nonce) == 1;
    if (ok && !aad.empty()) ok = EVP_DecryptUpdate(ctx, nullptr, &len, aad.data(), static_cast<int>(aad.size())) == 1;
    if (ok && n) ok = EVP_DecryptUpdate(ctx, plain.data(), &len, ct.data(), static_cast<int>(n)) == 1;
    if (ok) ok = EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, 16, tag) == 1;
    if (ok) ok = EVP_DecryptFinal_ex(ctx, plain.data() + n, &len) == 1;  // tag check
    EVP_CIPHER_CTX_free(ctx);
    if (!ok) return false;
    out = SecretBytes(plain.span().first(n));
    return true;
}

namespace {
Bytes digest(const EVP_MD* md, ByteView a, ByteView b, ByteView c, ByteView d) {
    Bytes out(static_cast<std::size_t>(EVP_MD_get_size(md)));
    EVP_MD_CTX* ctx = EVP_MD_CTX_new();
    unsigned len = 0;
    const bool ok = ctx && EVP_DigestInit_ex(ctx, md, nullptr) == 1 && EVP_DigestUpdate(ctx, a.data(), a.size()) == 1 &&
                    EVP_DigestUpdate(ctx, b.data(), b.size()) == 1 && EVP_DigestUpdate(ctx, c.data(), c.size()) == 1 &&
                    EVP_DigestUpdate(ctx, d.data(), d.size()) == 1 && EVP_DigestFinal_ex(ctx, out.data(), &len) == 1;
    EVP_MD_CTX_free(ctx);
    if (!ok) out.clear();
    return out;
}
}  // namespace

Bytes sha1(ByteView a, ByteView b, ByteView c, ByteView d) { return digest(EVP_sha1(), a, b, c, d); }
Bytes sha256(ByteView a, ByteView b, ByteView c, ByteView d) { return digest(EVP_sha256(), a, b, c, d); }

}  // namespace p3::setup
