// p3ctl: administration of p3d (docs/p3ctl.md). The command line (CLI11: global -s/--prefix/
// --json/--version, per-command --help) and each verb. Verbs that work without a running p3d
// (configuration checks and conversion, the reason-code reference) are handled here directly;
// `stats` reads a running p3d's counters through DPDK telemetry (control/admin/); status,
// rekey, keyarray and audit go over p3d's admin socket (control/p3ctl/admin_client.hpp) and
// are printed by control/p3ctl/render.hpp.
#include <cerrno>
#include <cstdio>
#include <filesystem>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <CLI/CLI.hpp>

#include "common/config.hpp"
#include "common/log.hpp"
#include "common/reasons.hpp"
#include "control/admin/telemetry_client.hpp"
#include "control/p3ctl/admin_client.hpp"
#include "control/p3ctl/capture.hpp"
#include "control/p3ctl/cluster.hpp"
#include "control/p3ctl/config_check.hpp"
#include "control/p3ctl/init.hpp"
#include "control/p3ctl/metrics.hpp"
#include "control/p3ctl/metrics_http.hpp"
#include "control/p3ctl/render.hpp"

#ifndef P3_VERSION
#define P3_VERSION "unknown"
#endif

namespace {

using p3::ctl::Json;

struct Globals {
    std::string socket;   // -s PATH
    std::string prefix;   // --prefix NAME (EAL --file-prefix of p3d)
    bool json = false;
};

int cmd_reasons(bool markdown) {
    if (markdown) {
        std::fputs(p3::reasons_markdown().c_str(), stdout);
        return 0;
    }
    for (const auto& r : p3::all_reasons())
        std::printf("%.*s  %.*s\n    -> %.*s\n", int(r.code.size()), r.code.data(), int(r.meaning.size()),
                    r.meaning.data(), int(r.action.size()), r.action.data());
    return 0;
}

// "file:line: error P3-E0104: what": the compiler form, so editors jump to the line.
void print_problem(const p3::config::Error& e, const char* level) {
    auto code = p3::reason_code(e.reason);
    if (e.line > 0)
        std::fprintf(stderr, "%s:%d: %s %.*s: %s\n", e.file.c_str(), e.line, level, int(code.size()), code.data(),
                     e.what.c_str());
    else
        std::fprintf(stderr, "%s: %s %.*s: %s\n", e.file.c_str(), level, int(code.size()), code.data(), e.what.c_str());
}

// Loads FILE; prints its warnings or its error. nullopt (after printing) when refused.
std::optional<p3::config::Config> load(const std::string& path) {
    // load_file logs warnings itself (that is how p3d reports them); here they are printed
    // in the compiler form instead, so the log goes nowhere.
    p3::log::init({.ident = "p3ctl", .to_stderr = false, .to_syslog = false});
    auto r = p3::config::load_file(path.c_str());
    if (auto* e = std::get_if<p3::config::Error>(&r)) {
        print_problem(*e, "error");
        return std::nullopt;
    }
    auto& cfg = std::get<p3::config::Config>(r);
    for (const auto& w : cfg.warnings) print_problem(w, "warning");
    return std::move(cfg);
}

// config check: every finding on stderr (or one JSON object on stdout), the effective
// configuration on stdout when nothing is an error; exit 0, or 2 on any error.
int cmd_check(const std::string& file, bool json) {
    const auto r = p3::ctl::check_config_file(file);
    if (json) {
        std::fputs(p3::ctl::render_findings_json(file, r).c_str(), stdout);
        return r.ok() ? 0 : 2;
    }
    std::fputs(p3::ctl::render_findings(r.findings).c_str(), stderr);
    if (!r.ok()) return 2;
    std::fputs(p3::config::to_libconfig(*r.cfg).c_str(), stdout);
    return 0;
}

int cmd_convert(const std::string& file) {
    auto cfg = load(file);
    if (!cfg) return 2;
    // The output must load to the same model, so secrets (a legacy file has none; a libconfig
    // file's static keys are already in the clear there) are written out.
    std::string text = p3::config::to_libconfig(*cfg, true);
    std::fputs(text.c_str(), stdout);
    p3::secure_wipe(text.data(), text.size());
    return 0;
}

// The telemetry command for WHAT [ID]; empty when WHAT is not one.
std::string stats_command(std::string_view what, const std::string* id) {
    if (what == "session") {
        if (id == nullptr || !p3::ctl::parse_id(*id)) return {};
        return "/p3/session," + *id;
    }
    if (id != nullptr) return {};
    if (what == "totals") return "/p3/stats";
    for (std::string_view w : {"drops", "lcores", "ports", "sessions"})
        if (what == w) return "/p3/" + std::string(w);
    return {};
}

int cmd_stats(std::string prefix, bool json, const std::vector<std::string>& args) {
    if (args.size() > 2 || prefix.empty() || prefix.find('/') != std::string::npos) {
        std::fprintf(stderr, "p3ctl: stats: usage: p3ctl stats [--prefix NAME] [--json] [WHAT [ID]]\n");
        return 2;
    }
    const std::string what = args.empty() ? "totals" : args[0];
    const std::string* id = args.size() > 1 ? &args[1] : nullptr;
    const std::string cmd = stats_command(what, id);
    if (cmd.empty()) {
        std::fprintf(stderr, "p3ctl: stats: '%s%s%s': expected totals, drops, lcores, ports, sessions or session ID\n",
                     what.c_str(), id ? " " : "", id ? id->c_str() : "");
        return 2;
    }
    const std::string sock = p3::admin::telemetry_socket(prefix);
    std::string reply, error;
    if (!p3::admin::telemetry_query_all(sock, cmd, reply, error)) {
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
            std::fprintf(stderr, "p3ctl: stats: p3d has no %s%s%s\n", what.c_str(), id ? " " : "", id ? id->c_str() : "");
            return 1;
        }
        const std::string_view key =
            k.compare(0, top.size() + 1, top + ".") == 0 ? std::string_view(k).substr(top.size() + 1) : std::string_view(k);
        std::printf("%.*s=%s\n", int(key.size()), key.data(), v.c_str());
    }
    return 0;
}

