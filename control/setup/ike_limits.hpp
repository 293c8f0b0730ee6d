// Every limit of the setup exchange in one place: message sizes, payload counts, the
// half-open table, the cookie policy, retransmission. Parsers and state machines use only
// these names, so a limit is changed (and reviewed) here.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>

#include "common/wire_limits.hpp"

namespace p3::setup::limits {

// A message larger than this is dropped unread. RFC 7296 §2 requires 1280 at least; our own
// messages (certificates included) stay well under 8 KiB; fragmentation (RFC 7383) is not used.
inline constexpr std::size_t max_message = 16384;
inline constexpr std::size_t ike_header = 28;
inline constexpr std::size_t payload_header = 4;
inline constexpr std::size_t max_payloads = 32;        // per message (inner + outer)
inline constexpr std::size_t max_proposals = 16;
// per proposal: strongSwan 5.9's default IKE proposal alone carries 34 to 36 transforms
inline constexpr std::size_t max_transforms = 64;
// The port a standard IKE peer moves to when a NAT is detected (RFC 7296 §2.23, RFC 3948).
inline constexpr std::uint16_t ike_nat_t_port = 4500;
inline constexpr std::size_t max_selectors = 32;       // per TS payload
inline constexpr std::size_t min_nonce = 16, max_nonce = 256;  // RFC 7296 §3.9
inline constexpr std::size_t our_nonce = 32;
inline constexpr std::size_t max_ke_data = 512;
inline constexpr std::size_t max_notify_data = 4096;
inline constexpr std::size_t max_cert = 8192;
// RFC 5282: the SK payload's explicit IV; its tag and salt are AES-GCM's, as the data layer's.
inline constexpr std::size_t gcm_iv = 8, gcm_icv = wire::kIcvLen, gcm_salt = wire::kSaltLen;

// Half-open (IKE_SA_INIT answered, IKE_AUTH not yet) responder state: each entry is a few
// hundred bytes, so the table is bounded in memory by its size.
inline constexpr std::size_t half_open_max = 4096;
// Per source (IPv4 address, IPv6 /64; RFC 8019 §4.2): one secondary has one exchange at a
// time, so this leaves room for a NAT with a few dozen secondaries behind it restarting at once.
inline constexpr std::size_t half_open_per_source = 32;
// COOKIE is demanded (RFC 7296 §2.6, RFC 8019 §4.1) while any of these holds: this many
// half-open exchanges; this many IKE_SA_INIT requests in the last second; this many failed
// requests (undecodable, refused, failed authentication, unknown SPIs) in the last second.
// A primary's thousands of secondaries reconnecting after a restart stay below the request
// rate mostly; above it each pays one more round trip, nothing else.
inline constexpr std::size_t cookie_threshold = 64;
inline constexpr std::size_t cookie_request_rate = 256;
inline constexpr std::size_t cookie_failure_rate = 32;
inline constexpr std::chrono::milliseconds rate_window{1000};
// A cached response is sent again only for the identical request, and at most this often
// per exchange (our initiator sends a request retransmit_tries times in all).
inline constexpr unsigned max_resends = 16;
inline constexpr std::chrono::seconds half_open_timeout{30};
inline constexpr std::chrono::seconds cookie_secret_lifetime{120};  // then rotated (old one kept once)
inline constexpr std::size_t cookie_len = 1 + 32;       // version byte + SHA-256
inline constexpr std::size_t max_cookie = 64;           // RFC 7296 §2.6: 1..64 bytes

// Initiator retransmission: 1 s, doubled per try, 4 tries in all (1+2+4+8 = 15 s). A
// secondary whose primary does not answer then counts a failed attempt and follows the
// recovery back-off (5 s, +5 s per failure, at most 60 s: DESIGN.md §Session life 5) rather
// than one exchange's own minute of retransmissions.
inline constexpr std::chrono::milliseconds retransmit_base{1000};
inline constexpr unsigned retransmit_tries = 4;
inline constexpr unsigned max_init_restarts = 4;
// ESP remotes (wire = "esp"): the IKE SA stays with the session.
inline constexpr std::chrono::seconds esp_old_rx_grace{10};     // replaced inbound SA kept without a DELETE
inline constexpr std::size_t esp_rekeyed_max = 2;               // replaced IKE SAs of one remote awaiting DELETE
// A rekey the peer started: our outbound moves to the new child SA on the peer's DELETE of the
// old one, at the latest after this (a peer that answers with no DELETE, or loses it).
inline constexpr std::chrono::seconds esp_tx_switch_max{2};
inline constexpr std::size_t esp_old_rx_max = 4;                // replaced inbound SAs kept at once
inline constexpr std::chrono::seconds nat_keepalive{20};        // behind a NAT: one 0xff byte this often
inline constexpr std::size_t max_delete_spis = 16;              // SPIs read from one Delete payload
inline constexpr std::uint64_t esp_no_esn_rekey = 0xf0000000ull; // no ESN: rekey before 2^32 (sequence)        // INVALID_KE / COOKIE round trips

}  // namespace p3::setup::limits
