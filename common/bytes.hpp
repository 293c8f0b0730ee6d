// Big-endian (network order) reads and writes of wire fields: the one definition for every
// parser and builder of both planes (setup messages, control channel, encapsulation, the
// dataplane's packet helpers in dataplane/pkt.hpp). Fields are copied with memcpy, never read
// through a cast to a packed or unaligned struct, so any offset is fine; compilers turn each
// into one load or store plus a byte swap. Header-only: the packet path calls these per field.
#pragma once

#include <bit>
#include <cstdint>
#include <cstring>

namespace p3::be {

namespace detail {
inline std::uint16_t swap(std::uint16_t v) noexcept {
    return std::endian::native == std::endian::little ? __builtin_bswap16(v) : v;
}
inline std::uint32_t swap(std::uint32_t v) noexcept {
    return std::endian::native == std::endian::little ? __builtin_bswap32(v) : v;
}
inline std::uint64_t swap(std::uint64_t v) noexcept {
    return std::endian::native == std::endian::little ? __builtin_bswap64(v) : v;
}
template <class T>
inline T load(const void* p) noexcept {
    T v;
    std::memcpy(&v, p, sizeof v);
    return swap(v);
}
template <class T>
inline void store(void* p, T v) noexcept {
    v = swap(v);
    std::memcpy(p, &v, sizeof v);
}
}  // namespace detail

inline std::uint16_t get16(const void* p) noexcept { return detail::load<std::uint16_t>(p); }
inline std::uint32_t get32(const void* p) noexcept { return detail::load<std::uint32_t>(p); }
inline std::uint64_t get64(const void* p) noexcept { return detail::load<std::uint64_t>(p); }
inline void put16(void* p, std::uint16_t v) noexcept { detail::store(p, v); }
inline void put32(void* p, std::uint32_t v) noexcept { detail::store(p, v); }
inline void put64(void* p, std::uint64_t v) noexcept { detail::store(p, v); }

// Appending to a growing message (std::vector<std::uint8_t> or alike): the setup codec's
// builders write field after field this way. Byte by byte, most significant first (push_back
// keeps GCC's bounds checker quiet where a resize and a store would not).
template <class Buf>
inline void append16(Buf& b, std::uint16_t v) {
    b.push_back(static_cast<std::uint8_t>(v >> 8));
    b.push_back(static_cast<std::uint8_t>(v));
}
template <class Buf>
inline void append32(Buf& b, std::uint32_t v) {
    append16(b, static_cast<std::uint16_t>(v >> 16));
    append16(b, static_cast<std::uint16_t>(v));
}
template <class Buf>
inline void append64(Buf& b, std::uint64_t v) {
    append32(b, static_cast<std::uint32_t>(v >> 32));
    append32(b, static_cast<std::uint32_t>(v));
}

}  // namespace p3::be
