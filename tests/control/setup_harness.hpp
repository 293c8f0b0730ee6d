// Two setup engines in one process, a primary and a secondary, joined by in-memory queues
// and stepped datagram by datagram on a ManualClock (after strongSwan's exchange tests). The
// harness can drop, duplicate, reorder and rewrite (NAT) datagrams between them, and records
// what each side's SessionSink saw and every log line with its reason code.
#pragma once

#include <cstring>
#include <deque>
#include <map>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "common/log.hpp"
#include "control/setup/setup_engine.hpp"

namespace p3::setup::test {

struct Datagram {
    Endpoint from, to;
    Bytes data;
    control::TimePoint sent_at;
    Framing framing = Framing::plain;
};

class Queue final : public Transport {
public:
    explicit Queue(const control::Clock& c) : clock_(c) {}
    void send(const Endpoint& from, const Endpoint& to, ByteView d, Framing framing) override {
        q.push_back(Datagram{from, to, Bytes(d.begin(), d.end()), clock_.now(), framing});
        all.push_back(q.back());
    }
    std::deque<Datagram> q;
    std::vector<Datagram> all;  // every datagram ever sent, for pcaps and timing checks

private:
    const control::Clock& clock_;
};

class RecordingSink final : public SessionSink {
public:
    explicit RecordingSink(std::uint32_t first_id) : next_(first_id) {}
    std::optional<std::uint32_t> reserve_rx_id(std::uint32_t, std::uint32_t peer_lanes) override {
        announced.push_back(peer_lanes);
        if (full) return std::nullopt;
        reserved.insert(next_);
        return next_++;
    }
    void release_rx_id(std::uint32_t id) override {
        reserved.erase(id);
        released.push_back(id);
    }
    bool install(EstablishedSession&& s) override {
        if (refuse_install) return false;
        reserved.erase(s.rx_p3_id);
        sessions.push_back(std::move(s));
        return true;
    }
    void setup_failed(std::uint32_t remote_id, Reason r) override { failures.emplace_back(remote_id, r); }

    std::uint32_t local_lanes() const override { return lanes; }