// metrics: OpenMetrics text of telemetry and (when reachable) the admin status, printed once
// or served over HTTP (control/p3ctl/metrics*.hpp).
int cmd_metrics(const Globals& g, const std::string& prefix, const std::string& listen) {
    if (prefix.empty() || prefix.find('/') != std::string::npos) {
        std::fprintf(stderr, "p3ctl: metrics: usage: p3ctl [-s PATH] [--prefix NAME] metrics [--listen ADDR:PORT]\n");
        return 2;
    }
    const p3::ctl::MetricsSources src{p3::admin::telemetry_socket(prefix), p3::ctl::admin_socket(g.socket, g.prefix)};
    if (!listen.empty()) {
        std::string host, port, error;
        if (!p3::ctl::parse_listen(listen, host, port, error)) {
            std::fprintf(stderr, "p3ctl: metrics: --listen '%s': %s\n", listen.c_str(), error.c_str());
            return 2;
        }
        return p3::ctl::serve_metrics(listen, [&src] {
            p3::ctl::MetricsInput in;
            std::string error;
            p3::ctl::collect_metrics(src, in, error);
            return p3::ctl::render_metrics(in);
        });
    }
    p3::ctl::MetricsInput in;
    std::string error;
    if (!p3::ctl::collect_metrics(src, in, error)) {
        std::fprintf(stderr, "p3ctl: metrics: no p3d answers with EAL prefix '%s' (%s)\n", prefix.c_str(), error.c_str());
        return 1;
    }
    std::fputs(p3::ctl::render_metrics(in).c_str(), stdout);
    return 0;
}

// ---- admin socket verbs ---------------------------------------------------------------------

// Which sessions a verb applies to, as typed.
struct Target {
    std::string id;
    std::string group;
    bool all = false;
};

