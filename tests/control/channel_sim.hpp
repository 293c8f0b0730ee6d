// Two control-channel sessions (primary + secondary) back to back on one manual clock, each with
// a fake dataplane that really encrypts (AES-GCM, OpenSSL) every packet under the keys the
// session installed, modelled on the real key slots (stable lanes, current and next keys picked
// by sequence), and a fault-injecting link between them. Hours of timers run in seconds.
//
//   primary Session <-> FakeDataplane A  ==link (drop/dup/delay/reorder)==  FakeDataplane B <-> secondary Session
//
// What it checks for "no packet lost, nothing visible at a rekey": when a packet is sent, the
// receiver's lane holds the key it is sent under (send_unreceivable); the WAN shows one P3 ID
// per lane and sequences that only go up (WireObserver); on arrival the packet opens under
// exactly the key its sender used (wrong_key, auth_failures), is not below the lane's current
// key (below_cur) and is no replay (replays).
#pragma once


#include "channel_sim_wire.hpp"
#include "common/hkdf.hpp"

namespace p3::channel::sim {

class Sim;

// The dataplane of one appliance, for one session, modelled on the real key slots
// (docs/key-slots.md): stable lanes, each with its P3 ID for the session's life, a sequence
// that runs on across rekeys, and per inbound lane a current key (from cur_from), at most one
// next key (from next_from when announced) and `learned` (lowest sequence that authenticated
// under next). The per-packet choice, the alternative try, promotion and drop are the slots'
// rules, so the sessions are tested against what the dataplane really does.
class FakeDataplane final : public KeyInstaller, public ControlLink {
public:
    static constexpr std::uint64_t kWindow = 1024;  // replay window per inbound lane
    struct RxLane {
        KeyMaterial cur;
        std::uint64_t cur_from = 1;
        std::optional<KeyMaterial> next;
        std::uint64_t next_from = 0;   // 0: not announced
        std::uint64_t learned = 0;     // 0: none
        std::uint64_t top = 0;         // replay window
        std::set<std::uint64_t> seen;
    };
    struct TxLane {
        std::uint32_t peer_id = 0;
        KeyMaterial key;
        std::uint64_t first_seq = 0;   // first sequence under `key` (0: not yet used)
        std::uint64_t last_seq = 0;    // the lane's counter: never reset while the session lives
    };

    FakeDataplane(Sim& sim, int side, IpAddr self, IpAddr peer) : sim_(sim), side_(side), self_(self), peer_(peer) {}

    // Lane n's key material: lane 0 as it is, n > 0 HKDF-SHA256(key || salt, "p3 lane" || n).
    static KeyMaterial lane_key(const KeyMaterial& k, std::uint32_t n) {
        if (n == 0) return k.clone();
        std::uint8_t info[11];
        std::memcpy(info, "p3 lane", 7);
        put32(info + 7, n);
        SecretBytes out(k.key.size() + 4);
        const SecretBytes ikm = k.to_wire();
        p3::hkdf_sha256({}, ikm.span(), info, out.span());
        return KeyMaterial::from_wire(out.span());
    }

