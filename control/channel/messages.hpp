// The control channel's messages (docs/control-channel.md §Messages): binary TLV with a
// message id, carried sealed inside the control-layer packet (framing.hpp).
//
//   version (8) = 2 | type (8) | body length (16) | message id (32) | TLVs ...
//   TLV: type (16) | length (16) | value         all numbers big-endian
//
// A request carries a fresh message id (per sender); its response carries the same id.
// The parser is strict: a known version, a known message type, known TLV types only, each
// at most once, each of its exact length (or a multiple of an entry for key lists), the
// TLVs a type requires all present and no TLV the type does not allow. Anything else is
// counted (ParseStats) and rejected with the reason; the session drops it.
//
// Keys are parsed into SecretBytes; encode() writes into a caller's buffer, which the caller
// wipes after sealing (channel::Session does). Nothing here logs.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

#include "common/secret.hpp"
#include "control/channel/limits.hpp"

namespace p3::channel {

enum class MsgType : std::uint8_t {
    heartbeat = 1,
    heartbeat_ack = 2,
    rekey_request = 3,   // primary: new keys (or array indices) for both directions, its DH share
    rekey_status = 4,    // secondary: installed for receiving (or why not), its DH share
    rekey_switch = 5,    // primary: now sending under the new keys, lane n from first_seq[n]
    rekey_switch_ack = 6,// secondary: so am I, lane n from first_seq[n]
    rekey_ask = 7,       // secondary: please rekey (its packet limit)
    rekey_ask_ack = 8,
    array_chunk = 9,     // primary: part of a key array
    array_chunk_ack = 10,
    array_flush = 11,    // primary: forget these arrays
    array_flush_ack = 12,
    error = 13,          // either: a request could not be handled at all
    goodbye = 14,        // either: the session ends on purpose (goodbye_reason says why)
    goodbye_ack = 15,
};
inline constexpr std::uint8_t kMaxMsgType = 15;

std::string_view msg_type_name(MsgType t) noexcept;
bool is_request(MsgType t) noexcept;
// The response type of a request (heartbeat -> heartbeat_ack ...).
MsgType response_of(MsgType request) noexcept;

// TLV types. Numbers are wire contract; never reuse one.
namespace tlv {
inline constexpr std::uint16_t epoch = 1;          // u32: rekey epoch (0 = keys from setup)
inline constexpr std::uint16_t status = 2;         // u16: Status
inline constexpr std::uint16_t p3_id = 3;          // version 1 only (P3 IDs no longer change): allowed nowhere
inline constexpr std::uint16_t lanes = 4;          // u32: lanes the sender sends on
inline constexpr std::uint16_t data_key_p2s = 5;   // key || salt, primary -> secondary data
inline constexpr std::uint16_t data_key_s2p = 6;
inline constexpr std::uint16_t ctl_key_p2s = 7;
inline constexpr std::uint16_t ctl_key_s2p = 8;
inline constexpr std::uint16_t data_idx_p2s = 9;   // generation (u32) | index (u32)
inline constexpr std::uint16_t data_idx_s2p = 10;
inline constexpr std::uint16_t ctl_idx_p2s = 11;
inline constexpr std::uint16_t ctl_idx_s2p = 12;
inline constexpr std::uint16_t first_seq = 13;     // n x u64: lane i's first sequence under the new keys
inline constexpr std::uint16_t array_kind = 14;    // u8: ArrayKind
inline constexpr std::uint16_t array_gen = 15;     // u32: array generation (never reused)
inline constexpr std::uint16_t array_size = 16;    // u32: keys in the whole array
inline constexpr std::uint16_t array_offset = 17;  // u32: index of the first key in this chunk
inline constexpr std::uint16_t array_keys = 18;    // n x (key || salt)
inline constexpr std::uint16_t flush_kinds = 19;   // u8: bit 0 data, bit 1 control
inline constexpr std::uint16_t error_code = 20;    // u16: Status
inline constexpr std::uint16_t ask_reason = 21;    // u8: why the secondary asks
inline constexpr std::uint16_t key_len = 22;       // u8: 16 or 32 (AES key bytes, arrays)
inline constexpr std::uint16_t dh_share = 23;     // 32 bytes: the sender's X25519 public value
inline constexpr std::uint16_t goodbye_reason = 24;  // u16: GoodbyeReason (1 or 2)
inline constexpr std::uint16_t max = 24;
}  // namespace tlv

enum class Status : std::uint16_t {
    ok = 0,
    stale = 1,           // a request older than one already handled (crossing, reordering)
    bad_key = 2,         // key length does not match the session's key type
    unknown_array = 3,   // an index names an array generation we do not hold (complete)
    index_reused = 4,    // an index was already used: never twice
    install_failed = 5,  // the dataplane refused the keys
    unknown_epoch = 6,   // switch for an epoch never requested
    busy = 7,            // cannot take it now (array being replaced)
    not_allowed = 8,     // the role may not send this (a secondary never rekeys), or lanes differ
    dh_failed = 9,       // the X25519 part failed: a bad share, or a share missing / unexpected
};
std::string_view status_name(Status s) noexcept;

// Why a session ends on purpose. On the wire (goodbye_reason) 1 and 2; `none` is never sent:
// Session::shutdown(none) ends a session without a goodbye.
enum class GoodbyeReason : std::uint16_t { none = 0, administrator = 1, stopping = 2 };
inline constexpr std::uint16_t kMaxGoodbyeReason = 2;
std::string_view goodbye_reason_name(GoodbyeReason r) noexcept;

enum class ArrayKind : std::uint8_t { data = 1, control = 2 };
inline constexpr std::uint8_t kFlushData = 1, kFlushControl = 2;

struct ArrayIndex {
    std::uint32_t gen = 0;
    std::uint32_t index = 0;
    bool operator==(const ArrayIndex&) const = default;
};

// A key, or where to find it.
struct KeyRef {
    SecretBytes material;               // key || salt when explicit
    std::optional<ArrayIndex> index;    // or an array index
    bool present() const noexcept { return !material.empty() || index.has_value(); }
    KeyRef clone() const { return KeyRef{material.clone(), index}; }
};

// One decoded message. Which fields are set depends on the type (docs table; parse()
// enforces it, encode() writes what is set).
struct Message {
    MsgType type = MsgType::heartbeat;
    std::uint32_t msg_id = 0;
    std::optional<std::uint32_t> epoch, lanes, array_gen, array_size, array_offset;
    std::optional<Status> status, error_code;
    std::vector<std::uint64_t> first_seq;          // one per lane of the sender; empty = absent
    std::optional<std::array<std::uint8_t, limits::kDhShareLen>> dh_share;  // public: not secret
    std::optional<ArrayKind> array_kind;
    std::optional<std::uint8_t> flush_kinds, ask_reason, key_len;
    std::optional<GoodbyeReason> goodbye_reason;
    KeyRef data_p2s, data_s2p, ctl_p2s, ctl_s2p;
    SecretBytes array_keys;             // n x (key || salt), n = size / (key_len + 4)

