// The cluster's sealed messages and replication engine (control/cluster/): three engines on
// an in-memory loopback bus (loopback.hpp) — membership, state to a late joiner and to a member
// that comes back, roles — and what a receiver refuses. The same engine runs on corosync in
// tests/sh/85-cluster-cpg.sh.
#include <catch2/catch.hpp>

#include <sys/stat.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>

#include "common/dp_sizes.hpp"
#include "common/log.hpp"
#include "control/cluster/engine.hpp"
#include "control/cluster/settings.hpp"
#include "tests/cluster/loopback.hpp"

using namespace p3;
using namespace p3::cluster;
using p3::cluster::test::Bus;
using p3::cluster::test::Endpoint;

namespace {

std::vector<std::uint8_t> bytes_of(std::uint8_t first, std::size_t n) {
    std::vector<std::uint8_t> v(n);
    for (std::size_t i = 0; i < n; ++i) v[i] = static_cast<std::uint8_t>(first + 7 * i);
    return v;
}

const std::vector<std::uint8_t> kClusterKey = bytes_of(1, 32);

SessionRecord record(std::uint32_t remote, std::uint32_t epoch) {
    SessionRecord r;
    r.remote_id = remote;
    r.epoch = epoch;
    r.peer_addr = {192, 0, 2, static_cast<std::uint8_t>(remote)};
    r.peer_port = 5000;
    r.lanes = 8;
    r.rx_ids = {0x100 + remote, 0x200 + remote};
    r.tx_ids = {0x300 + remote};
    r.rx_cur = SecretBytes(bytes_of(static_cast<std::uint8_t>(0x40 + remote + epoch), 36));
    r.rx_next = SecretBytes(bytes_of(static_cast<std::uint8_t>(0x50 + remote + epoch), 36));
    r.tx_cur = SecretBytes(bytes_of(static_cast<std::uint8_t>(0x60 + remote + epoch), 36));
    r.tx_next = SecretBytes(bytes_of(static_cast<std::uint8_t>(0x70 + remote + epoch), 36));
    r.rx_switch = 1000;
    r.tx_switch = 2000;
    return r;
}

std::uint64_t g_now_ms = 5000;   // every engine's clock (a test that moves it puts it back)

struct Recorder final : ReplicaSink {
    struct Got {
        std::uint32_t epoch;
        std::vector<std::uint8_t> tx_cur;
    };
    std::map<std::uint32_t, Got> sessions;
    std::vector<std::pair<std::uint8_t, Role>> roles;
    std::vector<Member> members;
    void on_session(const SessionRecord& r) override {
        sessions[r.remote_id] = {r.epoch, {r.tx_cur.span().begin(), r.tx_cur.span().end()}};
    }
    void on_role(std::uint8_t m, Role r) override { roles.emplace_back(m, r); }
    void on_members(std::span<const Member> m) override { members.assign(m.begin(), m.end()); }
    // Forwarded control packets: (remote, bytes) as the channel would get them.
    std::vector<std::pair<std::uint32_t, std::vector<std::uint8_t>>> controls;
    bool holds = true;   // false: the control session is not up here
    bool on_control(std::uint32_t remote, std::span<const std::uint8_t> b) override {
        if (!holds) return false;
        controls.emplace_back(remote, std::vector<std::uint8_t>(b.begin(), b.end()));
        return true;
    }
    std::vector<unsigned> numbers() const {
        std::vector<unsigned> v;
        for (const auto& m : members) v.push_back(m.number);
        std::sort(v.begin(), v.end());
        return v;
    }
};

struct Node {
    Endpoint ep;
    Recorder sink;
    SealKey key;
    std::unique_ptr<Engine> engine;
    Node(Bus& bus, std::uint8_t member, Role role, std::uint64_t counter_start, std::uint64_t origin,
         const std::vector<std::uint8_t>& k = kClusterKey)
        : ep(bus, origin), key(k) {
        EngineConfig c;
        c.member = member;
        c.role = role;
        c.boot_id = origin;
        c.counter_start = counter_start;
        engine = std::make_unique<Engine>(c, key, ep, sink, [] { return g_now_ms; });
        ep.engine = engine.get();
    }
};

bool contains(const std::vector<std::uint8_t>& hay, std::span<const std::uint8_t> needle) {
    return std::search(hay.begin(), hay.end(), needle.begin(), needle.end()) != hay.end();
}

std::vector<std::string> g_lines;
void capture(log::Level, Reason r, std::string_view line, void*) {
    if (r == Reason::CLUSTER_MEMBER_LEFT || r == Reason::CLUSTER_MSG_DROPPED || r == Reason::CLUSTER_CONTROL_DROPPED)
        g_lines.emplace_back(line);
}

}  // namespace

