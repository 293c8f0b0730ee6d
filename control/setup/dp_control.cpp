// Setup UDP between the dataplane's rings and the setup engine (see dp_control.hpp).
#include "control/setup/dp_control.hpp"

#include <rte_mbuf.h>

#include <algorithm>
#include <cstring>

#include "common/log.hpp"
#include "control/setup/setup_frame.hpp"
#include "control/backoff.hpp"

namespace p3::setup {

SetupControlPlane::SetupControlPlane(const config::Config& cfg, Credentials creds, SetupOptions opts,
                                     const control::Clock& clock, control::Random& random,
                                     control::DataplanePort& port)
    : cfg_(cfg), creds_(std::move(creds)), opts_(std::move(opts)), clock_(clock), random_(random), port_(port) {}

SetupControlPlane::~SetupControlPlane() = default;

void SetupControlPlane::start() {
    started_ = true;
    if (on_up_) port_.set_on_up(on_up_);
    engine_ = std::make_unique<SetupEngine>(cfg_, std::move(creds_), std::move(opts_), clock_, random_,
                                            static_cast<Transport&>(*this), static_cast<SessionSink&>(*this));
    for (auto id : disabled_) engine_->set_enabled(id, false);
    if (cfg_.role == config::Role::secondary)
        for (const auto& r : cfg_.remotes)
            if (!r.static_keys) retry_[r.id] = Retry{0, clock_.now(), false};
    connect_due();
}

bool SetupControlPlane::update(const config::Config& cfg, std::span<const std::uint32_t> upsert,
                               std::span<const std::uint32_t> removed, std::string& why) {
    bool ok = true;
    auto fault = [&](const std::string& w) {
        if (!why.empty()) why += "; ";
        why += w;
        ok = false;
    };
    // Removed first: their keys must not count against a new remote's (one key per remote).
    for (auto id : removed) {
        if (engine_) engine_->remove_peer(id);
        creds().remove_psk(id);
        retry_.erase(id);
        disabled_.erase(id);
    }
    for (const auto& r : cfg.remotes) {
        std::string w;
        if (!r.static_keys && !creds().reload_psk(r, w)) fault(w);
    }
    if (!engine_) {  // start() builds the engine and the retry state from cfg
        for (auto id : upsert)
            if (std::none_of(cfg.remotes.begin(), cfg.remotes.end(), [&](const auto& r) { return r.id == id; }))
                fault("remote " + std::to_string(id) + " is not in the configuration");
        return ok;
    }
    const auto now = clock_.now();
    for (auto id : upsert) {
        const auto it = std::find_if(cfg.remotes.begin(), cfg.remotes.end(), [&](const auto& r) { return r.id == id; });
        if (it == cfg.remotes.end()) {
            fault("remote " + std::to_string(id) + " is not in the configuration");
            continue;
        }
        engine_->add_peer(*it);
        if (disabled_.count(id)) engine_->set_enabled(id, false);  // shut before it was added
        if (cfg.role != config::Role::secondary) continue;
        if (it->static_keys) {
            retry_.erase(id);
            continue;
        }
        auto [rit, added] = retry_.try_emplace(id, Retry{0, now, false});
        // Not up yet (its exchange, if any, was aborted): again now, with the new settings.
        if (!added && !rit->second.up) rit->second = Retry{0, now, false};
    }
    connect_due();
    return ok;
}

void SetupControlPlane::set_enabled(std::uint32_t remote_id, bool on) {
    const bool changed = on ? disabled_.erase(remote_id) != 0 : disabled_.insert(remote_id).second;
    if (!changed) return;  // starting a remote that runs changes nothing
    if (engine_) engine_->set_enabled(remote_id, on);
    auto it = retry_.find(remote_id);
    if (!on || it == retry_.end()) return;
    // Started again: its session was ended, so set it up now and retry until it is up.
    it->second = Retry{0, clock_.now(), false};
    if (engine_) connect_due();
}

void SetupControlPlane::stop() {
    engine_.reset();  // releases reserved receive IDs of unfinished exchanges
    started_ = false;
}

void SetupControlPlane::on_packet(rte_mbuf* m) {
    if (dp::meta(m).kind != dp::MsgKind::setup_udp || !engine_ || m->nb_segs != 1) {
        ++not_setup_;
        rte_pktmbuf_free(m);
        return;
    }
    const auto f = parse_setup_frame(ByteView(rte_pktmbuf_mtod(m, const std::uint8_t*), m->data_len));
    if (!f) {
        ++not_setup_;
        rte_pktmbuf_free(m);
        return;
    }
    engine_->on_datagram(f->from, f->to, f->payload, f->framing);  // reads the payload before we free it
    rte_pktmbuf_free(m);
}

void SetupControlPlane::poll(control::TimePoint now) {
    // The control thread polls once per burst; under a flood that is thousands of times a
    // second. The setup timers count in seconds and next_deadline() walks every exchange, so
    // they are looked at every 10 ms, not per burst.
    if (now >= timers_checked_ && now - timers_checked_ < std::chrono::milliseconds(10)) return;
    timers_checked_ = now;
    log::flush_suppressed();  // summaries of rate-limited lines whose second is over
    if (!engine_) return;
    if (auto t = engine_->next_deadline(); t && *t <= clock_.now()) engine_->on_timer();
    connect_due();
}

void SetupControlPlane::connect_due() {
    const auto now = clock_.now();
    for (auto& [id, r] : retry_) {
        if (r.up || r.next > now || disabled_.count(id)) continue;
        // connect() is false while an exchange with this remote runs; try again later.
        engine_->connect(id);
        r.next = now + control::Backoff::first;
    }
}

void SetupControlPlane::send(const Endpoint& from, const Endpoint& to, ByteView datagram, Framing framing) {
    const std::size_t n = setup_packet_size(to, framing, datagram.size());
    rte_mbuf* m = started_ && n <= 0xffff ? port_.alloc() : nullptr;
    std::uint8_t* p = m ? reinterpret_cast<std::uint8_t*>(rte_pktmbuf_append(m, std::uint16_t(n))) : nullptr;
    if (!p || !build_setup_packet(from, to, framing, datagram, std::span<std::uint8_t>(p, n))) {
        if (m) rte_pktmbuf_free(m);
        ++send_failed_;
        return;
    }
    dp::meta(m) = dp::PktMeta{dp::MsgKind::tx_ip, dp::Side::wan, 0, 0};
    if (!port_.send(m)) {
        rte_pktmbuf_free(m);
        ++send_failed_;
    }
}

std::uint32_t SetupControlPlane::local_lanes() const { return started_ ? port_.local_lanes() : 0; }
std::uint32_t SetupControlPlane::lanes_for(std::uint32_t remote_id) const {
    return started_ ? port_.lanes_for(remote_id) : 0;
}

std::optional<std::uint32_t> SetupControlPlane::reserve_rx_id(std::uint32_t remote_id, std::uint32_t peer_lanes) {
    return started_ ? port_.reserve_rx_id(remote_id, peer_lanes) : std::nullopt;
}

void SetupControlPlane::release_rx_id(std::uint32_t rx_id) {
    if (started_) port_.release_rx_id(rx_id);
}

bool SetupControlPlane::install(EstablishedSession&& s) {
    const std::uint32_t remote = s.remote_id;
    if (!started_ || !port_.install(std::move(s))) return false;
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
    r.next = clock_.now() + control::Backoff::after(r.failures);   // 5 s after the first failure, ...
    ++r.failures;
}

}  // namespace p3::setup

