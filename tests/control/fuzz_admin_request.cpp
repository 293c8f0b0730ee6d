// libFuzzer target: the admin socket's request parser (control/admin/request.hpp). Any bytes:
// a request or an error with a kind and a message, never a throw or a crash; the answer line
// built from it is one JSON line; a parsed request survives the audit's target string.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "control/admin/request.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view line(reinterpret_cast<const char*>(data), size);
    auto r = p3::admin::parse_request(line);
    std::string out;
    if (auto* e = std::get_if<p3::admin::Error>(&r)) {
        if (e->message.empty()) std::abort();
        out = p3::admin::error_line(e->kind, e->message + e->cmd);
    } else {
        const auto& q = std::get<p3::admin::Request>(r);
        if (q.target.kind == p3::admin::Target::Kind::group && (q.target.group.empty() || q.target.group.size() > p3::admin::kMaxGroupName))
            std::abort();
        out = p3::admin::ok_line(nlohmann::json{{"target", q.target.str()}, {"cmd", p3::admin::cmd_name(q.cmd)}});
    }
    if (out.empty() || out.back() != '\n' || out.find('\n') != out.size() - 1) std::abort();
    return 0;
}
