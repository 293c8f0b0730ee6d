// Every protocol size and limit shared by more than one plane, in one place: the P3 wire
// format and the crypto core (DESIGN.md §Wire format; docs/wire-format.md), and the IP, UDP
// and TCP numbers p3 reads and writes. Nothing here changes at run time. A plane's own tuning
// (bursts, rings, tables, timers, message sizes) stays with its plane: dataplane/limits.hpp,
// control/channel/limits.hpp, control/setup/ike_limits.hpp.
#pragma once

#include <cstddef>
#include <cstdint>

namespace p3::wire {

// --- P3 header, trailer, tag -------------------------------------------------------
inline constexpr std::size_t kFlagsLen = 4;        // P3 Flags (0 on IP, kFlagUdp in UDP)
inline constexpr std::size_t kIdLen = 4;           // P3 ID
inline constexpr std::size_t kSeqLen = 8;          // Sequence (explicit GCM nonce part)
inline constexpr std::size_t kP3HeaderLen = kFlagsLen + kIdLen + kSeqLen;  // 16
inline constexpr std::size_t kIcvLen = 16;         // GCM tag
inline constexpr std::size_t kSaltLen = 4;         // part of the key material (GCM salt)
inline constexpr std::size_t kAadLen = kP3HeaderLen;       // flags || id || sequence
// --- standard ESP (RFC 4303, RFC 4106): the same 16 bytes in front of the ciphertext --------
inline constexpr std::size_t kEspHeaderLen = 16;   // SPI 4 | Seq low 4 | IV 8 (p3d: the sequence)
inline constexpr std::size_t kEspAadLen = 8;       // SPI || Seq low
inline constexpr std::size_t kEspAadEsnLen = 12;   // SPI || Seq high || Seq low (RFC 4106 §5)
// Without ESN a sender stops here (RFC 4303 §3.3.3: a new SA first).
inline constexpr std::uint64_t kEspSeqLastNoEsn = 0xffffffffu;
inline constexpr std::size_t kTrailerFixed = 2;    // pad length (8) + next header (8)
inline constexpr std::size_t kPadAlign = 4;        // (inner + pad + 2) % 4 == 0, as ESP
inline constexpr std::size_t kMaxAlignPad = kPadAlign - 1;
inline constexpr std::size_t kMaxPadLen = 255;     // pad length is one byte
// The UDP bit: set in P3 Flags by a sender in UDP mode and nowhere else, so on a UDP port that
// also carries IKE (first word 0, the non-ESP marker) and ESP (first word = an SPI, never with
// the top bit set: kSlotGenerationLast) the first word tells them apart (docs/wire-format.md,
// §Demultiplexing). A receiver requires it on UDP and refuses it on IP protocol 50.
inline constexpr std::uint32_t kFlagUdp = 0x80000000u;
inline constexpr std::uint32_t kKnownFlags = kFlagUdp;   // every other bit: dropped (flags)
// First word of a UDP datagram on the NAT port that carries IKE: the non-ESP marker (RFC 3948).
inline constexpr std::uint32_t kNonEspMarker = 0;
inline constexpr std::size_t kNonEspMarkerLen = 4;

// --- Ethernet, IP, UDP, TCP ------------------------------------------------------------
inline constexpr std::size_t kEthHeaderLen = 14;
inline constexpr std::uint16_t kEtherTypeIpv4 = 0x0800, kEtherTypeIpv6 = 0x86dd, kEtherTypeArp = 0x0806;
// Header sizes as p3 writes them (no IPv4 or TCP options) and the smallest it reads.
inline constexpr std::size_t kIpv4HeaderLen = 20;
inline constexpr std::size_t kIpv6HeaderLen = 40;
inline constexpr std::size_t kUdpHeaderLen = 8;
inline constexpr std::size_t kTcpHeaderLen = 20;
// IP protocol numbers (IPv6 next header values).
inline constexpr std::uint8_t kIpProtoIcmp = 1;
inline constexpr std::uint8_t kIpProtoTcp = 6;
inline constexpr std::uint8_t kIpProtoUdp = 17;
inline constexpr std::uint8_t kIpProtoEsp = 50;
inline constexpr std::uint8_t kIpProtoIcmp6 = 58;
// The smallest MTU every link carries: IPv4 (RFC 791, every host accepts 576) and IPv6 (RFC 8200).
inline constexpr std::size_t kIpv4MinMtu = 576;
inline constexpr std::size_t kIpv6MinMtu = 1280;

// Next header values carried in the P3 trailer (IP protocol numbers).
inline constexpr std::uint8_t kNextIpv4 = 4;
inline constexpr std::uint8_t kNextIpv6 = 41;
inline constexpr std::uint8_t kNextDummy = 59;

// --- outer headers -----------------------------------------------------------------
// TTL / hop limit of every IP header p3 originates: the outer header, the control channel's
// inner packets, setup datagrams, ICMP errors and TCP resets. (Neighbour discovery uses 255.)
inline constexpr std::uint8_t kTtl = 64;
inline constexpr std::size_t kMaxOuterLen = kIpv6HeaderLen + kUdpHeaderLen;  // 48

// Fixed per-packet cost besides the outer header: P3 header + worst alignment pad + trailer + tag.
inline constexpr std::size_t kP3Overhead = kP3HeaderLen + kMaxAlignPad + kTrailerFixed + kIcvLen;  // 37
// Worst-case overhead (without size hiding) per outer family: 57 (IPv4), 77 (IPv6), 65 and 85
// with UDP; tunnel MTU = WAN MTU - this.
constexpr std::size_t overhead(bool outer_v6, bool udp) noexcept {
    return (outer_v6 ? kIpv6HeaderLen : kIpv4HeaderLen) + (udp ? kUdpHeaderLen : 0) + kP3Overhead;
}

// Largest plaintext we handle.
inline constexpr std::size_t kMaxInnerLen = 9000;

// --- size hiding ---------------------------------------------------------------------
// Plaintext (inner | pad | pad length | next header) is padded up to a multiple of the bucket.
// The bucket is at most 256 so the pad always fits the one-byte pad length.
inline constexpr std::size_t kSizeHideBucket = 256;
static_assert(kSizeHideBucket - 1 <= kMaxPadLen + 0, "bucket pad must fit the pad length byte");
// Largest plaintext (inner + pad + trailer) a sender makes, with size hiding; a receiver
// refuses longer ones before decrypting.
inline constexpr std::size_t kMaxPlainLen = kMaxInnerLen + kSizeHideBucket;

// --- lanes ---------------------------------------------------------------------------
// Lanes per session per direction: the most a side may announce (control channel, setup).
inline constexpr std::uint32_t kMaxLanes = 64;

// --- anti-replay ---------------------------------------------------------------------
inline constexpr std::uint32_t kReplayWindowMin = 64;
inline constexpr std::uint32_t kReplayWindowMax = 8192;
inline constexpr std::uint32_t kReplayWindowDefault = 1024;
// A window of this size checks nothing (RFC 4303 §3.4.3 lets a receiver disable anti-replay):
// only static keys may ask for it, since their sender restarts at sequence 1 on every start.
inline constexpr std::uint32_t kReplayOff = 0;
// Bitmap words = window/64 + 1 (one redundant word, as WireGuard's counter).
inline constexpr std::uint32_t kReplayWordsMax = kReplayWindowMax / 64 + 1;

// --- sequence numbers ----------------------------------------------------------------
// Sequence 0 is never sent. A sender stops (and asks for a rekey) at this value: far below
// 2^64, so a wedged rekey never wraps a nonce.
inline constexpr std::uint64_t kSeqHardLimit = (std::uint64_t{1} << 62);
// The last sequence a lane may ever send; a lane's own limit (static keys: the mark persisted
// so far) is at most this.
inline constexpr std::uint64_t kSeqLast = kSeqHardLimit - 1;

// --- P3 ID layout: generation (high bits) | index (low bits) ---------------------------
inline constexpr unsigned kSlotIndexBits = 20;
inline constexpr unsigned kSlotGenerationBits = 32 - kSlotIndexBits;  // 12
inline constexpr std::uint32_t kSlotIndexMask = (std::uint32_t{1} << kSlotIndexBits) - 1;
inline constexpr std::uint32_t kSlotGenerationMax = (std::uint32_t{1} << kSlotGenerationBits) - 1;
inline constexpr std::uint32_t kSlotTableMax = kSlotIndexMask + 1;  // 1,048,576 (index 0 is never used)
// Generations the table hands out (reserve_rx): 1..2047, wrapping from 2047 to 1. So an ID it
// hands out is >= 2^20 (never < 256, never 0) and < 0x80000000: used as an ESP SPI it never
// looks like the non-ESP marker, a reserved SPI (1..255, RFC 4303 §2.1) or a P3 Flags word with
// the UDP bit (demultiplexing on UDP 4500). IDs chosen by the configuration (static keys,
// reserve_rx_at) may use any generation.
inline constexpr std::uint32_t kSlotGenerationFirst = 1;
inline constexpr std::uint32_t kSlotGenerationLast = (kSlotGenerationMax >> 1);   // 2047
static_assert((kSlotGenerationLast << kSlotIndexBits | kSlotIndexMask) < kFlagUdp);
static_assert((kSlotGenerationFirst << kSlotIndexBits) >= 256);
// The next generation an index gets after one retirement (wraps 2047 -> 1).
constexpr std::uint32_t next_generation(std::uint32_t g) noexcept {
    return g >= kSlotGenerationFirst && g < kSlotGenerationLast ? g + 1 : kSlotGenerationFirst;
}

// --- crypto engine -------------------------------------------------------------------
inline constexpr std::size_t kMaxBurst = 64;   // ops per seal()/open() call
inline constexpr std::size_t kMaxSegs = 32;    // segments of one chained mbuf we encrypt/decrypt
inline constexpr std::size_t kAes128KeyLen = 16;
inline constexpr std::size_t kAes256KeyLen = 32;

}  // namespace p3::wire
