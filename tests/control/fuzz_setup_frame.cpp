// libFuzzer target: the setup datagram path as p3d runs it. A worker hands the control thread
// an Ethernet frame (UDP to local.port on the WAN); parse_setup_frame reads it down to the
// IKE message and the non-ESP marker, a primary's SetupEngine handles it, and each answer is
// built into an IP packet by build_setup_packet, which must parse back to what was sent.
// One engine lives across inputs, as in p3d, on a clock that moves on with every input, so
// cookies, expiry and the half-open limits run too; its tables must stay within their bounds.
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "common/log.hpp"
#include "control/setup/setup_engine.hpp"
#include "control/setup/setup_frame.hpp"
#include "fuzz_setup_sink.hpp"

using namespace p3;
using namespace p3::setup;

namespace {

using fuzz::Sink;

// What p3d's SetupControlPlane does with an answer: an IP packet; here it must read back.
class Wire final : public Transport {
public:
    void send(const Endpoint& from, const Endpoint& to, ByteView d, Framing framing) override {
        Bytes frame(14, 0);
        frame[12] = to.addr.is_v6() ? 0x86 : 0x08;
        frame[13] = to.addr.is_v6() ? 0xdd : 0x00;
        Bytes pkt(setup_packet_size(to, framing, d.size()));
        if (!build_setup_packet(from, to, framing, d, pkt)) std::abort();
        append(frame, pkt);
        const auto f = parse_setup_frame(frame);
        if (!f || !(f->from == from) || !(f->to == to) || f->framing != framing || f->payload.size() != d.size() ||
            (!d.empty() && std::memcmp(f->payload.data(), d.data(), d.size()) != 0))
            std::abort();
    }
};

struct World {
    control::ManualClock clock;
    control::SeededRandom rnd{7};
    Wire wire;
    Sink sink;
    SetupOptions opts;
    std::unique_ptr<SetupEngine> engine;
    World() {
        log::Options o;
        o.to_stderr = false;
        log::init(o);
        config::Config c;
        c.role = config::Role::primary;
        c.local.address = *IpAddr::parse("192.0.2.1");
        c.local.identity = "pri.test";
        config::Remote r;
        r.id = 7;
        r.address = *IpAddr::parse("192.0.2.2");
        r.identity = "sec.test";
        c.remotes.push_back(std::move(r));
        const char* k = "fuzz setup key 0123456789";
        opts.half_open_max = 256;  // small, so the fuzzer can reach the limits
        engine = std::make_unique<SetupEngine>(
            c, *Credentials::from_psk(7, ByteView(reinterpret_cast<const std::uint8_t*>(k), std::strlen(k))), opts, clock,
            rnd, wire, sink);
    }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    static World w;
    if (const auto f = parse_setup_frame(ByteView(data, size))) w.engine->on_datagram(f->from, f->to, f->payload, f->framing);
    w.clock.advance(std::chrono::milliseconds(250));
    if (auto t = w.engine->next_deadline(); t && *t <= w.clock.now()) w.engine->on_timer();
    log::flush_suppressed();
    if (w.engine->half_open() > w.opts.half_open_max || w.engine->half_open_sources() > w.engine->half_open() ||
        w.engine->exchanges() > 2 * w.opts.half_open_max + 1024)
        std::abort();
    return 0;
}