    Message clone() const;
};

// Why parse() refused a message (ParseStats counts each).
enum class ParseError : std::uint8_t {
    none = 0,
    short_header,     // fewer than kHeaderLen bytes
    bad_version,
    unknown_type,
    bad_length,       // body length field disagrees with the bytes, or over kMaxMessageLen
    truncated_tlv,    // a TLV runs past the body
    unknown_tlv,
    duplicate_tlv,
    bad_tlv_length,   // a TLV of the wrong size for its type
    bad_value,        // a value out of range (enum, zero lanes, key list not whole entries)
    too_many_tlvs,
    not_allowed,      // a TLV this message type may not carry
    missing,          // a TLV this message type requires is absent
    key_conflict,     // both an explicit key and an index for one key, or neither
    count_
};
std::string_view parse_error_name(ParseError e) noexcept;

struct ParseStats {
    std::uint64_t ok = 0;
    std::array<std::uint64_t, static_cast<std::size_t>(ParseError::count_)> rejected{};
    std::uint64_t total_rejected() const noexcept {
        std::uint64_t n = 0;
        for (auto v : rejected) n += v;
        return n;
    }
};

// Parses exactly one message from the start of in; trailing bytes beyond the message's
// length are padding and ignored (the framing bounds them). stats may be null.
std::optional<Message> parse(std::span<const std::uint8_t> in, ParseError* why = nullptr,
                             ParseStats* stats = nullptr);

// Writes m into out; returns the length, or 0 if it does not fit or a field is invalid
// (an encoder bug: the session checks, never sends).
std::size_t encode(const Message& m, std::span<std::uint8_t> out) noexcept;

// The encoder's layout for the largest messages, against the fixed packet length.
static_assert(limits::kMaxChunkMessage <= limits::kMaxMessageLen);
static_assert(limits::kMaxSwitchMessage <= limits::kMaxMessageLen);

}  // namespace p3::channel
