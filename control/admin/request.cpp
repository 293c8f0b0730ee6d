// Parsing and validating one admin socket request (see request.hpp).
#include "control/admin/request.hpp"

#include <array>
#include <limits>

namespace p3::admin {

namespace {

using json = nlohmann::json;

struct CmdName {
    std::string_view name;
    Cmd cmd;
};
constexpr std::array<CmdName, 16> kCmds{{{"status", Cmd::status},
                                         {"rekey", Cmd::rekey},
                                         {"keyarray.generate", Cmd::keyarray_generate},
                                         {"keyarray.flush", Cmd::keyarray_flush},
                                         {"audit", Cmd::audit},
                                         {"shutdown", Cmd::shutdown},
                                         {"start", Cmd::start},
                                         {"remote.add", Cmd::remote_add},
                                         {"remote.set", Cmd::remote_set},
                                         {"remote.remove", Cmd::remote_remove},
                                         {"reload", Cmd::reload},
                                         {"config.save", Cmd::config_save},
                                         {"cluster.status", Cmd::cluster_status},
                                         {"cluster.promote", Cmd::cluster_promote},
                                         {"cluster.demote", Cmd::cluster_demote},
                                         {"capture", Cmd::capture}}};
// Verbs of the contract that p3ctl serves itself (from telemetry), not p3d: "unsupported".
constexpr std::array<std::string_view, 2> kLater{"stats", "metrics"};

// Nesting depth of arrays and objects, outside strings; stops counting past the limit.
bool too_deep(std::string_view s) {
    unsigned depth = 0;
    bool in_str = false, esc = false;
    for (char ch : s) {
        if (in_str) {
            if (esc) esc = false;
            else if (ch == '\\') esc = true;
            else if (ch == '"') in_str = false;
            continue;
        }
        if (ch == '"') in_str = true;
        else if (ch == '[' || ch == '{') {
            if (++depth > kMaxDepth) return true;
        } else if ((ch == ']' || ch == '}') && depth) --depth;
    }
    return false;
}

Error bad(std::string m, std::string cmd = {}) { return Error{ErrorKind::bad_request, std::move(m), std::move(cmd)}; }

std::optional<Error> parse_target(const json& t, Request& r, const std::string& cmd) {
    if (!t.is_object() || t.size() != 1) return bad("target: one of {\"id\":N}, {\"group\":\"NAME\"}, {\"all\":true}", cmd);
    const auto first = t.begin();
    const std::string& key = first.key();
    const json& v = first.value();
    if (key == "id") {
        if (!v.is_number_unsigned()) return bad("target.id: a remote id (unsigned integer)", cmd);
        const auto id = v.get<std::uint64_t>();
        if (id == 0 || id > std::numeric_limits<std::uint32_t>::max()) return bad("target.id: out of range", cmd);
        r.target.kind = Target::Kind::id;
        r.target.id = static_cast<std::uint32_t>(id);
    } else if (key == "group") {
        if (!v.is_string()) return bad("target.group: a group name (string)", cmd);
        const auto& g = v.get_ref<const std::string&>();
        if (g.empty() || g.size() > kMaxGroupName) return bad("target.group: 1 to 64 characters", cmd);
        r.target.kind = Target::Kind::group;
        r.target.group = g;
    } else if (key == "all") {
        if (!v.is_boolean() || !v.get<bool>()) return bad("target.all: must be true", cmd);
        r.target.kind = Target::Kind::all;
    } else {
        return bad("target: unknown key (id, group or all)", cmd);
    }
    return std::nullopt;
}

// capture's arguments: each bounded, the words checked here (the port against the dataplane
// by the handler).
std::optional<Error> parse_capture_arg(const std::string& key, const json& v, Request& r, const std::string& cmd) {
    auto uint_in = [&](std::uint64_t lo, std::uint64_t hi, std::uint64_t& out) {
        if (!v.is_number_unsigned() || v.get<std::uint64_t>() < lo || v.get<std::uint64_t>() > hi) return false;
        out = v.get<std::uint64_t>();
        return true;
    };
    CaptureArgs& c = r.capture;
    std::uint64_t n = 0;
    if (key == "port") {
        if (!v.is_string() || v.get_ref<const std::string&>().empty() || v.get_ref<const std::string&>().size() > 16)
            return bad("args.port: lan, wan or a DPDK port id", cmd);
        c.port = v.get<std::string>();
    } else if (key == "direction") {
        if (!v.is_string() || (v != "rx" && v != "tx" && v != "both")) return bad("args.direction: rx, tx or both", cmd);
        c.direction = v.get<std::string>();
    } else if (key == "count") {
        if (!uint_in(1, kMaxCaptureCount, n)) return bad("args.count: 1 to 2^40 packets", cmd);
        c.count = n;
    } else if (key == "duration_s") {
        if (!uint_in(1, kMaxCaptureSeconds, n)) return bad("args.duration_s: 1 to 604800 seconds", cmd);
        c.duration_s = static_cast<std::uint32_t>(n);
    } else if (key == "snaplen") {
        if (!uint_in(64, kMaxSnaplen, n)) return bad("args.snaplen: 64 to 65535 bytes", cmd);
        c.snaplen = static_cast<std::uint32_t>(n);
    } else {
        return bad("args: '" + key.substr(0, 32) + "' is not an argument of capture", cmd);
    }
    return std::nullopt;
}

// remote.set's [["KEY","VALUE"], ...]: at least one, each a pair of bounded strings.
std::optional<Error> parse_settings(const json& v, Request& r, const std::string& cmd) {
    if (!v.is_array() || v.empty() || v.size() > kMaxSettings)
        return bad("args.settings: 1 to 64 [\"KEY\", \"VALUE\"] pairs", cmd);
    for (const json& kv : v) {
        if (!kv.is_array() || kv.size() != 2 || !kv[0].is_string() || !kv[1].is_string())
            return bad("args.settings: each a [\"KEY\", \"VALUE\"] pair of strings", cmd);
        const auto& k = kv[0].get_ref<const std::string&>();
        const auto& val = kv[1].get_ref<const std::string&>();
        if (k.empty() || k.size() > 64 || val.size() > kMaxSettingLen)
            return bad("args.settings: a key of 1 to 64 characters, a value of at most 4096", cmd);
        r.settings.emplace_back(k, val);
    }
    return std::nullopt;
}

std::optional<Error> parse_args(const json& a, Request& r, const std::string& cmd) {
    if (!a.is_object()) return bad("args: an object", cmd);
    for (auto it = a.begin(); it != a.end(); ++it) {
        const std::string& key = it.key();
        const json& v = it.value();
        if (key == "regenerate" && r.cmd == Cmd::keyarray_flush) {
            if (!v.is_boolean()) return bad("args.regenerate: true or false", cmd);
            r.regenerate = v.get<bool>();
        } else if (key == "since" && r.cmd == Cmd::audit) {
            if (!v.is_number_integer() || (v.is_number_unsigned() && v.get<std::uint64_t>() > (1ULL << 40)) ||
                (!v.is_number_unsigned() && v.get<std::int64_t>() < 0))
                return bad("args.since: UNIX seconds (integer >= 0)", cmd);
            r.since = v.get<std::int64_t>();
        } else if ((key == "text" || key == "name") && r.cmd == Cmd::remote_add) {
            if (!v.is_string()) return bad("args." + key + ": a string", cmd);
            (key == "text" ? r.text : r.name) = v.get<std::string>();
            if (key == "name" && r.name.size() > kMaxPath) return bad("args.name: too long", cmd);
        } else if (key == "path" && r.cmd == Cmd::config_save) {
            if (!v.is_string() || v.get_ref<const std::string&>().size() > kMaxPath)
                return bad("args.path: a file name (string)", cmd);
            r.path = v.get<std::string>();
        } else if (key == "settings" && r.cmd == Cmd::remote_set) {
            if (auto e = parse_settings(v, r, cmd)) return *e;
        } else if (r.cmd == Cmd::capture) {
            if (auto e = parse_capture_arg(key, v, r, cmd)) return *e;
        } else {
            return bad("args: '" + key.substr(0, 32) + "' is not an argument of " + cmd, cmd);
        }
    }
    return std::nullopt;
}

// What each command needs beyond its name: a session command that ends or changes something
// names its target (never "all" by default); remote.set/remove one remote; remote.add a file.
std::variant<Request, Error> check_complete(Request& r, const std::string& cmd) {
    switch (r.cmd) {
    case Cmd::shutdown:
    case Cmd::start:
        if (!r.target_given) return bad(cmd + ": a target is needed (an id, a group, or all)", cmd);
        break;
    case Cmd::remote_set:
        if (r.settings.empty()) return bad("remote.set: args.settings missing", cmd);
        [[fallthrough]];
    case Cmd::remote_remove:
        if (r.target.kind != Target::Kind::id) return bad(cmd + ": target is one remote id", cmd);
        break;
    case Cmd::remote_add:
        if (r.text.empty()) return bad("remote.add: args.text (the file's content) missing", cmd);
        if (r.target_given) return bad("remote.add: no target (the ids are in the file)", cmd);
        break;
    case Cmd::reload:
    case Cmd::config_save:
    case Cmd::cluster_status:
    case Cmd::cluster_promote:
    case Cmd::cluster_demote:
        if (r.target_given) return bad(cmd + ": no target", cmd);
        break;
    case Cmd::capture:
        if (r.target_given) return bad("capture: no target (args.port names the port)", cmd);
        if (r.capture.port.empty()) return bad("capture: args.port missing (lan, wan or a DPDK port id)", cmd);
        break;
    default: break;
    }
    return std::move(r);
}

}  // namespace

std::string_view cmd_name(Cmd c) noexcept {
    for (const auto& n : kCmds)
        if (n.cmd == c) return n.name;
    return "?";
}

bool read_only(Cmd c) noexcept { return c == Cmd::status || c == Cmd::audit || c == Cmd::cluster_status; }

std::string Target::str() const {
    switch (kind) {
    case Kind::id: return std::to_string(id);
    case Kind::group: return "group:" + group;
    case Kind::all: break;
    }
    return "all";
}

std::string_view error_name(ErrorKind k) noexcept {
    switch (k) {
    case ErrorKind::denied: return "denied";
    case ErrorKind::unknown_id: return "unknown_id";
    case ErrorKind::bad_request: return "bad_request";
    case ErrorKind::failed: return "failed";
    case ErrorKind::unsupported: return "unsupported";
    }
    return "failed";
}

std::variant<Request, Error> parse_request(std::string_view line) {
    if (line.size() > kMaxLine) return bad("request longer than 64 KiB");
    if (too_deep(line)) return bad("request nested too deeply");
    const json j = json::parse(line.begin(), line.end(), nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded()) return bad("not JSON");
    if (!j.is_object()) return bad("a request is a JSON object");
    std::string cmd;
    if (auto c = j.find("cmd"); c != j.end() && c->is_string()) cmd = c->get<std::string>().substr(0, 32);
    auto v = j.find("v");
    if (v == j.end() || !v->is_number_unsigned() || v->get<std::uint64_t>() != 1) return bad("\"v\" must be 1", cmd);
    auto c = j.find("cmd");
    if (c == j.end() || !c->is_string()) return bad("\"cmd\": a command name (string)", cmd);
    Request r;
    bool known = false;
    for (const auto& n : kCmds)
        if (n.name == c->get_ref<const std::string&>()) {
            r.cmd = n.cmd;
            known = true;
        }
    if (!known) {
        for (auto later : kLater)
            if (later == c->get_ref<const std::string&>())
                return Error{ErrorKind::unsupported, "'" + cmd + "' is not served by this p3d", cmd};
        return bad("unknown command '" + cmd + "'", cmd);
    }
    for (auto it = j.begin(); it != j.end(); ++it) {
        const std::string& key = it.key();
        if (key != "v" && key != "cmd" && key != "target" && key != "args")
            return bad("unknown key '" + key.substr(0, 32) + "' (v, cmd, target, args)", cmd);
    }
    if (auto t = j.find("target"); t != j.end()) {
        if (auto e = parse_target(*t, r, cmd)) return *e;
        r.target_given = true;
    }
    if (auto a = j.find("args"); a != j.end()) {
        if (auto e = parse_args(*a, r, cmd)) return *e;
    }
    return check_complete(r, cmd);
}

std::string dump(const nlohmann::json& j) { return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace); }

// Written out so that the fields come in the contract's order ("v" first).
std::string ok_line(const nlohmann::json& result) { return "{\"v\":1,\"ok\":true,\"result\":" + dump(result) + "}\n"; }

std::string error_line(ErrorKind k, std::string_view message) {
    return "{\"v\":1,\"ok\":false,\"error\":{\"kind\":\"" + std::string(error_name(k)) +
           "\",\"message\":" + dump(json(message)) + "}}\n";
}

}  // namespace p3::admin
