// Two dataplanes back to back on ring ports, with the test as the wire between them (see the
// drawing at the top of test_tunnel.cpp): what test_tunnel.cpp and test_rekey_dp.cpp share.
// Both sides run two workers on two lanes, static keys A->B on P3 ID 0x201, B->A on 0x301.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstring>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "bench.hpp"

namespace p3test::tunnel {

using p3::dp::Drop;

struct Net {
    const char* lan;      // LAN interface address
    const char* lan_gw;   // hosts are behind it (static MAC)
    const char* wan;
    const char* wan_gw;
    const char* wan_peer_host;   // this side's WAN address as the peer names it
};

inline const Net kA4{"10.1.0.1/24", "10.1.0.254", "192.0.2.1/24", "192.0.2.254", "192.0.2.1"};
inline const Net kB4{"10.2.0.1/24", "10.2.0.254", "198.51.100.2/24", "198.51.100.254", "198.51.100.2"};
inline const Net kA6{"fd01::1/64", "fd01::fe", "2001:db8:a::1/64", "2001:db8:a::fe", "2001:db8:a::1"};
inline const Net kB6{"fd02::1/64", "fd02::fe", "2001:db8:b::2/64", "2001:db8:b::fe", "2001:db8:b::2"};

inline p3::SecretBytes hex(const char* h) {
    std::vector<std::uint8_t> v;
    for (std::size_t i = 0; h[i] && h[i + 1]; i += 2) v.push_back(static_cast<std::uint8_t>(std::stoul(std::string(h + i, 2), nullptr, 16)));
    return p3::SecretBytes(std::span<const std::uint8_t>(v));
}

struct KeyDir {
    const char* key;
    const char* salt;
    std::uint32_t id;
};
inline const KeyDir kAtoB128{"000102030405060708090a0b0c0d0e0f", "0a0b0c0d", 0x201};
inline const KeyDir kBtoA128{"f0e0d0c0b0a090807060504030201000", "01020304", 0x301};
inline const KeyDir kAtoB256{"000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f", "0a0b0c0d", 0x201};
inline const KeyDir kBtoA256{"f0e0d0c0b0a090807060504030201000f0e0d0c0b0a090807060504030201000", "01020304", 0x301};

struct End {
    RingPort lan, wan;
    p3::config::Config cfg;
    std::unique_ptr<p3::dp::Dataplane> dp;
    p3::control::ManualClock clock;                   // the test passes its own now_ms
    std::unique_ptr<p3::control::ControlThread> ctl;   // driven by hand (control_pass)
    Mac lan_mac{}, wan_mac{};
};

inline p3::config::Remote peer_remote(std::uint32_t id, const Net& peer, std::vector<const char*> subnets, const KeyDir& tx,
                               const KeyDir& rx, bool aes256, std::uint32_t lanes, bool size_hiding = false,
                               bool anti_replay = true) {
    p3::config::Remote r = remote(id, peer.wan_peer_host, std::move(subnets));
    r.params.size_hiding = size_hiding;
    r.params.key_type = aes256 ? p3::config::KeyType::aes256 : p3::config::KeyType::aes128;
    p3::config::StaticKeys k;
    k.tx_id = tx.id;
    k.tx_key = hex(tx.key);
    k.tx_salt = hex(tx.salt);
    k.rx_id = rx.id;
    k.rx_key = hex(rx.key);
    k.rx_salt = hex(rx.salt);
    k.lanes = lanes;
    k.anti_replay = anti_replay;
    k.persist_sequence = false;   // every tunnel starts at sequence 1 (the tests count from there)
    r.static_keys = std::move(k);
    return r;
}

// Static keys with their sequence persisted (the other tunnels start at 1 on every run).
struct SeqCfg {
    std::string dir;          // local.state_dir
    std::uint64_t block = 0;  // Options::seq_block
};

inline void start(End& e, const std::string& n, const Net& net, p3::config::Remote&& peer, std::vector<unsigned> lcores,
           p3::control::Plane* control = nullptr, std::vector<const char*> local_nets = {},
           const SeqCfg* seq = nullptr) {
    e.lan = make_port(n + "l", rings(n + "lr", 2), rings(n + "lt", 2));
    e.wan = make_port(n + "w", rings(n + "wr", 2), rings(n + "wt", 2));
    e.cfg = make_config(Side{net.lan, net.wan, net.lan_gw, net.wan_gw}, e.lan.port, e.wan.port);
    e.cfg.dataplane.spread_lanes = true;   // the tunnel's one session spread over both workers
    // The hosts behind the LAN gateway are this side's protected networks too.
    for (const char* p : local_nets) e.cfg.local.subnets.push_back(*p3::Prefix::parse(p));
    e.cfg.remotes.push_back(std::move(peer));
    p3::dp::Options o;
    if (seq) {
        e.cfg.local.state_dir = seq->dir;
        e.cfg.remotes.back().static_keys->persist_sequence = true;
        o.seq_block = seq->block;
    }
    o.name = n;
    o.lcores = std::move(lcores);
    e.dp = std::make_unique<p3::dp::Dataplane>(e.cfg, o);
    REQUIRE(e.dp->init());
    e.ctl = std::make_unique<p3::control::ControlThread>(e.dp->control_port(), control, e.clock);
    REQUIRE(e.dp->start());
    e.lan_mac = mac_of(e.lan.port);
    e.wan_mac = mac_of(e.wan.port);
}

// Frames waiting in some rings, each with the index of its ring.
struct Frame {
    unsigned ring;
    Bytes bytes;
};
inline std::vector<Frame> grab(const std::vector<rte_ring*>& rs) {
    std::vector<Frame> out;
    for (unsigned i = 0; i < rs.size(); ++i) {
        void* m;
        while (rte_ring_dequeue(rs[i], &m) == 0) {
            out.push_back({i, bytes_of(static_cast<rte_mbuf*>(m))});
            rte_pktmbuf_free(static_cast<rte_mbuf*>(m));
        }
    }
    return out;
}

struct Tunnel {
    End a, b;
    std::uint64_t now_ms = 0;

