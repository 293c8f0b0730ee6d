// The libconfig syntax (DESIGN.md §Configuration): role, local, dataplane, groups, remotes.
// Walks the parsed tree once, refusing any keyword it does not know at any level, checks each
// value against its range where the line is known, and fills a Draft for finalize(). The
// same reader takes run-time changes (a `remote add` text, one `remote set` key) into a Draft
// of the running configuration (config_live.cpp).
//
// The text is prepared first (config_libconfig_text.cpp: 64-bit literals, no @include).
// Static key hex strings are wiped from libconfig's own storage and from the text copies
// once read.
#include <libconfig.h++>

#include <cstring>
#include <memory>
#include <span>

#include "common/config.hpp"
#include "common/config_internal.hpp"

namespace p3::config {

namespace {

using libconfig::Setting;
using namespace detail;

// Wipes every string value in the tree: static keys are strings while libconfig holds them.
void wipe_strings(Setting& s) {
    if (s.getType() == Setting::TypeString) {
        const char* p = s.c_str();
        if (p) secure_wipe(const_cast<char*>(p), std::strlen(p));
        return;
    }
    if (s.isAggregate())
        for (int i = 0; i < s.getLength(); ++i) wipe_strings(s[i]);
}

struct Reader {
    Draft& d;
    const std::string& file;

    int line_of(const Setting& s, int fallback = 0) const {
        int l = int(s.getSourceLine());
        return l > 0 ? l : fallback;
    }

    [[noreturn]] void bad(const Setting& s, const std::string& what) const {
        fail(file, line_of(s), Reason::CFG_BAD_VALUE, what);
    }

    void require_group(const Setting& s, const std::string& path) const {
        if (!s.isGroup()) bad(s, path + " must be a group: " + path + " = { ... }");
    }

    void unknown(const Setting& s, const std::string& where, const char* allowed) const {
        fail(file, line_of(s), Reason::CFG_UNKNOWN_KEY,
             "unknown keyword '" + std::string(s.getName() ? s.getName() : "?") + "' in " + where +
                 " (allowed: " + allowed + ")");
    }

    long long integer(const Setting& s, const std::string& path, const Range& r) const {
        long long v;
        if (s.getType() == Setting::TypeInt) v = static_cast<int>(s);
        else if (s.getType() == Setting::TypeInt64) v = static_cast<long long>(s);
        else bad(s, path + " must be an integer in " + range_str(r));
        if (!r.contains(v)) bad(s, path + " " + std::to_string(v) + " out of range " + range_str(r));
        return v;
    }

    std::string string(const Setting& s, const std::string& path, std::size_t max = 4096) const {
        if (s.getType() != Setting::TypeString) bad(s, path + " must be a string");
        std::string v = s.c_str();
        if (v.empty()) bad(s, path + " must not be empty");
        if (v.size() > max) bad(s, path + " is longer than " + std::to_string(max) + " characters");
        return v;
    }

    bool boolean(const Setting& s, const std::string& path) const {
        if (s.getType() != Setting::TypeBoolean) bad(s, path + " must be true or false");
        return static_cast<bool>(s);
    }

    IpAddr address(const Setting& s, const std::string& path) const {
        auto a = IpAddr::parse(string(s, path, 64));
        if (!a) bad(s, path + " '" + std::string(s.c_str()) + "' is not an IPv4 or IPv6 address");
        return *a;
    }

    // A session parameter (local default, group, remote override) into g; false if key is not one.
    bool session_param(const Setting& s, const std::string& path, Group& g) const {
        std::string_view key = s.getName();
        if (const Range* r = session_number_range(key)) {
            const long long v = integer(s, path, *r);
            set_session_number(g, key, v);
            note_session_number(d, key, v, line_of(s), path);
            return true;
        }
        if (key == "key_type") {
            auto k = parse_key_type(string(s, path, 64));
            if (!k) bad(s, path + " '" + std::string(s.c_str()) + "' must be \"AES128\" or \"AES256\"");
            g.key_type = *k;
            return true;
        }
        if (key == "size_hiding") {
            g.size_hiding = boolean(s, path);
            return true;
        }
        if (key == "rekey_dh") {
            g.rekey_dh = boolean(s, path);
            return true;
        }
        return false;
    }