TEST_CASE("cluster: a sealed message opens only unchanged and under the same key", "[cluster]") {
    const SealKey k(kClusterKey);
    REQUIRE(k.valid());
    const SecretBytes body = encode(record(7, 1));
    const Header h{kVersion, MsgType::session, 3, 42};
    const auto msg = seal(k, h, body.span());
    REQUIRE(msg.size() == kHeaderLen + body.size() + kTagLen);

    Refusal why{};
    auto o = open(k, msg, why);
    REQUIRE(o);
    CHECK(o->header.sender == 3);
    CHECK(o->header.counter == 42);
    auto b = decode(o->header.type, o->body.span());
    REQUIRE(b);
    CHECK(std::get<SessionRecord>(*b).remote_id == 7);
    CHECK(std::get<SessionRecord>(*b).tx_cur.equals(record(7, 1).tx_cur.span()));

    auto refused = [&](std::vector<std::uint8_t> m, const SealKey& key) {
        Refusal w{};
        const bool ok = open(key, m, w).has_value();
        return ok ? Refusal::count_ : w;
    };
    for (std::size_t i : {std::size_t(2), std::size_t(5), std::size_t(20), msg.size() - 1}) {
        auto m = msg;
        m[i] ^= 0x01;   // the header is authenticated too
        CHECK(refused(m, k) == Refusal::auth);
    }
    CHECK(refused(msg, SealKey(bytes_of(9, 32))) == Refusal::auth);
    CHECK(refused({msg.begin(), msg.begin() + 27}, k) == Refusal::short_message);
    CHECK(refused(std::vector<std::uint8_t>(kMaxMessage + 1), k) == Refusal::too_long);
    auto v = msg;
    v[0] = 2;
    CHECK(refused(v, k) == Refusal::version);
    auto t = msg;
    t[1] = 9;
    CHECK(refused(t, k) == Refusal::type);
    auto s = msg;
    s[2] = 17;
    CHECK(refused(s, k) == Refusal::sender);
    CHECK_FALSE(SealKey(bytes_of(1, 31)).valid());
}

TEST_CASE("cluster: malformed bodies are refused", "[cluster]") {
    const SecretBytes good = encode(record(7, 1));
    std::vector<std::uint8_t> g(good.span().begin(), good.span().end());
    CHECK(decode(MsgType::session, g));
    auto trailing = g;
    trailing.push_back(0);
    CHECK_FALSE(decode(MsgType::session, trailing));
    CHECK_FALSE(decode(MsgType::session, {g.data(), g.size() - 1}));
    auto many_ids = g;
    many_ids[30] = 65;   // rx id count (after 4+4+1+16+2+1+2 bytes)
    CHECK_FALSE(decode(MsgType::session, many_ids));
    CHECK_FALSE(decode(MsgType::state_request, std::vector<std::uint8_t>{0}));
    CHECK_FALSE(decode(MsgType::role, std::vector<std::uint8_t>{0, 1}));    // member 0
    CHECK_FALSE(decode(MsgType::role, std::vector<std::uint8_t>{3, 2}));    // no role 2
    CHECK(decode(MsgType::role, std::vector<std::uint8_t>{3, 1}));
    CHECK_FALSE(decode(MsgType::hello, std::vector<std::uint8_t>(48)));
    CHECK(decode(MsgType::hello, std::vector<std::uint8_t>(49)));
}

