// p3ctl config check (config_check.hpp): load, start checks, credentials; the findings printed
// in the compiler form or as one JSON object.
#include "control/p3ctl/config_check.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include <nlohmann/json.hpp>

#include "common/log.hpp"
#include "control/setup/ike_auth.hpp"

namespace p3::ctl {

namespace {

const char* severity_name(Severity s) {
    return s == Severity::error ? "error" : s == Severity::warning ? "warning" : "info";
}

// The line a credentials error is about: the remote it names ("remote N: ..."), else the
// local file it names.
int credentials_line(const config::Config& cfg, const std::string& why) {
    unsigned id = 0;
    if (std::sscanf(why.c_str(), "remote %u:", &id) == 1)
        for (const auto& r : cfg.remotes)
            if (r.id == id) return r.line;
    const auto& l = cfg.lines;
    if (!cfg.local.private_key.empty() && why.find(cfg.local.private_key) != std::string::npos) return l.private_key;
    if (!cfg.local.certificate.empty() && why.find(cfg.local.certificate) != std::string::npos) return l.certificate;
    if (!cfg.local.ca.empty() && why.find(cfg.local.ca) != std::string::npos) return l.ca;
    return std::max({l.certificate, l.ca, l.local});
}

// p3d's own loading of the setup credentials. A checker that may not read a key file (not
// its owner) leaves that to p3d, as loading does (config_validate.cpp check_key_file).
void check_credentials(const config::Config& cfg, std::vector<Finding>& out) {
    std::string why;
    Reason reason = Reason::SETUP_CREDENTIALS;
    const auto creds = setup::Credentials::load(cfg, why, reason);
    if (!creds) {
        if (::geteuid() != 0 && why.find("Permission denied") != std::string::npos) return;
        out.push_back({Severity::error, {cfg.source, credentials_line(cfg, why), reason, "setup credentials: " + why}});
        return;
    }
    for (const auto& r : cfg.remotes)
        if (!r.static_keys && r.psk_file.empty() && !creds->uses_certificates())
            out.push_back({Severity::warning,
                           {cfg.source, r.line, Reason::SETUP_NO_CREDENTIAL,
                            "remote " + std::to_string(r.id) +
                                " has neither its own psk_file nor a local certificate: it cannot be set up"}});
}

// local.state_dir, where the static keys' sequence marks live: p3d refuses those keys
// (P3-E0810) when it is not a directory, writable by group or others, or not its user's
// (dataplane/seq_reserve.cpp check_dir). A missing one p3d makes, so only its parent must be
// there. Ownership is judged only when checking as root, as p3d runs.
void check_state_dir(const config::Config& cfg, std::vector<Finding>& out) {
    const bool needed = std::any_of(cfg.remotes.begin(), cfg.remotes.end(), [](const config::Remote& r) {
        return r.static_keys && r.static_keys->persist_sequence;
    });
    if (!needed) return;
    const std::string& dir = cfg.local.state_dir;
    const int line = cfg.lines.local;
    struct stat st{};
    std::string why;
    if (::lstat(dir.c_str(), &st) != 0) {
        const std::string parent = dir.substr(0, std::max<std::size_t>(1, dir.rfind('/')));
        if (errno != ENOENT) why = dir + ": " + std::strerror(errno);
        else if (::stat(parent.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
            why = dir + " cannot be made: " + parent + " is not a directory";
        else return;
    } else if (!S_ISDIR(st.st_mode)) {
        why = dir + " is not a directory";
    } else if (st.st_mode & 022) {
        why = dir + " is writable by group or others (chmod 700)";
    } else if (::geteuid() == 0 && st.st_uid != 0) {
        why = dir + " is not owned by root, p3d's user";
    }
    if (!why.empty())
        out.push_back({Severity::error, {cfg.source, line, Reason::SEQ_STATE_UNUSABLE,
                                         "local.state_dir: " + why + ": the static keys would not start"}});
}

}  // namespace

void check_key_generator(const config::Config& cfg, const keys::CpuRng& cpu, std::vector<Finding>& out) {
    const keys::KeyGenerator gen(cfg.local.key_generation, cpu);
    if (auto why = gen.unusable())
        out.push_back({Severity::error,
                       {cfg.source, cfg.lines.local, *why,
                        "local.key_generation = \"hardware\", but this CPU has neither RDSEED nor RDRAND"}});
}

bool CheckResult::ok() const noexcept {
    return std::none_of(findings.begin(), findings.end(), [](const Finding& f) { return f.severity == Severity::error; });
}

CheckResult check_config_file(const std::string& path) {
    // load_file logs what it finds (that is how p3d reports it); here it is returned instead.
    log::init({.ident = "p3ctl", .to_stderr = false, .to_syslog = false});
    CheckResult res;
    auto loaded = config::load_file(path);
    if (auto* e = std::get_if<config::Error>(&loaded)) {
        res.findings.push_back({Severity::error, *e});
        return res;
    }
    auto& cfg = std::get<config::Config>(loaded);
    for (const auto& n : cfg.notes) res.findings.push_back({Severity::info, n});
    for (const auto& w : cfg.warnings) res.findings.push_back({Severity::warning, w});
    for (auto& e : config::check_start(cfg)) res.findings.push_back({Severity::error, std::move(e)});
    check_credentials(cfg, res.findings);
    check_key_generator(cfg, keys::detect_cpu_rng(), res.findings);
    check_state_dir(cfg, res.findings);
    std::stable_sort(res.findings.begin(), res.findings.end(),
                     [](const Finding& a, const Finding& b) { return a.what.line < b.what.line; });
    res.cfg = std::move(cfg);
    return res;
}

std::string render_findings(const std::vector<Finding>& findings) {
    std::string out;
    for (const auto& f : findings) {
        const auto& e = f.what;
        out.append(e.file);
        if (e.line > 0) out.append(":").append(std::to_string(e.line));
        out.append(": ").append(severity_name(f.severity)).append(" ").append(reason_code(e.reason));
        out.append(": ").append(e.what).append("\n");
    }
    return out;
}

std::string render_findings_json(const std::string& path, const CheckResult& r) {
    nlohmann::ordered_json j;
    j["ok"] = r.ok();
    j["file"] = path;
    if (r.cfg) j["role"] = r.cfg->role == config::Role::primary ? "primary" : "secondary";
    j["findings"] = nlohmann::ordered_json::array();
    for (const auto& f : r.findings)
        j["findings"].push_back({{"code", std::string(reason_code(f.what.reason))},
                                 {"severity", severity_name(f.severity)},
                                 {"file", f.what.file},
                                 {"line", f.what.line},
                                 {"message", f.what.what}});
    // Paths and messages may hold bytes that are not UTF-8 (a file name): replaced, not thrown.
    return j.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace) + "\n";
}

}  // namespace p3::ctl
