// Run-time changes of the configuration (p3ctl remote add|set|remove, reload, config save):
// a change is a whole new Config built on the loader itself -- the running configuration
// turned back into a Draft, the change read into it by the libconfig reader, and finalize()
// validating the result exactly as it validates a file -- so a change is accepted or refused
// as a whole, with the messages a file would get. diff() says what the control plane must do
// to go from the running configuration to the new one; save_file() writes one atomically.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <new>
#include <stdexcept>

#include "common/config.hpp"
#include "common/config_internal.hpp"

namespace p3::config {

namespace {

using namespace detail;

// The running configuration as a loader would have left it just before finalize(): every
// setting present, each remote's own overrides, lines from the file it came from. Paths are
// already resolved and absolute, so resolving them again changes nothing.
Draft draft_of(const Config& running) {
    Draft d;
    d.cfg = running.clone();
    d.cfg.warnings.clear();
    d.file = running.source;
    d.role_set = true;
    d.local_line = 1;
    d.address_set = true;
    d.wan_address_set = true;
    for (const Remote& r : d.cfg.remotes) {
        RemoteDraft rd;
        rd.overrides = r.overrides;
        rd.subnet_lines.assign(r.subnets.size(), r.line);
        rd.address_line = rd.psk_line = rd.groups_line = r.line;
        d.remotes.push_back(std::move(rd));
    }
    return d;
}

std::optional<std::size_t> index_of(const Config& c, std::uint32_t id) {
    for (std::size_t i = 0; i < c.remotes.size(); ++i)
        if (c.remotes[i].id == id) return i;
    return std::nullopt;
}

Error unknown_remote(const Config& running, std::uint32_t id) {
    std::string ids;
    for (const auto& r : running.remotes) ids += (ids.empty() ? "" : ", ") + std::to_string(r.id);
    return Error{running.source, 0, Reason::CFG_UNKNOWN_REMOTE,
                 "remote " + std::to_string(id) + " is not configured (configured: " +
                     (ids.empty() ? "none" : ids) + ")"};
}

// finalize() on a changed draft. Warnings about what was there before are not repeated: the
// result carries only those of the change (they name another file than the running one).
Result<Config> finish(Draft&& d, const std::string& running_source, const std::string& name) {
    try {
        Config c = finalize(std::move(d));
        std::erase_if(c.warnings, [&](const Error& w) { return w.file == running_source && w.file != name; });
        return c;
    } catch (const LoadError& e) {
        return e.err;
    }
}

// Runs a change, turning every way it can fail into an Error of `name`.
template <class F>
Result<Config> guarded(const std::string& name, F&& f) {
    try {
        return f();
    } catch (const LoadError& e) {
        return e.err;
    } catch (const std::bad_alloc&) {
        return Error{name, 0, Reason::CFG_SYNTAX, "out of memory while reading the configuration"};
    } catch (const std::exception& e) {
        return Error{name, 0, Reason::CFG_SYNTAX, std::string("unexpected setting: ") + e.what()};
    }
}

// ---- remote set: one key of a remote ----

std::string quoted(const std::string& v) {
    std::string out = "\"";
    for (char c : v) {
        if (c == '"' || c == '\\') out += '\\';
        out += c;
    }
    return out + "\"";
}

// A string key takes a bare word as it is; a list key takes bare words separated by commas;
// anything else is libconfig syntax.
std::string value_text(const std::string& key, const std::string& v) {
    const bool literal = !v.empty() && (v[0] == '"' || v[0] == '[' || v[0] == '(');
    if (literal) return v;
    if (key == "address" || key == "identity" || key == "psk_file" || key == "key_type" || key == "wire") return quoted(v);
    if (key == "subnets" || key == "groups") {
        std::string out = "[";
        std::size_t start = 0;
        while (start <= v.size()) {
            std::size_t comma = v.find(',', start);
            if (comma == std::string::npos) comma = v.size();
            std::string one = v.substr(start, comma - start);
            while (!one.empty() && one.front() == ' ') one.erase(0, 1);
            while (!one.empty() && one.back() == ' ') one.pop_back();
            out += (out.size() > 1 ? ", " : " ") + quoted(one);
            start = comma + 1;
        }
        return out + " ]";
    }
    return v;
}

// Forgets what remote (r, rd) said for key: the default, its groups or local apply again.
void unset_remote_key(const std::string& key, Remote& r, RemoteDraft& rd) {
    Group& o = rd.overrides;
    if (key == "rekey_wait") o.rekey_wait.reset();
    else if (key == "rekey_packets") o.rekey_packets.reset();
    else if (key == "array_size") o.array_size.reset();
    else if (key == "data_array_time") o.data_array_time.reset();
    else if (key == "control_array_time") o.control_array_time.reset();
    else if (key == "heartbeat_time") o.heartbeat_time.reset();
    else if (key == "heartbeat_fail") o.heartbeat_fail.reset();
    else if (key == "lanes") o.lanes.reset();
    else if (key == "key_type") o.key_type.reset();
    else if (key == "size_hiding") o.size_hiding.reset();
    else if (key == "rekey_dh") o.rekey_dh.reset();
    else if (key == "ip") rd.ip_version = 0, rd.ip_line = 0;
    else if (key == "address") r.address = IpAddr{}, rd.address_line = 0;
    else if (key == "port") r.port = Remote{}.port;
    else if (key == "identity") r.identity.clear();
    else if (key == "psk_file") r.psk_file.clear(), rd.psk_line = 0;
    else if (key == "wire") r.wire = WireMode::p3, rd.wire_line = 0;
    else if (key == "subnets") r.subnets.clear(), rd.subnet_lines.clear();
    else if (key == "groups") r.groups.clear(), rd.groups_line = 0;
}

// KEY=VALUE on remote i: the remote's own keys only; VALUE replaces what it had for KEY, an
// empty VALUE only removes it. libconfig syntax first; what is not (a bare word) is a
// string, and then the key says whether a string will do.
void set_remote_key(Draft& d, std::size_t i, const std::string& key, const std::string& value,
                    const std::string& label) {
    static constexpr const char* kSettable =
        "ip, address, port, identity, psk_file, wire, subnets, groups, rekey_wait, rekey_packets, array_size, "
        "data_array_time, control_array_time, heartbeat_time, heartbeat_fail, key_type, size_hiding, lanes, rekey_dh";
    if (key == "id" || key == "static_keys")
        fail(label, 0, Reason::CFG_UNKNOWN_KEY,
             "'" + key + "' cannot be set on a running remote (remove it and add it again)");
    bool known = session_number_range(key) || key == "key_type" || key == "size_hiding" || key == "rekey_dh";
    for (const char* k : {"ip", "address", "port", "identity", "psk_file", "wire", "subnets", "groups"}) known |= key == k;
    if (!known)
        fail(label, 0, Reason::CFG_UNKNOWN_KEY, "unknown keyword '" + key + "' for a remote (allowed: " + kSettable + ")");
    unset_remote_key(key, d.cfg.remotes[i], d.remotes[i]);
    if (value.empty()) return;
    if (!read_remote_key(d, i, key, {value_text(key, value), quoted(value)}, label))
        fail(label, 0, Reason::CFG_SYNTAX, key + ": '" + value + "' is not a value (libconfig syntax, or a word)");
}

}  // namespace

Result<Config> with_added_remotes(const Config& running, const std::string& text, const std::string& name) {
    return guarded(name, [&]() -> Result<Config> {
        Draft d = draft_of(running);
        read_remotes_text(d, text, name);
        return finish(std::move(d), running.source, name);
    });
}

Result<Config> with_remote_settings(const Config& running, std::uint32_t id,
                                    const std::vector<std::pair<std::string, std::string>>& kv) {
    const auto i = index_of(running, id);
    if (!i) return unknown_remote(running, id);
    const std::string label = "remote " + std::to_string(id);
    if (kv.empty()) return Error{label, 0, Reason::CFG_MISSING, "nothing to set: give KEY=VALUE"};
    auto r = guarded(label, [&]() -> Result<Config> {
        Draft d = draft_of(running);
        // The changed remote has no line of its own any more: its messages name the change.
        d.remotes[*i].file = label;
        d.cfg.remotes[*i].line = 0;
        for (const auto& [key, value] : kv) set_remote_key(d, *i, key, value, label);
        return finish(std::move(d), running.source, label);
    });
    if (auto* e = std::get_if<Error>(&r); e && e->file == label) {
        e->line = 0;
        const std::string prefix = label + ": ";
        if (e->what.compare(0, prefix.size(), prefix) == 0) e->what.erase(0, prefix.size());
    }
    if (auto* c = std::get_if<Config>(&r))
        for (auto& w : c->warnings)
            if (w.file == label) w.line = 0;
    return r;
}

Result<Config> without_remote(const Config& running, std::uint32_t id) {
    const auto i = index_of(running, id);
    if (!i) return unknown_remote(running, id);
    return guarded(running.source, [&]() -> Result<Config> {
        Draft d = draft_of(running);
        d.cfg.remotes.erase(d.cfg.remotes.begin() + std::ptrdiff_t(*i));
        d.remotes.erase(d.remotes.begin() + std::ptrdiff_t(*i));
        return finish(std::move(d), running.source, running.source);
    });
}

// ---- diff ----------------------------------------------------------------------------

bool Diff::empty() const noexcept {
    return added.empty() && removed.empty() && changed.empty() && restart_needed.empty();
}

namespace {

void restart_fields(const Config& a, const Config& b, std::vector<std::string>& out) {
    auto check = [&](bool same, const char* name) {
        if (!same) out.emplace_back(name);
    };
    const Local &x = a.local, &y = b.local;
    check(a.role == b.role, "role");
    check(x.address == y.address, "local.address");
    check(x.port == y.port, "local.port");
    check(x.nat_port == y.nat_port, "local.nat_port");
    check(x.key_generation == y.key_generation, "local.key_generation");
    check(x.identity == y.identity, "local.identity");
    check(x.certificate == y.certificate, "local.certificate");
    check(x.private_key == y.private_key, "local.private_key");
    check(x.ca == y.ca, "local.ca");
    check(x.state_dir == y.state_dir, "local.state_dir");
    check(x.subnets == y.subnets, "local.subnets");
    check(x.admin == y.admin, "local.admin");
    check(x.cluster_state == y.cluster_state, "local.cluster_state");
    check(x.load_balance == y.load_balance, "local.load_balance");
    check(a.cluster == b.cluster, "cluster");
    const Dataplane &p = a.dataplane, &q = b.dataplane;
    check(p.lan == q.lan, "dataplane.lan");
    check(p.wan == q.wan, "dataplane.wan");
    check(p.replay_window == q.replay_window, "dataplane.replay_window");
    check(p.idle_backoff_us == q.idle_backoff_us, "dataplane.idle_backoff_us");
    check(p.idle_polls == q.idle_polls, "dataplane.idle_polls");
    check(p.mbufs == q.mbufs, "dataplane.mbufs");
    check(p.rx_queues == q.rx_queues, "dataplane.rx_queues");
    check(p.burst == q.burst, "dataplane.burst");
    check(p.spread_lanes == q.spread_lanes, "dataplane.spread_lanes");
}

bool same_static_keys(const Remote& a, const Remote& b) {
    // same_settings on copies that differ in nothing else compares the keys in constant time.
    Remote x = a.clone(), y = b.clone();
    y.address = x.address;
    y.port = x.port;
    y.subnets = x.subnets;
    y.groups = x.groups;
    y.params = x.params;
    y.overrides = x.overrides;
    y.identity = x.identity;
    y.psk_file = x.psk_file;
    y.wire = x.wire;
    return same_settings(x, y);
}

// One session parameter: named when its resolved value or the remote's override differs;
// only a resolved difference needs the session set up again.
template <class P, class O>
void param_field(const char* name, const P& pa, const P& pb, const O& oa, const O& ob, Diff::Changed& c) {
    if (pa == pb && oa == ob) return;
    c.fields.emplace_back(name);
    if (pa != pb) c.reestablish = true;
}

std::optional<Diff::Changed> remote_change(const Remote& a, const Remote& b) {
    Diff::Changed c{a.id, {}, false};
    auto field = [&](bool same, const char* name, bool in_place) {
        if (same) return;
        c.fields.emplace_back(name);
        if (!in_place) c.reestablish = true;
    };
    field(a.address == b.address, "address", false);
    field(a.port == b.port, "port", false);
    field(a.identity == b.identity, "identity", false);
    field(a.psk_file == b.psk_file, "psk_file", true);   // re-read; counts at the next exchange
    field(a.wire == b.wire, "wire", false);              // another wire: set up again
    field(a.subnets == b.subnets, "subnets", true);      // routes swapped without a gap
    field(a.groups == b.groups, "groups", true);         // its resolved params are compared below
    field(same_static_keys(a, b), "static_keys", false);
    const SessionParams &p = a.params, &q = b.params;
    const Group &o = a.overrides, &v = b.overrides;
    param_field("rekey_wait", p.rekey_wait, q.rekey_wait, o.rekey_wait, v.rekey_wait, c);
    param_field("rekey_packets", p.rekey_packets, q.rekey_packets, o.rekey_packets, v.rekey_packets, c);
    param_field("array_size", p.array_size, q.array_size, o.array_size, v.array_size, c);
    param_field("data_array_time", p.data_array_time, q.data_array_time, o.data_array_time, v.data_array_time, c);
    param_field("control_array_time", p.control_array_time, q.control_array_time, o.control_array_time,
                v.control_array_time, c);
    param_field("heartbeat_time", p.heartbeat_time, q.heartbeat_time, o.heartbeat_time, v.heartbeat_time, c);
    param_field("heartbeat_fail", p.heartbeat_fail, q.heartbeat_fail, o.heartbeat_fail, v.heartbeat_fail, c);
    param_field("key_type", p.key_type, q.key_type, o.key_type, v.key_type, c);
    param_field("size_hiding", p.size_hiding, q.size_hiding, o.size_hiding, v.size_hiding, c);
    param_field("lanes", p.lanes, q.lanes, o.lanes, v.lanes, c);
    param_field("rekey_dh", p.rekey_dh, q.rekey_dh, o.rekey_dh, v.rekey_dh, c);
    if (c.fields.empty()) return std::nullopt;
    return c;
}

}  // namespace

Diff diff(const Config& running, const Config& next) {
    Diff d;
    restart_fields(running, next, d.restart_needed);
    for (const Remote& a : running.remotes) {
        const auto j = index_of(next, a.id);
        if (!j) {
            d.removed.push_back(a.id);
            continue;
        }
        if (auto c = remote_change(a, next.remotes[*j])) d.changed.push_back(std::move(*c));
    }
    for (const Remote& b : next.remotes)
        if (!index_of(running, b.id)) d.added.push_back(b.id);
    std::sort(d.added.begin(), d.added.end());
    std::sort(d.removed.begin(), d.removed.end());
    std::sort(d.changed.begin(), d.changed.end(),
              [](const Diff::Changed& x, const Diff::Changed& y) { return x.id < y.id; });
    return d;
}

// ---- save ----------------------------------------------------------------------------

namespace {

std::string errno_str(const std::string& what) { return what + ": " + std::strerror(errno); }

std::string dir_of(const std::string& path) {
    const auto slash = path.rfind('/');
    if (slash == std::string::npos) return ".";
    return slash == 0 ? "/" : path.substr(0, slash);
}

bool write_all(int fd, const char* p, std::size_t n) {
    while (n) {
        const ssize_t w = ::write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            return false;
        }
        p += w;
        n -= std::size_t(w);
    }
    return true;
}

// A new file at path holding text, fsync'd, with mode (and the owner, when we may).
bool write_new(const std::string& path, const std::string& text, mode_t mode, const struct stat* owner,
               std::string& why) {
    ::unlink(path.c_str());  // a stale one from an interrupted save
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        why = errno_str("cannot create " + path);
        return false;
    }
    bool ok = ::fchmod(fd, mode) == 0;
    if (!ok) why = errno_str("cannot set the mode of " + path);
    if (ok && owner && ::fchown(fd, owner->st_uid, owner->st_gid) != 0 && errno != EPERM) {
        why = errno_str("cannot set the owner of " + path);
        ok = false;
    }
    if (ok && !write_all(fd, text.data(), text.size())) why = errno_str("cannot write " + path), ok = false;
    if (ok && ::fsync(fd) != 0) why = errno_str("cannot sync " + path), ok = false;
    if (::close(fd) != 0 && ok) why = errno_str("cannot write " + path), ok = false;
    if (!ok) ::unlink(path.c_str());
    return ok;
}

