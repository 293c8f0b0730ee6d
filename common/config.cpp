// The configuration model's common part: the value parsers and session-parameter table both
// loaders share (config_internal.hpp), format detection and reading (load_file), copying,
// comparing, and printing the effective configuration (to_libconfig).
//
// The two syntaxes live in config_libconfig.cpp and config_legacy.cpp; both fill a Draft and
// hand it to finalize() in config_validate.cpp, which resolves groups and overrides and checks
// every rule that spans more than one setting, so the model and its rules are the same
// whatever the format.
#include "common/config.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <sstream>

#include "common/config_internal.hpp"
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

void note_session_number(Draft& d, std::string_view key, long long v, int line, const std::string& path) {
    if (key == "rekey_packets") {
        d.rekey_packets_set.push_back({"", path, line, static_cast<std::uint64_t>(v)});
    } else if (key == "rekey_wait" && v > kRekeyWaitAdvised) {
        d.cfg.warnings.push_back(Error{d.file, line, Reason::CFG_REKEY_WAIT_LONG,
                                       path + " " + std::to_string(v) + " s is longer than the " +
                                           std::to_string(kRekeyWaitAdvised) +
                                           " s the specification asks for (new keys at least every ten minutes)"});
    }
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
    if (g.rekey_dh) p.rekey_dh = *g.rekey_dh;
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

std::optional<WireMode> parse_wire(std::string_view s) {
    std::string l(s);
    for (char& c : l) c = (c >= 'A' && c <= 'Z') ? char(c - 'A' + 'a') : c;
    if (l == "p3") return WireMode::p3;
    if (l == "esp") return WireMode::esp;
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

}  // namespace detail

std::uint64_t aead_packet_bound(std::uint32_t wan_mtu) noexcept {
    // The largest plaintext a sender seals under this MTU: outer IPv4 header (the smallest,
    // so the largest plaintext), P3 header and tag taken off; inner packet, padding and
    // trailer all count (they are all encrypted).
    constexpr std::uint32_t kOuter = wire::kIpv4HeaderLen + wire::kP3HeaderLen + wire::kIcvLen;  // 52
    const std::uint32_t plain = wan_mtu > kOuter ? wan_mtu - kOuter : 1;
    const std::uint64_t l = (plain + 15) / 16 + 1;   // blocks, + 1: the block each packet's tag costs
    return (std::uint64_t{1} << 35) / l;
}

std::uint64_t rekey_packet_limit(std::uint64_t configured, std::uint32_t wan_mtu) noexcept {
    const std::uint64_t bound = aead_packet_bound(wan_mtu);
    return configured == 0 || configured > bound ? bound : configured;
}

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
    r.overrides = overrides;
    r.identity = identity;
    r.psk_file = psk_file;
    r.wire = wire;
    if (static_keys) r.static_keys = static_keys->clone();
    r.line = line;
    return r;
}

Config Config::clone() const {
    Config c;
    c.role = role;
    c.local = local;
    c.dataplane = dataplane;
    c.cluster = cluster;
    c.groups = groups;
    c.remotes.reserve(remotes.size());
    for (const auto& r : remotes) c.remotes.push_back(r.clone());
    c.source = source;
    c.warnings = warnings;
    c.notes = notes;
    c.lines = lines;
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
        a.groups != b.groups || !(a.params == b.params) || !same_group(a.overrides, b.overrides) ||
        a.identity != b.identity ||
        a.psk_file != b.psk_file || a.wire != b.wire || a.static_keys.has_value() != b.static_keys.has_value())
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
    if (a.role != b.role || !(a.local == b.local) || !(a.dataplane == b.dataplane) || !(a.cluster == b.cluster) ||
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
    for (const auto& n : cfg.notes) ::p3::log::write(::p3::log::Level::info, n.reason, "%s", n.str().c_str());
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
    if (g.rekey_dh) o << indent << "rekey_dh = " << (*g.rekey_dh ? "true" : "false") << ";\n";
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
    g.rekey_dh = p.rekey_dh;
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
    if (l.admin != Admin{}) {
        o << "  admin = {\n";
        if (!l.admin.socket.empty()) o << "    socket = " << quote(l.admin.socket) << ";\n";
        o << "    group = " << quote(l.admin.group) << ";\n";
        o << "    viewer_group = " << quote(l.admin.viewer_group) << ";\n";
        o << "    audit = " << quote(l.admin.audit) << ";\n";
        o << "  };\n";
    }
    print_params(o, "  ", all_of(l.defaults));
    if (l.defaults.rekey_packets == 0)
        o << "  # rekey_packets 0: the AES-GCM usage bound for the WAN MTU (" << cfg.dataplane.wan.mtu
          << "), " << aead_packet_bound(cfg.dataplane.wan.mtu) << " packets per key\n";
    o << "  cluster_state = " << l.cluster_state << ";\n";
    o << "  load_balance = " << l.load_balance << ";\n";
    o << "};\n";
    if (l.cluster_state) detail::print_cluster(o, cfg.cluster);

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
    o << "  spread_lanes = " << (dp.spread_lanes ? "true" : "false") << ";\n";
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
        if (r.wire == WireMode::esp) o << "    wire = \"esp\";\n";
        o << "    subnets = [";
        for (std::size_t k = 0; k < r.subnets.size(); ++k) o << (k ? ", " : " ") << quote(r.subnets[k].str());
        o << (r.subnets.empty() ? "];\n" : " ];\n");
        if (!r.groups.empty()) {
            o << "    groups = [";
            for (std::size_t k = 0; k < r.groups.size(); ++k) o << (k ? ", " : " ") << quote(r.groups[k]);
            o << " ];\n";
        }
        // The remote's own settings only: what it inherits from local and its groups stays
        // inherited when the text is loaded again (a saved file keeps its structure).
        print_params(o, "    ", r.overrides);
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
