// ESP remotes: the IKE SA's life after setup (see esp_exchanges.cpp for the exchanges the peer
// starts): our own requests (liveness, child rekey, DELETE) with a window of 1 and the setup
// retransmission timers, their answers, the timers (heartbeat_time, heartbeat_fail,
// rekey_wait, the old inbound SAs' grace), and the session's end.
#include <algorithm>

#include "common/log.hpp"
#include "control/setup/esp_child.hpp"
#include "control/setup/ike_tasks.hpp"
#include "control/setup/setup_engine.hpp"

namespace p3::setup {

namespace {
std::uint16_t bits_of(config::KeyType k) { return k == config::KeyType::aes256 ? 256 : 128; }
std::size_t bytes_of(config::KeyType k) { return k == config::KeyType::aes256 ? 32 : 16; }
std::chrono::seconds secs(std::uint32_t s) { return std::chrono::seconds(s); }
}  // namespace

// Just established: the child's SPIs, the first rekey (rekey_wait less up to 10 %, so two
// sides configured alike do not collide), the liveness timers.
void SetupEngine::esp_started(IkeSa& sa) {
    const auto now = clock_.now();
    sa.last_heard = now;
    std::uint8_t r[2] = {0, 0};
    random_.fill(r);
    const auto wait = std::chrono::duration_cast<control::Duration>(secs(sa.remote->params.rekey_wait));
    sa.rekey_at = now + wait - wait * (get16(r) % 1000) / 10000;
    sa.keepalive_at = now + limits::nat_keepalive;
    if (sa.initiator) {   // the peer's requests count from 0, ours go on from IKE_AUTH's
        sa.msg_id = 0;
        sa.out_msg_id = 2;
        sa.have_response = false;
        sa.last_sent.clear();
    } else {
        sa.out_msg_id = 0;
    }
    sa.deadline = esp_deadline(sa);
}

// RFC 3948 §2.3: the side behind a NAT keeps its mapping of the ESP-in-UDP flow open.
bool SetupEngine::keepalives(const IkeSa& sa) const {
    return sa.local_behind_nat && local_.nat_port && !sa.rekeyed && !sa.closing;
}

control::TimePoint SetupEngine::esp_deadline(const IkeSa& sa) const {
    if (sa.rekeyed) return sa.last_heard + opts_.half_open_timeout;   // waiting for the peer's DELETE
    const auto& p = sa.remote->params;
    control::TimePoint t = sa.last_heard + secs(p.heartbeat_fail);
    if (sa.out != IkeSa::Out::none) t = std::min(t, sa.out_deadline);
    else if (!sa.closing) t = std::min({t, control::TimePoint(sa.last_heard + secs(p.heartbeat_time)), sa.rekey_at});
    for (const auto& o : sa.old_rx) t = std::min(t, o.until);
    if (sa.pending_tx) t = std::min(t, sa.pending_tx->at);
    if (keepalives(sa)) t = std::min(t, sa.keepalive_at);
    return t;
}

void SetupEngine::esp_send_request(IkeSa& sa, IkeSa::Out kind, Message m) {
    m.hdr.msg_id = sa.out_msg_id;
    auto sealed = seal(sa, m);
    if (!sealed) return;
    sa.out = kind;
    sa.out_bytes = std::move(*sealed);
    sa.out_tries = 1;
    sa.out_deadline = clock_.now() + opts_.retransmit_base;
    ++counters_.sent;
    transport_.send(sa.local, sa.peer, sa.out_bytes, sa.framing);
    sa.deadline = esp_deadline(sa);
}

void SetupEngine::esp_timer(IkeSa& sa, control::TimePoint now) {
    const auto& p = sa.remote->params;
    if (sa.rekeyed) {   // an old IKE SA whose DELETE never came
        erase(our_spi(sa));
        return;
    }
    if (sa.pending_tx && sa.pending_tx->at <= now) esp_switch_tx(sa);   // no DELETE came
    for (std::size_t i = sa.old_rx.size(); i-- > 0;)
        if (sa.old_rx[i].until <= now) esp_retire_old(sa, i);   // no DELETE within the grace
    if (keepalives(sa) && sa.keepalive_at <= now) {
        // One 0xff byte on the ESP-in-UDP flow: our nat_port to the peer's port on it (where its
        // IKE came from once it floated there; else its nat_port, as the dataplane sends ESP).
        static constexpr std::uint8_t kKeepalive[] = {0xff};
        const bool floated = sa.framing == Framing::non_esp_marker;
        transport_.send(Endpoint{sa.local.addr, local_.nat_port},
                        Endpoint{sa.peer.addr, floated ? sa.peer.port : local_.nat_port},
                        ByteView(kKeepalive, sizeof kKeepalive), Framing::plain);
        ++counters_.nat_keepalives;
        sa.keepalive_at = now + limits::nat_keepalive;
    }
    if (now - sa.last_heard >= secs(p.heartbeat_fail)) {
        if (sa.closing) {
            erase(our_spi(sa));
            return;
        }
        ++counters_.esp_dead;
        return esp_end(sa, Reason::SETUP_ESP_DEAD,
                       "no answer for " + std::to_string(p.heartbeat_fail) + " s (heartbeat_fail)");
    }
    if (sa.out != IkeSa::Out::none) {
        if (sa.out_deadline <= now) {   // retransmit: 1, 2, 4 ... s, at most heartbeat_time apart
            ++counters_.retransmits;
            ++sa.out_tries;
            const auto step = opts_.retransmit_base * (1u << std::min(sa.out_tries - 1, 10u));
            sa.out_deadline = now + std::min<control::Duration>(step, secs(p.heartbeat_time));
            ++counters_.sent;
            transport_.send(sa.local, sa.peer, sa.out_bytes, sa.framing);
        }
    } else if (!sa.closing) {
        const bool seq_limit = !sa.child_esn && sink_.esp_tx_packets(sa.remote->id) >= limits::esp_no_esn_rekey;
        if ((now >= sa.rekey_at || seq_limit) && sa.child_tx) {
            esp_start_rekey(sa);
        } else if (now - sa.last_heard >= secs(p.heartbeat_time)) {
            ++counters_.liveness_sent;
            esp_send_request(sa, IkeSa::Out::liveness, esp_message_for(sa, Exchange::informational, false, 0));
        }
    }
    sa.deadline = esp_deadline(sa);
}

// ---- child SA rekey (initiator) --------------------------------------------------------

bool SetupEngine::esp_start_rekey(IkeSa& sa) {
    esp_switch_tx(sa);   // the peer's last rekey settles before ours starts
    auto rx = sink_.reserve_rx_id(sa.remote->id, 1);
    Bytes ni(limits::our_nonce);
    if (!rx || !*rx || !random_.fill(ni)) {
        if (rx && *rx) sink_.release_rx_id(*rx);
        sa.rekey_at = clock_.now() + std::chrono::seconds(10);   // try again soon
        return false;
    }
    sa.rekey_rx_spi = *rx;
    sa.rekey_nonce = ni;
    sa.rekey_kx.reset();
    if (sa.remote->params.rekey_dh && sa.group && !sa.rekey_pfs_refused) sa.rekey_kx = KeyExchange::create(sa.group);
    Message m = esp_message_for(sa, Exchange::create_child_sa, false, 0);
    NotifyPayload n{proto_esp, {}, nt::rekey_sa, {}};
    put32(n.spi, sa.child_rx);   // the SA being rekeyed, by the SPI we receive on (§1.3.3)
    m.add(pt::notify, std::move(n));
    m.add(pt::sa, SaPayload{{esp::offer(*rx, bits_of(sa.child_key), sa.rekey_kx ? sa.group : 0)}});
    m.add(pt::nonce, NoncePayload{ni});
    if (sa.rekey_kx) m.add(pt::ke, KePayload{sa.group, sa.rekey_kx->public_value()});
    m.add(pt::tsi, esp::selectors(sa.ts_local));
    m.add(pt::tsr, esp::selectors(sa.ts_remote));
    esp_send_request(sa, IkeSa::Out::rekey_child, std::move(m));
    return true;
}

void SetupEngine::esp_rekey_response(IkeSa& sa, const Message& msg) {
    const std::uint32_t rx = sa.rekey_rx_spi;
    sa.rekey_rx_spi = 0;
    const auto wait = std::chrono::duration_cast<control::Duration>(secs(sa.remote->params.rekey_wait));
    bool installed = false;   // then the ID goes with the SA, not back as a reservation
    auto failed = [&](const std::string& why) {
        if (!installed) sink_.release_rx_id(rx);
        sa.rekey_at = clock_.now() + std::min<control::Duration>(wait / 10 + std::chrono::seconds(1), wait);
        P3_PEER_LOG(warning, Reason::SETUP_ESP_REFUSED, "setup with remote %u (%s): our child SA rekey failed: %s",
                    sa.remote->id, sa.peer_name.c_str(), why.c_str());
    };
    if (const auto* e = msg.error_notify()) {
        if (e->type == nt::no_proposal_chosen && sa.rekey_kx && !sa.rekey_pfs_refused) {
            // Authenticated (SK), so the peer's policy and no attacker's: without PFS, at once.
            sink_.release_rx_id(rx);
            sa.rekey_kx.reset();
            sa.rekey_pfs_refused = true;
            sa.rekey_at = clock_.now();
            P3_LOG_WARN(SETUP_ESP_REFUSED, "setup with remote %u (%s): the peer refuses a key exchange in child SA rekeys "
                        "(its ESP proposals name no group): rekeying without PFS", sa.remote->id, sa.peer_name.c_str());
            return;
        }
        return failed("the peer answered notify " + std::to_string(e->type));
    }
    const auto* sap = msg.find<SaPayload>(pt::sa);
    const auto* nr = msg.find<NoncePayload>(pt::nonce);
    const auto* ke = msg.find<KePayload>(pt::ke);
    const auto* tsi = msg.find<TsPayload>(pt::tsi);
    const auto* tsr = msg.find<TsPayload>(pt::tsr);
    if (!sap || sap->proposals.size() != 1 || !nr || !tsi || !tsr || !nonce_ok_for(sa.prf_alg, nr->data))
        return failed("malformed answer");
    const esp::Choice c = esp::choose(*sap, bits_of(sa.child_key), sa.rekey_kx ? sa.group : 0);
    if (!c.num || (sa.rekey_kx && (!ke || ke->group != sa.group))) return failed("answer outside our offer");
    std::optional<SecretBytes> shared;
    if (sa.rekey_kx) {
        shared = sa.rekey_kx->shared_secret(ke->data);
        if (!shared) return failed("bad KE data");
    }
    DirectionKeys out, in;   // we initiated: i->r is our outbound
    if (!esp::derive_child(sa, shared ? &*shared : nullptr, sa.rekey_nonce, nr->data, bytes_of(sa.child_key), out, in))
        return failed("key derivation failed");
    if (!sink_.esp_install_rx(sa.remote->id, rx, in, c.esn)) return failed("the dataplane refused the inbound SA");
    installed = true;
    if (!sink_.esp_install_tx(sa.remote->id, c.peer_spi, out, c.esn)) {
        sink_.esp_remove_rx(sa.remote->id, rx);
        return failed("the dataplane refused the outbound SA");
    }
    // The old pair goes with our DELETE (the peer answers with its half).
    const std::uint32_t old_rx = sa.child_rx;
    sa.old_rx.push_back(IkeSa::OldRx{sa.child_rx, sa.child_tx, clock_.now() + limits::esp_old_rx_grace});
    if (sa.old_rx.size() > limits::esp_old_rx_max) esp_retire_old(sa, 0);
    sa.child_rx = rx;
    sa.child_tx = c.peer_spi;
    sa.child_esn = c.esn;
    sa.rekey_kx.reset();
    sa.rekey_at = clock_.now() + wait;
    ++counters_.child_rekeys;
    P3_LOG_INFO(SETUP_ESP_REKEYED, "setup with remote %u (%s): child SA rekeyed, SPI in 0x%08x out 0x%08x%s", sa.remote->id,
                sa.peer_name.c_str(), sa.child_rx, sa.child_tx, shared ? " (PFS)" : "");
    Message del = esp_message_for(sa, Exchange::informational, false, 0);
    del.add(pt::del, esp::make_delete(proto_esp, {old_rx}));
    ++counters_.deletes_sent;
    esp_send_request(sa, IkeSa::Out::delete_child, std::move(del));
}

// The answer to our outstanding request (authenticated already).
void SetupEngine::esp_response(IkeSa& sa, const Message& msg) {
    const IkeSa::Out kind = sa.out;
    sa.out = IkeSa::Out::none;
    sa.out_bytes.clear();
    ++sa.out_msg_id;
    switch (kind) {
        case IkeSa::Out::rekey_child:
            if (msg.hdr.exchange != Exchange::create_child_sa) {
                ++counters_.esp_bad;
                return;
            }
            return esp_rekey_response(sa, msg);
        case IkeSa::Out::delete_child:
            // Our old inbound SA goes now that the peer stopped sending on it.
            for (std::size_t i = sa.old_rx.size(); i-- > 0;)
                if (sa.old_rx[i].rx_spi != sa.child_rx) {
                    esp_retire_old(sa, i);
                    break;
                }
            return;
        case IkeSa::Out::delete_ike: erase(our_spi(sa)); return;
        default: return;   // liveness: last_heard is set
    }
}

// ---- the session's end ---------------------------------------------------------------------

void SetupEngine::esp_end(IkeSa& sa, Reason reason, const std::string& why) {
    const std::uint32_t id = sa.remote->id;
    P3_LOG_WARN(SETUP_ESP_DELETED, "setup with remote %u (%s): ESP session down: %s", id, sa.peer_name.c_str(), why.c_str());
    (void)reason;
    for (std::size_t i = sa.old_rx.size(); i-- > 0;) esp_retire_old(sa, i);
    if (sa.rekey_rx_spi) sink_.release_rx_id(sa.rekey_rx_spi);
    sa.rekey_rx_spi = 0;
    erase(our_spi(sa));
    sink_.esp_down(id, reason);   // keys cleared; an initiator connects again with its back-off
}

bool SetupEngine::esp_close(std::uint32_t remote_id) {
    for (auto& [k, p] : sas_) {
        IkeSa& sa = *p;
        if (!sa.esp || sa.state != IkeSa::State::established || sa.rekeyed || !sa.remote || sa.remote->id != remote_id)
            continue;
        // One DELETE, not waited for: the session goes now (§1.4.1 lets the peer's answer go unread).
        Message del = esp_message_for(sa, Exchange::informational, false, sa.out == IkeSa::Out::none ? sa.out_msg_id : sa.out_msg_id + 1);
        del.add(pt::del, esp::make_delete(proto_ike, {}));
        if (auto sealed = seal(sa, del)) {
            ++counters_.sent;
            ++counters_.deletes_sent;
            transport_.send(sa.local, sa.peer, *sealed, sa.framing);
        }
        P3_LOG_NOTICE(SETUP_ESP_CLOSED, "setup with remote %u (%s): IKE SA deleted by us, ESP session down", remote_id,
                      sa.peer_name.c_str());
        for (std::size_t i = sa.old_rx.size(); i-- > 0;) esp_retire_old(sa, i);
        if (sa.rekey_rx_spi) sink_.release_rx_id(sa.rekey_rx_spi);
        sa.rekey_rx_spi = 0;
        erase(Spi{k});
        sink_.esp_down(remote_id, Reason::SETUP_ESP_CLOSED);
        return true;
    }
    return false;
}

bool SetupEngine::esp_rekey(std::uint32_t remote_id) {
    for (auto& [k, p] : sas_) {
        IkeSa& sa = *p;
        if (sa.esp && sa.state == IkeSa::State::established && !sa.rekeyed && !sa.closing && sa.remote &&
            sa.remote->id == remote_id && sa.out == IkeSa::Out::none && sa.child_tx)
            return esp_start_rekey(sa);
    }
    return false;
}

bool SetupEngine::esp_up(std::uint32_t remote_id) const {
    for (const auto& [k, p] : sas_)
        if (p->esp && p->state == IkeSa::State::established && !p->rekeyed && p->remote && p->remote->id == remote_id &&
            p->child_tx)
            return true;
    return false;
}

}  // namespace p3::setup
