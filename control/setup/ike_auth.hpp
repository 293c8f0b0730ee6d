// Authentication of the setup exchange (RFC 7296 §2.15): the shared-key MIC, and digital
// signatures per RFC 7427 (AUTH method 14: an AlgorithmIdentifier then the signature; RSA
// PKCS#1 v1.5 with SHA-256, ECDSA with SHA-256/384, DER-encoded) over X.509 certificates
// checked against the configured CA, the current time, and the peer's identity.
//
// Credentials load from the files named in config::Local; private key and PSK files must not
// be readable by group or others (refused otherwise).
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "common/config.hpp"
#include "common/net.hpp"
#include "control/setup/ike_message.hpp"

#include <openssl/types.h>

namespace p3::setup {

struct OpenSslFree {
    void operator()(X509* p) const noexcept;
    void operator()(EVP_PKEY* p) const noexcept;
    void operator()(X509_STORE* p) const noexcept;
};

struct Credentials {
    SecretBytes psk;                                   // empty: no PSK
    std::unique_ptr<X509, OpenSslFree> cert;           // our certificate (sent in CERT)
    std::unique_ptr<EVP_PKEY, OpenSslFree> key;        // its private key
    std::unique_ptr<X509_STORE, OpenSslFree> ca;       // trust anchor for peer certificates
    Bytes ca_keyid;  // SHA-1 of the CA's SubjectPublicKeyInfo: what a CERTREQ names (§3.7)
    bool uses_certificates() const noexcept { return cert && key; }

    // From local.psk_file or local.certificate/private_key/ca. On failure returns nullopt and
    // sets error (never containing key bytes).
    static std::optional<Credentials> load(const config::Local& local, std::string& error);
    static std::optional<Credentials> from_psk(ByteView psk);
};

// Our identity as an ID payload: an IP literal -> ID_IPV4/6_ADDR, "CN=..." style -> ID_DER_ASN1_DN
// is not produced (certificates carry FQDN / e-mail SANs), a@b -> ID_RFC822_ADDR, else ID_FQDN;
// empty -> the address.
IdPayload make_id(const std::string& identity, const IpAddr& address);
std::string id_to_string(const IdPayload& id);  // for log lines
bool same_id(const IdPayload& a, const IdPayload& b);

enum class AuthResult { ok, bad_mic, bad_signature, no_credentials, cert_missing, cert_untrusted,
                        cert_expired, cert_id_mismatch, unsupported_method };
std::string_view to_string(AuthResult r) noexcept;

// signed_octets = RealMessage ‖ peer Nonce ‖ prf(SK_p, ID body) (§2.15).
Bytes signed_octets(std::uint16_t prf_alg, ByteView sk_p, ByteView real_message, ByteView peer_nonce,
                    const IdPayload& id);
std::optional<AuthPayload> make_auth(const Credentials& creds, std::uint16_t prf_alg, ByteView octets);
// cert: the peer's CERT payload (X.509) when it sent one.
AuthResult verify_auth(const Credentials& creds, std::uint16_t prf_alg, ByteView octets, const IdPayload& peer_id,
                       const AuthPayload& auth, const CertPayload* cert);

}  // namespace p3::setup