// The request's target; nullopt (after a message) when it is not exactly one valid choice.
std::optional<Json> make_target(const char* verb, const Target& t, bool all_allowed) {
    const int given = int(!t.id.empty()) + int(!t.group.empty()) + int(t.all);
    if (given > 1) {
        std::fprintf(stderr, "p3ctl: %s: give one of ID, --group NAME%s\n", verb, all_allowed ? " or --all" : "");
        return std::nullopt;
    }
    if (given == 0) {
        if (all_allowed) return Json{{"all", true}};
        std::fprintf(stderr, "p3ctl: %s: a remote ID or --group NAME is required\n", verb);
        return std::nullopt;
    }
    if (t.all) return Json{{"all", true}};
    if (!t.group.empty()) {
        Json target{{"group", t.group}};
        try {
            (void)target.dump();   // refuses what is not UTF-8
        } catch (const nlohmann::json::exception&) {
            std::fprintf(stderr, "p3ctl: %s: --group: the name is not UTF-8 text\n", verb);
            return std::nullopt;
        }
        if (t.group.size() > 256 || t.group.find_first_of(std::string("\0\n\r\t", 4)) != std::string::npos) {
            std::fprintf(stderr, "p3ctl: %s: --group: not a group name\n", verb);
            return std::nullopt;
        }
        return target;
    }
    const auto id = p3::ctl::parse_id(t.id);
    if (!id) {
        std::fprintf(stderr, "p3ctl: %s: '%s' is not a remote id (a number, as in the configuration)\n", verb,
                     t.id.c_str());
        return std::nullopt;
    }
    return Json{{"id", *id}};
}

enum class Show { status, done, audit, diff, saved, cluster };

int run_admin(const Globals& g, const char* verb, const Json& request, Show show) {
    if (!g.socket.empty() && !g.prefix.empty()) {
        std::fprintf(stderr, "p3ctl: -s and --prefix name the same socket: give one\n");
        return p3::ctl::kBadInput;
    }
    if (g.prefix.find('/') != std::string::npos) {
        std::fprintf(stderr, "p3ctl: --prefix '%s': a name, not a path\n", g.prefix.c_str());
        return p3::ctl::kBadInput;
    }
    const std::string sock = p3::ctl::admin_socket(g.socket, g.prefix);
    const p3::ctl::Outcome o = p3::ctl::admin_call(sock, request);
    if (o.exit != p3::ctl::kOk) {
        std::fprintf(stderr, "p3ctl: %s: %s\n", verb, o.message.c_str());
        return o.exit;
    }
    std::string out;
    if (g.json) out = p3::ctl::render_json(o.result);
    else if (show == Show::status) out = p3::ctl::render_status(o.result);
    else if (show == Show::audit) out = p3::ctl::render_audit(o.result);
    else if (show == Show::diff) out = p3::ctl::render_diff(verb, o.result);
    else if (show == Show::saved) out = p3::ctl::render_saved(o.result);
    else if (show == Show::cluster && std::string_view(verb) == "cluster status") out = p3::ctl::render_cluster_status(o.result);
    else if (show == Show::cluster) out = p3::ctl::render_cluster_role(verb, o.result);
    else out = p3::ctl::render_done(verb, o.result);
    std::fputs(out.c_str(), stdout);
    return 0;
}

Json request(const char* cmd, Json target) {
    Json r = {{"v", 1}, {"cmd", cmd}};
    if (!target.is_null()) r["target"] = std::move(target);
    return r;
}

// ID | --group G [| --all] on a subcommand.
void add_target(CLI::App* sub, Target& t, bool with_all) {
    sub->add_option("ID", t.id, "a remote's id (as in the configuration)")->type_name("");
    sub->add_option("-g,--group", t.group, "every remote of this group")->type_name("NAME");
    if (with_all) sub->add_flag("-a,--all", t.all, "every remote (the default)");
}

// Where CLI11 stores what was typed, and the verb's exit status.
struct Options {
    Globals g;
    int rc = 0;
    std::string file;
    bool markdown = false;
    std::string stats_prefix;
    bool stats_json = false;
    std::vector<std::string> stats_args;
    std::string listen;   // metrics --listen
    Target t;
    bool regenerate = false;
    std::string since;
    std::vector<std::string> settings;   // remote set: KEY=VALUE...
    p3::ctl::InitOptions init;
    p3::ctl::CaptureOptions cap;
};

