// Static keys' sequence marks on disk (the contract is in seq_reserve.hpp).
//
// A state file is two lines of text: "p3 sequence mark 1" and the mark in decimal. It must be a
// regular file of ours that no one else can write (a rewound mark would repeat nonces), in a
// directory of ours that no one else can write; anything else refuses the key rather than
// guess where to start.
#include "dataplane/seq_reserve.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "common/log.hpp"
#include "common/slots.hpp"
#include "common/wire_limits.hpp"

namespace p3::dp {

namespace {

constexpr char kHeader[] = "p3 sequence mark 1\n";

std::string errno_str(const char* what, const std::string& path) {
    return std::string(what) + " " + path + ": " + std::strerror(errno);
}

bool write_all(int fd, const std::string& s) {
    std::size_t done = 0;
    while (done < s.size()) {
        const ssize_t n = ::write(fd, s.data() + done, s.size() - done);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return false;
        done += static_cast<std::size_t>(n);
    }
    return true;
}

}  // namespace

std::string SeqReserve::file_name(std::span<const std::uint8_t> key, std::span<const std::uint8_t> salt) {
    static constexpr char kLabel[] = "p3 static sequence v1";
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    EVP_MD_CTX* ctx = EVP_MD_CTX_new();
    const bool ok = ctx && EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr) == 1 &&
                    EVP_DigestUpdate(ctx, kLabel, sizeof kLabel - 1) == 1 &&
                    EVP_DigestUpdate(ctx, key.data(), key.size()) == 1 &&
                    EVP_DigestUpdate(ctx, salt.data(), salt.size()) == 1 && EVP_DigestFinal_ex(ctx, md, &len) == 1;
    EVP_MD_CTX_free(ctx);
    if (!ok || len < 16) return {};
    static constexpr char kHex[] = "0123456789abcdef";
    std::string name = "seq-";
    for (unsigned i = 0; i < 16; ++i) {
        name += kHex[md[i] >> 4];
        name += kHex[md[i] & 15];
    }
    return name;
}

bool SeqReserve::check_dir(std::string& err) {
    struct stat st{};
    if (::lstat(dir_.c_str(), &st) != 0) {
        if (errno != ENOENT) return err = errno_str("cannot stat", dir_), false;
        // Only the last component is made (the package or the administrator owns the parents).
        if (::mkdir(dir_.c_str(), 0700) != 0 && errno != EEXIST) return err = errno_str("cannot create", dir_), false;
        if (::lstat(dir_.c_str(), &st) != 0) return err = errno_str("cannot stat", dir_), false;
    }
    if (!S_ISDIR(st.st_mode)) return err = dir_ + " is not a directory", false;
    if (st.st_uid != ::geteuid()) return err = dir_ + " is not owned by p3d's user", false;
    if (st.st_mode & 022) return err = dir_ + " is writable by group or others (chmod 700)", false;
    return true;
}

std::optional<std::uint64_t> SeqReserve::read_mark(const std::string& name, std::string& err) {
    const std::string path = dir_ + "/" + name;
    const int fd = ::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT) return 0;   // a key never used here: sequence 1 is next
        err = errno_str("cannot open", path);
        return std::nullopt;
    }
    struct stat st{};
    char buf[64] = {};
    ssize_t n = -1;
    if (::fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_uid == ::geteuid() && !(st.st_mode & 022))
        n = ::read(fd, buf, sizeof buf - 1);
    else
        err = path + " is not a regular file of p3d's user, or is writable by group or others";
    ::close(fd);
    if (n < 0) {
        if (err.empty()) err = errno_str("cannot read", path);
        return std::nullopt;
    }
    const std::size_t hl = sizeof kHeader - 1;
    std::uint64_t v = 0;
    bool ok = static_cast<std::size_t>(n) > hl + 1 && std::memcmp(buf, kHeader, hl) == 0 && buf[n - 1] == '\n';
    for (std::size_t i = hl; ok && i + 1 < static_cast<std::size_t>(n); ++i) {
        const char c = buf[i];
        ok = c >= '0' && c <= '9' && v <= (wire::kSeqLast - static_cast<unsigned>(c - '0')) / 10;
        v = v * 10 + static_cast<unsigned>(c - '0');
    }
    if (!ok) {
        err = path + " is malformed (want \"p3 sequence mark 1\" and a number)";
        return std::nullopt;
    }
    return v;
}

