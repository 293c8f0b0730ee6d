// Key files: open without following links, check on the descriptor, read bounded.
#include "common/keyfile.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

namespace p3::keyfile {

File::~File() {
    if (fd_ >= 0) ::close(fd_);
}
File::File(File&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
File& File::operator=(File&& o) noexcept {
    if (this != &o) {
        if (fd_ >= 0) ::close(fd_);
        fd_ = std::exchange(o.fd_, -1);
    }
    return *this;
}

std::FILE* File::release_to_stdio() {
    if (fd_ < 0) return nullptr;
    std::FILE* f = ::fdopen(fd_, "r");
    if (f) fd_ = -1;
    return f;
}

Status open(const std::string& path, File& out, std::string& why) {
    // O_NONBLOCK: a FIFO put in the key's place must not hang the opener; it is refused below.
    const int fd = ::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) {
        const int e = errno;
        if (e == ENOENT) {
            why = path + ": " + std::strerror(e);
            return Status::absent;
        }
        if (e == ELOOP) {
            why = path + ": a symbolic link (key files are opened only as themselves)";
            return Status::link;
        }
        why = path + ": cannot be opened: " + std::strerror(e);
        return Status::unreadable;
    }
    File f;
    f.fd_ = fd;
    struct stat st{};
    if (::fstat(fd, &st) != 0) {
        why = path + ": cannot be examined: " + std::strerror(errno);
        return Status::unreadable;
    }
    if (!S_ISREG(st.st_mode)) {
        why = path + ": not a regular file";
        return Status::not_regular;
    }
    if (st.st_mode & (S_IRWXG | S_IRWXO)) {
        char mode[8];
        std::snprintf(mode, sizeof mode, "%04o", unsigned(st.st_mode & 07777));
        why = path + ": mode " + mode + ", readable by group or others (must be 0600 or 0400)";
        return Status::mode;
    }
    if (st.st_size > off_t(kMaxFile)) {
        why = path + ": larger than " + std::to_string(kMaxFile) + " bytes";
        return Status::too_long;
    }
    // Back to blocking reads for a regular file.
    ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    out = std::move(f);
    return Status::ok;
}

Status read_psk(const std::string& path, SecretBytes& out, std::string& why) {
    File f;
    if (const Status s = open(path, f, why); s != Status::ok) return s;
    SecretBytes buf(kMaxFile + 1);
    std::size_t n = 0;
    while (n < buf.size()) {
        const ssize_t r = ::read(f.fd(), buf.data() + n, buf.size() - n);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            why = path + ": cannot be read: " + std::strerror(errno);
            return Status::unreadable;
        }
        if (r == 0) break;
        n += std::size_t(r);
    }
    if (n > kMaxFile) {
        why = path + ": larger than " + std::to_string(kMaxFile) + " bytes";
        return Status::too_long;
    }
    while (n && (buf.data()[n - 1] == '\n' || buf.data()[n - 1] == '\r')) --n;
    if (n < kMinPsk) {
        why = path + ": pre-shared key of " + std::to_string(n) + " bytes, fewer than " + std::to_string(kMinPsk);
        return Status::too_short;
    }
    out = SecretBytes(std::span<const std::uint8_t>(buf.data(), n));
    return Status::ok;  // buf wipes itself
}

}  // namespace p3::keyfile
