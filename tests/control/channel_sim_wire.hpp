// The parts of the channel test rig (channel_sim.hpp) that are not the fake dataplane: the
// fault-injecting link between the two appliances and what it carries, a seeded key source,
// an observer of the WAN, a probe that opens what a session sealed (which message a control
// packet carried), and a capture of log lines.
#pragma once

#include <algorithm>
#include <cstring>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "common/bytes.hpp"
#include "common/checksum.hpp"
#include "common/log.hpp"
#include "control/channel/dh.hpp"
#include "control/channel/session.hpp"
#include "control/clock.hpp"
#include "control/event_loop.hpp"

namespace p3::channel {

// Reads a session's current outbound control key: to open a control packet it just sealed
// (which message went out, for captures and targeted losses) and to seal one as it would.
struct ChannelProbe {
    static std::optional<Message> open_sent(const Session& from, std::span<const std::uint8_t> inner) {
        const Epochs::Tx& tx = from.epochs_.tx();
        auto sv = parse_packet(FrameAddrs{from.cfg_.addrs.peer, from.cfg_.addrs.local, from.cfg_.addrs.port}, inner);
        if (!sv || !tx.ctl.valid()) return std::nullopt;
        std::vector<std::uint8_t> plain(sv->ciphertext.size());
        auto n = open_sealed(tx.ctl, *sv, plain);
        if (!n) return std::nullopt;
        return parse({plain.data(), *n});
    }
    static std::string describe(const Session& s) {
        std::string o = "current " + (s.current_ ? std::to_string(int(s.current_->kind)) : std::string("-"));
        o += " queue " + std::to_string(s.queue_.size()) + " beside " + std::to_string(s.beside_);
        o += " between " + std::to_string(s.arrays_.between_chunks());
        o += " outstanding " + std::to_string(s.link_.outstanding().size());
        for (auto& w : s.queue_) o += " q" + std::to_string(int(w.kind));
        return o;
    }
    // Seals m as `from` would (its key, its next control sequence) and hands it to `to`.
    static void forge(Session& from, Session& to, const Message& m) {
        std::vector<std::uint8_t> msg(limits::kMaxMessageLen);
        msg.resize(encode(m, msg));
        forge_bytes(from, to, msg);
    }
    // The same with message bytes as given (malformed ones too).
    static void forge_bytes(Session& from, Session& to, std::span<const std::uint8_t> msg) {
        Epochs::Tx& tx = from.epochs_.tx();
        std::vector<std::uint8_t> pkt(limits::kMaxInnerPacket);
        FrameParams fp;
        fp.epoch = tx.epoch;
        fp.seq = ++tx.seq;
        pkt.resize(seal_packet(from.cfg_.addrs, tx.ctl, fp, msg, pkt));
        to.on_control_packet(pkt);
    }
};

}  // namespace p3::channel

namespace p3::channel::sim {

using namespace std::chrono_literals;
using control::Duration;
using control::EventLoop;
using control::ManualClock;
using control::SeededRandom;
using control::TimePoint;

using be::get32;
using be::get64;
using be::put32;
using be::put64;

class RandomKeys final : public KeySource {
public:
    explicit RandomKeys(std::uint64_t seed) : r_(seed) {}
    bool fill(std::span<std::uint8_t> out) noexcept override { return !fail && r_.fill(out); }
    bool fail = false;

private:
    SeededRandom r_;
};

struct Packet {
    TimePoint at;
    std::uint64_t order;
    int to;  // 0 = primary side, 1 = secondary side
    std::vector<std::uint8_t> bytes;
    bool control;
    std::vector<std::uint8_t> key;  // the key the sender sealed it with (the receiver's check)
};

struct Faults {
    double drop = 0, dup = 0;
    Duration delay = 20ms, jitter = 0ms;  // delay + uniform [0, jitter): jitter reorders
    bool control_only = true;             // faults hit control packets only (data stays clean)
};

class Link {
public:
    explicit Link(std::uint64_t seed) : rng_(seed) {}
    Faults faults;
    bool cut = false;  // drop everything
    std::uint64_t dropped = 0, duplicated = 0;

    void send(TimePoint now, int to, std::vector<std::uint8_t> bytes, bool control, std::vector<std::uint8_t> key) {
        if (cut) {
            ++dropped;
            return;
        }
        const bool faulty = control || !faults.control_only;
        if (faulty && chance(faults.drop)) {
            ++dropped;
            return;
        }
        int copies = faulty && chance(faults.dup) ? 2 : 1;
        if (copies == 2) ++duplicated;
        for (int i = 0; i < copies; ++i) {
            Duration d = faults.delay;
            if (faulty && faults.jitter > 0ms)
                d += Duration(static_cast<Duration::rep>(uniform() * double(faults.jitter.count())));
            q_.push_back({now + d, order_++, to, bytes, control, key});
        }
    }
    std::optional<TimePoint> next() const {
        std::optional<TimePoint> t;
        for (auto& p : q_)
            if (!t || p.at < *t) t = p.at;
        return t;
    }
    // Packets due at or before now, in (time, order) order.
    std::vector<Packet> take_due(TimePoint now) {
        std::vector<Packet> out;
        for (auto it = q_.begin(); it != q_.end();) {
            if (it->at <= now) {
                out.push_back(std::move(*it));
                it = q_.erase(it);
            } else {
                ++it;
            }
        }
        std::sort(out.begin(), out.end(),
                  [](const Packet& a, const Packet& b) { return a.at != b.at ? a.at < b.at : a.order < b.order; });
        return out;
    }
    std::size_t in_flight() const { return q_.size(); }
    std::size_t in_flight(int to, bool control) const {
        return static_cast<std::size_t>(
            std::count_if(q_.begin(), q_.end(), [&](const Packet& p) { return p.to == to && p.control == control; }));
    }
    void clear() { q_.clear(); }

private:
    double uniform() {
        std::uint8_t b[4];
        rng_.fill(b);
        return double(get32(b)) / 4294967296.0;
    }
    bool chance(double p) { return p > 0 && uniform() < p; }
    SeededRandom rng_;
    std::deque<Packet> q_;
    std::uint64_t order_ = 0;
};

// What an observer of the WAN sees, per sending side: the P3 IDs and, per P3 ID, sequences in
// sending order. A rekey must change none of it.
struct WireObserver {
    std::map<std::uint32_t, std::uint64_t> last_seq[2];
    std::uint64_t seq_not_up = 0;
    void see(int from, std::uint32_t id, std::uint64_t seq) {
        auto [it, fresh] = last_seq[from].try_emplace(id, seq);
        if (!fresh) {
            if (seq <= it->second) ++seq_not_up;
            it->second = seq;
        }
    }
    std::size_t ids(int from) const { return last_seq[from].size(); }
};

// Log lines of a test run, to assert what an administrator would see.
struct LogCapture {
    struct Line {
        log::Level level;
        Reason reason;
        std::string text;
    };
    std::vector<Line> lines;
    LogCapture() {
        log::Options o;
        o.to_stderr = false;
        o.min_level = log::Level::debug;
        log::init(o);
        log::set_sink(
            [](log::Level lv, Reason r, std::string_view line, void* ctx) {
                static_cast<LogCapture*>(ctx)->lines.push_back({lv, r, std::string(line)});
            },
            this);
    }
    ~LogCapture() { log::set_sink(nullptr, nullptr); }
    std::size_t count(Reason r) const {
        return static_cast<std::size_t>(std::count_if(lines.begin(), lines.end(), [r](const Line& l) { return l.reason == r; }));
    }
};


}  // namespace p3::channel::sim
