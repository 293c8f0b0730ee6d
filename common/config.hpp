// The configuration model: one validated, fully resolved value that both configuration
// formats load into (libconfig, DESIGN.md §Configuration; the seed spec's Appendix A line
// format). Defaults are Appendix A's. Groups and per-remote overrides are already applied to
// every Remote's `params`, so consumers never resolve inheritance themselves.
//
// The model is a plain value: the control plane can build a new one at run time (p3ctl
// changes), diff it against the running one and apply the difference.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "common/net.hpp"
#include "common/reasons.hpp"
#include "common/secret.hpp"

namespace p3::config {

enum class Role { primary, secondary };
enum class KeyType { aes128, aes256 };
enum class KeyGeneration { software, hardware };
// How a remote's traffic is carried (DESIGN.md §Standard ESP mode): p3 = the P3 wire with its
// control channel; esp = standard ESP (RFC 4303/4106/3948) for a foreign IKEv2 peer: one SA per
// direction, IKE (CREATE_CHILD_SA, INFORMATIONAL) instead of the control channel, no key
// arrays, no push, no size hiding.
enum class WireMode { p3, esp };

// Parameters a group or a remote may override (seed spec Appendix A, "#/..." keywords,
// plus what the session needs to be pushed to a secondary).
struct SessionParams {
    std::uint32_t rekey_wait = 3600;          // s
    std::uint64_t rekey_packets = 0;          // rekey after this many packets per lane; 0 = only the AES-GCM safety limit
    bool rekey_dh = true;                     // X25519 forward secrecy at rekey (DESIGN.md §Session life 3)
    std::uint32_t array_size = 256;           // keys per key array ("key_array" in the legacy format)
    std::uint32_t data_array_time = 86400;    // s
    std::uint32_t control_array_time = 82800; // s
    std::uint32_t heartbeat_time = 15;        // s
    std::uint32_t heartbeat_fail = 120;       // s
    KeyType key_type = KeyType::aes128;
    bool size_hiding = false;                 // DESIGN.md §Wire format, size hiding
    std::uint32_t lanes = 0;                  // lanes this side sends on; 0 = one per worker lcore
    bool operator==(const SessionParams&) const = default;
};

// Bring-up / benchmark / interop keys: no setup exchange, these keys are lane 0 as they are;
// lane n > 0 is derived (HKDF, DESIGN.md) and uses P3 ID base + n.
struct StaticKeys {
    std::uint32_t tx_id = 0;     // P3 ID we put on packets we send (the peer's rx_id)
    SecretBytes tx_key;          // 16 or 32 bytes, matching key_type
    SecretBytes tx_salt;         // 4 bytes
    std::uint32_t rx_id = 0;     // P3 ID the peer puts on packets it sends to us
    SecretBytes rx_key;
    SecretBytes rx_salt;
    std::uint32_t lanes = 1;     // lanes in each direction (tx_id..tx_id+lanes-1)
    // false: inbound packets skip the anti-replay window (RFC 4303 §3.4.3 allows it for
    // manually keyed SAs): looped benchmark captures repeat their sequences.
    bool anti_replay = true;
    // true: each lane's sequence high-water mark is persisted ahead in local.state_dir, so a
    // restart (or a crash) resumes above everything sent before and never repeats a nonce.
    // false: every start begins again at sequence 1 (throwaway benchmark keys only; P3-W0123).
    bool persist_sequence = true;
    int line = 0;

    StaticKeys clone() const;
};

// A group: a named set of overrides. Only the fields set in the file are present.
struct Group {
    std::string name;
    std::optional<std::uint32_t> rekey_wait, array_size, data_array_time, control_array_time,
        heartbeat_time, heartbeat_fail, lanes;
    std::optional<std::uint64_t> rekey_packets;
    std::optional<KeyType> key_type;
    std::optional<bool> size_hiding;
    std::optional<bool> rekey_dh;
    int line = 0;
    bool operator==(const Group&) const = default;
};

struct Remote {
    std::uint32_t id = 0;             // unique, > 0
    IpAddr address;                   // the peer appliance's WAN address ("ip" = its family)
    std::uint16_t port = 5653;        // secondary: the primary's setup port
    std::vector<Prefix> subnets;      // routed to this remote
    std::vector<std::string> groups;  // names, in order of application
    SessionParams params;             // resolved: local -> groups (in order) -> remote overrides
    // The remote's own settings as written (name unused): what a saved file writes back into
    // the remote, so a value it inherits stays inherited and a group edited later still applies.
    Group overrides;
    std::string identity;             // IKE identity expected/used; empty = the address
    // This remote's own pre-shared key (owner-only file, at least 16 bytes): on a primary the
    // key of that secondary, on a secondary the key it shares with its primary. Empty: the
    // remote authenticates by certificate (local.certificate/private_key/ca). One remote's
    // key never authenticates another; no key is shared by all remotes.
    std::string psk_file;
    std::optional<StaticKeys> static_keys;
    WireMode wire = WireMode::p3;     // "wire": p3 (default) or esp
    int line = 0;                     // where it was defined (for messages)