bool read_all(const std::string& path, std::string& out) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) return false;
    char buf[4096];
    bool ok = true;
    for (ssize_t n; (n = ::read(fd, buf, sizeof buf)) != 0;) {
        if (n < 0) {
            if (errno == EINTR) continue;
            ok = false;
            break;
        }
        out.append(buf, std::size_t(n));
    }
    ::close(fd);
    return ok;
}

// PATH.prev becomes the old PATH: a second name for it (PATH itself never goes away), or,
// where the file system has no hard links, a copy written the same careful way.
bool keep_previous(const std::string& path, const struct stat& st, std::string& why) {
    const std::string prev = path + ".prev";
    if (::unlink(prev.c_str()) != 0 && errno != ENOENT) {
        why = errno_str("cannot replace " + prev);
        return false;
    }
    if (::link(path.c_str(), prev.c_str()) == 0) return true;
    if (errno != EPERM && errno != EXDEV && errno != ENOTSUP && errno != EMLINK) {
        why = errno_str("cannot keep the previous file as " + prev);
        return false;
    }
    std::string old;
    if (!read_all(path, old)) {
        why = errno_str("cannot read " + path);
        return false;
    }
    const bool ok = write_new(prev + ".tmp", old, st.st_mode & 07777, &st, why) &&
                    (::rename((prev + ".tmp").c_str(), prev.c_str()) == 0 || (why = errno_str("cannot rename to " + prev), false));
    secure_wipe(old.data(), old.size());
    return ok;
}

}  // namespace