    // KeyInstaller
    bool install_next_rx(const KeyMaterial& data) override {
        if (refuse_installs > 0) {
            --refuse_installs;
            return false;
        }
        if (rx.empty()) return false;
        for (std::uint32_t n = 0; n < rx.size(); ++n) {
            rx[n].next = lane_key(data, n);
            rx[n].next_from = rx[n].learned = 0;
        }
        ++installs;
        return true;
    }
    void rx_switch_at(std::span<const std::uint64_t> first_seq) override {
        ++switch_ats;
        for (std::size_t n = 0; n < rx.size() && n < first_seq.size(); ++n)
            if (rx[n].next) rx[n].next_from = first_seq[n];
    }
    bool rx_next_seen() override {
        for (auto& l : rx)
            if (l.next && (l.learned || (l.next_from && l.top >= l.next_from))) return true;
        return false;
    }
    void promote_rx() override {
        for (auto& l : rx) {
            if (!l.next) continue;
            l.cur = std::move(*l.next);
            l.cur_from = l.next_from ? l.next_from : l.learned ? l.learned : 1;
            l.next.reset();
            l.next_from = l.learned = 0;
        }
        ++promotions;
    }
    void drop_next_rx() override {
        for (auto& l : rx) {
            l.next.reset();
            l.next_from = l.learned = 0;
        }
        ++drops;
    }
    bool switch_tx(const KeyMaterial& data, std::vector<std::uint64_t>& first_seq) override {
        if (refuse_switch || tx.empty()) return false;
        first_seq.resize(tx.size());
        // The control thread's switch: the new key object goes in, a grace period passes, then
        // first_seq = last_seq + 1 (no worker sends in between here).
        for (std::uint32_t n = 0; n < tx.size(); ++n) {
            tx[n].key = lane_key(data, n);
            tx[n].first_seq = first_seq[n] = tx[n].last_seq + 1;
        }
        ++switches;
        return true;
    }
    std::uint64_t tx_packets() override {
        std::uint64_t m = 0;
        for (auto& l : tx)
            if (l.first_seq && l.last_seq >= l.first_seq) m = std::max(m, l.last_seq - l.first_seq + 1);
        return m;
    }
    void session_down(Reason why) override {
        down = true;
        down_reason = why;
        ++downs;
        rx.clear();
        tx.clear();
    }
    // A cluster holder's wait for its members (hold_switches): the switch waits until the test
    // calls `held`.
    bool hold_switch(std::function<void()> ready) override {
        if (!hold_switches) return false;
        held = std::move(ready);
        return true;
    }
    bool hold_switches = false;
    std::function<void()> held;

    // ControlLink
    void send_control(std::span<const std::uint8_t> inner) override;

    // The invariant of a lossless rekey: while both sessions are up, the receiver's lane holds
    // the key we send under (as its current or its next key).
    void check_receivable(const FakeDataplane& peer, const TxLane& l) {
        bool ok = false;
        if (l.peer_id >= peer.rx_base && l.peer_id - peer.rx_base < peer.rx.size()) {
            const RxLane& r = peer.rx[l.peer_id - peer.rx_base];
            ok = r.cur.key.equals(l.key.key.span()) || (r.next && r.next->key.equals(l.key.key.span()));
        }
        const bool both_up = session && peer.session && session->state() == SessionState::up &&
                             peer.session->state() == SessionState::up;
        if (!ok) ++(both_up ? send_unreceivable : sent_after_loss);
    }
    // A LAN packet of n bytes towards the peer's network (lanes taken in turn).
    void send_data(std::size_t n = 100);
    void receive(const Packet& p);
    // Encapsulate an inner packet on lane `lane` as the data layer would (outer IPv4, P3
    // header, GCM); the key used travels beside the bytes, for the receiver's check.
    std::vector<std::uint8_t> encap(std::span<const std::uint8_t> inner, std::uint32_t lane,
                                    std::vector<std::uint8_t>* key_used = nullptr);

    // Setup exchange stand-in: our inbound lanes (a fresh block of P3 IDs) with their first key,
    // sequences from 1.
    std::uint32_t setup_rx(const KeyMaterial& k, std::uint32_t lanes) {
        down = false;
        rx_base = next_id_;
        next_id_ += 64;
        rx.clear();
        rx.resize(lanes);
        for (std::uint32_t n = 0; n < lanes; ++n) rx[n].cur = lane_key(k, n);
        return rx_base;
    }
    void setup_tx(std::uint32_t peer_base, const KeyMaterial& k, std::uint32_t lanes) {
        tx.clear();
        tx.resize(lanes);
        for (std::uint32_t n = 0; n < lanes; ++n) tx[n] = TxLane{peer_base + n, lane_key(k, n), 1, 0};
    }
    void reset() {
        rx.clear();
        tx.clear();
    }
    bool holds(std::uint32_t id) const { return id >= rx_base && id - rx_base < rx.size(); }

