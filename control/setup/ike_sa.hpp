// The state of one setup exchange (an IKE SA in RFC 7296 terms) and what tasks share.
//
// Initiator (secondary):  init_sent -> auth_sent -> established (deleted at once)
//                              \-> (INVALID_KE / COOKIE) init_sent again, bounded
// Responder (primary):    half_open -> established | failed (kept until it expires, only to
//                         answer a retransmitted request with the cached response)
// Any state -> deleted on timeout (initiator: retransmissions exhausted; responder: expiry).
#pragma once

#include <list>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/config.hpp"
#include "control/clock.hpp"
#include "control/setup/config_push.hpp"
#include "control/setup/ike_auth.hpp"
#include "control/setup/ike_crypto.hpp"
#include "control/setup/ike_message.hpp"
#include "control/setup/session_sink.hpp"

namespace p3::setup {

using control::Duration;
using control::Random;
using control::TimePoint;

// Algorithm choices and limits; defaults are the product's, tests narrow them.
struct SetupOptions {
    std::vector<std::uint16_t> groups{group_x25519, group_ecp256, group_ecp384};  // preference order
    std::vector<std::uint16_t> prfs{prf_hmac_sha2_256, prf_hmac_sha2_384};
    std::vector<std::uint16_t> encr_bits{256, 128};  // IKE SA ENCR_AES_GCM_16 key sizes
    std::size_t cookie_threshold = limits::cookie_threshold;
    std::size_t cookie_request_rate = limits::cookie_request_rate;
    std::size_t cookie_failure_rate = limits::cookie_failure_rate;
    std::size_t half_open_max = limits::half_open_max;
    std::size_t half_open_per_source = limits::half_open_per_source;
    Duration half_open_timeout = limits::half_open_timeout;
    Duration retransmit_base = limits::retransmit_base;
    unsigned retransmit_tries = limits::retransmit_tries;
};

// What the engine keeps of a configured remote (config::Remote holds secrets and is not
// copyable; the engine needs none of them).
struct PeerConfig {
    std::uint32_t id = 0;
    Endpoint endpoint;
    std::vector<Prefix> subnets;
    config::SessionParams params;
    IdPayload expected_id;
    std::string name;  // printable identity for log lines
    config::WireMode wire = config::WireMode::p3;  // esp: the IKE SA stays, no push
    bool enabled = true;  // false: shut down by the administrator (refused after its proof)
};

struct LocalConfig {
    config::Role role = config::Role::secondary;
    Endpoint endpoint;
    IdPayload id;
    std::optional<Prefix> lan;       // our protected subnet (dataplane.lan.address)
    std::vector<Prefix> subnets;     // further protected networks behind a LAN gateway (local.subnets)
    config::SessionParams defaults;
    std::uint16_t nat_port = 0;      // P3 in UDP when a NAT is detected (local.nat_port); 0: none
};

struct TaskContext {
    const LocalConfig& local;
    const std::list<PeerConfig>& peers;  // a list: IkeSa and tasks keep pointers across add/remove
    const Credentials& creds;
    const SetupOptions& opts;
    SessionSink& sink;
    Random& random;
    const PeerConfig* find_peer(std::uint32_t id) const {
        for (const auto& p : peers)
            if (p.id == id) return &p;
        return nullptr;
    }
};

struct IkeSa {
    enum class State { init_sent, auth_sent, half_open, established, failed };
    bool initiator = false;
    State state = State::init_sent;
    Spi spi_i, spi_r;
    Endpoint local, peer;
    Endpoint init_peer;                  // responder: where IKE_SA_INIT came from (its index key)
    Framing framing = Framing::plain;    // how the peer frames its datagrams (answered the same way)
    const PeerConfig* remote = nullptr;  // initiator: from the start; responder: once its AUTH verified
    const PeerConfig* claimed = nullptr; // responder: the remote IDi names, before its AUTH is verified
    IdPayload peer_id;
    std::string peer_name;               // for log lines: identity, else address

    // IKE_SA_INIT
    std::uint16_t group = 0, prf_alg = 0, encr_bits = 0;
    std::unique_ptr<KeyExchange> kx;
    Bytes nonce_i, nonce_r, cookie;
    Bytes init_request, init_response;   // the exact bytes, signed in AUTH
    bool local_behind_nat = false, peer_behind_nat = false;
    unsigned init_restarts = 0;

