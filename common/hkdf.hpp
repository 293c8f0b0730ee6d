// HKDF-SHA256 (RFC 5869), extract and expand, through OpenSSL's EVP_KDF: the one key derivation
// every part of p3 uses (lane keys and the size-hiding key, common/lanes.cpp and sizehide.cpp;
// a rekey's X25519 mixing, control/channel/dh.cpp). Control path only: it allocates.
#pragma once

#include <cstdint>
#include <span>

namespace p3 {

// out = HKDF-SHA256(salt, ikm, info) of out.size() bytes; an empty salt is RFC 5869's "not
// provided" (a string of HashLen zeros). False on an OpenSSL failure (out then undefined).
bool hkdf_sha256(std::span<const std::uint8_t> salt, std::span<const std::uint8_t> ikm,
                 std::span<const std::uint8_t> info, std::span<std::uint8_t> out) noexcept;

}  // namespace p3