// init: the installation script (spec §3): asks for what its flags do not give.
void add_init_verb(CLI::App& app, Options& o) {
    auto* init = app.add_subcommand("init", "write a first configuration: asks for the addresses, subnets and "
                                            "credential (or takes them as flags), then checks it");
    auto& i = o.init;
    init->add_option("--role", i.role, "primary or secondary")->type_name("ROLE");
    init->add_option("--wan", i.wan, "WAN address with prefix length (192.0.2.2/24)")->type_name("ADDR/LEN");
    auto* gw = init->add_option("--gateway", i.gateway, "WAN gateway, or none")->type_name("ADDR");
    init->add_option("--lan", i.lan, "LAN address with prefix length (10.2.0.1/24)")->type_name("ADDR/LEN");
    auto* lgw = init->add_option("--lan-gateway", i.lan_gateway, "LAN gateway to --subnets off the LAN link")
                    ->type_name("ADDR");
    init->add_option("--primary", i.primary, "a secondary's primary's address")->type_name("ADDR");
    auto* sn = init->add_option("--subnets", i.subnets, "protected subnets besides the LAN prefix, comma separated, or none")
                   ->type_name("LIST");
    init->add_option("--psk-file", i.psk_file, "a secondary's key with its primary: generate, or an existing file")
        ->type_name("PATH");
    init->add_option("--out", i.out, "directory to write p3d.conf (and secrets/) in (default /etc/p3)")->type_name("DIR");
    init->add_flag("-y,--yes", i.yes, "write without asking for confirmation");
    init->add_flag("--force", i.force, "replace existing files");
    init->callback([&o, gw, lgw, sn] {
        o.init.gateway_given = gw->count() > 0;
        o.init.lan_gateway_given = lgw->count() > 0;
        o.init.subnets_given = sn->count() > 0;
        o.rc = p3::ctl::run_init(o.init, stdin, stdout, stderr);
    });
}

// config check|convert, reasons, stats, metrics: the verbs that need no admin socket
// (metrics asks it when it may).
void add_offline_verbs(CLI::App& app, Options& o) {
    auto* config = app.add_subcommand("config", "check or convert a configuration file");
    config->require_subcommand(1);
    auto* check = config->add_subcommand(
        "check", "validate FILE as p3d would start with it; print the effective configuration (secrets masked), "
                 "or with --json one object: ok and findings");
    check->add_option("FILE", o.file, "the configuration file")->required()->type_name("");
    check->callback([&o] { o.rc = cmd_check(o.file, o.g.json); });
    auto* convert = config->add_subcommand("convert", "print the libconfig equivalent of a legacy (line-format) file");
    convert->add_option("LEGACY", o.file, "the file to convert")->required()->type_name("");
    convert->callback([&o] { o.rc = cmd_convert(o.file); });

    auto* reasons = app.add_subcommand("reasons", "list every reason code with its meaning and what to do");
    reasons->add_flag("--markdown", o.markdown, "as the Markdown table of docs/reason-codes.md");
    reasons->callback([&o] { o.rc = cmd_reasons(o.markdown); });

    auto* stats = app.add_subcommand("stats", "a running p3d's counters (DPDK telemetry), one key=value per line");
    stats->add_option("--prefix", o.stats_prefix, "p3d's EAL --file-prefix (default rte)")->type_name("NAME");
    stats->add_flag("--json", o.stats_json, "as p3d sent them");
    stats->add_option("WHAT", o.stats_args, "totals (default), drops, lcores, ports, sessions, session ID")
        ->type_name("");
    stats->callback([&o] {
        const std::string prefix = !o.stats_prefix.empty() ? o.stats_prefix : !o.g.prefix.empty() ? o.g.prefix : "rte";
        o.rc = cmd_stats(prefix, o.stats_json || o.g.json, o.stats_args);
    });

    auto* metrics = app.add_subcommand("metrics", "every counter of a running p3d as OpenMetrics text (Prometheus), "
                                                  "printed or served over HTTP");
    metrics->add_option("--listen", o.listen, "serve GET /metrics over HTTP on this address and port")
        ->type_name("ADDR:PORT");
    metrics->callback([&o] {
        o.rc = cmd_metrics(o.g, !o.g.prefix.empty() ? o.g.prefix : "rte", o.listen);
    });
}

