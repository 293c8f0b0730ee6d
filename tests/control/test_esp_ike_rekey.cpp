// ESP remotes: the IKE SA rekey as responder (RFC 7296 §2.18) and CREATE_CHILD_SA refusals,
// driven by a standard initiator built here from the engine's own tasks (so its keys are known).
#include <catch2/catch.hpp>

#include "control/setup/ike_tasks.hpp"
#include "esp_sink.hpp"
#include "setup_harness.hpp"

using namespace p3;
using namespace p3::setup;
using namespace p3::setup::test;
using namespace std::chrono_literals;

namespace {

// A standard initiator built from the engine's own tasks (its keys are known here), against a
// primary whose remote 7 is an ESP remote.
struct ManualInitiator {
    control::ManualClock clock;
    control::SeededRandom rp{21}, ri{22};
    Queue out{clock};
    EspSink sp{0x1000};
    std::unique_ptr<SetupEngine> p;
    LocalConfig local;
    std::list<PeerConfig> peers{1};
    Credentials ci = psk(kTestPsk);
    SetupOptions opts;
    EspSink si{0x3000};
    TaskContext ctx{local, peers, ci, opts, si, ri};
    IkeSa sa;
    const Endpoint kP = ep("192.0.2.1", 500), kS = ep("192.0.2.2", 500);

    ManualInitiator() {
        auto pcfg = primary_config(PairConfig{});
        pcfg.remotes[0].wire = config::WireMode::esp;
        p = std::make_unique<SetupEngine>(pcfg, psk(kTestPsk), SetupOptions{}, clock, rp, out, sp);
        local.role = config::Role::secondary;
        local.endpoint = kS;
        local.id = make_id("sec.test", kS.addr);
        local.lan = *Prefix::parse("10.2.0.0/24");
        peers.front().id = 1;
        peers.front().endpoint = kP;
        peers.front().expected_id = make_id("pri.test", kP.addr);
        peers.front().wire = config::WireMode::esp;
        peers.front().subnets = {*Prefix::parse("10.1.0.0/24")};
        sa.initiator = true;
        sa.spi_i = Spi{0x1111222233334444ULL};
        sa.local = kS;
        sa.peer = kP;
        sa.remote = &peers.front();
    }
    // IKE_SA_INIT and IKE_AUTH; true when the primary installed the session.
    bool setup() {
        Message init;
        init.hdr.spi_i = sa.spi_i;
        init.hdr.exchange = Exchange::ike_sa_init;
        init.hdr.flags = flags::initiator;
        for (auto& t : make_tasks(Exchange::ike_sa_init, ctx))
            if (t->build_i(sa, init).kind != TaskResult::Kind::ok) return false;
        sa.init_request = encode(init);
        p->on_datagram(kS, kP, sa.init_request);
        Message resp;
        if (out.q.empty() || decode(out.q.back().data, resp) != DecodeError::ok) return false;
        sa.spi_r = resp.hdr.spi_r;
        for (auto& t : make_tasks(Exchange::ike_sa_init, ctx))
            if (t->process_i(sa, resp).kind != TaskResult::Kind::ok) return false;
        sa.init_response = out.q.back().data;
        Message auth;
        auth.hdr.spi_i = sa.spi_i;
        auth.hdr.spi_r = sa.spi_r;
        auth.hdr.exchange = Exchange::ike_auth;
        auth.hdr.flags = flags::initiator;
        auth.hdr.msg_id = 1;
        for (auto& t : make_tasks(Exchange::ike_auth, ctx))
            if (t->build_i(sa, auth).kind != TaskResult::Kind::ok) return false;
        p->on_datagram(kS, kP, *encode_sk(auth, sa.sk_ei, ++sa.iv_counter));
        return sp.sessions.size() == 1;
    }
    // A request on an IKE SA (ours: s), its answer opened; nullopt when there is none or it does not open.
    std::optional<Message> ask(IkeSa& s, Exchange ex, std::uint32_t id, Message m) {
        m.hdr.spi_i = s.spi_i;
        m.hdr.spi_r = s.spi_r;
        m.hdr.exchange = ex;
        m.hdr.flags = flags::initiator;
        m.hdr.msg_id = id;
        out.q.clear();
        p->on_datagram(kS, kP, *encode_sk(m, s.sk_ei, ++s.iv_counter));
        if (out.q.empty()) return std::nullopt;
        Message outer, inner;
        if (decode(out.q.back().data, outer) != DecodeError::ok || !outer.hdr.is_response() || outer.hdr.msg_id != id ||
            open_sk(out.q.back().data, outer, s.sk_er, inner) != DecodeError::ok)
            return std::nullopt;
        inner.hdr = outer.hdr;
        return inner;
    }
};

}  // namespace

