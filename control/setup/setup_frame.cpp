// Setup datagrams in and out of Ethernet/IP/UDP (see setup_frame.hpp).
#include "control/setup/setup_frame.hpp"

#include <cstring>

namespace p3::setup {

namespace {

constexpr std::size_t kEth = 14, kV4 = 20, kV6 = 40, kUdp = 8;
constexpr std::uint8_t kMarker[4] = {0, 0, 0, 0};
constexpr std::uint8_t kTtl = 64;
constexpr std::uint8_t kProtoUdp = 17;

// The RFC 1071 sum of b (folded, not inverted).
std::uint32_t sum16(const std::uint8_t* b, std::size_t n, std::uint32_t acc = 0) noexcept {
    for (std::size_t i = 0; i + 1 < n; i += 2) acc += std::uint32_t(b[i] << 8 | b[i + 1]);
    if (n & 1) acc += std::uint32_t(b[n - 1] << 8);
    return acc;
}
std::uint16_t fold(std::uint32_t acc) noexcept {
    while (acc >> 16) acc = (acc & 0xffff) + (acc >> 16);
    return std::uint16_t(acc);
}
void put16at(std::uint8_t* p, std::size_t n) noexcept {
    p[0] = std::uint8_t(n >> 8);
    p[1] = std::uint8_t(n);
}

}  // namespace

std::optional<SetupFrame> parse_setup_frame(ByteView frame) noexcept {
    const std::uint8_t* p = frame.data();
    const std::size_t len = frame.size();
    SetupFrame f;
    std::size_t l4 = 0;
    if (len >= kEth + kV4 && get16(p + 12) == 0x0800 && (p[kEth] >> 4) == 4) {
        const std::size_t ihl = std::size_t(p[kEth] & 0x0f) * 4;
        if (ihl < kV4 || p[kEth + 9] != kProtoUdp || len < kEth + ihl) return std::nullopt;
        l4 = kEth + ihl;
        f.from.addr.family = f.to.addr.family = 4;
        std::memcpy(f.from.addr.bytes.data(), p + kEth + 12, 4);
        std::memcpy(f.to.addr.bytes.data(), p + kEth + 16, 4);
    } else if (len >= kEth + kV6 && get16(p + 12) == 0x86dd && (p[kEth] >> 4) == 6 && p[kEth + 6] == kProtoUdp) {
        l4 = kEth + kV6;
        f.from.addr.family = f.to.addr.family = 6;
        std::memcpy(f.from.addr.bytes.data(), p + kEth + 8, 16);
        std::memcpy(f.to.addr.bytes.data(), p + kEth + 24, 16);
    } else {
        return std::nullopt;
    }
    if (len < l4 + kUdp) return std::nullopt;
    f.from.port = get16(p + l4);
    f.to.port = get16(p + l4 + 2);
    const std::size_t ulen = get16(p + l4 + 4);
    if (ulen < kUdp || l4 + ulen > len) return std::nullopt;
    f.payload = ByteView(p + l4 + kUdp, ulen - kUdp);
    if (f.payload.size() >= 4 && std::memcmp(f.payload.data(), kMarker, 4) == 0) {
        f.framing = Framing::non_esp_marker;
        f.payload = f.payload.subspan(4);
    }
    return f;
}

std::size_t setup_packet_size(const Endpoint& to, Framing framing, std::size_t datagram) noexcept {
    return (to.addr.is_v6() ? kV6 : kV4) + kUdp + (framing == Framing::non_esp_marker ? 4 : 0) + datagram;
}

bool build_setup_packet(const Endpoint& from, const Endpoint& to, Framing framing, ByteView datagram,
                        std::span<std::uint8_t> out) noexcept {
    if (from.addr.family != to.addr.family) return false;
    const bool v6 = to.addr.is_v6();
    const bool marker = framing == Framing::non_esp_marker;
    const std::size_t ip = v6 ? kV6 : kV4;
    const std::size_t ulen = kUdp + (marker ? 4 : 0) + datagram.size();
    if (ulen > 0xffff - ip || out.size() < ip + ulen) return false;
    std::uint8_t* p = out.data();
    std::memset(p, 0, ip + kUdp);
    if (v6) {
        p[0] = 0x60;
        put16at(p + 4, ulen);
        p[6] = kProtoUdp;
        p[7] = kTtl;
        std::memcpy(p + 8, from.addr.bytes.data(), 16);
        std::memcpy(p + 24, to.addr.bytes.data(), 16);
    } else {
        p[0] = 0x45;
        put16at(p + 2, ip + ulen);
        p[6] = 0x40;  // DF: a setup datagram is never fragmented by us
        p[8] = kTtl;
        p[9] = kProtoUdp;
        std::memcpy(p + 12, from.addr.bytes.data(), 4);
        std::memcpy(p + 16, to.addr.bytes.data(), 4);
        put16at(p + 10, std::uint16_t(~fold(sum16(p, kV4))));
    }
    std::uint8_t* u = p + ip;
    put16at(u, from.port);
    put16at(u + 2, to.port);
    put16at(u + 4, ulen);
    std::size_t off = kUdp;
    if (marker) {
        std::memcpy(u + off, kMarker, 4);
        off += 4;
    }
    if (!datagram.empty()) std::memcpy(u + off, datagram.data(), datagram.size());
    // UDP checksum over the pseudo-header (mandatory for IPv6, sent for IPv4 too).
    const std::size_t alen = v6 ? 16 : 4;
    std::uint32_t acc = sum16(from.addr.bytes.data(), alen);
    acc = sum16(to.addr.bytes.data(), alen, acc);
    acc += kProtoUdp + std::uint32_t(ulen);
    acc = sum16(u, ulen, acc);
    std::uint16_t c = std::uint16_t(~fold(acc));
    if (c == 0) c = 0xffff;
    put16at(u + 6, c);
    return true;
}

}  // namespace p3::setup
