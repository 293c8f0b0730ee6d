// Size hiding (seed spec §2.1.5, DESIGN.md §Wire format; the exact algorithm is a wire
// contract written down in docs/wire-format.md). Per session, off by default.
//
// Sender, for an inner packet of L bytes under sequence s:
//   1. plaintext length T = round_up(L + 2, kSizeHideBucket), lowered (in steps of 4, never
//      below the plain ESP-style length) so the outer packet fits the WAN MTU;
//      p = T - L - 2 pad bytes.
//   2. body B = inner || pad, N = L + p bytes, pad[i] = inner[i mod L] (the packet's own bytes;
//      0 when L = 0, a dummy packet).
//   3. B is rotated left by r = rotation(hide_key, s, N) bytes; the trailer (pad length = p,
//      next header) follows unrotated, then the whole plaintext is sealed as usual.
// Receiver, after the tag verified: N = T - 2, rotate B right by the same r, then read the
// trailer as usual. The pad bytes are not checked.
//   hide_key  = first 8 bytes, big-endian, of HKDF-SHA256(IKM = key || salt, no salt,
//               info = "p3 size hiding", length 8)             (per key; GcmKey::hide_key())
//   rotation  = z = splitmix64(hide_key XOR s); r = ((z >> 32) * N) >> 32   (0 <= r < N)
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "common/wire_limits.hpp"

namespace p3::wire {

// splitmix64's output function (Steele, Lea, Flood 2014).
constexpr std::uint64_t splitmix64(std::uint64_t x) noexcept {
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

// Rotation for body length n (> 0) under sequence seq.
constexpr std::uint32_t sizehide_rotation(std::uint64_t hide_key, std::uint64_t seq, std::size_t n) noexcept {
    const std::uint64_t z = splitmix64(hide_key ^ seq);
    return static_cast<std::uint32_t>(((z >> 32) * static_cast<std::uint64_t>(n)) >> 32);
}

// Plaintext length T (inner + pad + 2) for an inner packet of inner_len bytes with size
// hiding on; max_plain caps T (0 = no cap). Never below the plain length (inner + 2, aligned
// to 4), always a multiple of 4.
std::size_t sizehide_plain_len(std::size_t inner_len, std::size_t max_plain) noexcept;
// The same without size hiding: inner + 2 rounded up to 4.
constexpr std::size_t plain_len(std::size_t inner_len) noexcept {
    return (inner_len + kTrailerFixed + kPadAlign - 1) / kPadAlign * kPadAlign;
}

// HKDF-SHA256(key || salt, info "p3 size hiding") -> 8 bytes, big-endian. Control path.
// 0 on an OpenSSL failure (the caller treats the key as invalid).
std::uint64_t sizehide_key(std::span<const std::uint8_t> key, std::span<const std::uint8_t> salt) noexcept;

// In-memory forms on a contiguous body (the wire code also handles scattered mbufs):
// fill pad from the inner bytes, then rotate left by r: out[i] = body[(i + r) mod n].
void sizehide_fill_pad(std::uint8_t* body, std::size_t inner_len, std::size_t n) noexcept;
void sizehide_rotate_left(const std::uint8_t* in, std::uint8_t* out, std::size_t n, std::uint32_t r) noexcept;
// Undo: out[(i + r) mod n] = in[i].
void sizehide_rotate_right(const std::uint8_t* in, std::uint8_t* out, std::size_t n, std::uint32_t r) noexcept;

}  // namespace p3::wire