TEST_CASE("cluster: three members: join, state to a late joiner, leave, return, role", "[cluster]") {
    Bus bus;
    Node n1(bus, 1, Role::primary, 1000, 0x101), n2(bus, 2, Role::backup, 2000, 0x202);
    bus.join(n1.ep);
    bus.join(n2.ep);
    n1.engine->publish(record(7, 1));
    n1.engine->publish(record(8, 1));
    bus.run();
    CHECK(n2.sink.sessions.size() == 2);
    CHECK(n2.sink.numbers() == std::vector<unsigned>{1, 2});

    // A late joiner asks for the state; the primary answers.
    auto n3 = std::make_unique<Node>(bus, 3, Role::backup, 3000, 0x303);
    bus.join(n3->ep);
    REQUIRE(n3->sink.sessions.size() == 2);
    const SessionRecord r8 = record(8, 1);
    CHECK(n3->sink.sessions[8].tx_cur == std::vector<std::uint8_t>(r8.tx_cur.span().begin(), r8.tx_cur.span().end()));
    CHECK(n1.sink.numbers() == std::vector<unsigned>{1, 2, 3});
    CHECK(n3->sink.numbers() == std::vector<unsigned>{1, 2, 3});
    const auto lag3 = n3->engine->lag_of(n3->engine->members().front());
    CHECK((lag3.primary_known && lag3.synced && lag3.messages == 0));
    // Seen from the primary before member 3's next HELLO: it has applied nothing yet.
    Member fresh3 = n1.engine->members().back();
    CHECK(fresh3.number == 3);
    CHECK_FALSE(n1.engine->lag_of(fresh3).synced);
    // Two messages behind the primary: counted.
    fresh3.applied = n1.engine->members().front().applied - 2;
    CHECK(n1.engine->lag_of(fresh3).synced);
    CHECK(n1.engine->lag_of(fresh3).messages == 2);

    // It leaves: the others see it go (a log line each); a rekey happens while it is away.
    g_lines.clear();
    log::set_sink(capture, nullptr);
    bus.leave(n3->ep);
    log::set_sink(nullptr, nullptr);
    CHECK(n1.sink.numbers() == std::vector<unsigned>{1, 2});
    CHECK(n2.sink.numbers() == std::vector<unsigned>{1, 2});
    CHECK(std::count_if(g_lines.begin(), g_lines.end(),
                        [](const std::string& l) { return l.find("member 3 (backup) left") != std::string::npos; }) == 2);
    n1.engine->publish(record(7, 2));
    bus.run();
    CHECK(n2.sink.sessions[7].epoch == 2);

    // It comes back (a new process: its counters continue above the old ones) and is brought
    // up to date, never left with epoch 1.
    n3 = std::make_unique<Node>(bus, 3, Role::backup, 4000, 0x304);
    bus.join(n3->ep);
    CHECK(n3->sink.sessions[7].epoch == 2);
    CHECK(n3->sink.sessions[8].epoch == 1);

    // promote: ROLE to everyone, the hook sees it; the new primary re-sends the state.
    std::vector<Role> hook;
    n2.engine->on_role = [&](Role r) { hook.push_back(r); };
    n1.engine->set_role(Role::backup);
    n2.engine->set_role(Role::primary);
    bus.run();
    CHECK(hook == std::vector<Role>{Role::primary});
    CHECK(n3->sink.roles.back() == std::pair<std::uint8_t, Role>{2, Role::primary});
    CHECK(n1.sink.roles.back() == std::pair<std::uint8_t, Role>{2, Role::primary});
    CHECK(n1.engine->counters().refused_total() == 0);
    CHECK(n3->engine->counters().refused_total() == 0);
    // Lag: a backup that missed nothing is 0 behind the new primary.
    n1.engine->tick();
    n3->engine->tick();
    bus.run();
    for (const Member& m : n2.engine->members()) {
        const auto lag = n2.engine->lag_of(m);
        CHECK((lag.synced && lag.messages == 0));
    }
}

TEST_CASE("cluster: a member that was there before the primary gets the state when it joins", "[cluster]") {
    Bus bus;
    Node n1(bus, 1, Role::primary, 1000, 0x101), n2(bus, 2, Role::backup, 2000, 0x202);
    n1.engine->publish(record(7, 3));   // before it is in the group: nothing sent
    bus.join(n2.ep);
    CHECK(bus.wire.size() == 1);         // n2's HELLO only
    bus.join(n1.ep);
    REQUIRE(n2.sink.sessions.count(7));
    CHECK(n2.sink.sessions[7].epoch == 3);
}

TEST_CASE("cluster: key material never travels in clear", "[cluster]") {
    Bus bus;
    Node n1(bus, 1, Role::primary, 1000, 0x101), n2(bus, 2, Role::backup, 2000, 0x202);
    bus.join(n1.ep);
    bus.join(n2.ep);
    const SessionRecord r = record(9, 1);
    n1.engine->publish(r);
    bus.run();
    CHECK(n2.sink.sessions.count(9));
    std::vector<std::uint8_t> all;
    for (const auto& s : bus.wire) all.insert(all.end(), s.bytes.begin(), s.bytes.end());
    // The search finds a key where one is in clear (the record's plain encoding) ...
    const SecretBytes plain = encode(Body(r.clone()));
    CHECK(contains({plain.span().begin(), plain.span().end()}, r.tx_cur.span()));
    // ... and none of the four in what went over the wire, nor the cluster key.
    for (const SecretBytes* k : {&r.rx_cur, &r.rx_next, &r.tx_cur, &r.tx_next}) CHECK_FALSE(contains(all, k->span().subspan(0, 8)));
    CHECK_FALSE(contains(all, std::span(kClusterKey).subspan(0, 8)));
}

