// The configuration model's common part: format detection (load_file), the resolution of
// local -> groups -> remote overrides, every check that spans more than one setting
// (duplicates, overlapping subnets, static key sizes, key file modes), copying, comparing,
// and printing the effective configuration (to_libconfig).
//
// The two syntaxes live in config_libconfig.cpp and config_legacy.cpp; both fill a Draft
// and hand it to finalize() here, so the model and its rules are the same whatever the format.
#include "common/config.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <sstream>

#include "common/config_internal.hpp"
#include "common/keyfile.hpp"
#include "common/log.hpp"

namespace p3::config {

namespace detail {

void fail(const std::string& file, int line, Reason reason, std::string what) {
    throw LoadError{Error{file, line, reason, std::move(what)}};
}

std::string range_str(const Range& r) { return std::to_string(r.lo) + ".." + std::to_string(r.hi); }

namespace {
struct SessionNumber {
    std::string_view key;
    Range range;
};
constexpr SessionNumber kSessionNumbers[] = {
    {"rekey_wait", limits::seconds},
    {"rekey_packets", limits::rekey_packets},
    {"array_size", limits::array_size},
    {"data_array_time", limits::seconds},
    {"control_array_time", limits::seconds},
    {"heartbeat_time", limits::heartbeat_time},
    {"heartbeat_fail", limits::heartbeat_fail},
    {"lanes", limits::lanes},
};
}  // namespace

const Range* session_number_range(std::string_view key) {
    for (const auto& s : kSessionNumbers)
        if (s.key == key) return &s.range;
    return nullptr;
}

void set_session_number(Group& g, std::string_view key, long long v) {
    auto u32 = static_cast<std::uint32_t>(v);
    if (key == "rekey_wait") g.rekey_wait = u32;
    else if (key == "rekey_packets") g.rekey_packets = static_cast<std::uint64_t>(v);
    else if (key == "array_size") g.array_size = u32;
    else if (key == "data_array_time") g.data_array_time = u32;
    else if (key == "control_array_time") g.control_array_time = u32;
    else if (key == "heartbeat_time") g.heartbeat_time = u32;
    else if (key == "heartbeat_fail") g.heartbeat_fail = u32;
    else if (key == "lanes") g.lanes = u32;
}

void apply(SessionParams& p, const Group& g) {
    if (g.rekey_wait) p.rekey_wait = *g.rekey_wait;
    if (g.rekey_packets) p.rekey_packets = *g.rekey_packets;
    if (g.array_size) p.array_size = *g.array_size;
    if (g.data_array_time) p.data_array_time = *g.data_array_time;
    if (g.control_array_time) p.control_array_time = *g.control_array_time;
    if (g.heartbeat_time) p.heartbeat_time = *g.heartbeat_time;
    if (g.heartbeat_fail) p.heartbeat_fail = *g.heartbeat_fail;
    if (g.key_type) p.key_type = *g.key_type;
    if (g.size_hiding) p.size_hiding = *g.size_hiding;
    if (g.lanes) p.lanes = *g.lanes;
}

std::optional<KeyType> parse_key_type(std::string_view s) {
    auto eq = [&](std::string_view want) {
        if (s.size() != want.size()) return false;
        for (std::size_t i = 0; i < s.size(); ++i) {
            char c = s[i];
            if (c >= 'a' && c <= 'z') c = char(c - 'a' + 'A');
            if (c != want[i]) return false;
        }
        return true;
    };
    if (eq("AES128")) return KeyType::aes128;
    if (eq("AES256")) return KeyType::aes256;
    return std::nullopt;
}

std::string_view key_type_name(KeyType k) { return k == KeyType::aes256 ? "AES256" : "AES128"; }

std::optional<SecretBytes> parse_hex_secret(std::string_view s) {
    if (s.size() >= 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) s.remove_prefix(2);
    if (s.empty() || s.size() % 2) return std::nullopt;
    auto nibble = [](char c) -> int {
        if (c >= '0' && c <= '9') return c - '0';
        if (c >= 'a' && c <= 'f') return c - 'a' + 10;
        if (c >= 'A' && c <= 'F') return c - 'A' + 10;
        return -1;
    };
    SecretBytes out(s.size() / 2);
    for (std::size_t i = 0; i < out.size(); ++i) {
        int hi = nibble(s[2 * i]), lo = nibble(s[2 * i + 1]);
        if (hi < 0 || lo < 0) return std::nullopt;  // out wipes itself
        out.data()[i] = std::uint8_t(hi * 16 + lo);
    }
    return out;
}

namespace {

std::string dir_of(const std::string& file) {
    auto slash = file.rfind('/');
    if (slash == std::string::npos) return "";
    return file.substr(0, slash + 1);
}

// Relative key and certificate paths are taken relative to the configuration file, so a
// file and its keys can move together; the model holds the resolved path.
void resolve_path(std::string& path, const std::string& file) {
    if (path.empty() || path[0] == '/') return;
    path = dir_of(file) + path;
}

// A private key or pre-shared key file must be the file itself (no symbolic link), owner-only,
// and a pre-shared key at least keyfile::kMinPsk bytes. The same checks p3d makes when it
// loads the key (common/keyfile), so `p3ctl config check` finds what p3d would refuse. One
// that does not exist yet is only a warning: the sessions that need it fail (with their own
// reason code) until it does. One this process may not open (a checker without the owner's
// rights) is checked by its metadata alone; p3d checks it whole when it loads it.
void check_key_file(Draft& d, const std::string& path, const char* what, int line, bool psk) {
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
            d.cfg.warnings.push_back(Error{d.file, line, Reason::CFG_KEY_FILE_ABSENT, msg});
            return;
        case keyfile::Status::link: fail(d.file, line, Reason::CFG_KEY_FILE_LINK, msg);
        case keyfile::Status::not_regular: fail(d.file, line, Reason::CFG_BAD_VALUE, msg);
        case keyfile::Status::mode:
            fail(d.file, line, Reason::CFG_KEY_FILE_MODE, msg + "; allowed: owner only (chmod 600)");
        case keyfile::Status::too_long: fail(d.file, line, Reason::CFG_BAD_VALUE, msg);
        case keyfile::Status::too_short: fail(d.file, line, Reason::CFG_PSK_SHORT, msg);
    }
}

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

void check_heartbeat(const Draft& d, const SessionParams& p, int line, const std::string& who) {
    if (p.heartbeat_fail <= p.heartbeat_time)
        fail(d.file, line, Reason::CFG_BAD_VALUE,
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
        fail(d.file, sk.line, Reason::CFG_STATIC_SAME_KEY,
             "remote " + std::to_string(r.id) +
                 ": static_keys.tx_key equals rx_key: each direction needs its own key");
    for (std::size_t j = 0; j < i; ++j) {
        const auto& o = cfg.remotes[j].static_keys;
        if (!o) continue;
        bool same = false;
        for (const SecretBytes* a : {&sk.tx_key, &sk.rx_key})
            for (const SecretBytes* b : {&o->tx_key, &o->rx_key}) same |= a->equals(b->span());
        if (same)
            fail(d.file, sk.line, Reason::CFG_STATIC_KEY_REUSED,
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
    if (!d.local_line) fail(d.file, 1, Reason::CFG_MISSING, "local section missing");
    if (!d.address_set)
        fail(d.file, d.local_line, Reason::CFG_MISSING, "local address missing (this appliance's WAN address)");
    if (d.ip_version && d.ip_version != cfg.local.address.family)
        fail(d.file, d.ip_line, Reason::CFG_BAD_VALUE,
             "ip " + std::to_string(d.ip_version) + " does not match address " + cfg.local.address.str() +
                 " (IPv" + std::to_string(cfg.local.address.family) + ")");
    check_heartbeat(d, cfg.local.defaults, d.local_line, "local ");
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
    check_key_file(d, cfg.local.private_key, "private_key", d.key_line, false);
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
            fail(d.file, r.line, Reason::CFG_DUPLICATE,
                 "remote id " + std::to_string(r.id) + " defined twice (first at line " +
                     std::to_string(cfg.remotes[j].line) + ")");
    if (r.address.family == 0)
        fail(d.file, r.line, Reason::CFG_MISSING, who + "address missing (the peer's WAN address)");
    if (rd.ip_version && rd.ip_version != r.address.family)
        fail(d.file, rd.ip_line, Reason::CFG_BAD_VALUE,
             who + "ip " + std::to_string(rd.ip_version) + " does not match address " + r.address.str());
    const auto& wan = cfg.dataplane.wan;
    if (r.address.family != wan.address.addr.family)
        fail(d.file, rd.address_line ? rd.address_line : r.line, Reason::CFG_BAD_VALUE,
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
            fail(d.file, rd.groups_line ? rd.groups_line : r.line, Reason::CFG_BAD_VALUE,
                 who + "group '" + name + "' is not defined (defined: " + list_names(cfg.groups) + ")");
        apply(r.params, *g);
    }
    apply(r.params, rd.overrides);
    check_heartbeat(d, r.params, r.line, who);
}

// Remote i's credentials: its pre-shared key file, and an identity no earlier remote without
// static keys shares. The setup exchange picks the remote by the identity the peer claims and
// checks its AUTH with that remote's key or certificate only, so two remotes with one identity
// would leave the choice ambiguous.
void check_remote_credentials(Draft& d, std::size_t i, const std::string& who) {
    Config& cfg = d.cfg;
    Remote& r = cfg.remotes[i];
    const RemoteDraft& rd = d.remotes[i];
    resolve_path(r.psk_file, d.file);
    check_key_file(d, r.psk_file, (who + "psk_file").c_str(), rd.psk_line ? rd.psk_line : r.line, true);
    if (!r.static_keys) {
        const std::string key = identity_key(r);
        for (std::size_t j = 0; j < i; ++j)
            if (!cfg.remotes[j].static_keys && identity_key(cfg.remotes[j]) == key)
                fail(d.file, r.line, Reason::CFG_DUPLICATE_IDENTITY,
                     who + "identity '" + (r.identity.empty() ? r.address.str() : r.identity) +
                         "' is also remote " + std::to_string(cfg.remotes[j].id) + "'s (line " +
                         std::to_string(cfg.remotes[j].line) + "); an empty identity is the address");
    }
}

// Remote i's lanes (warned about: not applied yet) and its subnets (required of a primary's
// remotes and of a remote with static keys).
void check_remote_lanes_subnets(Draft& d, std::size_t i, const std::string& who) {
    Config& cfg = d.cfg;
    const Remote& r = cfg.remotes[i];
    // Each worker lcore sends under its own lane (a sequence counter has one writer), so
    // the lane count is the worker count; the setting is carried (and pushed to a
    // secondary) but changes nothing yet.
    if (r.params.lanes != 0)
        cfg.warnings.push_back(Error{d.file, r.line, Reason::CFG_LANES_NOT_APPLIED,
                                     who + "lanes = " + std::to_string(r.params.lanes) +
                                         " is not applied yet: p3d sends on one lane per worker lcore"});
    if (r.subnets.empty() && (cfg.role == Role::primary || r.static_keys))
        fail(d.file, r.line, Reason::CFG_MISSING,
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
            fail(d.file, sk.line, Reason::CFG_BAD_VALUE,
                 who + "static_keys." + name + " is " + std::to_string(key->size()) +
                     " bytes; key_type " + std::string(key_type_name(r.params.key_type)) +
                     " needs " + std::to_string(want));
    if (std::uint64_t(sk.tx_id) + sk.lanes - 1 > 0xffffffffull ||
        std::uint64_t(sk.rx_id) + sk.lanes - 1 > 0xffffffffull)
        fail(d.file, sk.line, Reason::CFG_BAD_VALUE,
             who + "static_keys: id + lanes - 1 must stay within 1..4294967295");
    // Inbound ids index our own slot table: two remotes may not share one.
    for (std::size_t j = 0; j < i; ++j) {
        const auto& o = cfg.remotes[j].static_keys;
        if (!o) continue;
        if (sk.rx_id < o->rx_id + o->lanes && o->rx_id < sk.rx_id + sk.lanes)
            fail(d.file, sk.line, Reason::CFG_DUPLICATE,
                 who + "static_keys.rx_id " + std::to_string(sk.rx_id) + " (lanes " +
                     std::to_string(sk.lanes) + ") overlaps the rx ids of remote " +
                     std::to_string(cfg.remotes[j].id) + " (line " + std::to_string(o->line) + ")");
    }
    check_static_keys_unique(d, cfg, i);
    if (!sk.persist_sequence)
        cfg.warnings.push_back(Error{d.file, sk.line, Reason::CFG_NO_SEQ_STATE,
                                     "remote " + std::to_string(r.id) +
                                         ": static_keys.persist_sequence = false: every start begins again at "
                                         "sequence 1 and repeats nonces under these keys"});
    cfg.warnings.push_back(Error{d.file, sk.line, Reason::CFG_STATIC_KEYS,
                                 "remote " + std::to_string(r.id) +
                                     " uses static keys: no setup exchange, no rekey"});
    if (!sk.anti_replay)
        cfg.warnings.push_back(Error{d.file, sk.line, Reason::CFG_NO_ANTI_REPLAY,
                                     "remote " + std::to_string(r.id) +
                                         ": static_keys.anti_replay = false: replayed packets are accepted"});
}

// Remotes: a secondary has one; each remote in file order passes every per-remote step before
// the next is looked at (so the first error in the file is the one reported).
void check_remotes(Draft& d) {
    Config& cfg = d.cfg;
    if (cfg.role == Role::secondary && cfg.remotes.empty())
        fail(d.file, d.last_line ? d.last_line : 1, Reason::CFG_MISSING,
             "a secondary needs its primary as a remote (id, address)");
    for (std::size_t i = 0; i < cfg.remotes.size(); ++i) {
        const std::string who = "remote " + std::to_string(cfg.remotes[i].id) + ": ";
        check_remote_address(d, i, who);
        resolve_remote_params(d, i, who);
        check_remote_credentials(d, i, who);
        check_remote_lanes_subnets(d, i, who);
        check_remote_static_keys(d, i, who);
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
            if (a->line > b->line) std::swap(a, b);  // report at the later definition
            fail(d.file, b->line, Reason::CFG_OVERLAP,
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
    check_groups(d);
    check_remotes(d);
    check_subnets_disjoint(d);
    std::stable_sort(d.cfg.warnings.begin(), d.cfg.warnings.end(),
                     [](const Error& a, const Error& b) { return a.line < b.line; });
    return std::move(d.cfg);
}

}  // namespace detail

std::string Error::str() const {
    std::string s = file;
    if (line > 0) {
        s += ':';
        s += std::to_string(line);
    }
    s += ": ";
    s += what;
    return s;
}

StaticKeys StaticKeys::clone() const {
    StaticKeys k;
    k.tx_id = tx_id;
    k.tx_key = tx_key.clone();
    k.tx_salt = tx_salt.clone();
    k.rx_id = rx_id;
    k.rx_key = rx_key.clone();
    k.rx_salt = rx_salt.clone();
    k.lanes = lanes;
    k.anti_replay = anti_replay;
    k.persist_sequence = persist_sequence;
    k.line = line;
    return k;
}

Remote Remote::clone() const {
    Remote r;
    r.id = id;
    r.address = address;
    r.port = port;
    r.subnets = subnets;
    r.groups = groups;
    r.params = params;
    r.identity = identity;
    r.psk_file = psk_file;
    if (static_keys) r.static_keys = static_keys->clone();
    r.line = line;
    return r;
}

Config Config::clone() const {
    Config c;
    c.role = role;
    c.local = local;
    c.dataplane = dataplane;
    c.groups = groups;
    c.remotes.reserve(remotes.size());
    for (const auto& r : remotes) c.remotes.push_back(r.clone());
    c.source = source;
    c.warnings = warnings;
    return c;
}

namespace {
bool same_group(Group a, Group b) {
    a.line = b.line = 0;
    return a == b;
}
}  // namespace

bool same_settings(const Remote& a, const Remote& b) {
    if (a.id != b.id || a.address != b.address || a.port != b.port || a.subnets != b.subnets ||
        a.groups != b.groups || !(a.params == b.params) || a.identity != b.identity ||
        a.psk_file != b.psk_file || a.static_keys.has_value() != b.static_keys.has_value())
        return false;
    if (!a.static_keys) return true;
    const auto &x = *a.static_keys, &y = *b.static_keys;
    // Evaluate every comparison: how much of the key matched is not for an observer to time.
    bool same = x.tx_key.equals(y.tx_key.span());
    same &= x.tx_salt.equals(y.tx_salt.span());
    same &= x.rx_key.equals(y.rx_key.span());
    same &= x.rx_salt.equals(y.rx_salt.span());
    return same && x.tx_id == y.tx_id && x.rx_id == y.rx_id && x.lanes == y.lanes && x.anti_replay == y.anti_replay &&
           x.persist_sequence == y.persist_sequence;
}

bool same_settings(const Config& a, const Config& b) {
    if (a.role != b.role || !(a.local == b.local) || !(a.dataplane == b.dataplane) ||
        a.groups.size() != b.groups.size() || a.remotes.size() != b.remotes.size())
        return false;
    for (std::size_t i = 0; i < a.groups.size(); ++i)
        if (!same_group(a.groups[i], b.groups[i])) return false;
    for (std::size_t i = 0; i < a.remotes.size(); ++i)
        if (!same_settings(a.remotes[i], b.remotes[i])) return false;
    return true;
}

void log_warnings(const Config& cfg) {
    for (const auto& w : cfg.warnings)
        ::p3::log::write(::p3::log::Level::warning, w.reason, "%s", w.str().c_str());
}

namespace {

// The legacy format is recognised by its first keyword; anything else is libconfig.
bool looks_legacy(const std::string& text) {
    std::size_t i = 0;
    while (i < text.size()) {
        while (i < text.size() && (text[i] == ' ' || text[i] == '\t' || text[i] == '\r' || text[i] == '\n')) ++i;
        if (i < text.size() && text[i] == '#') {
            while (i < text.size() && text[i] != '\n') ++i;
            continue;
        }
        break;
    }
    static constexpr std::string_view kw = "localstart";
    if (text.compare(i, kw.size(), kw) != 0) return false;
    std::size_t end = i + kw.size();
    return end == text.size() || text[end] == ' ' || text[end] == '\t' || text[end] == '\r' ||
           text[end] == '\n';
}

}  // namespace

Result<Config> load_file(const std::string& path) {
    // The mode is the opened file's own (fstat), not a second look at the path.
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return Error{path, 0, Reason::CFG_OPEN, std::string("cannot open: ") + std::strerror(errno)};
    struct stat st{};
    std::string text;
    bool read_ok = ::fstat(fd, &st) == 0;
    if (read_ok && S_ISREG(st.st_mode) && st.st_size > 0) text.reserve(static_cast<std::size_t>(st.st_size));
    char buf[4096];
    for (ssize_t n; read_ok && (n = ::read(fd, buf, sizeof buf)) != 0;) {
        if (n < 0) {
            if (errno == EINTR) continue;
            read_ok = false;
            break;
        }
        text.append(buf, static_cast<std::size_t>(n));
    }
    secure_wipe(buf, sizeof buf);
    ::close(fd);
    if (!read_ok) {
        secure_wipe(text.data(), text.size());
        return Error{path, 0, Reason::CFG_OPEN, "read error"};
    }
    auto result = looks_legacy(text) ? load_legacy_text(text, path) : load_libconfig_text(text, path);
    // The text may hold static keys: it does not outlive the parse.
    secure_wipe(text.data(), text.size());
    if (auto* cfg = std::get_if<Config>(&result)) {
        // Static keys live in the file itself: like a key file, it must be owner-only.
        if (st.st_mode & 077) {
            for (const auto& r : cfg->remotes) {
                if (!r.static_keys) continue;
                char mode[8];
                std::snprintf(mode, sizeof mode, "%04o", unsigned(st.st_mode & 07777));
                return Error{path, r.static_keys->line, Reason::CFG_STATIC_FILE_MODE,
                             "remote " + std::to_string(r.id) + " has static keys but the file has mode " + mode +
                                 ": readable by group or others; allowed: owner only (chmod 600)"};
            }
        }
        log_warnings(*cfg);
    }
    return result;
}

// ---- printing ------------------------------------------------------------------------

namespace {

std::string quote(std::string_view s) {
    std::string out = "\"";
    for (unsigned char c : s) {
        if (c == '"' || c == '\\') {
            out += '\\';
            out += char(c);
        } else if (c < 0x20 || c == 0x7f) {
            char buf[8];
            std::snprintf(buf, sizeof buf, "\\x%02x", c);
            out += buf;
        } else {
            out += char(c);
        }
    }
    return out + "\"";
}

// libconfig 1.5 reads an integer literal above 2^31-1 as 64-bit only with the L suffix.
std::string num(std::uint64_t v) {
    std::string s = std::to_string(v);
    if (v > 0x7fffffffu) s += 'L';
    return s;
}

std::string hex_id(std::uint32_t v) {
    char buf[16];
    std::snprintf(buf, sizeof buf, "0x%" PRIx32, v);
    std::string s = buf;
    if (v > 0x7fffffffu) s += 'L';
    return s;
}

// Secrets go into the text only at the very end (see to_libconfig): while it is built, a
// revealed secret is a placeholder "\x01<index>\x01", so no intermediate buffer holds key bytes.
struct SecretSlots {
    bool reveal = false;
    std::vector<const SecretBytes*> list;
    std::string operator()(const SecretBytes& b) {
        if (!reveal) return "\"<secret: " + std::to_string(b.size()) + " bytes>\"";
        list.push_back(&b);
        return "\"\x01" + std::to_string(list.size() - 1) + "\x01\"";
    }
    std::string finish(const std::string& text) const {
        if (list.empty()) return text;
        std::size_t size = text.size();
        for (const auto* b : list) size += 2 * b->size();
        std::string out;
        out.reserve(size);  // one allocation: the caller wipes it
        static constexpr char kHex[] = "0123456789abcdef";
        for (std::size_t i = 0; i < text.size(); ++i) {
            if (text[i] != '\x01') {
                out += text[i];
                continue;
            }
            std::size_t end = text.find('\x01', i + 1);
            std::size_t idx = std::stoul(text.substr(i + 1, end - i - 1));
            for (std::uint8_t c : list[idx]->span()) {
                out += kHex[c >> 4];
                out += kHex[c & 15];
            }
            i = end;
        }
        return out;
    }
};

// One "key = value;" per field of g that is set (a group) or differs from base (a remote).
void print_params(std::ostringstream& o, const std::string& indent, const Group& g) {
    auto n = [&](const char* k, const auto& v) {
        if (v) o << indent << k << " = " << num(*v) << ";\n";
    };
    n("rekey_wait", g.rekey_wait);
    n("rekey_packets", g.rekey_packets);
    n("array_size", g.array_size);
    n("data_array_time", g.data_array_time);
    n("control_array_time", g.control_array_time);
    n("heartbeat_time", g.heartbeat_time);
    n("heartbeat_fail", g.heartbeat_fail);
    if (g.key_type) o << indent << "key_type = " << quote(detail::key_type_name(*g.key_type)) << ";\n";
    if (g.size_hiding) o << indent << "size_hiding = " << (*g.size_hiding ? "true" : "false") << ";\n";
    n("lanes", g.lanes);
}

Group all_of(const SessionParams& p) {
    Group g;
    g.rekey_wait = p.rekey_wait;
    g.rekey_packets = p.rekey_packets;
    g.array_size = p.array_size;
    g.data_array_time = p.data_array_time;
    g.control_array_time = p.control_array_time;
    g.heartbeat_time = p.heartbeat_time;
    g.heartbeat_fail = p.heartbeat_fail;
    g.key_type = p.key_type;
    g.size_hiding = p.size_hiding;
    g.lanes = p.lanes;
    return g;
}

Group difference(const SessionParams& base, const SessionParams& p) {
    Group g;
    if (p.rekey_wait != base.rekey_wait) g.rekey_wait = p.rekey_wait;
    if (p.rekey_packets != base.rekey_packets) g.rekey_packets = p.rekey_packets;
    if (p.array_size != base.array_size) g.array_size = p.array_size;
    if (p.data_array_time != base.data_array_time) g.data_array_time = p.data_array_time;
    if (p.control_array_time != base.control_array_time) g.control_array_time = p.control_array_time;
    if (p.heartbeat_time != base.heartbeat_time) g.heartbeat_time = p.heartbeat_time;
    if (p.heartbeat_fail != base.heartbeat_fail) g.heartbeat_fail = p.heartbeat_fail;
    if (p.key_type != base.key_type) g.key_type = p.key_type;
    if (p.size_hiding != base.size_hiding) g.size_hiding = p.size_hiding;
    if (p.lanes != base.lanes) g.lanes = p.lanes;
    return g;
}

void print_port(std::ostringstream& o, const char* side, const PortConfig& pc) {
    o << "  " << side << " = {\n";
    if (pc.port_name.empty()) o << "    port = " << pc.port_id << ";\n";
    else o << "    port = " << quote(pc.port_name) << ";\n";
    if (pc.address.addr.family) o << "    address = " << quote(pc.address.str()) << ";\n";
    if (pc.gateway) o << "    gateway = " << quote(pc.gateway->str()) << ";\n";
    if (pc.gateway_mac) o << "    gateway_mac = " << quote(pc.gateway_mac->str()) << ";\n";
    o << "    mtu = " << pc.mtu << ";\n";
    o << "  };\n";
}

}  // namespace

std::string to_libconfig(const Config& cfg, bool reveal_secrets) {
    std::ostringstream o;
    SecretSlots secret{reveal_secrets, {}};
    o << "# p3 configuration";
    if (!cfg.source.empty()) o << " (effective, from " << cfg.source << ")";
    o << "\n";
    o << "role = " << quote(cfg.role == Role::primary ? "primary" : "secondary") << ";\n";

    const Local& l = cfg.local;
    o << "local = {\n";
    o << "  ip = " << int(l.address.family) << ";\n";
    o << "  address = " << quote(l.address.str()) << ";\n";
    o << "  port = " << l.port << ";\n";
    o << "  nat_port = " << l.nat_port << ";\n";
    o << "  key_generation = " << quote(l.key_generation == KeyGeneration::hardware ? "hardware" : "software") << ";\n";
    if (!l.identity.empty()) o << "  identity = " << quote(l.identity) << ";\n";
    if (!l.certificate.empty()) o << "  certificate = " << quote(l.certificate) << ";\n";
    if (!l.private_key.empty()) o << "  private_key = " << quote(l.private_key) << ";\n";
    if (!l.ca.empty()) o << "  ca = " << quote(l.ca) << ";\n";
    o << "  state_dir = " << quote(l.state_dir) << ";\n";
    if (!l.subnets.empty()) {
        o << "  subnets = [";
        for (std::size_t k = 0; k < l.subnets.size(); ++k) o << (k ? ", " : " ") << quote(l.subnets[k].str());
        o << " ];\n";
    }
    print_params(o, "  ", all_of(l.defaults));
    o << "  cluster_state = " << l.cluster_state << ";\n";
    o << "  load_balance = " << l.load_balance << ";\n";
    o << "};\n";

    const Dataplane& dp = cfg.dataplane;
    o << "dataplane = {\n";
    print_port(o, "lan", dp.lan);
    print_port(o, "wan", dp.wan);
    o << "  replay_window = " << dp.replay_window << ";\n";
    o << "  idle_backoff_us = " << dp.idle_backoff_us << ";\n";
    o << "  idle_polls = " << dp.idle_polls << ";\n";
    o << "  mbufs = " << dp.mbufs << ";\n";
    o << "  rx_queues = " << dp.rx_queues << ";\n";
    o << "  burst = " << dp.burst << ";\n";
    o << "};\n";

    o << "groups = (";
    for (std::size_t i = 0; i < cfg.groups.size(); ++i) {
        o << (i ? ",\n" : "\n") << "  {\n    name = " << quote(cfg.groups[i].name) << ";\n";
        print_params(o, "    ", cfg.groups[i]);
        o << "  }";
    }
    o << (cfg.groups.empty() ? ");\n" : "\n);\n");

    o << "remotes = (";
    for (std::size_t i = 0; i < cfg.remotes.size(); ++i) {
        const Remote& r = cfg.remotes[i];
        o << (i ? ",\n" : "\n") << "  {\n";
        o << "    id = " << num(r.id) << ";\n";
        o << "    ip = " << int(r.address.family) << ";\n";
        o << "    address = " << quote(r.address.str()) << ";\n";
        o << "    port = " << r.port << ";\n";
        if (!r.identity.empty()) o << "    identity = " << quote(r.identity) << ";\n";
        if (!r.psk_file.empty()) o << "    psk_file = " << quote(r.psk_file) << ";\n";
        o << "    subnets = [";
        for (std::size_t k = 0; k < r.subnets.size(); ++k) o << (k ? ", " : " ") << quote(r.subnets[k].str());
        o << (r.subnets.empty() ? "];\n" : " ];\n");
        if (!r.groups.empty()) {
            o << "    groups = [";
            for (std::size_t k = 0; k < r.groups.size(); ++k) o << (k ? ", " : " ") << quote(r.groups[k]);
            o << " ];\n";
        }
        // Only what the remote changes over local + its groups: reloading gives the same params.
        SessionParams base = l.defaults;
        for (const auto& name : r.groups)
            for (const auto& g : cfg.groups)
                if (g.name == name) detail::apply(base, g);
        print_params(o, "    ", difference(base, r.params));
        if (r.static_keys) {
            const auto& k = *r.static_keys;
            o << "    static_keys = {\n";
            o << "      tx_id = " << hex_id(k.tx_id) << ";\n";
            o << "      tx_key = " << secret(k.tx_key) << ";\n";
            o << "      tx_salt = " << secret(k.tx_salt) << ";\n";
            o << "      rx_id = " << hex_id(k.rx_id) << ";\n";
            o << "      rx_key = " << secret(k.rx_key) << ";\n";
            o << "      rx_salt = " << secret(k.rx_salt) << ";\n";
            o << "      lanes = " << k.lanes << ";\n";
            o << "      anti_replay = " << (k.anti_replay ? "true" : "false") << ";\n";
            o << "      persist_sequence = " << (k.persist_sequence ? "true" : "false") << ";\n";
            o << "    };\n";
        }
        o << "  }";
    }
    o << (cfg.remotes.empty() ? ");\n" : "\n);\n");
    return secret.finish(o.str());
}

}  // namespace p3::config