    static constexpr const char* kSessionKeys =
        "rekey_wait, rekey_packets, array_size, data_array_time, control_array_time, heartbeat_time, "
        "heartbeat_fail, key_type, size_hiding, lanes, rekey_dh";

    void local(const Setting& l) {
        require_group(l, "local");
        d.local_line = line_of(l, 1);
        Local& loc = d.cfg.local;
        Group defaults;
        for (int i = 0; i < l.getLength(); ++i) {
            const Setting& s = l[i];
            std::string key = s.getName();
            std::string path = "local." + key;
            if (session_param(s, path, defaults)) continue;
            if (key == "ip") {
                d.ip_version = int(integer(s, path, limits::ip_version));
                if (d.ip_version == 5) bad(s, path + " 5: must be 4 or 6");
                d.ip_line = line_of(s);
            } else if (key == "address") {
                loc.address = address(s, path);
                d.address_set = true;
                d.address_line = line_of(s);
            } else if (key == "port") {
                loc.port = std::uint16_t(integer(s, path, limits::port));
            } else if (key == "nat_port") {
                loc.nat_port = std::uint16_t(integer(s, path, limits::port));
            } else if (key == "key_generation") {
                if (s.getType() == Setting::TypeString) {
                    std::string v = s.c_str();
                    if (v == "software") loc.key_generation = KeyGeneration::software;
                    else if (v == "hardware") loc.key_generation = KeyGeneration::hardware;
                    else bad(s, path + " '" + v + "' must be \"software\" or \"hardware\" (or 1, 2)");
                } else {
                    loc.key_generation = integer(s, path, Range{1, 2}) == 2 ? KeyGeneration::hardware
                                                                            : KeyGeneration::software;
                }
            } else if (key == "identity") {
                loc.identity = string(s, path, limits::max_name);
            } else if (key == "psk_file") {
                fail(file, line_of(s), Reason::CFG_SHARED_PSK,
                     path + ": one pre-shared key for every remote is refused; give each remote its own: "
                            "remotes = ( { ...; psk_file = \"FILE\"; } ) and remove local.psk_file");
            } else if (key == "certificate") {
                loc.certificate = string(s, path);
                d.cert_line = line_of(s);
            } else if (key == "private_key") {
                loc.private_key = string(s, path);
                d.key_line = line_of(s);
            } else if (key == "ca") {
                loc.ca = string(s, path);
                d.ca_line = line_of(s);
            } else if (key == "state_dir") {
                loc.state_dir = string(s, path);
                d.state_dir_line = line_of(s);
            } else if (key == "subnets") {
                std::vector<int> lines;
                subnet_list(s, path, limits::max_local_subnets, loc.subnets, lines);
                d.local_subnets_line = line_of(s);
            } else if (key == "admin") {
                admin(s, loc.admin);
            } else if (key == "cluster_state") {
                loc.cluster_state = std::uint32_t(integer(s, path, limits::flag));
                d.cluster_state_line = line_of(s);
            } else if (key == "load_balance") {
                loc.load_balance = std::uint32_t(integer(s, path, limits::flag));
                d.load_balance_line = line_of(s);
            } else {
                unknown(s, "local",
                        "ip, address, port, nat_port, key_generation, identity, certificate, "
                        "private_key, ca, state_dir, subnets, admin, cluster_state, load_balance, rekey_wait, rekey_packets, "
                        "array_size, data_array_time, control_array_time, heartbeat_time, heartbeat_fail, "
                        "key_type, size_hiding, lanes, rekey_dh");
            }
        }
        apply(loc.defaults, defaults);
    }

    void admin(const Setting& a, Admin& out) {
        require_group(a, "local.admin");
        for (int i = 0; i < a.getLength(); ++i) {
            const Setting& s = a[i];
            const std::string key = s.getName();
            const std::string path = "local.admin." + key;
            if (key == "socket") out.socket = string(s, path, 107);   // sun_path
            else if (key == "group") out.group = string(s, path, 64);
            else if (key == "viewer_group") out.viewer_group = string(s, path, 64);
            else if (key == "audit") out.audit = string(s, path);
            else unknown(s, "local.admin", "socket, group, viewer_group, audit");
        }
    }

