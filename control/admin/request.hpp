// One admin socket request line: parsed and validated (docs/administration.md, DESIGN.md
// §Administration). Owns the request model, the error kinds of a response and the response
// lines; nothing here throws (nlohmann-json's non-throwing parse, every type checked first).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

namespace p3::admin {

inline constexpr std::size_t kMaxLine = 64 * 1024;     // bytes of one request line
inline constexpr std::size_t kMaxGroupName = 64;
inline constexpr unsigned kMaxDepth = 8;                // nesting of arrays/objects in a request

enum class Cmd {
    status, rekey, keyarray_generate, keyarray_flush, audit,
    shutdown, start, remote_add, remote_set, remote_remove, reload, config_save,
    cluster_status, cluster_promote, cluster_demote, capture
};
std::string_view cmd_name(Cmd c) noexcept;
// Verbs a viewer may use.
bool read_only(Cmd c) noexcept;

struct Target {
    enum class Kind { all, id, group } kind = Kind::all;
    std::uint32_t id = 0;
    std::string group;
    // For the audit line: "all", "7", "group:NAME".
    std::string str() const;
};

// capture's arguments (docs/capture.md): the port ("lan", "wan" or a DPDK port id), the
// direction ("rx", "tx", "both"), and when to stop (0: not by that).
struct CaptureArgs {
    std::string port;
    std::string direction = "both";
    std::uint64_t count = 0;
    std::uint32_t duration_s = 0;
    std::uint32_t snaplen = 0;           // 0: the default
};
inline constexpr std::uint64_t kMaxCaptureCount = 1ull << 40;
inline constexpr std::uint32_t kMaxCaptureSeconds = 7 * 86400;
inline constexpr std::uint32_t kMaxSnaplen = 65535;

struct Request {
    Cmd cmd = Cmd::status;
    Target target;
    bool target_given = false;               // "target" was in the request
    bool regenerate = false;                 // keyarray.flush
    std::optional<std::int64_t> since;       // audit: UNIX seconds
    std::string text, name;                  // remote.add: the file's content and its name
    std::vector<std::pair<std::string, std::string>> settings;   // remote.set: KEY, VALUE
    std::string path;                        // config.save: where ("" = the running file)
    CaptureArgs capture;                     // capture
    // A file descriptor that came with the request line (SCM_RIGHTS; capture's output file),
    // -1 when none. The server's: valid during handle() only (dup it to keep it).
    int fd = -1;
};
// Limits of what a request may carry (the line is at most kMaxLine anyway).
inline constexpr std::size_t kMaxSettings = 64;
inline constexpr std::size_t kMaxSettingLen = 4096;
inline constexpr std::size_t kMaxPath = 4096;

enum class ErrorKind { denied, unknown_id, bad_request, failed, unsupported };
std::string_view error_name(ErrorKind k) noexcept;

struct Error {
    ErrorKind kind = ErrorKind::bad_request;
    std::string message;
    std::string cmd;    // the command as far as it was read (for the audit line), "" if none
};

// A request line without its newline.
std::variant<Request, Error> parse_request(std::string_view line);

// Response lines, newline included.
std::string ok_line(const nlohmann::json& result);
std::string error_line(ErrorKind k, std::string_view message);
// JSON text that never throws (invalid UTF-8 replaced).
std::string dump(const nlohmann::json& j);

}  // namespace p3::admin
