// p3ctl: administration of p3d. Subcommands that work without a running p3d (configuration
// checks and conversion, the reason-code reference) are handled here directly; `stats` reads
// a running p3d's counters through DPDK telemetry (control/admin/telemetry_client.hpp).
#include <cstdio>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/config.hpp"
#include "control/admin/telemetry_client.hpp"
#include "common/log.hpp"
#include "common/reasons.hpp"

namespace {

int usage(FILE* out, int status) {
    std::fputs(
        "usage: p3ctl COMMAND ...\n"
        "\n"
        "  config check FILE       validate FILE, print the effective configuration (secrets masked)\n"
        "  config convert LEGACY   print the libconfig equivalent of a legacy (Appendix A) file\n"
        "  reasons [--markdown]    list every reason code with its meaning and what to do\n"
        "  stats [--prefix NAME] [--json] [WHAT [ID]]\n"
        "                          a running p3d's counters, one key=value per line (--json: as\n"
        "                          p3d sent them). WHAT: totals (default), drops, lcores, ports,\n"
        "                          sessions, session ID (a remote's id). NAME: p3d's EAL\n"
        "                          --file-prefix (default rte)\n"
        "\n"
        "exit status: 0 ok, 1 p3d not reachable, 2 invalid input (the message says file:line: reason)\n",
        out);
    return status;
}

int cmd_reasons(int argc, char** argv) {
    if (argc > 2 && std::strcmp(argv[2], "--markdown") == 0) {
        std::fputs(p3::reasons_markdown().c_str(), stdout);
        return 0;
    }
    for (const auto& r : p3::all_reasons())
        std::printf("%.*s  %.*s\n    -> %.*s\n", int(r.code.size()), r.code.data(),
                    int(r.meaning.size()), r.meaning.data(), int(r.action.size()), r.action.data());
    return 0;
}

// "file:line: error P3-E0104: what": the compiler form, so editors jump to the line.
void print_problem(const p3::config::Error& e, const char* level) {
    auto code = p3::reason_code(e.reason);
    if (e.line > 0)
        std::fprintf(stderr, "%s:%d: %s %.*s: %s\n", e.file.c_str(), e.line, level, int(code.size()),
                     code.data(), e.what.c_str());
    else
        std::fprintf(stderr, "%s: %s %.*s: %s\n", e.file.c_str(), level, int(code.size()), code.data(),
                     e.what.c_str());
}

// Loads FILE; prints its warnings or its error. nullopt (after printing) when refused.
std::optional<p3::config::Config> load(const char* path) {
    // load_file logs warnings itself (that is how p3d reports them); here they are printed
    // in the compiler form instead, so the log goes nowhere.
    p3::log::init({.ident = "p3ctl", .to_stderr = false, .to_syslog = false});
    auto r = p3::config::load_file(path);
    if (auto* e = std::get_if<p3::config::Error>(&r)) {
        print_problem(*e, "error");
        return std::nullopt;
    }
    auto& cfg = std::get<p3::config::Config>(r);
    for (const auto& w : cfg.warnings) print_problem(w, "warning");
    return std::move(cfg);
}

int cmd_config(int argc, char** argv) {
    if (argc < 4) return usage(stderr, 2);
    std::string_view sub = argv[2];
    if (sub == "check") {
        auto cfg = load(argv[3]);
        if (!cfg) return 2;
        std::fputs(p3::config::to_libconfig(*cfg).c_str(), stdout);
        return 0;
    }
    if (sub == "convert") {
        auto cfg = load(argv[3]);
        if (!cfg) return 2;
        // The output must load to the same model, so secrets (a legacy file has none; a
        // libconfig file's static keys are already in the clear there) are written out.
        std::string text = p3::config::to_libconfig(*cfg, true);
        std::fputs(text.c_str(), stdout);
        p3::secure_wipe(text.data(), text.size());
        return 0;
    }
    std::fprintf(stderr, "p3ctl: unknown config command '%s'\n", argv[2]);
    return usage(stderr, 2);
}

// The telemetry command for WHAT [ID]; empty when WHAT is not one.
std::string stats_command(std::string_view what, const char* id) {
    if (what == "session") {
        if (id == nullptr || *id == '\0' || std::strspn(id, "0123456789") != std::strlen(id) || std::strlen(id) > 9)
            return {};
        return std::string("/p3/session,") + id;
    }
    if (id != nullptr) return {};
    if (what == "totals") return "/p3/stats";
    for (std::string_view w : {"drops", "lcores", "ports", "sessions"})
        if (what == w) return "/p3/" + std::string(w);
    return {};
}

int cmd_stats(int argc, char** argv) {
    std::string prefix = "rte";
    bool json = false;
    int i = 2;
    for (; i < argc && argv[i][0] == '-'; ++i) {
        if (std::strcmp(argv[i], "--json") == 0) json = true;
        else if (std::strcmp(argv[i], "--prefix") == 0 && i + 1 < argc) prefix = argv[++i];
        else return usage(stderr, 2);
    }
    const std::string_view what = i < argc ? argv[i] : "totals";
    const char* id = i + 1 < argc ? argv[i + 1] : nullptr;
    if (i + 2 < argc || prefix.empty() || prefix.find('/') != std::string::npos) return usage(stderr, 2);
    const std::string cmd = stats_command(what, id);
    if (cmd.empty()) {
        std::fprintf(stderr, "p3ctl: stats: '%.*s%s%s': expected totals, drops, lcores, ports, sessions or session ID\n",
                     int(what.size()), what.data(), id ? " " : "", id ? id : "");
        return 2;
    }
    const std::string sock = p3::admin::telemetry_socket(prefix);
    std::string reply, error;
    if (!p3::admin::telemetry_query(sock, cmd, reply, error)) {
        std::fprintf(stderr, "p3ctl: stats: no p3d answers with EAL prefix '%s' (%s)\n", prefix.c_str(), error.c_str());
        return 1;
    }
    if (json) {
        std::printf("%s\n", reply.c_str());
        return 0;
    }
    std::vector<std::pair<std::string, std::string>> kv;
    if (!p3::admin::flatten_json(reply, kv, error)) {
        std::fprintf(stderr, "p3ctl: stats: p3d's reply is not JSON: %s\n", error.c_str());
        return 1;
    }
    // The reply is {"/p3/stats": {...}} (or null for an unknown session): the command's own
    // name is left off each key.
    const std::string top = cmd.substr(0, cmd.find(','));
    for (const auto& [k, v] : kv) {
        if (k == top && v == "null") {
            std::fprintf(stderr, "p3ctl: stats: p3d has no %.*s%s%s\n", int(what.size()), what.data(), id ? " " : "",
                         id ? id : "");
            return 1;
        }
        const std::string_view key = k.compare(0, top.size() + 1, top + ".") == 0 ? std::string_view(k).substr(top.size() + 1)
                                                                                 : std::string_view(k);
        std::printf("%.*s=%s\n", int(key.size()), key.data(), v.c_str());
    }
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 2) return usage(stderr, 2);
    std::string_view cmd = argv[1];
    if (cmd == "-h" || cmd == "--help" || cmd == "help") return usage(stdout, 0);
    if (cmd == "reasons") return cmd_reasons(argc, argv);
    if (cmd == "config") return cmd_config(argc, argv);
    if (cmd == "stats") return cmd_stats(argc, argv);
    std::fprintf(stderr, "p3ctl: unknown command '%s'\n", argv[1]);
    return usage(stderr, 2);
}
