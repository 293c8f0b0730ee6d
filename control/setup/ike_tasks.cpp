// The tasks of IKE_SA_INIT and IKE_AUTH. Every check of a peer's message ends in either
// "ok" or a TaskResult naming the notify to answer with (responder) and the reason code to log.
#include "control/setup/ike_tasks.hpp"

#include "control/setup/esp_child.hpp"

#include "common/wire_limits.hpp"

#include <openssl/x509.h>

#include <algorithm>

namespace p3::setup {

namespace {

Bytes be16(std::uint16_t v) { Bytes b; put16(b, v); return b; }
Bytes be32(std::uint32_t v) { Bytes b; put32(b, v); return b; }
bool contains(const std::vector<std::uint16_t>& v, std::uint16_t x) { return std::find(v.begin(), v.end(), x) != v.end(); }
std::uint16_t key_bits(config::KeyType k) { return k == config::KeyType::aes256 ? 256 : 128; }

Bytes fresh(Random& r, std::size_t n) {
    Bytes b(n);
    if (!r.fill(b)) b.clear();
    return b;
}

TrafficSelector selector(const std::optional<Prefix>& p) {
    TrafficSelector s;
    if (!p) {  // anything (IPv4)
        s.start.family = s.end.family = 4;
        std::fill(s.end.bytes.begin(), s.end.bytes.begin() + 4, 0xff);
        return s;
    }
    const std::size_t alen = p->addr.is_v6() ? 16 : 4;
    s.start = s.end = p->addr;
    for (std::size_t i = 0; i < alen; ++i) {
        const int bits_in = std::clamp(int(p->len) - int(i * 8), 0, 8);
        const std::uint8_t mask = std::uint8_t(0xff00 >> bits_in);
        s.start.bytes[i] &= mask;
        s.end.bytes[i] = std::uint8_t(s.start.bytes[i] | ~mask);
    }
    return s;
}

TsPayload selectors(const std::vector<Prefix>& ps) {
    TsPayload ts;
    for (const auto& p : ps) ts.selectors.push_back(selector(p));
    if (ts.selectors.empty()) ts.selectors.push_back(selector(std::nullopt));
    return ts;
}
TsPayload selectors(const std::optional<Prefix>& p) { return TsPayload{{selector(p)}}; }

// RFC 7296 §2.10: a nonce is at least 128 bits and at least half the PRF's key size (HMAC:
// its output size), so the PRF keyed with Ni | Nr has the strength it was chosen for.
bool nonce_ok(std::uint16_t prf_alg, const Bytes& nonce) {
    return nonce.size() >= std::max(limits::min_nonce, prf_size(prf_alg) / 2);
}

// ---- IKE_SA_INIT: proposals, KE, nonces, cookies ------------------------------------

class IkeInit final : public Task {
public:
    using Task::Task;
    const char* name() const override { return "ike-init"; }

    TaskResult build_i(IkeSa& sa, Message& m) override {
        if (sa.group == 0) sa.group = ctx_.opts.groups.at(0);
        if (!sa.kx || sa.kx->group() != sa.group) sa.kx = KeyExchange::create(sa.group);
        if (sa.nonce_i.empty()) sa.nonce_i = fresh(ctx_.random, limits::our_nonce);
        if (!sa.kx || sa.nonce_i.empty())
            return TaskResult::fail(0, Reason::INTERNAL, "key exchange or nonce generation failed");
        if (!sa.cookie.empty()) m.add_notify(nt::cookie, sa.cookie);  // must be first (§2.6)
        Proposal p;
        p.protocol = proto_ike;
        for (auto bits : ctx_.opts.encr_bits) p.transforms.push_back({tt::encr, encr_aes_gcm_16, bits});
        for (auto prf : ctx_.opts.prfs) p.transforms.push_back({tt::prf, prf, 0});
        for (auto g : ctx_.opts.groups) p.transforms.push_back({tt::dh, g, 0});
        m.add(pt::sa, SaPayload{{p}});
        m.add(pt::ke, KePayload{sa.group, sa.kx->public_value()});
        m.add(pt::nonce, NoncePayload{sa.nonce_i});
        add_sig_hash(m);
        return {};
    }

