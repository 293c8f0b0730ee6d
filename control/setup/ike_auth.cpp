// Shared-key MIC and RFC 7427 signatures; certificate path validation with X509_STORE.
#include "control/setup/ike_auth.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <cstdio>

#include "common/keyfile.hpp"
#include "common/log.hpp"
#include "control/setup/ike_crypto.hpp"

namespace p3::setup {

void OpenSslFree::operator()(X509* p) const noexcept { X509_free(p); }
void OpenSslFree::operator()(EVP_PKEY* p) const noexcept { EVP_PKEY_free(p); }
void OpenSslFree::operator()(X509_STORE* p) const noexcept { X509_STORE_free(p); }

namespace {

// PEM from a key file opened by common/keyfile (no symbolic link, owner-only on the fd).
template <class T, class F>
T* read_pem_key(const std::string& path, F reader, std::string& error) {
    keyfile::File kf;
    if (keyfile::open(path, kf, error) != keyfile::Status::ok) return nullptr;
    FILE* f = kf.release_to_stdio();
    if (!f) {
        error = path + ": cannot be read";
        return nullptr;
    }
    T* v = reader(f, nullptr, nullptr, nullptr);
    std::fclose(f);
    return v;
}

template <class T, class F>
T* read_pem(const std::string& path, F reader) {
    FILE* f = std::fopen(path.c_str(), "r");
    if (!f) return nullptr;
    T* v = reader(f, nullptr, nullptr, nullptr);
    std::fclose(f);
    return v;
}

// RFC 7427 Appendix A AlgorithmIdentifiers (DER), preceded in AUTH by their length octet.
const Bytes alg_sha256_rsa = {0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b, 0x05, 0x00};
const Bytes alg_ecdsa_sha256 = {0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02};
const Bytes alg_ecdsa_sha384 = {0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03};

}  // namespace

const SecretBytes* Credentials::psk_for(std::uint32_t remote_id) const noexcept {
    auto it = psks.find(remote_id);
    return it == psks.end() ? nullptr : &it->second;
}

bool Credentials::add_psk(std::uint32_t remote_id, ByteView psk) {
    if (psk.size() < keyfile::kMinPsk || remote_id == 0) return false;
    psks.insert_or_assign(remote_id, SecretBytes(psk));
    return true;
}

std::optional<Credentials> Credentials::from_psk(std::uint32_t remote_id, ByteView psk) {
    Credentials c;
    if (!c.add_psk(remote_id, psk)) return std::nullopt;
    return c;
}

std::optional<Credentials> Credentials::load(const config::Local& local, std::string& error) {
    Credentials c;
    if (!local.certificate.empty() || !local.private_key.empty()) {
        c.cert.reset(read_pem<X509>(local.certificate, PEM_read_X509));
        if (!c.cert) {
            error = local.certificate + ": no PEM certificate";
            return std::nullopt;
        }
        std::string why;
        c.key.reset(read_pem_key<EVP_PKEY>(local.private_key, PEM_read_PrivateKey, why));
        if (!c.key && !why.empty()) {
            error = why;
            return std::nullopt;
        }
        if (!c.key || X509_check_private_key(c.cert.get(), c.key.get()) != 1) {
            error = local.private_key + ": no private key matching the certificate";
            return std::nullopt;
        }
    }
    if (!local.ca.empty()) {
        std::unique_ptr<X509, OpenSslFree> ca(read_pem<X509>(local.ca, PEM_read_X509));
        c.ca.reset(X509_STORE_new());
        if (!ca || !c.ca || X509_STORE_add_cert(c.ca.get(), ca.get()) != 1) {
            error = local.ca + ": no PEM CA certificate";
            return std::nullopt;
        }
        unsigned char* spki = nullptr;
        const int n = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(ca.get()), &spki);
        if (n > 0) c.ca_keyid = sha1(ByteView(spki, std::size_t(n)));
        OPENSSL_free(spki);
    }
    if (c.uses_certificates() && !c.ca) {
        error = "certificate authentication needs a ca";
        return std::nullopt;
    }
    return c;
}

