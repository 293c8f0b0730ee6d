// Log lines under journald: with stderr being the journal's stream (JOURNAL_STREAM = its
// device:inode), each line is one datagram on journald's native socket (here one the test
// binds, named by P3_JOURNAL_SOCKET) with MESSAGE, PRIORITY, SYSLOG_IDENTIFIER, P3_REASON and
// P3_REMOTE, and nothing on stderr; when the socket is gone, stderr takes over with one
// P3-W0014 line; without JOURNAL_STREAM stderr is as before.
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "common/log.hpp"

using namespace p3;

namespace {

// stderr redirected to a file while the object lives; text() reads what was written.
struct StderrFile {
    std::string path = "/tmp/p3-test-journal-stderr-" + std::to_string(::getpid());
    int saved = ::dup(STDERR_FILENO);
    StderrFile() {
        const int fd = ::open(path.c_str(), O_CREAT | O_TRUNC | O_WRONLY, 0600);
        ::dup2(fd, STDERR_FILENO);
        ::close(fd);
    }
    ~StderrFile() {
        std::fflush(stderr);
        ::dup2(saved, STDERR_FILENO);
        ::close(saved);
        ::unlink(path.c_str());
    }
    std::string stream() const {   // what JOURNAL_STREAM says for this stderr
        struct stat st {};
        ::fstat(STDERR_FILENO, &st);
        return std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino);
    }
    std::string text() const {
        std::fflush(stderr);
        std::string t;
        if (std::FILE* f = std::fopen(path.c_str(), "r")) {
            char buf[4096];
            std::size_t n;
            while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) t.append(buf, n);
            std::fclose(f);
        }
        return t;
    }
};

struct JournalSocket {
    std::string path = "/tmp/p3-test-journal-" + std::to_string(::getpid()) + ".sock";
    int fd = ::socket(AF_UNIX, SOCK_DGRAM, 0);
    JournalSocket() {
        ::unlink(path.c_str());
        sockaddr_un sun{};
        sun.sun_family = AF_UNIX;
        std::strcpy(sun.sun_path, path.c_str());
        REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&sun), sizeof sun) == 0);
        timeval tv{1, 0};
        ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    }
    ~JournalSocket() { close(); }
    void close() {
        if (fd >= 0) ::close(fd);
        fd = -1;
        ::unlink(path.c_str());
    }
    std::string next() {
        char buf[4096];
        const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
        return n > 0 ? std::string(buf, static_cast<std::size_t>(n)) : std::string();
    }
};

log::Options foreground() {
    log::Options o;
    o.ident = "p3d";
    o.to_stderr = true;
    return o;
}

}  // namespace

TEST_CASE("log: under journald each line carries P3_REASON and P3_REMOTE", "[log][journal]") {
    StderrFile err;
    JournalSocket j;
    ::setenv("JOURNAL_STREAM", err.stream().c_str(), 1);
    ::setenv("P3_JOURNAL_SOCKET", j.path.c_str(), 1);
    log::init(foreground());
    P3_LOG_NOTICE(ADMIN_REMOTE_ADDED, "remote %u added", 7u);
    P3_LOG_WARN(PORT_LINK_DOWN, "wan port 1 (net_tap0): link down");
    P3_LOG_ERROR(INTERNAL, "two\nlines about remote 12345678901 and remote 9");
    const std::string a = j.next(), b = j.next(), c = j.next();
    CHECK(a == "MESSAGE=notice P3-I0709: remote 7 added\nPRIORITY=5\nSYSLOG_FACILITY=3\nSYSLOG_IDENTIFIER=p3d\n"
               "P3_REASON=P3-I0709\nP3_REMOTE=7\n");
    CHECK(b.find("P3_REASON=P3-W0214\n") != std::string::npos);
    CHECK(b.find("PRIORITY=4\n") != std::string::npos);
    CHECK(b.find("P3_REMOTE") == std::string::npos);
    // A message with a newline: MESSAGE in the binary form (length, little endian); the first
    // "remote N" that is a remote id (the 11-digit one is not).
    const std::string msg = "error P3-E0004: two\nlines about remote 12345678901 and remote 9";
    std::string want = "MESSAGE\n";
    for (int i = 0; i < 8; ++i) want += static_cast<char>((msg.size() >> (8 * i)) & 0xff);
    want += msg + "\n";
    CHECK(c.rfind(want, 0) == 0);
    CHECK(c.find("\nP3_REMOTE=9\n") != std::string::npos);
    CHECK(err.text().empty());   // not twice
    // journald gone: stderr takes over, saying so once.
    j.close();
    P3_LOG_INFO(PORT_LINK_UP, "lan port 0: link up");
    P3_LOG_INFO(PORT_LINK_UP, "lan port 0: link up again");
    const std::string t = err.text();
    CHECK(t.find("p3d: warning P3-W0014: journald's socket " + j.path) == 0);
    CHECK(t.find("p3d: info P3-I0213: lan port 0: link up\np3d: info P3-I0213: lan port 0: link up again\n") !=
          std::string::npos);
    ::unsetenv("JOURNAL_STREAM");
    ::unsetenv("P3_JOURNAL_SOCKET");
    log::init(log::Options{});
}

TEST_CASE("log: stderr that is not the journal's stream is written as before", "[log][journal]") {
    StderrFile err;
    JournalSocket j;
    ::setenv("JOURNAL_STREAM", "1:2", 1);   // another file's
    ::setenv("P3_JOURNAL_SOCKET", j.path.c_str(), 1);
    log::init(foreground());
    P3_LOG_NOTICE(ADMIN_REMOTE_ADDED, "remote %u added", 7u);
    CHECK(err.text() == "p3d: notice P3-I0709: remote 7 added\n");
    ::unsetenv("JOURNAL_STREAM");
    ::unsetenv("P3_JOURNAL_SOCKET");
    log::init(log::Options{});
}

TEST_CASE("log: the remote a message names", "[log][journal]") {
    CHECK(log::remote_named("remote 7 added") == 7u);
    CHECK(log::remote_named("setup with remote 12 (192.0.2.1): done") == 12u);
    CHECK(log::remote_named("remote 4294967295: x") == 4294967295u);
    CHECK(!log::remote_named("remote 4294967296: x"));
    CHECK(!log::remote_named("remotes 7"));
    CHECK(!log::remote_named("the remote x"));
    CHECK(!log::remote_named("remote 7a"));
    CHECK(!log::remote_named("xremote 7"));
    CHECK(!log::remote_named("session 7"));
    CHECK(!log::remote_named("remote "));
}
