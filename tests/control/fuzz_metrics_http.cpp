// libFuzzer target: what a network client sends p3ctl metrics --listen (the request head
// parser and the answer built from its verdict), and what p3d's telemetry and admin socket
// send p3ctl metrics (the OpenMetrics rendering of any JSON). Never a crash; a verdict only
// when the head is whole or too large; the text always ends with "# EOF".
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "control/p3ctl/metrics.hpp"
#include "control/p3ctl/metrics_http.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0) return 0;
    const std::string_view in(reinterpret_cast<const char*>(data) + 1, size - 1);
    if (data[0] & 1) {
        const p3::ctl::HttpVerdict v = p3::ctl::parse_http_request(in);
        const bool whole = in.find("\r\n\r\n") != std::string_view::npos;
        if (v == p3::ctl::HttpVerdict::incomplete && (whole || in.size() >= p3::ctl::kMaxRequest)) std::abort();
        if (v != p3::ctl::HttpVerdict::incomplete) {
            const std::string r = p3::ctl::http_response(v, [] { return std::string("# EOF\n"); });
            if (r.rfind("HTTP/1.1 ", 0) != 0) std::abort();
        }
        return 0;
    }
    p3::ctl::MetricsInput m;
    const p3::ctl::Json j = p3::ctl::Json::parse(in, nullptr, false);
    if (j.is_discarded()) return 0;
    m.stats = m.drops = m.ports = m.lcores = m.sessions = m.status = j;
    m.telemetry_up = m.admin_up = true;
    const std::string text = p3::ctl::render_metrics(m);
    if (text.size() < 6 || text.compare(text.size() - 6, 6, "# EOF\n") != 0) std::abort();
    return 0;
}
