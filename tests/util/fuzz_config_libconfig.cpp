// libFuzzer target: the libconfig loader on arbitrary text. It must never crash, hang or
// leak; and whatever it accepts must print (to_libconfig) to text that loads again to the
// same model -- the round trip p3ctl config convert relies on.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "common/config.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size > 64 * 1024) return 0;
    std::string text(reinterpret_cast<const char*>(data), size);
    auto r = p3::config::load_libconfig_text(text, "fuzz.conf");
    auto* cfg = std::get_if<p3::config::Config>(&r);
    if (!cfg) {
        const auto& e = std::get<p3::config::Error>(r);
        if (e.what.empty()) std::abort();  // every refusal says why
        return 0;
    }
    std::string again_text = p3::config::to_libconfig(*cfg, true);
    auto again = p3::config::load_libconfig_text(again_text, "fuzz.conf");
    if (!std::holds_alternative<p3::config::Config>(again)) std::abort();
    if (!p3::config::same_settings(*cfg, std::get<p3::config::Config>(again))) std::abort();
    return 0;
}
