// libFuzzer target: the control channel after authentication. Two sessions (primary and
// secondary, tests/control/channel_sim.hpp) run on one manual clock; the input is a script of
// steps: time passing, administrator commands, link faults, restarts, and, above all,
// arbitrary message bytes sealed with the current control key of one side and handed to the
// other, as a peer holding that key could send them (optionally answering one of the
// receiver's requests in flight by its message id). Whatever the script, nothing crashes and
// the state each session keeps stays bounded: inbound epochs, requests in flight, queued
// work, key arrays; and its dataplane holds one lane block with at most one next key per lane.
//
// Script: [params] then steps [op][args...]:
//   op % 8 = 0: time passes (next byte x 250 ms)          1: forged message to the primary
//            2: forged message to the secondary            3: administrator command (next byte:
//               rekey, arrays, flush, shutdown with or without a goodbye or start again
//               once closed, a failed setup)
//            4: link: cut / heal / lossy (next byte)       5: the secondary's setup fails or not
//            6: the primary restarts                       7: data traffic on or off
//   forged message: [flags][len][len bytes]; flags bit 0: put the id of one of the receiver's
//   requests in flight (chosen by the next byte) into the message id.
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <iterator>
#include <vector>

#include "control/channel/framing.hpp"
#include "tests/control/channel_sim.hpp"

namespace p3::channel {

struct SessionTestAccess {
    // from seals msg with its control key (its epoch, its next sequence) and hands it to to.
    static void forge(Session& from, Session& to, std::vector<std::uint8_t> msg, bool answer, std::uint8_t pick) {
        Epochs::Tx& tx = from.epochs_.tx();
        if (from.state() != SessionState::up || !tx.ctl.valid()) return;
        const auto& outstanding = to.link_.outstanding();
        if (answer && msg.size() >= limits::kHeaderLen && !outstanding.empty()) {
            auto it = outstanding.begin();
            std::advance(it, pick % outstanding.size());
            const std::uint32_t id = it->first;
            msg[4] = std::uint8_t(id >> 24), msg[5] = std::uint8_t(id >> 16), msg[6] = std::uint8_t(id >> 8),
            msg[7] = std::uint8_t(id);
        }
        std::vector<std::uint8_t> pkt(limits::kMaxInnerPacket);
        FrameParams fp;
        fp.epoch = tx.epoch;
        fp.seq = ++tx.seq;
        const std::size_t n = seal_packet(from.cfg_.addrs, tx.ctl, fp, msg, pkt);
        if (n == 0) return;
        to.on_control_packet({pkt.data(), n});
    }
    static bool next_pending(const Session& s) { return s.next_.pending(); }
    static void check_bounded(const Session& s) {
        if (s.epochs_.rx_count() > limits::kMaxRxEpochs + 1) std::abort();
        if (s.link_.outstanding().size() > 16) std::abort();
        if (s.queue_.size() > 8) std::abort();
        // A rekey runs beside a delivery only.
        if (s.beside_ && (!s.current_ || s.current_->kind != Work::Kind::deliver)) std::abort();
        for (const auto& a : s.arrays_.all_active())
            if (a.keys.size() > std::size_t{limits::kMaxArraySize} * limits::kKeyMaterial256) std::abort();
        for (const auto& a : s.arrays_.all_incoming())
            if (a.keys.size() > std::size_t{limits::kMaxArraySize} * limits::kKeyMaterial256) std::abort();
    }
};

}  // namespace p3::channel

using namespace p3;
using namespace p3::channel;
using namespace std::chrono_literals;