    TaskResult process_r(IkeSa& sa, const Message& m) override {
        const auto* sap = m.find<SaPayload>(pt::sa);
        const auto* ke = m.find<KePayload>(pt::ke);
        const auto* nonce = m.find<NoncePayload>(pt::nonce);
        if (!sap || !ke || !nonce)
            return TaskResult::fail(nt::invalid_syntax, Reason::SETUP_MALFORMED, "IKE_SA_INIT without SA, KE or Nonce");
        // The initiator's proposals in its order; inside one, our preferences.
        for (const auto& p : sap->proposals) {
            if (p.protocol != proto_ike || !p.spi.empty()) continue;
            auto pick = [&](std::uint8_t type, const std::vector<std::uint16_t>& ours, bool bits) -> std::uint16_t {
                for (auto want : ours)
                    for (const auto& t : p.transforms)
                        if (t.type == type && (bits ? (t.id == encr_aes_gcm_16 && t.key_bits == want)
                                                    : (t.id == want && t.key_bits == 0)))
                            return want;
                return 0;
            };
            bool bad_integ = false;
            for (const auto& t : p.transforms) bad_integ |= (t.type == tt::integ && t.id != 0);
            const std::uint16_t bits = pick(tt::encr, ctx_.opts.encr_bits, true);
            const std::uint16_t prf = pick(tt::prf, ctx_.opts.prfs, false);
            const std::uint16_t group = pick(tt::dh, ctx_.opts.groups, false);
            if (bad_integ || !bits || !prf || !group) continue;
            // The initiator guessed another group that it also offers: ask for ours (§1.2).
            if (ke->group != group) {
                bool offered = false;
                for (const auto& t : p.transforms) offered |= (t.type == tt::dh && t.id == ke->group && contains(ctx_.opts.groups, ke->group));
                if (!offered)
                    return TaskResult::fail(nt::invalid_ke_payload, Reason::SETUP_INVALID_KE,
                                            "KE group " + std::to_string(ke->group) + ", asking for " + std::to_string(group),
                                            be16(group));
            }
            // Every check of the request before the key pair: a request that will be refused
            // costs no scalar multiplication.
            if (!KeyExchange::check_public(ke->group, ke->data))
                return TaskResult::fail(nt::invalid_syntax, Reason::SETUP_BAD_KE,
                                        "KE data of " + std::to_string(ke->data.size()) + " bytes is no public value of group " +
                                            std::to_string(ke->group));
            if (!nonce_ok(prf, nonce->data))
                return TaskResult::fail(nt::invalid_syntax, Reason::SETUP_SHORT_NONCE,
                                        "nonce of " + std::to_string(nonce->data.size()) + " bytes is too short for PRF " +
                                            std::to_string(prf));
            sa.encr_bits = bits;
            sa.prf_alg = prf;
            sa.group = ke->group;
            sa.nonce_i = nonce->data;
            sa.kx = KeyExchange::create(sa.group);
            sa.nonce_r = fresh(ctx_.random, limits::our_nonce);
            if (!sa.kx || sa.nonce_r.empty()) return TaskResult::fail(0, Reason::INTERNAL, "key exchange setup failed");
            auto shared = sa.kx->shared_secret(ke->data);
            if (!shared) return TaskResult::fail(nt::invalid_syntax, Reason::SETUP_MALFORMED, "invalid KE data");
            if (!derive_ike_keys(sa, *shared)) return TaskResult::fail(0, Reason::INTERNAL, "key derivation failed");
            return {};
        }
        return TaskResult::fail(nt::no_proposal_chosen, Reason::SETUP_NO_PROPOSAL, "no acceptable IKE proposal");
    }

    TaskResult build_r(IkeSa& sa, Message& m) override {
        Proposal p;
        p.protocol = proto_ike;
        p.transforms = {{tt::encr, encr_aes_gcm_16, sa.encr_bits}, {tt::prf, sa.prf_alg, 0}, {tt::dh, sa.group, 0}};
        m.add(pt::sa, SaPayload{{p}});
        m.add(pt::ke, KePayload{sa.group, sa.kx->public_value()});
        m.add(pt::nonce, NoncePayload{sa.nonce_r});
        // Ask for the initiator's certificate: peers that send theirs only when asked
        // (strongSwan's default) need a CERTREQ naming our CA.
        if (ctx_.creds.uses_certificates() && !ctx_.creds.ca_keyid.empty())
            m.add(pt::certreq, CertPayload{cert_x509_sig, ctx_.creds.ca_keyid});
        add_sig_hash(m);
        return {};
    }

