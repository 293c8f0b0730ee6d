// See telemetry_client.hpp.
#include "control/admin/telemetry_client.hpp"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <exception>

#include <nlohmann/json.hpp>

namespace p3::admin {

std::string telemetry_socket(std::string_view prefix) {
    const auto in = [&prefix](const char* dir) {
        return std::string(dir) + "/dpdk/" + std::string(prefix) + "/dpdk_telemetry.v2";
    };
    const auto env = [](const char* name) -> const char* {
        const char* v = std::getenv(name);
        return v != nullptr && *v == '/' ? v : nullptr;
    };
    const char* const dirs[] = {env("RUNTIME_DIRECTORY"), "/run/p3", "/var/run", env("XDG_RUNTIME_DIR"), "/tmp"};
    for (const char* dir : dirs)
        if (dir != nullptr && ::access(in(dir).c_str(), F_OK) == 0) return in(dir);
    return in(dirs[0] != nullptr ? dirs[0] : "/var/run");
}

namespace {

constexpr int kReplyWaitMs = 5000;
constexpr std::size_t kMaxReply = 1u << 20;   // DPDK caps a reply far below this

// One message from a SOCK_SEQPACKET socket, waiting at most kReplyWaitMs.
bool recv_message(int fd, std::string& msg, std::string& error) {
    pollfd p{fd, POLLIN, 0};
    const int r = ::poll(&p, 1, kReplyWaitMs);
    if (r <= 0) {
        error = r == 0 ? "no reply within 5 s" : std::string("poll: ") + std::strerror(errno);
        return false;
    }
    msg.resize(kMaxReply);
    const ssize_t n = ::recv(fd, msg.data(), msg.size(), 0);
    if (n <= 0) {
        error = n == 0 ? "p3d closed the connection" : std::string("recv: ") + std::strerror(errno);
        return false;
    }
    msg.resize(static_cast<std::size_t>(n));
    return true;
}

}  // namespace

namespace {

// A connected telemetry socket past its greeting; -1 (error set) when that fails.
int telemetry_connect(const std::string& socket_path, std::string& error) {
    sockaddr_un sun{};
    if (socket_path.size() >= sizeof sun.sun_path) {
        error = socket_path + ": path too long";
        return -1;
    }
    sun.sun_family = AF_UNIX;
    std::memcpy(sun.sun_path, socket_path.c_str(), socket_path.size() + 1);
    const int fd = ::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        error = std::string("socket: ") + std::strerror(errno);
        return -1;
    }
    std::string greeting;   // {"version": ..., "pid": ..., "max_output_len": ...}
    if (::connect(fd, reinterpret_cast<const sockaddr*>(&sun), sizeof sun) != 0) {
        error = socket_path + ": " + std::strerror(errno);
    } else if (recv_message(fd, greeting, error)) {
        return fd;
    }
    ::close(fd);
    return -1;
}

// One command on a connected socket (DPDK serves any number, one at a time).
bool telemetry_ask(int fd, const std::string& cmd, std::string& reply, std::string& error) {
    if (::send(fd, cmd.data(), cmd.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(cmd.size())) {
        error = std::string("send: ") + std::strerror(errno);
        return false;
    }
    return recv_message(fd, reply, error);
}

}  // namespace

bool telemetry_query(const std::string& socket_path, const std::string& cmd, std::string& reply,
                     std::string& error) {
    const int fd = telemetry_connect(socket_path, error);
    if (fd < 0) return false;
    const bool ok = telemetry_ask(fd, cmd, reply, error);
    ::close(fd);
    return ok;
}

namespace {

// Adds one page's members to all (an object); the page's "next" in next (0: none). false with
// a reason when the page is not {"CMD": {...}} (or {"CMD": null}: a failed command).
bool merge_page(const std::string& top, const std::string& text, nlohmann::ordered_json& all, std::uint64_t& next,
                std::string& error) {
    std::vector<std::pair<std::string, std::string>> check;
    if (!flatten_json(text, check, error)) return false;   // bounded depth and size before a DOM
    nlohmann::ordered_json page = nlohmann::ordered_json::parse(text, nullptr, false);
    next = 0;
    if (!page.is_object() || page.size() != 1 || !page.contains(top)) {
        error = "a reply for another command";
        return false;
    }
    nlohmann::ordered_json& body = page[top];
    if (body.is_null() && all.is_null()) return true;   // the command failed: {"CMD": null} as sent
    if (!body.is_object()) {
        error = "a page that is not an object";
        return false;
    }
    if (!all.is_object()) all = nlohmann::ordered_json::object();
    for (auto& [k, v] : body.items()) {
        if (k != "next") all[k] = std::move(v);
        else if (v.is_number_unsigned()) next = v.get<std::uint64_t>();
        else {
            error = "a \"next\" that is not a number";
            return false;
        }
    }
    return true;
}

}  // namespace

bool telemetry_query_all(const std::string& socket_path, const std::string& cmd, std::string& reply,
                         std::string& error) {
    const int fd = telemetry_connect(socket_path, error);
    if (fd < 0) return false;
    const std::string top = cmd.substr(0, cmd.find(','));
    nlohmann::ordered_json all;   // null until a page has members
    std::uint64_t offset = 0;
    bool ok = false;
    for (unsigned page = 0;; ++page) {
        if (page == kMaxPages) {
            error = "more than " + std::to_string(kMaxPages) + " pages";
            break;
        }
        std::string text;
        const std::string ask = page == 0 ? cmd : top + "," + std::to_string(offset);
        std::uint64_t next = 0;
        if (!telemetry_ask(fd, ask, text, error)) break;
        if (!merge_page(top, text, all, next, error)) {
            error = "reply to " + ask + ": " + error;
            break;
        }
        if (next == 0) {
            ok = true;
            break;
        }
        if (next <= offset) {
            error = "reply to " + ask + ": \"next\" does not move forward";
            break;
        }
        offset = next;
    }
    ::close(fd);
    if (!ok) return false;
    nlohmann::ordered_json out = nlohmann::ordered_json::object();
    out[top] = std::move(all);
    reply = out.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    return true;
}

// ---- JSON flattening --------------------------------------------------------------------------

namespace {

// nlohmann-json's SAX events turned into (path, value) pairs; refuses (returns false, which
// stops the parser) past kMaxJsonDepth open containers or kMaxJsonLeaves values.
class Flattener {
public:
    using json = nlohmann::json;
    explicit Flattener(std::vector<std::pair<std::string, std::string>>& out) : out_(out) {}

