// libFuzzer target: the SK payload path (RFC 5282 AES-GCM) and the inner payload chain.
// A fuzzer cannot forge a GCM tag, so the first input byte picks the mode:
//   even: the rest is a whole datagram, opened with a fixed key (exercises the outer
//         checks, the SK bounds and the tag check);
//   odd:  the rest is the plaintext of SK (inner chain + pad length); it is sealed under the
//         fixed key behind a valid header, then decoded and opened, so the inner parser sees
//         arbitrary bytes past a good tag. The second byte is the first inner payload type.
#include <cstdint>
#include <cstdlib>

#include "control/setup/ike_crypto.hpp"
#include "control/setup/ike_message.hpp"

using namespace p3;
using namespace p3::setup;

namespace {
const SkKey& key() {
    static const SkKey k = [] {
        const Bytes kb(16, 0x42), sb{1, 2, 3, 4};
        return SkKey{SecretBytes(kb), SecretBytes(sb)};
    }();
    return k;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 1) return 0;
    const ByteView rest(data + 1, size - 1);
    if ((data[0] & 1) == 0) {
        Message outer, inner;
        if (decode(rest, outer) == DecodeError::ok && outer.encrypted) (void)open_sk(rest, outer, key(), inner);
        return 0;
    }
    if (rest.size() < 1 || rest.size() > limits::max_message - 128) return 0;
    const std::uint8_t first = rest[0];
    const ByteView plain = rest.subspan(1);
    Bytes b;
    put64(b, 0x1111);
    put64(b, 0x2222);
    put8(b, pt::sk);
    put8(b, ike_version);
    put8(b, 35);
    put8(b, flags::initiator);
    put32(b, 1);
    put32(b, std::uint32_t(28 + 4 + 8 + plain.size() + 16));
    put8(b, first);
    put8(b, 0);
    put16(b, std::uint16_t(4 + 8 + plain.size() + 16));
    const Bytes aad = b;
    Bytes iv;
    put64(iv, 7);
    append(b, iv);
    Bytes sealed;
    if (!gcm_seal(key().key.span(), key().salt.span(), iv, aad, plain, sealed)) return 0;
    append(b, sealed);
    Message outer, inner;
    if (decode(b, outer) != DecodeError::ok) return 0;
    (void)open_sk(b, outer, key(), inner);
    return 0;
}