    void port(const Setting& p, const char* side, PortConfig& pc, int& side_line, int& gw_line, int& mtu_line,
              bool& address_set) {
        std::string base = std::string("dataplane.") + side;
        require_group(p, base);
        side_line = line_of(p);
        for (int i = 0; i < p.getLength(); ++i) {
            const Setting& s = p[i];
            std::string key = s.getName();
            std::string path = base + "." + key;
            if (key == "port") {
                if (s.getType() == Setting::TypeString) {
                    pc.port_name = string(s, path, limits::max_name);
                } else if (s.getType() == Setting::TypeInt || s.getType() == Setting::TypeInt64) {
                    pc.port_id = std::uint16_t(integer(s, path, limits::port_id));
                    pc.port_name.clear();
                } else {
                    bad(s, path + " must be a DPDK port id in " + range_str(limits::port_id) +
                               " or a device name (\"net_ring0\")");
                }
            } else if (key == "address") {
                std::string v = string(s, path, 64);
                auto pfx = Prefix::parse(v, false);
                if (!pfx) bad(s, path + " '" + v + "' is not an address with prefix length (\"10.1.0.1/24\")");
                pc.address = *pfx;
                address_set = true;
            } else if (key == "gateway") {
                pc.gateway = address(s, path);
                gw_line = line_of(s);
            } else if (key == "gateway_mac") {
                std::string v = string(s, path, 64);
                auto m = MacAddr::parse(v);
                if (!m) bad(s, path + " '" + v + "' is not a MAC address (\"02:00:00:00:00:fe\")");
                pc.gateway_mac = *m;
                if (!gw_line) gw_line = line_of(s);
            } else if (key == "mtu") {
                pc.mtu = std::uint16_t(integer(s, path, limits::mtu));
                mtu_line = line_of(s);
            } else {
                unknown(s, base, "port, address, gateway, gateway_mac, mtu");
            }
        }
    }

    void dataplane(const Setting& g) {
        require_group(g, "dataplane");
        Dataplane& dp = d.cfg.dataplane;
        for (int i = 0; i < g.getLength(); ++i) {
            const Setting& s = g[i];
            std::string key = s.getName();
            std::string path = "dataplane." + key;
            if (key == "lan") {
                bool unused = false;
                port(s, "lan", dp.lan, d.lan_line, d.lan_gateway_line, d.lan_mtu_line, unused);
            } else if (key == "wan") {
                port(s, "wan", dp.wan, d.wan_line, d.wan_gateway_line, d.wan_mtu_line, d.wan_address_set);
            } else if (key == "replay_window") {
                dp.replay_window = std::uint32_t(integer(s, path, limits::replay_window));
                if (dp.replay_window % 64)
                    bad(s, path + " " + std::to_string(dp.replay_window) + " must be a multiple of 64 in " +
                               range_str(limits::replay_window));
            } else if (key == "idle_backoff_us") {
                dp.idle_backoff_us = std::uint32_t(integer(s, path, limits::idle_backoff_us));
            } else if (key == "idle_polls") {
                dp.idle_polls = std::uint32_t(integer(s, path, limits::idle_polls));
            } else if (key == "mbufs") {
                dp.mbufs = std::uint32_t(integer(s, path, limits::mbufs));
                d.mbufs_line = line_of(s);
            } else if (key == "rx_queues") {
                dp.rx_queues = std::uint16_t(integer(s, path, limits::rx_queues));
                d.rx_queues_line = line_of(s);
            } else if (key == "burst") {
                dp.burst = std::uint16_t(integer(s, path, limits::burst));
            } else if (key == "spread_lanes") {
                dp.spread_lanes = boolean(s, path);
            } else {
                unknown(s, "dataplane", "lan, wan, replay_window, idle_backoff_us, idle_polls, mbufs, rx_queues, burst, spread_lanes");
            }
        }
    }

    void require_list(const Setting& s, const std::string& path) const {
        if (!s.isList() && !(s.isArray() && s.getLength() == 0))
            bad(s, path + " must be a list: " + path + " = ( { ... }, ... )");
    }