    TaskResult process_i(IkeSa& sa, const Message& m) override {
        if (const auto* c = m.notify(nt::cookie)) {
            if (c->data.empty() || c->data.size() > limits::max_cookie)
                return TaskResult::fail(0, Reason::SETUP_MALFORMED, "bad COOKIE");
            if (++sa.init_restarts > limits::max_init_restarts)
                return TaskResult::fail(0, Reason::SETUP_PEER_REJECTED, "too many COOKIE/INVALID_KE rounds");
            sa.cookie = c->data;
            return TaskResult::retry();
        }
        if (const auto* n = m.notify(nt::invalid_ke_payload)) {
            const std::uint16_t g = n->data.size() == 2 ? get16(n->data.data()) : 0;
            if (!contains(ctx_.opts.groups, g) || g == sa.group)
                return TaskResult::fail(0, Reason::SETUP_NO_PROPOSAL, "INVALID_KE_PAYLOAD asks for group " + std::to_string(g) + ", not offered");
            if (++sa.init_restarts > limits::max_init_restarts)
                return TaskResult::fail(0, Reason::SETUP_PEER_REJECTED, "too many COOKIE/INVALID_KE rounds");
            sa.group = g;
            sa.kx.reset();
            TaskResult r = TaskResult::retry();
            r.why = "primary asks for group " + std::to_string(g);
            return r;
        }
        if (const auto* e = m.error_notify()) {
            if (e->type == nt::no_proposal_chosen)
                return TaskResult::fail(0, Reason::SETUP_NO_PROPOSAL, "primary answered NO_PROPOSAL_CHOSEN");
            return TaskResult::fail(0, Reason::SETUP_PEER_REJECTED, "primary answered error notify " + std::to_string(e->type));
        }
        const auto* sap = m.find<SaPayload>(pt::sa);
        const auto* ke = m.find<KePayload>(pt::ke);
        const auto* nonce = m.find<NoncePayload>(pt::nonce);
        if (!sap || !ke || !nonce || sap->proposals.size() != 1)
            return TaskResult::fail(0, Reason::SETUP_MALFORMED, "IKE_SA_INIT response without SA, KE or Nonce");
        std::uint16_t bits = 0, prf = 0, group = 0;
        for (const auto& t : sap->proposals[0].transforms) {
            if (t.type == tt::encr && t.id == encr_aes_gcm_16 && contains(ctx_.opts.encr_bits, t.key_bits)) bits = t.key_bits;
            else if (t.type == tt::prf && contains(ctx_.opts.prfs, t.id)) prf = t.id;
            else if (t.type == tt::dh && t.id == sa.group) group = t.id;
            else return TaskResult::fail(0, Reason::SETUP_NO_PROPOSAL, "primary chose a transform we did not offer");
        }
        if (!bits || !prf || !group || ke->group != sa.group)
            return TaskResult::fail(0, Reason::SETUP_NO_PROPOSAL, "incomplete proposal in the response");
        if (!nonce_ok(prf, nonce->data))
            return TaskResult::fail(0, Reason::SETUP_SHORT_NONCE,
                                    "the primary's nonce of " + std::to_string(nonce->data.size()) + " bytes is too short");
        sa.encr_bits = bits;
        sa.prf_alg = prf;
        sa.nonce_r = nonce->data;
        auto shared = sa.kx->shared_secret(ke->data);
        if (!shared) return TaskResult::fail(0, Reason::SETUP_MALFORMED, "invalid KE data from the primary");
        if (!derive_ike_keys(sa, *shared)) return TaskResult::fail(0, Reason::INTERNAL, "key derivation failed");
        return {};
    }

private:
    void add_sig_hash(Message& m) const {
        Bytes d;
        put16(d, hash_sha256);
        put16(d, hash_sha384);
        put16(d, hash_sha512);
        m.add_notify(nt::signature_hash_algorithms, d);
    }
};

// ---- NAT detection (§2.23) ---------------------------------------------------------

class Natd final : public Task {
public:
    using Task::Task;
    const char* name() const override { return "ike-natd"; }
    TaskResult build_i(IkeSa& sa, Message& m) override { add(sa, Spi{}, m); return {}; }
    TaskResult build_r(IkeSa& sa, Message& m) override { add(sa, sa.spi_r, m); return {}; }
    TaskResult process_r(IkeSa& sa, const Message& m) override { check(sa, Spi{}, m); return {}; }
    TaskResult process_i(IkeSa& sa, const Message& m) override {
        if (m.error_notify() || m.notify(nt::cookie)) return {};
        check(sa, sa.spi_r, m);
        return {};
    }

private:
    static void add(const IkeSa& sa, Spi spi_r, Message& m) {
        m.add_notify(nt::nat_detection_source_ip, natd_hash(sa.spi_i, spi_r, sa.local));
        m.add_notify(nt::nat_detection_destination_ip, natd_hash(sa.spi_i, spi_r, sa.peer));
    }
    static void check(IkeSa& sa, Spi spi_r, const Message& m) {
        bool any_src = false, src_match = false;
        const Bytes want_src = natd_hash(sa.spi_i, spi_r, sa.peer);
        const Bytes want_dst = natd_hash(sa.spi_i, spi_r, sa.local);
        for (const auto& p : m.payloads) {
            const auto* n = std::get_if<NotifyPayload>(&p.body);
            if (!n || p.type != pt::notify) continue;
            if (n->type == nt::nat_detection_source_ip) {
                any_src = true;
                src_match |= n->data == want_src;
            } else if (n->type == nt::nat_detection_destination_ip) {
                sa.local_behind_nat = n->data != want_dst;
            }
        }
        sa.peer_behind_nat = any_src && !src_match;
    }
};

// ---- IKE_AUTH: identities and authentication ----------------------------------------

class IkeAuth final : public Task {
public:
    using Task::Task;
    const char* name() const override { return "ike-auth"; }

