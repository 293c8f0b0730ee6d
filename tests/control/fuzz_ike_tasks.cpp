// libFuzzer target: the IKE engine's tasks past the header parse, on a primary (responder).
// The first byte picks the exchange:
//   even: IKE_SA_INIT. The rest is the payload chain behind a valid request header (its first
//         byte is the first payload's type): proposal choice, KE and nonce checks, COOKIE,
//         NAT-D. One engine lives across inputs (cookie and half-open policies included).
//   odd:  IKE_AUTH. A real IKE_SA_INIT is run with a fresh engine (the initiator side made
//         here from the tasks, so its SK keys are known), then a valid IKE_AUTH request is built
//         and one payload of it replaced by, or added as, the fuzzer's bytes: byte 1 = which
//         (index, or past the end: added, with byte 2 as its type), the rest = its body; it is
//         sealed under SK_ei. Bit 1 of the first byte: certificates instead of a pre-shared key,
//         so CERT and signature AUTH are parsed. IDi, CERT, AUTH, the child SA, TS and the lane
//         notify are all reached.
//         Bit 2: the remote is an ESP remote (wire = "esp"); IKE_AUTH then runs unchanged and the
//         fuzzer's payload goes into the next request on the IKE SA that stays: bit 3 picks a
//         CREATE_CHILD_SA child rekey (N(REKEY_SA), SA, Ni, KEi, TSi, TSr) or an INFORMATIONAL
//         with a DELETE of the child, sealed under SK_ei with message id 2, sent twice.
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "common/log.hpp"
#include "control/setup/ike_tasks.hpp"
#include "control/setup/setup_engine.hpp"
#include "fuzz_setup_sink.hpp"

using namespace p3;
using namespace p3::setup;

namespace {

using fuzz::Sink;

class Last final : public Transport {
public:
    void send(const Endpoint&, const Endpoint&, ByteView d, Framing) override { last.assign(d.begin(), d.end()); }
    Bytes last;
};

const char* kPsk = "fuzz tasks key 0123456789";
const Endpoint kPri{*IpAddr::parse("192.0.2.1"), 5653}, kSec{*IpAddr::parse("192.0.2.2"), 5653};

config::Config primary_config(bool esp = false) {
    config::Config c;
    c.role = config::Role::primary;
    c.local.address = kPri.addr;
    c.local.identity = "pri.test";
    c.dataplane.lan.address = *Prefix::parse("10.1.0.1/24", false);
    config::Remote r;
    r.id = 7;
    r.address = kSec.addr;
    r.identity = "sec.test";
    r.subnets = {*Prefix::parse("10.2.0.0/24")};
    if (esp) r.wire = config::WireMode::esp;
    c.remotes.push_back(std::move(r));
    return c;
}

// remote_id: whose key it is (the primary's remote 7 is the secondary; the secondary's remote
// 1 is the primary): credentials are per remote.
Credentials psk(std::uint32_t remote_id) {
    return *Credentials::from_psk(remote_id, ByteView(reinterpret_cast<const std::uint8_t*>(kPsk), std::strlen(kPsk)));
}

// A CA and one certificate (SAN DNS:sec.test) under it, made once; both sides use it.
struct Pki {
    EVP_PKEY* ca_key = EVP_EC_gen("P-256");
    EVP_PKEY* key = EVP_EC_gen("P-256");
    X509* ca = make(ca_key, nullptr, ca_key, "CN=fuzz CA");
    X509* cert = make(key, ca, ca_key, nullptr);
    static X509* make(EVP_PKEY* k, X509* issuer, EVP_PKEY* signer, const char* ca_cn) {
        X509* x = X509_new();
        X509_set_version(x, 2);
        ASN1_INTEGER_set(X509_get_serialNumber(x), issuer ? 2 : 1);
        X509_gmtime_adj(X509_getm_notBefore(x), -86400);
        X509_gmtime_adj(X509_getm_notAfter(x), 86400L * 365);
        X509_set_pubkey(x, k);
        X509_NAME* n = X509_get_subject_name(x);
        X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>(ca_cn ? "fuzz CA" : "sec"), -1, -1, 0);
        X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : n);
        X509V3_CTX ctx;
        X509V3_set_ctx_nodb(&ctx);
        X509V3_set_ctx(&ctx, issuer ? issuer : x, x, nullptr, nullptr, 0);
        X509_EXTENSION* e = X509V3_EXT_conf_nid(nullptr, &ctx, issuer ? NID_subject_alt_name : NID_basic_constraints,
                                                issuer ? "DNS:sec.test" : "critical,CA:TRUE");
        X509_add_ext(x, e, -1);
        X509_EXTENSION_free(e);
        X509_sign(x, signer, EVP_sha256());
        return x;
    }
    Credentials creds() const {
        Credentials c;
        X509_up_ref(cert);
        EVP_PKEY_up_ref(key);
        c.cert.reset(cert);
        c.key.reset(key);
        X509_STORE* st = X509_STORE_new();
        X509_STORE_add_cert(st, ca);
        c.ca.reset(st);
        return c;
    }
};

