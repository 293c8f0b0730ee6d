// The admin socket's commands on p3d's control plane (see appliance.hpp): status from each
// channel Session and the dataplane's published sessions view; rekey and key arrays through
// the Session's administration calls.
#include <algorithm>
#include <cmath>

#include "control/appliance.hpp"
#include "common/log.hpp"
#include "control/channel/limits.hpp"

namespace p3::control {

namespace {

using nlohmann::json;
using admin::Reply;
using admin::ErrorKind;

std::int64_t seconds(Duration d) {
    return std::max<std::int64_t>(0, std::chrono::duration_cast<std::chrono::seconds>(d).count());
}

std::string state_name(const channel::Session* s, bool setup, bool dp_up) {
    if (!s) return dp_up ? "up" : (setup ? "connecting" : "down");
    switch (s->state()) {
    case channel::SessionState::up: return "up";
    case channel::SessionState::idle:
    case channel::SessionState::retrying: return "connecting";
    case channel::SessionState::lost:
    case channel::SessionState::closing:
    case channel::SessionState::closed: break;
    }
    return "down";
}

std::string peer_str(const IpAddr& a, std::uint16_t port) {
    std::string out;
    if (a.is_v6()) out.push_back('[');
    out.append(a.str());
    if (a.is_v6()) out.push_back(']');
    out.push_back(':');
    out.append(std::to_string(port));
    return out;
}

}  // namespace

std::variant<std::vector<const config::Remote*>, Reply> Appliance::targets(const admin::Target& t) const {
    std::vector<const config::Remote*> out;
    switch (t.kind) {
    case admin::Target::Kind::id:
        if (const config::Remote* r = find_remote(RemoteId(t.id))) out.push_back(r);
        else return Reply::error(ErrorKind::unknown_id, "no remote " + std::to_string(t.id));
        break;
    case admin::Target::Kind::group:
        for (const auto& r : cfg_.remotes)
            if (std::find(r.groups.begin(), r.groups.end(), t.group) != r.groups.end()) out.push_back(&r);
        if (out.empty()) return Reply::error(ErrorKind::unknown_id, "no remote in group '" + t.group + "'");
        break;
    case admin::Target::Kind::all:
        for (const auto& r : cfg_.remotes) out.push_back(&r);
        break;
    }
    return out;
}

json Appliance::status_of(const config::Remote& rc, TimePoint now) const {
    const RemoteId id(rc.id);
    auto it = remotes_.find(id);
    const Remote* r = it == remotes_.end() ? nullptr : &it->second;
    const channel::Session* s = r ? r->session.get() : nullptr;
    const dp::SessionsView* v = dp_.sessions_view();
    const dp::SessionView* dv = v ? v->by_remote(id) : nullptr;
    const bool up = s && s->state() == channel::SessionState::up;
    const config::SessionParams& p = s ? s->config().params : rc.params;

    json j;
    j["id"] = rc.id;
    const bool shut = shut_.count(id) != 0;
    j["state"] = shut && !up ? "down" : state_name(s, setup_ && !rc.static_keys, dv && dv->state == dp::SessionState::up);
    j["admin"] = shut ? "down" : "up";
    // An ESP remote has no channel: it is up while its IKE SA and child SA are (the dataplane says so).
    j["wire"] = rc.wire == config::WireMode::esp ? "esp" : "p3";
    j["peer"] = peer_str(dv && (dv->peer.is_v4() || dv->peer.is_v6()) ? dv->peer : rc.address, rc.port);
    j["identity"] = r && !r->identity.empty() ? r->identity : (rc.identity.empty() ? rc.address.str() : rc.identity);
    j["group"] = rc.groups.empty() ? std::string() : rc.groups.front();
    j["uptime_s"] = up ? seconds(now - r->up_since) : 0;
    j["rekeys"] = s ? s->stats().rekeys_done : 0;
    j["rekey_failures"] = s ? s->stats().rekey_attempts_failed : 0;
    j["last_rekey_s"] = r && r->last_rekey ? json(seconds(now - *r->last_rekey)) : json(nullptr);
    j["last_rekey_result"] = r && r->last_rekey ? json(r->last_rekey_ok ? "ok" : "failed") : json(nullptr);
    j["key_age_s"] = up ? seconds(now - r->key_since) : 0;
    j["lanes"] = {{"in", r ? r->lanes_in : 0}, {"out", r ? r->lanes_out : (dv ? dv->tx_lanes : 0)}};
    j["key_type"] = p.key_type == config::KeyType::aes256 ? "AES256" : "AES128";
    j["rekey_dh"] = p.rekey_dh;
    json arrays;
    const channel::ArrayKind kinds[2] = {channel::ArrayKind::data, channel::ArrayKind::control};
    for (int k = 0; k < 2; ++k) {
        const bool have = up && s->array_gen(kinds[k]) != 0;
        arrays[k == 0 ? "data" : "control"] = {
            {"age_s", have && r->array_at[k] ? json(seconds(now - *r->array_at[k])) : json(nullptr)},
            {"unused", have ? s->array_unused(kinds[k]) : 0}};
    }
    j["arrays"] = arrays;
    const auto rtt = up ? s->heartbeat_rtt() : std::nullopt;
    j["heartbeat_rtt_ms"] =
        rtt ? json(std::chrono::duration<double, std::milli>(*rtt).count()) : json(nullptr);
    const dp::SessionTotals t = dv ? dv->totals : dp::SessionTotals{};
    j["peer_moves"] = dv ? dv->peer_moves : 0;   // NAT rebindings followed (docs/dataplane.md)
    j["rx_pkts"] = t.rx_pkts;
    j["tx_pkts"] = t.tx_pkts;
    j["rx_bytes"] = t.rx_bytes;
    j["tx_bytes"] = t.tx_bytes;
    j["drops"] = {{"auth", t.rx_auth},         {"replay", t.rx_replay}, {"old_key", t.rx_old_key},
                  {"policy", t.rx_policy},     {"down", t.tx_down},     {"other", t.rx_dropped + t.tx_dropped}};
    return j;
}

// Counters of the control plane: the setup exchange and every channel session together (the
// dataplane's are in each session's status and in telemetry).
json Appliance::control_status() const {
    json j;
    if (const setup::SetupEngine* e = setup_ ? setup_->engine() : nullptr) {
        const setup::SetupCounters& c = e->counters();
        j["setup"] = {{"received", c.received},        {"sent", c.sent},
                      {"established", c.established},  {"failed", c.failed},
                      {"malformed", c.malformed},      {"retransmits", c.retransmits},
                      {"cookies_sent", c.cookies_sent}, {"half_open_full", c.half_open_full},
                      {"half_open", e->half_open()},   {"exchanges", e->exchanges()}};
    }
    channel::SessionStats t;
    for (const auto& [id, r] : remotes_) {
        if (!r.session) continue;
        const channel::SessionStats& s = r.session->stats();
        t.sent += s.sent;
        t.received += s.received;
        t.retransmits += s.retransmits;
        t.auth_failures += s.auth_failures;
        t.replays += s.replays;
        t.heartbeats_sent += s.heartbeats_sent;
        t.heartbeats_answered += s.heartbeats_answered;
        t.rekeys_done += s.rekeys_done;
        t.rekey_attempts_failed += s.rekey_attempts_failed;
        t.arrays_delivered += s.arrays_delivered;
        t.losses += s.losses;
        t.recoveries += s.recoveries;
    }
    j["channel"] = {{"sent", t.sent},
                    {"received", t.received},
                    {"retransmits", t.retransmits},
                    {"auth_failures", t.auth_failures},
                    {"replays", t.replays},
                    {"heartbeats_sent", t.heartbeats_sent},
                    {"heartbeats_answered", t.heartbeats_answered},
                    {"rekeys", t.rekeys_done},
                    {"rekey_failures", t.rekey_attempts_failed},
                    {"arrays_delivered", t.arrays_delivered},
                    {"losses", t.losses},
                    {"recoveries", t.recoveries},
                    {"unclaimed", control_unclaimed_}};
    json drops = json::object();
    for (const auto& [name, n] : dp_.drops()) drops[name] = n;
    j["drops"] = std::move(drops);
    return j;
}

void Appliance::shut(RemoteId id) {
    shut_.insert(id);
    if (setup_) setup_->esp_close(id.raw());   // an ESP remote's goodbye: our IKE DELETE
    if (setup_) setup_->set_enabled(id.raw(), false);
    auto it = remotes_.find(id);
    if (it != remotes_.end() && it->second.session) it->second.session->shutdown(channel::GoodbyeReason::administrator);
}

void Appliance::unshut(RemoteId id) {
    if (!shut_.erase(id)) return;
    P3_LOG_NOTICE(ADMIN_SESSION_START, "remote %u: may be set up again", id.raw());
    if (setup_) setup_->set_enabled(id.raw(), true);   // a secondary connects now
}

admin::Reply Appliance::session_command(const admin::Request& req, const std::vector<const config::Remote*>& list) {
    const bool primary = primary_role();
    const bool admin_state = req.cmd == admin::Cmd::shutdown || req.cmd == admin::Cmd::start;
    if (!primary && !admin_state && req.cmd != admin::Cmd::rekey)
        return Reply::error(ErrorKind::unsupported, "key arrays are delivered by the primary: run this there");
    json done = json::array();
    for (const config::Remote* rc : list) {
        const RemoteId id(rc->id);
        if (admin_state) {
            // Nothing sets a remote on static keys up again: it is removed instead.
            if (rc->static_keys) continue;
            if (req.cmd == admin::Cmd::shutdown) shut(id);
            else unshut(id);
            done.push_back(rc->id);
            continue;
        }
        if (rc->wire == config::WireMode::esp) {   // its IKE SA rekeys the child SA (CREATE_CHILD_SA)
            if (req.cmd == admin::Cmd::rekey && setup_ && setup_->esp_rekey(rc->id)) done.push_back(rc->id);
            continue;
        }
        auto it = remotes_.find(id);
        channel::Session* s = it == remotes_.end() ? nullptr : it->second.session.get();
        if (!s || s->state() != channel::SessionState::up) continue;
        switch (req.cmd) {
        case admin::Cmd::rekey: s->force_rekey(); break;
        case admin::Cmd::keyarray_generate: s->deliver_arrays(channel::kFlushData | channel::kFlushControl); break;
        case admin::Cmd::keyarray_flush:
            s->flush_arrays(channel::kFlushData | channel::kFlushControl, req.regenerate);
            break;
        default: return Reply::error(ErrorKind::unsupported, "not a session command");
        }
        done.push_back(rc->id);
    }
    if (done.empty() && req.target.kind == admin::Target::Kind::id)
        return Reply::error(ErrorKind::failed,
                            "session " + std::to_string(req.target.id) +
                                (admin_state ? " runs on static keys: nothing sets it up; remove it instead"
                                             : " is not up"));
    Reply rep;
    rep.result = {{"done", std::move(done)}};
    return rep;
}

admin::Reply Appliance::handle(const admin::Request& req, const admin::Caller& who) {
    switch (req.cmd) {
    case admin::Cmd::reload:
    case admin::Cmd::remote_add:
    case admin::Cmd::remote_set:
    case admin::Cmd::remote_remove:
    case admin::Cmd::config_save: return config_command(req, who);
    case admin::Cmd::cluster_status:
    case admin::Cmd::cluster_promote:
    case admin::Cmd::cluster_demote: return cluster_command(req, who);
    case admin::Cmd::capture: return capture_command(req, who);
    default: break;
    }
    auto sel = targets(req.target);
    if (auto* e = std::get_if<Reply>(&sel)) return *e;
    const auto& list = std::get<std::vector<const config::Remote*>>(sel);
    if (req.cmd == admin::Cmd::status) {
        const TimePoint now = loop_.clock().now();
        json sessions = json::array();
        for (const config::Remote* rc : list) sessions.push_back(status_of(*rc, now));
        Reply rep;
        rep.result = {{"role", primary_role() ? "primary" : "secondary"},
                      {"sessions", std::move(sessions)},
                      {"control", control_status()}};
        return rep;
    }
    return session_command(req, list);
}

}  // namespace p3::control