    TaskResult build_i(IkeSa& sa, Message& m) override {
        return add_own(sa, m, pt::idi, sa.sk_pi, sa.init_request, sa.nonce_r);
    }

    TaskResult process_r(IkeSa& sa, const Message& m) override {
        const auto* id = m.find<IdPayload>(pt::idi);
        const auto* auth = m.find<AuthPayload>(pt::auth);
        if (!id || !auth)
            return TaskResult::fail(nt::authentication_failed, Reason::SETUP_MALFORMED, "IKE_AUTH without IDi or AUTH");
        sa.peer_id = *id;
        sa.peer_name = id_to_string(*id);
        // The claimed identity picks the remote (identities are unique, config P3-E0115); only
        // that remote's own credential may then prove it.
        const PeerConfig* peer = nullptr;
        for (const auto& p : ctx_.peers)
            if (same_id(p.expected_id, *id)) peer = &p;
        if (!peer)
            return TaskResult::fail(nt::authentication_failed, Reason::SETUP_UNKNOWN_IDENTITY,
                                    "identity " + sa.peer_name + " is no configured remote");
        sa.claimed = peer;
        auto r = verify(sa, peer->id, m, *id, *auth, sa.sk_pi, sa.init_request, sa.nonce_r);
        if (r.kind != TaskResult::Kind::ok) {
            r.notify = nt::authentication_failed;
            return r;
        }
        // Only now is the exchange the remote's: nothing of it (P3 IDs, session, failure
        // accounting) is touched on behalf of an identity that has not been proven.
        sa.remote = peer;
        // A remote the administrator shut down is refused only after its proof, with the
        // answer any failed proof gets: nobody learns which remotes exist or are shut.
        if (!peer->enabled)
            return TaskResult::fail(nt::authentication_failed, Reason::SETUP_REMOTE_SHUT,
                                    "remote " + std::to_string(peer->id) + " is shut down by the administrator");
        return {};
    }

    TaskResult build_r(IkeSa& sa, Message& m) override {
        return add_own(sa, m, pt::idr, sa.sk_pr, sa.init_response, sa.nonce_i);
    }

