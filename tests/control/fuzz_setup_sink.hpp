// The SessionSink of the setup fuzz targets: hands out receive P3 IDs, accepts every
// established session and keeps nothing, so the engine's own bounds are what is exercised.
#pragma once

#include <cstdint>
#include <optional>

#include "control/setup/session_sink.hpp"

namespace p3::setup::fuzz {

class Sink final : public SessionSink {
public:
    std::optional<std::uint32_t> reserve_rx_id(std::uint32_t, std::uint32_t) override { return next_++; }
    void release_rx_id(std::uint32_t) override {}
    bool install(EstablishedSession&&) override { return true; }
    // ESP remotes: every SA accepted, nothing kept.
    bool esp_install_rx(std::uint32_t, std::uint32_t, const DirectionKeys&, bool) override { return true; }
    bool esp_install_tx(std::uint32_t, std::uint32_t, const DirectionKeys&, bool) override { return true; }

private:
    std::uint32_t next_ = 0x1000;
};

}  // namespace p3::setup::fuzz