    Remote clone() const;
};


// The admin socket and the audit trail (local.admin; docs/administration.md). An empty socket
// is p3d's default: /run/p3/p3d.sock, or /run/p3/NAME.sock with EAL --file-prefix NAME.
struct Admin {
    std::string socket;
    std::string group = "p3";                      // may do everything; missing: only root
    std::string viewer_group = "p3view";           // status and audit only
    std::string audit = "/var/log/p3/audit.jsonl"; // appended, never truncated
    bool operator==(const Admin&) const = default;
};

struct Local {
    IpAddr address;                   // WAN address peers use ("ip" = its family)
    std::uint16_t port = 5653;        // setup exchange UDP port
    KeyGeneration key_generation = KeyGeneration::software;
    SessionParams defaults;           // the global timers etc.
    // 1: this appliance is a member of a cluster sharing `address` (docs/cluster.md); the
    // cluster block applies. 0: it is not, and a cluster block is ignored (warned about).
    std::uint32_t cluster_state = 0;
    // 1: control sessions are spread over the active members (needs cluster_state = 1 and a
    // director, director = "lvs"); 0: the primary holds every control session.
    std::uint32_t load_balance = 0;
    std::string identity;             // our IKE identity; empty = the address
    // Certificate authentication (PEM files). Pre-shared keys are per remote (Remote::psk_file);
    // a psk_file here (one key for every remote) is refused (P3-E0113).
    std::string certificate, private_key, ca;
    std::uint16_t nat_port = 4500;    // UDP port for NAT-traversal encapsulation at the primary
    // State that must survive a restart (the static keys' sequence marks): owner-only, absolute.
    std::string state_dir = "/var/lib/p3";
    // Protected networks on our LAN side besides the LAN port's own prefix (networks behind a
    // LAN gateway): inbound inner destinations must lie in one of them (RFC 4301 §5.2).
    std::vector<Prefix> subnets;
    Admin admin;
    bool operator==(const Local&) const = default;
};

// The cluster block (docs/cluster.md), read only with local.cluster_state = 1. Every member
// has the same local.address (the VIP).
enum class ClusterDirector { lvs, none };
enum class ClusterRole { primary, backup };
struct Cluster {
    std::uint32_t member = 1;          // this member's number, 1..max_members
    std::uint32_t max_members = 1;     // 1..16: every session has max_members x L lanes
    // lvs: a director owns the VIP on the wire (no member answers ARP/ND for it, all members
    // receive and send); none: failover, only the primary answers and sends on the WAN.
    ClusterDirector director = ClusterDirector::lvs;
    std::string group = "p3";          // corosync CPG group name
    std::string key_file;              // 32 random bytes (raw or 64 hex digits), owner-only
    ClusterRole role = ClusterRole::backup;   // at start; p3ctl cluster promote|demote changes it
    int line = 0;                      // where the block is (0: none)
    bool operator==(const Cluster& o) const {
        return member == o.member && max_members == o.max_members && director == o.director &&
               group == o.group && key_file == o.key_file && role == o.role;
    }
};

// The lanes of one member of a session (docs/cluster.md §Lanes of a member): a session has
// max_members x per_member lanes and member m sends on (m-1) x per_member .. m x per_member - 1.
// Outside a cluster: one member, offset 0.
struct MemberLanes {
    std::uint32_t offset = 0;          // first lane this member sends on
    std::uint32_t per_member = 1;      // L
    std::uint32_t total = 1;           // lanes the session announces
};

struct PortConfig {
    std::uint16_t port_id = 0;        // DPDK port id ...
    std::string port_name;            // ... or device name (e.g. "net_ring0"); resolved at start when set
    Prefix address;                   // interface address with its prefix (host bits kept)
    std::optional<IpAddr> gateway;    // next hop for off-link destinations
    std::optional<MacAddr> gateway_mac;  // static neighbour: no ARP/ND needed
    std::uint16_t mtu = 1500;
    bool operator==(const PortConfig&) const = default;
};

struct Dataplane {
    PortConfig lan, wan;
    std::uint32_t replay_window = 1024;   // packets, 64..8192, multiple of 64
    std::uint32_t idle_backoff_us = 0;    // sleep when idle: 0 = busy poll (appliance); >0 = share CPUs
    std::uint32_t idle_polls = 256;       // empty polls before backing off
    std::uint32_t mbufs = 8191;           // packet buffers in the pool
    std::uint16_t rx_queues = 1;          // per port; 0 = one per worker lcore
    std::uint16_t burst = 32;
    bool spread_lanes = false;            // one session's inbound lanes handed to owner workers
    bool operator==(const Dataplane&) const = default;
};

struct Error {
    std::string file;
    int line = 0;                     // 0 when not tied to a line
    Reason reason = Reason::CFG_SYNTAX;
    std::string what;                 // "unknown keyword 'foo'", "rekey_wait 0 out of range 1..31536000"
    // "file:line: what" — the form every tool prints.
    std::string str() const;
};

struct Config {
    Role role = Role::primary;
    Local local;
    Dataplane dataplane;
    Cluster cluster;                  // meaningful with local.cluster_state = 1
    std::vector<Group> groups;
    std::vector<Remote> remotes;
    std::string source;               // file it came from
    // What load found worth saying but not worth refusing (a key file that does not exist yet,
    // remotes on static keys): reason codes P3-W01xx, in file order. load_file logs them.
    std::vector<Error> warnings;
    // Information worth stating (P3-I01xx): the role a line-format file was read as.
    std::vector<Error> notes;
    // Where the settings the start checks (check_start) report against were written; 0 when
    // not given. Not settings: ignored by same_settings.
    struct Lines {
        int local = 0, address = 0, certificate = 0, private_key = 0, ca = 0, local_subnets = 0;
        int lan = 0, wan = 0, lan_gateway = 0, wan_gateway = 0, mbufs = 0, rx_queues = 0;
        int cluster_key = 0;
    } lines;

