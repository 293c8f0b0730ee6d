// Authentication of the setup exchange (RFC 7296 §2.15): the shared-key MIC, and digital
// signatures per RFC 7427 (AUTH method 14: an AlgorithmIdentifier then the signature; RSA
// PKCS#1 v1.5 with SHA-256, ECDSA with SHA-256/384, DER-encoded) over X.509 certificates
// checked against the configured CA, the current time, and the peer's identity.
//
// Credentials are per remote: a remote with its own pre-shared key (remotes[].psk_file) is
// authenticated by that key and by nothing else; a remote without one by a certificate from
// the configured CA that names exactly the remote's identity (no wildcard), and by nothing
// else. The remote is chosen by the identity the peer claims, before any check, so one
// remote's key or certificate never authenticates another. Key files are opened through
// common/keyfile (no symbolic link, owner-only checked on the opened file).
#pragma once

#include <unordered_map>
#include <unordered_set>
#include <memory>
#include <optional>
#include <string>

#include "common/config.hpp"
#include "common/keyfile.hpp"
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
    std::unordered_map<std::uint32_t, SecretBytes> psks;       // by remote id: that remote's own key
    std::unordered_set<std::uint32_t> psks_absent;  // remotes whose psk_file is not there: no credential at all
    std::unique_ptr<X509, OpenSslFree> cert;           // our certificate (sent in CERT)
    std::unique_ptr<EVP_PKEY, OpenSslFree> key;        // its private key
    std::unique_ptr<X509_STORE, OpenSslFree> ca;       // trust anchor for peer certificates
    Bytes ca_keyid;  // SHA-1 of the CA's SubjectPublicKeyInfo: what a CERTREQ names (§3.7)
    bool uses_certificates() const noexcept { return cert && key; }
    // The remote's own pre-shared key; nullptr: the remote authenticates by certificate.
    const SecretBytes* psk_for(std::uint32_t remote_id) const noexcept;

    // Everything the configuration names: local.certificate/private_key/ca and the psk_file of
    // every remote that uses the setup exchange. A remote whose psk_file does not exist yet
    // is left without a key (logged, P3-W0110: it stays down); a remote with no credential at
    // all is logged (P3-W0418). Any other unusable file: nullopt, error says why (never key
    // bytes), reason says which code applies.
    static std::optional<Credentials> load(const config::Config& cfg, std::string& error, Reason& reason);
    // Certificate authentication only (local.certificate/private_key/ca).
    static std::optional<Credentials> load(const config::Local& local, std::string& error);
    // A key for one remote; nullopt if shorter than keyfile::kMinPsk.
    static std::optional<Credentials> from_psk(std::uint32_t remote_id, ByteView psk);
    bool add_psk(std::uint32_t remote_id, ByteView psk);

    // At run time (a reload, p3ctl remote add/set): re-read one remote's psk_file with load's
    // rules (no symbolic link, owner-only, at least 16 bytes, no other remote's key). An
    // absent file leaves the remote without a key (logged, as at load); no psk_file, or
    // static keys, leaves it none either. False only for an unusable file: why says what is
    // wrong (never key bytes) and the old key stays. The next exchange uses what is here.
    bool reload_psk(const config::Remote& r, std::string& why);
    void remove_psk(std::uint32_t remote_id);  // the remote is gone: its key wiped

private:
    keyfile::Status read_remote_psk(const config::Remote& r, SecretBytes& key, std::string& why) const;
};

// Our identity as an ID payload: an IP literal -> ID_IPV4/6_ADDR, "CN=..." style -> ID_DER_ASN1_DN
// is not produced (certificates carry FQDN / e-mail SANs), a@b -> ID_RFC822_ADDR, else ID_FQDN;
// empty -> the address.
IdPayload make_id(const std::string& identity, const IpAddr& address);
std::string id_to_string(const IdPayload& id);  // for log lines
bool same_id(const IdPayload& a, const IdPayload& b);

enum class AuthResult { ok, bad_mic, bad_signature, no_credentials, cert_missing, cert_untrusted,
                        cert_expired, cert_id_mismatch, unsupported_method, wrong_method };
std::string_view to_string(AuthResult r) noexcept;

// signed_octets = RealMessage ‖ peer Nonce ‖ prf(SK_p, ID body) (§2.15).
Bytes signed_octets(std::uint16_t prf_alg, ByteView sk_p, ByteView real_message, ByteView peer_nonce,
                    const IdPayload& id);
// Our AUTH towards remote_id: its pre-shared key if it has one, else our certificate's key.
std::optional<AuthPayload> make_auth(const Credentials& creds, std::uint32_t remote_id, std::uint16_t prf_alg,
                                     ByteView octets);
// The peer's AUTH, checked only with remote_id's credential: its pre-shared key if it has one
// (a signature is then wrong_method), else a certificate naming peer_id (a MIC is then
// wrong_method). cert: the peer's CERT payload (X.509) when it sent one.
AuthResult verify_auth(const Credentials& creds, std::uint32_t remote_id, std::uint16_t prf_alg, ByteView octets,
                       const IdPayload& peer_id, const AuthPayload& auth, const CertPayload* cert);

}  // namespace p3::setup
