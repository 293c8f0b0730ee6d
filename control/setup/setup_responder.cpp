// The responder's side of the exchange: a request's checks and dispatch (role, header, the
// SA it belongs to, retransmissions answered from the cache), IKE_SA_INIT (new half-open SA
// after the cookie and half-open limits of setup_policy.cpp), IKE_AUTH (opened, checked by the
// tasks, keys handed to the dataplane before the response leaves), stateless notifies, and
// the response kept for retransmitted requests.
#include "common/log.hpp"
#include "control/setup/ike_tasks.hpp"
#include "control/setup/setup_engine.hpp"

namespace p3::setup {

void SetupEngine::handle_request(const Endpoint& from, const Endpoint& to, ByteView data, Message& msg) {
    if (local_.role != config::Role::primary) {
        ++counters_.dropped_role;
        P3_PEER_LOG(debug, Reason::SETUP_ROLE, "setup: a secondary never answers; request from %s dropped", from.str().c_str());
        return;
    }
    if (!msg.hdr.from_initiator()) {  // we never initiate, so no request can come from a responder
        ++counters_.malformed;
        refused();
        return;
    }
    if (msg.hdr.exchange == Exchange::ike_sa_init) {
        ++counters_.init_requests;
        requests_.add(clock_.now());
        if (msg.hdr.msg_id != 0 || msg.hdr.spi_r || !msg.hdr.spi_i || msg.encrypted) {
            ++counters_.malformed;
            refused();
            return;
        }
        init_request(from, to, data, msg);
        return;
    }
    auto it = sas_.find(msg.hdr.spi_r.v);
    if (it == sas_.end() || it->second->initiator || it->second->spi_i != msg.hdr.spi_i) {
        ++counters_.dropped_no_sa;
        refused();
        return;
    }
    IkeSa& sa = *it->second;
    // A retransmitted request gets the cached response, byte for byte, sent back to where this
    // copy came from (§2.11). Only the identical request is one (§2.1): other bytes under the
    // same message id are not answered, so a forged header cannot reflect the response.
    if (sa.have_response && msg.hdr.msg_id == sa.last_sent_id && sa.last_sent_id != 0) {
        resend_cached(sa, from, to, data, sa.last_sent);
        return;
    }
    if (msg.hdr.exchange != Exchange::ike_auth || msg.hdr.msg_id != sa.msg_id || sa.state != IkeSa::State::half_open) {
        ++counters_.malformed;
        refused();
        return;
    }
    auth_request(sa, from, to, data, msg);
}

void SetupEngine::send_stateless(const Endpoint& from, const Endpoint& to, const Header& req, std::uint16_t notify, Bytes data) {
    Message r;
    r.hdr = req;
    r.hdr.spi_r = Spi{};
    r.hdr.flags = flags::response;
    r.add_notify(notify, std::move(data));
    const Bytes out = encode(r);
    ++counters_.sent;
    transport_.send(to, from, out, rx_framing_);
}

void SetupEngine::init_request(const Endpoint& from, const Endpoint& to, ByteView data, const Message& msg) {
    // Retransmission of a request we answered: same response again, no new state.
    const auto key = std::make_tuple(msg.hdr.spi_i.v, from.addr, from.port);
    if (auto it = init_index_.find(key); it != init_index_.end()) {
        auto sit = sas_.find(it->second);
        if (sit != sas_.end() && sit->second->init_request.size() == data.size() &&
            std::equal(data.begin(), data.end(), sit->second->init_request.begin())) {
            IkeSa& sa = *sit->second;
            resend_cached(sa, from, to, data, sa.init_response);
        } else {
            ++counters_.resends_refused;
            refused();
        }
        return;
    }
    if (const std::uint8_t bad = critical_check(msg)) {
        ++counters_.critical_unsupported;
        refused();
        P3_PEER_LOG(debug, Reason::SETUP_CRITICAL_PAYLOAD, "setup: IKE_SA_INIT from %s with unsupported critical payload %u",
                    from.str().c_str(), unsigned(bad));
        send_stateless(from, to, msg.hdr, nt::unsupported_critical_payload, Bytes{bad});
        return;
    }
    const auto* nonce = msg.find<NoncePayload>(pt::nonce);
    if (!nonce) {
        ++counters_.malformed;
        refused();
        return;
    }
    if (!cookie_policy(from, to, msg, nonce->data)) return;
    // Finished exchanges stay a while for retransmissions; they count too, so the table is
    // bounded whatever the mix (an IKE_AUTH that fails frees its half-open slot at once).
    if (half_open_ >= opts_.half_open_max || sas_.size() >= 2 * opts_.half_open_max) {
        ++counters_.half_open_full;
        P3_PEER_LOG(warning, Reason::SETUP_HALF_OPEN_FULL, "setup: half-open table full, request from %s dropped",
                    from.str().c_str());
        return;
    }
    if (auto it = half_open_by_source_.find(source_key(from.addr));
        it != half_open_by_source_.end() && it->second >= opts_.half_open_per_source) {
        ++counters_.half_open_source_full;
        P3_PEER_LOG(warning, Reason::SETUP_HALF_OPEN_SOURCE, "setup: %u half-open exchanges from %s already, request dropped",
                    it->second, from.addr.str().c_str());
        return;
    }
    auto sa = std::make_unique<IkeSa>();
    sa->initiator = false;
    sa->state = IkeSa::State::half_open;
    sa->spi_i = msg.hdr.spi_i;
    sa->spi_r = new_spi();
    sa->local = to;
    sa->peer = from;
    sa->init_peer = from;
    sa->framing = rx_framing_;
    sa->peer_name = from.addr.str();
    if (!sa->spi_r) return;
    auto tasks = make_tasks(Exchange::ike_sa_init, ctx_);
    for (auto& t : tasks) {
        TaskResult r = t->process_r(*sa, msg);
        if (r.kind != TaskResult::Kind::ok) {
            if (sa->kx) ++counters_.key_pairs;  // made for nothing: the checks come first
            refused();
            if (r.reason == Reason::SETUP_BAD_KE) ++counters_.bad_ke;
            if (r.reason == Reason::SETUP_SHORT_NONCE) ++counters_.short_nonce;
            if (r.reason == Reason::SETUP_INVALID_KE)
                P3_PEER_LOG(info, Reason::SETUP_INVALID_KE, "setup: %s: %s", from.str().c_str(), r.why.c_str());
            else {
                ++counters_.failed;
                P3_PEER_LOG(error, r.reason, "setup with %s failed in IKE_SA_INIT: %s", from.str().c_str(), r.why.c_str());
                sink_.setup_failed(0, r.reason);
            }
            if (r.notify) send_stateless(from, to, msg.hdr, r.notify, std::move(r.notify_data));
            return;
        }
    }
    if (sa->kx) ++counters_.key_pairs;
    Message resp;
    resp.hdr = msg.hdr;
    resp.hdr.spi_r = sa->spi_r;
    resp.hdr.flags = flags::response;
    resp.hdr.msg_id = 0;
    for (auto& t : tasks) t->build_r(*sa, resp);
    sa->init_request.assign(data.begin(), data.end());
    sa->last_request_hash = sha256(data);
    sa->init_response = encode(resp);
    sa->msg_id = 1;
    sa->deadline = clock_.now() + opts_.half_open_timeout;
    open_half(*sa);
    init_index_[key] = sa->spi_r.v;
    IkeSa& ref = *sa;
    sas_.emplace(sa->spi_r.v, std::move(sa));
    ++counters_.sent;
    transport_.send(ref.local, ref.peer, ref.init_response, ref.framing);
}

void SetupEngine::auth_request(IkeSa& sa, const Endpoint& from, const Endpoint& to, ByteView data, const Message& outer) {
    Message msg;
    const DecodeError e = open_sk(data, outer, sa.in_key(), msg);
    if (e != DecodeError::ok) {
        // Not from the holder of the keys (or damaged): drop silently (§2.21.2).
        ++counters_.malformed;
        refused();
        P3_PEER_LOG(debug, Reason::SETUP_MALFORMED, "setup: IKE_AUTH from %s dropped: %.*s", from.str().c_str(),
                    int(to_string(e).size()), to_string(e).data());
        return;
    }
    // Authenticated by the SK keys: the initiator may have moved to the NAT-T port (§2.23),
    // or a NAT may have given it another mapping. From now on it is where this came from,
    // framed the way this came.
    sa.peer = from;
    sa.local = to;
    sa.framing = rx_framing_;
    Message resp;
    resp.hdr = outer.hdr;
    resp.hdr.flags = flags::response;
    auto reject = [&](std::uint16_t notify, Bytes ndata, Reason reason, const std::string& why) {
        Message err;
        err.hdr = resp.hdr;
        err.add_notify(notify, std::move(ndata));
        if (auto b = seal(sa, err)) send_response(sa, std::move(*b), outer.hdr.msg_id, data);
        fail(sa, reason, why);
    };
    if (const std::uint8_t bad = critical_check(msg)) {
        ++counters_.critical_unsupported;
        reject(nt::unsupported_critical_payload, Bytes{bad}, Reason::SETUP_CRITICAL_PAYLOAD,
               "unsupported critical payload " + std::to_string(bad));
        return;
    }
    auto tasks = make_tasks(Exchange::ike_auth, ctx_);
    for (auto& t : tasks) {
        TaskResult r = t->process_r(sa, msg);
        if (r.kind != TaskResult::Kind::ok) {
            reject(r.notify ? r.notify : nt::authentication_failed, std::move(r.notify_data), r.reason, r.why);
            return;
        }
    }
    for (auto& t : tasks) {
        TaskResult r = t->build_r(sa, resp);
        if (r.kind != TaskResult::Kind::ok) {
            reject(nt::authentication_failed, {}, r.reason, r.why);
            return;
        }
    }
    auto sealed = seal(sa, resp);
    if (!sealed) {
        fail(sa, Reason::INTERNAL, "cannot encrypt the IKE_AUTH response");
        return;
    }
    // Keys go to the dataplane before the response leaves: the secondary may send at once.
    if (establish(sa)) {
        send_response(sa, std::move(*sealed), outer.hdr.msg_id, data);
        return;
    }
    Message err;  // establish() logged the failure
    err.hdr = resp.hdr;
    err.add_notify(nt::authentication_failed);
    if (auto b = seal(sa, err)) send_response(sa, std::move(*b), outer.hdr.msg_id, data);
}

void SetupEngine::send_response(IkeSa& sa, Bytes bytes, std::uint32_t msg_id, ByteView request) {
    sa.last_sent = std::move(bytes);
    sa.last_sent_id = msg_id;
    sa.last_request_hash = sha256(request);
    sa.resends = 0;
    sa.have_response = true;
    sa.msg_id = msg_id + 1;
    ++counters_.sent;
    transport_.send(sa.local, sa.peer, sa.last_sent, sa.framing);
}

}  // namespace p3::setup
