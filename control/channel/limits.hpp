// Every size, limit and timer constant of the in-tunnel control channel (DESIGN.md §Control
// channel, §Session life 2-5; docs/control-channel.md), in one place. Nothing here changes
// at run time; the per-session timers that do (heartbeat_time, rekey_wait, ...) come from
// config::SessionParams. What the channel shares with the data layer (key and salt lengths,
// lanes, the GCM tag, IP/TCP header sizes, size hiding) is common/wire_limits.hpp's, named
// here only where the channel's own arithmetic reads better with it.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>

#include "common/wire_limits.hpp"

namespace p3::channel::limits {

using namespace std::chrono_literals;

// --- message (plaintext inside the control seal) --------------------------------------
// 2: stable P3 IDs; the rekey carries lanes, X25519 shares and per-lane switch points.
inline constexpr std::uint8_t kVersion = 2;
// version (1) | type (1) | body length (2) | message id (4)
inline constexpr std::size_t kHeaderLen = 8;
// TLV: type (2) | length (2) | value
inline constexpr std::size_t kTlvHeaderLen = 4;
// (kMaxMessageLen: below, from the fixed control packet length.)
inline constexpr std::size_t kMaxTlvs = 24;

// --- keys -----------------------------------------------------------------------------
using wire::kAes128KeyLen;
using wire::kAes256KeyLen;
using wire::kSaltLen;
// A key on the wire (explicit or in an array) is key || salt: 20 or 36 bytes.
inline constexpr std::size_t kKeyMaterial128 = kAes128KeyLen + kSaltLen;
inline constexpr std::size_t kKeyMaterial256 = kAes256KeyLen + kSaltLen;
// Keys per array chunk: 16 x 36 = 576 bytes of keys, well inside kMaxBodyLen.
inline constexpr std::uint32_t kKeysPerChunk = 16;
// Largest key array (config allows 1..65536).
inline constexpr std::uint32_t kMaxArraySize = 65536;
// Indices a rekey consumes from each array: one per direction.
inline constexpr std::uint32_t kIndicesPerRekey = 2;

// --- the control-layer packet (framing.hpp) --------------------------------------------
inline constexpr std::size_t kInnerV4Len = wire::kIpv4HeaderLen;
inline constexpr std::size_t kInnerV6Len = wire::kIpv6HeaderLen;
inline constexpr std::size_t kTcpLen = wire::kTcpHeaderLen;
inline constexpr std::size_t kEpochLen = 4;   // which control key sealed it
inline constexpr std::size_t kSeqLen = 8;     // per control key, from 1, never repeats
inline constexpr std::size_t kTagLen = wire::kIcvLen;  // GCM tag
inline constexpr std::size_t kSealHeaderLen = kEpochLen + kSeqLen;
inline constexpr std::size_t kSealOverhead = kSealHeaderLen + kTagLen;  // 28
// Every control packet's inner length, whatever the message and the inner family: three
// size-hiding buckets minus the data layer's 2-byte trailer, so with size hiding on or off the
// plaintext the data layer encrypts is 768 bytes (a multiple of both its 4-byte alignment and
// the 256-byte bucket) and the outer packet is one size. The seal's zero padding fills it.
inline constexpr std::size_t kControlInnerLen = 3 * wire::kSizeHideBucket - wire::kTrailerFixed;  // 766
static_assert(kControlInnerLen == 766);
static_assert((kControlInnerLen + wire::kTrailerFixed) % wire::kSizeHideBucket == 0);
static_assert((kControlInnerLen + wire::kTrailerFixed) % wire::kPadAlign == 0);
inline constexpr std::size_t kMaxInnerPacket = kControlInnerLen;
// Largest message (header + body): what an IPv6 inner packet (the larger headers) leaves.
inline constexpr std::size_t kMaxMessageLen = kControlInnerLen - kInnerV6Len - kTcpLen - kSealOverhead;  // 678
inline constexpr std::size_t kMaxBodyLen = kMaxMessageLen - kHeaderLen;
// The largest messages must fit (checked again against the encoder's layout in messages.hpp):
// an array chunk of kKeysPerChunk AES-256 keys and a switch naming kMaxLanes first sequences.
inline constexpr std::size_t kMaxChunkMessage =
    kHeaderLen + (kTlvHeaderLen + 1) * 2 + (kTlvHeaderLen + 4) * 3 + kTlvHeaderLen + kKeysPerChunk * kKeyMaterial256;
inline constexpr std::size_t kMaxSwitchMessage = kHeaderLen + (kTlvHeaderLen + 4) + kTlvHeaderLen + wire::kMaxLanes * 8;
static_assert(kMaxChunkMessage <= kMaxMessageLen, "an array chunk of 16 x 36-byte keys must fit");
static_assert(kMaxSwitchMessage <= kMaxMessageLen, "a switch naming 64 lanes must fit");
inline constexpr std::uint8_t kTcpFlagsPshAck = 0x18;
inline constexpr std::uint16_t kTcpWindow = 65535;
// Control-layer anti-replay window per inbound control key.
inline constexpr unsigned kReplayWindow = 64;

// --- requests and retransmission ---------------------------------------------------------
inline constexpr auto kRetransmitInterval = 1s;   // a request is resent this often ...
inline constexpr auto kRequestTimeout = 8s;       // ... until answered or this long has passed

// --- goodbye ---------------------------------------------------------------------------------
// A goodbye (Session::shutdown with a reason) waits this long for its ack before the session
// closes anyway: the peer learns at once that the session ended, yet an unanswered goodbye
// never holds a shutdown (or a stopping appliance) back for long.
inline constexpr auto kGoodbyeWait = 300ms;
// The receiver of a goodbye keeps the session's data keys this long after its ack: the ack
// goes out through a worker, which sends nothing for a session already down.
inline constexpr auto kGoodbyeAckFlush = 20ms;

// --- rekey ---------------------------------------------------------------------------------
inline constexpr unsigned kRekeyAttempts = 5;     // the first attempt + four retries (§2.1.6)
inline constexpr auto kRekeyRetryDelay = 1s;      // between a failed attempt and the next
// Old inbound data keys: the next key is promoted (the old one wiped) this long after the
// peer's switch point is known (announced or seen), so packets reordered across the switch
// still decrypt; old inbound control keys go this long after a newer epoch authenticated ...
inline constexpr auto kRetireLinger = 3s;
// ... or this long after the peer announced its switch, if no control packet arrives at all.
inline constexpr auto kRetireTimeout = 60s;
// Inbound control-key epochs a session may hold at once (current + attempts that never completed).
inline constexpr std::size_t kMaxRxEpochs = 8;
// Taking over a control session in a cluster (Session::take_over, docs/cluster.md §Taking over
// a control session). The new holder sends kTakeoverSeqJump above the last sequence the old
// one published, so the two never seal under one control key and sequence (one nonce) even if
// the old one is still alive: it would have to send 2^32 messages after its last record, and
// it publishes again after kReplicaSeqMargin. Rekey epochs and message ids jump likewise past
// any attempt or request the old holder may have started since.
inline constexpr std::uint64_t kTakeoverSeqJump = std::uint64_t{1} << 32;
inline constexpr std::uint64_t kReplicaSeqMargin = std::uint64_t{1} << 31;
inline constexpr std::uint32_t kTakeoverEpochJump = 64;
inline constexpr std::uint32_t kTakeoverIdJump = 1u << 16;
// Jitter of the rekey timer: rekey_wait x U(1 - j, 1 + j), so rekey instants have no period.
inline constexpr double kRekeyJitter = 0.10;
// Array delivery as a trickle: the next chunk U(0.5, 1.5) x spacing after the previous one was
// acknowledged; spacing = kChunkSpacing, at most 1 / (kChunkSpreadShare x chunks) of the
// array's lifetime.
inline constexpr auto kChunkSpacing = 1s;
inline constexpr unsigned kChunkSpreadShare = 4;

// --- forward secrecy (dh.hpp) ---------------------------------------------------------------
inline constexpr std::size_t kDhShareLen = 32;    // X25519 public value

// --- housekeeping ----------------------------------------------------------------------------
inline constexpr auto kTick = 1s;                 // rx-seen polling, packet limit check

// Recovery's back-off (seed spec §2.1.7) is the control plane's one rule: control/backoff.hpp.

}  // namespace p3::channel::limits
