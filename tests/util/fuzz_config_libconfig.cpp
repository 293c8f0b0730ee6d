// libFuzzer target: the libconfig loader on arbitrary text (checks in
// fuzz_config_roundtrip.hpp: no crash, every refusal says why, accepted text prints back to
// text that loads to the same model).
#include "tests/util/fuzz_config_roundtrip.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    return p3::fuzz::config_roundtrip(
        data, size, [](const std::string& t, const char* n) { return p3::config::load_libconfig_text(t, n); },
        "fuzz.conf");
}