    Config clone() const;
};

// per_member: the lanes this side sends on (a remote's lanes, or the worker count).
MemberLanes member_lanes(const Config& cfg, std::uint32_t per_member) noexcept;
// The cluster key (cluster.key_file): an owner-only key file (common/keyfile.hpp) of 32 bytes,
// raw or as 64 hex digits (a line end after them is allowed). False with why set otherwise.
bool read_cluster_key(const std::string& path, SecretBytes& key, std::string& why);

// What p3d would refuse at start, or could not forward with, that loading alone does not
// find (config_check.cpp): no LAN address, a remote or local subnet off its link without a
// gateway, local.address not the WAN port's, a remote subnet overlapping our own LAN, more
// remotes or routes than the dataplane's tables hold, too few packet buffers for the RX
// queues. Every entry is an error (P3-E0137..0142) with file and line; empty: none. Shared by
// p3ctl config check and p3d (which logs them at start).
std::vector<Error> check_start(const Config& cfg);

template <class T>
using Result = std::variant<T, Error>;

// Loads either format (a file whose first keyword is "localstart" is the legacy line
// format), applies defaults, resolves groups and overrides, validates everything, and
// checks key files (owner-only, no symbolic link, pre-shared keys of at least 16 bytes) and
// that no two remotes share an identity. Any error rejects the whole file.
Result<Config> load_file(const std::string& path);
Result<Config> load_libconfig_text(const std::string& text, const std::string& name);
Result<Config> load_legacy_text(const std::string& text, const std::string& name);

// The effective configuration in libconfig syntax. Secrets are masked ("<secret: 16 bytes>")
// unless reveal is set (only `p3ctl config convert` of a legacy file, which has none, and
// saving the running configuration use the unmasked form).
std::string to_libconfig(const Config& cfg, bool reveal_secrets = false);

// Logs cfg.warnings (each with its reason code, file and line). load_file calls it, so p3d
// logs P3-W0109 once per remote on static keys when it loads a file; the text loaders do not.
void log_warnings(const Config& cfg);

// The AES-GCM usage bound for a WAN MTU: packets one key may seal, floor(2^35 / l), where
// l = the 16-byte blocks of the largest plaintext that MTU lets a sender seal (the MTU less
// the outer IPv4 header, the P3 header and the tag), plus one. That keeps an attacker's
// advantage against the key's confidentiality below 2^-57 (RFC 8446 §5.5 picks the same
// margin; draft-irtf-cfrg-aead-limits-11 §5.1 gives the bound). docs/configuration.md has
// the figures: 373,475,417 packets at MTU 1500, 61,247,305 at 9000.
std::uint64_t aead_packet_bound(std::uint32_t wan_mtu) noexcept;
// The packet limit a session applies: `configured` (a session's rekey_packets), 0 meaning the
// bound, and never above the bound (a pushed value may come from a primary with a smaller MTU).
std::uint64_t rekey_packet_limit(std::uint64_t configured, std::uint32_t wan_mtu) noexcept;
// The spec's §4.1 asks for new keys at least every ten minutes: a longer rekey_wait is warned
// about (P3-W0125) where it is set.
inline constexpr std::uint32_t kRekeyWaitAdvised = 600;

// True when a and b configure the same thing: every setting, secrets compared in constant
// time, and a remote's own overrides (Remote::overrides) as well as its resolved params;
// the source file, line numbers and warnings are ignored. (A run-time change that is "the
// same" needs no action.)
bool same_settings(const Config& a, const Config& b);
bool same_settings(const Remote& a, const Remote& b);

// ---- run-time changes (config_live.cpp; docs/configuration.md "Changes at run time") ----
// A change is a whole new Config, validated like a file, never half applied; diff() says
// what the control plane must do to go from the running configuration to it.

struct Diff {
    std::vector<std::uint32_t> added, removed;   // remote ids, ascending
    struct Changed {
        std::uint32_t id;
        // The remote's keys that differ, in a fixed order: "address", "port", "identity",
        // "psk_file", "wire", "subnets", "groups", "static_keys", then the session parameters
        // ("rekey_wait", ...; one differs when its resolved value or the remote's own
        // override of it does).
        std::vector<std::string> fields;
        // False only when nothing beyond subnets, groups (with equal resolved params) and
        // psk_file changed: applied in place. True: that one session is set up again.
        bool reestablish;
    };
    std::vector<Changed> changed;                // ascending id
    // Settings outside remotes and groups that differ ("role", "local.address",
    // "dataplane.wan", ...): not applied until a restart. Local timer defaults are not here:
    // they show as the remotes' changed parameters.
    std::vector<std::string> restart_needed;
    bool empty() const noexcept;
};
Diff diff(const Config& running, const Config& next);

// running plus the remotes of text (libconfig, `remotes = ( { ... }, ... );` and nothing
// else), validated with the running configuration as one file; errors about the new remotes
// name `name` and the text's lines. The result's warnings are the new remotes' only.
Result<Config> with_added_remotes(const Config& running, const std::string& text, const std::string& name);
// running with remote id's own keys set: KEY=VALUE, VALUE in libconfig syntax where a bare
// word is a string (subnets and groups: words separated by commas are the list); KEY with
// an empty VALUE removes the remote's own setting (the default, its groups or local apply
// again). Not "id" nor "static_keys". Errors: file "remote ID", no line, the key named.
// An unknown id: CFG_UNKNOWN_REMOTE.
Result<Config> with_remote_settings(const Config& running, std::uint32_t id,
                                    const std::vector<std::pair<std::string, std::string>>& kv);
// running without remote id (unknown id: CFG_UNKNOWN_REMOTE).
Result<Config> without_remote(const Config& running, std::uint32_t id);

// Writes text to path atomically: PATH.tmp written and fsync'd, the old file kept as
// PATH.prev, PATH.tmp renamed over PATH, the directory fsync'd. The mode is the old file's
// (else 0600); owner_only (text holds secrets: static keys) takes group and other bits off.
// Never leaves a half-written PATH; false with why set on failure.
bool save_file(const std::string& path, const std::string& text, std::string& why, bool owner_only = false);

}  // namespace p3::config
