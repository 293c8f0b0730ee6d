// See telemetry_client.hpp.
#include "control/admin/telemetry_client.hpp"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

namespace p3::admin {

std::string telemetry_socket(std::string_view prefix) {
    const char* rt = std::getenv("RUNTIME_DIRECTORY");
    std::string dir = rt != nullptr && *rt != '\0' ? rt : "/var/run/dpdk";
    return dir + "/" + std::string(prefix) + "/dpdk_telemetry.v2";
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

bool telemetry_query(const std::string& socket_path, const std::string& cmd, std::string& reply,
                     std::string& error) {
    sockaddr_un sun{};
    if (socket_path.size() >= sizeof sun.sun_path) {
        error = socket_path + ": path too long";
        return false;
    }
    sun.sun_family = AF_UNIX;
    std::memcpy(sun.sun_path, socket_path.c_str(), socket_path.size() + 1);
    const int fd = ::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        error = std::string("socket: ") + std::strerror(errno);
        return false;
    }
    bool ok = false;
    std::string greeting;
    if (::connect(fd, reinterpret_cast<const sockaddr*>(&sun), sizeof sun) != 0)
        error = socket_path + ": " + std::strerror(errno);
    else if (recv_message(fd, greeting, error)) {   // {"version": ..., "pid": ..., "max_output_len": ...}
        if (::send(fd, cmd.data(), cmd.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(cmd.size()))
            error = std::string("send: ") + std::strerror(errno);
        else
            ok = recv_message(fd, reply, error);
    }
    ::close(fd);
    return ok;
}

// ---- JSON flattening --------------------------------------------------------------------------

namespace {

class Flattener {
public:
    Flattener(std::string_view t, std::vector<std::pair<std::string, std::string>>& out) : t_(t), out_(out) {}

    bool run(std::string& error) {
        std::string path;
        if (!value(path, 0)) {
            error = why_ + " at byte " + std::to_string(pos_);
            return false;
        }
        skip_ws();
        if (pos_ != t_.size()) {
            error = "text after the JSON value at byte " + std::to_string(pos_);
            return false;
        }
        return true;
    }

private:
    bool fail(const char* why) {
        why_ = why;
        return false;
    }
    void skip_ws() {
        while (pos_ < t_.size() && (t_[pos_] == ' ' || t_[pos_] == '\t' || t_[pos_] == '\n' || t_[pos_] == '\r')) ++pos_;
    }
    bool leaf(const std::string& path, std::string v) {
        if (out_.size() >= kMaxJsonLeaves) return fail("too many values");
        out_.emplace_back(path, std::move(v));
        return true;
    }
    static std::string join(const std::string& path, std::string_view key) {
        return path.empty() ? std::string(key) : path + "." + std::string(key);
    }

    bool value(const std::string& path, unsigned depth) {
        if (depth > kMaxJsonDepth) return fail("nested too deep");
        skip_ws();
        if (pos_ >= t_.size()) return fail("a value expected");
        const char c = t_[pos_];
        if (c == '{') return object(path, depth);
        if (c == '[') return array(path, depth);
        if (c == '"') {
            std::string s;
            return string(s) && leaf(path, std::move(s));
        }
        if (c == '-' || (c >= '0' && c <= '9')) return number(path);
        for (std::string_view word : {"true", "false", "null"})
            if (t_.substr(pos_, word.size()) == word) {
                pos_ += word.size();
                return leaf(path, std::string(word));
            }
        return fail("not a JSON value");
    }

    // After a member or an element: ',' (another follows) or the closing bracket (done).
    bool after_item(char close, const char* at_end, const char* otherwise, bool& done) {
        skip_ws();
        if (pos_ >= t_.size()) return fail(at_end);
        if (t_[pos_] != ',' && t_[pos_] != close) return fail(otherwise);
        done = t_[pos_++] == close;
        return true;
    }

    bool object(const std::string& path, unsigned depth) {
        ++pos_;   // {
        skip_ws();
        if (pos_ < t_.size() && t_[pos_] == '}') {
            ++pos_;
            return true;
        }
        for (;;) {
            skip_ws();
            if (pos_ >= t_.size() || t_[pos_] != '"') return fail("a member name expected");
            std::string key;
            if (!string(key)) return false;
            skip_ws();
            if (pos_ >= t_.size() || t_[pos_] != ':') return fail("':' expected");
            ++pos_;
            if (!value(join(path, key), depth + 1)) return false;
            bool done = false;
            if (!after_item('}', "'}' expected", "',' or '}' expected", done)) return false;
            if (done) return true;
        }
    }

    bool array(const std::string& path, unsigned depth) {
        ++pos_;   // [
        skip_ws();
        if (pos_ < t_.size() && t_[pos_] == ']') {
            ++pos_;
            return true;
        }
        for (std::size_t i = 0;; ++i) {
            if (!value(join(path, std::to_string(i)), depth + 1)) return false;
            bool done = false;
            if (!after_item(']', "']' expected", "',' or ']' expected", done)) return false;
            if (done) return true;
        }
    }

    bool number(const std::string& path) {
        const std::size_t start = pos_;
        if (t_[pos_] == '-') ++pos_;
        auto digits = [&] {
            const std::size_t s = pos_;
            while (pos_ < t_.size() && t_[pos_] >= '0' && t_[pos_] <= '9') ++pos_;
            return pos_ > s;
        };
        if (!digits()) return fail("digits expected");
        if (pos_ < t_.size() && t_[pos_] == '.') {
            ++pos_;
            if (!digits()) return fail("digits expected after '.'");
        }
        if (pos_ < t_.size() && (t_[pos_] == 'e' || t_[pos_] == 'E')) {
            ++pos_;
            if (pos_ < t_.size() && (t_[pos_] == '+' || t_[pos_] == '-')) ++pos_;
            if (!digits()) return fail("digits expected in the exponent");
        }
        return leaf(path, std::string(t_.substr(start, pos_ - start)));
    }

    static int hex(char c) {
        if (c >= '0' && c <= '9') return c - '0';
        if (c >= 'a' && c <= 'f') return c - 'a' + 10;
        if (c >= 'A' && c <= 'F') return c - 'A' + 10;
        return -1;
    }
    static void utf8(std::string& s, unsigned cp) {
        if (cp < 0x80) {
            s += static_cast<char>(cp);
        } else if (cp < 0x800) {
            s += static_cast<char>(0xc0 | (cp >> 6));
            s += static_cast<char>(0x80 | (cp & 0x3f));
        } else {
            s += static_cast<char>(0xe0 | (cp >> 12));
            s += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
            s += static_cast<char>(0x80 | (cp & 0x3f));
        }
    }

    // A string at pos_ (the opening quote), decoded into s. Surrogate pairs are not joined:
    // each half becomes its own three bytes (p3d's replies are ASCII).
    bool string(std::string& s) {
        ++pos_;   // "
        while (pos_ < t_.size()) {
            const char c = t_[pos_++];
            if (c == '"') return true;
            if (static_cast<unsigned char>(c) < 0x20) return fail("control character in a string");
            if (c != '\\') {
                s += c;
                continue;
            }
            if (pos_ >= t_.size()) break;
            const char e = t_[pos_++];
            switch (e) {
                case '"': s += '"'; break;
                case '\\': s += '\\'; break;
                case '/': s += '/'; break;
                case 'b': s += '\b'; break;
                case 'f': s += '\f'; break;
                case 'n': s += '\n'; break;
                case 'r': s += '\r'; break;
                case 't': s += '\t'; break;
                case 'u': {
                    if (t_.size() - pos_ < 4) return fail("short \\u escape");
                    unsigned cp = 0;
                    for (int i = 0; i < 4; ++i) {
                        const int h = hex(t_[pos_++]);
                        if (h < 0) return fail("bad \\u escape");
                        cp = cp << 4 | static_cast<unsigned>(h);
                    }
                    utf8(s, cp);
                    break;
                }
                default: return fail("bad escape");
            }
        }
        return fail("unterminated string");
    }

    std::string_view t_;
    std::vector<std::pair<std::string, std::string>>& out_;
    std::size_t pos_ = 0;
    std::string why_;
};

}  // namespace

bool flatten_json(std::string_view text, std::vector<std::pair<std::string, std::string>>& out,
                  std::string& error) {
    out.clear();
    Flattener f(text, out);
    if (f.run(error)) return true;
    out.clear();
    return false;
}

}  // namespace p3::admin