TEST_CASE("esp: IKE SA rekey as responder: new SPIs and keys (§2.18), the child moves, the old SA goes with its DELETE",
          "[esp][rekey]") {
    LogCapture logs;
    ManualInitiator m;
    REQUIRE(m.setup());
    // CREATE_CHILD_SA { SA(IKE, new SPIi), Ni, KEi }
    auto kx = KeyExchange::create(group_x25519);
    REQUIRE(kx);
    Message req;
    Proposal prop;
    prop.protocol = proto_ike;
    put64(prop.spi, 0x5555666677778888ULL);
    prop.transforms = {{tt::encr, encr_aes_gcm_16, 256}, {tt::encr, encr_aes_gcm_16, 128}, {tt::prf, prf_hmac_sha2_256, 0},
                       {tt::dh, group_x25519, 0}};
    req.add(pt::sa, SaPayload{{prop}});
    const Bytes ni(32, 0x61);
    req.add(pt::nonce, NoncePayload{ni});
    req.add(pt::ke, KePayload{group_x25519, kx->public_value()});
    auto resp = m.ask(m.sa, Exchange::create_child_sa, 2, req);
    REQUIRE(resp);
    const auto* sap = resp->find<SaPayload>(pt::sa);
    const auto* nr = resp->find<NoncePayload>(pt::nonce);
    const auto* ke = resp->find<KePayload>(pt::ke);
    REQUIRE((sap && nr && ke));
    REQUIRE(sap->proposals.size() == 1);
    REQUIRE(sap->proposals[0].spi.size() == 8);
    CHECK(m.p->counters().ike_rekeys == 1);
    // SKEYSEED = prf(SK_d (old), g^ir (new) | Ni | Nr), then the §2.14 split over the new SPIs.
    IkeSa n;
    n.initiator = true;
    n.spi_i = Spi{0x5555666677778888ULL};
    n.spi_r = Spi{get64(sap->proposals[0].spi.data())};
    n.prf_alg = prf_hmac_sha2_256;
    n.encr_bits = 256;
    n.nonce_i = ni;
    n.nonce_r = nr->data;
    auto shared = kx->shared_secret(ke->data);
    REQUIRE(shared);
    Bytes seed(shared->span().begin(), shared->span().end());
    append(seed, ni);
    append(seed, nr->data);
    REQUIRE(derive_ike_keys_from(n, prf(prf_hmac_sha2_256, m.sa.sk_d.span(), seed)));
    // The old IKE SA deleted by us (the rekey's initiator): answered, the session stays up.
    Message del;
    del.add(pt::del, RawPayload{Bytes{proto_ike, 0, 0, 0}});
    REQUIRE(m.ask(m.sa, Exchange::informational, 3, del));
    CHECK(m.sp.downs.empty());
    CHECK(m.p->esp_up(7));
    CHECK(m.p->exchanges() == 1);
    // The new IKE SA answers under the new keys, from message id 0: liveness, then a child rekey.
    REQUIRE(m.ask(n, Exchange::informational, 0, Message{}));
    Message ck;
    NotifyPayload rn{proto_esp, {}, nt::rekey_sa, {}};
    put32(rn.spi, m.sp.tx_spi);
    ck.add(pt::notify, std::move(rn));
    Proposal ep_;
    ep_.protocol = proto_esp;
    put32(ep_.spi, 0x3100);
    ep_.transforms = {{tt::encr, encr_aes_gcm_16, 128}, {tt::esn, 0, 0}};
    ck.add(pt::sa, SaPayload{{ep_}});
    ck.add(pt::nonce, NoncePayload{Bytes(32, 0x62)});
    TrafficSelector ti, tr;
    ti.start = *IpAddr::parse("10.2.0.0"), ti.end = *IpAddr::parse("10.2.0.255");
    tr.start = *IpAddr::parse("10.1.0.0"), tr.end = *IpAddr::parse("10.1.0.255");
    ck.add(pt::tsi, TsPayload{{ti}});
    ck.add(pt::tsr, TsPayload{{tr}});
    auto cr = m.ask(n, Exchange::create_child_sa, 1, ck);
    REQUIRE(cr);
    CHECK_FALSE(cr->error_notify());
    // Outbound waits for the peer's DELETE of the old SA, at most esp_tx_switch_max.
    CHECK(m.sp.tx_spi != 0x3100);
    m.clock.advance(limits::esp_tx_switch_max);
    m.p->on_timer();
    CHECK(m.sp.tx_spi == 0x3100);
    CHECK(m.p->counters().child_rekeys == 1);
    // The old SA's keys open nothing any more.
    CHECK_FALSE(m.ask(m.sa, Exchange::informational, 4, Message{}));
}

