// Resolution and validation of a loaded configuration (finalize): applies defaults, resolves
// local -> groups -> per-remote overrides, resolves key and certificate paths against the
// file, and checks every rule that spans more than one setting (required sections, the
// dataplane ports, rekey_packets within the AES-GCM bound, duplicate groups, remote ids and
// identities, static key sizes, ids and reuse, key file modes, overlapping subnets). Each check is a step of its own; finalize runs
// them in a fixed order so one input always gets the same first error.
//
// Both loaders (config_libconfig.cpp, config_legacy.cpp) fill a Draft and hand it here; the
// value parsers and limits they share are in config.cpp and config_internal.hpp.
#include <limits.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

#include "common/config.hpp"
#include "common/config_internal.hpp"
#include "common/wire_limits.hpp"
#include "common/keyfile.hpp"

namespace p3::config::detail {

static std::string dir_of(const std::string& file) {
    auto slash = file.rfind('/');
    if (slash == std::string::npos) return "";
    return file.substr(0, slash + 1);
}

// Relative key and certificate paths are taken relative to the configuration file, so a
// file and its keys can move together; the model holds the resolved, absolute path (so a
// saved copy of the running configuration, wherever it is written, names the same files).
void resolve_path(std::string& path, const std::string& file) {
    if (path.empty() || path[0] == '/') return;
    std::string dir = dir_of(file);
    if (dir.empty() || dir[0] != '/') {
        char cwd[PATH_MAX];
        if (::getcwd(cwd, sizeof cwd)) dir = std::string(cwd) + "/" + dir;
    }
    path = dir + path;
}

// Where remote i was written: a run-time change names its own text (RemoteDraft::file).
static const std::string& file_of(const Draft& d, std::size_t i) {
    return d.remotes[i].file.empty() ? d.file : d.remotes[i].file;
}

// A private key or pre-shared key file must be the file itself (no symbolic link), owner-only,
// and a pre-shared key at least keyfile::kMinPsk bytes. The same checks p3d makes when it
// loads the key (common/keyfile), so `p3ctl config check` finds what p3d would refuse. One
// that does not exist yet is only a warning: the sessions that need it fail (with their own
// reason code) until it does. One this process may not open (a checker without the owner's
// rights) is checked by its metadata alone; p3d checks it whole when it loads it.
void check_key_file(Draft& d, const std::string& file, const std::string& path, const char* what, int line,
                    bool psk) {
    if (path.empty()) return;
    std::string why;
    keyfile::Status s;
    if (psk) {
        SecretBytes key;
        s = keyfile::read_psk(path, key, why);
    } else {
        keyfile::File f;
        s = keyfile::open(path, f, why);
    }
    if (s == keyfile::Status::unreadable) {
        struct stat st{};
        if (::lstat(path.c_str(), &st) != 0) return;  // open() said why; p3d will say it again
        if (S_ISLNK(st.st_mode)) s = keyfile::Status::link;
        else if (!S_ISREG(st.st_mode)) s = keyfile::Status::not_regular;
        else if (st.st_mode & 077) s = keyfile::Status::mode;
        else return;
        char mode[8];
        std::snprintf(mode, sizeof mode, "%04o", unsigned(st.st_mode & 07777));
        why = path + (s == keyfile::Status::mode   ? std::string(": mode ") + mode + ", readable by group or others"
                      : s == keyfile::Status::link ? std::string(": a symbolic link (key files are opened only as themselves)")
                                                   : std::string(": not a regular file"));
    }
    const std::string msg = std::string(what) + " " + why;
    switch (s) {
        case keyfile::Status::ok:
        case keyfile::Status::unreadable: return;
        case keyfile::Status::absent:
            d.cfg.warnings.push_back(Error{file, line, Reason::CFG_KEY_FILE_ABSENT, msg});
            return;
        case keyfile::Status::link: fail(file, line, Reason::CFG_KEY_FILE_LINK, msg);
        case keyfile::Status::not_regular: fail(file, line, Reason::CFG_BAD_VALUE, msg);
        case keyfile::Status::mode:
            fail(file, line, Reason::CFG_KEY_FILE_MODE, msg + "; allowed: owner only (chmod 600)");
        case keyfile::Status::too_long: fail(file, line, Reason::CFG_BAD_VALUE, msg);
        case keyfile::Status::too_short: fail(file, line, Reason::CFG_PSK_SHORT, msg);
    }
}

namespace {

// An identity as the setup exchange compares it (control/setup make_id + same_id): an IP
// literal, or the address when empty, is the address; anything else is a name, compared
// without case (DNS names and the host part of an e-mail address are case-insensitive, and
// certificate matching ignores case, so two remotes differing only in case would share one
// certificate).
std::string identity_key(const Remote& r) {
    if (r.identity.empty()) return "ip:" + r.address.str();
    if (auto ip = IpAddr::parse(r.identity); ip && ip->family) return "ip:" + ip->str();
    std::string s = r.identity;
    for (auto& c : s) c = char(std::tolower(static_cast<unsigned char>(c)));
    return (s.find('@') != std::string::npos ? "email:" : "fqdn:") + s;
}

std::string list_names(const std::vector<Group>& groups) {
    if (groups.empty()) return "none";
    std::string s;
    for (const auto& g : groups) {
        if (!s.empty()) s += ", ";
        s += g.name;
    }
    return s;
}

void check_heartbeat(const std::string& file, const SessionParams& p, int line, const std::string& who) {
    if (p.heartbeat_fail <= p.heartbeat_time)
        fail(file, line, Reason::CFG_BAD_VALUE,
             who + "heartbeat_fail " + std::to_string(p.heartbeat_fail) +
                 " must be greater than heartbeat_time " + std::to_string(p.heartbeat_time));
}

void check_port(const Draft& d, const PortConfig& pc, const char* side, int line, int gw_line, int mtu_line) {
    std::string name = std::string("dataplane.") + side;
    if (pc.gateway) {
        if (pc.address.addr.family == 0)
            fail(d.file, gw_line, Reason::CFG_MISSING, name + ".gateway needs " + name + ".address");
        if (pc.gateway->family != pc.address.addr.family)
            fail(d.file, gw_line, Reason::CFG_BAD_VALUE,
                 name + ".gateway " + pc.gateway->str() + " is not of the address family of " +
                     pc.address.str());
        Prefix net = pc.address;
        if (!net.contains(*pc.gateway))
            fail(d.file, gw_line, Reason::CFG_BAD_VALUE,
                 name + ".gateway " + pc.gateway->str() + " is not on the link " + pc.address.str());
    }
    if (pc.gateway_mac && !pc.gateway)
        fail(d.file, gw_line, Reason::CFG_MISSING, name + ".gateway_mac needs " + name + ".gateway");
    if (pc.address.addr.is_v6() && !limits::mtu_v6.contains(pc.mtu))
        fail(d.file, mtu_line ? mtu_line : line, Reason::CFG_BAD_VALUE,
             name + ".mtu " + std::to_string(pc.mtu) + " out of range " + range_str(limits::mtu_v6) +
                 " for IPv6");
}

// A static key is never used twice: not both ways of one remote (a packet we send would
// decrypt as one from the peer, and the two directions' nonces collide when the salts do), not
// by two remotes. Keys are compared in constant time, every comparison evaluated.
void check_static_keys_unique(const Draft& d, const Config& cfg, std::size_t i) {
    const Remote& r = cfg.remotes[i];
    const StaticKeys& sk = *r.static_keys;
    if (sk.tx_key.equals(sk.rx_key.span()))
        fail(file_of(d, i), sk.line, Reason::CFG_STATIC_SAME_KEY,
             "remote " + std::to_string(r.id) +
                 ": static_keys.tx_key equals rx_key: each direction needs its own key");
    for (std::size_t j = 0; j < i; ++j) {
        const auto& o = cfg.remotes[j].static_keys;
        if (!o) continue;
        bool same = false;
        for (const SecretBytes* a : {&sk.tx_key, &sk.rx_key})
            for (const SecretBytes* b : {&o->tx_key, &o->rx_key}) same |= a->equals(b->span());
        if (same)
            fail(file_of(d, i), sk.line, Reason::CFG_STATIC_KEY_REUSED,
                 "remote " + std::to_string(r.id) + ": a static key of it is also a static key of remote " +
                     std::to_string(cfg.remotes[j].id) + " (line " + std::to_string(o->line) +
                     "): every direction of every remote needs its own key");
    }
}

// Role, local section and local address present; the local "ip" matches the address; local
// heartbeat defaults consistent.
void check_local(Draft& d) {
    Config& cfg = d.cfg;
    if (!d.role_set)
        fail(d.file, 1, Reason::CFG_MISSING, "role missing: role = \"primary\" or \"secondary\"");
    // A minimal secondary may leave the whole section out: everything in it has a default,
    // and its address is its WAN port's (below).
    if (!d.local_line && !(cfg.role == Role::secondary && d.wan_address_set))
        fail(d.file, 1, Reason::CFG_MISSING, "local section missing");
    if (!d.address_set && cfg.role == Role::secondary && d.wan_address_set) {
        // A minimal secondary (DESIGN.md §Session life 6): its WAN port's address says it.
        cfg.local.address = cfg.dataplane.wan.address.addr;
        d.address_set = true;
    }
    if (!d.address_set)
        fail(d.file, d.local_line, Reason::CFG_MISSING,
             "local address missing (this appliance's WAN address; a secondary may give "
             "dataplane.wan.address instead)");
    if (d.ip_version && d.ip_version != cfg.local.address.family)
        fail(d.file, d.ip_line, Reason::CFG_BAD_VALUE,
             "ip " + std::to_string(d.ip_version) + " does not match address " + cfg.local.address.str() +
                 " (IPv" + std::to_string(cfg.local.address.family) + ")");
    check_heartbeat(d.file, cfg.local.defaults, d.local_line, "local ");
}

// Local credentials: certificate and private key come as a pair, files relative to the
// configuration, the private key owner-only; state_dir is an absolute path.
void check_local_credentials(Draft& d) {
    Config& cfg = d.cfg;
    if (!cfg.local.certificate.empty() && cfg.local.private_key.empty())
        fail(d.file, d.cert_line, Reason::CFG_MISSING, "certificate needs private_key");
    if (cfg.local.certificate.empty() && !cfg.local.private_key.empty())
        fail(d.file, d.key_line, Reason::CFG_MISSING, "private_key needs certificate");
    resolve_path(cfg.local.certificate, d.file);
    resolve_path(cfg.local.private_key, d.file);
    resolve_path(cfg.local.ca, d.file);
    check_key_file(d, d.file, cfg.local.private_key, "private_key", d.key_line, false);
    if (cfg.local.state_dir.empty() || cfg.local.state_dir[0] != '/')
        fail(d.file, d.state_dir_line ? d.state_dir_line : d.local_line, Reason::CFG_STATE_DIR,
             "local.state_dir '" + cfg.local.state_dir + "' is not an absolute path");
}

// Dataplane: the WAN interface carries the local address unless told otherwise; LAN and WAN
// are different ports, each with a consistent gateway and MTU.
void check_dataplane(Draft& d) {
    Config& cfg = d.cfg;
    auto& dp = cfg.dataplane;
    if (!d.wan_address_set) {
        dp.wan.address.addr = cfg.local.address;
        dp.wan.address.len = std::uint8_t(cfg.local.address.is_v4() ? 32 : 128);
    }
    bool same_port = dp.lan.port_name.empty() && dp.wan.port_name.empty()
                         ? dp.lan.port_id == dp.wan.port_id
                         : dp.lan.port_name == dp.wan.port_name;
    if (same_port)
        fail(d.file, d.wan_line ? d.wan_line : d.lan_line ? d.lan_line : d.local_line, Reason::CFG_BAD_VALUE,
             "dataplane.lan and dataplane.wan name the same port (" +
                 (dp.wan.port_name.empty() ? std::to_string(dp.wan.port_id) : dp.wan.port_name) +
                 "): they must differ");
    check_port(d, dp.lan, "lan", d.lan_line, d.lan_gateway_line, d.lan_mtu_line);
    check_port(d, dp.wan, "wan", d.wan_line, d.wan_gateway_line, d.wan_mtu_line);
}

// Every rekey_packets the file sets stays within the AES-GCM usage bound of the WAN MTU
// (aead_packet_bound; 0 is the bound itself). Checked here, not where it is read: the
// dataplane section that gives the MTU may come later in the file.
void check_rekey_packets(const Draft& d) {
    const std::uint32_t mtu = d.cfg.dataplane.wan.mtu;
    const std::uint64_t bound = aead_packet_bound(mtu);
    for (const auto& p : d.rekey_packets_set)
        if (p.value > bound)
            fail(p.file.empty() ? d.file : p.file, p.line, Reason::CFG_BAD_VALUE,
                 p.path + " " + std::to_string(p.value) + " out of range 0.." + std::to_string(bound) +
                     ": above the AES-GCM usage bound for WAN MTU " + std::to_string(mtu) +
                     " (0 = that bound)");
}

// Groups: unique names.
void check_groups(const Draft& d) {
    const Config& cfg = d.cfg;
    for (std::size_t i = 0; i < cfg.groups.size(); ++i)
        for (std::size_t j = 0; j < i; ++j)
            if (cfg.groups[i].name == cfg.groups[j].name)
                fail(d.file, cfg.groups[i].line, Reason::CFG_DUPLICATE,
                     "group '" + cfg.groups[i].name + "' defined twice (first at line " +
                         std::to_string(cfg.groups[j].line) + ")");
}

// Remote i: its id unique so far, its address present, matching its "ip" and the WAN family.
void check_remote_address(const Draft& d, std::size_t i, const std::string& who) {
    const Config& cfg = d.cfg;
    const Remote& r = cfg.remotes[i];
    const RemoteDraft& rd = d.remotes[i];
    for (std::size_t j = 0; j < i; ++j)
        if (cfg.remotes[j].id == r.id)
            fail(file_of(d, i), r.line, Reason::CFG_DUPLICATE,
                 "remote id " + std::to_string(r.id) + " defined twice (first at line " +
                     std::to_string(cfg.remotes[j].line) + ")");
    if (r.address.family == 0)
        fail(file_of(d, i), r.line, Reason::CFG_MISSING, who + "address missing (the peer's WAN address)");
    if (rd.ip_version && rd.ip_version != r.address.family)
        fail(file_of(d, i), rd.ip_line, Reason::CFG_BAD_VALUE,
             who + "ip " + std::to_string(rd.ip_version) + " does not match address " + r.address.str());
    const auto& wan = cfg.dataplane.wan;
    if (r.address.family != wan.address.addr.family)
        fail(file_of(d, i), rd.address_line ? rd.address_line : r.line, Reason::CFG_BAD_VALUE,
             who + "address " + r.address.str() + " is IPv" + std::to_string(r.address.family) +
                 " but the WAN side is IPv" + std::to_string(wan.address.addr.family));
}

// Remote i's session parameters: local defaults, then its groups in order (each defined),
// then its own settings; the resulting heartbeat consistent.
void resolve_remote_params(Draft& d, std::size_t i, const std::string& who) {
    Config& cfg = d.cfg;
    Remote& r = cfg.remotes[i];
    const RemoteDraft& rd = d.remotes[i];
    r.params = cfg.local.defaults;
    for (const auto& name : r.groups) {
        auto g = std::find_if(cfg.groups.begin(), cfg.groups.end(),
                              [&](const Group& x) { return x.name == name; });
        if (g == cfg.groups.end())
            fail(file_of(d, i), rd.groups_line ? rd.groups_line : r.line, Reason::CFG_BAD_VALUE,
                 who + "group '" + name + "' is not defined (defined: " + list_names(cfg.groups) + ")");
        apply(r.params, *g);
    }
    apply(r.params, rd.overrides);
    r.overrides = rd.overrides;
    r.overrides.name.clear();
    r.overrides.line = 0;
    check_heartbeat(file_of(d, i), r.params, r.line, who);
}

// Remote i's credentials: its pre-shared key file, and an identity no earlier remote without
// static keys shares. The setup exchange picks the remote by the identity the peer claims and
// checks its AUTH with that remote's key or certificate only, so two remotes with one identity
// would leave the choice ambiguous.
void check_remote_credentials(Draft& d, std::size_t i, const std::string& who) {
    Config& cfg = d.cfg;
    Remote& r = cfg.remotes[i];
    const RemoteDraft& rd = d.remotes[i];
    resolve_path(r.psk_file, file_of(d, i));
    check_key_file(d, file_of(d, i), r.psk_file, (who + "psk_file").c_str(), rd.psk_line ? rd.psk_line : r.line, true);
    if (!r.static_keys) {
        const std::string key = identity_key(r);
        for (std::size_t j = 0; j < i; ++j) {
            if (cfg.remotes[j].static_keys || identity_key(cfg.remotes[j]) != key) continue;
            // Reported at the later remote, or at the one a run-time change brought.
            const bool blame_j = !d.remotes[j].file.empty() && d.remotes[i].file.empty();
            const Remote& at = blame_j ? cfg.remotes[j] : r;
            const Remote& other = blame_j ? r : cfg.remotes[j];
            fail(file_of(d, blame_j ? j : i), at.line, Reason::CFG_DUPLICATE_IDENTITY,
                 "remote " + std::to_string(at.id) + ": identity '" + (at.identity.empty() ? at.address.str() : at.identity) +
                     "' is also remote " + std::to_string(other.id) + "'s" +
                     (other.line ? " (line " + std::to_string(other.line) + ")" : std::string()) +
                     "; an empty identity is the address");
        }
    }
}

// Remote i's lanes (more than a session can have are warned about) and its subnets (required
// of a primary's remotes and of a remote with static keys).
void check_remote_lanes_subnets(Draft& d, std::size_t i, const std::string& who) {
    Config& cfg = d.cfg;
    const Remote& r = cfg.remotes[i];
    // The lanes we send on (docs/dataplane.md §Lanes); a session has at most wire::kMaxLanes.
    const std::uint32_t lanes = std::max(r.params.lanes, r.static_keys ? r.static_keys->lanes : 0u);
    if (lanes > wire::kMaxLanes)
        cfg.warnings.push_back(Error{file_of(d, i), r.line, Reason::CFG_LANES_CAPPED,
                                     who + "lanes = " + std::to_string(lanes) + " is more than a session has: " +
                                         std::to_string(wire::kMaxLanes) + " are used"});
    if (r.subnets.empty() && (cfg.role == Role::primary || r.static_keys))
        fail(file_of(d, i), r.line, Reason::CFG_MISSING,
             who + "subnets missing (the networks routed to this remote)");
}

// Remote i's static keys, if any: sizes fit the key type, ids stay in range, rx ids overlap no
// earlier remote's, no key reused; warns of what static keys give up.
void check_remote_static_keys(Draft& d, std::size_t i, const std::string& who) {
    Config& cfg = d.cfg;
    const Remote& r = cfg.remotes[i];
    if (!r.static_keys) return;
    const auto& sk = *r.static_keys;
    std::size_t want = r.params.key_type == KeyType::aes256 ? 32 : 16;
    for (auto [key, name] : {std::pair{&sk.tx_key, "tx_key"}, std::pair{&sk.rx_key, "rx_key"}})
        if (key->size() != want)
            fail(file_of(d, i), sk.line, Reason::CFG_BAD_VALUE,
                 who + "static_keys." + name + " is " + std::to_string(key->size()) +
                     " bytes; key_type " + std::string(key_type_name(r.params.key_type)) +
                     " needs " + std::to_string(want));
    if (std::uint64_t(sk.tx_id) + sk.lanes - 1 > 0xffffffffull ||
        std::uint64_t(sk.rx_id) + sk.lanes - 1 > 0xffffffffull)
        fail(file_of(d, i), sk.line, Reason::CFG_BAD_VALUE,
             who + "static_keys: id + lanes - 1 must stay within 1..4294967295");
    // Inbound ids index our own slot table: two remotes may not share one.
    for (std::size_t j = 0; j < i; ++j) {
        const auto& o = cfg.remotes[j].static_keys;
        if (!o) continue;
        if (sk.rx_id < o->rx_id + o->lanes && o->rx_id < sk.rx_id + sk.lanes)
            fail(file_of(d, i), sk.line, Reason::CFG_DUPLICATE,
                 who + "static_keys.rx_id " + std::to_string(sk.rx_id) + " (lanes " +
                     std::to_string(sk.lanes) + ") overlaps the rx ids of remote " +
                     std::to_string(cfg.remotes[j].id) + " (line " + std::to_string(o->line) + ")");
    }
    check_static_keys_unique(d, cfg, i);
    if (!sk.persist_sequence)
        cfg.warnings.push_back(Error{file_of(d, i), sk.line, Reason::CFG_NO_SEQ_STATE,
                                     "remote " + std::to_string(r.id) +
                                         ": static_keys.persist_sequence = false: every start begins again at "
                                         "sequence 1 and repeats nonces under these keys"});
    cfg.warnings.push_back(Error{file_of(d, i), sk.line, Reason::CFG_STATIC_KEYS,
                                 "remote " + std::to_string(r.id) +
                                     " uses static keys: no setup exchange, no rekey"});
    if (!sk.anti_replay)
        cfg.warnings.push_back(Error{file_of(d, i), sk.line, Reason::CFG_NO_ANTI_REPLAY,
                                     "remote " + std::to_string(r.id) +
                                         ": static_keys.anti_replay = false: replayed packets are accepted"});
}

// Remote i with wire = "esp": keyed by IKE (no static keys), no size hiding (refused: the
// peer could not read it), no key arrays nor lanes (warned: ignored), and its subnets given,
// since nothing is pushed and the traffic selectors come from the configuration on both sides.
void check_remote_wire(Draft& d, std::size_t i, const std::string& who) {
    Config& cfg = d.cfg;
    const Remote& r = cfg.remotes[i];
    const RemoteDraft& rd = d.remotes[i];
    if (r.wire != WireMode::esp) return;
    const int line = rd.wire_line ? rd.wire_line : r.line;
    if (r.static_keys)
        fail(file_of(d, i), line, Reason::CFG_ESP_STATIC_KEYS,
             who + "wire = \"esp\" with static_keys: an ESP remote is keyed by IKE");
    if (r.params.size_hiding)
        fail(file_of(d, i), line, Reason::CFG_ESP_SIZE_HIDING,
             who + "wire = \"esp\" with size_hiding = true (inherited or set): standard ESP has no size hiding");
    if (r.subnets.empty())
        fail(file_of(d, i), line, Reason::CFG_ESP_SUBNETS,
             who + "wire = \"esp\" needs subnets (the networks behind the peer; nothing is pushed)");
    const Group& o = rd.overrides;
    std::string ignored;
    for (auto [set, name] : {std::pair{o.array_size.has_value(), "array_size"},
                             std::pair{o.data_array_time.has_value(), "data_array_time"},
                             std::pair{o.control_array_time.has_value(), "control_array_time"},
                             std::pair{o.lanes.has_value(), "lanes"}})
        if (set) ignored += std::string(ignored.empty() ? "" : ", ") + name;
    if (!ignored.empty())
        cfg.warnings.push_back(Error{file_of(d, i), line, Reason::CFG_ESP_IGNORED,
                                     who + ignored + " ignored: wire = \"esp\" has no key arrays and one SA per direction"});
}

// Remotes: a secondary has one; each remote in file order passes every per-remote step before
// the next is looked at (so the first error in the file is the one reported).
void check_remotes(Draft& d) {
    Config& cfg = d.cfg;
    if (cfg.role == Role::secondary && cfg.remotes.empty())
        fail(d.file, d.last_line ? d.last_line : 1, Reason::CFG_MISSING,
             "a secondary needs its primary as a remote (address)");
    // A secondary's lone remote (its primary) may leave out its id: it is 1.
    for (std::size_t i = 0; i < cfg.remotes.size(); ++i) {
        if (!d.remotes[i].id_missing) continue;
        std::size_t n = 0;   // its index in the text it was written in
        for (std::size_t j = 0; j < i; ++j) n += file_of(d, j) == file_of(d, i);
        if (cfg.role != Role::secondary || cfg.remotes.size() != 1)
            fail(file_of(d, i), cfg.remotes[i].line, Reason::CFG_MISSING,
                 "remotes[" + std::to_string(n) + "].id missing (only a secondary's one remote may leave it out)");
        cfg.remotes[i].id = 1;
        d.remotes[i].id_missing = false;
    }
    for (std::size_t i = 0; i < cfg.remotes.size(); ++i) {
        const std::string who = "remote " + std::to_string(cfg.remotes[i].id) + ": ";
        check_remote_address(d, i, who);
        resolve_remote_params(d, i, who);
        check_remote_credentials(d, i, who);
        check_remote_lanes_subnets(d, i, who);
        check_remote_static_keys(d, i, who);
        check_remote_wire(d, i, who);
    }
}

struct SubnetRef {
    Prefix p;
    std::size_t remote;
    int line;
};

// Subnets across remotes are disjoint (the routing table sends a packet to one remote).
// Sorted by address, a prefix can only be contained in one still "open" on the stack, so one
// pass finds every overlap.
void check_subnets_disjoint(const Draft& d) {
    const Config& cfg = d.cfg;
    std::vector<SubnetRef> all;
    for (std::size_t i = 0; i < cfg.remotes.size(); ++i)
        for (std::size_t k = 0; k < cfg.remotes[i].subnets.size(); ++k)
            all.push_back({cfg.remotes[i].subnets[k], i,
                           k < d.remotes[i].subnet_lines.size() ? d.remotes[i].subnet_lines[k]
                                                                : cfg.remotes[i].line});
    std::sort(all.begin(), all.end(), [](const SubnetRef& a, const SubnetRef& b) {
        if (a.p.addr != b.p.addr) return a.p.addr < b.p.addr;
        return a.p.len < b.p.len;
    });
    std::vector<const SubnetRef*> open;
    for (const auto& e : all) {
        while (!open.empty() && !(open.back()->p.addr.family == e.p.addr.family && open.back()->p.contains(e.p.addr)))
            open.pop_back();
        if (!open.empty() && open.back()->remote != e.remote) {
            const SubnetRef* a = open.back();
            const SubnetRef* b = &e;
            // Report at the later definition; a run-time change's remote is the one to blame.
            const bool a_new = !d.remotes[a->remote].file.empty(), b_new = !d.remotes[b->remote].file.empty();
            if (a_new != b_new ? a_new : a->line > b->line) std::swap(a, b);
            fail(file_of(d, b->remote), b->line, Reason::CFG_OVERLAP,
                 "subnet " + b->p.str() + " of remote " + std::to_string(cfg.remotes[b->remote].id) +
                     " overlaps " + a->p.str() + " of remote " + std::to_string(cfg.remotes[a->remote].id) +
                     " (line " + std::to_string(a->line) + ")");
        }
        open.push_back(&e);
    }
}

}  // namespace

// Resolves and checks in a fixed order, each step throwing at its first violation: local,
// its credentials, dataplane, groups, each remote in file order, subnets across remotes. The
// warnings come out sorted by line.
Config finalize(Draft&& d) {
    d.cfg.source = d.file;
    check_local(d);
    check_local_credentials(d);
    check_dataplane(d);
    check_rekey_packets(d);
    check_groups(d);
    check_remotes(d);
    check_subnets_disjoint(d);
    check_cluster(d);
    // Where the start checks report; a run-time change's draft knows no lines: the running ones stay.
    Config::Lines& l = d.cfg.lines;
    const std::pair<int*, int> at[] = {{&l.local, d.local_line},       {&l.address, d.address_line},
                                       {&l.certificate, d.cert_line},  {&l.private_key, d.key_line},
                                       {&l.ca, d.ca_line},             {&l.local_subnets, d.local_subnets_line},
                                       {&l.lan, d.lan_line},           {&l.wan, d.wan_line},
                                       {&l.lan_gateway, d.lan_gateway_line}, {&l.wan_gateway, d.wan_gateway_line},
                                       {&l.mbufs, d.mbufs_line},       {&l.rx_queues, d.rx_queues_line},
                                       {&l.cluster_key, d.cluster_key_line}};
    for (auto [to, from] : at)
        if (from) *to = from;
    std::stable_sort(d.cfg.warnings.begin(), d.cfg.warnings.end(),
                     [](const Error& a, const Error& b) { return a.line < b.line; });
    return std::move(d.cfg);
}

}  // namespace p3::config::detail