    Tunnel(const std::string& name, bool inner6, bool outer6, bool aes256 = false, std::uint32_t lanes = 2,
           p3::control::Plane* control_b = nullptr, bool size_hiding = false, bool b_anti_replay = true,
           const SeqCfg* seq_a = nullptr) {
        test_pool();
        static unsigned seq = 0;
        const std::string n = name + std::to_string(seq++);
        // LAN addresses of the inner family, WAN addresses of the outer one.
        Net na = inner6 ? kA6 : kA4, nb = inner6 ? kB6 : kB4;
        const Net& wa = outer6 ? kA6 : kA4;
        const Net& wb = outer6 ? kB6 : kB4;
        na.wan = wa.wan, na.wan_gw = wa.wan_gw, na.wan_peer_host = wa.wan_peer_host;
        nb.wan = wb.wan, nb.wan_gw = wb.wan_gw, nb.wan_peer_host = wb.wan_peer_host;
        const KeyDir& ab = aes256 ? kAtoB256 : kAtoB128;
        const KeyDir& ba = aes256 ? kBtoA256 : kBtoA128;
        start(a, n + "a", na, peer_remote(2, nb, {"10.2.0.0/16", "fd02::/16"}, ab, ba, aes256, lanes, size_hiding), {1, 2},
              nullptr, {"10.1.0.0/16", "fd01::/16"}, seq_a);
        start(b, n + "b", nb, peer_remote(1, na, {"10.1.0.0/16", "fd01::/16"}, ba, ab, aes256, lanes, size_hiding, b_anti_replay),
              {3, 4}, control_b, {"10.2.0.0/16", "fd02::/16"});
    }
    ~Tunnel() {
        stop_end(a);
        stop_end(b);
    }

    // One step of the wire and of both control threads. Returns frames moved.
    std::size_t relay() {
        std::size_t n = 0;
        for (auto [from, to] : {std::pair{&a, &b}, std::pair{&b, &a}}) {
            for (auto& f : grab(from->wan.tx)) {
                std::memcpy(f.bytes.data(), to->wan_mac.b, 6);
                inject(to->wan.rx[f.ring % to->wan.rx.size()], f.bytes);
                ++n;
            }
        }
        control_pass(*a.ctl, now_ms);
        control_pass(*b.ctl, now_ms);
        return n;
    }

