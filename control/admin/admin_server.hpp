// The admin socket of p3d (docs/administration.md): a Unix stream socket served from the
// control thread's pass, non-blocking and bounded. Owns the socket file, the clients and
// their line framing, the caller's identity (SO_PEERCRED; user name and groups through
// getpwuid_r/getgrouplist), the access rule, the dispatch of a request to the
// CommandHandler (or to the audit file for `audit`), and the audit line of every request.
//
// Bounds: at most kMaxClients connected (one more is answered "failed" and closed), a line
// at most kMaxLine bytes (longer: bad_request, then closed), a client idle kIdle closed, at
// most kRequestsPerPass requests handled per poll(), one response at a time per client (a
// client that does not read its answers is not read either).
//
// Who may connect: the socket is 0660 in the admin group, with an ACL entry for the viewer
// group (and the same on the directories made for it).
// Access: uid 0 is admin; a member of the admin group may do everything; of the viewer
// group, only status and audit; anyone else: denied. Decided once per connection.
//
// Life: open() -> poll() each pass -> close() (the socket file unlinked). Control thread only.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "control/admin/audit.hpp"
#include "control/admin/request.hpp"
#include "control/clock.hpp"

namespace p3::admin {

using control::Clock;
using control::Duration;
using control::TimePoint;

inline constexpr unsigned kMaxClients = 16;
inline constexpr unsigned kRequestsPerPass = 8;
inline constexpr std::chrono::seconds kIdle{5};
inline constexpr unsigned kAcceptsPerPass = 8;

enum class Access { none, viewer, admin };

struct Caller {
    std::uint32_t uid = 0, gid = 0;
    std::int32_t pid = 0;
    std::string user;   // name of uid ("uid N" when it has none)
};

// Who may do what: the default looks the caller's groups up (getgrouplist) against the
// configured group names; tests inject their own.
using AccessFn = std::function<Access(const Caller&)>;
AccessFn group_access(const std::string& admin_group, const std::string& viewer_group);

class Stream;

// The answer of a command: result on success, else an error kind and message. A command that
// goes on after this first answer (capture) hands the server a Stream.
struct Reply {
    bool ok = true;
    nlohmann::json result = nlohmann::json::object();
    ErrorKind kind = ErrorKind::failed;
    std::string message;
    std::shared_ptr<Stream> stream;
    static Reply error(ErrorKind k, std::string m) { return Reply{false, nullptr, k, std::move(m), nullptr}; }
};

// A command that runs on after its first answer (capture): the server keeps the client's
// connection open past the idle limit, reads no further request from it (what it sends is
// discarded; its end of input means "stop"), and polls the stream every pass until it gives
// its last answer, which is sent as a second response line before the connection closes.
class Stream {
public:
    virtual ~Stream() = default;
    // client_gone: the client closed its end, or the server is closing; the stream must then
    // end and give its last answer. Returns it when the stream is over, else nullopt.
    // work: what it did this pass (nonzero keeps the control thread from sleeping).
    virtual std::optional<Reply> poll(TimePoint now, bool client_gone, unsigned& work) = 0;
};

class CommandHandler {
public:
    virtual ~CommandHandler() = default;
    // Every command but audit; the caller has the right already. r.fd: a file descriptor
    // the request came with (-1: none), the server's (closed after the answer).
    virtual Reply handle(const Request& r, const Caller& who) = 0;
};

struct ServerOptions {
    std::string socket_path;
    std::string admin_group = "p3";      // socket's group when it exists
    std::string viewer_group = "p3view";
    AccessFn access;                     // empty: group_access(admin_group, viewer_group)
};

class AdminServer {
public:
    // handler, audit and clock must outlive this object.
    AdminServer(ServerOptions o, CommandHandler& handler, Audit& audit, const Clock& clock);
    ~AdminServer();
    AdminServer(const AdminServer&) = delete;
    AdminServer& operator=(const AdminServer&) = delete;

    // Creates the socket (directories 0750, stale socket replaced, 0660, group; an ACL entry
    // for the viewer group when it exists). false: why. True with note() set: the viewer
    // group could not be given access (no ACL support).
    bool open(std::string& why);
    const std::string& note() const noexcept { return note_; }
    // Accepts, reads, answers within the bounds. Returns requests handled.
    unsigned poll(TimePoint now);
    unsigned poll() { return poll(clock_.now()); }
    // Every client closed, the socket file unlinked.
    void close();

    std::size_t clients() const noexcept { return clients_.size(); }
    std::uint64_t refused_clients() const noexcept { return refused_; }

private:
    struct Client {
        int fd = -1;
        Caller who;
        Access access = Access::none;
        std::string in, out;
        TimePoint last;
        bool eof = false, closing = false;
        int passed_fd = -1;                 // came with its last read (SCM_RIGHTS)
        std::shared_ptr<Stream> stream;     // a command running on (capture)
    };

    void accept_new(TimePoint now);
    bool read_some(Client& c, TimePoint now);   // false: the client is gone
    bool recv_some(Client& c, char* buf, std::size_t len, ssize_t& n);   // recvmsg, keeps a passed fd
    bool serve_stream(Client& c, TimePoint now, unsigned& work);   // false: the client is done
    void drop(Client& c, TimePoint now);        // its stream ended, its fds closed
    bool flush(Client& c);                      // false: the client is gone
    unsigned serve_lines(Client& c, unsigned budget);
    std::string answer(Client& c, std::string_view line);
    Reply run(const Request& r, const Caller& who);

    ServerOptions opt_;
    CommandHandler& handler_;
    Audit& audit_;
    const Clock& clock_;
    int fd_ = -1;
    std::vector<std::unique_ptr<Client>> clients_;
    std::uint64_t refused_ = 0;
    std::size_t next_ = 0;
    std::string note_;   // round robin start
};

}  // namespace p3::admin
