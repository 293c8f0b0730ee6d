// Forward secrecy at rekey (DESIGN.md §Session life 3; docs/control-channel.md §5): each side
// makes a fresh X25519 key pair per rekey attempt, sends its public share in the rekey
// request / status, and mixes the shared secret into each of the four delivered keys:
//
//   new = HKDF-SHA256(salt = X25519 shared secret, IKM = delivered key || salt,
//                     info = "p3 rekey" || epoch (u32 BE) || which (u8), L = key length + 4)
//   which: 1 data p2s, 2 data s2p, 3 control p2s, 4 control s2p;  split into key || salt.
//
// A key delivered today (in a request, or an array sent earlier) and stolen later opens
// nothing: the private halves are gone. OpenSSL EVP (X25519, HKDF); control thread only. The
// private key lives in the EVP_PKEY (OpenSSL clears it when freed); the shared secret in a
// SecretBytes, wiped when it goes.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>

#include "common/secret.hpp"
#include "control/channel/framing.hpp"
#include "control/channel/limits.hpp"

typedef struct evp_pkey_st EVP_PKEY;

namespace p3::channel::dh {

using Share = std::array<std::uint8_t, limits::kDhShareLen>;

enum class Which : std::uint8_t { data_p2s = 1, data_s2p = 2, ctl_p2s = 3, ctl_s2p = 4 };

// One side's ephemeral X25519 key pair for one rekey attempt.
class Ephemeral {
public:
    // A fresh key pair (OpenSSL's CSPRNG); nullopt when OpenSSL failed.
    static std::optional<Ephemeral> generate();
    Ephemeral(Ephemeral&&) noexcept = default;
    Ephemeral& operator=(Ephemeral&&) noexcept = default;
    ~Ephemeral();

    const Share& share() const noexcept { return share_; }
    // The shared secret with the peer's share; nullopt when the share is bad (a low-order
    // point gives an all-zero secret, which OpenSSL refuses and so do we).
    std::optional<SecretBytes> agree(const Share& peer) const;

private:
    struct Free {
        void operator()(EVP_PKEY* k) const noexcept;
    };
    Ephemeral() = default;
    std::unique_ptr<EVP_PKEY, Free> key_;
    Share share_{};
};

// The new key from a delivered one and the shared secret (the formula above); invalid
// (empty) KeyMaterial on an OpenSSL failure or bad input.
KeyMaterial mix(const KeyMaterial& delivered, std::span<const std::uint8_t> secret, std::uint32_t epoch, Which which);

// The four keys of one rekey: as delivered, then (with rekey_dh) mixed.
struct RekeyKeys {
    KeyMaterial data_p2s, data_s2p, ctl_p2s, ctl_s2p;
};
// Mixes all four in place; false (keys untouched) on an OpenSSL failure.
bool mix_all(RekeyKeys& k, std::span<const std::uint8_t> secret, std::uint32_t epoch);

}  // namespace p3::channel::dh