struct InitWorld {  // even inputs
    control::ManualClock clock;
    control::SeededRandom rnd{3};
    Last out;
    Sink sink;
    SetupEngine engine{primary_config(), psk(7), SetupOptions{}, clock, rnd, out, sink};
    std::uint16_t port = 1024;
};

void run_init(ByteView chain) {
    static InitWorld w;
    if (chain.empty() || chain.size() > limits::max_message - 64) return;
    Bytes b;
    put64(b, 0x0102030405060708ULL + w.port);
    put64(b, 0);
    put8(b, chain[0]);
    put8(b, ike_version);
    put8(b, std::uint8_t(Exchange::ike_sa_init));
    put8(b, flags::initiator);
    put32(b, 0);
    put32(b, std::uint32_t(limits::ike_header + chain.size() - 1));
    b.insert(b.end(), chain.begin() + 1, chain.end());
    w.port = std::uint16_t(w.port == 65535 ? 1024 : w.port + 1);
    w.engine.on_datagram(Endpoint{kSec.addr, w.port}, kPri, b);
    w.clock.advance(std::chrono::milliseconds(100));
    if (auto t = w.engine.next_deadline(); t && *t <= w.clock.now()) w.engine.on_timer();
}

// Replaces payload `which` of m by the fuzzer's body, or adds one of `type` (see the top).
void mutate(Message& m, std::uint8_t which, std::uint8_t type, ByteView body) {
    if (which < m.payloads.size()) {
        m.payloads[which].body = RawPayload{Bytes(body.begin(), body.end())};
    } else {
        const std::size_t at = which % (m.payloads.size() + 1);
        m.payloads.insert(m.payloads.begin() + long(at), Payload{type, false, RawPayload{Bytes(body.begin(), body.end())}});
    }
}

// The next request on an ESP remote's IKE SA, one payload of it the fuzzer's.
void run_esp(SetupEngine& primary, IkeSa& sa, const Bytes& auth_response, bool create_child, std::uint8_t which,
             std::uint8_t type, ByteView body) {
    Message outer, inner;
    if (decode(auth_response, outer) != DecodeError::ok || open_sk(auth_response, outer, sa.sk_er, inner) != DecodeError::ok)
        return;
    const auto* sap = inner.find<SaPayload>(pt::sa);
    if (!sap || sap->proposals.empty() || sap->proposals[0].spi.size() != 4) return;
    const std::uint32_t peer_spi = get32(sap->proposals[0].spi.data());
    Message m;
    m.hdr.spi_i = sa.spi_i;
    m.hdr.spi_r = sa.spi_r;
    m.hdr.flags = flags::initiator;
    m.hdr.msg_id = 2;
    if (create_child) {
        m.hdr.exchange = Exchange::create_child_sa;
        NotifyPayload n{proto_esp, {}, nt::rekey_sa, {}};
        put32(n.spi, peer_spi);
        m.add(pt::notify, std::move(n));
        Proposal p;
        p.protocol = proto_esp;
        put32(p.spi, 0x5000);
        p.transforms = {{tt::encr, encr_aes_gcm_16, 128}, {tt::esn, 0, 0}, {tt::dh, group_x25519, 0}};
        m.add(pt::sa, SaPayload{{p}});
        m.add(pt::nonce, NoncePayload{Bytes(32, 0x42)});
        auto kx = KeyExchange::create(group_x25519);
        if (!kx) return;
        m.add(pt::ke, KePayload{group_x25519, kx->public_value()});
        TrafficSelector ti, tr;
        ti.start = *IpAddr::parse("10.2.0.0"), ti.end = *IpAddr::parse("10.2.0.255");
        tr.start = *IpAddr::parse("10.1.0.0"), tr.end = *IpAddr::parse("10.1.0.255");
        m.add(pt::tsi, TsPayload{{ti}});
        m.add(pt::tsr, TsPayload{{tr}});
    } else {
        m.hdr.exchange = Exchange::informational;
        Bytes d{proto_esp, 4, 0, 1};
        put32(d, peer_spi);
        m.add(pt::del, RawPayload{d});
    }
    mutate(m, which, type, body);
    const auto sealed = encode_sk(m, sa.sk_ei, 2);
    if (!sealed) return;
    primary.on_datagram(kSec, kPri, *sealed);
    primary.on_datagram(kSec, kPri, *sealed);
}

