// The setup engine: runs IKEv2-format setup exchanges (RFC 7296) for one appliance, as
// initiator on a secondary and as responder on a primary, and hands every established
// session to a SessionSink. It does no I/O of its own: datagrams come in through
// on_datagram() and leave through a Transport; time comes from the injected Clock and the
// owner calls on_timer() at next_deadline(). So the same engine runs on the control thread's
// event loop, over loopback sockets, or stepped message by message in a test.
//
// Roles: a primary answers only requests (it never initiates); a secondary only initiates
// (requests reaching it are dropped). The primary answers IKE_SA_INIT from any address, since
// a NAT may hide the secondary's; only a configured identity, proven with that remote's own
// credential (its pre-shared key or a certificate naming it), gets past IKE_AUTH, and nothing
// of that remote changes before the proof.
//
// Dispatch (responder): IKE_SA_INIT -> retransmission? (cached response) -> cookie policy ->
// half-open limits (all, per source) -> tasks (every check before the key pair is made) ->
// half-open SA. IKE_AUTH -> SA by our SPI -> message id (cached response for the identical
// request only) -> SK open -> tasks -> install keys -> response.
//
// Under a flood (RFC 8019): cookies are demanded by half-open count, request rate or failure
// rate; a spoofed request then costs one SHA-256 and no state; every line a peer can cause
// is rate-limited (log::write_peer); no state is kept per datagram beyond the bounded tables.
#pragma once

#include <list>
#include <map>
#include <memory>
#include <optional>
#include <tuple>
#include <unordered_map>

#include "common/config.hpp"
#include "control/clock.hpp"
#include "control/setup/ike_sa.hpp"
#include "control/setup/rate_window.hpp"

namespace p3::setup {

struct SetupCounters {
    std::uint64_t received = 0, sent = 0;
    std::uint64_t malformed = 0;           // undecodable, bad SK tag, unexpected message
    std::uint64_t dropped_role = 0;        // request at a secondary, response at a primary
    std::uint64_t dropped_no_sa = 0;       // no exchange with these SPIs
    std::uint64_t retransmits = 0;         // requests sent again (initiator)
    std::uint64_t responses_resent = 0;    // cached responses sent for retransmitted requests
    std::uint64_t cookies_sent = 0, cookies_bad = 0;
    std::uint64_t half_open_full = 0;
    std::uint64_t half_open_source_full = 0;  // one source at its half-open limit
    std::uint64_t critical_unsupported = 0;
    std::uint64_t established = 0, failed = 0;
    std::uint64_t init_requests = 0;       // IKE_SA_INIT requests (responder)
    std::uint64_t key_pairs = 0;           // key pairs made as responder (each a scalar multiplication)
    std::uint64_t bad_ke = 0;              // KE data refused before a key pair was made
    std::uint64_t short_nonce = 0;         // nonces under RFC 7296 §2.10's minimum
    std::uint64_t resends_refused = 0;     // same message id, other bytes (or too many resends)
    std::uint64_t unprotected_errors = 0;  // initiator: error notifies in IKE_SA_INIT responses, ignored
    // ESP remotes: exchanges on the IKE SA that stays up (esp_exchanges.cpp)
    std::uint64_t esp_requests = 0;        // CREATE_CHILD_SA / INFORMATIONAL requests answered
    std::uint64_t esp_bad = 0;             // malformed, forged or unexpected ones: dropped
    std::uint64_t child_rekeys = 0, ike_rekeys = 0;
    std::uint64_t esp_refused = 0;         // CREATE_CHILD_SA answered with an error notify
    std::uint64_t liveness_sent = 0, deletes_received = 0, deletes_sent = 0;
    std::uint64_t esp_dead = 0;            // peers declared dead (heartbeat_fail)
    std::uint64_t nat_keepalives = 0;      // sent behind a NAT (ESP remotes)
};

class SetupEngine {
public:
    SetupEngine(const config::Config& cfg, Credentials creds, SetupOptions opts, const control::Clock& clock,
                control::Random& random, Transport& transport, SessionSink& sink);
    ~SetupEngine();
    SetupEngine(const SetupEngine&) = delete;
    SetupEngine& operator=(const SetupEngine&) = delete;

