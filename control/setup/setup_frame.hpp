// The setup datagram as p3d's dataplane carries it, apart from DPDK so it can be tested and
// fuzzed alone: parse_setup_frame reads the Ethernet frame a worker hands to the control
// thread (IPv4 or IPv6, then UDP to local.port) down to the IKE message, stripping RFC 3948's
// non-ESP marker; build_setup_packet writes the IP packet that answers it (the workers add
// Ethernet and route it out of the WAN).
//
// Both are pure functions of their bytes: no state is kept per datagram. Whether a peer used
// the marker travels with the datagram (Framing) into the engine, which remembers it on the
// exchange it belongs to, so nothing grows with the number of peers that send one.
#pragma once

#include <cstddef>
#include <optional>
#include <span>

#include "control/setup/session_sink.hpp"

namespace p3::setup {

struct SetupFrame {
    Endpoint from, to;
    ByteView payload;  // the IKE message (marker stripped), inside the frame's bytes
    Framing framing = Framing::plain;
};

// nullopt: not a well-formed IPv4/IPv6 UDP frame (truncated, bad lengths, not UDP).
std::optional<SetupFrame> parse_setup_frame(ByteView frame) noexcept;

// IP + UDP header + (marker) + datagram, UDP checksum set; IPv4 with DF. The packet's size.
std::size_t setup_packet_size(const Endpoint& to, Framing framing, std::size_t datagram) noexcept;
// Writes it into out (at least setup_packet_size bytes). False: families differ, or too large.
bool build_setup_packet(const Endpoint& from, const Endpoint& to, Framing framing, ByteView datagram,
                        std::span<std::uint8_t> out) noexcept;

}  // namespace p3::setup
