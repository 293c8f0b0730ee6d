// Lane key material (DESIGN.md §Wire format, Lanes): each sending lcore (and each cluster
// member) sends under its own lane with its own P3 ID, sequence and key. Lane 0 uses the
// session's key material as it is; lane n > 0 uses
//   HKDF-SHA256(IKM = key || salt, salt = none, info = "p3 lane" || n (u32 big-endian),
//               length = key length + 4)  ->  key || salt.
// Control path (OpenSSL EVP_KDF); the result goes straight into a GcmKey.
#pragma once

#include <cstdint>
#include <span>

#include "common/secret.hpp"

namespace p3::wire {

// key || salt of lane n (key.size() + 4 bytes). Empty on a key that is not 16 or 32 bytes, a
// salt that is not 4 bytes, n >= kMaxLanes, or an OpenSSL failure.
SecretBytes lane_key_material(std::span<const std::uint8_t> key, std::span<const std::uint8_t> salt,
                              std::uint32_t lane);

}  // namespace p3::wire