    void groups(const Setting& list) {
        require_list(list, "groups");
        for (int i = 0; i < list.getLength(); ++i) {
            const Setting& g = list[i];
            std::string base = "groups[" + std::to_string(i) + "]";
            require_group(g, base);
            Group grp;
            grp.line = line_of(g, line_of(list));
            bool named = false;
            for (int k = 0; k < g.getLength(); ++k) {
                const Setting& s = g[k];
                std::string key = s.getName();
                std::string path = base + "." + key;
                if (key == "name") {
                    grp.name = string(s, path, limits::max_name);
                    named = true;
                } else if (!session_param(s, path, grp)) {
                    unknown(s, base, (std::string("name, ") + kSessionKeys).c_str());
                }
            }
            if (!named) fail(file, grp.line, Reason::CFG_MISSING, base + ".name missing");
            d.cfg.groups.push_back(std::move(grp));
        }
    }

    std::optional<SecretBytes> secret_hex(const Setting& s, const std::string& path,
                                          std::initializer_list<std::size_t> sizes) const {
        if (s.getType() != Setting::TypeString) bad(s, path + " must be a hex string");
        std::string_view v = s.c_str();
        auto b = parse_hex_secret(v);
        std::string allowed;
        for (auto z : sizes) allowed += (allowed.empty() ? "" : " or ") + std::to_string(z);
        if (!b) bad(s, path + " is not hex (" + allowed + " bytes as 2 hex digits each)");
        bool ok = false;
        for (auto z : sizes) ok |= b->size() == z;
        if (!ok) bad(s, path + " is " + std::to_string(b->size()) + " bytes; allowed: " + allowed);
        return b;
    }

    // A list of subnets ("10.2.0.0/24", host bits zero), each line kept for messages.
    void subnet_list(const Setting& s, const std::string& path, std::size_t max, std::vector<Prefix>& out,
                     std::vector<int>& lines) {
        if (!s.isArray() && !s.isList()) bad(s, path + " must be an array: [ \"10.2.0.0/24\", ... ]");
        if (std::size_t(s.getLength()) > max)
            bad(s, path + " has " + std::to_string(s.getLength()) + " entries; at most " + std::to_string(max));
        for (int j = 0; j < s.getLength(); ++j) {
            const Setting& e = s[j];
            std::string ep = path + "[" + std::to_string(j) + "]";
            int eline = line_of(e, line_of(s));
            if (e.getType() != Setting::TypeString)
                fail(file, eline, Reason::CFG_BAD_VALUE, ep + " must be a string \"10.2.0.0/24\"");
            std::string v = e.c_str();
            auto pfx = Prefix::parse(v, true);
            if (!pfx)
                fail(file, eline, Reason::CFG_BAD_VALUE,
                     ep + " '" + v + "' is not a subnet (address/0..32 or /0..128, no host bits set)");
            out.push_back(*pfx);
            lines.push_back(eline);
        }
    }

    void static_keys(const Setting& g, const std::string& base, Remote& r) {
        require_group(g, base);
        StaticKeys k;
        k.line = line_of(g);
        bool have[6] = {};
        for (int i = 0; i < g.getLength(); ++i) {
            const Setting& s = g[i];
            std::string key = s.getName();
            std::string path = base + "." + key;
            if (key == "tx_id") k.tx_id = std::uint32_t(integer(s, path, limits::p3_id)), have[0] = true;
            else if (key == "rx_id") k.rx_id = std::uint32_t(integer(s, path, limits::p3_id)), have[1] = true;
            else if (key == "tx_key") k.tx_key = std::move(*secret_hex(s, path, {16, 32})), have[2] = true;
            else if (key == "rx_key") k.rx_key = std::move(*secret_hex(s, path, {16, 32})), have[3] = true;
            else if (key == "tx_salt") k.tx_salt = std::move(*secret_hex(s, path, {4})), have[4] = true;
            else if (key == "rx_salt") k.rx_salt = std::move(*secret_hex(s, path, {4})), have[5] = true;
            else if (key == "lanes") k.lanes = std::uint32_t(integer(s, path, limits::static_lanes));
            else if (key == "anti_replay") k.anti_replay = boolean(s, path);
            else if (key == "persist_sequence") k.persist_sequence = boolean(s, path);
            else unknown(s, base, "tx_id, tx_key, tx_salt, rx_id, rx_key, rx_salt, lanes, anti_replay, persist_sequence");
        }
        static constexpr const char* kNames[] = {"tx_id", "rx_id", "tx_key", "rx_key", "tx_salt", "rx_salt"};
        for (int i = 0; i < 6; ++i)
            if (!have[i]) fail(file, k.line, Reason::CFG_MISSING, base + "." + kNames[i] + " missing");
        r.static_keys = std::move(k);
    }

