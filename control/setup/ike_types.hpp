// IKEv2 numbers (IANA "Internet Key Exchange Version 2 (IKEv2) Parameters") used by the
// setup exchange, strong types for its identifiers, and byte helpers for wire fields
// (shifts on bytes: never a cast to a packed struct).
#pragma once

#include <cstdint>
#include <cstring>
#include <span>
#include <vector>

#include "common/bytes.hpp"

namespace p3::setup {

using Bytes = std::vector<std::uint8_t>;
using ByteView = std::span<const std::uint8_t>;

enum class Exchange : std::uint8_t { ike_sa_init = 34, ike_auth = 35, create_child_sa = 36, informational = 37 };

namespace flags {
inline constexpr std::uint8_t initiator = 0x08, version = 0x10, response = 0x20;
}
inline constexpr std::uint8_t ike_version = 0x20;  // major 2, minor 0

namespace pt {  // payload types
inline constexpr std::uint8_t none = 0, sa = 33, ke = 34, idi = 35, idr = 36, cert = 37, certreq = 38,
                              auth = 39, nonce = 40, notify = 41, del = 42, vendor = 43, tsi = 44,
                              tsr = 45, sk = 46;
}

namespace tt {  // transform types
inline constexpr std::uint8_t encr = 1, prf = 2, integ = 3, dh = 4, esn = 5;
}
inline constexpr std::uint16_t encr_aes_gcm_16 = 20;
inline constexpr std::uint16_t prf_hmac_sha2_256 = 5, prf_hmac_sha2_384 = 6;
inline constexpr std::uint16_t group_ecp256 = 19, group_ecp384 = 20, group_x25519 = 31;
inline constexpr std::uint16_t attr_key_length = 14;
inline constexpr std::uint8_t proto_ike = 1, proto_esp = 3;
inline constexpr std::uint16_t esn_no = 0, esn_yes = 1;  // transform type 5 ids

namespace nt {  // notify message types
inline constexpr std::uint16_t unsupported_critical_payload = 1, invalid_syntax = 7,
                               invalid_message_id = 9, no_proposal_chosen = 14,
                               invalid_ke_payload = 17, authentication_failed = 24,
                               ts_unacceptable = 38, internal_address_failure = 36,
                               nat_detection_source_ip = 16388, nat_detection_destination_ip = 16389,
                               cookie = 16390, rekey_sa = 16393, signature_hash_algorithms = 16431,
                               temporary_failure = 43, child_sa_not_found = 44, no_additional_sas = 35;
// Private-use status types (RFC 7296 §3.10.1: 40960-65535).
inline constexpr std::uint16_t p3_config = 40960;  // primary -> secondary: pushed parameters (TLV)
inline constexpr std::uint16_t p3_lanes = 40961;   // initiator -> responder (IKE_AUTH): u32, lanes it sends on
inline constexpr bool is_error(std::uint16_t t) { return t < 16384; }
}

namespace idt {  // identification types
inline constexpr std::uint8_t ipv4 = 1, fqdn = 2, rfc822 = 3, ipv6 = 5, der_dn = 9, key_id = 11;
}

namespace am {  // authentication methods
inline constexpr std::uint8_t rsa_sig = 1, shared_key_mic = 2, digital_signature = 14;  // RFC 7427
}
inline constexpr std::uint8_t cert_x509_sig = 4;
inline constexpr std::uint16_t hash_sha256 = 2, hash_sha384 = 3, hash_sha512 = 4;  // RFC 7427
inline constexpr std::uint8_t ts_ipv4_range = 7, ts_ipv6_range = 8;

// IKE SPIs are opaque 8-byte strings; we carry them as the big-endian integer of their bytes.
struct Spi {
    std::uint64_t v = 0;
    bool operator==(const Spi&) const = default;
    explicit operator bool() const noexcept { return v != 0; }
};

using be::get16;
using be::get32;
using be::get64;
inline void put8(Bytes& b, std::uint8_t v) { b.push_back(v); }
// The codec's builders append field after field (put*) and patch lengths in place (set*),
// all through common/bytes.hpp.
inline void put16(Bytes& b, std::uint16_t v) { be::append16(b, v); }
inline void put32(Bytes& b, std::uint32_t v) { be::append32(b, v); }
inline void put64(Bytes& b, std::uint64_t v) { be::append64(b, v); }
inline void set16(Bytes& b, std::size_t at, std::uint16_t v) { be::put16(b.data() + at, v); }
inline void set32(Bytes& b, std::size_t at, std::uint32_t v) { be::put32(b.data() + at, v); }
inline void append(Bytes& b, ByteView v) { b.insert(b.end(), v.begin(), v.end()); }

}  // namespace p3::setup
