// Address value types shared by the configuration, the dataplane and the control plane.
// Plain values in network byte order; parsing and printing live in net.cpp.
#pragma once

#include <array>
#include <compare>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace p3 {

struct IpAddr {
    std::uint8_t family = 0;            // 4 or 6; 0 = unset
    std::array<std::uint8_t, 16> bytes{};  // v4 in bytes[0..3]

    bool is_v4() const noexcept { return family == 4; }
    bool is_v6() const noexcept { return family == 6; }
    // v4 address as a host-order integer (the form rte_lpm takes).
    std::uint32_t v4_host() const noexcept {
        return (std::uint32_t(bytes[0]) << 24) | (std::uint32_t(bytes[1]) << 16) |
               (std::uint32_t(bytes[2]) << 8) | bytes[3];
    }
    static IpAddr v4(std::uint32_t host_order) noexcept;

    static std::optional<IpAddr> parse(std::string_view text);  // "192.0.2.1", "2001:db8::1"
    std::string str() const;
    auto operator<=>(const IpAddr&) const = default;
};

struct Prefix {
    IpAddr addr;            // host bits cleared when parsed as a subnet
    std::uint8_t len = 0;   // 0..32 or 0..128

    // "10.2.0.0/24"; a bare address is a host route (/32, /128). With strict, host bits
    // set below the mask are an error (a subnet); without, they are kept (an interface address).
    static std::optional<Prefix> parse(std::string_view text, bool strict = true);
    bool contains(const IpAddr& a) const noexcept;
    bool overlaps(const Prefix& o) const noexcept;
    std::string str() const;
    auto operator<=>(const Prefix&) const = default;
};

struct MacAddr {
    std::array<std::uint8_t, 6> bytes{};
    static std::optional<MacAddr> parse(std::string_view text);  // "02:00:00:00:00:fe"
    std::string str() const;
    auto operator<=>(const MacAddr&) const = default;
};

// Prefix length from a dotted netmask ("255.255.255.0" -> 24); nullopt if not contiguous.
std::optional<std::uint8_t> netmask_len(std::string_view dotted);

}  // namespace p3
