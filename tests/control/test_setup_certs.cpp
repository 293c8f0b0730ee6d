// Certificate authentication (RFC 7427 digital signatures over X.509 checked against the
// configured CA): RSA and ECDSA success; expired, untrusted and identity-mismatched
// certificates refused with AUTHENTICATION_FAILED and SETUP_CERT_INVALID; credentials loaded
// from PEM files, key files readable by others refused. The CA and certificates are made
// here with OpenSSL, in a temporary directory.
#include <catch2/catch.hpp>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>

#include "setup_harness.hpp"

using namespace p3;
using namespace p3::setup;
using namespace p3::setup::test;

namespace {

struct Key {
    EVP_PKEY* k = nullptr;
    ~Key() { EVP_PKEY_free(k); }
};
struct Cert {
    X509* x = nullptr;
    ~Cert() { X509_free(x); }
};

void add_ext(X509* x, X509* issuer, int nid, const char* value) {
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, issuer, x, nullptr, nullptr, 0);
    X509_EXTENSION* e = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
    REQUIRE(e);
    X509_add_ext(x, e, -1);
    X509_EXTENSION_free(e);
}

// issuer null: self-signed CA. days_from/days_to relative to now.
X509* make_cert(EVP_PKEY* key, const char* cn, X509* issuer, EVP_PKEY* issuer_key, long days_from, long days_to,
                const char* san) {
    static long serial = 1;
    X509* x = X509_new();
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), serial++);
    X509_gmtime_adj(X509_getm_notBefore(x), days_from * 86400);
    X509_gmtime_adj(X509_getm_notAfter(x), days_to * 86400);
    X509_set_pubkey(x, key);
    X509_NAME* name = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>(cn), -1, -1, 0);
    X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : name);
    if (!issuer) {
        add_ext(x, x, NID_basic_constraints, "critical,CA:TRUE");
        add_ext(x, x, NID_key_usage, "critical,keyCertSign,cRLSign");
    } else {
        add_ext(x, issuer, NID_basic_constraints, "critical,CA:FALSE");
        add_ext(x, issuer, NID_subject_alt_name, san);
    }
    REQUIRE(X509_sign(x, issuer_key ? issuer_key : key, EVP_sha256()) > 0);
    return x;
}

struct Pki {
    std::filesystem::path dir;
    Key ca_key, other_ca_key, rsa_p, rsa_s, ec_p, ec_s, ec384_s;
    Cert ca, other_ca;
    Pki() {
        char tmpl[] = "/tmp/p3-setup-certs-XXXXXX";
        dir = mkdtemp(tmpl);
        ca_key.k = EVP_EC_gen("P-256");
        other_ca_key.k = EVP_EC_gen("P-256");
        rsa_p.k = EVP_RSA_gen(2048);
        rsa_s.k = EVP_RSA_gen(2048);
        ec_p.k = EVP_EC_gen("P-256");
        ec_s.k = EVP_EC_gen("P-256");
        ec384_s.k = EVP_EC_gen("P-384");
        ca.x = make_cert(ca_key.k, "p3 test CA", nullptr, nullptr, -1, 365, nullptr);
        other_ca.x = make_cert(other_ca_key.k, "p3 test CA", nullptr, nullptr, -1, 365, nullptr);  // same name, other key
        write_cert("ca.pem", ca.x);
        write_cert("other-ca.pem", other_ca.x);
    }
    ~Pki() { std::filesystem::remove_all(dir); }
    std::string path(const std::string& n) const { return (dir / n).string(); }
    void write_cert(const std::string& n, X509* x) const {
        FILE* f = std::fopen(path(n).c_str(), "w");
        PEM_write_X509(f, x);
        std::fclose(f);
    }
    void write_key(const std::string& n, EVP_PKEY* k, mode_t mode = 0600) const {
        FILE* f = std::fopen(path(n).c_str(), "w");
        PEM_write_PrivateKey(f, k, nullptr, nullptr, 0, nullptr, nullptr);
        std::fclose(f);
        chmod(path(n).c_str(), mode);
    }
    // A leaf for `san` signed by the CA (or the other CA), written as name.pem / name.key.
    config::Local leaf(const std::string& name, EVP_PKEY* key, const char* san, long from = -1, long to = 30,
                       bool other = false) const {
        Cert c;
        c.x = make_cert(key, name.c_str(), other ? other_ca.x : ca.x, other ? other_ca_key.k : ca_key.k, from, to, san);
        write_cert(name + ".pem", c.x);
        write_key(name + ".key", key);
        config::Local l;
        l.certificate = path(name + ".pem");
        l.private_key = path(name + ".key");
        l.ca = path("ca.pem");
        return l;
    }
    Credentials load(const config::Local& l) const {
        std::string err;
        auto c = Credentials::load(l, err);
        INFO(err);
        REQUIRE(c);
        return std::move(*c);
    }
};

