// Shared by the two configuration loaders (config_libconfig.cpp, config_legacy.cpp), the
// common part (config.cpp) and the validation (config_validate.cpp): the limits of every
// setting, the parsers of values both formats share (defined in config.cpp), and the "draft"
// a loader fills before finalize() (config_validate.cpp) resolves groups and overrides and
// checks what spans more than one setting.
//
// Flow: loader parses its syntax, range-checks each value where it knows the line, fills a
// Draft -> finalize() applies defaults, resolves local -> groups -> remote overrides, checks
// cross-setting rules (duplicates, overlaps, key sizes, key files) -> Config. Any failure
// throws LoadError, caught once at the loader's entry point: the whole file is rejected.
#pragma once

#include <iosfwd>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/config.hpp"
#include "common/wire_limits.hpp"

namespace libconfig {
class Setting;
}

namespace p3::config::detail {

struct LoadError {
    Error err;
};

[[noreturn]] void fail(const std::string& file, int line, Reason reason, std::string what);

struct Range {
    long long lo, hi;
    bool contains(long long v) const noexcept { return v >= lo && v <= hi; }
};

// Every numeric setting's allowed range, in one place (documented in docs/configuration.md).
namespace limits {
inline constexpr Range seconds{1, 31536000};           // timers: 1 s .. 1 year
inline constexpr Range rekey_packets{0, 0x7fffffffffffffffLL};
inline constexpr Range array_size{1, 65536};
inline constexpr Range heartbeat_time{1, 3600};
inline constexpr Range heartbeat_fail{2, 86400};
inline constexpr Range lanes{0, 128};
inline constexpr Range static_lanes{1, 128};
inline constexpr Range port{1, 65535};
inline constexpr Range ip_version{4, 6};
inline constexpr Range flag{0, 1};                     // cluster_state, load_balance
inline constexpr Range max_members{1, 16};
inline constexpr Range member{1, 16};
inline constexpr Range remote_id{1, 4294967295LL};
inline constexpr Range p3_id{1, 4294967295LL};
inline constexpr Range port_id{0, 65534};              // DPDK port id (RTE_MAX_ETHPORTS bound at start)
inline constexpr Range mtu{wire::kIpv4MinMtu, 9600};
inline constexpr Range mtu_v6{wire::kIpv6MinMtu, 9600};
inline constexpr Range replay_window{wire::kReplayWindowMin, wire::kReplayWindowMax};  // and a multiple of 64
inline constexpr Range idle_backoff_us{0, 100000};
inline constexpr Range idle_polls{1, 1000000};
inline constexpr Range mbufs{511, 1048575};
inline constexpr Range rx_queues{0, 64};
inline constexpr Range burst{1, 64};                  // = dp::kMaxBurst (dataplane/limits.hpp), which p3d refuses above
inline constexpr std::size_t max_name = 255;           // identities, group names, port names
inline constexpr std::size_t max_subnets = 4096;       // per remote
inline constexpr std::size_t max_local_subnets = 16;   // local.subnets (checked per inbound packet)
}  // namespace limits

// Session parameters a group or a remote may override: which are numbers and their ranges.
// Returns nullptr for a key that is not a numeric session parameter.
const Range* session_number_range(std::string_view key);
// Sets the numeric session parameter `key` (one session_number_range knows) in g.
void set_session_number(Group& g, std::string_view key, long long v);
// Applies the fields set in g over p.
void apply(SessionParams& p, const Group& g);

std::optional<KeyType> parse_key_type(std::string_view s);
std::optional<WireMode> parse_wire(std::string_view s);     // "p3" / "esp", any case  // "AES128" / "AES256", any case
std::string_view key_type_name(KeyType k);
// Hex digits (optional 0x), even count, straight into secret storage. nullopt if malformed.
std::optional<SecretBytes> parse_hex_secret(std::string_view s);
// "1..10" form used in every range message.
std::string range_str(const Range& r);

// Everything a loader knows that finalize() needs: the model so far plus the lines to
// report against and what the file left unsaid.
struct RemoteDraft {
    Group overrides;                 // the remote's own settings (applied last)
    // Where this remote was written when not in Draft::file (a run-time change: the text
    // `remote add` read, or "remote N" for `remote set`): its messages and warnings say so.
    std::string file;
    bool id_missing = false;         // no "id": 1 for a secondary's lone remote, else refused
    int groups_line = 0;
    std::vector<int> subnet_lines;   // parallel to Remote::subnets
    int address_line = 0;
    int psk_line = 0;
    int wire_line = 0;               // where "wire" is (0: not given)
    int ip_version = 0;              // "ip" if given
    int ip_line = 0;
};

struct Draft {
    // Without a dataplane section: LAN on port 0, WAN on port 1 (the WAN address is the
    // local address unless given).
    Draft() { cfg.dataplane.wan.port_id = 1; }
    Config cfg;
    std::vector<RemoteDraft> remotes;  // parallel to cfg.remotes
    std::string file;                  // for messages
    bool role_set = false;
    int role_line = 0;
    int local_line = 0;                // where `local` / `localstart` is (0: missing)
    bool address_set = false;
    int address_line = 0;
    int ip_version = 0;                // local "ip" if given
    int ip_line = 0;
    int cert_line = 0, key_line = 0, ca_line = 0;
    int state_dir_line = 0, local_subnets_line = 0;
    bool wan_address_set = false;
    int lan_line = 0, wan_line = 0;    // where each port's settings are
    int lan_gateway_line = 0, wan_gateway_line = 0, lan_mtu_line = 0, wan_mtu_line = 0;
    int mbufs_line = 0, rx_queues_line = 0;
    int cluster_state_line = 0, load_balance_line = 0;
    int cluster_line = 0, cluster_key_line = 0, cluster_member_line = 0;   // 0: not given
    int last_line = 0;                 // end of file, for "missing" errors
    // Every rekey_packets the file sets, where: finalize() checks each against the AES-GCM bound
    // of the WAN MTU, which the file may give after it.
    struct PacketLimit {
        std::string file;  // empty: Draft::file
        std::string path;
        int line = 0;
        std::uint64_t value = 0;
    };
    std::vector<PacketLimit> rekey_packets_set;
};

// A loader calls this for every numeric session parameter it read (after set_session_number):
// a rekey_wait above kRekeyWaitAdvised is warned about here, once for the place it is set
// (local, a group, a remote); a rekey_packets is noted for finalize().
void note_session_number(Draft& d, std::string_view key, long long v, int line, const std::string& path);

// The cluster block (config_cluster.cpp): read from the libconfig tree into d (its lines
// noted), checked against local.cluster_state, the remotes' lanes and wires (finalize calls
// check_cluster), written back by to_libconfig.
void read_cluster(Draft& d, const libconfig::Setting& s, const std::string& file);
void check_cluster(Draft& d);
void print_cluster(std::ostream& o, const Cluster& c);

// A key file's checks as p3d makes them when it opens the file (config_validate.cpp): link,
// mode, not regular refused; absent warned about (P3-W0110). psk: also read it as a
// pre-shared key (length).
void check_key_file(Draft& d, const std::string& file, const std::string& path, const char* what, int line,
                    bool psk);
// A relative path in a file is taken from the file's directory.
void resolve_path(std::string& path, const std::string& file);

// Resolves and validates (config_validate.cpp); the result replaces d.cfg. Throws LoadError.
Config finalize(Draft&& d);

// ---- run-time changes (config_live.cpp builds on these) ----
// Reads `remotes = ( { ... }, ... );` (nothing else) from text into d, each new remote's
// RemoteDraft.file set to name; errors name that text and its lines. Throws LoadError.
void read_remotes_text(Draft& d, const std::string& text, const std::string& name);
// Reads one key of remote i from the first of `values` (libconfig value texts) that parses,
// over what the remote had; errors name `label` and the key. False if none parses.
bool read_remote_key(Draft& d, std::size_t i, const std::string& key, const std::vector<std::string>& values,
                     const std::string& label);

// The text libconfig reads: integer literals above 2^31-1 get the 'L' suffix (libconfig 1.5
// would wrap them), @include is refused; strings, comments and line numbers are kept.
std::string prepare_libconfig(const std::string& text, const std::string& file);

}  // namespace p3::config::detail