    // Secondary: start an exchange with the configured remote (its primary). False on a
    // primary, for an unknown remote, or when an exchange with it is already running.
    bool connect(std::uint32_t remote_id);

    // Peers at run time (the administrator's remote add/set/remove, shutdown/start). Peers
    // live in a list: IKE SAs and tasks point at them, and no SA outlives its peer.
    // add_peer: the remote becomes a peer, replacing one of that id (whose exchanges are
    // aborted first; a shut peer stays shut). A remote on static keys is no peer: one of its
    // id is removed. The engine copies what it keeps; r need not outlive the call.
    void add_peer(const config::Remote& r);
    // Its exchanges aborted (reserved receive IDs released, no failure reported), then gone.
    void remove_peer(std::uint32_t id);
    // off: as initiator connect() is false (a running exchange is aborted); as responder an
    // IKE_AUTH proving that remote is refused with AUTHENTICATION_FAILED after the proof
    // is checked (SETUP_REMOTE_SHUT). Unknown id: nothing.
    void set_enabled(std::uint32_t id, bool on);
    bool has_peer(std::uint32_t id) const noexcept { return ctx_.find_peer(id) != nullptr; }
    // The remotes' keys, for reloading at run time (Credentials::reload_psk / remove_psk):
    // they count from the next exchange on.
    Credentials& credentials() noexcept { return creds_; }

    // One UDP datagram: from = the sender, to = our address it arrived on, framing = whether
    // it came behind the non-ESP marker (stripped already; answers carry it again).
    void on_datagram(const Endpoint& from, const Endpoint& to, ByteView data, Framing framing = Framing::plain);

    // Retransmissions and expiries due at the clock's now.
    void on_timer();
    std::optional<control::TimePoint> next_deadline() const;

    // ESP remotes: our IKE DELETE (shutdown, remote removed, p3d stopping): sent once, then the
    // IKE SA is forgotten and the session's keys cleared. False: no ESP session with it.
    bool esp_close(std::uint32_t remote_id);
    // Start a child SA rekey now (the administrator's rekey). False: no idle ESP session.
    bool esp_rekey(std::uint32_t remote_id);
    bool esp_up(std::uint32_t remote_id) const;

    const SetupCounters& counters() const noexcept { return counters_; }
    std::size_t half_open() const noexcept { return half_open_; }
    std::size_t exchanges() const noexcept { return sas_.size(); }
    bool cookies_demanded() const noexcept { return need_cookies(clock_.now()); }
    std::size_t half_open_sources() const noexcept { return half_open_by_source_.size(); }

private:
    void handle_request(const Endpoint& from, const Endpoint& to, ByteView data, Message& msg);
    void handle_response(const Endpoint& from, ByteView data, Message& msg);
    void init_request(const Endpoint& from, const Endpoint& to, ByteView data, const Message& msg);
    void auth_request(IkeSa& sa, const Endpoint& from, const Endpoint& to, ByteView data, const Message& outer);
    void init_response(IkeSa& sa, ByteView data, const Message& msg);
    void auth_response(IkeSa& sa, ByteView data, const Message& outer);

    bool build_request(IkeSa& sa, Message& m);
    bool send_init_request(IkeSa& sa);
    bool send_auth_request(IkeSa& sa);
    void float_to_nat_port(IkeSa& sa);
    void open_nat_mapping(const IkeSa& sa);
    void send_request(IkeSa& sa, Bytes bytes);
    void send_response(IkeSa& sa, Bytes bytes, std::uint32_t msg_id, ByteView request);
    bool resend_cached(IkeSa& sa, const Endpoint& from, const Endpoint& to, ByteView data, const Bytes& response);
    void send_stateless(const Endpoint& from, const Endpoint& to, const Header& req, std::uint16_t notify, Bytes data);
    std::optional<Bytes> seal(IkeSa& sa, Message& m);