Pki& pki() {
    static Pki p;  // RSA key generation is slow: once per run
    return p;
}

}  // namespace

TEST_CASE("setup certs: RSA and ECDSA certificates from the configured CA authenticate both ways") {
    Pki& k = pki();
    struct Case { const char* what; EVP_PKEY* p; EVP_PKEY* s; };
    const Case cases[] = {
        {"RSA both", k.rsa_p.k, k.rsa_s.k},
        {"ECDSA P-256 both", k.ec_p.k, k.ec_s.k},
        {"RSA primary, ECDSA P-384 secondary", k.rsa_p.k, k.ec384_s.k},
    };
    int n = 0;
    for (const auto& c : cases) {
        INFO(c.what);
        LogCapture logs;
        const std::string tag = std::to_string(n++);
        Pair pr(PairConfig{}, k.load(k.leaf("pri" + tag, c.p, "DNS:pri.test")),
                k.load(k.leaf("sec" + tag, c.s, "DNS:sec.test")));
        REQUIRE(pr.s->connect(1));
        pr.run();
        REQUIRE(pr.up());
        CHECK(pr.sink_s.sessions[0].peer_identity == "pri.test");
        CHECK(pr.sink_p.sessions[0].peer_identity == "sec.test");
        CHECK(logs.count(Reason::SETUP_UP) == 2);
        // Certificates travel in IKE_AUTH: both messages are far larger than with a PSK.
        CHECK(pr.to_p.all[1].data.size() > 400);
        CHECK(pr.to_s.all[1].data.size() > 400);
    }
}

TEST_CASE("setup certs: expired, untrusted or mismatched certificates -> AUTHENTICATION_FAILED, no session") {
    Pki& k = pki();
    struct Case {
        const char* what;
        config::Local secondary;
        const char* log_text;
    };
    const Case cases[] = {
        {"expired", k.leaf("sec-expired", k.ec_s.k, "DNS:sec.test", -10, -1), "expired"},
        {"not yet valid", k.leaf("sec-future", k.ec_s.k, "DNS:sec.test", 2, 30), "not yet valid"},
        {"issued by another CA", k.leaf("sec-untrusted", k.ec_s.k, "DNS:sec.test", -1, 30, true), "not issued by the configured CA"},
        {"names another identity", k.leaf("sec-other", k.ec_s.k, "DNS:other.test"), "does not match the identity"},
    };
    for (const auto& c : cases) {
        INFO(c.what);
        LogCapture logs;
        // The secondary's own store must accept its chain to load; it trusts the CA either way.
        Pair pr(PairConfig{}, k.load(k.leaf("pri-ok", k.ec_p.k, "DNS:pri.test")), k.load(c.secondary));
        REQUIRE(pr.s->connect(1));
        pr.run();
        CHECK(pr.sink_p.sessions.empty());
        CHECK(pr.sink_s.sessions.empty());
        REQUIRE(pr.sink_p.failures.size() == 1);
        // Not proven to be remote 7: nothing is accounted to it (remote id 0).
        CHECK(pr.sink_p.failures[0] == std::make_pair(std::uint32_t(0), Reason::SETUP_CERT_INVALID));
        CHECK(logs.has(Reason::SETUP_CERT_INVALID, c.log_text));
        CHECK(logs.has(Reason::SETUP_CERT_INVALID, "P3-E0404"));
        CHECK(logs.has(Reason::SETUP_CERT_INVALID, "sec.test"));
        REQUIRE(pr.sink_s.failures.size() == 1);
        CHECK(pr.sink_s.failures[0].second == Reason::SETUP_PEER_REJECTED);
    }
    SECTION("the primary's certificate is expired: the secondary refuses") {
        LogCapture logs;
        Pair pr(PairConfig{}, k.load(k.leaf("pri-expired", k.ec_p.k, "DNS:pri.test", -10, -1)),
                k.load(k.leaf("sec-ok", k.ec_s.k, "DNS:sec.test")));
        REQUIRE(pr.s->connect(1));
        pr.run();
        REQUIRE(pr.sink_s.failures.size() == 1);
        CHECK(pr.sink_s.failures[0].second == Reason::SETUP_CERT_INVALID);
        CHECK(logs.has(Reason::SETUP_CERT_INVALID, "expired"));
        CHECK(pr.sink_s.sessions.empty());
    }
}