TEST_CASE("cluster: replays, forgeries and a second member 1 are dropped and counted", "[cluster]") {
    Bus bus;
    Node n1(bus, 1, Role::primary, 1000, 0x101), n2(bus, 2, Role::backup, 2000, 0x202);
    bus.join(n1.ep);
    bus.join(n2.ep);
    n1.engine->publish(record(7, 1));
    bus.run();
    const auto before = n2.engine->counters();
    g_lines.clear();
    log::set_sink(capture, nullptr);
    // The last SESSION again: a replay.
    Bus::Sent last;
    for (const auto& w : bus.wire)
        if (w.origin == 0x101 && w.bytes.size() > 1 && w.bytes[1] == static_cast<std::uint8_t>(MsgType::session)) last = w;
    n2.engine->deliver(last.origin, last.bytes);
    // Sealed under another key.
    Node other(bus, 3, Role::backup, 5000, 0x909, bytes_of(2, 32));
    const SecretBytes b = encode(record(7, 9));
    n2.engine->deliver(0x909, seal(other.key, {kVersion, MsgType::session, 3, 6000}, b.span()));
    // Someone else claiming to be member 1 (right key, another transport id).
    n2.engine->deliver(0x999, seal(n1.key, {kVersion, MsgType::session, 1, 999999}, b.span()));
    // Garbage.
    n2.engine->deliver(0x101, std::vector<std::uint8_t>(5, 0xff));
    log::set_sink(nullptr, nullptr);
    const auto& c = n2.engine->counters();
    CHECK(c.refused[static_cast<int>(Refusal::replay)] == before.refused[static_cast<int>(Refusal::replay)] + 1);
    CHECK(c.refused[static_cast<int>(Refusal::auth)] == 1);
    CHECK(c.refused[static_cast<int>(Refusal::member_clash)] == 1);
    CHECK(c.refused[static_cast<int>(Refusal::short_message)] == 1);
    CHECK(n2.sink.sessions[7].epoch == 1);   // nothing was applied
    CHECK(g_lines.size() == 4);
}

TEST_CASE("cluster: the cluster key file", "[cluster]") {
    char dir[] = "/tmp/p3-cluster-key-XXXXXX";
    REQUIRE(mkdtemp(dir));
    const std::string raw = std::string(dir) + "/raw", hex = std::string(dir) + "/hex", open = std::string(dir) + "/open";
    auto write = [](const std::string& p, const std::string& s, mode_t mode) {
        std::ofstream(p, std::ios::binary) << s;
        ::chmod(p.c_str(), mode);
    };
    write(raw, std::string(32, 'k'), 0600);
    write(hex, std::string(64, 'a') + "\n", 0600);
    write(open, std::string(32, 'k'), 0644);
    SecretBytes k;
    std::string why;
    CHECK(p3::config::read_cluster_key(raw, k, why));
    CHECK(k.size() == 32);
    CHECK(p3::config::read_cluster_key(hex, k, why));
    CHECK(k.data()[0] == 0xaa);
    CHECK_FALSE(p3::config::read_cluster_key(open, k, why));
    write(raw, std::string(31, 'k'), 0600);
    CHECK_FALSE(p3::config::read_cluster_key(raw, k, why));
    CHECK(why.find("32 bytes") != std::string::npos);
    for (const auto& p : {raw, hex, open}) std::remove(p.c_str());
    ::rmdir(dir);
    ClusterSettings s;
    s.member = 5;
    s.max_members = 4;
    CHECK_FALSE(check(s, why));
    s.member = 4;
    CHECK(check(s, why));
}

