// libFuzzer target: p3ctl stats' JSON flattening of a telemetry reply (any bytes: refused
// with a reason or flattened, never a crash, never a pair left from a refused document).
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "control/admin/telemetry_client.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    std::vector<std::pair<std::string, std::string>> kv;
    std::string err;
    const bool ok = p3::admin::flatten_json(std::string_view(reinterpret_cast<const char*>(data), size), kv, err);
    if (!ok && err.empty()) std::abort();                 // refused: a reason is given
    if (!ok && !kv.empty()) std::abort();                 // refused: nothing half-read is kept
    if (kv.size() > p3::admin::kMaxJsonLeaves) std::abort();
    return 0;
}