    TaskResult process_i(IkeSa& sa, const Message& m) override {
        if (const auto* e = m.error_notify()) {
            if (e->type == nt::authentication_failed)
                return TaskResult::fail(0, Reason::SETUP_PEER_REJECTED, "primary answered AUTHENTICATION_FAILED");
            if (e->type == nt::no_proposal_chosen)
                return TaskResult::fail(0, Reason::SETUP_NO_PROPOSAL, "primary answered NO_PROPOSAL_CHOSEN");
            return TaskResult::fail(0, Reason::SETUP_PEER_REJECTED, "primary answered error notify " + std::to_string(e->type));
        }
        const auto* id = m.find<IdPayload>(pt::idr);
        const auto* auth = m.find<AuthPayload>(pt::auth);
        if (!id || !auth) return TaskResult::fail(0, Reason::SETUP_MALFORMED, "IKE_AUTH response without IDr or AUTH");
        sa.peer_id = *id;
        sa.peer_name = id_to_string(*id);
        if (!same_id(sa.remote->expected_id, *id))
            return TaskResult::fail(0, Reason::SETUP_UNKNOWN_IDENTITY,
                                    "primary identified as " + sa.peer_name + ", expected " + sa.remote->name);
        return verify(sa, sa.remote->id, m, *id, *auth, sa.sk_pr, sa.init_response, sa.nonce_i);
    }

private:
    TaskResult add_own(IkeSa& sa, Message& m, std::uint8_t id_type, const SecretBytes& sk_p, const Bytes& real,
                       const Bytes& peer_nonce) {
        m.add(id_type, ctx_.local.id);
        // Towards a remote with its own key we authenticate with that key; otherwise with our
        // certificate (the responder's remote is known here: IkeAuth::process_r ran first).
        if (!ctx_.creds.psk_for(sa.remote->id) && ctx_.creds.uses_certificates()) {
            unsigned char* der = nullptr;
            const int n = i2d_X509(ctx_.creds.cert.get(), &der);
            if (n <= 0) return TaskResult::fail(0, Reason::SETUP_CREDENTIALS, "cannot encode our certificate");
            m.add(pt::cert, CertPayload{cert_x509_sig, Bytes(der, der + n)});
            OPENSSL_free(der);
            if (id_type == pt::idi && !ctx_.creds.ca_keyid.empty())
                m.add(pt::certreq, CertPayload{cert_x509_sig, ctx_.creds.ca_keyid});
        }
        const Bytes octets = signed_octets(sa.prf_alg, sk_p.span(), real, peer_nonce, ctx_.local.id);
        auto auth = make_auth(ctx_.creds, sa.remote->id, sa.prf_alg, octets);
        if (!auth) return TaskResult::fail(0, Reason::SETUP_CREDENTIALS, "cannot compute our AUTH");
        m.add(pt::auth, std::move(*auth));
        return {};
    }

    TaskResult verify(IkeSa& sa, std::uint32_t remote_id, const Message& m, const IdPayload& id, const AuthPayload& auth,
                      const SecretBytes& sk_p, const Bytes& real, const Bytes& peer_nonce) {
        const Bytes octets = signed_octets(sa.prf_alg, sk_p.span(), real, peer_nonce, id);
        const AuthResult r = verify_auth(ctx_.creds, remote_id, sa.prf_alg, octets, id, auth, m.find<CertPayload>(pt::cert));
        switch (r) {
            case AuthResult::ok: return {};
            case AuthResult::wrong_method: return TaskResult::fail(0, Reason::SETUP_AUTH_METHOD, std::string(to_string(r)));
            case AuthResult::cert_expired:
            case AuthResult::cert_untrusted:
            case AuthResult::cert_id_mismatch:
            case AuthResult::cert_missing:
                return TaskResult::fail(0, Reason::SETUP_CERT_INVALID, std::string(to_string(r)));
            default: return TaskResult::fail(0, Reason::SETUP_AUTH_FAILED, std::string(to_string(r)));
        }
    }
};

// ---- IKE_AUTH: the child SA (P3 IDs, key type, traffic selectors) --------------------

class ChildCreate final : public Task {
public:
    using Task::Task;
    const char* name() const override { return "child-create"; }

