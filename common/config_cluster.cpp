// The cluster block (docs/cluster.md §Configuration): read from the libconfig tree, checked
// with local.cluster_state and load_balance and against every remote's lanes, written back
// by to_libconfig; the cluster key file; the lanes one member sends on.
#include <libconfig.h++>

#include <fcntl.h>
#include <unistd.h>

#include <ostream>

#include "common/config.hpp"
#include "common/config_internal.hpp"
#include "common/keyfile.hpp"
#include "common/wire_limits.hpp"

namespace p3::config {

namespace detail {

namespace {

using libconfig::Setting;

int line_of(const Setting& s, int fallback = 0) {
    const int l = int(s.getSourceLine());
    return l > 0 ? l : fallback;
}

[[noreturn]] void bad(const std::string& file, const Setting& s, const std::string& what) {
    fail(file, line_of(s), Reason::CFG_BAD_VALUE, what);
}

std::uint32_t number(const std::string& file, const Setting& s, const std::string& path, const Range& r) {
    if (s.getType() != Setting::TypeInt && s.getType() != Setting::TypeInt64)
        bad(file, s, path + " must be an integer in " + range_str(r));
    const long long v = s.getType() == Setting::TypeInt ? static_cast<int>(s) : static_cast<long long>(s);
    if (!r.contains(v)) bad(file, s, path + " " + std::to_string(v) + " out of range " + range_str(r));
    return std::uint32_t(v);
}

std::string text(const std::string& file, const Setting& s, const std::string& path, std::size_t max) {
    if (s.getType() != Setting::TypeString) bad(file, s, path + " must be a string");
    std::string v = s.c_str();
    if (v.empty()) bad(file, s, path + " must not be empty");
    if (v.size() > max) bad(file, s, path + " is longer than " + std::to_string(max) + " characters");
    return v;
}

}  // namespace

void read_cluster(Draft& d, const Setting& g, const std::string& file) {
    if (!g.isGroup()) bad(file, g, "cluster must be a group: cluster = { ... }");
    Cluster& c = d.cfg.cluster;
    d.cluster_line = line_of(g, 1);
    c.line = d.cluster_line;
    for (int i = 0; i < g.getLength(); ++i) {
        const Setting& s = g[i];
        const std::string key = s.getName();
        const std::string path = "cluster." + key;
        if (key == "member") {
            c.member = number(file, s, path, limits::member);
            d.cluster_member_line = line_of(s);
        } else if (key == "max_members") {
            c.max_members = number(file, s, path, limits::max_members);
        } else if (key == "director") {
            const std::string v = text(file, s, path, 16);
            if (v == "lvs") c.director = ClusterDirector::lvs;
            else if (v == "none") c.director = ClusterDirector::none;
            else bad(file, s, path + " '" + v + "' must be \"lvs\" (behind a director) or \"none\" (failover)");
        } else if (key == "group") {
            c.group = text(file, s, path, 127);   // CPG_MAX_NAME_LENGTH is 128 with the NUL
        } else if (key == "key_file") {
            c.key_file = text(file, s, path, 4096);
            d.cluster_key_line = line_of(s);
        } else if (key == "role") {
            const std::string v = text(file, s, path, 16);
            if (v == "primary") c.role = ClusterRole::primary;
            else if (v == "backup") c.role = ClusterRole::backup;
            else bad(file, s, path + " '" + v + "' must be \"primary\" or \"backup\"");
        } else {
            fail(file, line_of(s), Reason::CFG_UNKNOWN_KEY,
                 "unknown keyword '" + key + "' in cluster (allowed: member, max_members, director, group, key_file, role)");
        }
    }
}

// Runs after the remotes are resolved (their lanes known).
void check_cluster(Draft& d) {
    Config& cfg = d.cfg;
    const Local& l = cfg.local;
    const Cluster& c = cfg.cluster;
    if (!l.cluster_state) {
        if (d.cluster_line)
            cfg.warnings.push_back(Error{d.file, d.cluster_line, Reason::CLUSTER_IGNORED,
                                         "cluster block ignored: local.cluster_state is 0"});
        if (l.load_balance)
            fail(d.file, d.load_balance_line, Reason::CLUSTER_LOAD_BALANCE,
                 "local.load_balance = 1 without local.cluster_state = 1");
        cfg.cluster = Cluster{};
        return;
    }
    const int at = d.cluster_state_line ? d.cluster_state_line : d.local_line;
    if (!d.cluster_line)
        fail(d.file, at, Reason::CLUSTER_MISSING, "local.cluster_state = 1 but no cluster = { ... } block");
    if (c.key_file.empty())
        fail(d.file, d.cluster_line, Reason::CLUSTER_MISSING,
             "cluster.key_file missing (32 random bytes, owner-only, the same on every member)");
    if (c.member > c.max_members)
        fail(d.file, d.cluster_member_line ? d.cluster_member_line : d.cluster_line, Reason::CLUSTER_MEMBER,
             "cluster.member " + std::to_string(c.member) + " is above cluster.max_members " +
                 std::to_string(c.max_members));
    if (l.load_balance && c.director != ClusterDirector::lvs)
        fail(d.file, d.load_balance_line, Reason::CLUSTER_LOAD_BALANCE,
             "local.load_balance = 1 with cluster.director = \"none\": only the primary is active in failover");
    for (std::size_t i = 0; i < cfg.remotes.size(); ++i) {
        const Remote& r = cfg.remotes[i];
        const std::string& file = d.remotes[i].file.empty() ? d.file : d.remotes[i].file;
        const std::string who = "remote " + std::to_string(r.id) + ": ";
        if (r.wire == WireMode::esp && c.director == ClusterDirector::lvs && c.max_members > 1)
            fail(file, d.remotes[i].wire_line ? d.remotes[i].wire_line : r.line, Reason::CLUSTER_ESP,
                 who + "wire = \"esp\" behind a director: the members would share one ESP sequence");
        const std::uint32_t lanes = r.static_keys ? r.static_keys->lanes : r.params.lanes;
        if (std::uint64_t(lanes) * c.max_members > wire::kMaxLanes)
            fail(file, r.line, Reason::CLUSTER_LANES,
                 who + std::to_string(lanes) + " lanes per member x max_members " + std::to_string(c.max_members) +
                     " is more than the " + std::to_string(wire::kMaxLanes) + " lanes a session has");
        // A static-key session reserves every member's receive IDs: rx_id .. rx_id + M x L - 1.
        if (r.static_keys && std::uint64_t(r.static_keys->rx_id) + lanes * c.max_members - 1 > 0xffffffffULL)
            fail(file, r.static_keys->line ? r.static_keys->line : r.line, Reason::CFG_BAD_VALUE,
                 who + "static_keys: rx_id + lanes x max_members - 1 must stay within 1..4294967295");
    }
    resolve_path(cfg.cluster.key_file, d.file);
    check_key_file(d, d.file, cfg.cluster.key_file, "cluster.key_file", d.cluster_key_line, false);
}

void print_cluster(std::ostream& o, const Cluster& c) {
    o << "cluster = {\n";
    o << "  member = " << c.member << ";\n";
    o << "  max_members = " << c.max_members << ";\n";
    o << "  director = \"" << (c.director == ClusterDirector::lvs ? "lvs" : "none") << "\";\n";
    o << "  group = \"" << c.group << "\";\n";
    o << "  key_file = \"" << c.key_file << "\";\n";
    o << "  role = \"" << (c.role == ClusterRole::primary ? "primary" : "backup") << "\";\n";
    o << "};\n";
}

}  // namespace detail

MemberLanes member_lanes(const Config& cfg, std::uint32_t per_member) noexcept {
    MemberLanes m;
    m.per_member = per_member ? per_member : 1;
    m.total = m.per_member;
    if (!cfg.local.cluster_state) return m;
    const Cluster& c = cfg.cluster;
    // Never beyond a session's lanes (the configuration refuses it; a worker count the file
    // could not know is capped here, and start refuses it: dataplane/remotes.cpp).
    if (std::uint64_t(m.per_member) * c.max_members > wire::kMaxLanes) m.per_member = wire::kMaxLanes / c.max_members;
    m.total = m.per_member * c.max_members;
    m.offset = (c.member - 1) * m.per_member;
    return m;
}

bool read_cluster_key(const std::string& path, SecretBytes& key, std::string& why) {
    keyfile::File f;
    const keyfile::Status st = keyfile::open(path, f, why);
    if (st != keyfile::Status::ok) return false;
    std::uint8_t buf[160];
    std::size_t n = 0;
    for (;;) {
        const ssize_t r = ::read(f.fd(), buf + n, sizeof buf - n);
        if (r < 0) {
            why = path + ": cannot be read";
            secure_wipe(buf, sizeof buf);
            return false;
        }
        if (r == 0) break;
        n += std::size_t(r);
        if (n == sizeof buf) break;
    }
    std::size_t len = n;
    auto hexval = [](std::uint8_t ch) -> int {
        if (ch >= '0' && ch <= '9') return ch - '0';
        if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
        if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
        return -1;
    };
    bool ok = false;
    if (len == 32) {
        key = SecretBytes(std::span<const std::uint8_t>(buf, 32));
        ok = true;
    } else {
        while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r')) --len;
        if (len == 64) {
            std::uint8_t raw[32];
            ok = true;
            for (std::size_t i = 0; i < 32 && ok; ++i) {
                const int h = hexval(buf[2 * i]), lo = hexval(buf[2 * i + 1]);
                ok = h >= 0 && lo >= 0;
                raw[i] = std::uint8_t(ok ? h * 16 + lo : 0);
            }
            if (ok) key = SecretBytes(std::span<const std::uint8_t>(raw, 32));
            secure_wipe(raw, sizeof raw);
        }
    }
    secure_wipe(buf, sizeof buf);
    if (!ok) why = path + ": " + std::to_string(n) + " bytes; the cluster key is 32 bytes (raw) or 64 hex digits";
    return ok;
}

}  // namespace p3::config
