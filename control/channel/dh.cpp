// X25519 shares and the HKDF mixing of rekey keys (dh.hpp), with OpenSSL EVP.
#include "control/channel/dh.hpp"

#include <openssl/core_names.h>
#include <openssl/evp.h>

#include <cstring>

#include "common/bytes.hpp"
#include "common/hkdf.hpp"

namespace p3::channel::dh {

namespace {

struct CtxFree {
    void operator()(EVP_PKEY_CTX* c) const noexcept { EVP_PKEY_CTX_free(c); }
};
using Ctx = std::unique_ptr<EVP_PKEY_CTX, CtxFree>;

}  // namespace

void Ephemeral::Free::operator()(EVP_PKEY* k) const noexcept { EVP_PKEY_free(k); }

Ephemeral::~Ephemeral() = default;

std::optional<Ephemeral> Ephemeral::generate() {
    Ctx ctx(EVP_PKEY_CTX_new_id(EVP_PKEY_X25519, nullptr));
    EVP_PKEY* raw = nullptr;
    if (!ctx || EVP_PKEY_keygen_init(ctx.get()) != 1 || EVP_PKEY_keygen(ctx.get(), &raw) != 1) return std::nullopt;
    Ephemeral e;
    e.key_.reset(raw);
    std::size_t n = e.share_.size();
    if (EVP_PKEY_get_raw_public_key(raw, e.share_.data(), &n) != 1 || n != e.share_.size()) return std::nullopt;
    return e;
}

std::optional<SecretBytes> Ephemeral::agree(const Share& peer) const {
    if (!key_) return std::nullopt;
    std::unique_ptr<EVP_PKEY, Free> pub(EVP_PKEY_new_raw_public_key(EVP_PKEY_X25519, nullptr, peer.data(), peer.size()));
    if (!pub) return std::nullopt;
    Ctx ctx(EVP_PKEY_CTX_new(key_.get(), nullptr));
    if (!ctx || EVP_PKEY_derive_init(ctx.get()) != 1 || EVP_PKEY_derive_set_peer(ctx.get(), pub.get()) != 1)
        return std::nullopt;
    std::size_t n = 0;
    if (EVP_PKEY_derive(ctx.get(), nullptr, &n) != 1 || n != limits::kDhShareLen) return std::nullopt;
    SecretBytes secret(n);
    if (EVP_PKEY_derive(ctx.get(), secret.data(), &n) != 1 || n != limits::kDhShareLen) return std::nullopt;
    // RFC 7748 §6.1: an all-zero result means a low-order share; OpenSSL 3 refuses it already,
    // and we check once more without a data-dependent branch per byte.
    std::uint8_t any = 0;
    for (std::size_t i = 0; i < n; ++i) any |= secret.data()[i];
    if (any == 0) return std::nullopt;
    return secret;
}

KeyMaterial mix(const KeyMaterial& delivered, std::span<const std::uint8_t> secret, std::uint32_t epoch, Which which) {
    if (!delivered.valid() || secret.size() != limits::kDhShareLen) return {};
    const SecretBytes ikm = delivered.to_wire();
    static constexpr char kLabel[] = "p3 rekey";
    constexpr std::size_t kLabelLen = sizeof kLabel - 1;
    std::uint8_t info[kLabelLen + 4 + 1];
    std::memcpy(info, kLabel, kLabelLen);
    be::put32(info + kLabelLen, epoch);
    info[kLabelLen + 4] = static_cast<std::uint8_t>(which);
    SecretBytes out(ikm.size());
    if (!hkdf_sha256(secret, ikm.span(), info, out.span())) return {};
    return KeyMaterial::from_wire(out.span());
}

bool mix_all(RekeyKeys& k, std::span<const std::uint8_t> secret, std::uint32_t epoch) {
    KeyMaterial a = mix(k.data_p2s, secret, epoch, Which::data_p2s);
    KeyMaterial b = mix(k.data_s2p, secret, epoch, Which::data_s2p);
    KeyMaterial c = mix(k.ctl_p2s, secret, epoch, Which::ctl_p2s);
    KeyMaterial d = mix(k.ctl_s2p, secret, epoch, Which::ctl_s2p);
    if (!a.valid() || !b.valid() || !c.valid() || !d.valid()) return false;
    k = RekeyKeys{std::move(a), std::move(b), std::move(c), std::move(d)};
    return true;
}

}  // namespace p3::channel::dh