    std::uint8_t critical_check(const Message& m) const;
    Bytes cookie_for(const Endpoint& peer, Spi spi_i, ByteView nonce_i, std::uint8_t version) const;
    bool cookie_valid(const Endpoint& peer, const Message& msg, ByteView nonce_i) const;
    void rotate_cookie_secret();
    bool need_cookies(control::TimePoint now) const;
    bool cookie_policy(const Endpoint& from, const Endpoint& to, const Message& msg, ByteView nonce_i);
    void refused() { failures_.add(clock_.now()); }  // a request that failed, toward cookies
    void open_half(IkeSa& sa);
    void close_half(IkeSa& sa);
    void release_source(const IkeSa& sa);
    static IpAddr source_key(const IpAddr& a);  // IPv4 address, IPv6 /64

    // ESP remotes (esp_exchanges.cpp)
    IkeSa* esp_sa_for(const Message& msg);
    void esp_message(IkeSa& sa, const Endpoint& from, const Endpoint& to, ByteView data, const Message& outer);
    void esp_informational(IkeSa& sa, const Message& outer, ByteView data, const Message& msg);
    void esp_create_child(IkeSa& sa, const Message& outer, ByteView data, const Message& msg);
    void esp_rekey_ike(IkeSa& sa, const Message& outer, ByteView data, const Message& msg, const SaPayload& sap);
    void esp_response(IkeSa& sa, const Message& msg);
    void esp_rekey_response(IkeSa& sa, const Message& msg);
    bool esp_start_rekey(IkeSa& sa);
    void esp_timer(IkeSa& sa, control::TimePoint now);
    void esp_started(IkeSa& sa);
    void esp_send_request(IkeSa& sa, IkeSa::Out kind, Message m);
    void esp_answer(IkeSa& sa, const Message& outer, ByteView data, Message resp);
    void esp_refuse(IkeSa& sa, const Message& outer, ByteView data, std::uint16_t notify, Bytes ndata, const std::string& why);
    void esp_end(IkeSa& sa, Reason reason, const std::string& why);
    void esp_retire_old(IkeSa& sa, std::size_t i);
    void esp_switch_tx(IkeSa& sa);   // a pending outbound switch, now
    bool keepalives(const IkeSa& sa) const;
    control::TimePoint esp_deadline(const IkeSa& sa) const;
    Message esp_message_for(const IkeSa& sa, Exchange ex, bool response, std::uint32_t msg_id) const;

    bool establish(IkeSa& sa);  // false: failed (an initiator's SA is then gone)
    void fail(IkeSa& sa, Reason reason, const std::string& why);
    void erase(Spi our_spi);
    // Every SA pointing at peer, erased quietly (keep_esp: but an ESP remote's established IKE SA).
    void abort_exchanges(const PeerConfig& peer, bool keep_esp = false);
    Spi new_spi();
    Spi our_spi(const IkeSa& sa) const { return sa.initiator ? sa.spi_i : sa.spi_r; }

    LocalConfig local_;
    std::list<PeerConfig> peers_;
    Credentials creds_;
    SetupOptions opts_;
    const control::Clock& clock_;
    control::Random& random_;
    Transport& transport_;
    SessionSink& sink_;
    TaskContext ctx_;

    std::unordered_map<std::uint64_t, std::unique_ptr<IkeSa>> sas_;  // by our SPI
    // Responder: (SPIi, peer address, peer port) -> our SPI, to recognise retransmitted
    // IKE_SA_INIT requests.
    std::map<std::tuple<std::uint64_t, IpAddr, std::uint16_t>, std::uint64_t> init_index_;
    std::size_t half_open_ = 0;
    std::map<IpAddr, std::uint32_t> half_open_by_source_;  // half-open and failed; entries only while > 0
    RateWindow requests_{limits::rate_window}, failures_{limits::rate_window};
    Framing rx_framing_ = Framing::plain;  // of the datagram being handled (for stateless answers)

    // Stateless cookies (§2.6): version byte selects the secret; the previous one stays valid
    // for one lifetime so a cookie issued just before a rotation still works.
    std::uint8_t cookie_version_ = 0;
    SecretBytes cookie_secret_, cookie_secret_prev_;
    control::TimePoint cookie_rotated_{};
    bool cookie_mode_ = false;  // cookies demanded (logged once per episode)

    SetupCounters counters_;
};

}  // namespace p3::setup