TEST_CASE("setup certs: a certificate side and a PSK side do not authenticate each other") {
    Pki& k = pki();
    LogCapture logs;
    Pair pr(PairConfig{}, k.load(k.leaf("pri-mixed", k.ec_p.k, "DNS:pri.test")), psk(kTestPsk));
    REQUIRE(pr.s->connect(1));
    pr.run();
    CHECK(!pr.up());
    REQUIRE(pr.sink_p.failures.size() == 1);
    CHECK(pr.sink_p.failures[0].second == Reason::SETUP_AUTH_METHOD);
    CHECK(logs.has(Reason::SETUP_AUTH_METHOD, "P3-E0419"));
}

TEST_CASE("setup certs: credentials from files; key files readable by others and wrong keys refused") {
    Pki& k = pki();
    config::Local l = k.leaf("files", k.ec_s.k, "DNS:sec.test");
    std::string err;
    CHECK(Credentials::load(l, err));

    chmod(l.private_key.c_str(), 0644);
    CHECK(!Credentials::load(l, err));
    CHECK(err.find("readable by group or others") != std::string::npos);
    chmod(l.private_key.c_str(), 0600);

    config::Local wrong = l;
    k.write_key("wrong.key", k.ec_p.k);
    wrong.private_key = k.path("wrong.key");
    CHECK(!Credentials::load(wrong, err));
    CHECK(err.find("no private key matching") != std::string::npos);

    config::Local no_ca = l;
    no_ca.ca.clear();
    CHECK(!Credentials::load(no_ca, err));
    CHECK(err.find("needs a ca") != std::string::npos);

    chmod(l.private_key.c_str(), 0600);
    std::filesystem::create_symlink(l.private_key, k.path("files-link.key"));
    config::Local linked = l;
    linked.private_key = k.path("files-link.key");
    CHECK(!Credentials::load(linked, err));
    CHECK(err.find("symbolic link") != std::string::npos);
}

