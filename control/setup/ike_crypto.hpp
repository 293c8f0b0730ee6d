// Cryptography of the setup exchange, all through OpenSSL 3 EVP: Diffie-Hellman groups 19,
// 20 (RFC 5903, ECP; shared secret = x coordinate) and 31 (X25519, RFC 8031), the PRFs
// (HMAC-SHA2-256/384) and prf+ (RFC 7296 §2.13), AES-GCM with 16-byte ICV (RFC 5282),
// SHA-1 for NAT detection, and the key schedule (SKEYSEED, SK_*, KEYMAT).
//
// Every secret output is a SecretBytes (wiped on release); peer public values are checked
// (on-curve, X25519 not all-zero) before use.
#pragma once

#include <memory>
#include <optional>

#include "common/secret.hpp"
#include "control/setup/ike_types.hpp"

#include <openssl/types.h>

namespace p3::setup {

// Key exchange for one group; holds our private key until destroyed.
class KeyExchange {
public:
    static std::unique_ptr<KeyExchange> create(std::uint16_t group);  // nullptr: unsupported/failed
    ~KeyExchange();
    std::uint16_t group() const noexcept { return group_; }
    const Bytes& public_value() const noexcept { return pub_; }
    // g^ir from the peer's KE data; nullopt if the value is malformed or degenerate.
    std::optional<SecretBytes> shared_secret(ByteView peer) const;
    static std::size_t public_size(std::uint16_t group) noexcept;  // 0 = unsupported
    // Whether a peer's KE data can be used with this group: the length, and for ECP a point
    // on the curve. Far cheaper than a key pair, so a responder checks it before making one.
    static bool check_public(std::uint16_t group, ByteView peer) noexcept;

private:
    KeyExchange() = default;
    std::uint16_t group_ = 0;
    EVP_PKEY* key_ = nullptr;
    Bytes pub_;
};

std::size_t prf_size(std::uint16_t prf) noexcept;  // 0 = unsupported
// prf(key, data); empty on failure.
SecretBytes prf(std::uint16_t alg, ByteView key, ByteView data);
// prf+ (RFC 7296 §2.13): T1 | T2 | ... truncated to len; len ≤ 255 * prf_size.
SecretBytes prf_plus(std::uint16_t alg, ByteView key, ByteView seed, std::size_t len);

// AES-GCM-16 (key 16 or 32 bytes); nonce = salt(4) ‖ iv(8). seal appends the 16-byte ICV.
bool gcm_seal(ByteView key, ByteView salt, ByteView iv, ByteView aad, ByteView plain, Bytes& out);
bool gcm_open(ByteView key, ByteView salt, ByteView iv, ByteView aad, ByteView cipher_and_icv,
              SecretBytes& out);

Bytes sha1(ByteView a, ByteView b = {}, ByteView c = {}, ByteView d = {});
Bytes sha256(ByteView a, ByteView b = {}, ByteView c = {}, ByteView d = {});

}  // namespace p3::setup
