// The seed spec's Appendix A line format, so existing configuration files keep working:
//
//   # comment                      (also after a value, following a blank)
//   localstart
//   keyword value                  (or keyword=value) -- the local host
//   localend
//   N/keyword value                -- remote host N (N = 1..4294967295), lines in any order
//   N/subnetK a.b.c.d  +  N/maskK 255.255.255.0 (or a prefix length)
//
// State machine over the lines: before-local -> in-local (localstart) -> remotes (localend).
// The format has no role keyword and no dataplane section: the role is inferred from the
// keywords Appendix A gives only one role (or set by the extension keyword `role`), and the
// dataplane takes its defaults unless extension keywords (lan_port, wan_address, ...) say
// otherwise. docs/configuration.md lists every keyword and these decisions.
#include <map>
#include <string_view>

#include "common/config.hpp"
#include "common/config_internal.hpp"

namespace p3::config {

namespace {

using namespace detail;

bool blank(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v'; }

std::string_view trim(std::string_view s) {
    while (!s.empty() && blank(s.front())) s.remove_prefix(1);
    while (!s.empty() && blank(s.back())) s.remove_suffix(1);
    return s;
}

// Keywords Appendix A gives only one role; they decide the role when `role` is absent.
constexpr std::string_view kPrimaryLocal[] = {"port", "key_generation", "rekey_wait", "array_size",
                                              "data_array_time", "control_array_time", "heartbeat_time",
                                              "heartbeat_fail"};
constexpr std::string_view kPrimaryRemote[] = {"key_type", "rekey_wait", "key_array", "data_array_time",
                                               "control_array_time", "heartbeat_time", "heartbeat_fail"};
constexpr std::string_view kSecondaryRemote[] = {"port"};

template <std::size_t N>
bool in(const std::string_view (&list)[N], std::string_view k) {
    for (auto x : list)
        if (x == k) return true;
    return false;
}

constexpr const char* kLocalKeys =
    "ip, address, port, key_generation, rekey_wait, array_size, data_array_time, control_array_time, "
    "heartbeat_time, heartbeat_fail, cluster_state, load_balance; extensions: role, nat_port, identity, "
    "certificate, private_key, ca, state_dir, local_subnets, rekey_packets, key_type, size_hiding, lanes, rekey_dh, "
    "lan_port, lan_address, lan_gateway, lan_gateway_mac, lan_mtu, wan_port, wan_address, wan_gateway, "
    "wan_gateway_mac, wan_mtu, replay_window, idle_backoff_us, idle_polls, mbufs, rx_queues, burst";
constexpr const char* kRemoteKeys =
    "ip, address, subnetK, maskK, key_type, rekey_wait, key_array, data_array_time, control_array_time, "
    "heartbeat_time, heartbeat_fail, port; extensions: identity, psk_file, wire, rekey_packets, size_hiding, lanes, rekey_dh";

struct SubnetDraft {
    std::string subnet, mask;
    int subnet_line = 0, mask_line = 0;
};

struct LegacyRemote {
    std::uint32_t id = 0;
    int line = 0;
    Remote r;
    RemoteDraft rd;
    std::map<std::string, int> seen;           // keyword -> first line
    std::vector<std::string> subnet_order;     // K in order of first appearance
    std::map<std::string, SubnetDraft> subnets;
};

struct Parser {
    Parser(Draft& draft, const std::string& name) : d(draft), file(name) {}
    Draft& d;
    const std::string& file;
    int line = 0;

    std::map<std::string, int> local_seen;
    std::vector<LegacyRemote> remotes;
    std::map<std::uint32_t, std::size_t> remote_index;
    // Role evidence: the first keyword that only one role uses.
    int primary_line = 0, secondary_line = 0;
    std::string primary_kw, secondary_kw;
    Group local_params;

    [[noreturn]] void err(Reason r, const std::string& what) const { fail(file, line, r, what); }
    [[noreturn]] void bad(const std::string& what) const { err(Reason::CFG_BAD_VALUE, what); }

    long long number(std::string_view v, const std::string& name, const Range& r) const {
        if (v.empty() || v.size() > 20) bad(name + " '" + std::string(v) + "' must be a number in " + range_str(r));
        unsigned long long x = 0;
        for (char c : v) {
            if (c < '0' || c > '9') bad(name + " '" + std::string(v) + "' must be a number in " + range_str(r));
            if (x > (~0ull - 9) / 10) bad(name + " " + std::string(v) + " out of range " + range_str(r));
            x = x * 10 + unsigned(c - '0');
        }
        if (x > static_cast<unsigned long long>(r.hi) || static_cast<long long>(x) < r.lo)
            bad(name + " " + std::string(v) + " out of range " + range_str(r));
        return static_cast<long long>(x);
    }

    bool boolean(std::string_view v, const std::string& name) const {
        if (v == "1" || v == "true" || v == "yes" || v == "on") return true;
        if (v == "0" || v == "false" || v == "no" || v == "off") return false;
        bad(name + " '" + std::string(v) + "' must be 0 or 1");
    }

    IpAddr address(std::string_view v, const std::string& name) const {
        auto a = IpAddr::parse(v);
        if (!a) bad(name + " '" + std::string(v) + "' is not an IPv4 or IPv6 address");
        return *a;
    }

    std::string text(std::string_view v, const std::string& name, std::size_t max = 4096) const {
        if (v.size() > max) bad(name + " is longer than " + std::to_string(max) + " characters");
        return std::string(v);
    }

    bool session_param(std::string_view key, std::string_view v, const std::string& name, Group& g) const {
        if (key == "key_array") key = "array_size";
        if (const Range* r = session_number_range(key)) {
            const long long x = number(v, name, *r);
            set_session_number(g, key, x);
            note_session_number(d, key, x, line, name);
            return true;
        }
        if (key == "key_type") {
            auto k = parse_key_type(v);
            if (!k) bad(name + " '" + std::string(v) + "' must be AES128 or AES256");
            g.key_type = *k;
            return true;
        }
        if (key == "size_hiding") {
            g.size_hiding = boolean(v, name);
            return true;
        }
        if (key == "rekey_dh") {
            g.rekey_dh = boolean(v, name);
            return true;
        }
        return false;
    }

    void note_once(std::map<std::string, int>& seen, const std::string& key, const std::string& name) const {
        auto [it, fresh] = seen.emplace(key, line);
        if (!fresh) err(Reason::CFG_SYNTAX, name + " given twice (first at line " + std::to_string(it->second) + ")");
    }

    bool port_key(std::string_view key, std::string_view v, PortConfig& pc, const char* side, int& side_line,
                  int& gw_line, int& mtu_line, bool* address_set) {
        std::string name(key);
        if (!side_line) side_line = line;
        std::string_view k = key.substr(4);  // after "lan_" / "wan_"
        if (k == "port") {
            bool digits = !v.empty() && v.find_first_not_of("0123456789") == std::string_view::npos;
            if (digits) {
                pc.port_id = std::uint16_t(number(v, name, limits::port_id));
                pc.port_name.clear();
            } else {
                pc.port_name = text(v, name, limits::max_name);
            }
        } else if (k == "address") {
            auto p = Prefix::parse(v, false);
            if (!p) bad(name + " '" + std::string(v) + "' is not an address with prefix length (10.1.0.1/24)");
            pc.address = *p;
            if (address_set) *address_set = true;
        } else if (k == "gateway") {
            pc.gateway = address(v, name);
            gw_line = line;
        } else if (k == "gateway_mac") {
            auto m = MacAddr::parse(v);
            if (!m) bad(name + " '" + std::string(v) + "' is not a MAC address (02:00:00:00:00:fe)");
            pc.gateway_mac = *m;
            if (!gw_line) gw_line = line;
        } else if (k == "mtu") {
            pc.mtu = std::uint16_t(number(v, name, limits::mtu));
            mtu_line = line;
        } else {
            return false;
        }
        (void)side;
        return true;
    }

    void local_keyword(std::string_view key, std::string_view v) {
        std::string name(key);
        note_once(local_seen, name, "keyword '" + name + "'");
        if (in(kPrimaryLocal, key) && !primary_line) {
            primary_line = line;
            primary_kw = name;
        }
        Local& loc = d.cfg.local;
        auto& dp = d.cfg.dataplane;
        if (session_param(key, v, name, local_params)) return;
        if (key == "role") {
            if (v == "primary") d.cfg.role = Role::primary;
            else if (v == "secondary") d.cfg.role = Role::secondary;
            else bad("role '" + std::string(v) + "' must be primary or secondary");
            d.role_set = true;
            d.role_line = line;
        } else if (key == "ip") {
            d.ip_version = int(number(v, name, limits::ip_version));
            if (d.ip_version == 5) bad("ip 5: must be 4 or 6");
            d.ip_line = line;
        } else if (key == "address") {
            loc.address = address(v, name);
            d.address_set = true;
            d.address_line = line;
        } else if (key == "port") {
            loc.port = std::uint16_t(number(v, name, limits::port));
        } else if (key == "nat_port") {
            loc.nat_port = std::uint16_t(number(v, name, limits::port));
        } else if (key == "key_generation") {
            if (v == "1" || v == "software") loc.key_generation = KeyGeneration::software;
            else if (v == "2" || v == "hardware") loc.key_generation = KeyGeneration::hardware;
            else bad("key_generation '" + std::string(v) + "' must be 1 (software) or 2 (hardware)");
        } else if (key == "cluster_state") {
            loc.cluster_state = std::uint32_t(number(v, name, limits::flag));
            d.cluster_state_line = line;   // 1 needs a cluster block, which this format has not
        } else if (key == "load_balance") {
            loc.load_balance = std::uint32_t(number(v, name, limits::flag));
            d.load_balance_line = line;
        } else if (key == "identity") {
            loc.identity = text(v, name, limits::max_name);
        } else if (key == "psk_file") {
            fail(file, line, Reason::CFG_SHARED_PSK,
                 "psk_file in the local section: one pre-shared key for every remote is refused; give each "
                 "remote its own (N/psk_file FILE) and remove this line");
        } else if (key == "certificate") {
            loc.certificate = text(v, name);
            d.cert_line = line;
        } else if (key == "private_key") {
            loc.private_key = text(v, name);
            d.key_line = line;
        } else if (key == "ca") {
            loc.ca = text(v, name);
            d.ca_line = line;
        } else if (key == "state_dir") {
            loc.state_dir = text(v, name);
            d.state_dir_line = line;
        } else if (key == "local_subnets") {   // local.subnets, separated by commas
            std::string_view rest = v;
            while (!rest.empty()) {
                const auto comma = rest.find(',');
                std::string one(rest.substr(0, comma));
                rest = comma == std::string_view::npos ? std::string_view{} : rest.substr(comma + 1);
                one.erase(0, one.find_first_not_of(' '));
                one.erase(one.find_last_not_of(' ') + 1);
                auto p = Prefix::parse(one, true);
                if (!p) bad(name + " '" + one + "' is not a subnet (address/len, no host bits set)");
                if (loc.subnets.size() >= limits::max_local_subnets)
                    bad(name + ": at most " + std::to_string(limits::max_local_subnets) + " subnets");
                loc.subnets.push_back(*p);
            }
        } else if (key.starts_with("lan_") &&
                   port_key(key, v, dp.lan, "lan", d.lan_line, d.lan_gateway_line, d.lan_mtu_line, nullptr)) {
        } else if (key.starts_with("wan_") && port_key(key, v, dp.wan, "wan", d.wan_line, d.wan_gateway_line,
                                                       d.wan_mtu_line, &d.wan_address_set)) {
        } else if (key == "replay_window") {
            dp.replay_window = std::uint32_t(number(v, name, limits::replay_window));
            if (dp.replay_window % 64)
                bad("replay_window " + std::string(v) + " must be a multiple of 64 in " +
                    range_str(limits::replay_window));
        } else if (key == "idle_backoff_us") {
            dp.idle_backoff_us = std::uint32_t(number(v, name, limits::idle_backoff_us));
        } else if (key == "idle_polls") {
            dp.idle_polls = std::uint32_t(number(v, name, limits::idle_polls));
        } else if (key == "mbufs") {
            dp.mbufs = std::uint32_t(number(v, name, limits::mbufs));
            d.mbufs_line = line;
        } else if (key == "rx_queues") {
            dp.rx_queues = std::uint16_t(number(v, name, limits::rx_queues));
            d.rx_queues_line = line;
        } else if (key == "burst") {
            dp.burst = std::uint16_t(number(v, name, limits::burst));
        } else {
            err(Reason::CFG_UNKNOWN_KEY,
                "unknown keyword '" + name + "' in the local section (allowed: " + kLocalKeys + ")");
        }
    }

    static bool numbered(std::string_view key, std::string_view stem, std::string_view& k) {
        if (!key.starts_with(stem) || key.size() == stem.size()) return false;
        k = key.substr(stem.size());
        return k.find_first_not_of("0123456789") == std::string_view::npos && k.size() <= 9;
    }

    void remote_keyword(std::string_view full, std::string_view v) {
        auto slash = full.find('/');
        std::string_view ids = full.substr(0, slash), key = full.substr(slash + 1);
        std::string name(full);
        auto id = std::uint32_t(number(ids, "remote number in '" + name + "'", limits::remote_id));
        auto [it, fresh] = remote_index.emplace(id, remotes.size());
        if (fresh) {
            remotes.emplace_back();
            remotes.back().id = id;
            remotes.back().line = line;
            remotes.back().r.id = id;
            remotes.back().r.line = line;
        }
        LegacyRemote& lr = remotes[it->second];
        note_once(lr.seen, std::string(key), "keyword '" + name + "'");
        if (in(kPrimaryRemote, key) && !primary_line) {
            primary_line = line;
            primary_kw = name;
        }
        if (in(kSecondaryRemote, key) && !secondary_line) {
            secondary_line = line;
            secondary_kw = name;
        }
        std::string_view k;
        // subnetN and maskN describe one subnet: its entry is made, in the order first seen,
        // by whichever of the two comes first.
        auto subnet_entry = [&](std::string_view n) -> auto& {
            std::string ks(n);
            auto& sd = lr.subnets[ks];
            if (sd.subnet_line == 0 && sd.mask_line == 0) {
                if (lr.subnet_order.size() >= limits::max_subnets)
                    bad("remote " + std::to_string(id) + " has more than " + std::to_string(limits::max_subnets) +
                        " subnets");
                lr.subnet_order.push_back(ks);
            }
            return sd;
        };
        if (session_param(key, v, name, lr.rd.overrides)) return;
        if (key == "ip") {
            lr.rd.ip_version = int(number(v, name, limits::ip_version));
            if (lr.rd.ip_version == 5) bad(name + " 5: must be 4 or 6");
            lr.rd.ip_line = line;
        } else if (key == "address") {
            lr.r.address = address(v, name);
            lr.rd.address_line = line;
        } else if (key == "port") {
            lr.r.port = std::uint16_t(number(v, name, limits::port));
        } else if (key == "identity") {
            lr.r.identity = text(v, name, limits::max_name);
        } else if (key == "psk_file") {
            lr.r.psk_file = text(v, name);
            lr.rd.psk_line = line;
        } else if (key == "wire") {
            auto w = parse_wire(v);
            if (!w) bad(name + " '" + std::string(v) + "' must be p3 or esp");
            lr.r.wire = *w;
            lr.rd.wire_line = line;
        } else if (numbered(key, "subnet", k)) {
            auto& sd = subnet_entry(k);
            sd.subnet = std::string(v);
            sd.subnet_line = line;
        } else if (numbered(key, "mask", k)) {
            auto& sd = subnet_entry(k);
            sd.mask = std::string(v);
            sd.mask_line = line;
        } else {
            err(Reason::CFG_UNKNOWN_KEY,
                "unknown keyword '" + std::string(key) + "' in '" + name + "' (allowed: " + kRemoteKeys + ")");
        }
    }

    // N/subnetK + N/maskK -> a CIDR prefix.
    Prefix subnet(const LegacyRemote& lr, const std::string& k, const SubnetDraft& sd) {
        std::string base = std::to_string(lr.id) + "/";
        if (!sd.subnet_line) {
            line = sd.mask_line;
            err(Reason::CFG_MISSING, base + "mask" + k + " has no " + base + "subnet" + k);
        }
        if (!sd.mask_line) {
            line = sd.subnet_line;
            err(Reason::CFG_MISSING, base + "subnet" + k + " has no " + base + "mask" + k);
        }
        line = sd.subnet_line;
        IpAddr a = address(sd.subnet, base + "subnet" + k);
        line = sd.mask_line;
        unsigned max = a.is_v4() ? 32 : 128;
        std::uint8_t len = 0;
        std::string mname = base + "mask" + k;
        if (sd.mask.find('.') != std::string::npos && a.is_v4()) {
            auto l = netmask_len(sd.mask);
            if (!l) bad(mname + " '" + sd.mask + "' is not a contiguous netmask (255.255.255.0)");
            len = *l;
        } else {
            std::string_view m = sd.mask;
            if (!m.empty() && m[0] == '/') m.remove_prefix(1);
            if (m.empty() || m.find_first_not_of("0123456789") != std::string_view::npos)
                bad(mname + " '" + sd.mask + "' must be a netmask (255.255.255.0) or a prefix length 0.." +
                    std::to_string(max));
            len = std::uint8_t(number(m, mname, Range{0, max}));
        }
        std::string text = a.str() + "/" + std::to_string(len);
        auto p = Prefix::parse(text, true);
        if (!p) {
            line = sd.subnet_line;
            bad(base + "subnet" + k + " " + a.str() + " has host bits set under " + base + "mask" + k + " " +
                sd.mask + " (the network is " + Prefix::parse(text, false)->str() + " with host bits cleared)");
        }
        return *p;
    }

    void run(const std::string& all) {
        enum class State { before, local, remotes } state = State::before;
        int local_start = 0;
        std::size_t pos = 0;
        line = 0;
        while (pos < all.size()) {
            std::size_t nl = all.find('\n', pos);
            if (nl == std::string::npos) nl = all.size();
            std::string_view raw(all.data() + pos, nl - pos);
            pos = nl + 1;
            ++line;
            std::string_view s = trim(raw);
            if (s.empty() || s[0] == '#') continue;
            // A comment may also follow a value after a blank.
            for (std::size_t i = 1; i < s.size(); ++i)
                if (s[i] == '#' && blank(s[i - 1])) {
                    s = trim(s.substr(0, i));
                    break;
                }
            // keyword [blanks | =] value
            std::size_t kend = 0;
            while (kend < s.size() && !blank(s[kend]) && s[kend] != '=') ++kend;
            std::string_view key = s.substr(0, kend);
            std::string_view rest = trim(s.substr(kend));
            if (!rest.empty() && rest[0] == '=') rest = trim(rest.substr(1));
            for (char c : rest)
                if (blank(c))
                    err(Reason::CFG_SYNTAX, "keyword '" + std::string(key) + "' takes one value; got '" +
                                                std::string(rest) + "'");
            for (char c : s)
                if (static_cast<unsigned char>(c) < 0x20 && !blank(c))
                    err(Reason::CFG_SYNTAX, "control character in the line");

            if (key == "localstart") {
                if (!rest.empty()) err(Reason::CFG_SYNTAX, "localstart takes no value");
                if (state != State::before)
                    err(Reason::CFG_SYNTAX, state == State::local ? "localstart inside the local section (opened at line " +
                                                                        std::to_string(local_start) + ")"
                                                                  : "a second local section");
                state = State::local;
                local_start = line;
                d.local_line = line;
                continue;
            }
            if (key == "localend") {
                if (!rest.empty()) err(Reason::CFG_SYNTAX, "localend takes no value");
                if (state != State::local) err(Reason::CFG_SYNTAX, "localend without localstart");
                state = State::remotes;
                continue;
            }
            if (state == State::before)
                err(Reason::CFG_SYNTAX, "the file must begin with localstart (the local section); found '" +
                                            std::string(key) + "'");
            if (rest.empty()) err(Reason::CFG_SYNTAX, "keyword '" + std::string(key) + "' has no value");
            bool remote = key.find('/') != std::string_view::npos;
            if (state == State::local) {
                if (remote)
                    err(Reason::CFG_SYNTAX, "remote definition '" + std::string(key) +
                                                "' inside the local section: close it with localend first");
                local_keyword(key, rest);
            } else {
                if (!remote)
                    err(Reason::CFG_SYNTAX, "'" + std::string(key) +
                                                "' after localend: local keywords belong between localstart and "
                                                "localend; remote keywords are N/keyword");
                remote_keyword(key, rest);
            }
        }
        d.last_line = line;
        if (state == State::before) fail(file, 1, Reason::CFG_MISSING, "localstart missing: no local section");
        if (state == State::local)
            fail(file, line, Reason::CFG_SYNTAX,
                 "localend missing (local section opened at line " + std::to_string(local_start) + ")");

        apply(d.cfg.local.defaults, local_params);
        decide_role();
        for (auto& lr : remotes) {
            for (const auto& k : lr.subnet_order) {
                const auto& sd = lr.subnets[k];
                lr.r.subnets.push_back(subnet(lr, k, sd));
                lr.rd.subnet_lines.push_back(sd.subnet_line ? sd.subnet_line : sd.mask_line);
            }
            d.cfg.remotes.push_back(std::move(lr.r));
            d.remotes.push_back(std::move(lr.rd));
        }
    }

    // Appendix A has no role keyword: the keywords only a primary (or a secondary) uses
    // decide; with none of them a file with exactly one remote is a secondary's.
    void decide_role() {
        if (d.role_set) return;
        if (primary_line && secondary_line)
            fail(file, std::max(primary_line, secondary_line), Reason::CFG_MISSING,
                 "cannot tell the role: '" + primary_kw + "' (line " + std::to_string(primary_line) +
                     ") is a primary's keyword, '" + secondary_kw + "' (line " + std::to_string(secondary_line) +
                     ") a secondary's; add 'role primary' or 'role secondary' to the local section");
        d.role_set = true;
        if (primary_line) d.cfg.role = Role::primary;
        else if (secondary_line) d.cfg.role = Role::secondary;
        else d.cfg.role = remotes.size() == 1 ? Role::secondary : Role::primary;
        d.role_line = primary_line ? primary_line : secondary_line ? secondary_line : d.local_line;
        // Stated, so an administrator sees which role a file without `role` is read as.
        const std::string role = d.cfg.role == Role::primary ? "primary" : "secondary";
        std::string why = primary_line     ? "'" + primary_kw + "' is a primary's keyword"
                          : secondary_line ? "'" + secondary_kw + "' is a secondary's keyword"
                          : remotes.size() == 1 ? std::string("no role keyword, one remote")
                                                : "no role keyword, " + std::to_string(remotes.size()) + " remotes";
        d.cfg.notes.push_back(Error{file, d.role_line, Reason::CFG_ROLE_GUESSED,
                                    "read as a " + role + " (" + why + "); add 'role " + role +
                                        "' to the local section to say so"});
    }
};

}  // namespace

Result<Config> load_legacy_text(const std::string& text, const std::string& name) {
    try {
        Draft d;
        d.file = name;
        Parser(d, name).run(text);
        return finalize(std::move(d));
    } catch (const LoadError& e) {
        return e.err;
    } catch (const std::bad_alloc&) {
        return Error{name, 0, Reason::CFG_SYNTAX, "out of memory while reading the configuration"};
    }
}

}  // namespace p3::config
