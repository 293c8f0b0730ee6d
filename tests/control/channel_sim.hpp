// Two control-channel sessions (primary + secondary) back to back on one manual clock, each with
// a fake dataplane that really encrypts (AES-GCM, OpenSSL) every packet under the key slots the
// session installed, and a fault-injecting link between them. Hours of timers run in seconds.
//
//   primary Session <-> FakeDataplane A  ==link (drop/dup/delay/reorder)==  FakeDataplane B <-> secondary Session
//
// The fake dataplane checks what matters for "no packet lost at a rekey": when a packet is sent
// under a P3 ID, the receiver must hold that ID's inbound slot with the very same key
// (send_unreceivable counts violations); on arrival the slot must still be there and the tag must
// verify (lost_no_slot, auth_failures), and no sequence may repeat (replays).
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
#include "control/channel/session.hpp"
#include "control/clock.hpp"
#include "control/event_loop.hpp"

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

    void send(TimePoint now, int to, std::vector<std::uint8_t> bytes, bool control) {
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
            q_.push_back({now + d, order_++, to, bytes, control});
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

class Sim;

// The dataplane of one appliance, for one session: key slots, encap/decap, counters.
class FakeDataplane final : public KeyInstaller, public ControlLink {
public:
    struct Slot {
        KeyMaterial key;
        std::uint32_t lanes = 1;
        bool seen = false;
        std::set<std::uint64_t> seqs;
    };
    struct Tx {
        std::uint32_t peer_id = 0;
        KeyMaterial key;
        std::uint64_t seq = 0;
        std::uint64_t packets = 0;
    };

    FakeDataplane(Sim& sim, int side, IpAddr self, IpAddr peer) : sim_(sim), side_(side), self_(self), peer_(peer) {}

    // KeyInstaller
    std::optional<std::uint32_t> install_rx(const KeyMaterial& data, std::uint32_t lanes) override {
        if (refuse_installs > 0) {
            --refuse_installs;
            return std::nullopt;
        }
        const std::uint32_t id = next_id_++;
        slots[id] = Slot{data.clone(), lanes, false, {}};
        ++installs;
        return id;
    }
    bool switch_tx(std::uint32_t peer_id, const KeyMaterial& data, std::uint32_t) override {
        if (refuse_switch) return false;
        tx = Tx{peer_id, data.clone(), 0, 0};
        ++switches;
        return true;
    }
    void retire_rx(std::uint32_t id) override {
        if (slots.erase(id)) ++retired;
        retired_ids.insert(id);
    }
    bool rx_seen(std::uint32_t id) override {
        auto it = slots.find(id);
        return it != slots.end() && it->second.seen;
    }
    std::uint64_t tx_packets() override { return tx.packets; }
    void session_down(Reason why) override {
        down = true;
        down_reason = why;
        ++downs;
        slots.clear();
        tx = Tx{};
    }
    // ControlLink
    void send_control(std::span<const std::uint8_t> inner) override;

    // The invariant of a lossless rekey: while both sessions are up, whatever we send under is
    // held by the receiver with the same key. (After a loss one side may still send under keys
    // the other has dropped: that is the loss, counted apart.)
    void check_receivable(const FakeDataplane& peer) {
        auto it = peer.slots.find(tx.peer_id);
        const bool ok = it != peer.slots.end() && it->second.key.key.equals(tx.key.key.span());
        const bool both_up = session && peer.session && session->state() == SessionState::up &&
                             peer.session->state() == SessionState::up;
        if (!ok) ++(both_up ? send_unreceivable : sent_after_loss);
    }
    // A LAN packet of n bytes towards the peer's network.
    void send_data(std::size_t n = 100);
    void receive(const std::vector<std::uint8_t>& outer);
    // Encapsulate an inner packet as the data layer would (outer IPv4, P3 header, GCM).
    std::vector<std::uint8_t> encap(std::span<const std::uint8_t> inner);

    // Setup exchange stand-in: the slots a completed setup installs.
    std::uint32_t setup_rx(const KeyMaterial& k) {
        down = false;
        return *install_rx(k, 1);
    }
    void reset() {
        slots.clear();
        tx = Tx{};
    }

    std::map<std::uint32_t, Slot> slots;
    std::set<std::uint32_t> retired_ids;
    Tx tx;
    Session* session = nullptr;
    bool size_hiding = false;
    int refuse_installs = 0;  // refuse this many installs
    bool refuse_switch = false;
    bool down = false;
    Reason down_reason = Reason::INTERNAL;
    // counters
    std::uint64_t data_sent = 0, data_received = 0, control_sent = 0, control_received = 0;
    std::uint64_t send_unreceivable = 0, sent_after_loss = 0, lost_no_slot = 0, auth_failures = 0, replays = 0;
    std::uint64_t installs = 0, switches = 0, retired = 0, downs = 0, not_sent_down = 0;
    std::vector<std::size_t> control_sizes, data_sizes;
    std::vector<std::vector<std::uint8_t>> control_outer;  // kept when keep_outer

    bool keep_outer = false;
    std::uint32_t next_id_base(std::uint32_t b) { return next_id_ = b; }

private:
    Sim& sim_;
    int side_;
    IpAddr self_, peer_;
    std::uint32_t next_id_ = 0x100;
    std::uint16_t ip_id_ = 1;
};

struct SideConfig {
    config::SessionParams params;
};

// The whole rig.
class Sim {
public:
    explicit Sim(config::SessionParams params, std::uint64_t seed = 1)
        : params_(params), link(seed * 7 + 3), loop_a(clock), loop_b(clock), rng_a(seed * 11), rng_b(seed * 13),
          keys_a(seed * 17), keys_b(seed * 19), keys_setup(seed * 23),
          dp_a(*this, 0, *IpAddr::parse("192.0.2.1"), *IpAddr::parse("198.51.100.2")),
          dp_b(*this, 1, *IpAddr::parse("198.51.100.2"), *IpAddr::parse("192.0.2.1")) {
        dp_a.next_id_base(0x1000);
        dp_b.next_id_base(0x2000);
        dp_a.size_hiding = dp_b.size_hiding = params.size_hiding;
        make_primary();
        make_secondary();
    }

    void make_primary() {
        SessionConfig c;
        c.role = config::Role::primary;
        c.remote_id = 2;
        c.name = "remote 2";
        c.addrs = {*IpAddr::parse("192.0.2.1"), *IpAddr::parse("198.51.100.2"), 5653};
        c.params = params_;
        primary = std::make_unique<Session>(loop_a, c, dp_a, dp_a, rng_a, keys_a);
        primary->observer = [this](const Event& e) { events_a.push_back({clock.now(), e}); };
        dp_a.session = primary.get();
    }
    void make_secondary() {
        SessionConfig c;
        c.role = config::Role::secondary;
        c.remote_id = 1;
        c.name = "primary";
        c.addrs = {*IpAddr::parse("198.51.100.2"), *IpAddr::parse("192.0.2.1"), 5653};
        c.params = params_;
        secondary = std::make_unique<Session>(loop_b, c, dp_b, dp_b, rng_b, keys_b, &setup_driver);
        secondary->observer = [this](const Event& e) { events_b.push_back({clock.now(), e}); };
        dp_b.session = secondary.get();
    }

    KeyMaterial fresh_key() {
        std::uint8_t b[36];
        const std::size_t n = (params_.key_type == config::KeyType::aes256 ? 32 : 16) + 4;
        keys_setup.fill({b, n});
        return KeyMaterial::from_wire({b, n});
    }

    // What a completed setup exchange does: data slots both ways, then both sessions start.
    void setup() {
        KeyMaterial d_ab = fresh_key(), d_ba = fresh_key(), c_ab = fresh_key(), c_ba = fresh_key();
        const std::uint32_t a_rx = dp_a.setup_rx(d_ba), b_rx = dp_b.setup_rx(d_ab);
        dp_a.switch_tx(b_rx, d_ab, 1);
        dp_b.switch_tx(a_rx, d_ba, 1);
        InitialKeys ka{a_rx, b_rx, c_ab.clone(), c_ba.clone(), 1, 1};
        InitialKeys kb{b_rx, a_rx, c_ba.clone(), c_ab.clone(), 1, 1};
        ++setups;
        if (primary->state() == SessionState::up) primary->restart(std::move(ka));
        else primary->start(std::move(ka));
        if (secondary->state() == SessionState::lost || secondary->state() == SessionState::retrying)
            secondary->setup_succeeded(std::move(kb));
        else
            secondary->start(std::move(kb));
    }

    // The secondary's setup attempts during recovery: fail while setup_fails, else succeed.
    struct Driver final : SetupDriver {
        Sim* sim = nullptr;
        void start_setup() override {
            sim->attempt_times.push_back(sim->clock.now());
            sim->loop_b.after(0s, [s = sim] {
                if (s->setup_fails || s->link.cut || !s->primary_alive) s->secondary->setup_failed();
                else s->setup();
            });
        }
    } setup_driver{};

    // Steady data in both directions: one packet per side every data_interval.
    Duration data_interval = 50ms;
    bool data_on = true;

    void run_for(Duration d) { run_until(clock.now() + d); }
    void run_until(TimePoint end) {
        setup_driver.sim = this;
        for (;;) {
            TimePoint next = TimePoint::max();
            TimePoint t;
            if (loop_a.next_deadline(t)) next = std::min(next, t);
            if (loop_b.next_deadline(t)) next = std::min(next, t);
            if (auto l = link.next()) next = std::min(next, *l);
            if (data_on) next = std::min(next, next_data_);
            if (next > end) {
                if (clock.now() < end) clock.set(end);
                loop_a.run_due();
                loop_b.run_due();
                return;
            }
            if (next > clock.now()) clock.set(next);
            for (auto& p : link.take_due(clock.now())) (p.to == 0 ? dp_a : dp_b).receive(p.bytes);
            if (data_on && next_data_ <= clock.now()) {
                if (primary_alive) dp_a.send_data();
                dp_b.send_data();
                next_data_ = clock.now() + data_interval;
            }
            loop_a.run_due();
            loop_b.run_due();
        }
    }
    // Run until pred() or the deadline; true if pred() held.
    bool run_until_pred(const std::function<bool()>& pred, Duration max, Duration step = 1s) {
        const TimePoint end = clock.now() + max;
        while (clock.now() < end) {
            if (pred()) return true;
            run_for(step);
        }
        return pred();
    }
    // Stop the data, let everything in flight arrive.
    void drain() {
        data_on = false;
        run_for(5s);
    }

    // The primary appliance restarts: its session and its slots are gone.
    void restart_primary() {
        primary.reset();
        dp_a.reset();
        make_primary();
    }

    void link_send(int from, std::vector<std::uint8_t> b, bool control) {
        link.send(clock.now(), from == 0 ? 1 : 0, std::move(b), control);
    }

    config::SessionParams params_;
    ManualClock clock;
    Link link;
    EventLoop loop_a, loop_b;
    SeededRandom rng_a, rng_b;
    RandomKeys keys_a, keys_b;
    SeededRandom keys_setup;
    FakeDataplane dp_a, dp_b;
    std::unique_ptr<Session> primary, secondary;
    struct Stamped {
        TimePoint at;
        Event e;
    };
    std::vector<Stamped> events_a, events_b;
    std::vector<TimePoint> attempt_times;
    bool setup_fails = false;
    bool primary_alive = true;
    int setups = 0;

    std::size_t count(const std::vector<Stamped>& ev, Event::Kind k) const {
        return static_cast<std::size_t>(std::count_if(ev.begin(), ev.end(), [k](const Stamped& s) { return s.e.kind == k; }));
    }

private:
    TimePoint next_data_{};
};

// ---- FakeDataplane bodies ---------------------------------------------------------------------

// Outer: IPv4 (20, protocol 50, TOS copied from the inner) | P3 flags (4) | P3 ID (4) | seq (8) |
// GCM(inner | pad | pad length | next header) | tag (16).
inline std::vector<std::uint8_t> FakeDataplane::encap(std::span<const std::uint8_t> inner) {
    const std::size_t l = inner.size();
    std::size_t plain = (l + 2 + 3) / 4 * 4;
    if (size_hiding) plain = (l + 2 + wire::kSizeHideBucket - 1) / wire::kSizeHideBucket * wire::kSizeHideBucket;
    std::vector<std::uint8_t> pt(plain, 0);
    std::memcpy(pt.data(), inner.data(), l);
    pt[plain - 2] = static_cast<std::uint8_t>(plain - 2 - l);
    pt[plain - 1] = 4;
    const std::uint64_t seq = ++tx.seq;
    std::vector<std::uint8_t> out(20 + 16 + plain + 16, 0);
    std::uint8_t* ip = out.data();
    ip[0] = 0x45;
    ip[1] = inner[1];  // DSCP/ECN copied from the inner header
    ip[2] = std::uint8_t(out.size() >> 8), ip[3] = std::uint8_t(out.size());
    ip[4] = std::uint8_t(ip_id_ >> 8), ip[5] = std::uint8_t(ip_id_);
    ++ip_id_;
    ip[8] = 64;
    ip[9] = 50;
    std::memcpy(ip + 12, self_.bytes.data(), 4);
    std::memcpy(ip + 16, peer_.bytes.data(), 4);
    const std::uint16_t ck = csum::finish(csum::partial(ip, 20));
    ip[10] = std::uint8_t(ck >> 8), ip[11] = std::uint8_t(ck);
    std::uint8_t* h = ip + 20;
    put32(h + 4, tx.peer_id);
    put64(h + 8, seq);
    gcm_seal(tx.key, seq, {h, 16}, pt, {h + 16, plain + 16});
    ++tx.packets;
    return out;
}

inline void FakeDataplane::send_control(std::span<const std::uint8_t> inner) {
    if (!tx.key.valid()) {
        ++not_sent_down;
        return;
    }
    Sim& s = sim_;
    FakeDataplane& peer = side_ == 0 ? s.dp_b : s.dp_a;
    check_receivable(peer);
    auto out = encap(inner);
    ++control_sent;
    control_sizes.push_back(out.size());
    if (keep_outer) control_outer.push_back(out);
    s.link_send(side_, std::move(out), true);
}

inline void FakeDataplane::send_data(std::size_t n) {
    if (!tx.key.valid() || down) return;
    Sim& s = sim_;
    FakeDataplane& peer = side_ == 0 ? s.dp_b : s.dp_a;
    check_receivable(peer);
    // A LAN packet: IPv4 to a host behind the peer (not the peer itself), TOS 0.
    std::vector<std::uint8_t> inner(std::max<std::size_t>(n, 20), 0x5a);
    inner[0] = 0x45;
    inner[1] = 0;
    inner[2] = std::uint8_t(inner.size() >> 8), inner[3] = std::uint8_t(inner.size());
    inner[9] = 17;
    inner[16] = 10, inner[17] = 2, inner[18] = 0, inner[19] = 9;
    auto out = encap(inner);
    ++data_sent;
    data_sizes.push_back(out.size());
    s.link_send(side_, std::move(out), false);
}

inline void FakeDataplane::receive(const std::vector<std::uint8_t>& outer) {
    if (outer.size() < 20 + 16 + 16) return;
    const std::uint8_t* h = outer.data() + 20;
    const std::uint32_t id = get32(h + 4);
    const std::uint64_t seq = get64(h + 8);
    auto it = slots.find(id);
    if (it == slots.end()) {
        ++lost_no_slot;
        return;
    }
    Slot& sl = it->second;
    const std::size_t ctlen = outer.size() - 20 - 16 - 16;
    std::vector<std::uint8_t> pt(ctlen);
    if (!gcm_open(sl.key, seq, {h, 16}, {h + 16, ctlen}, {h + 16 + ctlen, 16}, pt)) {
        ++auth_failures;
        return;
    }
    if (!sl.seqs.insert(seq).second) {
        ++replays;
        return;
    }
    sl.seen = true;
    const std::size_t l = ctlen - 2 - pt[ctlen - 2];
    // Inner destination = our own WAN address: the control layer; else a LAN packet.
    if (l >= 20 && std::memcmp(pt.data() + 16, self_.bytes.data(), 4) == 0) {
        ++control_received;
        if (session) session->on_control_packet({pt.data(), l});
    } else {
        ++data_received;
    }
}

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