    static constexpr const char* kRemoteKeys = "id, ip, address, port, identity, psk_file, wire, subnets, groups, static_keys";

    // One key of a remote; false if the key is not a remote's.
    bool remote_key(const Setting& s, const std::string& path, Remote& r, RemoteDraft& rd, bool& have_id) {
        const std::string key = s.getName();
        if (session_param(s, path, rd.overrides)) return true;
        if (key == "id") {
            r.id = std::uint32_t(integer(s, path, limits::remote_id));
            have_id = true;
        } else if (key == "ip") {
            rd.ip_version = int(integer(s, path, limits::ip_version));
            if (rd.ip_version == 5) bad(s, path + " 5: must be 4 or 6");
            rd.ip_line = line_of(s);
        } else if (key == "address") {
            r.address = address(s, path);
            rd.address_line = line_of(s);
        } else if (key == "port") {
            r.port = std::uint16_t(integer(s, path, limits::port));
        } else if (key == "identity") {
            r.identity = string(s, path, limits::max_name);
        } else if (key == "psk_file") {
            r.psk_file = string(s, path);
            rd.psk_line = line_of(s);
        } else if (key == "wire") {
            auto w = parse_wire(string(s, path, 16));
            if (!w) bad(s, path + " '" + std::string(s.c_str()) + "' must be \"p3\" or \"esp\"");
            r.wire = *w;
            rd.wire_line = line_of(s);
        } else if (key == "subnets") {
            subnet_list(s, path, limits::max_subnets, r.subnets, rd.subnet_lines);
        } else if (key == "groups") {
            if (!s.isArray() && !s.isList()) bad(s, path + " must be an array: [ \"east\", ... ]");
            rd.groups_line = line_of(s);
            for (int j = 0; j < s.getLength(); ++j) {
                const Setting& e = s[j];
                if (e.getType() != Setting::TypeString)
                    fail(file, line_of(e, rd.groups_line), Reason::CFG_BAD_VALUE,
                         path + "[" + std::to_string(j) + "] must be a group name (a string)");
                r.groups.emplace_back(e.c_str());
            }
        } else if (key == "static_keys") {
            static_keys(s, path, r);
        } else {
            return false;
        }
        return true;
    }

    void remotes(const Setting& list) {
        require_list(list, "remotes");
        for (int i = 0; i < list.getLength(); ++i) {
            const Setting& g = list[i];
            std::string base = "remotes[" + std::to_string(i) + "]";
            require_group(g, base);
            Remote r;
            RemoteDraft rd;
            r.line = line_of(g, line_of(list));
            bool have_id = false;
            for (int k = 0; k < g.getLength(); ++k) {
                const Setting& s = g[k];
                if (!remote_key(s, base + "." + s.getName(), r, rd, have_id))
                    unknown(s, base, (std::string(kRemoteKeys) + ", " + kSessionKeys).c_str());
            }
            // A secondary's lone remote may leave it out; finalize() knows the role.
            rd.id_missing = !have_id;
            d.cfg.remotes.push_back(std::move(r));
            d.remotes.push_back(std::move(rd));
        }
    }

