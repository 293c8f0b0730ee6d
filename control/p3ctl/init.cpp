// p3ctl init (init.hpp). Every answer is checked where it is given (an address that is not
// one is asked again, saying why), the file is built from the answers, written without
// replacing anything unless --force, and then checked exactly as `p3ctl config check` checks.
#include "control/p3ctl/init.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <openssl/evp.h>
#include <openssl/rand.h>

#include "common/net.hpp"
#include "common/secret.hpp"
#include "control/p3ctl/config_check.hpp"

namespace p3::ctl {

namespace {

constexpr int kBadInput = 2, kFailed = 5;

struct Io {
    std::FILE* in;
    std::FILE* out;
    std::FILE* err;
};

// One line from `in`, without its line end; nullopt at the end of the input.
std::optional<std::string> read_line(std::FILE* in) {
    std::string s;
    for (int c; (c = std::fgetc(in)) != EOF;) {
        if (c == '\n') return s;
        s.push_back(char(c));
    }
    if (s.empty()) return std::nullopt;
    return s;
}

std::string trim(std::string s) {
    const auto b = s.find_first_not_of(" \t\r");
    if (b == std::string::npos) return "";
    return s.substr(b, s.find_last_not_of(" \t\r") - b + 1);
}

// Why `v` is not acceptable; empty when it is.
using Check = std::function<std::string(const std::string&)>;

std::string is_prefix_addr(const std::string& v) {
    auto p = Prefix::parse(v, false);
    if (!p || v.find('/') == std::string::npos)
        return "'" + v + "' is not an address with its prefix length (e.g. 192.0.2.2/24 or 2001:db8::2/64)";
    return {};
}

std::string is_addr(const std::string& v) {
    auto a = IpAddr::parse(v);
    if (!a || a->family == 0) return "'" + v + "' is not an IPv4 or IPv6 address (e.g. 192.0.2.1)";
    return {};
}

std::string is_addr_or_none(const std::string& v) { return v == "none" ? std::string() : is_addr(v); }

std::string is_subnets(const std::string& v) {
    if (v == "none") return {};
    std::size_t start = 0;
    while (start <= v.size()) {
        const auto comma = v.find(',', start);
        const std::string one = trim(v.substr(start, comma == std::string::npos ? std::string::npos : comma - start));
        if (!Prefix::parse(one, true))
            return "'" + one + "' is not a subnet (network address with prefix length, host bits zero, e.g. 10.1.5.0/24)";
        if (comma == std::string::npos) break;
        start = comma + 1;
    }
    return {};
}

std::string is_role(const std::string& v) {
    return v == "primary" || v == "secondary" ? std::string() : "'" + v + "': answer primary or secondary";
}

std::string is_psk(const std::string& v) {
    if (v == "generate") return {};
    if (v.empty() || v[0] != '/') return "'" + v + "': answer generate, or the absolute path of an existing key file";
    struct stat st{};
    if (::stat(v.c_str(), &st) != 0) return v + ": " + std::strerror(errno);
    return {};
}

// `value` as given (checked), else asked until an answer passes `check`. A flag that fails is
// an error (no one to ask); an interactive answer that fails is asked again with the reason.
bool get(const Io& io, const char* prompt, const std::string& def, std::string& value, bool given, const Check& check,
         const char* flag) {
    if (given) {
        const std::string why = check(value);
        if (why.empty()) return true;
        std::fprintf(io.err, "p3ctl: init: %s: %s\n", flag, why.c_str());
        return false;
    }
    for (;;) {
        std::fprintf(io.out, "%s%s%s%s: ", prompt, def.empty() ? "" : " [", def.c_str(), def.empty() ? "" : "]");
        std::fflush(io.out);
        auto line = read_line(io.in);
        if (!line) {
            std::fprintf(io.err, "\np3ctl: init: no answer for '%s' (end of input); give %s\n", prompt, flag);
            return false;
        }
        value = trim(*line);
        if (value.empty()) value = def;
        const std::string why = check(value);
        if (why.empty()) return true;
        std::fprintf(io.out, "  %s; please answer again.\n", why.c_str());
    }
}

std::vector<Prefix> subnet_list(const std::string& v) {
    std::vector<Prefix> out;
    if (v == "none" || v.empty()) return out;
    std::size_t start = 0;
    for (;;) {
        const auto comma = v.find(',', start);
        out.push_back(*Prefix::parse(trim(v.substr(start, comma == std::string::npos ? std::string::npos : comma - start))));
        if (comma == std::string::npos) return out;
        start = comma + 1;
    }
}

// Every answer, asked in the order an administrator reads them off the network plan.
bool ask(const Io& io, InitOptions& o) {
    if (!get(io, "Role of this appliance (primary or secondary)", "secondary", o.role, !o.role.empty(), is_role, "--role"))
        return false;
    if (!get(io, "WAN address with prefix length (e.g. 192.0.2.2/24)", "", o.wan, !o.wan.empty(), is_prefix_addr, "--wan"))
        return false;
    if (!get(io, "WAN gateway (none: every peer is on the WAN link)", "none", o.gateway, o.gateway_given,
             is_addr_or_none, "--gateway"))
        return false;
    if (!get(io, "LAN address with prefix length (e.g. 10.2.0.1/24)", "", o.lan, !o.lan.empty(), is_prefix_addr, "--lan"))
        return false;
    if (!get(io, "Protected subnets behind the LAN besides its own prefix, comma separated", "none", o.subnets,
             o.subnets_given, is_subnets, "--subnets"))
        return false;
    const Prefix lan = *Prefix::parse(o.lan, false);
    bool off_link = false;
    for (const auto& s : subnet_list(o.subnets)) off_link |= !lan.contains(s.addr);
    if (off_link && !get(io, "LAN gateway to those subnets", "", o.lan_gateway, o.lan_gateway_given, is_addr,
                         "--lan-gateway"))
        return false;
    if (o.role == "secondary") {
        if (!get(io, "The primary's address", "", o.primary, !o.primary.empty(), is_addr, "--primary")) return false;
        if (!get(io, "Pre-shared key with the primary: generate, or the path of an existing key file", "generate",
                 o.psk_file, !o.psk_file.empty(), is_psk, "--psk-file"))
            return false;
    }
    return true;
}

std::string quote(const std::string& s) { return "\"" + s + "\""; }

std::string config_text(const InitOptions& o, const std::string& psk_path) {
    const Prefix wan = *Prefix::parse(o.wan, false);
    std::string subnets;
    for (const auto& s : subnet_list(o.subnets)) subnets += std::string(subnets.empty() ? "" : ", ") + quote(s.str());
    std::string t = "# p3d configuration written by p3ctl init (docs/configuration.md); check it with\n"
                    "# p3ctl config check FILE after any change.\n";
    t += "role = " + quote(o.role) + ";\n\nlocal = {\n  address = " + quote(wan.addr.str()) + ";\n";
    if (!subnets.empty()) t += "  subnets = [ " + subnets + " ];\n";
    t += "  rekey_wait = 600;   # new keys every 10 min (the specification, 4.1)\n};\n\n";
    t += "dataplane = {\n  lan = { port = 0; address = " + quote(o.lan) + ";" +
         (o.lan_gateway.empty() ? "" : " gateway = " + quote(o.lan_gateway) + ";") + " };\n";
    t += "  wan = { port = 1; address = " + quote(o.wan) + ";" +
         (o.gateway == "none" ? "" : " gateway = " + quote(o.gateway) + ";") + " };\n};\n\n";
    if (o.role == "secondary")
        t += "# The primary: one remote, so no id (it is 1) and no subnets (the primary pushes them).\n"
             "remotes = ( { address = " + quote(o.primary) + "; psk_file = " + quote(psk_path) + "; } );\n";
    else
        t += "# Secondaries are added with `p3ctl remote add FILE` (each with its own psk_file and\n"
             "# subnets) and kept with `p3ctl config save`.\nremotes = ( );\n";
    return t;
}

// Writes `text` to path with `mode`, never replacing a file unless force; no symbolic link
// followed. False with why.
bool write_file(const std::string& path, const std::string& text, mode_t mode, bool force, std::string& why) {
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC | (force ? O_TRUNC : O_EXCL), mode);
    if (fd < 0) {
        why = path + (errno == EEXIST ? ": exists (--force replaces it)" : ": " + std::string(std::strerror(errno)));
        return false;
    }
    bool ok = ::fchmod(fd, mode) == 0;
    for (std::size_t done = 0; ok && done < text.size();) {
        const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
        if (n < 0 && errno == EINTR) continue;
        ok = n > 0;
        if (ok) done += std::size_t(n);
    }
    ok = ::fsync(fd) == 0 && ok;
    ok = ::close(fd) == 0 && ok;
    if (!ok) why = path + ": " + std::strerror(errno);
    return ok;
}

// 32 random bytes, base64: the key file's text (trailing line end not part of the key).
std::string new_psk() {
    unsigned char raw[32];
    unsigned char b64[64];
    if (RAND_bytes(raw, sizeof raw) != 1) return {};
    const int n = EVP_EncodeBlock(b64, raw, sizeof raw);
    std::string s(reinterpret_cast<char*>(b64), std::size_t(n));
    secure_wipe(raw, sizeof raw);
    secure_wipe(b64, sizeof b64);
    return s + "\n";
}

bool confirm(const Io& io, const std::string& conf_path, const std::string& psk_path, bool generate) {
    std::fprintf(io.out, "\nWill write %s%s%s. Write? [y/N]: ", conf_path.c_str(), generate ? " and " : "",
                 generate ? (psk_path + " (a new key, owner-only)").c_str() : "");
    std::fflush(io.out);
    auto a = read_line(io.in);
    return a && (trim(*a) == "y" || trim(*a) == "yes");
}

}  // namespace