    TaskResult build_i(IkeSa& sa, Message& m) override {
        if (sa.remote->wire == config::WireMode::esp) return build_i_esp(sa, m);
        if (!reserve(sa, 0)) return TaskResult::fail(0, Reason::SETUP_KEYS_REJECTED, "no free P3 ID to receive on");
        // How many lanes we send on, so the responder reserves exactly that many P3 IDs
        // instead of the most a peer may use (DESIGN.md: lanes are announced at setup).
        if (const std::uint32_t lanes = ctx_.sink.lanes_for(sa.remote->id); lanes != 0) {
            m.add_notify(nt::p3_lanes, be32(lanes));
        }
        Proposal p;
        p.protocol = proto_esp;
        p.spi = be32(sa.rx_id);
        const config::KeyType pref = sa.remote->params.key_type;
        const config::KeyType other = pref == config::KeyType::aes256 ? config::KeyType::aes128 : config::KeyType::aes256;
        p.transforms = {{tt::encr, encr_aes_gcm_16, key_bits(pref)}, {tt::encr, encr_aes_gcm_16, key_bits(other)}, {tt::esn, 0, 0}};
        m.add(pt::sa, SaPayload{{p}});
        m.add(pt::tsi, selectors(ctx_.local.lan));
        m.add(pt::tsr, selectors(sa.remote->subnets));
        return {};
    }

    TaskResult process_r(IkeSa& sa, const Message& m) override {
        const auto* sap = m.find<SaPayload>(pt::sa);
        if (!sap || !m.find<TsPayload>(pt::tsi) || !m.find<TsPayload>(pt::tsr))
            return TaskResult::fail(nt::no_proposal_chosen, Reason::SETUP_MALFORMED, "IKE_AUTH without child SA or TS");
        if (sa.remote->wire == config::WireMode::esp) return process_r_esp(sa, m, *sap);
        const std::uint16_t want = key_bits(sa.remote->params.key_type);
        for (const auto& p : sap->proposals) {
            if (p.protocol != proto_esp || p.spi.size() != 4) continue;
            bool encr = false, esn_ok = false, other = false;
            for (const auto& t : p.transforms) {
                if (t.type == tt::encr) encr |= (t.id == encr_aes_gcm_16 && t.key_bits == want);
                else if (t.type == tt::esn) esn_ok |= t.id == 0;
                else if (t.type == tt::integ) other |= t.id != 0;
            }
            if (!encr || !esn_ok || other) continue;
            sa.peer_rx_id = get32(p.spi.data());
            sa.child_key = sa.remote->params.key_type;
            chosen_num_ = p.num;
            if (sa.peer_rx_id == 0) continue;
            // The initiator's lane count, if it said (a standard peer does not: one SA, but
            // it is not known to be one lane, so the whole block is reserved).
            std::uint32_t peer_lanes = 0;
            if (const auto* n = m.notify(nt::p3_lanes); n && n->data.size() == 4) {
                peer_lanes = get32(n->data.data());
                if (peer_lanes > wire::kMaxLanes) peer_lanes = 0;
            }
            if (!reserve(sa, peer_lanes)) return TaskResult::fail(nt::no_proposal_chosen, Reason::SETUP_KEYS_REJECTED, "no free P3 ID to receive on");
            return {};
        }
        return TaskResult::fail(nt::no_proposal_chosen, Reason::SETUP_NO_PROPOSAL,
                                "no child proposal with AES-GCM-" + std::to_string(want) + " (the remote's key_type)");
    }

    TaskResult build_r(IkeSa& sa, Message& m) override {
        if (sa.esp) {
            m.add(pt::sa, SaPayload{{esp::answer(esp_choice_, sa.rx_id, key_bits(sa.child_key))}});
            m.add(pt::tsi, esp::selectors(sa.ts_remote));
            m.add(pt::tsr, esp::selectors(sa.ts_local));
            return {};
        }
        Proposal p;
        p.num = chosen_num_;
        p.protocol = proto_esp;
        p.spi = be32(sa.rx_id);
        p.transforms = {{tt::encr, encr_aes_gcm_16, key_bits(sa.child_key)}, {tt::esn, 0, 0}};
        m.add(pt::sa, SaPayload{{p}});
        m.add(pt::tsi, selectors(sa.remote->subnets));
        m.add(pt::tsr, selectors(ctx_.local.lan));
        return {};
    }

