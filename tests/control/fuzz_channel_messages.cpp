// libFuzzer target: the control-message parser (and, behind it, the framing of a control-layer
// packet). Whatever the bytes, parse() either rejects them with a reason or returns a message
// that encodes back to bytes parse() accepts again; the framing parser never reads out of bounds.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <vector>

#include "control/channel/framing.hpp"
#include "control/channel/messages.hpp"

using namespace p3;
using namespace p3::channel;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    ParseStats st;
    ParseError why;
    auto m = parse({data, size}, &why, &st);
    if (m) {
        std::vector<std::uint8_t> out(limits::kMaxMessageLen);
        const std::size_t n = encode(*m, out);
        if (n == 0) std::abort();  // an accepted message must be encodable
        auto again = parse({out.data(), n});
        if (!again || again->type != m->type || again->msg_id != m->msg_id) std::abort();
    } else if (why == ParseError::none || st.total_rejected() != 1) {
        std::abort();  // a rejection always says why and is counted once
    }
    static const FrameAddrs addrs{*IpAddr::parse("198.51.100.2"), *IpAddr::parse("192.0.2.1"), 5653};
    FrameError fe;
    auto sv = parse_packet(addrs, {data, size}, &fe);
    if (sv && (sv->ciphertext.size() + sv->tag.size() > size)) std::abort();
    return 0;
}
