// The audit file and syslog authpriv (see audit.hpp).
#include "control/admin/audit.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <syslog.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "control/admin/request.hpp"

namespace p3::admin {

namespace {

// Each missing directory of `path`'s parent made 0750. False: one could not be.
bool make_parents(const std::string& path, std::string& why) {
    for (std::size_t i = 1; (i = path.find('/', i)) != std::string::npos; ++i) {
        const std::string dir = path.substr(0, i);
        if (::mkdir(dir.c_str(), 0750) != 0 && errno != EEXIST) {
            why = dir + ": " + std::strerror(errno);
            return false;
        }
    }
    return true;
}

}  // namespace

Audit::~Audit() { close(); }

bool Audit::open(const std::string& path, std::string& why) {
    close();
    path_ = path;
    if (path.empty() || path[0] != '/') {
        why = "'" + path + "' is not an absolute path";
        return false;
    }
    if (!make_parents(path, why)) return false;
    fd_ = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0640);
    if (fd_ < 0) {
        why = path + ": " + std::strerror(errno);
        return false;
    }
    return true;
}

void Audit::close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
}

std::string Audit::rfc3339(std::time_t t) {
    std::tm tm{};
    gmtime_r(&t, &tm);
    char b[32];
    std::strftime(b, sizeof b, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return b;
}

std::optional<std::int64_t> Audit::parse_rfc3339(const std::string& s) {
    std::tm tm{};
    const char* end = strptime(s.c_str(), "%Y-%m-%dT%H:%M:%SZ", &tm);
    if (!end || *end) return std::nullopt;
    return static_cast<std::int64_t>(timegm(&tm));
}

void Audit::write(const AuditEntry& e) {
    // In the documented order: time, uid, user, cmd, target, result.
    const nlohmann::ordered_json j{{"time", rfc3339(wall())}, {"uid", e.uid},       {"user", e.user},
                                   {"cmd", e.cmd},             {"target", e.target}, {"result", e.result}};
    const std::string line = j.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
    if (to_syslog) syslog(LOG_AUTHPRIV | LOG_INFO, "audit %s", line.c_str());
    if (fd_ < 0) return;
    const std::string out = line + "\n";
    // One write per line on an O_APPEND file: lines never interleave. A short write (disk
    // full) leaves a partial line that read() skips.
    const ssize_t n = ::write(fd_, out.data(), out.size());
    (void)n;
}

std::vector<nlohmann::json> Audit::read(std::optional<std::int64_t> since, std::size_t max) const {
    std::vector<nlohmann::json> out;
    if (path_.empty()) return out;
    const int fd = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) return out;
    struct stat st{};
    std::string buf;
    if (::fstat(fd, &st) == 0 && st.st_size > 0) {
        const off_t from = st.st_size > static_cast<off_t>(kReadWindow) ? st.st_size - kReadWindow : 0;
        buf.resize(static_cast<std::size_t>(st.st_size - from));
        std::size_t got = 0;
        while (got < buf.size()) {
            const ssize_t n = ::pread(fd, buf.data() + got, buf.size() - got, from + static_cast<off_t>(got));
            if (n <= 0) break;
            got += static_cast<std::size_t>(n);
        }
        buf.resize(got);
        if (from > 0) {   // the first line is cut: skip it
            const auto nl = buf.find('\n');
            buf.erase(0, nl == std::string::npos ? buf.size() : nl + 1);
        }
    }
    ::close(fd);
    // Newest lines first from the end, then reversed: newest last.
    std::size_t end = buf.size();
    while (end > 0 && out.size() < max) {
        std::size_t start = buf.rfind('\n', end - 1);
        start = start == std::string::npos ? 0 : start + 1;
        const std::string_view line(buf.data() + start, end - start);
        end = start > 0 ? start - 1 : 0;
        if (line.empty()) continue;
        nlohmann::json j = nlohmann::json::parse(line.begin(), line.end(), nullptr, false);
        if (j.is_discarded() || !j.is_object()) continue;
        auto t = j.find("time");
        if (since) {
            if (t == j.end() || !t->is_string()) continue;
            const auto when = parse_rfc3339(t->get<std::string>());
            if (!when || *when < *since) continue;
        }
        out.push_back(std::move(j));
        if (start == 0) break;
    }
    return {out.rbegin(), out.rend()};
}

}  // namespace p3::admin
