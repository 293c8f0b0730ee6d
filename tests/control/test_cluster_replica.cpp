// A cluster member installs a session another member replicated (docs/cluster.md §Replicated
// keys): two real dataplanes on ring ports, the test as the wire between them.
//
//   test --> M.lan  [M: member 2 of 2, one worker]  M.wan <==relay==> B.wan  [B: the peer, two workers]  B.lan
//
// M never set the session up: it gets only the record member 1 (the holder of the control
// session) would publish: B's outbound key material and P3 IDs, M's outbound key material.
// B is a plain p3 on static keys, two lanes each way (max_members x L = 2 x 1). Checked: M opens
// what B sends on both of its lanes, M sends on its own lane (P3 ID 0x201 + 1) under the key
// of that lane and B opens it; a rekey carried by records (next inbound key, promotion,
// outbound switch) loses nothing; a record of a remote M does not have is refused.
#include "tests/dataplane/tunnel_rig.hpp"

#include <set>

#include "control/channel/framing.hpp"
#include "control/dp_port.hpp"

using namespace p3test;
using namespace p3test::tunnel;
using Replica = p3::control::DataplanePort::Replica;

namespace {

p3::SecretBytes material(const KeyDir& k) {
    const p3::SecretBytes key = hex(k.key), salt = hex(k.salt);
    std::vector<std::uint8_t> v(key.span().begin(), key.span().end());
    v.insert(v.end(), salt.span().begin(), salt.span().end());
    return p3::SecretBytes(std::span<const std::uint8_t>(v));
}

// The next epoch's keys of each direction.
const KeyDir kAtoB2{"101112131415161718191a1b1c1d1e1f", "1a1b1c1d", 0x201};
const KeyDir kBtoA2{"e0e1e2e3e4e5e6e7e8e9eaebecedeeef", "11121314", 0x301};

struct Pair {
    End m, b;
    std::uint64_t now_ms = 0;
    std::set<std::uint32_t> m_ids, b_ids;   // P3 IDs on the wire, from M and from B

    Pair() {
        test_pool();
        static unsigned seq = 0;
        const std::string n = "clrep" + std::to_string(seq++);
        start_member(n + "m");
        start(b, n + "b", kB4, peer_remote(1, kA4, {"10.1.0.0/16"}, kBtoA128, kAtoB128, false, 2), {3, 4}, nullptr,
              {"10.2.0.0/16"});
    }
    ~Pair() {
        stop_end(m);
        stop_end(b);
    }
    void start_member(const std::string& n) {
        m.lan = make_port(n + "l", rings(n + "lr", 2), rings(n + "lt", 2));
        m.wan = make_port(n + "w", rings(n + "wr", 2), rings(n + "wt", 2));
        m.cfg = make_config(Side{kA4.lan, kA4.wan, kA4.lan_gw, kA4.wan_gw}, m.lan.port, m.wan.port);
        m.cfg.dataplane.spread_lanes = true;
        m.cfg.local.subnets.push_back(*p3::Prefix::parse("10.1.0.0/16"));
        m.cfg.remotes.push_back(remote(2, kB4.wan_peer_host, {"10.2.0.0/16"}));
        m.cfg.local.cluster_state = 1;
        m.cfg.cluster.member = 2;
        m.cfg.cluster.max_members = 2;
        m.cfg.cluster.director = p3::config::ClusterDirector::lvs;
        p3::dp::Options o;
        o.name = n;
        o.lcores = {1};
        m.dp = std::make_unique<p3::dp::Dataplane>(m.cfg, o);
        REQUIRE(m.dp->init());
        m.ctl = std::make_unique<p3::control::ControlThread>(m.dp->control_port(), nullptr, m.clock);
        REQUIRE(m.dp->start());
        m.lan_mac = mac_of(m.lan.port);
        m.wan_mac = mac_of(m.wan.port);
    }
    std::size_t relay() {
        std::size_t n = 0;
        for (auto [from, to] : {std::pair{&m, &b}, std::pair{&b, &m}}) {
            for (auto& f : grab(from->wan.tx)) {
                if (get16(f.bytes, 12) == 0x0800 && f.bytes[23] == 50)
                    (from == &m ? m_ids : b_ids).insert(static_cast<std::uint32_t>(get16(f.bytes, 38)) << 16 | get16(f.bytes, 40));
                std::memcpy(f.bytes.data(), to->wan_mac.b, 6);
                inject(to->wan.rx[f.ring % to->wan.rx.size()], f.bytes);
                ++n;
            }
        }
        control_pass(*m.ctl, now_ms);
        control_pass(*b.ctl, now_ms);
        return n;
    }
    std::size_t deliver(End& to, std::size_t want) {
        std::size_t got = 0;
        auto last = std::chrono::steady_clock::now();
        for (;;) {
            bool any = relay() != 0;
            for (auto& f : grab(to.lan.tx)) {
                (void)f;
                ++got, any = true;
            }
            if (any) last = std::chrono::steady_clock::now();
            const auto idle = std::chrono::steady_clock::now() - last;
            if ((got >= want && idle > std::chrono::milliseconds(30)) || idle > std::chrono::milliseconds(300)) return got;
            std::this_thread::sleep_for(std::chrono::microseconds(200));
        }
    }
    // n packets each way, spread over both LAN rings (both of B's workers, so both its lanes).
    void traffic(std::size_t n, std::size_t& m_to_b, std::size_t& b_to_m) {
        for (std::size_t i = 0; i < n; ++i) {
            inject(b.lan.rx[i % 2], packet(b.lan_mac, false, "10.2.9.5", "10.1.9.5", 100 + i % 7, 1));
            inject(m.lan.rx[i % 2], packet(m.lan_mac, false, "10.1.9.5", "10.2.9.5", 100 + i % 7, 2));
        }
        b_to_m = deliver(m, n);
        m_to_b = deliver(b, n);
    }
};

// What member 1 publishes for B (remote 2 on M): the peer sends on 0x301.., receives on 0x201..
p3::cluster::SessionRecord record(std::uint32_t epoch) {
    p3::cluster::SessionRecord r;
    r.remote_id = 2;
    r.epoch = epoch;
    r.wire = 0;
    r.lanes = 2;
    r.rx_ids = {0x301, 0x302};
    r.tx_ids = {0x201, 0x202};
    r.rx_cur = material(kBtoA128);
    r.tx_cur = material(kAtoB128);
    return r;
}

}  // namespace