// A verb over the admin socket that takes a target: status, rekey, keyarray generate.
void add_target_verb(CLI::App* parent, Options& o, const char* name, const char* help, const char* verb,
                     const char* cmd, Show show) {
    auto* sub = parent->add_subcommand(name, help);
    const bool all = show == Show::status;
    add_target(sub, o.t, all);
    sub->callback([&o, verb, cmd, show, all] {
        const auto target = make_target(verb, o.t, all);
        o.rc = target ? run_admin(o.g, verb, request(cmd, *target), show) : 2;
    });
}

void add_admin_verbs(CLI::App& app, Options& o) {
    add_target_verb(&app, o, "status", "sessions: state, peer, uptime, rekeys, key age, lanes, traffic", "status",
                    "status", Show::status);
    add_target_verb(&app, o, "rekey", "rekey now (on a secondary: ask the primary to)", "rekey", "rekey", Show::done);
    auto* keyarray = app.add_subcommand("keyarray", "deliver or flush key arrays");
    keyarray->require_subcommand(1);
    add_target_verb(keyarray, o, "generate", "deliver a fresh key array", "keyarray generate", "keyarray.generate",
                    Show::done);
    auto* flush = keyarray->add_subcommand("flush", "flush the key array, optionally deliver a new one");
    add_target(flush, o.t, false);
    flush->add_flag("--regenerate", o.regenerate, "deliver a fresh array after the flush");
    flush->callback([&o] {
        const auto target = make_target("keyarray flush", o.t, false);
        if (!target) {
            o.rc = 2;
            return;
        }
        Json req = request("keyarray.flush", *target);
        if (o.regenerate) req["args"] = Json{{"regenerate", true}};
        o.rc = run_admin(o.g, "keyarray flush", req, Show::done);
    });

    auto* audit = app.add_subcommand("audit", "the audit file's last lines (at most 1000, newest last)");
    audit->add_option("--since", o.since, "only lines from T on: unix seconds or RFC3339 (2026-12-07T01:00:00Z)")
        ->type_name("T");
    audit->callback([&o] {
        Json req = request("audit", nullptr);
        if (!o.since.empty()) {
            const auto s = p3::ctl::parse_since(o.since);
            if (!s) {
                std::fprintf(stderr, "p3ctl: audit: --since '%s': expected unix seconds or RFC3339 time\n",
                             o.since.c_str());
                o.rc = 2;
                return;
            }
            req["args"] = Json{{"since", *s}};
        }
        o.rc = run_admin(o.g, "audit", req, Show::audit);
    });
}

// shutdown / start: ID, --group NAME or --all, one of them given (never all by default).
void add_state_verb(CLI::App& app, Options& o, const char* name, const char* help) {
    auto* sub = app.add_subcommand(name, help);
    add_target(sub, o.t, true);
    sub->callback([&o, name] {
        if (o.t.id.empty() && o.t.group.empty() && !o.t.all) {
            std::fprintf(stderr, "p3ctl: %s: give a remote ID, --group NAME or --all\n", name);
            o.rc = 2;
            return;
        }
        const auto target = make_target(name, o.t, true);
        o.rc = target ? run_admin(o.g, name, request(name, *target), Show::done) : 2;
    });
}

// The content of a file p3ctl sends to p3d (remote add): the caller's own file, read here
// with the caller's rights; at most what one request line may carry.
std::optional<std::string> read_small_file(const std::string& path) {
    constexpr std::size_t kMax = 48 * 1024;
    std::FILE* f = std::fopen(path.c_str(), "rb");
    if (f == nullptr) {
        std::fprintf(stderr, "p3ctl: remote add: %s: %s\n", path.c_str(), std::strerror(errno));
        return std::nullopt;
    }
    std::string text(kMax + 1, '\0');
    const std::size_t n = std::fread(text.data(), 1, text.size(), f);
    std::fclose(f);
    if (n > kMax) {
        std::fprintf(stderr, "p3ctl: remote add: %s: larger than 48 KiB\n", path.c_str());
        return std::nullopt;
    }
    text.resize(n);
    return text;
}

