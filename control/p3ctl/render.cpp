// See render.hpp.
#include "control/p3ctl/render.hpp"

#include <algorithm>
#include <array>
#include <cstdio>
#include <vector>

namespace p3::ctl {

std::string format_duration(std::int64_t s) {
    if (s < 0) return "-";
    char buf[32];
    if (s < 60) std::snprintf(buf, sizeof buf, "%llds", static_cast<long long>(s));
    else if (s < 3600) std::snprintf(buf, sizeof buf, "%lldm%02llds", static_cast<long long>(s / 60), static_cast<long long>(s % 60));
    else if (s < 86400) std::snprintf(buf, sizeof buf, "%lldh%02lldm", static_cast<long long>(s / 3600), static_cast<long long>(s % 3600 / 60));
    else std::snprintf(buf, sizeof buf, "%lldd%02lldh", static_cast<long long>(s / 86400), static_cast<long long>(s % 86400 / 3600));
    return buf;
}

namespace {

const Json* member(const Json& j, const char* key) {
    if (!j.is_object()) return nullptr;
    const auto it = j.find(key);
    return it == j.end() ? nullptr : &*it;
}

std::string text(const Json* v) {
    if (v == nullptr || v->is_null()) return "-";
    if (v->is_string()) {
        const auto& s = v->get_ref<const std::string&>();
        return s.empty() ? "-" : s;
    }
    if (v->is_number_unsigned()) return std::to_string(v->get<std::uint64_t>());
    if (v->is_number_integer()) return std::to_string(v->get<std::int64_t>());
    if (v->is_boolean()) return v->get<bool>() ? "yes" : "no";
    return v->dump(-1, ' ', false, nlohmann::detail::error_handler_t::replace);
}

std::string text(const Json& j, const char* key) { return text(member(j, key)); }

bool number(const Json* v, std::int64_t& out) {
    if (v == nullptr || !v->is_number_integer()) return false;
    out = v->is_number_unsigned() ? static_cast<std::int64_t>(v->get<std::uint64_t>() & 0x7fffffffffffffffull)
                                  : v->get<std::int64_t>();
    return true;
}

std::string duration(const Json& j, const char* key) {
    std::int64_t s = 0;
    return number(member(j, key), s) ? format_duration(s) : "-";
}

std::string last_rekey(const Json& s) {
    std::int64_t ago = 0;
    if (!number(member(s, "last_rekey_s"), ago)) return "-";
    std::string r = format_duration(ago);
    r.append(" ago");
    const Json* res = member(s, "last_rekey_result");
    if (res != nullptr && res->is_string()) r.append(" ").append(res->get_ref<const std::string&>());
    return r;
}

std::string lanes(const Json& s) {
    const Json* l = member(s, "lanes");
    if (l == nullptr || !l->is_object()) return "-";
    std::string r = text(*l, "in");
    r.append("/").append(text(*l, "out"));
    return r;
}

std::string drops(const Json& s) {
    const Json* d = member(s, "drops");
    if (d == nullptr || !d->is_object()) return "-";
    std::int64_t sum = 0, v = 0;
    bool any = false;
    for (const char* k : {"auth", "replay", "other"})
        if (number(member(*d, k), v)) {
            sum += v;
            any = true;
        }
    return any ? std::to_string(sum) : "-";
}

constexpr std::size_t kColumns = 12;
using Row = std::array<std::string, kColumns>;

}  // namespace

namespace {

// The control plane's counters under the table: setup exchanges and the channels together.
std::string control_line(const Json& result) {
    const Json* c = member(result, "control");
    if (c == nullptr || !c->is_object()) return {};
    std::string out;
    if (const Json* s = member(*c, "setup"); s != nullptr)
        out += "setup: " + text(*s, "established") + " established, " + text(*s, "failed") + " failed, " +
               text(*s, "half_open") + " half-open\n";
    if (const Json* ch = member(*c, "channel"); ch != nullptr)
        out += "control: " + text(*ch, "rekeys") + " rekeys (" + text(*ch, "rekey_failures") + " failed), heartbeats " +
               text(*ch, "heartbeats_answered") + "/" + text(*ch, "heartbeats_sent") + " answered, " +
               text(*ch, "losses") + " losses, " + text(*ch, "recoveries") + " recoveries\n";
    return out;
}

}  // namespace

std::string render_status(const Json& result) {
    std::string out = "role: ";
    out.append(text(result, "role")).append("\n");
    std::vector<Row> rows{{"ID", "STATE", "PEER", "IDENTITY", "UPTIME", "REKEYS", "LAST REKEY", "KEY AGE", "LANES",
                           "RX PKTS", "TX PKTS", "DROPS"}};
    const Json* sessions = member(result, "sessions");
    std::string notes;
    if (sessions != nullptr && sessions->is_array())
        for (const Json& s : *sessions) {
            // A session an administrator shut down is "down" like any other; a note says why.
            if (text(s, "admin") == "down")
                notes += "remote " + text(s, "id") + " is shut down by an administrator (p3ctl start " + text(s, "id") +
                         " lets it up again)\n";
            rows.push_back({text(s, "id"), text(s, "state"), text(s, "peer"), text(s, "identity"), duration(s, "uptime_s"),
                            text(s, "rekeys"), last_rekey(s), duration(s, "key_age_s"), lanes(s), text(s, "rx_pkts"),
                            text(s, "tx_pkts"), drops(s)});
        }
    if (rows.size() == 1) return out + "no sessions\n" + control_line(result);
    std::array<std::size_t, kColumns> width{};
    for (const Row& r : rows)
        for (std::size_t c = 0; c < kColumns; ++c) width[c] = std::max(width[c], r[c].size());
    for (const Row& r : rows) {
        std::string line;
        for (std::size_t c = 0; c < kColumns; ++c) {
            line += r[c];
            if (c + 1 < kColumns) line += std::string(width[c] - r[c].size() + 2, ' ');
        }
        out += line + "\n";
    }
    return out + notes + control_line(result);
}

std::string render_diff(std::string_view what, const Json& result) {
    std::string out;
    auto ids = [&](const char* key, const char* label) {
        const Json* l = member(result, key);
        if (l == nullptr || !l->is_array() || l->empty()) return;
        out.append(what).append(": ").append(label);
        for (const Json& id : *l) out.append(" ").append(text(&id));
        out += "\n";
    };
    ids("added", "added");
    ids("removed", "removed");
    if (const Json* ch = member(result, "changed"); ch != nullptr && ch->is_array())
        for (const Json& c : *ch) {
            out.append(what).append(": changed ").append(text(c, "id")).append(" (");
            if (const Json* f = member(c, "fields"); f != nullptr && f->is_array())
                for (std::size_t i = 0; i < f->size(); ++i) out.append(i ? ", " : "").append(text(&(*f)[i]));
            const Json* re = member(c, "reestablished");
            out.append(re != nullptr && re->is_boolean() && re->get<bool>() ? "): session set up again\n"
                                                                             : "): applied in place\n");
        }
    if (const Json* r = member(result, "restart_needed"); r != nullptr && r->is_array() && !r->empty()) {
        out.append(what).append(": not applied until p3d restarts:");
        for (const Json& n : *r) out.append(" ").append(text(&n));
        out += "\n";
    }
    return out.empty() ? std::string(what) + ": nothing changed\n" : out;
}

std::string render_saved(const Json& result) {
    std::string out = "config save: written to " + text(result, "path");
    const Json* prev = member(result, "previous");
    if (prev != nullptr && prev->is_string()) out += " (previous file kept as " + prev->get<std::string>() + ")";
    return out + "\n";
}

std::string render_done(std::string_view what, const Json& result) {
    std::string out(what);
    const Json* done = member(result, "done");
    if (done == nullptr || !done->is_array() || done->empty()) return out + ": no session\n";
    out += ": done for";
    for (const Json& id : *done) out.append(" ").append(text(&id));
    return out + "\n";
}

std::string render_audit(const Json& result) {
    std::string out;
    const Json* lines = member(result, "lines");
    if (lines == nullptr || !lines->is_array()) return out;
    for (const Json& l : *lines) {
        out.append(text(l, "time")).append("  ").append(text(l, "user")).append("(").append(text(l, "uid"));
        out.append(")  ").append(text(l, "cmd")).append("  ").append(text(l, "target")).append("  ");
        out.append(text(l, "result")).append("\n");
    }
    return out;
}

std::string render_json(const Json& result) {
    return result.dump(-1, ' ', false, nlohmann::detail::error_handler_t::replace) + "\n";
}

}  // namespace p3::ctl