    void root(const Setting& root) {
        for (int i = 0; i < root.getLength(); ++i) {
            const Setting& s = root[i];
            std::string key = s.getName();
            if (key == "role") {
                std::string v = string(s, "role", 32);
                if (v == "primary") d.cfg.role = Role::primary;
                else if (v == "secondary") d.cfg.role = Role::secondary;
                else bad(s, "role '" + v + "' must be \"primary\" or \"secondary\"");
                d.role_set = true;
                d.role_line = line_of(s);
            } else if (key == "local") {
                local(s);
            } else if (key == "dataplane") {
                dataplane(s);
            } else if (key == "groups") {
                groups(s);
            } else if (key == "remotes") {
                remotes(s);
            } else if (key == "cluster") {
                read_cluster(d, s, file);
            } else {
                unknown(s, "the file", "role, local, dataplane, cluster, groups, remotes");
            }
        }
    }
};

struct WipeOnExit {
    libconfig::Config& lc;
    ~WipeOnExit() { wipe_strings(lc.getRoot()); }
};

// Parses text into lc; a syntax error is the file's, at its line. The prepared copy is wiped.
void parse(libconfig::Config& lc, const std::string& text, const std::string& name) {
    std::string prepared = prepare_libconfig(text, name);
    try {
        lc.readString(prepared);
    } catch (const libconfig::ParseException& e) {
        secure_wipe(prepared.data(), prepared.size());
        fail(name, e.getLine(), Reason::CFG_SYNTAX, std::string("syntax error: ") + e.getError());
    }
    secure_wipe(prepared.data(), prepared.size());
}

int count_lines(const std::string& text) {
    int n = 1;
    for (char c : text) n += c == '\n';
    return !text.empty() && text.back() == '\n' ? n - 1 : n;
}

}  // namespace

Result<Config> load_libconfig_text(const std::string& text, const std::string& name) {
    try {
        Draft d;
        d.file = name;
        d.last_line = count_lines(text);
        libconfig::Config lc;
        WipeOnExit wipe{lc};
        parse(lc, text, name);
        Reader{d, name}.root(lc.getRoot());
        return finalize(std::move(d));
    } catch (const LoadError& e) {
        return e.err;
    } catch (const libconfig::SettingException& e) {
        return Error{name, 0, Reason::CFG_SYNTAX, std::string("unexpected setting: ") + e.getPath()};
    } catch (const std::bad_alloc&) {
        return Error{name, 0, Reason::CFG_SYNTAX, "out of memory while reading the configuration"};
    }
}

namespace detail {

void read_remotes_text(Draft& d, const std::string& text, const std::string& name) {
    libconfig::Config lc;
    WipeOnExit wipe{lc};
    parse(lc, text, name);
    const std::size_t first = d.remotes.size(), warn0 = d.cfg.warnings.size(), pk0 = d.rekey_packets_set.size();
    Reader reader{d, name};
    const Setting& root = lc.getRoot();
    bool seen = false;
    for (int i = 0; i < root.getLength(); ++i) {
        const Setting& s = root[i];
        if (std::string_view(s.getName()) != "remotes")
            fail(name, reader.line_of(s), Reason::CFG_UNKNOWN_KEY,
                 "unknown keyword '" + std::string(s.getName()) +
                     "' in the file (allowed: remotes): only remotes are added at run time");
        reader.remotes(s);
        seen = true;
    }
    if (!seen || d.remotes.size() == first)
        fail(name, seen ? reader.line_of(root["remotes"]) : 0, Reason::CFG_MISSING,
             "no remote to add: remotes = ( { id = ...; address = ...; ... } );");
    for (std::size_t i = first; i < d.remotes.size(); ++i) d.remotes[i].file = name;
    for (std::size_t i = warn0; i < d.cfg.warnings.size(); ++i) d.cfg.warnings[i].file = name;
    for (std::size_t i = pk0; i < d.rekey_packets_set.size(); ++i) d.rekey_packets_set[i].file = name;
}

bool read_remote_key(Draft& d, std::size_t i, const std::string& key, const std::vector<std::string>& values,
                     const std::string& label) {
    libconfig::Config lc;
    WipeOnExit wipe{lc};
    bool parsed = false;
    for (const auto& v : values) {
        try {
            parse(lc, key + " = " + v + ";", label);
        } catch (const LoadError&) {
            continue;
        }
        parsed = lc.getRoot().getLength() == 1;
        if (parsed) break;
    }
    if (!parsed) return false;
    const std::size_t warn0 = d.cfg.warnings.size(), pk0 = d.rekey_packets_set.size();
    Reader reader{d, label};
    bool have_id = false;
    reader.remote_key(lc.getRoot()[0], key, d.cfg.remotes[i], d.remotes[i], have_id);
    for (std::size_t k = warn0; k < d.cfg.warnings.size(); ++k) d.cfg.warnings[k].file = label;
    for (std::size_t k = pk0; k < d.rekey_packets_set.size(); ++k) d.rekey_packets_set[k].file = label;
    return true;
}

}  // namespace detail

}  // namespace p3::config
