// Opening key files (pre-shared keys, private keys): one place that decides whether a file
// may hold a secret. The file is opened without following a symbolic link (O_NOFOLLOW, so a
// link planted where the key should be is refused, not followed to whatever it names) and
// is checked on the opened descriptor (fstat), never by path: what is checked is what is
// read, with no window between the check and the open for the file to be swapped.
//
// A key file must be a regular file with no permission bit for group or others (0600 or
// 0400). Pre-shared keys are read whole (bounded), trailing line ends dropped.
#pragma once

#include <cstddef>
#include <cstdio>
#include <string>

#include "common/secret.hpp"

namespace p3::keyfile {

// Fewest bytes of secret a pre-shared key may have (the PRF's strength needs at least this
// much; RFC 7296 §2.15 warns that a short key invites a dictionary attack).
inline constexpr std::size_t kMinPsk = 16;
// Most bytes a key file may hold (a PEM private key of RSA-8192 is under 7 KB).
inline constexpr std::size_t kMaxFile = 64 * 1024;

enum class Status {
    ok,
    absent,      // ENOENT: nothing there yet
    link,        // a symbolic link (refused, not followed)
    not_regular, // a directory, FIFO, device, ...
    mode,        // readable or writable by group or others
    unreadable,  // any other open/read error (permission, I/O)
    too_long,    // over kMaxFile
    too_short,   // a pre-shared key under kMinPsk bytes
};

// An opened key file; closes its descriptor.
class File {
public:
    File() = default;
    ~File();
    File(File&& o) noexcept;
    File& operator=(File&& o) noexcept;
    File(const File&) = delete;
    File& operator=(const File&) = delete;
    int fd() const noexcept { return fd_; }
    // The descriptor as a stdio stream (for PEM readers); the File gives it up.
    std::FILE* release_to_stdio();

private:
    friend Status open(const std::string& path, File& out, std::string& why);
    int fd_ = -1;
};

// Opens path as a key file. On failure `why` says what (the path and the problem, never
// any content), and the status tells the caller which reason code applies.
Status open(const std::string& path, File& out, std::string& why);

// Reads a pre-shared key: open() then the whole content, trailing line ends (CR, LF) dropped;
// at least kMinPsk bytes.
Status read_psk(const std::string& path, SecretBytes& out, std::string& why);

}  // namespace p3::keyfile
