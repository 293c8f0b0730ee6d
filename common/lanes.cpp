// Lane key material: HKDF-SHA256 (common/hkdf.hpp; see lanes.hpp for the contract).
#include "common/lanes.hpp"

#include <cstring>

#include "common/hkdf.hpp"
#include "common/wire_limits.hpp"

namespace p3::wire {


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
    if (!hkdf_sha256({}, ikm.span(), info, out.span())) return {};
    return out;
}


}  // namespace p3::wire