// remote add FILE | set ID KEY=VALUE... | remove ID; reload; config save [FILE].
void add_change_verbs(CLI::App& app, Options& o) {
    auto* remote = app.add_subcommand("remote", "change the running configuration's remotes");
    remote->require_subcommand(1);
    auto* add = remote->add_subcommand("add", "add the remotes of FILE (libconfig: remotes = ( {...} );)");
    add->add_option("FILE", o.file, "a file with a remotes list")->required()->type_name("");
    add->callback([&o] {
        const auto text = read_small_file(o.file);
        if (!text) {
            o.rc = 2;
            return;
        }
        std::error_code ec;
        const std::string name = std::filesystem::absolute(o.file, ec).string();
        Json req = request("remote.add", nullptr);
        req["args"] = Json{{"text", *text}, {"name", ec ? o.file : name}};
        o.rc = run_admin(o.g, "remote add", req, Show::diff);
    });
    auto* set = remote->add_subcommand("set", "change settings of one remote (KEY= removes an override)");
    set->add_option("ID", o.t.id, "the remote's id")->required()->type_name("");
    set->add_option("SETTING", o.settings, "KEY=VALUE, e.g. rekey_wait=300 subnets=[\"10.3.0.0/24\"]")
        ->required()
        ->type_name("KEY=VALUE");
    set->callback([&o] {
        Json pairs = Json::array();
        for (const auto& kv : o.settings) {
            const auto eq = kv.find('=');
            if (eq == std::string::npos || eq == 0) {
                std::fprintf(stderr, "p3ctl: remote set: '%s': expected KEY=VALUE\n", kv.c_str());
                o.rc = 2;
                return;
            }
            pairs.push_back(Json::array({kv.substr(0, eq), kv.substr(eq + 1)}));
        }
        const auto target = make_target("remote set", o.t, false);
        if (!target) {
            o.rc = 2;
            return;
        }
        Json req = request("remote.set", *target);
        req["args"] = Json{{"settings", std::move(pairs)}};
        o.rc = run_admin(o.g, "remote set", req, Show::diff);
    });
    auto* rm = remote->add_subcommand("remove", "remove one remote: its session ends");
    rm->add_option("ID", o.t.id, "the remote's id")->required()->type_name("");
    rm->callback([&o] {
        const auto target = make_target("remote remove", o.t, false);
        o.rc = target ? run_admin(o.g, "remote remove", request("remote.remove", *target), Show::diff) : 2;
    });

    auto* reload = app.add_subcommand("reload", "re-read p3d's configuration file and apply what changed (= SIGHUP)");
    reload->callback([&o] { o.rc = run_admin(o.g, "reload", request("reload", nullptr), Show::diff); });
}

// capture: a port's packets into a pcapng file, copied inside p3d (docs/capture.md).
void add_capture_verb(CLI::App& app, Options& o) {
    auto* cap = app.add_subcommand("capture", "write a port's packets, as p3d receives and sends them, to a pcapng file");
    auto& c = o.cap;
    cap->add_option("--port", c.port, "lan, wan, or a DPDK port id")->required()->type_name("PORT");
    cap->add_option("--direction", c.direction, "rx, tx or both (default)")
        ->check(CLI::IsMember({"rx", "tx", "both"}))->type_name("DIR");
    cap->add_option("-c,--count", c.count, "stop after this many packets")->check(CLI::Range(std::uint64_t{1}, std::uint64_t{1} << 40))->type_name("N");
    cap->add_option("--duration", c.duration_s, "stop after this many seconds")->check(CLI::Range(1, 604800))->type_name("S");
    cap->add_option("--snaplen", c.snaplen, "bytes kept of each packet (default 9018)")->check(CLI::Range(64, 65535))->type_name("B");
    cap->add_option("-w,--write", c.out, "the pcapng file (made 0600), or - for standard output")->required()->type_name("FILE");
    cap->callback([&o] {
        if (!o.g.socket.empty() && !o.g.prefix.empty()) {
            std::fprintf(stderr, "p3ctl: -s and --prefix name the same socket: give one\n");
            o.rc = p3::ctl::kBadInput;
            return;
        }
        if (o.g.prefix.find('/') != std::string::npos) {
            std::fprintf(stderr, "p3ctl: --prefix '%s': a name, not a path\n", o.g.prefix.c_str());
            o.rc = p3::ctl::kBadInput;
            return;
        }
        o.rc = p3::ctl::run_capture(p3::ctl::admin_socket(o.g.socket, o.g.prefix), o.cap, o.g.json);
    });
}

