// The engine's life and dispatch (datagrams in, timers, retransmission), the initiator's side
// of the exchange, and the hand-over or failure of sessions. The responder's side is in
// setup_responder.cpp, the cookie and half-open policies in setup_policy.cpp, the
// per-exchange logic in the tasks (ike_tasks.cpp).
#include "control/setup/setup_engine.hpp"

#include "common/log.hpp"
#include "control/setup/ike_tasks.hpp"

namespace p3::setup {

std::string Endpoint::str() const {
    std::string s;
    s.reserve(48);
    if (addr.is_v6()) s += '[';
    s += addr.str();
    if (addr.is_v6()) s += ']';
    s += ':';
    s += std::to_string(port);
    return s;
}

namespace {

std::optional<Prefix> lan_prefix(const config::Config& cfg) {
    Prefix p = cfg.dataplane.lan.address;
    if (p.addr.family == 0) return std::nullopt;
    const std::size_t alen = p.addr.is_v6() ? 16 : 4;
    for (std::size_t i = 0; i < alen; ++i) {
        const int bits_in = std::max(0, std::min(8, int(p.len) - int(i * 8)));
        p.addr.bytes[i] &= std::uint8_t(0xff00 >> bits_in);
    }
    return p;
}

PeerConfig peer_config(const config::Remote& r) {
    PeerConfig p;
    p.id = r.id;
    p.endpoint = Endpoint{r.address, r.port};
    p.subnets = r.subnets;
    p.params = r.params;
    p.expected_id = make_id(r.identity, r.address);
    p.name = r.identity.empty() ? r.address.str() : r.identity;
    p.wire = r.wire;
    return p;
}

const char* role_name(config::Role r) { return r == config::Role::primary ? "primary" : "secondary"; }

}  // namespace

SetupEngine::SetupEngine(const config::Config& cfg, Credentials creds, SetupOptions opts, const control::Clock& clock,
                         control::Random& random, Transport& transport, SessionSink& sink)
    : creds_(std::move(creds)),
      opts_(std::move(opts)),
      clock_(clock),
      random_(random),
      transport_(transport),
      sink_(sink),
      ctx_{local_, peers_, creds_, opts_, sink_, random_} {
    local_.role = cfg.role;
    local_.endpoint = Endpoint{cfg.local.address, cfg.local.port};
    local_.id = make_id(cfg.local.identity, cfg.local.address);
    local_.lan = lan_prefix(cfg);
    local_.subnets = cfg.local.subnets;
    local_.defaults = cfg.local.defaults;
    if (cfg.local.nat_port != cfg.local.port) local_.nat_port = cfg.local.nat_port;
    for (const auto& r : cfg.remotes)
        if (!r.static_keys) peers_.push_back(peer_config(r));  // no setup exchange on static keys
    rotate_cookie_secret();
}

SetupEngine::~SetupEngine() {
    for (auto& [spi, sa] : sas_)
        if (sa->rx_id && sa->state != IkeSa::State::established) sink_.release_rx_id(sa->rx_id);
}

Spi SetupEngine::new_spi() {
    for (;;) {
        std::uint8_t b[8];
        if (!random_.fill(b)) return Spi{};
        Spi s{get64(b)};
        if (s && !sas_.count(s.v)) return s;
    }
}

void SetupEngine::rotate_cookie_secret() {
    cookie_secret_prev_ = std::move(cookie_secret_);
    cookie_secret_ = SecretBytes(32);
    random_.fill(cookie_secret_.span());
    ++cookie_version_;
    cookie_rotated_ = clock_.now();
}

Bytes SetupEngine::cookie_for(const Endpoint& peer, Spi spi_i, ByteView nonce_i, std::uint8_t version) const {
    // Cookie = <VersionIDofSecret> | Hash(Ni | IPi | SPIi | <secret>)  (§2.6)
    const SecretBytes& secret = version == cookie_version_ ? cookie_secret_ : cookie_secret_prev_;
    Bytes ip(peer.addr.bytes.begin(), peer.addr.bytes.begin() + (peer.addr.is_v6() ? 16 : 4));
    Bytes spi;
    put64(spi, spi_i.v);
    Bytes c{version};
    append(c, sha256(nonce_i, ip, spi, secret.span()));
    return c;
}

// ---- peers at run time ---------------------------------------------------------------

void SetupEngine::abort_exchanges(const PeerConfig& peer, bool keep_esp) {
    std::vector<std::uint64_t> gone;
    for (const auto& [k, sa] : sas_) {
        // An ESP remote's IKE SA is its session: a change applied in place (subnets) keeps it.
        if (keep_esp && sa->esp && sa->state == IkeSa::State::established) continue;
        if (sa->remote == &peer || sa->claimed == &peer) gone.push_back(k);
    }
    // Quietly (no failure, no log line: the administrator's command is audited, and the
    // exchange did not fail). erase() releases a reserved receive ID and the half-open slot.
    for (auto k : gone) erase(Spi{k});
}

void SetupEngine::add_peer(const config::Remote& r) {
    if (r.static_keys) {
        remove_peer(r.id);
        return;
    }
    PeerConfig next = peer_config(r);
    for (auto& p : peers_) {
        if (p.id != r.id) continue;
        // A change that sets the session up again ended it first (its IKE DELETE sent).
        abort_exchanges(p, /*keep_esp=*/p.wire == next.wire);
        next.enabled = p.enabled;
        p = std::move(next);  // in place: the node (and its address) stays
        return;
    }
    peers_.push_back(std::move(next));
}

void SetupEngine::remove_peer(std::uint32_t id) {
    for (auto it = peers_.begin(); it != peers_.end(); ++it) {
        if (it->id != id) continue;
        abort_exchanges(*it);
        peers_.erase(it);
        return;
    }
}

void SetupEngine::set_enabled(std::uint32_t id, bool on) {
    for (auto& p : peers_) {
        if (p.id != id) continue;
        if (p.enabled && !on) abort_exchanges(p);  // nothing of it may come up now
        p.enabled = on;
        return;
    }
}

// ---- entry points --------------------------------------------------------------------

bool SetupEngine::connect(std::uint32_t remote_id) {
    if (local_.role != config::Role::secondary) {
        P3_LOG_WARN(SETUP_ROLE, "setup: a primary never initiates (remote %u)", remote_id);
        return false;
    }
    const PeerConfig* peer = ctx_.find_peer(remote_id);
    if (!peer || !peer->enabled) return false;
    for (const auto& [k, sa] : sas_)
        if (sa->remote == peer) return false;
    auto sa = std::make_unique<IkeSa>();
    sa->initiator = true;
    sa->spi_i = new_spi();
    sa->local = local_.endpoint;
    sa->peer = peer->endpoint;
    sa->remote = peer;
    sa->peer_name = peer->name;
    if (!sa->spi_i) return false;
    IkeSa& ref = *sa;
    sas_.emplace(sa->spi_i.v, std::move(sa));
    return send_init_request(ref);
}

void SetupEngine::on_datagram(const Endpoint& from, const Endpoint& to, ByteView data, Framing framing) {
    ++counters_.received;
    rx_framing_ = framing;
    Message msg;
    const DecodeError e = decode(data, msg);
    if (e != DecodeError::ok) {
        ++counters_.malformed;
        if (local_.role == config::Role::primary) refused();
        P3_PEER_LOG(debug, Reason::SETUP_MALFORMED, "setup: dropped %zu bytes from %s: %.*s", data.size(),
                    from.str().c_str(), int(to_string(e).size()), to_string(e).data());
        return;
    }
    // An ESP remote's IKE SA stays after setup, and either side sends requests on it.
    if (msg.hdr.exchange != Exchange::ike_sa_init && msg.hdr.exchange != Exchange::ike_auth)
        if (IkeSa* sa = esp_sa_for(msg)) return esp_message(*sa, from, to, data, msg);
    if (msg.hdr.is_response()) handle_response(from, data, msg);
    else handle_request(from, to, data, msg);
}

std::optional<control::TimePoint> SetupEngine::next_deadline() const {
    std::optional<control::TimePoint> t;
    for (const auto& [k, sa] : sas_)
        if (!t || sa->deadline < *t) t = sa->deadline;
    return t;
}

void SetupEngine::on_timer() {
    const auto now = clock_.now();
    if (now - cookie_rotated_ >= limits::cookie_secret_lifetime) rotate_cookie_secret();
    std::vector<std::uint64_t> due;
    for (const auto& [k, sa] : sas_)
        if (sa->deadline <= now) due.push_back(k);
    for (auto k : due) {
        auto it = sas_.find(k);
        if (it == sas_.end()) continue;
        IkeSa& sa = *it->second;
        if (sa.esp && sa.state == IkeSa::State::established) {
            esp_timer(sa, now);
            continue;
        }
        if (!sa.initiator) {  // half-open expired, or a finished exchange's cache is no longer needed
            if (sa.state == IkeSa::State::half_open)
                P3_PEER_LOG(debug, Reason::SETUP_TIMEOUT, "setup: half-open exchange from %s expired", sa.peer.str().c_str());
            erase(Spi{k});
            continue;
        }
        if (sa.tries >= opts_.retransmit_tries) {
            const std::string tries = std::to_string(sa.tries) + " tries";
            if (sa.init_error == nt::no_proposal_chosen)
                fail(sa, Reason::SETUP_NO_PROPOSAL, "primary answered NO_PROPOSAL_CHOSEN (unauthenticated), nothing better after " + tries);
            else if (sa.init_error)
                fail(sa, Reason::SETUP_PEER_REJECTED, "primary answered error notify " + std::to_string(sa.init_error) +
                                                          " (unauthenticated), nothing better after " + tries);
            else
                fail(sa, Reason::SETUP_TIMEOUT, "no answer from " + sa.peer.str() + " after " + tries);
            continue;
        }
        ++counters_.retransmits;
        ++sa.tries;
        sa.deadline = now + opts_.retransmit_base * (1u << std::min(sa.tries - 1, 20u));
        ++counters_.sent;
        if (sa.state == IkeSa::State::auth_sent) open_nat_mapping(sa);
        transport_.send(sa.local, sa.peer, sa.last_sent, sa.framing);
    }
}

// A secondary behind a NAT sends P3 from its nat_port to the primary's, a mapping the setup
// exchange (on local.port) does not make. The primary sends there as soon as IKE_AUTH is done;
// if its first packet reached the NAT before ours, the NAT would hold that flow and map our
// nat_port to another port, which the primary does not follow (docs/setup-exchange.md §NAT
// detection). So the mapping is opened first: a NAT keepalive (RFC 3948 §2.3, one 0xff byte,
// which the primary's dataplane consumes) leaves just before the IKE_AUTH request, on the same
// path. Heartbeats keep the mapping from then on.
// RFC 7296 §2.23: with a NAT on the path a standard initiator moves to port 4500 for IKE_AUTH
// and everything after, behind the non-ESP marker, and ESP travels in UDP on that port. For an
// ESP remote we do the same (a standard responder expects it; strongSwan with kernel-libipsec
// always reports a NAT). A P3 secondary stays on its primary's setup port, which the primary
// serves on its own (docs/setup-exchange.md).
void SetupEngine::float_to_nat_port(IkeSa& sa) {
    if (!sa.remote || sa.remote->wire != config::WireMode::esp || !local_.nat_port) return;
    if (!(sa.local_behind_nat || sa.peer_behind_nat) || sa.framing == Framing::non_esp_marker) return;
    sa.local.port = local_.nat_port;
    sa.peer.port = limits::ike_nat_t_port;
    sa.framing = Framing::non_esp_marker;
}

void SetupEngine::open_nat_mapping(const IkeSa& sa) {
    if (local_.role != config::Role::secondary || !sa.local_behind_nat || !local_.nat_port) return;
    static constexpr std::uint8_t kKeepalive[] = {0xff};
    transport_.send(Endpoint{sa.local.addr, local_.nat_port}, Endpoint{sa.peer.addr, local_.nat_port},
                    ByteView(kKeepalive, sizeof kKeepalive), Framing::plain);
}

// ---- shared by both roles -----------------------------------------------------------

// RFC 7296 §2.5: a payload we do not understand is skipped unless its critical bit is set;
// then the message is refused with UNSUPPORTED_CRITICAL_PAYLOAD naming the type. Returns 0
// when the message may be processed, else the offending type.
std::uint8_t SetupEngine::critical_check(const Message& m) const {
    for (const auto& p : m.payloads)
        if (p.critical && std::holds_alternative<RawPayload>(p.body) && (p.type < pt::sa || p.type > pt::sk))
            return p.type;
    return 0;
}

std::optional<Bytes> SetupEngine::seal(IkeSa& sa, Message& m) { return encode_sk(m, sa.out_key(), ++sa.iv_counter); }

// ---- requests and responses (initiator) ----------------------------------------------

void SetupEngine::send_request(IkeSa& sa, Bytes bytes) {
    sa.last_sent = std::move(bytes);
    sa.tries = 1;
    sa.deadline = clock_.now() + opts_.retransmit_base;
    ++counters_.sent;
    transport_.send(sa.local, sa.peer, sa.last_sent, sa.framing);
}

// The initiator's tasks of m's exchange fill in the request; a task that cannot fails the SA.
bool SetupEngine::build_request(IkeSa& sa, Message& m) {
    for (auto& t : make_tasks(m.hdr.exchange, ctx_)) {
        TaskResult r = t->build_i(sa, m);
        if (r.kind != TaskResult::Kind::ok) {
            fail(sa, r.reason, r.why);
            return false;
        }
    }
    return true;
}

bool SetupEngine::send_init_request(IkeSa& sa) {
    Message m;
    m.hdr.spi_i = sa.spi_i;
    m.hdr.exchange = Exchange::ike_sa_init;
    m.hdr.flags = flags::initiator;
    m.hdr.msg_id = 0;
    sa.msg_id = 0;
    sa.state = IkeSa::State::init_sent;
    if (!build_request(sa, m)) return false;
    sa.init_request = encode(m);
    send_request(sa, sa.init_request);
    return true;
}

bool SetupEngine::send_auth_request(IkeSa& sa) {
    Message m;
    m.hdr.spi_i = sa.spi_i;
    m.hdr.spi_r = sa.spi_r;
    m.hdr.exchange = Exchange::ike_auth;
    m.hdr.flags = flags::initiator;
    m.hdr.msg_id = sa.msg_id = 1;
    sa.state = IkeSa::State::auth_sent;
    if (!build_request(sa, m)) return false;
    auto sealed = seal(sa, m);
    if (!sealed) {
        fail(sa, Reason::INTERNAL, "cannot encrypt the IKE_AUTH request");
        return false;
    }
    send_request(sa, std::move(*sealed));
    return true;
}

void SetupEngine::handle_response(const Endpoint& from, ByteView data, Message& msg) {
    if (local_.role != config::Role::secondary) {
        ++counters_.dropped_role;  // a primary sends no requests, so expects no response
        return;
    }
    auto it = sas_.find(msg.hdr.spi_i.v);
    if (it == sas_.end() || !it->second->initiator || msg.hdr.from_initiator()) {
        ++counters_.dropped_no_sa;
        return;
    }
    IkeSa& sa = *it->second;
    // Only the answer to the outstanding request counts; late duplicates are dropped.
    if (msg.hdr.msg_id != sa.msg_id) {
        ++counters_.malformed;
        return;
    }
    (void)from;  // the answer may come from another address behind a NAT; SPIs and keys decide
    if (sa.state == IkeSa::State::init_sent && msg.hdr.exchange == Exchange::ike_sa_init) init_response(sa, data, msg);
    else if (sa.state == IkeSa::State::auth_sent && msg.hdr.exchange == Exchange::ike_auth) auth_response(sa, data, msg);
    else ++counters_.malformed;
}

void SetupEngine::init_response(IkeSa& sa, ByteView data, const Message& msg) {
    if (critical_check(msg) != 0) {
        ++counters_.critical_unsupported;
        fail(sa, Reason::SETUP_CRITICAL_PAYLOAD, "unsupported critical payload in IKE_SA_INIT response");
        return;
    }
    // An error notify other than INVALID_KE_PAYLOAD (and COOKIE, a status) is not
    // authenticated: anyone who saw our request could have sent it. Kept in mind and ignored
    // until the exchange times out, so a real answer can still win (RFC 7296 §2.21.1).
    if (const auto* e = msg.error_notify(); e && e->type != nt::invalid_ke_payload) {
        ++counters_.unprotected_errors;
        sa.init_error = e->type;
        P3_PEER_LOG(info, Reason::SETUP_UNPROTECTED_ERROR,
                    "setup with %s: IKE_SA_INIT answered with error notify %u (unauthenticated): ignored until the exchange times out",
                    sa.peer_name.c_str(), unsigned(e->type));
        return;
    }
    // An error or cookie answer has no responder SPI; a real answer must have one.
    const bool bare = msg.hdr.spi_r.v == 0;
    if (!bare) sa.spi_r = msg.hdr.spi_r;
    for (auto& t : make_tasks(Exchange::ike_sa_init, ctx_)) {
        TaskResult r = t->process_i(sa, msg);
        if (r.kind == TaskResult::Kind::retry) {
            if (!r.why.empty())
                P3_PEER_LOG(info, Reason::SETUP_INVALID_KE, "setup with %s: %s", sa.peer_name.c_str(), r.why.c_str());
            sa.spi_r = Spi{};
            send_init_request(sa);
            return;
        }
        if (r.kind == TaskResult::Kind::fail) {
            // An unauthenticated error answer could be forged: RFC 7296 §2.21.1 lets the
            // initiator wait for a better answer; we fail only on a well-formed one.
            fail(sa, r.reason, r.why);
            return;
        }
    }
    if (bare) {
        fail(sa, Reason::SETUP_MALFORMED, "IKE_SA_INIT response without a responder SPI");
        return;
    }
    sa.init_response.assign(data.begin(), data.end());
    float_to_nat_port(sa);
    open_nat_mapping(sa);   // NAT detection ran above, in the IKE_SA_INIT tasks
    send_auth_request(sa);
}

void SetupEngine::auth_response(IkeSa& sa, ByteView data, const Message& outer) {
    Message msg;
    const DecodeError e = open_sk(data, outer, sa.in_key(), msg);
    if (e != DecodeError::ok) {
        ++counters_.malformed;
        return;  // keep retransmitting: the real answer may still come
    }
    if (critical_check(msg) != 0) {
        ++counters_.critical_unsupported;
        fail(sa, Reason::SETUP_CRITICAL_PAYLOAD, "unsupported critical payload in IKE_AUTH response");
        return;
    }
    for (auto& t : make_tasks(Exchange::ike_auth, ctx_)) {
        TaskResult r = t->process_i(sa, msg);
        if (r.kind != TaskResult::Kind::ok) {
            fail(sa, r.reason, r.why);
            return;
        }
    }
    // Nothing more to do with it (on failure it is gone), unless it is an ESP remote's: its
    // IKE SA carries rekeys, liveness and DELETE from now on.
    if (establish(sa) && !sa.esp) erase(sa.spi_i);
}

// ---- outcomes ----------------------------------------------------------------------

bool SetupEngine::establish(IkeSa& sa) {
    EstablishedSession s;
    s.remote_id = sa.remote->id;
    s.peer_identity = sa.peer_name;
    s.local_role = local_.role;
    s.local = sa.local;
    s.peer = sa.peer;
    s.local_behind_nat = sa.local_behind_nat;
    s.peer_behind_nat = sa.peer_behind_nat;
    s.key_type = sa.child_key;
    s.rx_p3_id = sa.rx_id;
    s.tx_p3_id = sa.peer_rx_id;
    s.config = sa.pushed;
    s.ike_spi_i = sa.spi_i;
    s.ike_spi_r = sa.spi_r;
    s.wire = sa.esp ? config::WireMode::esp : config::WireMode::p3;
    s.esn = sa.child_esn;
    s.framing = sa.framing;
    if (sa.esp) {
        s.config.params = sa.remote->params;
        s.config.primary_subnets = local_.role == config::Role::primary ? sa.ts_local : sa.ts_remote;
        s.config.secondary_subnets = local_.role == config::Role::primary ? sa.ts_remote : sa.ts_local;
    }
    if (!derive_session_keys(sa, s)) {
        fail(sa, Reason::INTERNAL, "session key derivation failed");
        return false;
    }
    const bool nat = s.nat();
    const std::uint32_t rx = s.rx_p3_id, tx = s.tx_p3_id;
    if (!sink_.install(std::move(s))) {
        fail(sa, Reason::SETUP_KEYS_REJECTED, "dataplane refused the session keys");
        return false;
    }
    close_half(sa);
    sa.state = IkeSa::State::established;
    sa.rx_id = 0;  // owned by the session now
    ++counters_.established;
    if (nat)
        P3_LOG_NOTICE(SETUP_NAT, "setup with remote %u (%s): NAT detected (%s behind it)", sa.remote->id,
                      sa.peer_name.c_str(), sa.local_behind_nat ? (sa.peer_behind_nat ? "both" : "we are") : "peer is");
    P3_LOG_NOTICE(SETUP_UP, "setup with remote %u (%s, %s) up as %s: AES-%u, %s rx 0x%x tx 0x%x%s, IKE SPIs %016llx/%016llx",
                  sa.remote->id, sa.peer_name.c_str(), sa.peer.str().c_str(), role_name(local_.role),
                  sa.child_key == config::KeyType::aes256 ? 256u : 128u, sa.esp ? "ESP SPI" : "P3 ID", rx, tx,
                  sa.esp ? (sa.child_esn ? ", ESN" : ", no ESN") : "",
                  static_cast<unsigned long long>(sa.spi_i.v), static_cast<unsigned long long>(sa.spi_r.v));
    if (sa.esp) {   // the IKE SA stays with the session
        sa.child_rx = rx;
        sa.child_tx = tx;
        esp_started(sa);
        return true;
    }
    // Keep a responder's SA only to answer a retransmitted IKE_AUTH with the cached response.
    sa.deadline = clock_.now() + opts_.half_open_timeout;
    return true;
}

void SetupEngine::fail(IkeSa& sa, Reason reason, const std::string& why) {
    ++counters_.failed;
    if (!sa.initiator) refused();
    // rid stays 0 until the peer proved the remote's identity: an unproven claim is logged
    // with the remote it names, and changes nothing of that remote. A responder's failure is
    // the peer's doing (any peer that got through IKE_SA_INIT), so its line is rate-limited.
    const std::uint32_t rid = sa.remote ? sa.remote->id : 0;
    if (reason == Reason::SETUP_REMOTE_SHUT)  // proven, but shut: a warning, and nothing of it changes
        log::write_peer(log::Level::warning, reason, "setup with remote %u (%s, %s) refused: %s", rid,
                        sa.peer_name.c_str(), sa.peer.str().c_str(), why.c_str());
    else if (!rid && sa.claimed)
        P3_PEER_LOG(error, reason, "setup with %s (%s, claiming remote %u, not authenticated) failed: %s",
                    sa.peer_name.c_str(), sa.peer.str().c_str(), sa.claimed->id, why.c_str());
    else
        P3_PEER_LOG(error, reason, "setup with %s%s (%s) failed: %s", rid ? "remote " : "",
                    rid ? std::to_string(rid).c_str() : "", sa.peer_name.c_str(), why.c_str());
    if (sa.rx_id) {
        sink_.release_rx_id(sa.rx_id);
        sa.rx_id = 0;
    }
    if (reason != Reason::SETUP_REMOTE_SHUT) sink_.setup_failed(rid, reason);
    if (sa.initiator) {
        erase(sa.spi_i);
        return;
    }
    // Its half-open slot is free at once; its place in its source's budget stays until the
    // exchange is erased, so a source that fails on purpose cannot fill the table with
    // failed exchanges kept for retransmissions (RFC 8019 §4.2). A responder fails only
    // while half-open.
    if (sa.state == IkeSa::State::half_open) --half_open_;
    sa.state = IkeSa::State::failed;
    sa.deadline = clock_.now() + opts_.half_open_timeout;  // cached error response, then gone
}

void SetupEngine::erase(Spi our) {
    auto it = sas_.find(our.v);
    if (it == sas_.end()) return;
    IkeSa& sa = *it->second;
    if (!sa.initiator) {
        if (sa.state == IkeSa::State::failed) release_source(sa);
        close_half(sa);
        init_index_.erase(std::make_tuple(sa.spi_i.v, sa.init_peer.addr, sa.init_peer.port));
    }
    if (sa.rx_id) sink_.release_rx_id(sa.rx_id);
    sas_.erase(it);
}

}  // namespace p3::setup