TEST_CASE("a member installs a replicated session: every inbound lane of the peer, its own outbound lane; a rekey by records loses nothing",
          "[cluster][replica]") {
    Pair p;
    p3::control::DataplanePort port(p.m.dp->control_port());
    const p3::SessionId sid_b(p.b.dp->session_of(1));
    REQUIRE(sid_b);

    // Not a remote of M: refused, nothing installed.
    auto other = record(1);
    other.remote_id = 9;
    CHECK(port.apply_replica(other) == Replica::unknown_remote);
    auto wrong = record(1);
    wrong.lanes = 4;   // another cluster's lanes
    CHECK(port.apply_replica(wrong) == Replica::mismatch);

    REQUIRE(port.apply_replica(record(1)) == Replica::applied);
    CHECK(port.apply_replica(record(2)) == Replica::unchanged);
    constexpr std::size_t kN = 64;
    std::size_t to_b = 0, to_m = 0;
    p.traffic(kN, to_b, to_m);
    CHECK(to_m == kN);   // both of B's lanes open on M
    CHECK(to_b == kN);   // M's lane opens on B
    CHECK(p.b_ids == std::set<std::uint32_t>{0x301, 0x302});
    CHECK(p.m_ids == std::set<std::uint32_t>{0x202});   // member 2's lane only

    // A rekey as the holder replicates it. B holds the next inbound key (the rekey told it);
    // the holder installs its next inbound key: the record carries it.
    std::vector<std::uint64_t> first(2, 0);
    const auto ab2k = hex(kAtoB2.key), ab2s = hex(kAtoB2.salt), ba2k = hex(kBtoA2.key), ba2s = hex(kBtoA2.salt);
    REQUIRE(p.b.dp->control_port().install_next_rx(sid_b, p3::dp::LaneKeys{ab2k.span(), ab2s.span(), 2}));
    auto r3 = record(3);
    r3.rx_next = material(kBtoA2);
    REQUIRE(port.apply_replica(r3) == Replica::applied);
    // B switches; its packets open on M under the next key.
    REQUIRE(p.b.dp->control_port().switch_tx(sid_b, p3::dp::LaneKeys{ba2k.span(), ba2s.span(), 2}, first));
    p.traffic(kN, to_b, to_m);
    CHECK(to_m == kN);
    CHECK(to_b == kN);
    // The holder promotes and switches its outbound lanes: so does M, on its own lane.
    auto r4 = record(4);
    r4.rx_cur = material(kBtoA2);
    r4.tx_cur = material(kAtoB2);
    REQUIRE(port.apply_replica(r4) == Replica::applied);
    p.traffic(kN, to_b, to_m);
    CHECK(to_m == kN);
    CHECK(to_b == kN);
    CHECK(p.m_ids == std::set<std::uint32_t>{0x202});
    // B promotes its next inbound key (the old one refused from then on): M's lane switched
    // with the holder, so nothing it sends is lost.
    p.b.dp->control_port().promote_rx(sid_b);
    p.traffic(kN, to_b, to_m);
    CHECK(to_b == kN);
    CHECK(to_m == kN);
}
