// The sealed cluster message (docs/cluster.md §Membership and replication): every message in
// the CPG group is AES-256-GCM under K = HKDF-SHA256(cluster key, info "p3 cluster v1").
//
//   0  version (1)   1  type   2  sender member (1..16)   3  reserved (0)
//   4  counter (64 bits, big endian: per sender, strictly increasing)
//   12 sealed body ... 16-byte tag
//
// The 12-byte header is the additional authenticated data; the nonce is the sender (4 bytes,
// big endian) followed by the counter, so two members never use one nonce, and a member's
// counter starts from its boot time (engine.hpp) so a restart never reuses one either. The
// body is plaintext only inside SecretBytes (it carries key material).
//
// Untrusted input: open() and decode() take any bytes (fuzzed: tests/control/fuzz_cluster_msg.cpp)
// and refuse, never throw or crash; the replay check is the engine's (it knows the senders).
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <variant>
#include <vector>

#include "common/secret.hpp"
#include "control/cluster/replica.hpp"

namespace p3::cluster {

enum class MsgType : std::uint8_t { hello = 1, state_request = 2, session = 3, role = 4, control = 5, ack = 6 };

inline constexpr std::uint8_t kVersion = 1;
inline constexpr std::size_t kHeaderLen = 12;
inline constexpr std::size_t kTagLen = 16;
inline constexpr std::size_t kMaxMessage = 8192;   // a SESSION record is under 1 KiB
inline constexpr std::size_t kClusterKeyLen = 32;
// A forwarded control-channel packet (CONTROL): at most this many bytes (a control packet is
// channel::limits::kControlInnerLen; p3d reads at most 2048 of one).
inline constexpr std::size_t kMaxControlBytes = 2048;

struct Header {
    std::uint8_t version = kVersion;
    MsgType type = MsgType::hello;
    std::uint8_t sender = 0;
    std::uint64_t counter = 0;
};

struct Hello {
    Role role = Role::backup;
    std::array<std::uint8_t, 32> config_digest{};
    std::uint64_t boot_id = 0;
    std::uint64_t applied = 0;   // the state version this member has (replication lag)
};
struct StateRequest {};
struct RoleMsg {
    std::uint8_t member = 0;
    Role role = Role::backup;
};
// A control-channel packet (the decrypted inner packet, still sealed under the session's
// control key) that reached a member holding the session only as a replica, for the member
// that holds the control session (docs/cluster.md §Forwarded control messages).
struct ControlMsg {
    std::uint32_t remote_id = 0;
    std::uint32_t epoch = 0;      // of the record the forwarder holds
    std::uint8_t holder = 0;      // the member that published that record
    std::vector<std::uint8_t> bytes;
};
// A member applied a record the holder published (replication before a rekey switches:
// docs/cluster.md §Replicated keys): for the holder, which waits for these before announcing
// its switch.
struct AckMsg {
    std::uint32_t remote_id = 0;
    std::uint32_t epoch = 0;      // the record's
    std::uint8_t holder = 0;
};
using Body = std::variant<Hello, StateRequest, SessionRecord, RoleMsg, ControlMsg, AckMsg>;

// The message key, derived once from the cluster key (32 bytes).
class SealKey {
public:
    explicit SealKey(std::span<const std::uint8_t> cluster_key);
    bool valid() const noexcept { return key_.size() == kClusterKeyLen; }
    const SecretBytes& key() const noexcept { return key_; }

private:
    SecretBytes key_;
};

// Why a message was refused (each counted by the engine).
enum class Refusal : std::uint8_t { short_message, too_long, version, type, sender, auth, body, replay, member_clash, full, count_ };

// The sealed message; empty on an OpenSSL failure.
std::vector<std::uint8_t> seal(const SealKey& k, const Header& h, std::span<const std::uint8_t> body);

struct Opened {
    Header header;
    SecretBytes body;
};
// Checks the header and opens the body; std::nullopt with why set when refused.
std::optional<Opened> open(const SealKey& k, std::span<const std::uint8_t> msg, Refusal& why);

// Bodies as bytes (SecretBytes: a SESSION carries keys) and back. decode() checks every
// length and refuses trailing bytes.
SecretBytes encode(const Body& b);
std::optional<Body> decode(MsgType type, std::span<const std::uint8_t> bytes);
MsgType type_of(const Body& b) noexcept;

}  // namespace p3::cluster
