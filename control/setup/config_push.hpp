// The configuration push: the primary's IKE_AUTH response carries the secondary's session
// parameters in a private-use notify (type nt::p3_config = 40960), so a secondary needs only
// its primary's address and credentials. The notify data is a list of TLVs:
//
//   type (16 bits; high bit = critical) | length (16 bits, of value) | value
//
// A receiver skips TLVs of unknown type unless their critical bit is set, in which case the
// whole push is refused (the secondary cannot honour a setting it does not understand).
// Numbers are big-endian; prefixes are family (4|6) | length | address (4 or 16 bytes).
// Type table: docs/setup-exchange.md.
#pragma once

#include <optional>
#include <vector>

#include "common/config.hpp"
#include "control/setup/ike_types.hpp"

namespace p3::setup {

namespace tlv {
inline constexpr std::uint16_t primary_subnet = 1, secondary_subnet = 2, key_type = 3, rekey_wait = 4,
                               rekey_packets = 5, array_size = 6, data_array_time = 7,
                               control_array_time = 8, heartbeat_time = 9, heartbeat_fail = 10,
                               size_hiding = 11, secondary_lanes = 12, primary_lanes = 13,
                               rekey_dh = 14;
inline constexpr std::uint16_t critical = 0x8000;
}

struct PushedConfig {
    std::vector<Prefix> primary_subnets;    // behind the primary
    std::vector<Prefix> secondary_subnets;  // behind the secondary
    config::SessionParams params;           // params.lanes = lanes the secondary sends on
    std::uint32_t primary_lanes = 0;        // lanes the primary sends on (0 = one per worker)
    bool operator==(const PushedConfig&) const = default;
};

Bytes encode_push(const PushedConfig& c);
// nullopt: malformed, or an unknown critical TLV, or a value out of range.
std::optional<PushedConfig> decode_push(ByteView data);

}  // namespace p3::setup