bool SeqReserve::write_mark(const std::string& name, std::uint64_t mark, std::string& err) {
    const std::string path = dir_ + "/" + name;
    const std::string tmp = dir_ + "/." + name + ".tmp";
    const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) return err = errno_str("cannot create", tmp), false;
    const std::string text = std::string(kHeader) + std::to_string(mark) + "\n";
    const bool ok = ::fchmod(fd, 0600) == 0 && write_all(fd, text) && ::fsync(fd) == 0;
    if (!ok) err = errno_str("cannot write", tmp);
    if (::close(fd) != 0 && ok) err = errno_str("cannot write", tmp);
    if (!err.empty()) {
        ::unlink(tmp.c_str());
        return false;
    }
    if (::rename(tmp.c_str(), path.c_str()) != 0) {
        err = errno_str("cannot rename to", path);
        ::unlink(tmp.c_str());
        return false;
    }
    // The rename itself must reach the disk before a lane sends under the new mark.
    const int dfd = ::open(dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    const bool synced = dfd >= 0 && ::fsync(dfd) == 0;
    if (!synced) err = errno_str("cannot sync", dir_);
    if (dfd >= 0) ::close(dfd);
    return synced;
}

std::optional<SeqReserve::Lease> SeqReserve::open(std::uint32_t sid, std::uint32_t remote_id,
                                                  std::span<const std::uint8_t> key,
                                                  std::span<const std::uint8_t> salt) {
    std::string err;
    const std::string name = file_name(key, salt);
    if (name.empty()) err = "SHA-256 failed";
    std::optional<std::uint64_t> mark;
    if (err.empty() && check_dir(err)) mark = read_mark(name, err);
    if (mark && *mark > wire::kSeqLast - 2 * block_) {
        err = dir_ + "/" + name + ": the key's sequence space is used up; give the remote new keys";
        mark.reset();
    }
    Lease l;
    if (mark) {
        l.start_after = *mark;
        l.limit = *mark + block_;
        if (!write_mark(name, l.limit, err)) mark.reset();
    }
    if (!mark) {
        P3_LOG_ERROR(SEQ_STATE_UNUSABLE, "remote %u: static keys not started: %s", remote_id, err.c_str());
        return std::nullopt;
    }
    close(sid);
    held_.push_back(Held{sid, remote_id, name, l.limit});
    P3_LOG_INFO(SEQ_RESUMED, "remote %u: static-key lanes start after sequence %llu, reserved up to %llu (%s/%s)",
                remote_id, static_cast<unsigned long long>(l.start_after), static_cast<unsigned long long>(l.limit),
                dir_.c_str(), name.c_str());
    return l;
}

void SeqReserve::close(std::uint32_t sid) {
    held_.erase(std::remove_if(held_.begin(), held_.end(), [sid](const Held& h) { return h.sid == sid; }),
                held_.end());
}

unsigned SeqReserve::poll(wire::SlotTable& slots, std::uint64_t now_ms) {
    unsigned written = 0;
    for (Held& h : held_) {
        std::uint64_t hi = 0;
        for (std::uint32_t l = 0; l < slots.lanes(); ++l)
            if (const wire::TxSlot* s = slots.tx(h.sid, static_cast<std::uint16_t>(l))) hi = std::max(hi, s->last_seq());
        if (hi + block_ / 2 < h.limit) continue;   // the common case: far from the mark
        if (h.failing && now_ms < h.retry_ms) continue;
        if (h.limit > wire::kSeqLast - block_) continue;   // the hard limit stops the lanes
        std::string err;
        const std::uint64_t next = h.limit + block_;
        if (!write_mark(h.name, next, err)) {
            if (!h.failing)
                P3_LOG_WARN(SEQ_RESERVE_FAILED, "remote %u: lanes stop at sequence %llu until the next mark is "
                            "written: %s", h.remote_id, static_cast<unsigned long long>(h.limit), err.c_str());
            h.failing = true;
            h.retry_ms = now_ms + kSeqRetryMs;
            continue;
        }
        if (h.failing)
            P3_LOG_INFO(SEQ_RESUMED, "remote %u: sequence mark written again, lanes reserved up to %llu", h.remote_id,
                        static_cast<unsigned long long>(next));
        h.failing = false;
        h.limit = next;
        ++written;
        for (std::uint32_t l = 0; l < slots.lanes(); ++l)
            if (wire::TxSlot* s = slots.tx(h.sid, static_cast<std::uint16_t>(l))) s->raise_seq_limit(next);
    }
    return written;
}

}  // namespace p3::dp