// One remote's psk_file, with load's rules; shared by load and reload_psk. ok: key holds it,
// and it is no other remote's key. absent: logged, no key. Otherwise why says what is wrong.
keyfile::Status Credentials::read_remote_psk(const config::Remote& r, SecretBytes& key, std::string& why) const {
    const keyfile::Status st = keyfile::read_psk(r.psk_file, key, why);
    if (st == keyfile::Status::absent) {
        P3_LOG_WARN(CFG_KEY_FILE_ABSENT, "remote %u: %s: it cannot be set up until the file is there (p3ctl reload then)",
                    r.id, why.c_str());
        return st;
    }
    if (st != keyfile::Status::ok) {
        why = "remote " + std::to_string(r.id) + ": " + why;
        return st;
    }
    // One key for two remotes would let either claim the other's identity and prove it.
    // Compared in constant time; only the remote ids are named.
    for (const auto& [other, k] : psks)
        if (other != r.id && k.equals(key.span())) {
            why = "remote " + std::to_string(r.id) + ": its psk_file holds the same key as remote " +
                  std::to_string(other) + "'s: every remote needs its own key";
            key = SecretBytes();
            return keyfile::Status::unreadable;  // SETUP_CREDENTIALS, as before
        }
    return st;
}

std::optional<Credentials> Credentials::load(const config::Config& cfg, std::string& error, Reason& reason) {
    reason = Reason::SETUP_CREDENTIALS;
    auto c = load(cfg.local, error);
    if (!c) return std::nullopt;
    for (const auto& r : cfg.remotes) {
        if (r.static_keys) continue;
        if (r.psk_file.empty()) {
            if (!c->uses_certificates())
                P3_LOG_WARN(SETUP_NO_CREDENTIAL,
                            "remote %u has neither its own psk_file nor a local certificate: it cannot be set up", r.id);
            continue;
        }
        SecretBytes key;
        switch (c->read_remote_psk(r, key, error)) {
            case keyfile::Status::ok: c->psks.insert_or_assign(r.id, std::move(key)); break;
            case keyfile::Status::absent: c->psks_absent.insert(r.id); break;  // not a certificate remote either
            case keyfile::Status::unreadable: return std::nullopt;
            default: reason = Reason::SETUP_KEY_FILE; return std::nullopt;
        }
    }
    error.clear();
    return c;
}

bool Credentials::reload_psk(const config::Remote& r, std::string& why) {
    if (r.static_keys) {  // no setup exchange: no key
        remove_psk(r.id);
        return true;
    }
    if (r.psk_file.empty()) {  // a certificate remote now
        remove_psk(r.id);
        if (!uses_certificates())
            P3_LOG_WARN(SETUP_NO_CREDENTIAL,
                        "remote %u has neither its own psk_file nor a local certificate: it cannot be set up", r.id);
        return true;
    }
    SecretBytes key;
    std::string w;
    switch (read_remote_psk(r, key, w)) {
        case keyfile::Status::ok:
            psks.insert_or_assign(r.id, std::move(key));  // the old key is wiped as it goes
            psks_absent.erase(r.id);
            return true;
        case keyfile::Status::absent:
            psks.erase(r.id);
            psks_absent.insert(r.id);
            return true;
        default:
            why = std::move(w);  // the old key stays
            return false;
    }
}

void Credentials::remove_psk(std::uint32_t remote_id) {
    psks.erase(remote_id);
    psks_absent.erase(remote_id);
}

IdPayload make_id(const std::string& identity, const IpAddr& address) {
    IdPayload id;
    std::optional<IpAddr> ip = identity.empty() ? std::optional<IpAddr>(address) : IpAddr::parse(identity);
    if (ip && ip->family) {
        id.id_type = ip->is_v4() ? idt::ipv4 : idt::ipv6;
        id.data.assign(ip->bytes.begin(), ip->bytes.begin() + (ip->is_v4() ? 4 : 16));
    } else {
        id.id_type = identity.find('@') != std::string::npos ? idt::rfc822 : idt::fqdn;
        id.data.assign(identity.begin(), identity.end());
    }
    return id;
}

std::string id_to_string(const IdPayload& id) {
    if ((id.id_type == idt::ipv4 && id.data.size() == 4) || (id.id_type == idt::ipv6 && id.data.size() == 16)) {
        IpAddr a;
        a.family = id.id_type == idt::ipv4 ? 4 : 6;
        std::copy(id.data.begin(), id.data.end(), a.bytes.begin());
        return a.str();
    }
    if (id.id_type == idt::fqdn || id.id_type == idt::rfc822) {
        std::string s;
        for (auto c : id.data) s += (c >= 0x20 && c < 0x7f) ? char(c) : '?';  // never raw control bytes in logs
        return s;
    }
    return "id-type-" + std::to_string(id.id_type) + "(" + std::to_string(id.data.size()) + " bytes)";
}

