// The responder's defences against floods (RFC 7296 §2.1, §2.6; RFC 8019): the cookie policy
// (half-open count, request rate, failure rate), the half-open count per source, and cached
// responses sent again only for the identical request. What each decides is counted in
// SetupCounters and logged through log::write_peer (at most a few lines a second).
#include <openssl/crypto.h>

#include "common/log.hpp"
#include "control/setup/setup_engine.hpp"

namespace p3::setup {

// The request's first payload is a COOKIE notify we issued to this address for this SPIi
// and nonce, under the current or the previous secret. Compared in constant time: a
// byte-by-byte early exit would tell a forger how much of a guess was right.
bool SetupEngine::cookie_valid(const Endpoint& peer, const Message& msg, ByteView nonce_i) const {
    if (msg.payloads.empty() || msg.payloads[0].type != pt::notify) return false;
    const auto* c = std::get_if<NotifyPayload>(&msg.payloads[0].body);
    if (!c || c->type != nt::cookie || c->data.size() != limits::cookie_len) return false;
    const std::uint8_t v = c->data[0];
    if (v != cookie_version_ && v != std::uint8_t(cookie_version_ - 1)) return false;
    // Before the first rotation there is no previous secret: a hash over nothing secret.
    if (v != cookie_version_ && cookie_secret_prev_.empty()) return false;
    const Bytes want = cookie_for(peer, msg.hdr.spi_i, nonce_i, v);
    return CRYPTO_memcmp(want.data(), c->data.data(), want.size()) == 0;
}

bool SetupEngine::need_cookies(control::TimePoint now) const {
    // The request being judged is counted already: `>` lets exactly cookie_request_rate through.
    return half_open_ >= opts_.cookie_threshold || requests_.rate(now) > opts_.cookie_request_rate ||
           failures_.rate(now) >= opts_.cookie_failure_rate;
}

IpAddr SetupEngine::source_key(const IpAddr& a) {
    IpAddr k = a;
    if (k.is_v6()) std::fill(k.bytes.begin() + 8, k.bytes.end(), 0);  // one /64 is one subscriber
    return k;
}

void SetupEngine::open_half(IkeSa& sa) {
    ++half_open_;
    ++half_open_by_source_[source_key(sa.init_peer.addr)];
}

// The responder's SA leaves the half-open state (established or erased; a failed one, see
// SetupEngine::fail, keeps its place in its source's budget until it is erased).
void SetupEngine::close_half(IkeSa& sa) {
    if (sa.initiator || sa.state != IkeSa::State::half_open) return;
    --half_open_;
    release_source(sa);
}

void SetupEngine::release_source(const IkeSa& sa) {
    auto it = half_open_by_source_.find(source_key(sa.init_peer.addr));
    if (it != half_open_by_source_.end() && --it->second == 0) half_open_by_source_.erase(it);
}

// Above the thresholds every IKE_SA_INIT must echo a valid cookie first; true = go on.
bool SetupEngine::cookie_policy(const Endpoint& from, const Endpoint& to, const Message& msg, ByteView nonce_i) {
    const auto now = clock_.now();
    if (!need_cookies(now)) {
        // Hysteresis: the episode ends when every measure is under half its threshold.
        if (cookie_mode_ && half_open_ < opts_.cookie_threshold / 2 &&
            requests_.rate(now) < opts_.cookie_request_rate / 2 && failures_.rate(now) < opts_.cookie_failure_rate / 2)
            cookie_mode_ = false;
        if (!cookie_mode_) return true;
    }
    if (!cookie_mode_) {
        cookie_mode_ = true;
        P3_LOG_WARN(SETUP_COOKIES_ON,
                    "setup: demanding cookies (%zu half-open exchanges, %llu requests and %llu failed ones in the last second)",
                    half_open_, static_cast<unsigned long long>(requests_.rate(now)),
                    static_cast<unsigned long long>(failures_.rate(now)));
    }
    if (cookie_valid(from, msg, nonce_i)) return true;
    if (!msg.payloads.empty() && msg.payloads[0].type == pt::notify && msg.notify(nt::cookie)) {
        ++counters_.cookies_bad;
        refused();
    }
    ++counters_.cookies_sent;
    send_stateless(from, to, msg.hdr, nt::cookie, cookie_for(from, msg.hdr.spi_i, nonce_i, cookie_version_));
    return false;
}

bool SetupEngine::resend_cached(IkeSa& sa, const Endpoint& from, const Endpoint& to, ByteView data, const Bytes& response) {
    const Bytes h = sha256(data);
    if (sa.last_request_hash.size() != h.size() || CRYPTO_memcmp(h.data(), sa.last_request_hash.data(), h.size()) != 0 ||
        sa.resends >= limits::max_resends) {
        ++counters_.resends_refused;
        refused();
        P3_PEER_LOG(warning, Reason::SETUP_RESEND_REFUSED, "setup: request %u from %s %s: not answered again",
                    sa.last_sent_id, from.str().c_str(),
                    sa.resends >= limits::max_resends ? "retransmitted too often" : "differs from the one answered");
        return false;
    }
    ++sa.resends;
    ++counters_.responses_resent;
    ++counters_.sent;
    transport_.send(to, from, response, rx_framing_);
    return true;
}

}  // namespace p3::setup
