// IKEv2 messages (RFC 7296 §3) as values: the header, a chain of payloads, and the SK
// encrypted payload (AES-GCM, RFC 5282). encode() writes what a value says; decode() reads
// untrusted bytes with every length checked against its container and never reads past the
// datagram. A malformed message yields a DecodeError (the caller counts and drops it).
//
// An encrypted message decodes in two steps: decode() parses the header and the outer chain
// up to the SK payload (which must be last) and records where SK starts; open_sk() checks
// the ICV and parses the inner chain. Unknown payload types are kept (type, critical bit,
// body) so the exchange can apply RFC 7296 §2.5: ignore them, or reject the message when the
// critical bit is set.
#pragma once

#include <optional>
#include <string_view>
#include <variant>

#include "common/net.hpp"
#include "common/secret.hpp"
#include "control/setup/ike_limits.hpp"
#include "control/setup/ike_types.hpp"

namespace p3::setup {

struct Header {
    Spi spi_i, spi_r;
    std::uint8_t next = 0;
    std::uint8_t version = ike_version;
    Exchange exchange = Exchange::ike_sa_init;
    std::uint8_t flags = 0;
    std::uint32_t msg_id = 0;
    std::uint32_t length = 0;  // filled by encode
    bool is_response() const noexcept { return flags & flags::response; }
    bool from_initiator() const noexcept { return flags & flags::initiator; }
};

struct Transform {
    std::uint8_t type = 0;
    std::uint16_t id = 0;
    std::uint16_t key_bits = 0;  // Key Length attribute; 0 = absent
    bool operator==(const Transform&) const = default;
};

struct Proposal {
    std::uint8_t num = 1;
    std::uint8_t protocol = proto_ike;
    Bytes spi;  // empty (IKE_SA_INIT), 8 (IKE rekey) or 4 (ESP: here, a P3 ID)
    std::vector<Transform> transforms;
};

struct SaPayload { std::vector<Proposal> proposals; };
struct KePayload { std::uint16_t group = 0; Bytes data; };
struct NoncePayload { Bytes data; };
struct NotifyPayload {
    std::uint8_t protocol = 0;
    Bytes spi;
    std::uint16_t type = 0;
    Bytes data;
};
struct IdPayload {
    std::uint8_t id_type = 0;
    Bytes data;
    Bytes body() const;  // type | 3 reserved | data: the octets AUTH is computed over (§2.15)
};
struct AuthPayload { std::uint8_t method = 0; Bytes data; };
struct CertPayload { std::uint8_t encoding = 0; Bytes data; };  // CERT and CERTREQ
struct TrafficSelector {
    std::uint8_t ip_proto = 0;
    std::uint16_t start_port = 0, end_port = 65535;
    IpAddr start, end;  // same family
};
struct TsPayload { std::vector<TrafficSelector> selectors; };
struct RawPayload { Bytes body; };  // unknown types, Vendor ID, Delete: kept opaque

using PayloadBody = std::variant<RawPayload, SaPayload, KePayload, NoncePayload, NotifyPayload,
                                 IdPayload, AuthPayload, CertPayload, TsPayload>;

struct Payload {
    std::uint8_t type = 0;
    bool critical = false;
    PayloadBody body;
};

struct Message {
    Header hdr;
    std::vector<Payload> payloads;  // for an opened SK message: the inner payloads

    // Set by decode() when the message ends with an SK payload.
    bool encrypted = false;
    std::size_t sk_offset = 0;          // offset of the SK generic header in the datagram
    std::uint8_t sk_first = pt::none;   // first inner payload type

    template <class T> const T* find(std::uint8_t type) const {
        for (const auto& p : payloads)
            if (p.type == type)
                if (auto* b = std::get_if<T>(&p.body)) return b;
        return nullptr;
    }
    const NotifyPayload* notify(std::uint16_t type) const;
    // The first error notify (type < 16384), if any.
    const NotifyPayload* error_notify() const;

    void add(std::uint8_t type, PayloadBody body) { payloads.push_back(Payload{type, false, std::move(body)}); }
    void add_notify(std::uint16_t type, Bytes data = {}) {
        add(pt::notify, NotifyPayload{0, {}, type, std::move(data)});
    }
};

enum class DecodeError {
    ok = 0,
    too_short, too_long, bad_version, bad_length, payload_overrun, too_many_payloads,
    bad_payload, sk_not_last, auth_tag, not_encrypted
};
std::string_view to_string(DecodeError e) noexcept;

// AES-GCM key of one direction of the IKE SA (SK_ei / SK_er): key ‖ 4-byte salt.
struct SkKey {
    SecretBytes key;   // 16 or 32 bytes
    SecretBytes salt;  // 4 bytes
};

Bytes encode(const Message& m);
// Encrypts m.payloads into one SK payload; iv is the 8-byte explicit IV (must never repeat
// under one key: the exchange uses the message id and direction, see setup-exchange.md).
std::optional<Bytes> encode_sk(const Message& m, const SkKey& key, std::uint64_t iv);

DecodeError decode_header(ByteView bytes, Header& out);
DecodeError decode(ByteView bytes, Message& out);
// bytes: the whole datagram that decode() parsed into outer.
DecodeError open_sk(ByteView bytes, const Message& outer, const SkKey& key, Message& out);

// Payload bodies, exposed for tests and the fuzzers.
Bytes encode_body(const Payload& p);
bool decode_body(std::uint8_t type, ByteView body, PayloadBody& out);

}  // namespace p3::setup
