// The control channel's KeySource (channel/interfaces.hpp) on the appliance's key generator
// (keys::KeyGenerator: software DRBG or RDSEED/RDRAND, as local.key_generation says).
#pragma once

#include <span>

#include "common/keygen.hpp"
#include "control/channel/interfaces.hpp"

namespace p3::channel {

class GeneratorKeys final : public KeySource {
public:
    explicit GeneratorKeys(keys::KeyGenerator& gen) noexcept : gen_(gen) {}
    bool fill(std::span<std::uint8_t> out) noexcept override { return !gen_.fill(out).has_value(); }

private:
    keys::KeyGenerator& gen_;
};

}  // namespace p3::channel