namespace {

struct Reader {
    const std::uint8_t* p;
    std::size_t n;
    bool empty() const { return n == 0; }
    std::uint8_t u8() {
        if (!n) return 0;
        --n;
        return *p++;
    }
    std::vector<std::uint8_t> bytes(std::size_t len) {
        len = std::min(len, n);
        std::vector<std::uint8_t> v(p, p + len);
        p += len, n -= len;
        return v;
    }
};

void quiet_logs() {
    static bool done = false;
    if (done) return;
    done = true;
    log::Options o;
    o.to_stderr = false;
    o.min_level = log::Level::error;
    log::init(o);
    log::set_sink([](log::Level, Reason, std::string_view, void*) {}, nullptr);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    quiet_logs();
    Reader in{data, size};
    const std::uint8_t pb = in.u8();
    config::SessionParams params;
    params.heartbeat_time = 5;
    params.heartbeat_fail = 20;
    params.rekey_wait = 30 + (pb & 3) * 30;
    params.array_size = (pb & 4) ? 4 + (pb >> 5) : 1;   // 1: no arrays; else a few keys
    params.key_type = (pb & 8) ? config::KeyType::aes256 : config::KeyType::aes128;
    params.size_hiding = pb & 16;
    sim::Sim s(params, 1 + (pb >> 6));
    s.link.faults.delay = 10ms;
    s.data_interval = 1s;   // some traffic (rx-seen, packet counts) without spending the run on it
    s.setup();
    s.run_for(1s);
    unsigned steps = 0;
    while (!in.empty() && ++steps <= 96) {
        const std::uint8_t op = in.u8();
        switch (op % 8) {
        case 0: s.run_for(std::chrono::milliseconds(250 * (1 + in.u8()))); break;
        case 1:
        case 2: {
            const std::uint8_t flags = in.u8();
            const std::uint8_t pick = in.u8();
            auto msg = in.bytes(in.u8());
            Session* to = op % 8 == 1 ? s.primary.get() : s.secondary.get();
            Session* from = op % 8 == 1 ? s.secondary.get() : s.primary.get();
            SessionTestAccess::forge(*from, *to, std::move(msg), flags & 1, pick);
            break;
        }
        case 3: {
            const std::uint8_t c = in.u8();
            switch (c % 6) {
            case 0: s.primary->force_rekey(); break;
            case 1: s.secondary->force_rekey(); break;
            case 2: s.primary->deliver_arrays(1 + (c >> 3) % 3); break;
            case 3: s.primary->flush_arrays(1 + (c >> 3) % 3, c & 0x80); break;
            case 4: {
                // Shutdown with no goodbye, or one of either reason; a closed session is started
                // again (a new setup, as when its administrator starts it).
                Session& x = c & 8 ? *s.primary : *s.secondary;
                if (x.state() == SessionState::closed) s.setup();
                else x.shutdown(static_cast<GoodbyeReason>((c >> 4) % 3));
                break;
            }
            case 5: s.secondary->setup_failed(); break;
            }
            break;
        }
        case 4: {
            const std::uint8_t c = in.u8();
            s.link.cut = c & 1;
            s.link.faults.drop = (c & 2) ? 0.3 : 0;
            s.link.faults.dup = (c & 4) ? 0.2 : 0;
            s.link.faults.jitter = (c & 8) ? 300ms : 0ms;
            break;
        }
        case 5: s.setup_fails = in.u8() & 1; break;
        case 6: s.restart_primary(); break;
        case 7: s.data_on = !s.data_on; break;
        }
        SessionTestAccess::check_bounded(*s.primary);
        SessionTestAccess::check_bounded(*s.secondary);
        // The dataplanes: one block of lanes per side, as set up; a pending next key only while
        // the session says one is pending (none left behind by a failed or crossed rekey).
        if (s.dp_a.rx.size() > s.lanes_b || s.dp_b.rx.size() > s.lanes_a) std::abort();
        if (s.primary->state() == SessionState::up && s.secondary->state() == SessionState::up) {
            for (const auto& l : s.dp_a.rx)
                if (l.next && !SessionTestAccess::next_pending(*s.primary)) std::abort();
            for (const auto& l : s.dp_b.rx)
                if (l.next && !SessionTestAccess::next_pending(*s.secondary)) std::abort();
        }
    }
    s.run_for(10s);
    SessionTestAccess::check_bounded(*s.primary);
    SessionTestAccess::check_bounded(*s.secondary);
    return 0;
}
