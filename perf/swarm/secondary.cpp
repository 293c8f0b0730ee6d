// p3-swarm: the secondaries and what they share (swarm.hpp; perf/swarm/README-swarm.md).
#include "perf/swarm/swarm.hpp"

#include <rte_lcore.h>

#include <chrono>
#include <cstring>

#include "common/bytes.hpp"
#include "common/wire.hpp"
#include "control/backoff.hpp"

namespace swarm {

namespace wire = p3::wire;
constexpr unsigned kL2 = 14;

std::string ip_str(std::uint32_t h) {
    return std::to_string(h >> 24) + "." + std::to_string((h >> 16) & 255) + "." + std::to_string((h >> 8) & 255) +
           "." + std::to_string(h & 255);
}

// ---- one secondary -----------------------------------------------------------------------------

Secondary::Secondary(Swarm& s, std::uint32_t i) : idx(i), addr(Plan::addr(i)), S_(s) {
    p3::config::Config c;
    c.role = p3::config::Role::secondary;
    c.local.address = p3::IpAddr::v4(addr);
    c.local.port = s.plan.port;
    c.local.identity = Plan::identity(i);
    c.dataplane.lan.address = p3::Prefix{p3::IpAddr::v4(Plan::lan(i) | 1), 24};
    p3::config::Remote r;
    r.id = 1;
    r.address = p3::IpAddr::v4(s.plan.primary);
    r.port = s.plan.port;
    r.identity = s.plan.primary_identity;
    c.remotes.push_back(std::move(r));
    p3::setup::Credentials cred;
    const std::string k = s.plan.psk(i);
    cred.add_psk(1, p3::setup::ByteView(reinterpret_cast<const std::uint8_t*>(k.data()), k.size()));
    engine = std::make_unique<p3::setup::SetupEngine>(c, std::move(cred), p3::setup::SetupOptions{}, s.clock, s.rng, s,
                                                      *this);
}

Secondary::~Secondary() = default;

// The block the primary's lanes send to. A p3 secondary's dataplane reserves the widest block
// (64) until the push says how many the primary uses; thousands of secondaries share one table
// here, so each reserves the primary's lanes (--primary-lanes, p3d's workers) at once and
// install() checks the push agrees.
std::optional<std::uint32_t> Secondary::reserve_rx_id(std::uint32_t, std::uint32_t) {
    if (rx_width_ != 0) release_rx_id(rx_base_);
    auto id = S_.table->reserve_rx(S_.plan.primary_lanes);
    if (!id) return std::nullopt;
    rx_base_ = id->raw();
    rx_width_ = S_.plan.primary_lanes;
    return rx_base_;
}

void Secondary::release_rx_id(std::uint32_t rx_id) {
    if (rx_id != rx_base_ || rx_width_ == 0) return;
    for (std::uint32_t l = 0; l < rx_width_; ++l) S_.table->retire_rx(wire::SlotId(rx_id).lane(l));
    rx_width_ = 0;
}

void Secondary::drop_slots() {
    if (!keys) return;
    for (std::uint32_t l = 0; l < peer_lanes_; ++l) S_.table->retire_rx(wire::SlotId(keys_base_).lane(l));
    S_.table->retire_tx_session(idx);
    keys = false;
}

bool Secondary::install(p3::setup::EstablishedSession&& s) {
    if (s.nat()) return false;   // the swarm runs native P3 (no NAT between it and p3d)
    const std::uint32_t base = s.rx_p3_id;
    std::uint32_t lanes = s.config.primary_lanes;
    if (lanes == 0 || lanes > rx_width_ || base != rx_base_) return false;   // push disagrees with --primary-lanes
    // Set up again after a loss: the old slots go first (new P3 IDs).
    drop_slots();
    const bool hiding = s.config.params.size_hiding;
    wire::RxParams rp;
    rp.session = idx;
    rp.size_hiding = hiding ? wire::SizeHiding::on : wire::SizeHiding::off;
    rp.peer = p3::IpAddr::v4(S_.plan.primary);
    if (!S_.table->publish_rx_lanes(wire::SlotId(base), lanes, s.data_rx.key.span(), s.data_rx.salt.span(), rp))
        return false;
    wire::TxParams tp;
    tp.session = idx;
    tp.lane = 0;
    tp.peer_id = s.tx_p3_id;
    tp.outer.src = p3::IpAddr::v4(addr);
    tp.outer.dst = p3::IpAddr::v4(S_.plan.primary);
    tp.size_hiding = rp.size_hiding;
    tp.wan_mtu = 1500;
    if (!S_.table->publish_tx_lanes(1, s.data_tx.key.span(), s.data_tx.salt.span(), tp)) {
        for (std::uint32_t l = 0; l < lanes; ++l) S_.table->retire_rx(wire::SlotId(base).lane(l));
        return false;
    }
    for (std::uint32_t l = lanes; l < rx_width_; ++l) S_.table->retire_rx(wire::SlotId(base).lane(l));
    peer_lanes_ = lanes;
    keys_base_ = base;
    rx_width_ = 0;   // published now, no longer a reservation
    keys = true;
    if (t_up < 0) {
        t_up = S_.now_s();
        ++S_.up;
    }

    ch::InitialKeys k;
    k.rx_p3_id = s.rx_p3_id;
    k.tx_p3_id = s.tx_p3_id;
    k.control_tx = ch::KeyMaterial{s.control_tx.key.clone(), s.control_tx.salt.clone()};
    k.control_rx = ch::KeyMaterial{s.control_rx.key.clone(), s.control_rx.salt.clone()};
    k.local_lanes = 1;
    k.peer_lanes = lanes;
    if (!session) {
        ch::SessionConfig sc;
        sc.role = p3::config::Role::secondary;
        sc.remote_id = 1;
        sc.name = "secondary " + std::to_string(idx);
        sc.addrs = ch::FrameAddrs{p3::IpAddr::v4(addr), p3::IpAddr::v4(S_.plan.primary), S_.plan.port};
        auto params = s.config.params;
        params.key_type = s.key_type;
        params.rekey_packets = p3::config::rekey_packet_limit(params.rekey_packets, 1500);
        sc.params = params;
        session = std::make_unique<ch::Session>(S_.loop, std::move(sc), *this, *this, S_.rng, S_.keysrc, this);
        session->observer = [this](const ch::Event& e) {
            switch (e.kind) {
            case ch::Event::Kind::rekey_done: ++rekeys; break;
            case ch::Event::Kind::rekey_attempt_failed: ++rekey_failures; break;
            case ch::Event::Kind::lost: ++losses; break;
            case ch::Event::Kind::recovered: ++recoveries; break;
            default: break;
            }
        };
    }
    switch (session->state()) {
    case ch::SessionState::idle: session->start(std::move(k)); break;
    case ch::SessionState::up: session->restart(std::move(k)); break;
    default: session->setup_succeeded(std::move(k)); break;
    }
    return true;
}

// Before the first success a p3 secondary tries again after the back-off (5 s, 10 s, ... 60 s:
// control/backoff.hpp, as control/setup/dp_control.cpp does); after it, recovery belongs to the
// control channel.
void Secondary::setup_failed(std::uint32_t, p3::Reason) {
    ++setup_failures;
    if (!session) {
        S_.loop.after(p3::control::Backoff::after(unsigned(setup_failures - 1)), [this] { engine->connect(1); });
        return;
    }
    if (session->state() == ch::SessionState::retrying) session->setup_failed();
}

bool Secondary::install_next_rx(const ch::KeyMaterial& d) {
    return keys && S_.table->set_next_rx_lanes(wire::SlotId(keys_base_), peer_lanes_, d.key.span(), d.salt.span());
}

void Secondary::rx_switch_at(std::span<const std::uint64_t> first_seq) {
    if (!keys) return;
    for (std::uint32_t l = 0; l < peer_lanes_ && l < first_seq.size(); ++l)
        S_.table->announce_rx(wire::SlotId(keys_base_).lane(l), first_seq[l]);
}

bool Secondary::rx_next_seen() {
    if (!keys) return false;
    for (std::uint32_t l = 0; l < peer_lanes_; ++l)
        if (S_.table->next_seen_rx(wire::SlotId(keys_base_).lane(l))) return true;
    return false;
}

void Secondary::promote_rx() {
    if (!keys) return;
    for (std::uint32_t l = 0; l < peer_lanes_; ++l) S_.table->promote_rx(wire::SlotId(keys_base_).lane(l));
}

void Secondary::drop_next_rx() {
    if (!keys) return;
    for (std::uint32_t l = 0; l < peer_lanes_; ++l) S_.table->drop_next_rx(wire::SlotId(keys_base_).lane(l));
}

bool Secondary::switch_tx(const ch::KeyMaterial& d, std::vector<std::uint64_t>& first_seq) {
    first_seq.assign(1, 0);
    return keys && S_.table->switch_tx(idx, 1, d.key.span(), d.salt.span(), std::span<std::uint64_t>(first_seq));
}

std::uint64_t Secondary::tx_packets() { return keys ? S_.table->tx_packets(idx, 0) : 0; }

void Secondary::session_down(p3::Reason) { drop_slots(); }

void Secondary::start_setup() { engine->connect(1); }

void Secondary::send_control(std::span<const std::uint8_t> inner) {
    if (keys) seal_and_send(inner.data(), inner.size());
}

bool Secondary::seal_and_send(const std::uint8_t* inner, std::size_t len) {
    wire::TxSlot* slot = S_.table->tx(idx, 0);
    if (!slot) return false;
    rte_mbuf* m = rte_pktmbuf_alloc(S_.pool);
    if (!m) {
        ++S_.no_mbuf;
        return false;
    }
    char* p = rte_pktmbuf_append(m, static_cast<std::uint16_t>(kL2 + len));
    if (!p) {
        rte_pktmbuf_free(m);
        ++S_.no_mbuf;
        return false;
    }
    std::memcpy(p + kL2, inner, len);
    const wire::TxRef ref = slot->ref();
    wire::WireStatus st;
    if (wire::encap_burst(*S_.gcm, &m, &ref, 1, kL2, &st, wire::L2::keep) != 1) {
        rte_pktmbuf_free(m);
        ++S_.tx_seal_failed;
        return false;
    }
    return S_.send_mbuf(m);
}

bool Secondary::send_data() {
    if (!keys) return false;
    std::uint8_t payload[32] = {'p', '3', 's', 'w', 'a', 'r', 'm', 0};
    const std::uint64_t seq = ++data_seq;
    std::memcpy(payload + 8, &idx, 4);
    std::memcpy(payload + 12, &seq, 8);
    std::vector<std::uint8_t> pkt;
    ipv4_udp(pkt, Plan::lan(idx) | 2, 40000, S_.plan.lan_dst, 9, payload, sizeof payload,
             static_cast<std::uint16_t>(seq));
    if (!seal_and_send(pkt.data(), pkt.size())) return false;
    ++data_sent;
    return true;
}

void Secondary::on_inner(const std::uint8_t* p, std::size_t len) {
    if (len >= 40 && (p[0] >> 4) == 4 && p[9] == 6 && p3::be::get32(p + 16) == addr && session) {
        ++ctl_in;
        session->on_control_packet(std::span<const std::uint8_t>(p, len));
    } else {
        ++data_in;
    }
}

// ---- the swarm ---------------------------------------------------------------------------------

Swarm::Swarm(const Plan& p, RawPort& rp, const std::uint8_t our_mac[6], const std::uint8_t pm[6]) : plan(p), port(rp) {
    std::memcpy(mac, our_mac, 6);
    std::memcpy(peer_mac, pm, 6);
    qsbr = wire::qsbr_create(1);
    wire::SlotTableConfig tc;
    tc.rx_capacity = 1u << 17;
    tc.sessions = std::max<std::uint32_t>(plan.n, 1);
    tc.lanes = 1;
    table = std::make_unique<wire::SlotTable>(tc, qsbr);
    gcm = wire::GcmEngine::make(static_cast<int>(rte_socket_id()));
    pool = rte_pktmbuf_pool_create("swarm", 8191, 256, 0, RTE_MBUF_DEFAULT_BUF_SIZE, SOCKET_ID_ANY);
    secs.reserve(plan.n);
    for (std::uint32_t i = 0; i < plan.n; ++i) secs.push_back(std::make_unique<Secondary>(*this, i));
    t0 = clock.now();
}

Swarm::~Swarm() {
    secs.clear();
    table.reset();
    if (qsbr) wire::qsbr_free(qsbr);
    if (pool) rte_mempool_free(pool);
}

double Swarm::now_s() const { return std::chrono::duration<double>(clock.now() - t0).count(); }

void Swarm::send(const p3::setup::Endpoint& from, const p3::setup::Endpoint& to, p3::setup::ByteView d,
                 p3::setup::Framing framing) {
    if (!from.addr.is_v4() || !to.addr.is_v4()) return;
    std::vector<std::uint8_t> body;
    if (framing == p3::setup::Framing::non_esp_marker) body.assign(4, 0);
    body.insert(body.end(), d.begin(), d.end());
    std::vector<std::uint8_t> ip;
    ipv4_udp(ip, from.addr.v4_host(), from.port, to.addr.v4_host(), to.port, body.data(), body.size(),
             static_cast<std::uint16_t>(tx_setup));
    std::vector<std::uint8_t> f(peer_mac, peer_mac + 6);
    f.insert(f.end(), mac, mac + 6);
    f.push_back(0x08);
    f.push_back(0x00);
    f.insert(f.end(), ip.begin(), ip.end());
    ++tx_setup;
    port.send(f.data(), f.size());
}

bool Swarm::send_mbuf(rte_mbuf* m) {
    std::uint8_t* f = rte_pktmbuf_mtod(m, std::uint8_t*);
    std::memcpy(f, peer_mac, 6);
    std::memcpy(f + 6, mac, 6);
    f[12] = 0x08, f[13] = 0x00;
    const bool ok = port.send(f, rte_pktmbuf_data_len(m));
    rte_pktmbuf_free(m);
    if (ok) ++tx_p3;
    return ok;
}

void Swarm::on_frame(const std::uint8_t* f, std::size_t len) {
    ++rx_frames;
    if (len < kL2 + 20 || f[12] != 0x08 || f[13] != 0x00 || std::memcmp(f, mac, 6) != 0) {
        ++rx_other;
        return;
    }
    const std::uint8_t* ip = f + kL2;
    const std::uint32_t src = p3::be::get32(ip + 12), dst = p3::be::get32(ip + 16), i = dst - Plan::addr(0);
    const unsigned ihl = (ip[0] & 15) * 4u;
    if (i >= secs.size() || (ip[0] >> 4) != 4 || len < kL2 + ihl + 8) {
        ++rx_other;
        return;
    }
    Secondary& s = *secs[i];
    if (ip[9] == 17) {   // setup exchange (UDP to our port)
        const std::uint8_t* u = ip + ihl;
        const std::uint16_t sport = p3::be::get16(u), dport = p3::be::get16(u + 2);
        const std::size_t ulen = std::min<std::size_t>(p3::be::get16(u + 4), len - kL2 - ihl);
        if (dport != plan.port || ulen < 8) {
            ++rx_other;
            return;
        }
        ++rx_setup;
        const p3::setup::Endpoint from{p3::IpAddr::v4(src), sport}, to{p3::IpAddr::v4(dst), dport};
        s.engine->on_datagram(from, to, p3::setup::ByteView(u + 8, ulen - 8));
        return;
    }
    if (ip[9] != 50) {
        ++rx_other;
        return;
    }
    ++rx_p3;
    rte_mbuf* m = rte_pktmbuf_alloc(pool);
    if (!m) {
        ++no_mbuf;
        return;
    }
    std::memcpy(rte_pktmbuf_append(m, static_cast<std::uint16_t>(len)), f, len);
    wire::OuterInfo o;
    wire::P3Header h;
    wire::RxSlot* slot = nullptr;
    if (wire::parse_outer(m, kL2, 4500, o) != wire::WireStatus::ok ||
        wire::parse_p3(m, o.p3_off, h, o.udp) != wire::WireStatus::ok) {
        ++rx_bad;
    } else if ((slot = table->rx(h.id)) == nullptr || slot->session() != i) {
        ++rx_unknown_id;
    } else if (slot->replay().check(h.seq) != p3::wire::ReplayResult::ok) {
        ++rx_replay;
    } else {
        // Key choice as the dataplane makes it (RxKeys::pick): the current key, or the next
        // one from its switch point; unknown switch point: retry a failed tag under next.
        const wire::RxKeys* ks = slot->keys();
        const p3::wire::GcmKey* alt = nullptr;
        const p3::wire::GcmKey* k = ks->pick(h.seq, alt);
        wire::DecapResult res{};
        const std::uint16_t off = o.p3_off;
        bool tried = false;
        if (k) {
            wire::RxRef ref(k, slot->open());
            wire::decap_burst(*gcm, &m, &off, &ref, 1, kL2, &res, wire::L2::keep);
            tried = true;
            if (res.status == wire::WireStatus::auth && alt && wire::restore_failed(*gcm, m, off, *k)) {
                ++rx_next_retries;
                wire::RxRef r2(alt, slot->open());
                wire::decap_burst(*gcm, &m, &off, &r2, 1, kL2, &res, wire::L2::keep);
                if (wire::authenticated(res.status)) ks->learn(h.seq);
            }
        }
        if (!tried || !wire::authenticated(res.status)) {
            ++rx_auth;
        } else {
            slot->replay().update(h.seq);
            if (res.status == wire::WireStatus::ok)
                s.on_inner(rte_pktmbuf_mtod_offset(m, const std::uint8_t*, kL2), rte_pktmbuf_pkt_len(m) - kL2);
        }
    }
    rte_pktmbuf_free(m);
}

}  // namespace swarm