TEST_CASE("esp: CREATE_CHILD_SA refusals: unknown REKEY_SA SPI, no REKEY_SA, a KE group not ours", "[esp][rekey]") {
    LogCapture logs;
    ManualInitiator m;
    REQUIRE(m.setup());
    auto child = [&](std::uint32_t rekey_spi, std::uint16_t ke_group) {
        Message ck;
        if (rekey_spi) {
            NotifyPayload rn{proto_esp, {}, nt::rekey_sa, {}};
            put32(rn.spi, rekey_spi);
            ck.add(pt::notify, std::move(rn));
        }
        Proposal p;
        p.protocol = proto_esp;
        put32(p.spi, 0x3100);
        p.transforms = {{tt::encr, encr_aes_gcm_16, 128}, {tt::esn, 0, 0}, {tt::dh, group_ecp256, 0}, {tt::dh, group_x25519, 0}};
        ck.add(pt::sa, SaPayload{{p}});
        ck.add(pt::nonce, NoncePayload{Bytes(32, 0x62)});
        if (ke_group) ck.add(pt::ke, KePayload{ke_group, Bytes(KeyExchange::public_size(ke_group) ? KeyExchange::public_size(ke_group) : 8, 1)});
        TrafficSelector ti, tr;
        ti.start = *IpAddr::parse("10.2.0.0"), ti.end = *IpAddr::parse("10.2.0.255");
        tr.start = *IpAddr::parse("10.1.0.0"), tr.end = *IpAddr::parse("10.1.0.255");
        ck.add(pt::tsi, TsPayload{{ti}});
        ck.add(pt::tsr, TsPayload{{tr}});
        return ck;
    };
    std::uint32_t id = 2;
    auto r = m.ask(m.sa, Exchange::create_child_sa, id++, child(0xdead, 0));
    REQUIRE(r);
    REQUIRE(r->error_notify());
    CHECK(r->error_notify()->type == nt::child_sa_not_found);
    r = m.ask(m.sa, Exchange::create_child_sa, id++, child(0, 0));
    REQUIRE(r);
    CHECK(r->error_notify()->type == nt::no_additional_sas);
    r = m.ask(m.sa, Exchange::create_child_sa, id++, child(m.sp.tx_spi, 21));   // ECP-521: not ours
    REQUIRE(r);
    REQUIRE(r->error_notify());
    CHECK(r->error_notify()->type == nt::invalid_ke_payload);
    CHECK(r->error_notify()->data == Bytes{0, std::uint8_t(group_x25519)});
    CHECK(m.p->counters().esp_refused == 3);
    CHECK(m.p->counters().child_rekeys == 0);
    CHECK(m.sp.rx.size() == 1);   // nothing installed
    CHECK(logs.count(Reason::SETUP_ESP_REFUSED) == 3);
}

namespace {
// An IKE SA rekey through `on` (message id `id`): the new SA with its keys, or nullptr (refused).
std::unique_ptr<IkeSa> rekey_ike(ManualInitiator& m, IkeSa& on, std::uint32_t id, std::uint64_t spi,
                                 std::uint16_t* refused = nullptr) {
    auto kx = KeyExchange::create(group_x25519);
    Message req;
    Proposal prop;
    prop.protocol = proto_ike;
    put64(prop.spi, spi);
    prop.transforms = {{tt::encr, encr_aes_gcm_16, 256}, {tt::prf, prf_hmac_sha2_256, 0}, {tt::dh, group_x25519, 0}};
    req.add(pt::sa, SaPayload{{prop}});
    const Bytes ni(32, std::uint8_t(spi));
    req.add(pt::nonce, NoncePayload{ni});
    req.add(pt::ke, KePayload{group_x25519, kx->public_value()});
    auto resp = m.ask(on, Exchange::create_child_sa, id, req);
    if (!resp) return nullptr;
    if (const auto* e = resp->error_notify()) {
        if (refused) *refused = e->type;
        return nullptr;
    }
    const auto* sap = resp->find<SaPayload>(pt::sa);
    const auto* nr = resp->find<NoncePayload>(pt::nonce);
    const auto* ke = resp->find<KePayload>(pt::ke);
    if (!sap || !nr || !ke || sap->proposals.empty() || sap->proposals[0].spi.size() != 8) return nullptr;
    auto n = std::make_unique<IkeSa>();
    n->initiator = true;
    n->spi_i = Spi{spi};
    n->spi_r = Spi{get64(sap->proposals[0].spi.data())};
    n->prf_alg = prf_hmac_sha2_256;
    n->encr_bits = 256;
    n->nonce_i = ni;
    n->nonce_r = nr->data;
    auto shared = kx->shared_secret(ke->data);
    if (!shared) return nullptr;
    Bytes seed(shared->span().begin(), shared->span().end());
    append(seed, ni);
    append(seed, nr->data);
    if (!derive_ike_keys_from(*n, prf(prf_hmac_sha2_256, on.sk_d.span(), seed))) return nullptr;
    return n;
}
}  // namespace