    std::vector<RxLane> rx;
    std::vector<TxLane> tx;
    std::uint32_t rx_base = 0;
    Session* session = nullptr;
    bool size_hiding = false;
    int refuse_installs = 0;  // refuse this many installs
    bool refuse_switch = false;
    bool down = false;
    Reason down_reason = Reason::INTERNAL;
    // Every control message this side sends, opened (type, inner length, when), and a
    // predicate that loses chosen ones on the link (their sequence spent, as on a real wire).
    struct Sent {
        MsgType type;
        std::size_t inner_len;
        TimePoint at;
        Message m;
    };
    std::vector<Sent> sent;
    bool record = false;
    std::function<bool(const Message&)> lose;
    // counters
    std::uint64_t data_sent = 0, data_received = 0, control_sent = 0, control_received = 0;
    std::uint64_t send_unreceivable = 0, sent_after_loss = 0, lost_no_slot = 0, auth_failures = 0, replays = 0;
    std::uint64_t below_cur = 0;        // dropped before AES: below the lane's current key
    std::uint64_t wrong_key = 0;        // opened under a key other than the one it was sealed with
    std::uint64_t second_tries = 0;     // opened under the alternative (next) key
    std::uint64_t installs = 0, switches = 0, switch_ats = 0, promotions = 0, drops = 0, downs = 0, not_sent_down = 0;
    std::uint64_t tapped_out = 0;
    std::vector<std::size_t> control_sizes, data_sizes;
    std::vector<std::vector<std::uint8_t>> control_outer;  // kept when keep_outer
    bool keep_outer = false;
    std::uint32_t next_id_base(std::uint32_t b) { return next_id_ = b; }

private:
    Sim& sim_;
    int side_;
    IpAddr self_, peer_;
    std::uint32_t next_id_ = 0x100;
    std::uint32_t lane_rr_ = 0;
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
        dp_b.next_id_base(0x200000);
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
        c.jitter = jitter;
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
        c.jitter = jitter;
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