bool same_id(const IdPayload& a, const IdPayload& b) { return a.id_type == b.id_type && a.data == b.data; }

std::string_view to_string(AuthResult r) noexcept {
    switch (r) {
        case AuthResult::ok: return "ok";
        case AuthResult::bad_mic: return "pre-shared key MIC does not verify";
        case AuthResult::bad_signature: return "signature does not verify";
        case AuthResult::no_credentials: return "no local credentials for the peer's method";
        case AuthResult::cert_missing: return "no certificate sent";
        case AuthResult::cert_untrusted: return "certificate not issued by the configured CA";
        case AuthResult::cert_expired: return "certificate expired or not yet valid";
        case AuthResult::cert_id_mismatch: return "certificate does not match the identity";
        case AuthResult::unsupported_method: return "unsupported authentication method";
        case AuthResult::wrong_method: return "authentication method not the one configured for the remote";
    }
    return "?";
}

Bytes signed_octets(std::uint16_t prf_alg, ByteView sk_p, ByteView real_message, ByteView peer_nonce,
                    const IdPayload& id) {
    Bytes out(real_message.begin(), real_message.end());
    append(out, peer_nonce);
    const SecretBytes maced = prf(prf_alg, sk_p, id.body());
    append(out, maced.span());
    return out;
}

namespace {
SecretBytes psk_mic(const SecretBytes& psk, std::uint16_t prf_alg, ByteView octets) {
    static constexpr char pad[] = "Key Pad for IKEv2";
    const SecretBytes k = prf(prf_alg, psk.span(), ByteView(reinterpret_cast<const std::uint8_t*>(pad), sizeof pad - 1));
    return prf(prf_alg, k.span(), octets);
}
}  // namespace

std::optional<AuthPayload> make_auth(const Credentials& creds, std::uint32_t remote_id, std::uint16_t prf_alg,
                                     ByteView octets) {
    if (creds.psks_absent.count(remote_id)) return std::nullopt;
    if (const SecretBytes* psk = creds.psk_for(remote_id)) {
        const SecretBytes mic = psk_mic(*psk, prf_alg, octets);
        if (mic.empty()) return std::nullopt;
        return AuthPayload{am::shared_key_mic, Bytes(mic.span().begin(), mic.span().end())};
    }
    if (!creds.uses_certificates()) return std::nullopt;
    EVP_PKEY* key = creds.key.get();
    const EVP_MD* md = EVP_sha256();
    const Bytes* alg = &alg_sha256_rsa;
    if (EVP_PKEY_get_base_id(key) == EVP_PKEY_EC) {
        alg = EVP_PKEY_get_bits(key) > 256 ? &alg_ecdsa_sha384 : &alg_ecdsa_sha256;
        if (alg == &alg_ecdsa_sha384) md = EVP_sha384();
    } else if (EVP_PKEY_get_base_id(key) != EVP_PKEY_RSA) {
        return std::nullopt;
    }
    EVP_MD_CTX* ctx = EVP_MD_CTX_new();
    std::size_t len = 0;
    Bytes sig;
    bool ok = ctx && EVP_DigestSignInit(ctx, nullptr, md, nullptr, key) == 1 &&
              EVP_DigestSign(ctx, nullptr, &len, octets.data(), octets.size()) == 1;
    if (ok) {
        sig.resize(len);
        ok = EVP_DigestSign(ctx, sig.data(), &len, octets.data(), octets.size()) == 1;
        sig.resize(len);
    }
    EVP_MD_CTX_free(ctx);
    if (!ok) return std::nullopt;
    AuthPayload a{am::digital_signature, {}};
    a.data.push_back(std::uint8_t(alg->size()));
    append(a.data, *alg);
    append(a.data, sig);
    return a;
}