namespace p3::setup {

// ---- ESP remotes ---------------------------------------------------------------------------

bool SetupControlPlane::esp_install_rx(std::uint32_t remote_id, std::uint32_t spi, const DirectionKeys& k, bool esn) {
    return started_ && port_.esp_install_rx(remote_id, spi, k, esn);
}

bool SetupControlPlane::esp_install_tx(std::uint32_t remote_id, std::uint32_t spi, const DirectionKeys& k, bool esn) {
    return started_ && port_.esp_install_tx(remote_id, spi, k, esn);
}

void SetupControlPlane::esp_remove_rx(std::uint32_t remote_id, std::uint32_t spi) {
    if (started_) port_.esp_remove_rx(remote_id, spi);
}

std::uint64_t SetupControlPlane::esp_tx_packets(std::uint32_t remote_id) {
    return started_ ? port_.esp_tx_packets(remote_id) : 0;
}

// The IKE SA is gone (the peer's DELETE, a dead peer, our close): keys cleared; a secondary
// sets the session up again after the back-off, as after a failed exchange.
void SetupControlPlane::esp_down(std::uint32_t remote_id, Reason reason) {
    if (started_) port_.esp_down(remote_id, reason);
    if (on_esp_down_) on_esp_down_(remote_id, reason);
    auto it = retry_.find(remote_id);
    if (it == retry_.end()) return;
    Retry& r = it->second;
    r.up = false;
    r.next = clock_.now() + control::Backoff::after(r.failures);
    ++r.failures;
}

bool SetupControlPlane::esp_close(std::uint32_t remote_id) {
    if (!engine_) return false;
    // Our own close is no failure: no reconnect unless the remote is started again.
    const bool closed = engine_->esp_close(remote_id);
    if (closed)
        if (auto it = retry_.find(remote_id); it != retry_.end()) it->second.next = control::TimePoint::max();
    return closed;
}

}  // namespace p3::setup