    bool full = false, refuse_install = false;
    std::uint32_t lanes = 0;                 // announced in IKE_AUTH when set
    std::vector<std::uint32_t> announced;    // peer_lanes of every reservation
    std::set<std::uint32_t> reserved;
    std::vector<std::uint32_t> released;
    std::vector<EstablishedSession> sessions;
    std::vector<std::pair<std::uint32_t, Reason>> failures;

private:
    std::uint32_t next_;
};

// Captures log lines (process-wide sink) while alive.
class LogCapture {
public:
    LogCapture() {
        log::Options o;
        o.to_stderr = false;
        o.min_level = log::Level::debug;
        log::init(o);
        log::set_sink(&LogCapture::on_line, this);
    }
    ~LogCapture() { log::set_sink(nullptr, nullptr); }
    LogCapture(const LogCapture&) = delete;
    LogCapture& operator=(const LogCapture&) = delete;
    std::size_t count(Reason r) const {
        std::size_t n = 0;
        for (const auto& l : lines)
            if (l.first == r) ++n;
        return n;
    }
    bool has(Reason r, const std::string& text) const {
        for (const auto& l : lines)
            if (l.first == r && l.second.find(text) != std::string::npos) return true;
        return false;
    }
    std::vector<std::pair<Reason, std::string>> lines;

private:
    static void on_line(log::Level, Reason r, std::string_view line, void* ctx) {
        static_cast<LogCapture*>(ctx)->lines.emplace_back(r, std::string(line));
    }
};

inline Endpoint ep(const char* a, std::uint16_t port) { return Endpoint{*IpAddr::parse(a), port}; }

// A primary at 192.0.2.1 (id pri.test, LAN 10.1.0.0/24) with one remote, id 7 (sec.test at
// 192.0.2.2, subnets 10.2.0.0/24); a secondary at 192.0.2.2 whose remote 1 is the primary.
struct PairConfig {
    std::string primary_id = "pri.test", secondary_id = "sec.test";
    std::string primary_expects = "sec.test";  // the remote's identity in the primary's config
    std::string secondary_expects = "pri.test";
    config::KeyType key_type = config::KeyType::aes128;
    IpAddr secondary_addr = *IpAddr::parse("192.0.2.2");
};

inline config::Config primary_config(const PairConfig& pc) {
    config::Config c;
    c.role = config::Role::primary;
    c.local.address = *IpAddr::parse("192.0.2.1");
    c.local.identity = pc.primary_id;
    c.dataplane.lan.address = *Prefix::parse("10.1.0.1/24", false);
    config::Remote r;
    r.id = 7;
    r.address = *IpAddr::parse("192.0.2.2");
    r.identity = pc.primary_expects;
    r.subnets = {*Prefix::parse("10.2.0.0/24")};
    r.params.key_type = pc.key_type;
    r.params.heartbeat_time = 10;
    c.remotes.push_back(std::move(r));
    return c;
}

inline config::Config secondary_config(const PairConfig& pc) {
    config::Config c;
    c.role = config::Role::secondary;
    c.local.address = pc.secondary_addr;
    c.local.identity = pc.secondary_id;
    c.dataplane.lan.address = *Prefix::parse("10.2.0.1/24", false);
    config::Remote r;
    r.id = 1;
    r.address = *IpAddr::parse("192.0.2.1");
    r.identity = pc.secondary_expects;
    c.remotes.push_back(std::move(r));
    return c;
}

// Pre-shared keys are per remote: the primary holds its remote 7's key, the secondary its
// remote 1's (the primary's). psk(s) is key s under both ids, so the same value serves either
// side of the pair; a third id (test_setup_engine's second remote) gets its own key.
inline constexpr const char* kTestPsk = "the pair's test key, 16+ bytes";
inline Credentials psk(const char* s, std::initializer_list<std::uint32_t> remotes = {1, 7}) {
    Credentials c;
    for (auto id : remotes)
        if (!c.add_psk(id, ByteView(reinterpret_cast<const std::uint8_t*>(s), std::strlen(s))))
            throw std::invalid_argument("test pre-shared key shorter than 16 bytes");
    return c;
}

struct Pair {
    control::ManualClock clock;
    control::SeededRandom rnd_p{1}, rnd_s{2};
    Queue to_s{clock}, to_p{clock};  // to_p: what the secondary sent (towards the primary)
    RecordingSink sink_p{0x1000}, sink_s{0x2000};
    std::unique_ptr<SetupEngine> p, s;
    // NAT between them: the secondary's source as the primary sees it.
    std::optional<Endpoint> nat_public;

    Pair(const PairConfig& pc, Credentials cp, Credentials cs, SetupOptions op = {}, SetupOptions os = {})
        : Pair(primary_config(pc), secondary_config(pc), std::move(cp), std::move(cs), std::move(op), std::move(os)) {}
    Pair(const config::Config& pcfg, const config::Config& scfg, Credentials cp, Credentials cs, SetupOptions op = {},
         SetupOptions os = {}) {
        p = std::make_unique<SetupEngine>(pcfg, std::move(cp), std::move(op), clock, rnd_p, to_s, sink_p);
        s = std::make_unique<SetupEngine>(scfg, std::move(cs), std::move(os), clock, rnd_s, to_p, sink_s);
        s_local = Endpoint{scfg.local.address, 5653};
    }
    Endpoint s_local;

    // Deliver the oldest datagram in a queue. False if it was empty.
    bool deliver_to_p() {
        if (to_p.q.empty()) return false;
        Datagram d = std::move(to_p.q.front());
        to_p.q.pop_front();
        if (d.data.size() == 1 && d.data[0] == 0xff) return true;  // NAT keepalive: the transport's to consume
        if (nat_public) d.from = *nat_public;
        p->on_datagram(d.from, d.to, d.data);
        return true;
    }
    bool deliver_to_s() {
        if (to_s.q.empty()) return false;
        Datagram d = std::move(to_s.q.front());
        to_s.q.pop_front();
        if (nat_public && d.to == *nat_public) d.to = s_local;
        s->on_datagram(d.from, d.to, d.data);
        return true;
    }
    // Until both queues are empty (bounded).
    void run() {
        for (int i = 0; i < 100 && (deliver_to_p() || deliver_to_s()); ++i) {}
    }
    // Advance the clock and run both engines' timers.
    void tick(control::Duration d) {
        clock.advance(d);
        p->on_timer();
        s->on_timer();
    }
    bool up() const { return sink_p.sessions.size() == 1 && sink_s.sessions.size() == 1; }
};

}  // namespace p3::setup::test
