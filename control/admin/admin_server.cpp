// The admin socket: clients, line framing, access, dispatch, audit (see admin_server.hpp).
#include "control/admin/admin_server.hpp"

#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <optional>

namespace p3::admin {

namespace {

constexpr std::size_t kReadChunk = 16 * 1024;
constexpr int kMaxGroups = 1024;

std::optional<gid_t> group_id(const std::string& name) {
    if (name.empty()) return std::nullopt;
    group gr{}, *res = nullptr;
    std::vector<char> buf(16384);
    if (getgrnam_r(name.c_str(), &gr, buf.data(), buf.size(), &res) != 0 || !res) return std::nullopt;
    return gr.gr_gid;
}

std::string user_name(std::uint32_t uid, gid_t* primary = nullptr) {
    passwd pw{}, *res = nullptr;
    std::vector<char> buf(16384);
    if (getpwuid_r(uid, &pw, buf.data(), buf.size(), &res) == 0 && res) {
        if (primary) *primary = pw.pw_gid;
        return pw.pw_name;
    }
    return "uid " + std::to_string(uid);
}

// The caller's groups: SO_PEERCRED's gid and the user's supplementary groups.
std::vector<gid_t> groups_of(const Caller& c) {
    std::vector<gid_t> out{c.gid};
    gid_t primary = c.gid;
    passwd pw{}, *res = nullptr;
    std::vector<char> buf(16384);
    if (getpwuid_r(c.uid, &pw, buf.data(), buf.size(), &res) != 0 || !res) return out;
    primary = pw.pw_gid;
    int n = 64;
    std::vector<gid_t> g(static_cast<std::size_t>(n));
    if (getgrouplist(pw.pw_name, primary, g.data(), &n) < 0) {
        if (n <= 0 || n > kMaxGroups) return out;
        g.resize(static_cast<std::size_t>(n));
        if (getgrouplist(pw.pw_name, primary, g.data(), &n) < 0) return out;
    }
    g.resize(static_cast<std::size_t>(n));
    out.insert(out.end(), g.begin(), g.end());
    return out;
}

// Missing directories of the socket's parent made 0750; the ones made here go to `gid`.
bool make_parents(const std::string& path, std::optional<gid_t> gid, std::vector<std::string>& made,
                  std::string& why) {
    for (std::size_t i = 1; (i = path.find('/', i)) != std::string::npos; ++i) {
        const std::string dir = path.substr(0, i);
        if (::mkdir(dir.c_str(), 0750) == 0) {
            made.push_back(dir);
            if (gid && ::chown(dir.c_str(), static_cast<uid_t>(-1), *gid) != 0) {
                why = dir + ": chown: " + std::strerror(errno);
                return false;
            }
        } else if (errno != EEXIST) {
            why = dir + ": " + std::strerror(errno);
            return false;
        }
    }
    return true;
}

bool fill_addr(const std::string& path, sockaddr_un& a) {
    a = {};
    a.sun_family = AF_UNIX;
    if (path.empty() || path.size() >= sizeof a.sun_path) return false;
    std::memcpy(a.sun_path, path.data(), path.size());
    return true;
}

// A POSIX access ACL (the kernel's xattr format, linux/posix_acl_xattr.h) granting `perm` to
// the owner, the owning group and group `gid`, nothing to others: the viewer group reaches
// the socket (and the directory made for it) without joining the admin group.
bool grant_group(const std::string& path, gid_t gid, std::uint16_t perm, std::uint16_t owner_perm) {
    struct Entry {
        std::uint16_t tag, perm;
        std::uint32_t id;
    };
    constexpr std::uint32_t kUndefined = 0xffffffffu;
    const std::uint32_t version = 2;
    const Entry e[] = {{0x01, owner_perm, kUndefined}, {0x04, perm, kUndefined}, {0x08, perm, gid},
                       {0x10, perm, kUndefined},        {0x20, 0, kUndefined}};
    char buf[sizeof version + sizeof e];
    std::memcpy(buf, &version, sizeof version);
    std::memcpy(buf + sizeof version, e, sizeof e);
    return ::setxattr(path.c_str(), "system.posix_acl_access", buf, sizeof buf, 0) == 0;
}

}  // namespace

AccessFn group_access(const std::string& admin_group, const std::string& viewer_group) {
    return [admin_group, viewer_group](const Caller& c) {
        if (c.uid == 0) return Access::admin;
        const auto a = group_id(admin_group), v = group_id(viewer_group);
        const auto gs = groups_of(c);
        auto has = [&](std::optional<gid_t> g) { return g && std::find(gs.begin(), gs.end(), *g) != gs.end(); };
        if (has(a)) return Access::admin;
        if (has(v)) return Access::viewer;
        return Access::none;
    };
}

AdminServer::AdminServer(ServerOptions o, CommandHandler& handler, Audit& audit, const Clock& clock)
    : opt_(std::move(o)), handler_(handler), audit_(audit), clock_(clock) {
    if (!opt_.access) opt_.access = group_access(opt_.admin_group, opt_.viewer_group);
}

AdminServer::~AdminServer() { close(); }

bool AdminServer::open(std::string& why) {
    close();
    sockaddr_un addr;
    if (!fill_addr(opt_.socket_path, addr) || opt_.socket_path[0] != '/') {
        why = "'" + opt_.socket_path + "' is not an absolute path shorter than 108 bytes";
        return false;
    }
    const auto gid = group_id(opt_.admin_group);
    std::vector<std::string> made;
    if (!make_parents(opt_.socket_path, gid, made, why)) return false;
    struct stat st{};
    if (::lstat(opt_.socket_path.c_str(), &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) {
            why = opt_.socket_path + " exists and is not a socket";
            return false;
        }
        // Someone answering there is another p3d; a socket nobody serves is stale.
        // (Non-blocking: a full backlog answers EAGAIN, which is someone serving it too.)
        const int probe = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        const bool live = probe >= 0 && (::connect(probe, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 ||
                                         errno == EAGAIN || errno == EINPROGRESS);
        if (probe >= 0) ::close(probe);
        if (live) {
            why = opt_.socket_path + " is served by another process (another p3d with the same socket?)";
            return false;
        }
        ::unlink(opt_.socket_path.c_str());
    }
    fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd_ < 0 || ::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
        why = opt_.socket_path + ": " + std::strerror(errno);
        if (fd_ >= 0) ::close(fd_);
        fd_ = -1;
        return false;
    }
    if (::chmod(opt_.socket_path.c_str(), 0660) != 0 ||
        (gid && ::chown(opt_.socket_path.c_str(), static_cast<uid_t>(-1), *gid) != 0) || ::listen(fd_, kMaxClients) != 0) {
        why = opt_.socket_path + ": " + std::strerror(errno);
        close();
        return false;
    }
    // The viewer group's way in: an ACL entry on the socket and on the directories made here.
    note_.clear();
    const auto vgid = group_id(opt_.viewer_group);
    if (vgid && vgid != gid) {
        bool ok = grant_group(opt_.socket_path, *vgid, 6, 6);
        for (const auto& d : made) ok = grant_group(d, *vgid, 5, 7) && ok;
        if (!ok)
            note_ = "viewer group '" + opt_.viewer_group + "': no ACL on " + opt_.socket_path + " (" +
                    std::strerror(errno) + "): viewers outside the admin group cannot connect";
    }
    return true;
}

void AdminServer::close() {
    const TimePoint now = clock_.now();
    for (auto& c : clients_) drop(*c, now);
    clients_.clear();
    if (fd_ >= 0) {
        ::close(fd_);
        fd_ = -1;
        ::unlink(opt_.socket_path.c_str());
    }
}

void AdminServer::accept_new(TimePoint now) {
    for (unsigned i = 0; i < kAcceptsPerPass; ++i) {
        const int fd = ::accept4(fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) return;
        if (clients_.size() >= kMaxClients) {
            const std::string l = error_line(ErrorKind::failed, "too many admin clients; try again");
            (void)::send(fd, l.data(), l.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
            ::close(fd);
            ++refused_;
            continue;
        }
        auto c = std::make_unique<Client>();
        c->fd = fd;
        c->last = now;
        ucred cred{};
        socklen_t len = sizeof cred;
        if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0) {
            c->who.uid = cred.uid;
            c->who.gid = cred.gid;
            c->who.pid = cred.pid;
            c->who.user = user_name(cred.uid);
            c->access = opt_.access(c->who);
        } else {   // no identity: no right
            c->who.uid = static_cast<std::uint32_t>(-1);
            c->who.user = "unknown";
        }
        clients_.push_back(std::move(c));
    }
}

// One recvmsg: a file descriptor passed along (capture's output file) is kept for the next
// request; a second one before that is closed (one per request).
bool AdminServer::recv_some(Client& c, char* buf, std::size_t len, ssize_t& n) {
    iovec iov{buf, len};
    alignas(cmsghdr) char ctl[CMSG_SPACE(sizeof(int) * 4)];
    msghdr mh{};
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    mh.msg_control = ctl;
    mh.msg_controllen = sizeof ctl;
    n = ::recvmsg(c.fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    if (n < 0) return false;
    for (cmsghdr* h = CMSG_FIRSTHDR(&mh); h; h = CMSG_NXTHDR(&mh, h)) {
        if (h->cmsg_level != SOL_SOCKET || h->cmsg_type != SCM_RIGHTS) continue;
        const std::size_t k = (h->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (std::size_t i = 0; i < k; ++i) {
            int fd;
            std::memcpy(&fd, CMSG_DATA(h) + i * sizeof(int), sizeof fd);
            if (c.passed_fd < 0) c.passed_fd = fd;
            else ::close(fd);
        }
    }
    return true;
}

bool AdminServer::read_some(Client& c, TimePoint now) {
    char buf[kReadChunk];
    while (!c.eof && c.out.empty() && !c.closing && c.in.size() <= kMaxLine) {
        ssize_t n = 0;
        recv_some(c, buf, sizeof buf, n);
        if (n > 0) {
            c.in.append(buf, static_cast<std::size_t>(n));
            c.last = now;
            continue;
        }
        if (n == 0) {
            c.eof = true;
            break;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK) break;
        if (errno == EINTR) continue;
        return false;
    }
    return true;
}

bool AdminServer::flush(Client& c) {
    while (!c.out.empty()) {
        const ssize_t n = ::send(c.fd, c.out.data(), c.out.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n > 0) {
            c.out.erase(0, static_cast<std::size_t>(n));
            c.last = clock_.now();
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return true;
        if (n < 0 && errno == EINTR) continue;
        return false;
    }
    return true;
}

// Complete lines, one at a time: the next waits until the answer to this one is out.
unsigned AdminServer::serve_lines(Client& c, unsigned budget) {
    unsigned done = 0;
    while (done < budget && c.out.empty() && !c.closing) {
        const auto nl = c.in.find('\n');
        if (nl == std::string::npos && c.in.size() > kMaxLine) {
            c.out = error_line(ErrorKind::bad_request, "request line longer than 64 KiB");
            audit_.write({c.who.uid, c.who.user, "?", "", "bad_request"});
            c.in.clear();
            c.closing = true;
            ++done;
            break;
        }
        std::string line;
        if (nl != std::string::npos) {
            line = c.in.substr(0, nl);
            c.in.erase(0, nl + 1);
        } else if (c.eof && !c.in.empty()) {   // the last line without its newline
            line.swap(c.in);
        } else {
            break;
        }
        if (!line.empty() && line.back() == '\r') line.pop_back();
        if (line.find_first_not_of(" \t") == std::string::npos) continue;   // blank line: nothing asked
        c.out = answer(c, line);
        if (c.passed_fd >= 0) ::close(c.passed_fd);   // the handler dup()ed what it keeps
        c.passed_fd = -1;
        ++done;
        if (c.stream) break;   // nothing more is read from a client whose command runs on
    }
    return done;
}

std::string AdminServer::answer(Client& c, std::string_view line) {
    auto parsed = parse_request(line);
    if (auto* e = std::get_if<Error>(&parsed)) {
        audit_.write({c.who.uid, c.who.user, e->cmd.empty() ? "?" : e->cmd, "", std::string(error_name(e->kind))});
        return error_line(e->kind, e->message);
    }
    Request& r = std::get<Request>(parsed);
    r.fd = c.passed_fd;
    // Commands about the configuration as a whole name no session: "-" (remote.add: its file);
    // a capture names its port.
    const bool whole = r.cmd == Cmd::remote_add || r.cmd == Cmd::reload || r.cmd == Cmd::config_save;
    const std::string cmd(cmd_name(r.cmd));
    const std::string target = r.cmd == Cmd::capture ? "port:" + r.capture.port
                               : !whole              ? r.target.str()
                               : r.cmd == Cmd::remote_add ? "file:" + r.name.substr(0, 256)
                                                          : "-";
    if (c.access == Access::none || (c.access == Access::viewer && !read_only(r.cmd))) {
        audit_.write({c.who.uid, c.who.user, cmd, target, "denied"});
        return error_line(ErrorKind::denied, c.access == Access::none
                                                 ? "user '" + c.who.user + "' is in neither the admin group '" +
                                                       opt_.admin_group + "' nor the viewer group '" +
                                                       opt_.viewer_group + "'"
                                                 : "'" + cmd + "' needs the admin group '" + opt_.admin_group + "'");
    }
    const Reply rep = run(r, c.who);
    audit_.write({c.who.uid, c.who.user, cmd, target, rep.ok ? "ok" : std::string(error_name(rep.kind))});
    if (rep.ok && rep.stream) c.stream = rep.stream;
    return rep.ok ? ok_line(rep.result) : error_line(rep.kind, rep.message);
}

Reply AdminServer::run(const Request& r, const Caller& who) {
    if (r.cmd == Cmd::audit) {
        Reply rep;
        rep.result = nlohmann::json{{"lines", audit_.read(r.since)}};
        return rep;
    }
    return handler_.handle(r, who);
}

// A client whose command runs on: its input is only watched for its end; its stream is
// polled until it gives the last answer, which goes out before the connection closes.
bool AdminServer::serve_stream(Client& c, TimePoint now, unsigned& work) {
    bool gone = !flush(c);
    char buf[4096];
    while (!gone && !c.eof) {
        ssize_t n = 0;
        recv_some(c, buf, sizeof buf, n);
        if (c.passed_fd >= 0) ::close(c.passed_fd);
        c.passed_fd = -1;
        if (n > 0) continue;   // discarded: no request is read while the command runs
        if (n == 0) c.eof = true;
        else if (errno == EINTR) continue;
        else if (errno != EAGAIN && errno != EWOULDBLOCK) gone = true;
        break;
    }
    c.last = now;   // never idle while it runs
    if (c.stream && c.out.empty()) {
        if (auto last = c.stream->poll(now, gone || c.eof, work)) {
            c.out = last->ok ? ok_line(last->result) : error_line(last->kind, last->message);
            c.stream.reset();
            c.closing = true;
        }
    }
    if (gone) return false;
    return flush(c) && (c.stream || !c.out.empty());
}

void AdminServer::drop(Client& c, TimePoint now) {
    if (c.stream) {
        unsigned work = 0;
        if (auto last = c.stream->poll(now, true, work)) {
            const std::string l = last->ok ? ok_line(last->result) : error_line(last->kind, last->message);
            (void)::send(c.fd, l.data(), l.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
        }
        c.stream.reset();
    }
    if (c.passed_fd >= 0) ::close(c.passed_fd);
    c.passed_fd = -1;
    ::close(c.fd);
}

unsigned AdminServer::poll(TimePoint now) {
    if (fd_ < 0) return 0;
    accept_new(now);
    unsigned handled = 0;
    const std::size_t n = clients_.size();
    std::vector<bool> gone(n, false);
    for (std::size_t k = 0; k < n; ++k) {
        const std::size_t i = (next_ + k) % n;
        Client& c = *clients_[i];
        if (c.stream) {
            unsigned work = 0;
            if (!serve_stream(c, now, work)) gone[i] = true;
            handled += work ? 1 : 0;
            continue;
        }
        bool ok = flush(c) && read_some(c, now);
        if (ok) {
            handled += serve_lines(c, kRequestsPerPass > handled ? kRequestsPerPass - handled : 0);
            ok = flush(c);
        }
        const bool finished = c.out.empty() && (c.closing || (c.eof && c.in.find('\n') == std::string::npos && c.in.empty()));
        if (!ok || finished || now - c.last >= kIdle) gone[i] = true;
    }
    next_ = n ? (next_ + 1) % n : 0;
    for (std::size_t i = n; i-- > 0;) {
        if (!gone[i]) continue;
        drop(*clients_[i], now);
        clients_.erase(clients_.begin() + static_cast<std::ptrdiff_t>(i));
    }
    return handled;
}

}  // namespace p3::admin
