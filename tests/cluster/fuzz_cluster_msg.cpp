// libFuzzer target: the sealed cluster message (control/cluster/message.hpp) and the engine
// that receives it. The first byte picks what the rest is:
//   0: a message off the wire: open() under the fuzz key; a body that decodes re-encodes to
//      the same bytes;
//   1: a body (type, then bytes): decode(), and a decoded body re-encodes to the same bytes;
//   2: a body sealed under the right key from member 2, delivered to an engine (member 1), so
//      the engine's handling of well-sealed but hostile bodies is reached too.
// Never a throw, a crash or a leak; the engine's state stays bounded by the record limits.
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "common/dp_sizes.hpp"
#include "control/cluster/engine.hpp"

using namespace p3::cluster;

namespace {

std::array<std::uint8_t, 32> fuzz_key() {
    std::array<std::uint8_t, 32> k{};
    for (std::size_t i = 0; i < k.size(); ++i) k[i] = static_cast<std::uint8_t>(1 + 7 * i);
    return k;
}

struct NullTransport final : Transport {
    bool send(std::span<const std::uint8_t>) override { return true; }
};
struct NullSink final : ReplicaSink {
    void on_session(const SessionRecord&) override {}
    void on_role(std::uint8_t, Role) override {}
    void on_members(std::span<const Member>) override {}
};

void roundtrip(MsgType type, std::span<const std::uint8_t> body) {
    auto b = decode(type, body);
    if (!b) return;
    if (type_of(*b) != type) std::abort();
    const p3::SecretBytes again = encode(*b);
    if (again.size() != body.size() || (!body.empty() && std::memcmp(again.data(), body.data(), body.size()) != 0))
        std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    static const auto key_bytes = fuzz_key();
    static const SealKey key(key_bytes);
    static NullTransport transport;
    static NullSink sink;
    static std::uint64_t counter = 1;
    static Engine engine(EngineConfig{1, 4, Role::primary, {}, 1, 1}, key, transport, sink, [] { return std::uint64_t(0); });
    static bool joined = (engine.joined(0x1), true);
    (void)joined;
    if (size < 1) return 0;
    const std::span<const std::uint8_t> rest(data + 1, size - 1);
    switch (data[0] % 3) {
    case 0: {
        Refusal why{};
        if (auto o = open(key, rest, why)) roundtrip(o->header.type, o->body.span());
        engine.deliver(0x2, rest);
        break;
    }
    case 1:
        if (!rest.empty()) roundtrip(static_cast<MsgType>(rest[0] % 6 + 1), rest.subspan(1));
        break;
    default: {
        if (rest.empty()) break;
        const Header h{kVersion, static_cast<MsgType>(rest[0] % 6 + 1), 2, ++counter};
        const auto msg = seal(key, h, rest.subspan(1));
        if (msg.empty()) break;
        Refusal why{};
        auto o = open(key, msg, why);
        if (!o || o->body.size() != rest.size() - 1) std::abort();
        engine.deliver(0x2, msg);
        if (engine.sessions().size() >= p3::dp::kMaxSessions) std::abort();
        break;
    }
    }
    return 0;
}
