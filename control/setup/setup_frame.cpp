// Setup datagrams in and out of Ethernet/IP/UDP (see setup_frame.hpp).
#include "control/setup/setup_frame.hpp"

#include <cstring>

#include "common/headers.hpp"
#include "common/wire_limits.hpp"

namespace p3::setup {

namespace {

constexpr std::size_t kEth = wire::kEthHeaderLen, kV4 = wire::kIpv4HeaderLen, kV6 = wire::kIpv6HeaderLen, kUdp = wire::kUdpHeaderLen;
constexpr std::uint8_t kMarker[4] = {0, 0, 0, 0};
constexpr std::uint8_t kProtoUdp = wire::kIpProtoUdp;

}  // namespace

std::optional<SetupFrame> parse_setup_frame(ByteView frame) noexcept {
    const std::uint8_t* p = frame.data();
    const std::size_t len = frame.size();
    SetupFrame f;
    std::size_t l4 = 0;
    if (len >= kEth + kV4 && get16(p + 12) == wire::kEtherTypeIpv4 && (p[kEth] >> 4) == 4) {
        const std::size_t ihl = std::size_t(p[kEth] & 0x0f) * 4;
        if (ihl < kV4 || p[kEth + 9] != kProtoUdp || len < kEth + ihl) return std::nullopt;
        l4 = kEth + ihl;
        f.from.addr.family = f.to.addr.family = 4;
        std::memcpy(f.from.addr.bytes.data(), p + kEth + 12, 4);
        std::memcpy(f.to.addr.bytes.data(), p + kEth + 16, 4);
    } else if (len >= kEth + kV6 && get16(p + 12) == wire::kEtherTypeIpv6 && (p[kEth] >> 4) == 6 && p[kEth + 6] == kProtoUdp) {
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
    const std::uint8_t* src = from.addr.bytes.data();
    const std::uint8_t* dst = to.addr.bytes.data();
    // IPv4 with DF: a setup datagram is never fragmented by us.
    if (v6) hdr::put_ipv6(p, ulen, kProtoUdp, wire::kTtl, src, dst);
    else hdr::put_ipv4(p, ip + ulen, wire::kTtl, kProtoUdp, src, dst);
    std::uint8_t* u = p + ip;
    hdr::put_udp(u, from.port, to.port, ulen);
    std::size_t off = kUdp;
    if (marker) {
        std::memcpy(u + off, kMarker, 4);
        off += 4;
    }
    if (!datagram.empty()) std::memcpy(u + off, datagram.data(), datagram.size());
    // UDP checksum over the pseudo-header (mandatory for IPv6, sent for IPv4 too).
    hdr::set_udp_checksum(v6, src, dst, u, ulen);
    return true;
}

}  // namespace p3::setup