    TaskResult process_i(IkeSa& sa, const Message& m) override {
        const auto* sap = m.find<SaPayload>(pt::sa);
        if (!sap || sap->proposals.size() != 1 || !m.find<TsPayload>(pt::tsi) || !m.find<TsPayload>(pt::tsr))
            return TaskResult::fail(0, Reason::SETUP_MALFORMED, "IKE_AUTH response without child SA or TS");
        const auto& p = sap->proposals[0];
        std::uint16_t bits = 0;
        for (const auto& t : p.transforms)
            if (t.type == tt::encr && t.id == encr_aes_gcm_16 && (t.key_bits == 128 || t.key_bits == 256)) bits = t.key_bits;
        if (p.protocol != proto_esp || p.spi.size() != 4 || !bits || get32(p.spi.data()) == 0)
            return TaskResult::fail(0, Reason::SETUP_NO_PROPOSAL, "unusable child SA in the response");
        sa.peer_rx_id = get32(p.spi.data());
        sa.child_key = bits == 256 ? config::KeyType::aes256 : config::KeyType::aes128;
        if (sa.remote->wire == config::WireMode::esp) return process_i_esp(sa, m, p);
        return {};
    }

private:
    // ESP remote, initiator: one SA under one SPI (a block of 1), ESN offered with no ESN,
    // our networks as TSi and the remote's subnets as TSr; no lane announcement.
    TaskResult build_i_esp(IkeSa& sa, Message& m) {
        sa.esp = true;
        if (!reserve(sa, 1)) return TaskResult::fail(0, Reason::SETUP_KEYS_REJECTED, "no free SPI to receive on");
        m.add(pt::sa, SaPayload{{esp::offer(sa.rx_id, key_bits(sa.remote->params.key_type), 0)}});
        m.add(pt::tsi, esp::selectors(esp::local_networks(ctx_.local)));
        m.add(pt::tsr, esp::selectors(sa.remote->subnets));
        return {};
    }

    // ESP remote, responder: the first acceptable proposal (ESN preferred), the selectors
    // narrowed to the configuration: TSi to the remote's subnets, TSr to our networks.
    TaskResult process_r_esp(IkeSa& sa, const Message& m, const SaPayload& sap) {
        sa.esp = true;
        const std::uint16_t want = key_bits(sa.remote->params.key_type);
        esp_choice_ = esp::choose(sap, want, 0);
        if (!esp_choice_.num)
            return TaskResult::fail(nt::no_proposal_chosen, Reason::SETUP_NO_PROPOSAL,
                                    "no ESP proposal with AES-GCM-" + std::to_string(want) + " (the remote's key_type)");
        sa.ts_remote = esp::narrow(sa.remote->subnets, *m.find<TsPayload>(pt::tsi));
        sa.ts_local = esp::narrow(esp::local_networks(ctx_.local), *m.find<TsPayload>(pt::tsr));
        if (sa.ts_remote.empty() || sa.ts_local.empty())
            return TaskResult::fail(nt::ts_unacceptable, Reason::SETUP_TS_UNACCEPTABLE,
                                    "traffic selectors cover none of the configured subnets");
        sa.peer_rx_id = esp_choice_.peer_spi;
        sa.child_key = sa.remote->params.key_type;
        sa.child_esn = esp_choice_.esn;
        if (!reserve(sa, 1))
            return TaskResult::fail(nt::no_proposal_chosen, Reason::SETUP_KEYS_REJECTED, "no free SPI to receive on");
        return {};
    }