TEST_CASE("cluster: a message sealed by an independent implementation opens", "[cluster]") {
    // tests/cluster/corpus/fuzz_cluster_msg/wire_session: sealed with Python's cryptography
    // (HKDF-SHA256, AES-256-GCM) from the format of docs/cluster.md, after a mode byte.
    std::ifstream f(P3_SOURCE_ROOT "/tests/cluster/corpus/fuzz_cluster_msg/wire_session", std::ios::binary);
    const std::vector<std::uint8_t> seed((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    REQUIRE(seed.size() > 1 + kHeaderLen + kTagLen);
    Refusal why{};
    auto o = open(SealKey(kClusterKey), std::span(seed).subspan(1), why);
    REQUIRE(o);
    CHECK(o->header.sender == 2);
    CHECK(o->header.counter == 11);
    auto b = decode(o->header.type, o->body.span());
    REQUIRE(b);
    const auto& s = std::get<SessionRecord>(*b);
    CHECK(s.remote_id == 7);
    CHECK(s.rx_ids == std::vector<std::uint32_t>{0x107, 0x207});
    CHECK(s.tx_next.empty());
    CHECK(s.tx_switch == 2000);
}

TEST_CASE("cluster: a member holds at most as many sessions as a dataplane", "[cluster]") {
    Bus bus;
    Node n1(bus, 1, Role::primary, 1000, 0x101), n2(bus, 2, Role::backup, 2000, 0x202);
    bus.join(n1.ep);
    bus.join(n2.ep);
    for (std::uint32_t id = 1; id <= p3::dp::kMaxSessions; ++id) n1.engine->publish(record(id, 1));
    bus.run();
    CHECK(n2.engine->sessions().size() == p3::dp::kMaxSessions - 1);
    CHECK(n2.engine->counters().refused[static_cast<int>(Refusal::full)] == 1);
    n1.engine->publish(record(5, 2));   // an update of a session held is not new: applied
    bus.run();
    CHECK(n2.sink.sessions[5].epoch == 2);
}

// ---- forwarded control messages (docs/cluster.md §Forwarded control messages) -------------

TEST_CASE("cluster: CONTROL opens unchanged; malformed ones are refused", "[cluster]") {
    const SealKey k(kClusterKey);
    const auto pkt = bytes_of(0x45, 120);
    const SecretBytes body = encode(ControlMsg{7, 3, 1, pkt});
    const auto msg = seal(k, {kVersion, MsgType::control, 2, 77}, body.span());
    Refusal why{};
    auto o = open(k, msg, why);
    REQUIRE(o);
    CHECK(o->header.type == MsgType::control);
    auto b = decode(o->header.type, o->body.span());
    REQUIRE(b);
    const auto& c = std::get<ControlMsg>(*b);
    CHECK((c.remote_id == 7 && c.epoch == 3 && c.holder == 1 && c.bytes == pkt));
    auto m = msg;
    m[kHeaderLen + 20] ^= 1;
    CHECK_FALSE(open(k, m, why));
    CHECK(why == Refusal::auth);

    auto raw = [](ControlMsg c) {
        const SecretBytes e = encode(c);
        return std::vector<std::uint8_t>(e.span().begin(), e.span().end());
    };
    const auto good = raw(ControlMsg{7, 3, 1, pkt});
    CHECK(decode(MsgType::control, good));
    auto trailing = good;
    trailing.push_back(0);
    CHECK_FALSE(decode(MsgType::control, trailing));
    CHECK_FALSE(decode(MsgType::control, {good.data(), good.size() - 1}));
    CHECK_FALSE(decode(MsgType::control, raw(ControlMsg{7, 3, 1, {}})));                          // empty
    CHECK_FALSE(decode(MsgType::control, raw(ControlMsg{7, 3, 1, bytes_of(1, kMaxControlBytes + 1)})));
    CHECK(decode(MsgType::control, raw(ControlMsg{7, 3, 1, bytes_of(1, kMaxControlBytes)})));
    CHECK_FALSE(decode(MsgType::control, raw(ControlMsg{0, 3, 1, pkt})));                          // remote 0
    CHECK_FALSE(decode(MsgType::control, raw(ControlMsg{7, 3, 0, pkt})));                          // holder 0
    CHECK_FALSE(decode(MsgType::control, raw(ControlMsg{7, 3, 17, pkt})));
}

TEST_CASE("cluster: a control packet on a replica reaches the holder only, sealed, bounded and counted", "[cluster]") {
    Bus bus;
    Node n1(bus, 1, Role::primary, 1000, 0x101), n2(bus, 2, Role::backup, 2000, 0x202),
        n3(bus, 3, Role::backup, 3000, 0x303);
    bus.join(n1.ep);
    bus.join(n2.ep);
    bus.join(n3.ep);
    n1.engine->publish(record(7, 1));   // n1 holds remote 7's control session
    n2.engine->publish(record(9, 1));   // n2 holds remote 9's (load balancing)
    bus.run();
    g_lines.clear();
    log::set_sink(capture, nullptr);
    log::set_time_source([]() noexcept -> std::uint64_t { return 1000; });

    // To the member that published the record, and to no other; never in clear on the bus.
    const auto pkt = bytes_of(0x45, 100);
    REQUIRE(n3.engine->forward_control(7, pkt));
    bus.run();
    REQUIRE(n1.sink.controls.size() == 1);
    CHECK((n1.sink.controls[0].first == 7 && n1.sink.controls[0].second == pkt));
    CHECK(n2.sink.controls.empty());
    CHECK_FALSE(contains(bus.wire.back().bytes, pkt));
    REQUIRE(n3.engine->forward_control(9, pkt));
    bus.run();
    CHECK(n2.sink.controls.size() == 1);
    CHECK(n1.sink.controls.size() == 1);
    // The holder does not forward its own; nor does anyone a session without a record.
    CHECK_FALSE(n1.engine->forward_control(7, pkt));
    CHECK_FALSE(n3.engine->forward_control(42, pkt));
    CHECK_FALSE(n3.engine->forward_control(7, bytes_of(1, kMaxControlBytes + 1)));
    CHECK(n1.engine->counters().control_dropped == 1);
    CHECK(n3.engine->counters().control_dropped == 2);

    // The same CONTROL again: a replayed counter, not delivered twice.
    Bus::Sent last;
    for (const auto& s : bus.wire)
        if (s.origin == 0x303) last = s;
    n2.engine->deliver(last.origin, last.bytes);
    CHECK(n2.engine->counters().refused[static_cast<int>(Refusal::replay)] == 1);
    CHECK(n2.sink.controls.size() == 1);

    // Per session: kControlPerRemote a second leave the forwarder, the rest are dropped.
    for (unsigned i = 0; i < Engine::kControlPerRemote + 5; ++i) n3.engine->forward_control(7, pkt);
    bus.run();
    CHECK(n3.engine->counters().control_forwarded == Engine::kControlPerRemote + 1);   // one for remote 9
    CHECK(n3.engine->counters().control_dropped_rate == 6);
    CHECK(n1.sink.controls.size() == Engine::kControlPerRemote);
    g_now_ms += 1000;   // the next second
    CHECK(n3.engine->forward_control(7, pkt));
    bus.run();
    CHECK(n1.sink.controls.size() == Engine::kControlPerRemote + 1);

    // The holder bounds what it takes too (a member past its own limit, or several members).
    g_now_ms += 1000;
    const SecretBytes fwd = encode(ControlMsg{7, 1, 1, pkt});
    std::uint64_t counter = 900000;
    // (as member 4, which sends nothing else: member 2's own later messages keep their counters)
    for (unsigned i = 0; i < Engine::kControlPerRemote + 3; ++i)
        n1.engine->deliver(0x404, seal(n2.key, {kVersion, MsgType::control, 4, ++counter}, fwd.span()));
    CHECK(n1.engine->counters().control_dropped_rate == 3);
    CHECK(n1.sink.controls.size() == 2 * Engine::kControlPerRemote + 1);
    // For a session the holder does not hold (no record published, or its channel is down).
    const SecretBytes other = encode(ControlMsg{55, 1, 1, pkt});
    n1.engine->deliver(0x404, seal(n2.key, {kVersion, MsgType::control, 4, ++counter}, other.span()));
    g_now_ms += 1000;
    n1.sink.holds = false;
    n1.engine->deliver(0x404, seal(n2.key, {kVersion, MsgType::control, 4, ++counter}, fwd.span()));
    n1.sink.holds = true;
    CHECK(n1.engine->counters().control_dropped == 3);
    CHECK(n1.engine->counters().control_delivered == 2 * Engine::kControlPerRemote + 1);

    // In all: kControlTotal a second, whatever the sessions.
    for (std::uint32_t id = 100; id < 140; ++id) n1.engine->publish(record(id, 1));
    bus.run();
    g_now_ms += 1000;
    const auto before = n3.engine->counters();
    for (std::uint32_t id = 100; id < 140; ++id)
        for (unsigned i = 0; i < Engine::kControlPerRemote; ++i) n3.engine->forward_control(id, pkt);
    bus.run();
    CHECK(n3.engine->counters().control_forwarded - before.control_forwarded == Engine::kControlTotal);
    CHECK(n3.engine->counters().control_dropped_rate - before.control_dropped_rate ==
          40 * Engine::kControlPerRemote - Engine::kControlTotal);
    log::set_time_source(nullptr);
    log::set_sink(nullptr, nullptr);
    g_now_ms = 5000;
    // Each drop is logged through write_peer: ten lines a second at most.
    CHECK(std::count_if(g_lines.begin(), g_lines.end(), [](const std::string& l) {
              return l.find("control message dropped") != std::string::npos;
          }) == static_cast<long>(log::kPeerLinesPerSecond));
    CHECK(n1.engine->counters().refused_total() == 0);
}

namespace {

ControlRecord control_part(std::uint32_t epoch) {
    ControlRecord c;
    c.tx_epoch = epoch;
    c.tx_seq = 77;
    c.tx_ctl = SecretBytes(bytes_of(0x11, 20));
    c.peer_tx_epoch = epoch;
    c.next_epoch = epoch + 1;
    c.next_msg_id = 300;
    c.next_rx_epoch = 0;
    c.key_type = 1;
    c.rx.push_back({epoch, 12, SecretBytes(bytes_of(0x22, 20))});
    return c;
}

}  // namespace

TEST_CASE("cluster: a record carries its holder, a handover and the control channel; malformed ones are refused",
          "[cluster]") {
    SessionRecord r = record(7, 3);
    r.holder = 2;
    r.handover = 3;
    r.control = control_part(5);
    const SecretBytes enc = encode(Body(r.clone()));
    std::vector<std::uint8_t> g(enc.span().begin(), enc.span().end());
    auto b = decode(MsgType::session, g);
    REQUIRE(b);
    const auto& d = std::get<SessionRecord>(*b);
    CHECK(d.holder == 2);
    CHECK(d.handover == 3);
    REQUIRE(d.control);
    CHECK(d.control->tx_epoch == 5);
    CHECK(d.control->tx_seq == 77);
    CHECK(d.control->next_msg_id == 300);
    CHECK(d.control->tx_ctl.equals(r.control->tx_ctl.span()));
    REQUIRE(d.control->rx.size() == 1);
    CHECK(d.control->rx[0].top == 12);
    CHECK(d.control->rx[0].ctl.equals(r.control->rx[0].ctl.span()));
    // The control part is the record's tail: rx count at its end - 33, holder 17 refused.
    const std::size_t tail = g.size() - (4 + 8 + 21);   // the one rx entry: epoch, top, key
    auto none = g;
    none[tail - 1] = 0;   // no inbound control key
    CHECK_FALSE(decode(MsgType::session, none));
    auto many = g;
    many[tail - 1] = 9;   // more than kMaxControlEpochs
    CHECK_FALSE(decode(MsgType::session, many));
    SessionRecord bad = r.clone();
    bad.holder = 17;
    const SecretBytes eb = encode(Body(std::move(bad)));
    CHECK_FALSE(decode(MsgType::session, eb.span()));
    CHECK_FALSE(decode(MsgType::session, {g.data(), g.size() - 1}));
    // A withdrawn record: the flag travels; flags beyond the two known are refused.
    SessionRecord w = record(7, 4);
    w.withdrawn = true;
    const SecretBytes ew = encode(Body(w.clone()));
    auto dw = decode(MsgType::session, ew.span());
    REQUIRE(dw);
    CHECK(std::get<SessionRecord>(*dw).withdrawn);
    CHECK_FALSE(std::get<SessionRecord>(*dw).control);
    std::vector<std::uint8_t> fl(ew.span().begin(), ew.span().end());
    REQUIRE(fl.size() > 3);
    fl[fl.size() - 1] = 4;
    CHECK_FALSE(decode(MsgType::session, fl));
    // An ACK names a remote and a holder.
    CHECK(decode(MsgType::ack, std::vector<std::uint8_t>{0, 0, 0, 7, 0, 0, 0, 3, 2}));
    CHECK_FALSE(decode(MsgType::ack, std::vector<std::uint8_t>{0, 0, 0, 7, 0, 0, 0, 3, 0}));
    CHECK_FALSE(decode(MsgType::ack, std::vector<std::uint8_t>{0, 0, 0, 0, 0, 0, 0, 3, 2}));
}

TEST_CASE("cluster: members confirm a holder's records; two members taking over at once: the lower number holds",
          "[cluster]") {
    struct Acks final : ReplicaSink {
        std::vector<std::tuple<std::uint8_t, std::uint32_t, std::uint32_t>> got;
        std::map<std::uint32_t, std::uint8_t> holder;
        void on_session(const SessionRecord& r) override { holder[r.remote_id] = r.holder; }
        void on_role(std::uint8_t, Role) override {}
        void on_members(std::span<const Member>) override {}
        void on_ack(std::uint8_t m, std::uint32_t remote, std::uint32_t epoch) override { got.emplace_back(m, remote, epoch); }
    };
    Bus bus;
    Endpoint e1(bus, 0x101), e2(bus, 0x202), e3(bus, 0x303);
    Acks s1, s2, s3;
    const SealKey key(kClusterKey);
    auto engine = [&](Endpoint& ep, Acks& s, std::uint8_t m) {
        EngineConfig c;
        c.member = m;
        c.role = m == 1 ? Role::primary : Role::backup;
        c.counter_start = 1000 * m;
        auto e = std::make_unique<Engine>(c, key, ep, s, [] { return g_now_ms; });
        ep.engine = e.get();
        return e;
    };
    auto n1 = engine(e1, s1, 1), n2 = engine(e2, s2, 2), n3 = engine(e3, s3, 3);
    bus.join(e1);
    bus.join(e2);
    bus.join(e3);
    SessionRecord r = record(7, 4);
    r.control = control_part(2);
    n1->publish(r);
    bus.run();
    // Both other members applied member 1's record and said so; only member 1 hears it.
    CHECK(s1.got.size() == 2);
    for (const auto& [m, remote, epoch] : s1.got) CHECK((remote == 7 && epoch == 4 && (m == 2 || m == 3)));
    CHECK(s2.got.empty());
    CHECK(n2->holder_of(7) == 1);
    CHECK(n2->counters().acks_sent == 1);
    // Member 1 is gone; 2 and 3 both take the session over from epoch 4 and publish epoch 5.
    SessionRecord t2 = r.clone(), t3 = r.clone();
    t2.epoch = t3.epoch = 5;
    n3->publish(t3);
    n2->publish(t2);
    bus.run();
    CHECK(n2->holder_of(7) == 2);
    CHECK(n3->holder_of(7) == 2);   // 3 lets its own go (its sink is told of 2's record)
    CHECK(s3.holder[7] == 2);
    CHECK(n1->holder_of(7) == 2);
    CHECK((s2.holder.count(7) == 0 || s2.holder[7] != 3));   // 3's record never replaced 2's at 2
}

TEST_CASE("cluster: a member whose shared configuration differs is reported once", "[cluster]") {
    Bus bus;
    Endpoint e1(bus, 0x101), e2(bus, 0x202), e3(bus, 0x303);
    Recorder s1, s2, s3;
    const SealKey key(kClusterKey);
    auto engine = [&](Endpoint& ep, Recorder& s, std::uint8_t m, std::uint8_t digest) {
        EngineConfig c;
        c.member = m;
        c.counter_start = 1000 * m;
        c.config_digest.fill(digest);
        auto e = std::make_unique<Engine>(c, key, ep, s, [] { return g_now_ms; });
        ep.engine = e.get();
        return e;
    };
    auto n1 = engine(e1, s1, 1, 0xaa), n2 = engine(e2, s2, 2, 0xaa), n3 = engine(e3, s3, 3, 0xbb);
    std::vector<std::string> lines;
    log::set_sink([](log::Level, Reason r, std::string_view line, void* v) {
        if (r == Reason::CLUSTER_CONFIG_DIFFERS) static_cast<std::vector<std::string>*>(v)->emplace_back(line);
    }, &lines);
    bus.join(e1);
    bus.join(e2);
    bus.join(e3);
    n1->tick();
    n2->tick();
    n3->tick();
    bus.run();
    log::set_sink(nullptr, nullptr);
    auto differs = [](const Engine& e, std::uint8_t m) {
        for (const Member& x : e.members())
            if (x.number == m) return x.config_differs;
        return false;
    };
    CHECK_FALSE(differs(*n1, 2));
    CHECK(differs(*n1, 3));
    CHECK(differs(*n3, 1));
    CHECK(differs(*n3, 2));
    // Each member said it once per other member, whatever the HELLOs since.
    CHECK(lines.size() == 4);
}
