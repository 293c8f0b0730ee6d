// Lane key material: HKDF-SHA256 through OpenSSL's EVP_KDF (see lanes.hpp for the contract).
#include "common/lanes.hpp"

#include <openssl/core_names.h>
#include <openssl/kdf.h>
#include <openssl/params.h>

#include <cstring>

#include "common/wire_limits.hpp"

namespace p3::wire {

namespace {

// HKDF-SHA256 extract-and-expand with no salt; false on an OpenSSL failure.
bool hkdf_sha256(std::span<const std::uint8_t> ikm, std::span<const std::uint8_t> info, std::uint8_t* out,
                 std::size_t out_len) noexcept {
    EVP_KDF* kdf = EVP_KDF_fetch(nullptr, "HKDF", nullptr);
    if (kdf == nullptr) return false;
    EVP_KDF_CTX* ctx = EVP_KDF_CTX_new(kdf);
    EVP_KDF_free(kdf);
    if (ctx == nullptr) return false;
    char digest[] = "SHA256";
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, digest, 0),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, const_cast<std::uint8_t*>(ikm.data()), ikm.size()),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, const_cast<std::uint8_t*>(info.data()), info.size()),
        OSSL_PARAM_construct_end(),
    };
    const bool ok = EVP_KDF_derive(ctx, out, out_len, params) == 1;
    EVP_KDF_CTX_free(ctx);
    return ok;
}

}  // namespace

SecretBytes lane_key_material(std::span<const std::uint8_t> key, std::span<const std::uint8_t> salt,
                              std::uint32_t lane) {
    if ((key.size() != kAes128KeyLen && key.size() != kAes256KeyLen) || salt.size() != kSaltLen || lane >= kMaxLanes)
        return {};
    SecretBytes ikm(key.size() + kSaltLen);
    std::memcpy(ikm.data(), key.data(), key.size());
    std::memcpy(ikm.data() + key.size(), salt.data(), kSaltLen);
    if (lane == 0) return ikm;   // lane 0: the key material as it is
    static constexpr char kLabel[] = "p3 lane";
    std::uint8_t info[sizeof kLabel - 1 + 4];
    std::memcpy(info, kLabel, sizeof kLabel - 1);
    info[7] = static_cast<std::uint8_t>(lane >> 24);
    info[8] = static_cast<std::uint8_t>(lane >> 16);
    info[9] = static_cast<std::uint8_t>(lane >> 8);
    info[10] = static_cast<std::uint8_t>(lane);
    SecretBytes out(key.size() + kSaltLen);
    if (!hkdf_sha256(ikm.span(), info, out.data(), out.size())) return {};
    return out;
}

// Shared with sizehide.cpp (same primitive, different info).
bool hkdf_sha256_for_wire(std::span<const std::uint8_t> ikm, std::span<const std::uint8_t> info, std::uint8_t* out,
                          std::size_t out_len) noexcept {
    return hkdf_sha256(ikm, info, out, out_len);
}

}  // namespace p3::wire