    // keys (SKEYSEED schedule)
    SecretBytes sk_d, sk_pi, sk_pr;
    SkKey sk_ei, sk_er;
    std::uint64_t iv_counter = 0;

    // child SA / session
    std::uint32_t rx_id = 0;             // reserved from the sink (ours)
    std::uint32_t peer_rx_id = 0;
    config::KeyType child_key = config::KeyType::aes128;
    PushedConfig pushed;

    // ESP remotes: the IKE SA stays up with the session (esp_exchanges.cpp).
    bool esp = false;
    bool child_esn = false;
    std::uint32_t child_rx = 0, child_tx = 0;  // the current child SA's SPIs (ours, the peer's)
    bool rekeyed = false;                // an old IKE SA after an IKE rekey: waits for the peer's DELETE
    std::vector<Prefix> ts_local, ts_remote;  // the child SA's selectors as narrowed
    struct OldRx {                       // an inbound SA replaced by a rekey, until the peer's DELETE
        std::uint32_t rx_spi = 0, tx_spi = 0;
        TimePoint until{};
    };
    std::vector<OldRx> old_rx;           // at most limits::esp_old_rx_max
    // A child rekey the peer started: our outbound moves to the new SA when the peer deletes
    // the old one (it has installed the new inbound by then) or at `at`, whichever is first.
    struct PendingTx {
        std::uint32_t spi = 0;
        DirectionKeys keys;
        bool esn = false;
        TimePoint at{};
    };
    std::optional<PendingTx> pending_tx;
    enum class Out : std::uint8_t { none, liveness, delete_child, delete_ike, rekey_child };
    Out out = Out::none;                 // our outstanding request on the established SA
    std::uint32_t out_msg_id = 0;        // id of our next (or outstanding) request
    Bytes out_bytes;
    unsigned out_tries = 0;
    TimePoint out_deadline{};
    TimePoint last_heard{};              // last authenticated message from the peer
    TimePoint rekey_at{};                // our own child rekey is due
    TimePoint keepalive_at{};            // behind a NAT: next NAT keepalive (RFC 3948 §2.3)
    // a child rekey we initiated: its new inbound SPI and nonce, KE
    std::uint32_t rekey_rx_spi = 0;
    Bytes rekey_nonce;
    std::unique_ptr<KeyExchange> rekey_kx;
    // The peer refused a rekey with a KE (NO_PROPOSAL_CHOSEN: its ESP proposals name no group,
    // as strongSwan's `aes128gcm16` does): our rekeys go on without one for this IKE SA.
    bool rekey_pfs_refused = false;
    bool closing = false;                // our IKE DELETE sent: gone when answered or timed out

    // reliability
    std::uint32_t msg_id = 0;            // initiator: id of the outstanding request; responder: next expected
    Bytes last_sent;                     // initiator: outstanding request; responder: last response
    std::uint32_t last_sent_id = 0;
    Bytes last_request_hash;             // responder: SHA-256 of the request last_sent answers
    unsigned resends = 0;                // responder: cached responses sent again
    bool have_response = false;
    std::uint16_t init_error = 0;        // initiator: unauthenticated error notify seen (§2.21.1)
    unsigned tries = 0;
    TimePoint deadline{};                // initiator: next retransmission; responder: expiry

    const SkKey& out_key() const { return initiator ? sk_ei : sk_er; }
    const SkKey& in_key() const { return initiator ? sk_er : sk_ei; }
    bool keys_ready() const { return !sk_d.empty(); }
};

// Outcome of processing a message in a task.
struct TaskResult {
    enum class Kind { ok, fail, retry } kind = Kind::ok;
    std::uint16_t notify = 0;            // error notify to answer with (responder), 0 = none
    Bytes notify_data;
    Reason reason = Reason::SETUP_MALFORMED;
    std::string why;                     // log text (never secret)
    static TaskResult fail(std::uint16_t n, Reason r, std::string w, Bytes d = {}) {
        return TaskResult{Kind::fail, n, std::move(d), r, std::move(w)};
    }
    static TaskResult retry() { return TaskResult{Kind::retry, 0, {}, Reason::SETUP_INVALID_KE, {}}; }
};

}  // namespace p3::setup
