// The audit trail: one JSON line per admin command (accepted or refused) and per session
// event, appended to the audit file (opened O_APPEND|O_CREAT, 0640, never truncated; its
// directory made 0750 when missing) and sent to syslog (LOG_AUTHPRIV | LOG_INFO).
//
//   {"time":"2026-12-07T00:40:12Z","uid":1000,"user":"alice","cmd":"rekey","target":"7","result":"ok"}
//   {"time":"...","uid":0,"user":"p3d","cmd":"event:up","target":"7","result":"ok"}
//
// Reading back (the `audit` verb): the newest lines of the file's last kReadWindow bytes, at
// most kMaxRead, optionally those at or after a UNIX time. Control thread only.
#pragma once

#include <cstdint>
#include <ctime>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace p3::admin {

inline constexpr std::size_t kMaxRead = 1000;
inline constexpr std::size_t kReadWindow = 1024 * 1024;

struct AuditEntry {
    std::uint32_t uid = 0;
    std::string user;
    std::string cmd;
    std::string target;
    std::string result;
};

class Audit {
public:
    Audit() = default;
    ~Audit();
    Audit(const Audit&) = delete;
    Audit& operator=(const Audit&) = delete;

    // false: why says what failed (nothing is written to the file then; syslog still is).
    bool open(const std::string& path, std::string& why);
    void close();
    bool is_open() const noexcept { return fd_ >= 0; }
    const std::string& path() const noexcept { return path_; }

    void write(const AuditEntry& e);
    // The audit objects of the file, newest last (bad lines skipped).
    std::vector<nlohmann::json> read(std::optional<std::int64_t> since, std::size_t max = kMaxRead) const;

    // Tests: the wall clock (seconds) and whether lines also go to syslog.
    std::function<std::time_t()> wall = [] { return std::time(nullptr); };
    bool to_syslog = true;

    static std::string rfc3339(std::time_t t);
    static std::optional<std::int64_t> parse_rfc3339(const std::string& s);

private:
    int fd_ = -1;
    std::string path_;
};

}  // namespace p3::admin
