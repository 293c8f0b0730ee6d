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
inline constexpr std::uint8_t kVersion = 1;
// version (1) | type (1) | body length (2) | message id (4)
inline constexpr std::size_t kHeaderLen = 8;
// TLV: type (2) | length (2) | value
inline constexpr std::size_t kTlvHeaderLen = 4;
// Largest message (header + body). Keeps every control packet well under any tunnel MTU even
// after size-hiding padding: inner headers (60 max) + seal overhead (28) + 1024 + pad < 1280.
inline constexpr std::size_t kMaxMessageLen = 1024;
inline constexpr std::size_t kMaxBodyLen = kMaxMessageLen - kHeaderLen;
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
inline constexpr std::size_t kMaxInnerPacket = kInnerV6Len + kTcpLen + kSealOverhead + kMaxMessageLen + 256;
inline constexpr std::uint8_t kTcpFlagsPshAck = 0x18;
inline constexpr std::uint16_t kTcpWindow = 65535;
// Size hiding: the data layer pads plaintext (inner + its fixed trailer) up to a multiple of
// wire::kSizeHideBucket (common/sizehide.hpp); the framing pads control packets to the same
// boundaries itself.
// Control-layer anti-replay window per inbound control key.
inline constexpr unsigned kReplayWindow = 64;

// --- requests and retransmission ---------------------------------------------------------
inline constexpr auto kRetransmitInterval = 1s;   // a request is resent this often ...
inline constexpr auto kRequestTimeout = 8s;       // ... until answered or this long has passed

// --- rekey ---------------------------------------------------------------------------------
inline constexpr unsigned kRekeyAttempts = 5;     // the first attempt + four retries (§2.1.6)
inline constexpr auto kRekeyRetryDelay = 1s;      // between a failed attempt and the next
// Old inbound keys: retired this long after traffic under a newer epoch authenticated (packets
// reordered across the switch still decrypt) ...
inline constexpr auto kRetireLinger = 3s;
// ... or this long after the peer announced its switch, if no traffic arrives at all.
inline constexpr auto kRetireTimeout = 60s;
// Inbound epochs a session may hold at once (current + attempts that never completed).
inline constexpr std::size_t kMaxRxEpochs = 8;

// --- housekeeping ----------------------------------------------------------------------------
inline constexpr auto kTick = 1s;                 // rx-seen polling, packet limit check

// Recovery's back-off (seed spec §2.1.7) is the control plane's one rule: control/backoff.hpp.

}  // namespace p3::channel::limits
