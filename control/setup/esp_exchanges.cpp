// ESP remotes (wire = "esp"): the IKE SA stays up with the session, and the exchanges a
// standard peer runs on it are answered and started here (RFC 7296):
//   CREATE_CHILD_SA  child SA rekey (N(REKEY_SA), new nonces, optional KE, KEYMAT from SK_d,
//                    §2.17): new inbound installed before the answer, outbound moved once it
//                    left, the old inbound kept until the peer's DELETE or esp_old_rx_grace;
//                    IKE SA rekey (§2.18): a new IKE SA takes the child, the old one waits
//                    for the peer's DELETE. As initiator: a child rekey every rekey_wait
//                    (jittered), and before a sequence without ESN nears 2^32.
//   INFORMATIONAL    liveness (empty), DELETE of a child SA (answered with the paired one) or
//                    of the IKE SA (session down); ours: liveness after heartbeat_time of
//                    silence, dead after heartbeat_fail; DELETE on close.
// Windows of 1 both ways: the peer's next request id (IkeSa::msg_id) with the cached answer
// for a retransmission, our own request (IkeSa::out*) retransmitted with the setup timers.
// Everything the peer sends is authenticated (SK) before it changes anything; what fails is
// counted and dropped (esp_bad), every line rate-limited.
#include <algorithm>

#include "common/log.hpp"
#include "control/setup/esp_child.hpp"
#include "control/setup/ike_tasks.hpp"
#include "control/setup/setup_engine.hpp"