int run_init(InitOptions o, std::FILE* in, std::FILE* out, std::FILE* err) {
    const Io io{in, out, err};
    if (!ask(io, o)) return kBadInput;
    std::error_code ec;
    const std::string dir = std::filesystem::absolute(o.out, ec).lexically_normal().string();
    const std::string conf_path = dir + "/p3d.conf", secrets = dir + "/secrets";
    const bool generate = o.role == "secondary" && o.psk_file == "generate";
    const std::string psk_path = generate ? secrets + "/primary.psk" : o.psk_file;
    if (!o.yes && !confirm(io, conf_path, psk_path, generate)) {
        std::fprintf(err, "p3ctl: init: nothing written\n");
        return kBadInput;
    }
    if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) {
        std::fprintf(err, "p3ctl: init: %s: %s\n", dir.c_str(), std::strerror(errno));
        return kFailed;
    }
    std::string why;
    // Neither file is written when the other would replace something without --force.
    for (const std::string& p : {conf_path, generate ? psk_path : std::string()})
        if (!p.empty() && !o.force && ::access(p.c_str(), F_OK) == 0) {
            std::fprintf(err, "p3ctl: init: %s: exists (--force replaces it); nothing written\n", p.c_str());
            return kBadInput;
        }
    if (generate) {
        // The secrets' directory is owner-only whatever it was: a key is never exposed by it.
        if ((::mkdir(secrets.c_str(), 0700) != 0 && errno != EEXIST) || ::chmod(secrets.c_str(), 0700) != 0) {
            std::fprintf(err, "p3ctl: init: %s: %s\n", secrets.c_str(), std::strerror(errno));
            return kFailed;
        }
        std::string key = new_psk();
        const bool ok = !key.empty() && write_file(psk_path, key, 0600, o.force, why);
        secure_wipe(key.data(), key.size());
        if (!ok) {
            std::fprintf(err, "p3ctl: init: %s\n", why.empty() ? "no random bytes for the key" : why.c_str());
            return kFailed;
        }
    }
    if (!write_file(conf_path, config_text(o, psk_path), 0644, o.force, why)) {
        std::fprintf(err, "p3ctl: init: %s\n", why.c_str());
        return kFailed;
    }
    std::fprintf(out, "wrote %s\n", conf_path.c_str());
    if (generate)
        std::fprintf(out, "wrote %s (0600): give the primary the same key, owner-only, as this secondary's psk_file\n",
                     psk_path.c_str());
    const auto r = check_config_file(conf_path);
    std::fputs(render_findings(r.findings).c_str(), err);
    if (!r.ok()) {
        std::fprintf(err, "p3ctl: init: %s does not pass config check (above)\n", conf_path.c_str());
        return kBadInput;
    }
    std::fprintf(out, "p3ctl config check %s: ok\n", conf_path.c_str());
    return 0;
}

}  // namespace p3::ctl