namespace {

AuthResult check_cert(const Credentials& creds, X509* cert, const IdPayload& peer_id) {
    X509_STORE_CTX* ctx = X509_STORE_CTX_new();
    if (!ctx || X509_STORE_CTX_init(ctx, creds.ca.get(), cert, nullptr) != 1) {
        X509_STORE_CTX_free(ctx);
        return AuthResult::cert_untrusted;
    }
    const int ok = X509_verify_cert(ctx);
    const int err = X509_STORE_CTX_get_error(ctx);
    X509_STORE_CTX_free(ctx);
    if (ok != 1) {
        if (err == X509_V_ERR_CERT_HAS_EXPIRED || err == X509_V_ERR_CERT_NOT_YET_VALID) return AuthResult::cert_expired;
        return AuthResult::cert_untrusted;
    }
    // The identity the peer claims must be one the certificate names.
    const std::string s(peer_id.data.begin(), peer_id.data.end());
    int match = 0;
    switch (peer_id.id_type) {
        // The certificate must name this identity itself: a wildcard ("*.example") would let
        // one certificate authenticate every remote under it. A name with a leading dot
        // (".example") means "any name under it" to X509_check_host: never a match.
        case idt::fqdn:
            match = !s.empty() && s[0] != '.' &&
                    X509_check_host(cert, s.data(), s.size(), X509_CHECK_FLAG_NO_WILDCARDS, nullptr) == 1;
            break;
        case idt::rfc822: match = X509_check_email(cert, s.data(), s.size(), 0); break;
        case idt::ipv4:
        case idt::ipv6: match = X509_check_ip(cert, peer_id.data.data(), peer_id.data.size(), 0); break;
        case idt::der_dn: {
            unsigned char* der = nullptr;
            const int n = i2d_X509_NAME(X509_get_subject_name(cert), &der);
            match = n > 0 && std::size_t(n) == peer_id.data.size() && std::equal(der, der + n, peer_id.data.begin());
            OPENSSL_free(der);
            break;
        }
        default: match = 0;
    }
    return match == 1 ? AuthResult::ok : AuthResult::cert_id_mismatch;
}

}  // namespace

AuthResult verify_auth(const Credentials& creds, std::uint32_t remote_id, std::uint16_t prf_alg, ByteView octets,
                       const IdPayload& peer_id, const AuthPayload& auth, const CertPayload* cert) {
    if (auth.method != am::shared_key_mic && auth.method != am::digital_signature) return AuthResult::unsupported_method;
    if (creds.psks_absent.count(remote_id)) return AuthResult::no_credentials;
    const SecretBytes* psk = creds.psk_for(remote_id);
    if (auth.method == am::shared_key_mic) {
        if (!psk) return creds.uses_certificates() ? AuthResult::wrong_method : AuthResult::no_credentials;
        const SecretBytes mic = psk_mic(*psk, prf_alg, octets);
        return !mic.empty() && mic.equals(auth.data) ? AuthResult::ok : AuthResult::bad_mic;
    }
    // A remote with its own key is authenticated by that key only: a certificate, however
    // valid, is not its credential.
    if (psk) return AuthResult::wrong_method;
    if (!creds.ca) return AuthResult::no_credentials;
    if (!cert || cert->encoding != cert_x509_sig) return AuthResult::cert_missing;
    const unsigned char* p = cert->data.data();
    std::unique_ptr<X509, OpenSslFree> x(d2i_X509(nullptr, &p, static_cast<long>(cert->data.size())));
    if (!x || p != cert->data.data() + cert->data.size()) return AuthResult::cert_untrusted;
    if (auto r = check_cert(creds, x.get(), peer_id); r != AuthResult::ok) return r;

    if (auth.data.empty() || std::size_t(auth.data[0]) + 1 > auth.data.size()) return AuthResult::bad_signature;
    const Bytes alg(auth.data.begin() + 1, auth.data.begin() + 1 + auth.data[0]);
    const ByteView sig(auth.data.data() + 1 + auth.data[0], auth.data.size() - 1 - auth.data[0]);
    EVP_PKEY* pub = X509_get0_pubkey(x.get());
    if (!pub) return AuthResult::bad_signature;
    const EVP_MD* md = nullptr;
    const int base = EVP_PKEY_get_base_id(pub);
    if (alg == alg_sha256_rsa && base == EVP_PKEY_RSA) md = EVP_sha256();
    else if (alg == alg_ecdsa_sha256 && base == EVP_PKEY_EC) md = EVP_sha256();
    else if (alg == alg_ecdsa_sha384 && base == EVP_PKEY_EC) md = EVP_sha384();
    else return AuthResult::unsupported_method;
    EVP_MD_CTX* ctx = EVP_MD_CTX_new();
    const bool ok = ctx && EVP_DigestVerifyInit(ctx, nullptr, md, nullptr, pub) == 1 &&
                    EVP_DigestVerify(ctx, sig.data(), sig.size(), octets.data(), octets.size()) == 1;
    EVP_MD_CTX_free(ctx);
    return ok ? AuthResult::ok : AuthResult::bad_signature;
}

}  // namespace p3::setup
