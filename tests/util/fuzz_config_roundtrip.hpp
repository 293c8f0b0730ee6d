// The check both configuration fuzz targets make: the loader under test must never crash,
// hang or leak; every refusal says why; and whatever it accepts must print (to_libconfig) to
// libconfig text that loads again to the same model -- what p3ctl config check and convert
// promise.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "common/config.hpp"

namespace p3::fuzz {

template <typename Loader>
int config_roundtrip(const std::uint8_t* data, std::size_t size, Loader load, const char* name) {
    if (size > 64 * 1024) return 0;
    std::string text(reinterpret_cast<const char*>(data), size);
    auto r = load(text, name);
    auto* cfg = std::get_if<config::Config>(&r);
    if (!cfg) {
        if (std::get<config::Error>(r).what.empty()) std::abort();  // every refusal says why
        return 0;
    }
    auto again = config::load_libconfig_text(config::to_libconfig(*cfg, true), "fuzz.conf");
    if (!std::holds_alternative<config::Config>(again)) std::abort();
    if (!config::same_settings(*cfg, std::get<config::Config>(again))) std::abort();
    return 0;
}

}  // namespace p3::fuzz