    // ESP remote, initiator: the ESN the responder chose, its selectors inside ours.
    TaskResult process_i_esp(IkeSa& sa, const Message& m, const Proposal& p) {
        bool esn = false, any = false;
        for (const auto& t : p.transforms)
            if (t.type == tt::esn) {
                any = true;
                esn = t.id == esn_yes;
            }
        if (!any) return TaskResult::fail(0, Reason::SETUP_NO_PROPOSAL, "child SA without an ESN transform");
        if (sa.child_key != sa.remote->params.key_type)
            return TaskResult::fail(0, Reason::SETUP_NO_PROPOSAL, "child SA key size is not the remote's key_type");
        sa.child_esn = esn;
        sa.ts_local = esp::narrow(esp::local_networks(ctx_.local), *m.find<TsPayload>(pt::tsi));
        sa.ts_remote = esp::narrow(sa.remote->subnets, *m.find<TsPayload>(pt::tsr));
        if (sa.ts_local.empty() || sa.ts_remote.empty())
            return TaskResult::fail(0, Reason::SETUP_TS_UNACCEPTABLE, "the responder's selectors are outside ours");
        return {};
    }

    esp::Choice esp_choice_;
    bool reserve(IkeSa& sa, std::uint32_t peer_lanes) {
        if (sa.rx_id) return true;
        auto id = ctx_.sink.reserve_rx_id(sa.remote->id, peer_lanes);
        if (!id || *id == 0) return false;
        sa.rx_id = *id;
        return true;
    }
    std::uint8_t chosen_num_ = 1;
};

// ---- IKE_AUTH: the configuration push ----------------------------------------------

class ConfigPush final : public Task {
public:
    using Task::Task;
    const char* name() const override { return "config-push"; }

    TaskResult build_r(IkeSa& sa, Message& m) override {
        if (sa.esp) return {};   // a standard peer: nothing is pushed
        PushedConfig c;
        // Everything this primary protects: its LAN and what lies behind a LAN gateway. The
        // secondary admits inbound traffic only from these (RFC 4301 §5.2).
        if (ctx_.local.lan) c.primary_subnets.push_back(*ctx_.local.lan);
        for (const auto& p : ctx_.local.subnets) c.primary_subnets.push_back(p);
        c.secondary_subnets = sa.remote->subnets;
        c.params = sa.remote->params;
        c.params.key_type = sa.child_key;
        // The lanes this primary really sends on (the remote's lanes, or its sending workers),
        // not the configured 0 ("one per worker"): the secondary's inbound lanes are fixed from
        // this for the session's life, and every rekey names the same count.
        const std::uint32_t lanes = ctx_.sink.lanes_for(sa.remote->id);
        c.primary_lanes = lanes != 0 ? lanes : ctx_.local.defaults.lanes;
        m.add_notify(nt::p3_config, encode_push(c));
        sa.pushed = std::move(c);
        return {};
    }

    TaskResult process_i(IkeSa& sa, const Message& m) override {
        if (sa.esp) {   // nothing pushed: the configuration's own
            sa.pushed.params = sa.remote->params;
            sa.pushed.secondary_subnets = sa.ts_local;
            sa.pushed.primary_subnets = sa.ts_remote;
            return {};
        }
        const auto* n = m.notify(nt::p3_config);
        if (!n) return TaskResult::fail(0, Reason::SETUP_CONFIG_PUSH, "no configuration pushed by the primary");
        auto c = decode_push(n->data);
        if (!c) return TaskResult::fail(0, Reason::SETUP_CONFIG_PUSH, "malformed configuration push");
        if (c->params.key_type != sa.child_key)
            return TaskResult::fail(0, Reason::SETUP_CONFIG_PUSH, "pushed key type differs from the child SA's");
        sa.pushed = std::move(*c);
        return {};
    }
};

}  // namespace

std::vector<std::unique_ptr<Task>> make_tasks(Exchange ex, const TaskContext& ctx) {
    std::vector<std::unique_ptr<Task>> t;
    if (ex == Exchange::ike_sa_init) {
        t.push_back(std::make_unique<IkeInit>(ctx));
        t.push_back(std::make_unique<Natd>(ctx));
    } else if (ex == Exchange::ike_auth) {
        t.push_back(std::make_unique<IkeAuth>(ctx));
        t.push_back(std::make_unique<ChildCreate>(ctx));
        t.push_back(std::make_unique<ConfigPush>(ctx));
    }
    return t;
}

bool nonce_ok_for(std::uint16_t prf_alg, const Bytes& nonce) { return nonce_ok(prf_alg, nonce); }

}  // namespace p3::setup