namespace p3::setup {

namespace {
std::uint16_t bits_of(config::KeyType k) { return k == config::KeyType::aes256 ? 256 : 128; }
std::size_t bytes_of(config::KeyType k) { return k == config::KeyType::aes256 ? 32 : 16; }
Bytes be16(std::uint16_t v) { Bytes b; put16(b, v); return b; }
}  // namespace

// ---- lookup and dispatch ----------------------------------------------------------------

IkeSa* SetupEngine::esp_sa_for(const Message& msg) {
    // The original initiator's messages carry the I flag; ours is the other SPI.
    const bool peer_initiated = msg.hdr.from_initiator();
    const Spi ours = peer_initiated ? msg.hdr.spi_r : msg.hdr.spi_i;
    auto it = sas_.find(ours.v);
    if (it == sas_.end()) return nullptr;
    IkeSa& sa = *it->second;
    if (!sa.esp || sa.state != IkeSa::State::established || sa.initiator == peer_initiated) return nullptr;
    if ((peer_initiated ? sa.spi_i : sa.spi_r) != (peer_initiated ? msg.hdr.spi_i : msg.hdr.spi_r)) return nullptr;
    return &sa;
}

Message SetupEngine::esp_message_for(const IkeSa& sa, Exchange ex, bool response, std::uint32_t msg_id) const {
    Message m;
    m.hdr.spi_i = sa.spi_i;
    m.hdr.spi_r = sa.spi_r;
    m.hdr.exchange = ex;
    m.hdr.flags = std::uint8_t((sa.initiator ? flags::initiator : 0) | (response ? flags::response : 0));
    m.hdr.msg_id = msg_id;
    return m;
}

void SetupEngine::esp_message(IkeSa& sa, const Endpoint& from, const Endpoint& to, ByteView data, const Message& outer) {
    auto bad = [&](const char* what) {
        ++counters_.esp_bad;
        P3_PEER_LOG(debug, Reason::SETUP_ESP_BAD_MESSAGE, "setup with remote %u (%s): %s from %s dropped",
                    sa.remote->id, sa.peer_name.c_str(), what, from.str().c_str());
    };
    if (outer.hdr.exchange != Exchange::informational && outer.hdr.exchange != Exchange::create_child_sa)
        return bad("unexpected exchange");
    if (outer.hdr.is_response()) {
        if (sa.out == IkeSa::Out::none || outer.hdr.msg_id != sa.out_msg_id) return bad("unexpected response");
    } else if (sa.have_response && outer.hdr.msg_id == sa.last_sent_id) {
        resend_cached(sa, from, to, data, sa.last_sent);   // the identical request only
        return;
    } else if (outer.hdr.msg_id != sa.msg_id) {
        return bad("request outside the window");
    }
    Message msg;
    if (open_sk(data, outer, sa.in_key(), msg) != DecodeError::ok) return bad("message that does not authenticate");
    msg.hdr = outer.hdr;
    // Authenticated: the peer is alive, and it is where this came from (a NAT may have moved it).
    sa.last_heard = clock_.now();
    sa.peer = from;
    sa.local = to;
    sa.framing = rx_framing_;
    const std::uint64_t key = our_spi(sa).v;   // sa may be gone after the dispatch (DELETE, dead)
    if (outer.hdr.is_response()) {
        esp_response(sa, msg);
    } else if (critical_check(msg) != 0) {
        ++counters_.critical_unsupported;
        esp_refuse(sa, outer, data, nt::unsupported_critical_payload, Bytes{critical_check(msg)}, "critical payload");
    } else if (outer.hdr.exchange == Exchange::informational) {
        esp_informational(sa, outer, data, msg);
    } else {
        esp_create_child(sa, outer, data, msg);
    }
    if (auto it = sas_.find(key); it != sas_.end()) it->second->deadline = esp_deadline(*it->second);
}

// Our answer to the peer's request (kept for its retransmissions).
void SetupEngine::esp_answer(IkeSa& sa, const Message& outer, ByteView data, Message resp) {
    ++counters_.esp_requests;
    auto sealed = seal(sa, resp);
    if (!sealed) return;
    send_response(sa, std::move(*sealed), outer.hdr.msg_id, data);
}

void SetupEngine::esp_refuse(IkeSa& sa, const Message& outer, ByteView data, std::uint16_t notify, Bytes ndata,
                             const std::string& why) {
    ++counters_.esp_refused;
    P3_PEER_LOG(warning, Reason::SETUP_ESP_REFUSED, "setup with remote %u (%s): CREATE_CHILD_SA refused with notify %u: %s",
                sa.remote->id, sa.peer_name.c_str(), unsigned(notify), why.c_str());
    Message r = esp_message_for(sa, outer.hdr.exchange, true, outer.hdr.msg_id);
    r.add_notify(notify, std::move(ndata));
    esp_answer(sa, outer, data, std::move(r));
}

// ---- INFORMATIONAL (responder) ---------------------------------------------------------

void SetupEngine::esp_informational(IkeSa& sa, const Message& outer, ByteView data, const Message& msg) {
    Message resp = esp_message_for(sa, Exchange::informational, true, outer.hdr.msg_id);
    bool ike_deleted = false;
    std::vector<std::uint32_t> ours;   // our inbound SPIs paired with the ones the peer deleted
    bool child_gone = false;
    for (const auto& p : msg.payloads) {
        if (p.type != pt::del) continue;
        const auto* raw = std::get_if<RawPayload>(&p.body);
        auto d = raw ? esp::parse_delete(*raw) : std::nullopt;
        if (!d) {
            ++counters_.esp_bad;
            P3_PEER_LOG(debug, Reason::SETUP_ESP_BAD_MESSAGE, "setup with remote %u: malformed Delete payload ignored",
                        sa.remote->id);
            continue;
        }
        ++counters_.deletes_received;
        if (d->protocol == proto_ike) {
            ike_deleted = true;
            continue;
        }
        // The peer deletes an SA it replaced: it receives on the new one already.
        esp_switch_tx(sa);
        for (auto spi : d->spis) {   // the peer's inbound SPIs = our outbound ones (§3.11)
            for (std::size_t i = 0; i < sa.old_rx.size(); ++i)
                if (sa.old_rx[i].tx_spi == spi) {
                    ours.push_back(sa.old_rx[i].rx_spi);
                    esp_retire_old(sa, i);
                    break;
                }
            if (spi == sa.child_tx && sa.child_tx) {
                ours.push_back(sa.child_rx);
                child_gone = true;
            }
        }
    }
    if (!ike_deleted && !ours.empty()) resp.add(pt::del, esp::make_delete(proto_esp, ours));
    esp_answer(sa, outer, data, std::move(resp));
    if (sa.rekeyed && ike_deleted) {   // the old IKE SA of a rekey: the session lives on in the new one
        erase(our_spi(sa));
        return;
    }
    if (ike_deleted) return esp_end(sa, Reason::SETUP_ESP_DELETED, "the peer deleted the IKE SA");
    // Its only child gone, the session carries nothing: it ends, and so does our IKE SA.
    if (child_gone) {
        Message del = esp_message_for(sa, Exchange::informational, false, sa.out_msg_id);
        del.add(pt::del, esp::make_delete(proto_ike, {}));
        sink_.esp_down(sa.remote->id, Reason::SETUP_ESP_DELETED);
        P3_LOG_WARN(SETUP_ESP_DELETED, "setup with remote %u (%s): the peer deleted the child SA: session down",
                    sa.remote->id, sa.peer_name.c_str());
        sa.child_rx = sa.child_tx = 0;
        if (sa.out == IkeSa::Out::none) esp_send_request(sa, IkeSa::Out::delete_ike, std::move(del));
        sa.closing = true;
    }
}

void SetupEngine::esp_switch_tx(IkeSa& sa) {
    if (!sa.pending_tx) return;
    IkeSa::PendingTx t = std::move(*sa.pending_tx);
    sa.pending_tx.reset();
    if (!sink_.esp_install_tx(sa.remote->id, t.spi, t.keys, t.esn))
        P3_PEER_LOG(error, Reason::SETUP_ESP_REFUSED, "setup with remote %u: the dataplane refused the new outbound SA",
                    sa.remote->id);
}

void SetupEngine::esp_retire_old(IkeSa& sa, std::size_t i) {
    // The dataplane frees the ID with the SA (after its grace period).
    sink_.esp_remove_rx(sa.remote->id, sa.old_rx[i].rx_spi);
    sa.old_rx.erase(sa.old_rx.begin() + std::ptrdiff_t(i));
}

// ---- CREATE_CHILD_SA (responder) ---------------------------------------------------------

void SetupEngine::esp_create_child(IkeSa& sa, const Message& outer, ByteView data, const Message& msg) {
    const auto* sap = msg.find<SaPayload>(pt::sa);
    const auto* nonce = msg.find<NoncePayload>(pt::nonce);
    if (!sap || !nonce || sap->proposals.empty())
        return esp_refuse(sa, outer, data, nt::invalid_syntax, {}, "no SA or nonce");
    if (!nonce_ok_for(sa.prf_alg, nonce->data))
        return esp_refuse(sa, outer, data, nt::invalid_syntax, {}, "nonce too short");
    if (sa.rekeyed || sa.closing) return esp_refuse(sa, outer, data, nt::temporary_failure, {}, "IKE SA going away");
    if (sap->proposals[0].protocol == proto_ike) return esp_rekey_ike(sa, outer, data, msg, *sap);
    const auto* rekey = msg.notify(nt::rekey_sa);
    if (!rekey) return esp_refuse(sa, outer, data, nt::no_additional_sas, {}, "one child SA per remote");
    if (rekey->spi.size() != 4 || get32(rekey->spi.data()) != sa.child_tx)
        return esp_refuse(sa, outer, data, nt::child_sa_not_found, {}, "REKEY_SA names no child SA of ours");
    // A rekey of our own in flight: the peer's wins (ours is dropped when answered), RFC 7296 §2.25.
    if (sa.out == IkeSa::Out::rekey_child) return esp_refuse(sa, outer, data, nt::temporary_failure, {}, "rekey collision");
    const auto* ke = msg.find<KePayload>(pt::ke);
    const auto* tsi = msg.find<TsPayload>(pt::tsi);
    const auto* tsr = msg.find<TsPayload>(pt::tsr);
    if (!tsi || !tsr) return esp_refuse(sa, outer, data, nt::invalid_syntax, {}, "no traffic selectors");
    std::uint16_t group = 0;
    if (ke) {
        group = ke->group;
        if (std::find(opts_.groups.begin(), opts_.groups.end(), group) == opts_.groups.end() ||
            !esp::choose(*sap, bits_of(sa.child_key), group).num) {
            for (auto g : opts_.groups)
                if (esp::choose(*sap, bits_of(sa.child_key), g).num)
                    return esp_refuse(sa, outer, data, nt::invalid_ke_payload, be16(g), "asking for group " + std::to_string(g));
            return esp_refuse(sa, outer, data, nt::no_proposal_chosen, {}, "no acceptable group");
        }
        if (!KeyExchange::check_public(group, ke->data)) return esp_refuse(sa, outer, data, nt::invalid_syntax, {}, "bad KE data");
    }
    const esp::Choice c = esp::choose(*sap, bits_of(sa.child_key), group);
    if (!c.num) return esp_refuse(sa, outer, data, nt::no_proposal_chosen, {}, "no acceptable ESP proposal");
    auto ts_remote = esp::narrow(sa.remote->subnets, *tsi);
    auto ts_local = esp::narrow(esp::local_networks(local_), *tsr);
    if (ts_remote.empty() || ts_local.empty())
        return esp_refuse(sa, outer, data, nt::ts_unacceptable, {}, "selectors outside the configuration");
    Bytes nr(limits::our_nonce);
    if (!random_.fill(nr)) return esp_refuse(sa, outer, data, nt::temporary_failure, {}, "no randomness");
    std::unique_ptr<KeyExchange> kx;
    std::optional<SecretBytes> shared;
    if (ke) {
        kx = KeyExchange::create(group);
        if (kx) shared = kx->shared_secret(ke->data);
        if (!shared) return esp_refuse(sa, outer, data, nt::invalid_syntax, {}, "KE failed");
    }
    DirectionKeys in, out;   // the peer initiated: i->r is our inbound
    if (!esp::derive_child(sa, shared ? &*shared : nullptr, nonce->data, nr, bytes_of(sa.child_key), in, out))
        return esp_refuse(sa, outer, data, nt::temporary_failure, {}, "key derivation failed");
    auto rx = sink_.reserve_rx_id(sa.remote->id, 1);
    if (!rx || !*rx) return esp_refuse(sa, outer, data, nt::temporary_failure, {}, "no free SPI");
    // Make before break: the new inbound SA decrypts before the peer can have our answer.
    if (!sink_.esp_install_rx(sa.remote->id, *rx, in, c.esn)) {
        sink_.release_rx_id(*rx);
        return esp_refuse(sa, outer, data, nt::temporary_failure, {}, "the dataplane refused the inbound SA");
    }
    Message resp = esp_message_for(sa, Exchange::create_child_sa, true, outer.hdr.msg_id);
    resp.add(pt::sa, SaPayload{{esp::answer(c, *rx, bits_of(sa.child_key))}});
    resp.add(pt::nonce, NoncePayload{nr});
    if (kx) resp.add(pt::ke, KePayload{group, kx->public_value()});
    resp.add(pt::tsi, esp::selectors(ts_remote));
    resp.add(pt::tsr, esp::selectors(ts_local));
    esp_answer(sa, outer, data, std::move(resp));
    // Outbound moves to the new SA once the peer has it: when its DELETE of the old SA comes
    // (it installed the new one on our answer, before deleting), at most esp_tx_switch_max
    // later. Sending on it at once lost the packets that reached the peer before our answer
    // did (strongSwan's responders wait for the DELETE the same way). The old inbound stays
    // for the DELETE.
    esp_switch_tx(sa);   // one still pending from an earlier rekey goes first
    sa.pending_tx = IkeSa::PendingTx{c.peer_spi, std::move(out), c.esn, clock_.now() + limits::esp_tx_switch_max};
    if (sa.old_rx.size() >= limits::esp_old_rx_max) esp_retire_old(sa, 0);
    sa.old_rx.push_back(IkeSa::OldRx{sa.child_rx, sa.child_tx, clock_.now() + limits::esp_old_rx_grace});
    sa.child_rx = *rx;
    sa.child_tx = c.peer_spi;
    sa.child_esn = c.esn;
    sa.ts_local = std::move(ts_local);
    sa.ts_remote = std::move(ts_remote);
    ++counters_.child_rekeys;
    P3_PEER_LOG(info, Reason::SETUP_ESP_REKEYED, "setup with remote %u (%s): child SA rekeyed by the peer, SPI in 0x%08x out 0x%08x%s",
                sa.remote->id, sa.peer_name.c_str(), sa.child_rx, sa.child_tx, shared ? " (PFS)" : "");
}

// ---- IKE SA rekey (responder, §2.18) -------------------------------------------------------

void SetupEngine::esp_rekey_ike(IkeSa& sa, const Message& outer, ByteView data, const Message& msg, const SaPayload& sap) {
    const auto* ke = msg.find<KePayload>(pt::ke);
    const auto* ni = msg.find<NoncePayload>(pt::nonce);
    if (!ke) return esp_refuse(sa, outer, data, nt::invalid_syntax, {}, "IKE SA rekey without KE");
    // Replaced IKE SAs wait for their DELETE (30 s at most): a peer rekeying in a loop keeps
    // at most this many of them, not one per request.
    std::size_t waiting = 0;
    for (const auto& [k, o] : sas_) waiting += o->rekeyed && o->remote == sa.remote;
    if (waiting >= limits::esp_rekeyed_max) return esp_refuse(sa, outer, data, nt::temporary_failure, {}, "IKE SA rekeyed too often");
    std::uint16_t bits = 0, prf_id = 0;
    std::uint8_t num = 0;
    Spi peer_spi;
    bool group_offered_ours = false;
    std::uint16_t want_group = 0;
    for (const auto& p : sap.proposals) {
        if (p.protocol != proto_ike || p.spi.size() != 8 || get64(p.spi.data()) == 0) continue;
        std::uint16_t b = 0, f = 0;
        bool g = false, integ = false;
        for (auto ob : opts_.encr_bits)
            for (const auto& t : p.transforms) b = b ? b : (t.type == tt::encr && t.id == encr_aes_gcm_16 && t.key_bits == ob ? ob : 0);
        for (auto of : opts_.prfs)
            for (const auto& t : p.transforms) f = f ? f : (t.type == tt::prf && t.id == of ? of : 0);
        for (const auto& t : p.transforms) {
            g |= t.type == tt::dh && t.id == ke->group;
            integ |= t.type == tt::integ && t.id != 0;
            if (t.type == tt::dh && !want_group && std::find(opts_.groups.begin(), opts_.groups.end(), t.id) != opts_.groups.end())
                want_group = t.id;
        }
        if (!b || !f || integ) continue;
        group_offered_ours |= want_group != 0;
        if (!g || std::find(opts_.groups.begin(), opts_.groups.end(), ke->group) == opts_.groups.end()) continue;
        bits = b, prf_id = f, num = p.num, peer_spi = Spi{get64(p.spi.data())};
        break;
    }
    if (!num) {
        if (group_offered_ours) return esp_refuse(sa, outer, data, nt::invalid_ke_payload, be16(want_group), "asking for another group");
        return esp_refuse(sa, outer, data, nt::no_proposal_chosen, {}, "no acceptable IKE proposal");
    }
    if (!KeyExchange::check_public(ke->group, ke->data)) return esp_refuse(sa, outer, data, nt::invalid_syntax, {}, "bad KE data");
    if (!nonce_ok_for(prf_id, ni->data)) return esp_refuse(sa, outer, data, nt::invalid_syntax, {}, "nonce too short");
    auto next = std::make_unique<IkeSa>();
    IkeSa& n = *next;
    n.initiator = false;   // the peer started the rekey: it is the new SA's original initiator
    n.state = IkeSa::State::established;
    n.spi_i = peer_spi;
    n.spi_r = new_spi();
    n.local = sa.local, n.peer = sa.peer, n.init_peer = sa.init_peer, n.framing = sa.framing;
    n.remote = sa.remote, n.peer_id = sa.peer_id, n.peer_name = sa.peer_name;
    n.group = ke->group, n.prf_alg = prf_id, n.encr_bits = bits;
    n.nonce_i = ni->data;
    n.nonce_r = Bytes(limits::our_nonce);
    n.kx = KeyExchange::create(ke->group);
    std::optional<SecretBytes> shared;
    if (n.kx) shared = n.kx->shared_secret(ke->data);
    if (!n.spi_r || !random_.fill(n.nonce_r) || !shared)
        return esp_refuse(sa, outer, data, nt::temporary_failure, {}, "IKE SA rekey failed");
    // SKEYSEED = prf(SK_d (old), g^ir (new) | Ni | Nr)
    SecretBytes seed(shared->size() + n.nonce_i.size() + n.nonce_r.size());
    auto out = seed.span().begin();
    out = std::copy(shared->span().begin(), shared->span().end(), out);
    out = std::copy(n.nonce_i.begin(), n.nonce_i.end(), out);
    std::copy(n.nonce_r.begin(), n.nonce_r.end(), out);
    if (!derive_ike_keys_from(n, prf(sa.prf_alg, sa.sk_d.span(), seed.span())))
        return esp_refuse(sa, outer, data, nt::temporary_failure, {}, "IKE SA key derivation failed");
    // The child and the session's state move to the new IKE SA.
    n.esp = true;
    n.child_key = sa.child_key, n.child_esn = sa.child_esn, n.child_rx = sa.child_rx, n.child_tx = sa.child_tx;
    n.ts_local = sa.ts_local, n.ts_remote = sa.ts_remote, n.old_rx = std::move(sa.old_rx);
    n.pending_tx = std::move(sa.pending_tx);
    sa.pending_tx.reset();
    n.last_heard = sa.last_heard, n.rekey_at = sa.rekey_at, n.rekey_pfs_refused = sa.rekey_pfs_refused;
    sa.old_rx.clear();
    Message resp = esp_message_for(sa, Exchange::create_child_sa, true, outer.hdr.msg_id);
    Proposal p;
    p.num = num;
    p.protocol = proto_ike;
    put64(p.spi, n.spi_r.v);
    p.transforms = {{tt::encr, encr_aes_gcm_16, bits}, {tt::prf, prf_id, 0}, {tt::dh, ke->group, 0}};
    resp.add(pt::sa, SaPayload{{p}});
    resp.add(pt::nonce, NoncePayload{n.nonce_r});
    resp.add(pt::ke, KePayload{ke->group, n.kx->public_value()});
    esp_answer(sa, outer, data, std::move(resp));
    // The old SA answers the DELETE that follows (and retransmissions), then goes quietly.
    sa.rekeyed = true;
    sa.child_rx = sa.child_tx = 0;
    sa.out = IkeSa::Out::none;
    n.deadline = esp_deadline(n);
    ++counters_.ike_rekeys;
    P3_PEER_LOG(info, Reason::SETUP_ESP_REKEYED, "setup with remote %u (%s): IKE SA rekeyed by the peer, SPIs %016llx/%016llx",
                n.remote->id, n.peer_name.c_str(), static_cast<unsigned long long>(n.spi_i.v),
                static_cast<unsigned long long>(n.spi_r.v));
    sas_.emplace(n.spi_r.v, std::move(next));
}

}  // namespace p3::setup