TEST_CASE("esp: IKE SA rekeys without DELETEs keep at most two old IKE SAs; they go after 30 s", "[esp][rekey]") {
    LogCapture logs;
    ManualInitiator m;
    REQUIRE(m.setup());
    auto n1 = rekey_ike(m, m.sa, 2, 0xa1);
    REQUIRE(n1);
    auto n2 = rekey_ike(m, *n1, 0, 0xa2);
    REQUIRE(n2);
    std::uint16_t refused = 0;
    CHECK_FALSE(rekey_ike(m, *n2, 0, 0xa3, &refused));
    CHECK(refused == nt::temporary_failure);
    CHECK(m.p->exchanges() == 3);
    // The old ones expire; the newest carries on.
    m.clock.advance(31s);
    m.p->on_timer();
    CHECK(m.p->exchanges() == 1);
    CHECK(m.sp.downs.empty());
    CHECK(m.ask(*n2, Exchange::informational, 1, Message{}));   // id 0 was the refused rekey
    CHECK(rekey_ike(m, *n2, 2, 0xa4));
}

TEST_CASE("esp: a peer that refuses a KE in our child rekey (NO_PROPOSAL_CHOSEN) gets the rekey again without one",
          "[esp][rekey]") {
    // strongSwan with esp_proposals = aes128gcm16 names no group, so it answers a rekey that
    // carries a KE with NO_PROPOSAL_CHOSEN: our rekeys must go on without PFS, not fail forever.
    LogCapture logs;
    ManualInitiator m;
    REQUIRE(m.setup());
    // p3d (the IKE responder) starts a child rekey; the peer reads it under SK_er.
    auto request = [&](Message& inner) {
        if (m.out.q.empty()) return false;
        Message outer;
        const Bytes d = m.out.q.back().data;
        m.out.q.clear();
        if (decode(d, outer) != DecodeError::ok || outer.hdr.is_response() || open_sk(d, outer, m.sa.sk_er, inner) != DecodeError::ok)
            return false;
        inner.hdr = outer.hdr;
        return inner.hdr.exchange == Exchange::create_child_sa;
    };
    auto answer = [&](const Message& req, Message resp) {
        resp.hdr.spi_i = m.sa.spi_i;
        resp.hdr.spi_r = m.sa.spi_r;
        resp.hdr.exchange = Exchange::create_child_sa;
        resp.hdr.flags = flags::initiator | flags::response;
        resp.hdr.msg_id = req.hdr.msg_id;
        m.p->on_datagram(m.kS, m.kP, *encode_sk(resp, m.sa.sk_ei, ++m.sa.iv_counter));
    };
    m.out.q.clear();
    REQUIRE(m.p->esp_rekey(7));
    Message r1;
    REQUIRE(request(r1));
    CHECK(r1.find<KePayload>(pt::ke) != nullptr);   // rekey_dh is on: PFS offered first
    Message no;
    no.add_notify(nt::no_proposal_chosen, {});
    answer(r1, std::move(no));
    // At once (the next timer) the same rekey without a KE and without a group in its proposal.
    m.p->on_timer();
    Message r2;
    REQUIRE(request(r2));
    CHECK(r2.find<KePayload>(pt::ke) == nullptr);
    CHECK(r2.hdr.msg_id == r1.hdr.msg_id + 1);
    const auto* sap = r2.find<SaPayload>(pt::sa);
    REQUIRE(sap);
    for (const auto& t : sap->proposals.at(0).transforms) CHECK(t.type != tt::dh);
    CHECK(logs.count(Reason::SETUP_ESP_REFUSED) == 1);
    CHECK(m.sp.downs.empty());
}
