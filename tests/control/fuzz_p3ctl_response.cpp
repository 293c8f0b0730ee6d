// libFuzzer target: p3ctl's reading of an admin socket response line and its renderings (any
// bytes: an exit status and a message, or a result that every renderer prints without a throw).
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "control/p3ctl/admin_client.hpp"
#include "control/p3ctl/render.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view line(reinterpret_cast<const char*>(data), size);
    const p3::ctl::Outcome o = p3::ctl::parse_response(line);
    if (o.exit < p3::ctl::kOk || o.exit > p3::ctl::kFailed) std::abort();
    if (o.exit != p3::ctl::kOk) {
        if (o.message.empty()) std::abort();   // refused: a reason is given
        return 0;
    }
    if (!o.result.is_object()) std::abort();
    (void)p3::ctl::render_status(o.result);
    (void)p3::ctl::render_done("rekey", o.result);
    (void)p3::ctl::render_audit(o.result);
    (void)p3::ctl::render_json(o.result);
    (void)p3::ctl::render_diff("reload", o.result);
    (void)p3::ctl::render_saved(o.result);
    (void)p3::ctl::parse_since(line);
    (void)p3::ctl::parse_id(line);
    return 0;
}