    const std::string& why() const { return why_; }

    bool null() { return leaf("null"); }
    bool boolean(bool v) { return leaf(v ? "true" : "false"); }
    bool number_integer(json::number_integer_t v) { return leaf(std::to_string(v)); }
    bool number_unsigned(json::number_unsigned_t v) { return leaf(std::to_string(v)); }
    bool number_float(json::number_float_t, const json::string_t& s) { return leaf(s); }   // as written
    bool string(json::string_t& v) { return leaf(std::move(v)); }
    bool binary(json::binary_t&) { return fail("not a JSON value"); }
    bool start_object(std::size_t) { return open(false); }
    bool start_array(std::size_t) { return open(true); }
    bool end_object() { return close(); }
    bool end_array() { return close(); }
    bool key(json::string_t& k) {
        key_ = std::move(k);
        return true;
    }
    bool parse_error(std::size_t pos, const std::string&, const nlohmann::detail::exception& e) {
        if (why_.empty()) {
            // "[json.exception.parse_error.101] parse error at line 1, column 2: ..." less its tag.
            std::string m = e.what();
            if (const auto b = m.find("] "); b != std::string::npos) m.erase(0, b + 2);
            why_ = m + " (byte " + std::to_string(pos) + ")";
        }
        return false;
    }

private:
    struct Frame {
        std::string path;
        bool array;
        std::size_t next = 0;
    };

    bool fail(const char* why) {
        why_ = why;
        return false;
    }
    // The path of the value now starting (consumes an array index).
    std::string here() {
        if (stack_.empty()) return {};
        Frame& f = stack_.back();
        const std::string part = f.array ? std::to_string(f.next++) : key_;
        return f.path.empty() ? part : f.path + "." + part;
    }
    bool leaf(std::string v) {
        if (out_.size() >= kMaxJsonLeaves) return fail("too many values");
        out_.emplace_back(here(), std::move(v));
        return true;
    }
    bool open(bool array) {
        if (stack_.size() >= kMaxJsonDepth) return fail("nested too deep");
        std::string path = here();
        stack_.push_back(Frame{std::move(path), array});
        return true;
    }
    bool close() {
        stack_.pop_back();
        return true;
    }

    std::vector<std::pair<std::string, std::string>>& out_;
    std::vector<Frame> stack_;
    std::string key_;
    std::string why_;
};

}  // namespace

bool flatten_json(std::string_view text, std::vector<std::pair<std::string, std::string>>& out,
                  std::string& error) {
    out.clear();
    Flattener f(out);
    bool ok = false;
    try {
        ok = nlohmann::json::sax_parse(text.begin(), text.end(), &f);
    } catch (const std::exception& e) {   // not expected: errors come through parse_error
        if (f.why().empty()) error = e.what();
    }
    if (ok) return true;
    if (error.empty()) error = f.why().empty() ? "not a JSON document" : f.why();
    out.clear();
    return false;
}

}  // namespace p3::admin