bool save_file(const std::string& path, const std::string& text, std::string& why, bool owner_only) {
    why.clear();
    if (path.empty()) {
        why = "no file name";
        return false;
    }
    struct stat st{};
    const bool exists = ::lstat(path.c_str(), &st) == 0;
    if (!exists && errno != ENOENT) {
        why = errno_str("cannot look at " + path);
        return false;
    }
    if (exists && S_ISLNK(st.st_mode)) {
        why = path + " is a symbolic link: save to the file it names";
        return false;
    }
    if (exists && !S_ISREG(st.st_mode)) {
        why = path + (S_ISDIR(st.st_mode) ? " is a directory" : " is not a regular file");
        return false;
    }
    const std::string tmp = path + ".tmp";
    const mode_t mode = (exists ? (st.st_mode & 07777) : 0600) & (owner_only ? 07700 : 07777);
    if (!write_new(tmp, text, mode, exists ? &st : nullptr, why)) return false;
    if (exists && !keep_previous(path, st, why)) {
        ::unlink(tmp.c_str());
        return false;
    }
    if (::rename(tmp.c_str(), path.c_str()) != 0) {
        why = errno_str("cannot rename " + tmp + " to " + path);
        ::unlink(tmp.c_str());
        return false;
    }
    // The rename (and PATH.prev) last only once the directory itself is on disk.
    const std::string dir = dir_of(path);
    const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0 || ::fsync(dfd) != 0) {
        why = errno_str("saved, but cannot sync the directory " + dir);
        if (dfd >= 0) ::close(dfd);
        return false;
    }
    ::close(dfd);
    return true;
}

}  // namespace p3::config