    // Relays until `want` frames came out of `to`'s LAN, or nothing moved for a while.
    std::vector<Bytes> deliver(End& to, std::size_t want, int quiet_ms = 300) {
        std::vector<Bytes> out;
        auto last = std::chrono::steady_clock::now();
        while (true) {
            bool any = relay() != 0;
            for (auto& f : grab(to.lan.tx)) {
                out.push_back(std::move(f.bytes));
                any = true;
            }
            if (any) last = std::chrono::steady_clock::now();
            const auto idle = std::chrono::steady_clock::now() - last;
            if (out.size() >= want && idle > std::chrono::milliseconds(30)) break;
            if (idle > std::chrono::milliseconds(quiet_ms)) break;
            std::this_thread::sleep_for(std::chrono::microseconds(200));
        }
        return out;
    }
};

// An IP packet of exactly `len` bytes (IPv4 >= 20, IPv6 >= 40) in a frame to `to`: UDP when
// there is room for its header, else no upper layer (protocol 253 / next header 59).
inline Bytes packet(const Mac& to, bool v6, const char* src, const char* dst, std::size_t len, std::uint8_t fill) {
    if (v6) {
        const bool udp = len >= 48;
        Bytes f = ipv6_frame(to, kHostMac, src, dst, udp ? 17 : 59, len - 40, 64, fill);
        if (udp) {
            put16(f, 54, 40000);
            put16(f, 56, 9);
            put16(f, 58, static_cast<std::uint16_t>(len - 40));
            f[60] = f[61] = 0;
            put16(f, 60, csum6(f, 14, 54, len - 40, 17));
        }
        return f;
    }
    if (len >= 28) return ipv4_frame(to, kHostMac, src, dst, 17, len - 28, 64, 0, fill);
    return ipv4_frame(to, kHostMac, src, dst, 253, len - 20, 64, 0, fill);
}

// What the far LAN must see for a packet sent into the near one: the same IP packet with the
// TTL / hop limit one lower, from the far appliance's LAN MAC to its LAN gateway.
inline Bytes expected(const Bytes& in, const Mac& far_lan_mac) {
    Bytes e = in;
    std::memcpy(e.data(), kGwMac.b, 6);
    std::memcpy(e.data() + 6, far_lan_mac.b, 6);
    if (get16(e, 12) == 0x0800) {
        e[22] -= 1;
        e[24] = e[25] = 0;
        put16(e, 24, csum(e.data() + 14, 20));
    } else {
        e[21] -= 1;
    }
    return e;
}

// Every expected frame exactly once, nothing else (order across lanes is free). Compared as
// multisets of strings (GCC 12 warns falsely on sorting vectors of vectors).
inline void check_same(const std::vector<Bytes>& got, const std::vector<Bytes>& want) {
    std::multiset<std::string> g, w;
    for (const auto& b : got) g.emplace(b.begin(), b.end());
    for (const auto& b : want) w.emplace(b.begin(), b.end());
    CHECK(got.size() == want.size());
    std::size_t missing = 0;
    for (const auto& x : w) {
        auto it = g.find(x);
        if (it == g.end()) ++missing;
        else g.erase(it);
    }
    CHECK(missing == 0);
    CHECK(g.empty());   // anything left arrived but was not sent (or arrived twice)
}

inline std::vector<std::size_t> sizes_for(bool inner6, std::size_t tunnel_mtu) {
    std::vector<std::size_t> s = inner6 ? std::vector<std::size_t>{40, 41, 47, 48, 100, 1280}
                                        : std::vector<std::size_t>{20, 21, 27, 28, 46, 100, 576, 1000};
    for (std::size_t d : {3u, 2u, 1u, 0u}) s.push_back(tunnel_mtu - d);
    return s;
}


inline std::vector<Frame> hold_one_p3(Tunnel& t) {
    inject(t.a.lan.rx[0], packet(t.a.lan_mac, false, "10.1.5.7", "10.2.5.9", 100, 1));
    std::vector<Frame> caught;
    for (int i = 0; i < 500 && caught.empty(); ++i) {
        caught = grab(t.a.wan.tx);
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    REQUIRE(caught.size() == 1);
    std::memcpy(caught[0].bytes.data(), t.b.wan_mac.b, 6);
    return caught;
}


}  // namespace p3test::tunnel