void add_save_verb(CLI::App& app, Options& o) {
    CLI::App* config = app.get_subcommand("config");
    auto* save = config->add_subcommand("save", "write p3d's running configuration (default: over its file, kept as FILE.prev)");
    save->add_option("FILE", o.file, "where, beside the running file")->type_name("");
    save->callback([&o] {
        Json req = request("config.save", nullptr);
        if (!o.file.empty()) {
            std::error_code ec;
            const auto abs = std::filesystem::absolute(o.file, ec);
            req["args"] = Json{{"path", ec ? o.file : abs.string()}};
        }
        o.rc = run_admin(o.g, "config save", req, Show::saved);
    });
}

// cluster status|promote|demote (docs/cluster.md): promote/demote are what keepalived's
// notify hooks run.
void add_cluster_verbs(CLI::App& app, Options& o) {
    auto* cl = app.add_subcommand("cluster", "the cluster: members and roles; promote or demote this member");
    cl->require_subcommand(1);
    struct V {
        const char* name;
        const char* help;
        const char* verb;
        const char* cmd;
    };
    static const V verbs[] = {
        {"status", "members (role, last heard, replication lag), this member's role, sessions replicated",
         "cluster status", "cluster.status"},
        {"promote", "make this member the primary (keepalived: notify_master)", "cluster promote", "cluster.promote"},
        {"demote", "make this member a backup (keepalived: notify_backup, notify_fault)", "cluster demote",
         "cluster.demote"},
    };
    for (const V& v : verbs)
        cl->add_subcommand(v.name, v.help)->callback([&o, &v] {
            o.rc = run_admin(o.g, v.verb, request(v.cmd, nullptr), Show::cluster);
        });
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"p3ctl: administration of p3d (docs/p3ctl.md)", "p3ctl"};
    app.footer("exit status: 0 ok, 1 p3d not reachable, 2 invalid input, 3 not allowed,\n"
               "4 unknown remote id or group, 5 the command failed");
    app.set_version_flag("-V,--version", std::string("p3ctl ") + P3_VERSION);
    app.require_subcommand(1);
    app.fallthrough();   // the global options may also follow the command
    Options o;
    app.add_option("-s,--socket", o.g.socket, "p3d's admin socket (default /run/p3/p3d.sock)")->type_name("PATH");
    app.add_option("--prefix", o.g.prefix,
                   "p3d's EAL --file-prefix NAME: socket /run/p3/NAME.sock (stats: telemetry prefix)")
        ->type_name("NAME");
    app.add_flag("--json", o.g.json, "print p3d's result as JSON");
    add_offline_verbs(app, o);
    add_admin_verbs(app, o);
    add_state_verb(app, o, "shutdown", "end sessions (LAN hosts get RST / unreachable) until `start`");
    add_state_verb(app, o, "start", "let sessions that were shut down be set up again");
    add_change_verbs(app, o);
    add_save_verb(app, o);
    add_init_verb(app, o);
    add_capture_verb(app, o);
    add_cluster_verbs(app, o);
    if (argc == 2 && std::strcmp(argv[1], "help") == 0) {
        std::fputs(app.help().c_str(), stdout);
        return 0;
    }
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        // --help and --version: 0; every other parse error is invalid input.
        return app.exit(e) == 0 ? 0 : 2;
    } catch (const std::exception& e) {   // not expected: every verb reports its own errors
        std::fprintf(stderr, "p3ctl: %s\n", e.what());
        return p3::ctl::kFailed;
    }
    return o.rc;
}
