// Big-endian (network order) reads and writes of wire fields, byte by byte: no alignment
// assumptions and no casts to packed structs. One definition for every parser and builder of
// the control plane (setup messages, control channel); compilers turn these into one load or
// store plus a byte swap.
#pragma once

#include <cstdint>

namespace p3::be {

inline std::uint16_t get16(const std::uint8_t* p) noexcept {
    return static_cast<std::uint16_t>((p[0] << 8) | p[1]);
}
inline std::uint32_t get32(const std::uint8_t* p) noexcept {
    return (std::uint32_t(p[0]) << 24) | (std::uint32_t(p[1]) << 16) | (std::uint32_t(p[2]) << 8) | p[3];
}
inline std::uint64_t get64(const std::uint8_t* p) noexcept {
    return (std::uint64_t(get32(p)) << 32) | get32(p + 4);
}
inline void put16(std::uint8_t* p, std::uint16_t v) noexcept {
    p[0] = static_cast<std::uint8_t>(v >> 8);
    p[1] = static_cast<std::uint8_t>(v);
}
inline void put32(std::uint8_t* p, std::uint32_t v) noexcept {
    put16(p, static_cast<std::uint16_t>(v >> 16));
    put16(p + 2, static_cast<std::uint16_t>(v));
}
inline void put64(std::uint8_t* p, std::uint64_t v) noexcept {
    put32(p, static_cast<std::uint32_t>(v >> 32));
    put32(p + 4, static_cast<std::uint32_t>(v));
}

}  // namespace p3::be
