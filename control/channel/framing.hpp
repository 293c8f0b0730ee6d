// The control-layer packet (DESIGN.md §Control channel; byte layout in docs/control-channel.md
// §Framing). A control message leaves as an ordinary-looking inner packet:
//
//   inner IPv4 (20) or IPv6 (40): src = our WAN address, dst = the peer's, protocol TCP,
//                                 TTL 64, DF, DSCP/ECN 0 (the outer header copies them)
//   TCP (20): both ports = the session port, flags PSH|ACK, checksum valid
//   epoch (4) | sequence (8) | AES-GCM(message || zero padding) | tag (16)
//
// Every control packet is exactly limits::kControlInnerLen (766) bytes, whatever the message
// and the inner family: the zero padding inside the seal fills it. Its plaintext in the data
// layer (inner + 2-byte trailer) is then 768 bytes, three size-hiding buckets, so with size
// hiding on or off every control packet has one outer size (docs/control-channel.md §1).
//
// sealed with the control key of `epoch` in the sending direction: nonce = salt (4) ||
// sequence (8), AAD = epoch || sequence. The dataplane then encrypts the whole inner packet
// with the data key like any LAN packet. The receiving dataplane, finding an inner
// destination equal to its own WAN address, hands the inner packet to the control thread,
// which calls parse_packet() then open_sealed().
// Control thread only (OpenSSL EVP; allocation-free apart from the cipher context).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

#include "common/net.hpp"
#include "common/secret.hpp"
#include "control/channel/limits.hpp"

namespace p3::channel {

// A key and its salt (one direction of one epoch).
struct KeyMaterial {
    SecretBytes key;   // 16 or 32 bytes
    SecretBytes salt;  // 4 bytes
    bool valid() const noexcept {
        return (key.size() == limits::kAes128KeyLen || key.size() == limits::kAes256KeyLen) &&
               salt.size() == limits::kSaltLen;
    }
    KeyMaterial clone() const { return KeyMaterial{key.clone(), salt.clone()}; }
    // From key || salt (20 or 36 bytes); invalid (empty) otherwise.
    static KeyMaterial from_wire(std::span<const std::uint8_t> material);
    // key || salt, for the wire.
    SecretBytes to_wire() const;
};

struct FrameAddrs {
    IpAddr local;   // our WAN address
    IpAddr peer;    // the peer appliance's WAN address (same family)
    std::uint16_t port = 5653;  // the session port (both TCP ports)
};

// What the caller varies per packet besides the key.
struct FrameParams {
    std::uint32_t epoch = 0;
    std::uint64_t seq = 0;        // control sequence, from 1
    std::uint16_t ip_id = 0;      // IPv4 identification (random per packet)
    std::uint32_t tcp_seq = 0;    // advances by payload length, like a byte stream
    std::uint32_t tcp_ack = 0;
};

enum class FrameError : std::uint8_t {
    none = 0,
    too_short,
    not_ip,          // version nibble, IHL, or family not the session's
    not_tcp,         // protocol / next header
    bad_length,      // IP length disagrees with the packet, or the packet is not kControlInnerLen
    wrong_address,   // src is not the peer or dst is not us
    wrong_port,      // TCP ports are not the session port, or data offset is not 5
    fragment,        // fragmented inner packet (we never send one)
    auth_failed,     // the tag did not verify under the control key
    count_
};
std::string_view frame_error_name(FrameError e) noexcept;

struct SealedView {
    std::uint32_t epoch = 0;
    std::uint64_t seq = 0;
    std::span<const std::uint8_t> ciphertext;  // without the tag
    std::span<const std::uint8_t> tag;
};

// Room for the message inside the fixed-length packet of this family (IPv4: 698, IPv6: 678).
std::size_t message_room(const FrameAddrs& a) noexcept;

// Builds the inner packet into out; returns its length (always kControlInnerLen), or 0 if out
// is too small, the message does not fit, the key is
// invalid, the addresses are not one family, or OpenSSL failed.
std::size_t seal_packet(const FrameAddrs& a, const KeyMaterial& key, const FrameParams& fp,
                        std::span<const std::uint8_t> msg, std::span<std::uint8_t> out);

// Checks the fixed headers (family, protocol, addresses, ports, lengths) and splits the sealed
// part. Does not decrypt.
std::optional<SealedView> parse_packet(const FrameAddrs& a, std::span<const std::uint8_t> pkt,
                                       FrameError* why = nullptr);

// Decrypts s into out (the message and its padding); returns the plaintext length, or
// nullopt when the tag does not verify (out is wiped then).
std::optional<std::size_t> open_sealed(const KeyMaterial& key, const SealedView& s,
                                       std::span<std::uint8_t> out);

// AES-GCM with nonce salt || seq (what both the control layer and, in tests, a model of the
// data layer use). out must hold plain.size() + 16 (seal) / ct.size() (open).
bool gcm_seal(const KeyMaterial& k, std::uint64_t seq, std::span<const std::uint8_t> aad,
              std::span<const std::uint8_t> plain, std::span<std::uint8_t> out) noexcept;
bool gcm_open(const KeyMaterial& k, std::uint64_t seq, std::span<const std::uint8_t> aad,
              std::span<const std::uint8_t> ct, std::span<const std::uint8_t> tag,
              std::span<std::uint8_t> out) noexcept;

}  // namespace p3::channel
