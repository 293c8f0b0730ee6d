// Setup UDP between the dataplane's rings and the setup engine (see dp_control.hpp).
#include "control/setup/dp_control.hpp"

#include <rte_mbuf.h>

#include <algorithm>
#include <cstring>

#include "common/log.hpp"
#include "dataplane/dataplane.hpp"

namespace p3::setup {

namespace {

constexpr std::size_t kEth = 14, kV4 = 20, kV6 = 40, kUdp = 8;
constexpr std::uint8_t kMarker[4] = {0, 0, 0, 0};
constexpr std::uint8_t kTtl = 64;

// The RFC 1071 sum of b (folded, not inverted).
std::uint32_t sum16(const std::uint8_t* b, std::size_t n, std::uint32_t acc = 0) {
    for (std::size_t i = 0; i + 1 < n; i += 2) acc += std::uint32_t(b[i] << 8 | b[i + 1]);
    if (n & 1) acc += std::uint32_t(b[n - 1] << 8);
    return acc;
}
std::uint16_t fold(std::uint32_t acc) {
    while (acc >> 16) acc = (acc & 0xffff) + (acc >> 16);
    return std::uint16_t(acc);
}

}  // namespace

SetupControlPlane::SetupControlPlane(const config::Config& cfg, Credentials creds, SetupOptions opts,
                                     const control::Clock& clock, control::Random& random)
    : cfg_(cfg), creds_(std::move(creds)), opts_(std::move(opts)), clock_(clock), random_(random) {}

SetupControlPlane::~SetupControlPlane() = default;

void SetupControlPlane::start(dp::Dataplane& dp) {
    dp_ = &dp;
    sink_ = std::make_unique<DataplaneSink>(dp, on_up_);
    engine_ = std::make_unique<SetupEngine>(cfg_, std::move(creds_), std::move(opts_), clock_, random_,
                                            static_cast<Transport&>(*this), static_cast<SessionSink&>(*this));
    if (cfg_.role == config::Role::secondary)
        for (const auto& r : cfg_.remotes)
            if (!r.static_keys) retry_[r.id] = Retry{0, clock_.now(), false};
    connect_due();
}

void SetupControlPlane::stop(dp::Dataplane&) {
    engine_.reset();  // releases reserved receive IDs of unfinished exchanges
    sink_.reset();
    dp_ = nullptr;
}

void SetupControlPlane::on_packet(dp::Dataplane&, rte_mbuf* m) {
    if (dp::meta(m).kind != dp::MsgKind::setup_udp || !engine_ || m->nb_segs != 1) {
        ++not_setup_;
        rte_pktmbuf_free(m);
        return;
    }
    const std::uint8_t* p = rte_pktmbuf_mtod(m, const std::uint8_t*);
    const std::size_t len = m->data_len;
    Endpoint from, to;
    std::size_t l4 = 0;
    if (len >= kEth + kV4 && get16(p + 12) == 0x0800 && (p[kEth] >> 4) == 4) {
        const std::size_t ihl = std::size_t(p[kEth] & 0x0f) * 4;
        l4 = kEth + ihl;
        from.addr.family = to.addr.family = 4;
        std::memcpy(from.addr.bytes.data(), p + kEth + 12, 4);
        std::memcpy(to.addr.bytes.data(), p + kEth + 16, 4);
        if (ihl < kV4 || p[kEth + 9] != 17) l4 = 0;
    } else if (len >= kEth + kV6 && get16(p + 12) == 0x86dd && p[kEth + 6] == 17) {
        l4 = kEth + kV6;
        from.addr.family = to.addr.family = 6;
        std::memcpy(from.addr.bytes.data(), p + kEth + 8, 16);
        std::memcpy(to.addr.bytes.data(), p + kEth + 24, 16);
    }
    if (l4 == 0 || len < l4 + kUdp) {
        ++not_setup_;
        rte_pktmbuf_free(m);
        return;
    }
    from.port = get16(p + l4);
    to.port = get16(p + l4 + 2);
    const std::size_t ulen = get16(p + l4 + 4);
    if (ulen < kUdp || l4 + ulen > len) {
        ++not_setup_;
        rte_pktmbuf_free(m);
        return;
    }
    ByteView d(p + l4 + kUdp, ulen - kUdp);
    if (d.size() >= 4 && std::memcmp(d.data(), kMarker, 4) == 0) {
        marker_peers_.insert({from.addr, from.port});
        d = d.subspan(4);
    }
    engine_->on_datagram(from, to, d);  // reads d before we free it
    rte_pktmbuf_free(m);
}

void SetupControlPlane::poll(dp::Dataplane&, std::uint64_t) {
    if (!engine_) return;
    if (auto t = engine_->next_deadline(); t && *t <= clock_.now()) engine_->on_timer();
    connect_due();
}

void SetupControlPlane::connect_due() {
    const auto now = clock_.now();
    for (auto& [id, r] : retry_) {
        if (r.up || r.next > now) continue;
        // connect() is false while an exchange with this remote runs; try again later.
        engine_->connect(id);
        r.next = now + std::chrono::seconds(5);
    }
}

void SetupControlPlane::send(const Endpoint& from, const Endpoint& to, ByteView datagram) {
    if (!dp_ || from.addr.family != to.addr.family) {
        ++send_failed_;
        return;
    }
    const bool marker = marker_peers_.count({to.addr, to.port}) != 0;
    const bool v6 = to.addr.is_v6();
    const std::size_t ip = v6 ? kV6 : kV4;
    const std::size_t ulen = kUdp + (marker ? 4 : 0) + datagram.size();
    rte_mbuf* m = rte_pktmbuf_alloc(dp_->pool());
    std::uint8_t* p = m ? reinterpret_cast<std::uint8_t*>(rte_pktmbuf_append(m, std::uint16_t(ip + ulen))) : nullptr;
    if (!p) {
        if (m) rte_pktmbuf_free(m);
        ++send_failed_;
        return;
    }
    std::memset(p, 0, ip + kUdp);
    if (v6) {
        p[0] = 0x60;
        p[4] = std::uint8_t(ulen >> 8);
        p[5] = std::uint8_t(ulen);
        p[6] = 17;
        p[7] = kTtl;
        std::memcpy(p + 8, from.addr.bytes.data(), 16);
        std::memcpy(p + 24, to.addr.bytes.data(), 16);
    } else {
        const std::size_t tot = ip + ulen;
        p[0] = 0x45;
        p[2] = std::uint8_t(tot >> 8);
        p[3] = std::uint8_t(tot);
        p[6] = 0x40;  // DF: a setup datagram is never fragmented by us
        p[8] = kTtl;
        p[9] = 17;
        std::memcpy(p + 12, from.addr.bytes.data(), 4);
        std::memcpy(p + 16, to.addr.bytes.data(), 4);
        const std::uint16_t c = std::uint16_t(~fold(sum16(p, kV4)));
        p[10] = std::uint8_t(c >> 8);
        p[11] = std::uint8_t(c);
    }
    std::uint8_t* u = p + ip;
    u[0] = std::uint8_t(from.port >> 8);
    u[1] = std::uint8_t(from.port);
    u[2] = std::uint8_t(to.port >> 8);
    u[3] = std::uint8_t(to.port);
    u[4] = std::uint8_t(ulen >> 8);
    u[5] = std::uint8_t(ulen);
    std::size_t off = kUdp;
    if (marker) {
        std::memcpy(u + off, kMarker, 4);
        off += 4;
    }
    std::memcpy(u + off, datagram.data(), datagram.size());
    // UDP checksum over the pseudo-header (mandatory for IPv6, sent for IPv4 too).
    const std::size_t alen = v6 ? 16 : 4;
    std::uint32_t acc = sum16(from.addr.bytes.data(), alen);
    acc = sum16(to.addr.bytes.data(), alen, acc);
    acc += 17 + std::uint32_t(ulen);
    acc = sum16(u, ulen, acc);
    std::uint16_t c = std::uint16_t(~fold(acc));
    if (c == 0) c = 0xffff;
    u[6] = std::uint8_t(c >> 8);
    u[7] = std::uint8_t(c);
    dp::meta(m) = dp::PktMeta{dp::MsgKind::tx_ip, dp::Side::wan, 0, 0};
    if (!dp_->send_to_workers(m)) {
        rte_pktmbuf_free(m);
        ++send_failed_;
    }
}

std::uint32_t SetupControlPlane::local_lanes() const { return sink_ ? sink_->local_lanes() : 0; }

std::optional<std::uint32_t> SetupControlPlane::reserve_rx_id(std::uint32_t remote_id, std::uint32_t peer_lanes) {
    return sink_ ? sink_->reserve_rx_id(remote_id, peer_lanes) : std::nullopt;
}

void SetupControlPlane::release_rx_id(std::uint32_t rx_id) {
    if (sink_) sink_->release_rx_id(rx_id);
}

bool SetupControlPlane::install(EstablishedSession&& s) {
    const std::uint32_t remote = s.remote_id;
    if (!sink_ || !sink_->install(std::move(s))) return false;
    ++up_;
    if (auto it = retry_.find(remote); it != retry_.end()) it->second = Retry{0, {}, true};
    return true;
}

bool SetupControlPlane::connect(std::uint32_t remote_id) {
    if (!engine_) return false;
    // Once a session was up, its recovery belongs to the control channel: no automatic retries.
    return engine_->connect(remote_id);
}

void SetupControlPlane::setup_failed(std::uint32_t remote_id, Reason reason) {
    if (on_failed_) on_failed_(remote_id, reason);
    auto it = retry_.find(remote_id);
    if (it == retry_.end()) return;
    Retry& r = it->second;
    ++r.failures;
    r.next = clock_.now() + std::chrono::seconds(std::min(60u, 5u * r.failures));
}

}  // namespace p3::setup
