// The running configuration of p3d's control plane (see appliance.hpp): `remote add|set|remove`,
// `reload` (and SIGHUP) and `config save`. A change is a whole new Config, validated as a file
// is; only the difference to the running one is applied, and nothing is changed when it is
// refused.
#include <algorithm>
#include <filesystem>

#include "common/log.hpp"
#include "control/appliance.hpp"

namespace p3::control {

namespace {

using nlohmann::json;
using admin::ErrorKind;
using admin::Reply;

json diff_json(const config::Diff& d) {
    json changed = json::array();
    for (const auto& c : d.changed) changed.push_back({{"id", c.id}, {"fields", c.fields}, {"reestablished", c.reestablish}});
    return {{"added", d.added}, {"removed", d.removed}, {"changed", std::move(changed)},
            {"restart_needed", d.restart_needed}};
}

Reply refused(const config::Error& e) {
    return Reply::error(e.reason == Reason::CFG_UNKNOWN_REMOTE ? ErrorKind::unknown_id : ErrorKind::bad_request, e.str());
}

// `config save` writes beside the running file only: p3d runs as root, and the admin group
// must not be able to overwrite any file of the machine with it.
std::optional<std::string> save_path(const std::string& running, const std::string& asked, std::string& why) {
    namespace fs = std::filesystem;
    if (asked.empty()) return running;
    std::error_code ec;
    const fs::path dir = fs::weakly_canonical(fs::absolute(running), ec).parent_path();
    const fs::path want = fs::weakly_canonical(fs::absolute(asked), ec);
    if (ec || want.parent_path() != dir || want.filename().empty()) {
        why = "config save writes only beside the running file, in " + dir.string();
        return std::nullopt;
    }
    if (fs::is_symlink(fs::absolute(asked), ec)) {
        why = asked + " is a symbolic link";
        return std::nullopt;
    }
    return want.string();
}

}  // namespace

admin::Reply Appliance::config_command(const admin::Request& req, const admin::Caller&) {
    switch (req.cmd) {
    case admin::Cmd::reload: {
        auto next = config::load_file(cfg_.source);
        if (auto* e = std::get_if<config::Error>(&next)) return Reply::error(ErrorKind::failed, e->str());
        return apply(std::move(std::get<config::Config>(next)), true);
    }
    case admin::Cmd::remote_add: {
        auto next = config::with_added_remotes(cfg_, req.text, req.name.empty() ? "remote add" : req.name);
        if (auto* e = std::get_if<config::Error>(&next)) return refused(*e);
        return apply(std::move(std::get<config::Config>(next)), false);
    }
    case admin::Cmd::remote_set: {
        auto next = config::with_remote_settings(cfg_, req.target.id, req.settings);
        if (auto* e = std::get_if<config::Error>(&next)) return refused(*e);
        return apply(std::move(std::get<config::Config>(next)), false);
    }
    case admin::Cmd::remote_remove: {
        auto next = config::without_remote(cfg_, req.target.id);
        if (auto* e = std::get_if<config::Error>(&next)) return refused(*e);
        return apply(std::move(std::get<config::Config>(next)), false);
    }
    case admin::Cmd::config_save: {
        std::string why;
        const auto path = save_path(cfg_.source, req.path, why);
        if (!path) return Reply::error(ErrorKind::bad_request, why);
        const bool had = std::filesystem::exists(*path);
        // Static keys are written out: such a file is for its owner only (as p3d requires).
        const bool secrets = std::any_of(cfg_.remotes.begin(), cfg_.remotes.end(),
                                         [](const config::Remote& r) { return r.static_keys.has_value(); });
        std::string text = config::to_libconfig(cfg_, true);
        const bool saved = config::save_file(*path, text, why, secrets);
        secure_wipe(text.data(), text.size());
        if (!saved) return Reply::error(ErrorKind::failed, why);
        P3_LOG_NOTICE(ADMIN_CONFIG_SAVED, "running configuration saved to %s", path->c_str());
        Reply rep;
        rep.result = {{"path", *path}, {"previous", had ? json(*path + ".prev") : json(nullptr)}};
        return rep;
    }
    default: break;
    }
    return Reply::error(ErrorKind::unsupported, "not a configuration command");
}

// SIGHUP: as `p3ctl reload`, audited as the signal.
void Appliance::reload_now() {
    admin::Request req;
    req.cmd = admin::Cmd::reload;
    const Reply rep = config_command(req, admin::Caller{});
    if (!rep.ok) P3_LOG_ERROR(ADMIN_RELOAD_FAILED, "SIGHUP: configuration not reloaded: %s", rep.message.c_str());
    if (audit_) audit_->write({0, "SIGHUP", "reload", "all", rep.ok ? admin::dump(rep.result) : rep.message});
}

// Applies next in place of the running configuration: only what differs.
admin::Reply Appliance::apply(config::Config next, bool reload) {
    const config::Diff d = config::diff(cfg_, next);
    for (std::uint32_t id : d.added) {
        auto it = remotes_.find(RemoteId(id));
        if (it != remotes_.end() && it->second.retiring)
            return Reply::error(ErrorKind::failed, "remote " + std::to_string(id) +
                                                       " is still being removed: try again in a second");
    }
    if (!reload) next.source = cfg_.source;   // a change by command stays a change of the running file
    config::log_warnings(next);
    cfg_ = std::move(next);   // setup_ reads cfg_: from here on the new remotes

    std::vector<std::uint32_t> upsert(d.added);
    for (std::uint32_t id : d.removed) end_session(RemoteId(id), true);
    for (std::uint32_t id : d.added) {
        const config::Remote* rc = find_remote(RemoteId(id));
        if (!rc || !dp_.add_remote(*rc))
            P3_LOG_ERROR(ADMIN_CHANGE_FAILED, "remote %u: no dataplane session for it (see the line above)", id);
        else
            P3_LOG_NOTICE(ADMIN_REMOTE_ADDED, "remote %u added", id);
    }
    const bool primary = cfg_.role == config::Role::primary;
    for (const auto& c : d.changed) {
        const RemoteId id(c.id);
        const config::Remote* rc = find_remote(id);
        if (!rc) continue;
        upsert.push_back(c.id);
        const SessionId sid = dp_.session_of(id);
        if (sid) {
            dp_.set_groups(sid, rc->groups);
            // A secondary routes by what its primary pushed once it has heard it.
            auto rit = remotes_.find(id);
            const bool pushed = !primary && rit != remotes_.end() && !rit->second.pushed.empty();
            if (!pushed) dp_.set_subnets(sid, std::span<const Prefix>(rc->subnets));
        }
        if (c.reestablish) end_session(id, false);
    }
    std::string why;
    if (setup_ && !setup_->update(cfg_, upsert, d.removed, why))
        P3_LOG_ERROR(ADMIN_CHANGE_FAILED, "setup exchange: %s", why.c_str());
    for (const auto& r : d.restart_needed)
        P3_LOG_WARN(ADMIN_RESTART_NEEDED, "%s changed: applied at the next start of p3d only", r.c_str());
    Reply rep;
    rep.result = diff_json(d);
    return rep;
}

// Ends one remote's session with a goodbye (its peer learns at once); then, when the goodbye is
// done, either the remote goes (removed: setup peer and dataplane session) or it may be set up
// again with its new settings.
void Appliance::end_session(RemoteId id, bool then_remove) {
    if (setup_) setup_->esp_close(id.raw());   // an ESP remote's goodbye: our IKE DELETE (no channel)
    auto it = remotes_.find(id);
    channel::Session* s = it == remotes_.end() ? nullptr : it->second.session.get();
    if (!s) {
        if (then_remove) dp_.remove_remote(id);
        if (it != remotes_.end()) remotes_.erase(it);
        return;
    }
    Remote& r = it->second;
    r.retiring = then_remove;
    if (then_remove) {
        s->shutdown(channel::GoodbyeReason::administrator);
        if (s->state() == channel::SessionState::closed)
            loop_.after(Duration::zero(), [this, id] { finish_retire(id); });
        else   // the goodbye's answer or its wait ends it; this is the backstop
            loop_.after(channel::limits::kGoodbyeWait + std::chrono::milliseconds(200),
                        [this, id] { finish_retire(id); });
        return;
    }
    // Re-established: the primary waits for the secondary to set up again (its goodbye says
    // so); a secondary connects again once its session is closed.
    s->shutdown(channel::GoodbyeReason::administrator);
    if (!primary_role() && !shut_.count(id))
        loop_.after(channel::limits::kGoodbyeWait + std::chrono::milliseconds(50), [this, id] {
            if (!shut_.count(id) && find_remote(id) && setup_) setup_->set_enabled(id.raw(), true);
        });
}

void Appliance::finish_retire(RemoteId id) {
    auto it = remotes_.find(id);
    if (it == remotes_.end() || !it->second.retiring) return;
    by_sid_.erase(it->second.sid);
    remotes_.erase(it);   // the channel session, then its link
    shut_.erase(id);
    if (dp_.remove_remote(id)) P3_LOG_NOTICE(ADMIN_REMOTE_REMOVED, "remote %u removed", id.raw());
}

}  // namespace p3::control