TEST_CASE("setup certs: pre-shared keys load per remote; short, open or linked key files refused") {
    Pki& k = pki();
    auto write = [&](const std::string& name, const char* text, mode_t mode) {
        FILE* f = std::fopen(k.path(name).c_str(), "w");
        std::fputs(text, f);
        std::fclose(f);
        chmod(k.path(name).c_str(), mode);
        return k.path(name);
    };
    config::Config cfg = primary_config(PairConfig{});
    cfg.remotes[0].psk_file = write("r7.psk", "remote 7's own key\n", 0600);
    config::Remote r8 = cfg.remotes[0].clone();
    r8.id = 8;
    r8.identity = "b.test";
    r8.psk_file = write("r8.psk", "remote 8's own key, other\r\n", 0600);
    cfg.remotes.push_back(std::move(r8));
    std::string err;
    Reason why{};
    auto c = Credentials::load(cfg, err, why);
    INFO(err);
    REQUIRE(c);
    REQUIRE(c->psk_for(7));
    REQUIRE(c->psk_for(8));
    CHECK(c->psk_for(7)->size() == 18);  // the trailing newline is not part of the key
    CHECK(c->psk_for(8)->size() == 25);
    CHECK(!c->psk_for(1));

    chmod(cfg.remotes[1].psk_file.c_str(), 0640);
    CHECK(!Credentials::load(cfg, err, why));
    CHECK(why == Reason::SETUP_KEY_FILE);
    CHECK(err.find("remote 8") != std::string::npos);
    chmod(cfg.remotes[1].psk_file.c_str(), 0600);

    cfg.remotes[1].psk_file = write("short.psk", "15 bytes only!!\n", 0600);
    CHECK(!Credentials::load(cfg, err, why));
    CHECK(why == Reason::SETUP_KEY_FILE);
    CHECK(err.find("fewer than 16") != std::string::npos);

    std::filesystem::create_symlink(k.path("r7.psk"), k.path("r8-link.psk"));
    cfg.remotes[1].psk_file = k.path("r8-link.psk");
    CHECK(!Credentials::load(cfg, err, why));
    CHECK(why == Reason::SETUP_KEY_FILE);
    CHECK(err.find("symbolic link") != std::string::npos);

    // Not there yet: loaded without that remote's key (it stays down), the others run.
    cfg.remotes[1].psk_file = k.path("absent.psk");
    auto partial = Credentials::load(cfg, err, why);
    REQUIRE(partial);
    CHECK(partial->psk_for(7));
    CHECK(!partial->psk_for(8));
}

TEST_CASE("setup certs: an identity with a leading dot is not every name under it") {
    // A DNS name check given ".p3.test" matches any subdomain: B's exact certificate would then
    // prove a remote configured as ".p3.test".
    Pki& k = pki();
    PairConfig pc;
    pc.secondary_id = ".p3.test";
    pc.primary_expects = ".p3.test";
    LogCapture logs;
    Pair pr(pc, k.load(k.leaf("pri-dot", k.ec_p.k, "DNS:pri.test")), k.load(k.leaf("b-dot", k.ec_s.k, "DNS:b.p3.test")));
    REQUIRE(pr.s->connect(1));
    pr.run();
    CHECK(pr.sink_p.sessions.empty());
    REQUIRE(pr.sink_p.failures.size() == 1);
    CHECK(pr.sink_p.failures[0] == std::make_pair(std::uint32_t(0), Reason::SETUP_CERT_INVALID));
    CHECK(logs.has(Reason::SETUP_CERT_INVALID, "does not match the identity"));
}

TEST_CASE("setup certs: a remote whose key file is missing is not authenticated by a certificate instead") {
    // The remote is configured with its own pre-shared key; the file is not there yet. It stays
    // down until it is (P3-W0110), even though this primary also holds certificates.
    Pki& k = pki();
    PairConfig pc;
    config::Config pcfg = primary_config(pc);
    const config::Local cert = k.leaf("pri-nokey", k.ec_p.k, "DNS:pri.test");
    pcfg.local.certificate = cert.certificate;
    pcfg.local.private_key = cert.private_key;
    pcfg.local.ca = cert.ca;
    pcfg.remotes[0].psk_file = k.path("remote-7-psk-not-yet-there");
    LogCapture logs;
    std::string err;
    Reason why{};
    auto cp = Credentials::load(pcfg, err, why);
    INFO(err);
    REQUIRE(cp);
    CHECK(logs.has(Reason::CFG_KEY_FILE_ABSENT, "remote 7"));
    Pair pr(pcfg, secondary_config(pc), std::move(*cp), k.load(k.leaf("sec-nokey", k.ec_s.k, "DNS:sec.test")));
    REQUIRE(pr.s->connect(1));
    pr.run();
    CHECK(!pr.up());
    CHECK(pr.sink_p.sessions.empty());
    REQUIRE(pr.sink_p.failures.size() == 1);
    CHECK(pr.sink_p.failures[0].first == 0);
}

