// Size hiding helpers (the contract is in sizehide.hpp and docs/wire-format.md).
#include "common/sizehide.hpp"

#include <openssl/crypto.h>

#include <cstring>

#include "common/hkdf.hpp"

namespace p3::wire {

std::size_t sizehide_plain_len(std::size_t inner_len, std::size_t max_plain) noexcept {
    const std::size_t base = plain_len(inner_len);
    std::size_t t = (inner_len + kTrailerFixed + kSizeHideBucket - 1) / kSizeHideBucket * kSizeHideBucket;
    if (max_plain != 0 && t > max_plain) t = max_plain / kPadAlign * kPadAlign;
    return t < base ? base : t;
}

std::uint64_t sizehide_key(std::span<const std::uint8_t> key, std::span<const std::uint8_t> salt) noexcept {
    std::uint8_t ikm[kAes256KeyLen + kSaltLen];
    if (key.size() > kAes256KeyLen || salt.size() != kSaltLen) return 0;
    std::memcpy(ikm, key.data(), key.size());
    std::memcpy(ikm + key.size(), salt.data(), kSaltLen);
    static constexpr char kInfo[] = "p3 size hiding";
    std::uint8_t out[8];
    const bool ok = hkdf_sha256({}, {ikm, key.size() + kSaltLen},
                                {reinterpret_cast<const std::uint8_t*>(kInfo), sizeof kInfo - 1}, out);
    OPENSSL_cleanse(ikm, sizeof ikm);
    if (!ok) return 0;
    std::uint64_t v = 0;
    for (std::uint8_t b : out) v = (v << 8) | b;
    OPENSSL_cleanse(out, sizeof out);
    return v;
}

void sizehide_fill_pad(std::uint8_t* body, std::size_t inner_len, std::size_t n) noexcept {
    if (inner_len == 0) {
        std::memset(body, 0, n);
        return;
    }
    // pad[i] = inner[i mod L], copied in runs of up to L bytes.
    for (std::size_t i = inner_len; i < n;) {
        const std::size_t src = (i - inner_len) % inner_len;
        std::size_t run = inner_len - src;
        if (run > n - i) run = n - i;
        std::memcpy(body + i, body + src, run);
        i += run;
    }
}

void sizehide_rotate_left(const std::uint8_t* in, std::uint8_t* out, std::size_t n, std::uint32_t r) noexcept {
    if (n == 0) return;
    std::memcpy(out, in + r, n - r);
    std::memcpy(out + (n - r), in, r);
}

void sizehide_rotate_right(const std::uint8_t* in, std::uint8_t* out, std::size_t n, std::uint32_t r) noexcept {
    if (n == 0) return;
    std::memcpy(out + r, in, n - r);
    std::memcpy(out, in + (n - r), r);
}

}  // namespace p3::wire