void run_auth(bool certs, bool esp, bool create_child, ByteView in) {
    static const Pki pki;
    if (in.size() < 2) return;
    const std::uint8_t which = in[0], type = in[1];
    const ByteView body = in.subspan(2);
    control::ManualClock clock;
    control::SeededRandom rnd_p{11}, rnd_s{12};
    Last out;
    Sink sink_p, sink_s;
    SetupEngine primary(primary_config(esp), certs ? pki.creds() : psk(7), SetupOptions{}, clock, rnd_p, out, sink_p);

    // The initiator, from its tasks: its IkeSa holds the keys we seal with.
    const Credentials ci = certs ? pki.creds() : psk(1);
    LocalConfig local;
    local.role = config::Role::secondary;
    local.endpoint = kSec;
    local.id = make_id("sec.test", kSec.addr);
    local.lan = *Prefix::parse("10.2.0.0/24");
    std::list<PeerConfig> peers(1);
    peers.front().id = 1;
    peers.front().endpoint = kPri;
    peers.front().expected_id = make_id("pri.test", kPri.addr);
    if (esp) {
        peers.front().wire = config::WireMode::esp;
        peers.front().subnets = {*Prefix::parse("10.1.0.0/24")};
    }
    const SetupOptions opts;
    TaskContext ctx{local, peers, ci, opts, sink_s, rnd_s};
    IkeSa sa;
    sa.initiator = true;
    sa.spi_i = Spi{0x1111222233334444ULL};
    sa.local = kSec;
    sa.peer = kPri;
    sa.remote = &peers.front();
    Message init;
    init.hdr.spi_i = sa.spi_i;
    init.hdr.exchange = Exchange::ike_sa_init;
    init.hdr.flags = flags::initiator;
    for (auto& t : make_tasks(Exchange::ike_sa_init, ctx))
        if (t->build_i(sa, init).kind != TaskResult::Kind::ok) return;
    sa.init_request = encode(init);
    primary.on_datagram(kSec, kPri, sa.init_request);
    Message resp;
    if (decode(out.last, resp) != DecodeError::ok || !resp.hdr.spi_r) return;
    sa.spi_r = resp.hdr.spi_r;
    for (auto& t : make_tasks(Exchange::ike_sa_init, ctx))
        if (t->process_i(sa, resp).kind != TaskResult::Kind::ok) return;
    sa.init_response = out.last;

    Message auth;
    auth.hdr.spi_i = sa.spi_i;
    auth.hdr.spi_r = sa.spi_r;
    auth.hdr.exchange = Exchange::ike_auth;
    auth.hdr.flags = flags::initiator;
    auth.hdr.msg_id = 1;
    for (auto& t : make_tasks(Exchange::ike_auth, ctx))
        if (t->build_i(sa, auth).kind != TaskResult::Kind::ok) return;
    if (!esp) mutate(auth, which, type, body);
    const auto sealed = encode_sk(auth, sa.sk_ei, 1);
    if (!sealed) return;
    primary.on_datagram(kSec, kPri, *sealed);
    primary.on_datagram(kSec, kPri, *sealed);  // and its retransmission
    if (esp) run_esp(primary, sa, out.last, create_child, which, type, body);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    static const bool quiet = [] {
        log::Options o;
        o.to_stderr = false;
        log::init(o);
        return true;
    }();
    (void)quiet;
    if (size < 1) return 0;
    const ByteView rest(data + 1, size - 1);
    if ((data[0] & 1) == 0) run_init(rest);
    else run_auth((data[0] & 2) != 0, (data[0] & 4) != 0, (data[0] & 8) != 0, rest);
    return 0;
}
