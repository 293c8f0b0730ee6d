// libFuzzer target: the IKE message parser (header, payload chain, every payload body, the
// configuration push TLVs) on untrusted bytes. Whatever decodes must encode again and decode
// to the same payload count: the codec never invents or loses payloads.
#include <cstdint>
#include <cstdlib>

#include "control/setup/config_push.hpp"
#include "control/setup/ike_message.hpp"

using namespace p3::setup;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const ByteView in(data, size);
    Message m;
    if (decode(in, m) == DecodeError::ok) {
        for (const auto& p : m.payloads)
            if (const auto* n = std::get_if<NotifyPayload>(&p.body); n && n->type == nt::p3_config)
                (void)decode_push(n->data);
        if (!m.encrypted) {
            const Bytes again = encode(m);
            Message m2;
            if (decode(again, m2) != DecodeError::ok || m2.payloads.size() != m.payloads.size()) std::abort();
        }
    }
    // The push decoder on its own, too.
    (void)decode_push(in);
    return 0;
}
