// Cluster settings and the cluster key (see settings.hpp).
#include "control/cluster/settings.hpp"

#include <unistd.h>

#include <array>

#include "common/keyfile.hpp"
#include "control/cluster/message.hpp"

namespace p3::cluster {

namespace {

int hex_digit(std::uint8_t c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

}  // namespace

bool check(const ClusterSettings& s, std::string& why) {
    if (s.max_members < 1 || s.max_members > kMaxMembers) return why = "cluster.max_members: 1 to 16", false;
    if (s.member < 1 || s.member > s.max_members) return why = "cluster.member: 1 to max_members", false;
    if (s.group.empty() || s.group.size() > 127) return why = "cluster.group: 1 to 127 characters", false;
    return true;
}

bool parse_spec(std::string_view spec, ClusterSettings& out, std::string& why) {
    ClusterSettings s;
    s.enabled = true;
    while (!spec.empty()) {
        const auto comma = spec.find(',');
        const std::string_view item = spec.substr(0, comma);
        spec = comma == std::string_view::npos ? std::string_view() : spec.substr(comma + 1);
        const auto eq = item.find('=');
        if (eq == std::string_view::npos) return why = "cluster settings: KEY=VALUE expected", false;
        const std::string_view k = item.substr(0, eq), v = item.substr(eq + 1);
        auto number = [&](std::uint8_t& n) {
            unsigned x = 0;
            for (char c : v) {
                if (c < '0' || c > '9' || x > 255) return false;
                x = x * 10 + static_cast<unsigned>(c - '0');
            }
            if (v.empty() || x > 255) return false;
            n = static_cast<std::uint8_t>(x);
            return true;
        };
        bool ok = true;
        if (k == "member") ok = number(s.member);
        else if (k == "max_members") ok = number(s.max_members);
        else if (k == "group") s.group = v;
        else if (k == "key_file") s.key_file = v;
        else if (k == "role" && (v == "primary" || v == "backup")) s.role = v == "primary" ? Role::primary : Role::backup;
        else ok = false;
        if (!ok) return why = "cluster settings: bad item '" + std::string(item) + "'", false;
    }
    if (!check(s, why)) return false;
    out = std::move(s);
    return true;
}

bool load_key(const std::string& path, SecretBytes& out, std::string& why) {
    keyfile::File f;
    if (keyfile::open(path, f, why) != keyfile::Status::ok) return false;
    SecretBytes buf(2 * kClusterKeyLen + 3);
    std::size_t n = 0;
    for (;;) {
        const ssize_t r = ::read(f.fd(), buf.data() + n, buf.size() - n);
        if (r < 0) return why = path + ": cannot be read", false;
        if (r == 0) break;
        n += static_cast<std::size_t>(r);
        if (n == buf.size()) return why = path + ": longer than a cluster key", false;
    }
    while (n > 0 && (buf.data()[n - 1] == '\n' || buf.data()[n - 1] == '\r')) --n;
    if (n == kClusterKeyLen) {
        out = SecretBytes(std::span<const std::uint8_t>(buf.data(), n));
        return true;
    }
    if (n == 2 * kClusterKeyLen) {
        SecretBytes k(kClusterKeyLen);
        for (std::size_t i = 0; i < kClusterKeyLen; ++i) {
            const int hi = hex_digit(buf.data()[2 * i]), lo = hex_digit(buf.data()[2 * i + 1]);
            if (hi < 0 || lo < 0) return why = path + ": 64 characters that are not all hex digits", false;
            k.data()[i] = static_cast<std::uint8_t>(hi << 4 | lo);
        }
        out = std::move(k);
        return true;
    }
    why = path + ": a cluster key is 32 bytes (raw) or 64 hex digits";
    return false;
}

}  // namespace p3::cluster
