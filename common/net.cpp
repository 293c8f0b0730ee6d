#include "common/net.hpp"

#include <arpa/inet.h>

#include <cstdio>
#include <string>

namespace p3 {

IpAddr IpAddr::v4(std::uint32_t h) noexcept {
    IpAddr a;
    a.family = 4;
    a.bytes[0] = std::uint8_t(h >> 24);
    a.bytes[1] = std::uint8_t(h >> 16);
    a.bytes[2] = std::uint8_t(h >> 8);
    a.bytes[3] = std::uint8_t(h);
    return a;
}

std::optional<IpAddr> IpAddr::parse(std::string_view text) {
    if (text.empty() || text.size() > 45) return std::nullopt;
    std::string s(text);
    IpAddr a;
    if (s.find(':') == std::string::npos) {
        if (inet_pton(AF_INET, s.c_str(), a.bytes.data()) != 1) return std::nullopt;
        a.family = 4;
    } else {
        if (inet_pton(AF_INET6, s.c_str(), a.bytes.data()) != 1) return std::nullopt;
        a.family = 6;
    }
    return a;
}

std::string IpAddr::str() const {
    char buf[INET6_ADDRSTRLEN] = "";
    if (family == 4) inet_ntop(AF_INET, bytes.data(), buf, sizeof buf);
    else if (family == 6) inet_ntop(AF_INET6, bytes.data(), buf, sizeof buf);
    else return "unset";
    return buf;
}

namespace {
bool prefix_bits_equal(const IpAddr& a, const IpAddr& b, unsigned len) {
    for (unsigned i = 0; i < len / 8; ++i)
        if (a.bytes[i] != b.bytes[i]) return false;
    if (len % 8) {
        std::uint8_t m = std::uint8_t(0xff << (8 - len % 8));
        if ((a.bytes[len / 8] & m) != (b.bytes[len / 8] & m)) return false;
    }
    return true;
}
}  // namespace

std::optional<Prefix> Prefix::parse(std::string_view text, bool strict) {
    Prefix p;
    auto slash = text.find('/');
    auto addr = IpAddr::parse(text.substr(0, slash));
    if (!addr) return std::nullopt;
    p.addr = *addr;
    unsigned max = addr->is_v4() ? 32 : 128;
    if (slash == std::string_view::npos) {
        p.len = std::uint8_t(max);
        return p;
    }
    auto lens = text.substr(slash + 1);
    if (lens.empty() || lens.size() > 3) return std::nullopt;
    unsigned len = 0;
    for (char c : lens) {
        if (c < '0' || c > '9') return std::nullopt;
        len = len * 10 + unsigned(c - '0');
    }
    if (len > max) return std::nullopt;
    p.len = std::uint8_t(len);
    if (strict) {
        IpAddr masked = p.addr;
        for (unsigned bit = len; bit < max; ++bit)
            masked.bytes[bit / 8] &= std::uint8_t(~(0x80 >> (bit % 8)));
        if (masked != p.addr) return std::nullopt;
    }
    return p;
}

bool Prefix::contains(const IpAddr& a) const noexcept {
    return a.family == addr.family && prefix_bits_equal(addr, a, len);
}

bool Prefix::overlaps(const Prefix& o) const noexcept {
    if (o.addr.family != addr.family) return false;
    return prefix_bits_equal(addr, o.addr, len < o.len ? len : o.len);
}

std::string Prefix::str() const { return addr.str() + "/" + std::to_string(len); }

std::optional<MacAddr> MacAddr::parse(std::string_view text) {
    MacAddr m;
    if (text.size() != 17) return std::nullopt;
    for (int i = 0; i < 6; ++i) {
        auto hex = [](char c) -> int {
            if (c >= '0' && c <= '9') return c - '0';
            if (c >= 'a' && c <= 'f') return c - 'a' + 10;
            if (c >= 'A' && c <= 'F') return c - 'A' + 10;
            return -1;
        };
        int hi = hex(text[i * 3]), lo = hex(text[i * 3 + 1]);
        if (hi < 0 || lo < 0) return std::nullopt;
        if (i < 5 && text[i * 3 + 2] != ':') return std::nullopt;
        m.bytes[i] = std::uint8_t(hi * 16 + lo);
    }
    return m;
}

std::string MacAddr::str() const {
    char buf[18];
    std::snprintf(buf, sizeof buf, "%02x:%02x:%02x:%02x:%02x:%02x", bytes[0], bytes[1], bytes[2],
                  bytes[3], bytes[4], bytes[5]);
    return buf;
}

std::optional<std::uint8_t> netmask_len(std::string_view dotted) {
    auto a = IpAddr::parse(dotted);
    if (!a || !a->is_v4()) return std::nullopt;
    std::uint32_t m = a->v4_host();
    std::uint8_t len = 0;
    while (len < 32 && (m & (0x80000000u >> len))) ++len;
    if (len < 32 && (m << len) != 0) return std::nullopt;
    return len;
}

}  // namespace p3