TEST_CASE("setup credentials: one pre-shared key given to two remotes is refused") {
    // Two files, one key: remote 8's holder could claim remote 7's identity and prove it.
    Pki& k = pki();
    auto write = [&](const std::string& name, const char* key) {
        FILE* f = std::fopen(k.path(name).c_str(), "w");
        std::fputs(key, f);
        std::fclose(f);
        chmod(k.path(name).c_str(), 0600);
        return k.path(name);
    };
    config::Config cfg = primary_config(PairConfig{});
    config::Remote r8 = cfg.remotes[0].clone();
    r8.id = 8;
    r8.identity = "other.test";
    r8.address = *IpAddr::parse("192.0.2.3");
    cfg.remotes.push_back(std::move(r8));
    cfg.remotes[0].psk_file = write("psk-7", "one key for both remotes, 32 b\n");
    cfg.remotes[1].psk_file = write("psk-8", "one key for both remotes, 32 b");
    std::string err;
    Reason why{};
    CHECK(!Credentials::load(cfg, err, why));
    CHECK(why == Reason::SETUP_CREDENTIALS);
    CHECK(err.find("remote 8") != std::string::npos);
    CHECK(err.find("remote 7") != std::string::npos);
    SECTION("each its own key: loaded") {
        cfg.remotes[1].psk_file = write("psk-8", "remote 8's own key, 32 bytes ok");
        err.clear();
        auto c = Credentials::load(cfg, err, why);
        INFO(err);
        REQUIRE(c);
        CHECK(c->psk_for(7));
        CHECK(c->psk_for(8));
    }
}

TEST_CASE("setup certs: one remote's certificate never authenticates another remote") {
    Pki& k = pki();
    PairConfig pc;  // remote 7 is a.p3.test
    pc.secondary_id = "a.p3.test";
    pc.primary_expects = "a.p3.test";
    struct Case { const char* what; const char* file; const char* san; };
    const Case cases[] = {
        // B's certificate, also valid for "every name under p3.test" by a wildcard.
        {"B's wildcard certificate", "b-wild", "DNS:b.p3.test,DNS:*.p3.test"},
        {"B's certificate", "b-own", "DNS:b.p3.test"},
    };
    for (const auto& c : cases) {
        INFO(c.what);
        LogCapture logs;
        // B's appliance presents its certificate under A's identity.
        Pair pr(pc, k.load(k.leaf("pri-bind", k.ec_p.k, "DNS:pri.test")),
                k.load(k.leaf(c.file, k.ec_s.k, c.san)));
        REQUIRE(pr.s->connect(1));
        pr.run();
        CHECK(pr.sink_p.sessions.empty());
        CHECK(pr.sink_s.sessions.empty());
        REQUIRE(pr.sink_p.failures.size() == 1);
        CHECK(pr.sink_p.failures[0] == std::make_pair(std::uint32_t(0), Reason::SETUP_CERT_INVALID));
        CHECK(logs.has(Reason::SETUP_CERT_INVALID, "does not match the identity"));
    }
    SECTION("A's own certificate (exact name) does") {
        Pair pr(pc, k.load(k.leaf("pri-bind", k.ec_p.k, "DNS:pri.test")),
                k.load(k.leaf("a-own", k.ec_s.k, "DNS:a.p3.test")));
        REQUIRE(pr.s->connect(1));
        pr.run();
        CHECK(pr.up());
    }
    SECTION("a remote with its own pre-shared key is not authenticated by any certificate") {
        LogCapture logs;
        Credentials cp = k.load(k.leaf("pri-bind", k.ec_p.k, "DNS:pri.test"));
        const std::string key = "remote 7's own key, not a cert";
        REQUIRE(cp.add_psk(7, ByteView(reinterpret_cast<const std::uint8_t*>(key.data()), key.size())));
        Pair pr(pc, std::move(cp), k.load(k.leaf("a-own", k.ec_s.k, "DNS:a.p3.test")));
        REQUIRE(pr.s->connect(1));
        pr.run();
        CHECK(!pr.up());
        REQUIRE(pr.sink_p.failures.size() == 1);
        CHECK(pr.sink_p.failures[0].second == Reason::SETUP_AUTH_METHOD);
    }
}