    // What a completed setup exchange does: the lanes both ways (fresh P3 IDs, sequences from
    // 1), then both sessions start.
    void setup() {
        KeyMaterial d_ab = fresh_key(), d_ba = fresh_key(), c_ab = fresh_key(), c_ba = fresh_key();
        const std::uint32_t a_rx = dp_a.setup_rx(d_ba, lanes_b), b_rx = dp_b.setup_rx(d_ab, lanes_a);
        dp_a.setup_tx(b_rx, d_ab, lanes_a);
        dp_b.setup_tx(a_rx, d_ba, lanes_b);
        InitialKeys ka{a_rx, b_rx, c_ab.clone(), c_ba.clone(), lanes_a, lanes_b};
        InitialKeys kb{b_rx, a_rx, c_ba.clone(), c_ab.clone(), lanes_b, lanes_a};
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

    // Lanes each side sends on (the primary's, the secondary's): unequal on purpose.
    std::uint32_t lanes_a = 2, lanes_b = 3;
    // Rekey and array-chunk jitter (drawn from each session's seeded Random); set before
    // make_primary / make_secondary (the constructor's sessions have it on).
    bool jitter = true;
    WireObserver wire;

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
            for (auto& p : link.take_due(clock.now())) (p.to == 0 ? dp_a : dp_b).receive(p);
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

    void link_send(int from, std::vector<std::uint8_t> b, bool control, std::vector<std::uint8_t> key) {
        wire.see(from, get32(b.data() + 24), get64(b.data() + 28));
        link.send(clock.now(), from == 0 ? 1 : 0, std::move(b), control, std::move(key));
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
inline std::vector<std::uint8_t> FakeDataplane::encap(std::span<const std::uint8_t> inner, std::uint32_t lane,
                                                      std::vector<std::uint8_t>* key_used) {
    TxLane& l = tx[lane];
    const std::size_t n = inner.size();
    std::size_t plain = (n + 2 + 3) / 4 * 4;
    if (size_hiding) plain = (n + 2 + wire::kSizeHideBucket - 1) / wire::kSizeHideBucket * wire::kSizeHideBucket;
    std::vector<std::uint8_t> pt(plain, 0);
    std::memcpy(pt.data(), inner.data(), n);
    pt[plain - 2] = static_cast<std::uint8_t>(plain - 2 - n);
    pt[plain - 1] = 4;
    const std::uint64_t seq = ++l.last_seq;
    if (l.first_seq == 0) l.first_seq = seq;  // the worker's CAS on a key object's first use
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
    put32(h + 4, l.peer_id);
    put64(h + 8, seq);
    gcm_seal(l.key, seq, {h, 16}, pt, {h + 16, plain + 16});
    if (key_used) key_used->assign(l.key.key.data(), l.key.key.data() + l.key.key.size());
    return out;
}

inline void FakeDataplane::send_control(std::span<const std::uint8_t> inner) {
    if (tx.empty()) {
        ++not_sent_down;
        return;
    }
    Sim& s = sim_;
    FakeDataplane& peer = side_ == 0 ? s.dp_b : s.dp_a;
    const std::uint32_t lane = lane_rr_++ % tx.size();
    check_receivable(peer, tx[lane]);
    std::vector<std::uint8_t> key;
    auto out = encap(inner, lane, &key);
    ++control_sent;
    control_sizes.push_back(out.size());
    if (keep_outer) control_outer.push_back(out);
    if ((record || lose) && session) {
        auto m = ChannelProbe::open_sent(*session, inner);
        if (m && record) sent.push_back({m->type, inner.size(), s.clock.now(), m->clone()});
        if (m && lose && lose(*m)) {
            ++tapped_out;  // lost on the way (its sequence was spent, as on a real wire)
            s.wire.see(side_, get32(out.data() + 24), get64(out.data() + 28));
            return;
        }
    }
    s.link_send(side_, std::move(out), true, std::move(key));
}

inline void FakeDataplane::send_data(std::size_t n) {
    if (tx.empty() || down) return;
    Sim& s = sim_;
    FakeDataplane& peer = side_ == 0 ? s.dp_b : s.dp_a;
    const std::uint32_t lane = lane_rr_++ % tx.size();
    check_receivable(peer, tx[lane]);
    // A LAN packet: IPv4 to a host behind the peer (not the peer itself), TOS 0.
    std::vector<std::uint8_t> inner(std::max<std::size_t>(n, 20), 0x5a);
    inner[0] = 0x45;
    inner[1] = 0;
    inner[2] = std::uint8_t(inner.size() >> 8), inner[3] = std::uint8_t(inner.size());
    inner[9] = 17;
    inner[16] = 10, inner[17] = 2, inner[18] = 0, inner[19] = 9;
    std::vector<std::uint8_t> key;
    auto out = encap(inner, lane, &key);
    ++data_sent;
    data_sizes.push_back(out.size());
    s.link_send(side_, std::move(out), false, std::move(key));
}

// The inbound path of a key slot: drop below the current key's range before AES, pick cur or
// next by sequence (or try next as the alternative while its point is unknown), check the tag,
// then the replay window.
inline void FakeDataplane::receive(const Packet& p) {
    const std::vector<std::uint8_t>& outer = p.bytes;
    if (outer.size() < 20 + 16 + 16) return;
    const std::uint8_t* h = outer.data() + 20;
    const std::uint32_t id = get32(h + 4);
    const std::uint64_t seq = get64(h + 8);
    if (!holds(id)) {
        ++lost_no_slot;
        return;
    }
    RxLane& l = rx[id - rx_base];
    if (seq < l.cur_from) {
        ++below_cur;
        return;
    }
    if ((l.top >= kWindow && seq <= l.top - kWindow) || l.seen.count(seq)) {
        ++replays;
        return;
    }
    const KeyMaterial* k = &l.cur;
    const KeyMaterial* alt = nullptr;
    if (l.next) {
        if (l.next_from) k = seq >= l.next_from ? &*l.next : &l.cur;
        else if (l.learned && seq >= l.learned) k = &*l.next;
        else alt = &*l.next;
    }
    const std::size_t ctlen = outer.size() - 20 - 16 - 16;
    std::vector<std::uint8_t> pt(ctlen);
    bool ok = gcm_open(*k, seq, {h, 16}, {h + 16, ctlen}, {h + 16 + ctlen, 16}, pt);
    if (!ok && alt) {
        ok = gcm_open(*alt, seq, {h, 16}, {h + 16, ctlen}, {h + 16 + ctlen, 16}, pt);
        if (ok) {
            k = alt;
            ++second_tries;
            l.learned = l.learned ? std::min(l.learned, seq) : seq;
        }
    }
    if (!ok) {
        ++auth_failures;
        return;
    }
    if (!k->key.equals(p.key)) ++wrong_key;
    l.seen.insert(seq);
    if (seq > l.top) {
        l.top = seq;
        while (!l.seen.empty() && l.top >= kWindow && *l.seen.begin() <= l.top - kWindow) l.seen.erase(l.seen.begin());
    }
    const std::size_t n = ctlen - 2 - pt[ctlen - 2];
    // Inner destination = our own WAN address: the control layer; else a LAN packet.
    if (n >= 20 && std::memcmp(pt.data() + 16, self_.bytes.data(), 4) == 0) {
        ++control_received;
        if (session) session->on_control_packet({pt.data(), n});
    } else {
        ++data_received;
    }
}

}  // namespace p3::channel::sim
