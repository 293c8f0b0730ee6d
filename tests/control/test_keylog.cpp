// The insecure key log (control/keylog): nothing happens while it is off; on, the file is
// created owner-only, each installed key is one line of the documented format, lines are
// appended, the start is announced loudly (P3-W0009 naming the file), and a file open to
// group or others, or a symbolic link, is refused.
#include <catch2/catch.hpp>

#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <regex>
#include <string>
#include <vector>

#include "common/log.hpp"
#include "control/keylog.hpp"

using namespace p3;
namespace keylog = p3::control::keylog;

namespace {

struct Dir {
    std::string path;
    Dir() {
        char t[] = "/tmp/p3-keylog-test-XXXXXX";
        path = ::mkdtemp(t);
    }
    ~Dir() { std::system(("rm -rf '" + path + "'").c_str()); }
};

std::vector<std::string> lines_of(const std::string& file) {
    std::ifstream in(file);
    std::vector<std::string> v;
    for (std::string l; std::getline(in, l);) v.push_back(l);
    return v;
}

struct Captured {
    std::vector<std::string> lines;
    std::vector<Reason> reasons;
};
void capture(log::Level, Reason r, std::string_view line, void* ctx) {
    auto* c = static_cast<Captured*>(ctx);
    c->lines.emplace_back(line);
    c->reasons.push_back(r);
}

const std::uint8_t kKey[16] = {0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77,
                               0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff};
const std::uint8_t kSalt[4] = {0x0a, 0x0b, 0x0c, 0x0d};

}  // namespace

TEST_CASE("keylog: off by default, write is a no-op") {
    keylog::close();
    CHECK_FALSE(keylog::enabled());
    keylog::write(1, 2, keylog::Dir::rx, 0x100, 1, kKey, kSalt);   // nothing to write to, nothing fails
    CHECK_FALSE(keylog::enabled());
}

TEST_CASE("keylog: on, the file is 0600, one line per key in the documented format, appended, announced") {
    Dir d;
    const std::string file = d.path + "/keys.log";
    Captured cap;
    log::set_sink(capture, &cap);
    std::string why;
    REQUIRE(keylog::open(file, why));
    log::set_sink(nullptr, nullptr);
    CHECK(keylog::enabled());
    REQUIRE(cap.lines.size() == 1);
    CHECK(cap.reasons[0] == Reason::KEYLOG_ON);
    CHECK(cap.lines[0].find("P3-W0009") != std::string::npos);
    CHECK(cap.lines[0].find(file) != std::string::npos);
    CHECK(cap.lines[0].find("IN CLEAR") != std::string::npos);

    struct stat st{};
    REQUIRE(::stat(file.c_str(), &st) == 0);
    CHECK((st.st_mode & 07777) == 0600);

    keylog::write(3, 7, keylog::Dir::rx, 0x00100040, 2, kKey, kSalt);
    std::uint8_t key256[32];
    for (int i = 0; i < 32; ++i) key256[i] = std::uint8_t(i);
    keylog::write(3, 7, keylog::Dir::tx, 0xfff00001, 1, key256, kSalt);
    keylog::close();
    CHECK_FALSE(keylog::enabled());
    keylog::write(3, 7, keylog::Dir::tx, 0x1, 1, kKey, kSalt);   // after close: not written

    auto lines = lines_of(file);
    REQUIRE(lines.size() == 2);
    const std::regex fmt(R"(^[0-9]{10}\.[0-9]{6} session=3 remote=7 dir=(rx|tx) p3_id=0x[0-9a-f]+ lanes=[0-9]+ key=[0-9a-f]+ salt=[0-9a-f]{8}$)");
    for (const auto& l : lines) CHECK(std::regex_match(l, fmt));
    CHECK(lines[0].substr(lines[0].find(' ')) ==
          " session=3 remote=7 dir=rx p3_id=0x100040 lanes=2 key=00112233445566778899aabbccddeeff salt=0a0b0c0d");
    CHECK(lines[1].substr(lines[1].find(' ')) ==
          " session=3 remote=7 dir=tx p3_id=0xfff00001 lanes=1 "
          "key=000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f salt=0a0b0c0d");
    const double t = std::stod(lines[0]);
    CHECK(t > 1.6e9);

    // A second open (a restarted p3d) appends.
    REQUIRE(keylog::open(file, why));
    keylog::write(4, 7, keylog::Dir::rx, 0x200, 1, kKey, kSalt);
    keylog::close();
    auto more = lines_of(file);
    REQUIRE(more.size() == 3);
    CHECK(more[0] == lines[0]);
    CHECK(more[2].find(" session=4 ") != std::string::npos);
}

TEST_CASE("keylog: a file open to others, a symbolic link or a directory is refused, nothing enabled") {
    Dir d;
    keylog::close();
    const std::string open_file = d.path + "/open.log";
    { std::ofstream(open_file) << ""; }
    ::chmod(open_file.c_str(), 0644);
    std::string why;
    CHECK_FALSE(keylog::open(open_file, why));
    CHECK(why.find("mode 0644, readable by group or others") != std::string::npos);
    CHECK_FALSE(keylog::enabled());

    const std::string target = d.path + "/target.log";
    { std::ofstream(target) << ""; }
    ::chmod(target.c_str(), 0600);
    const std::string link = d.path + "/link.log";
    REQUIRE(::symlink(target.c_str(), link.c_str()) == 0);
    CHECK_FALSE(keylog::open(link, why));
    CHECK_FALSE(keylog::enabled());

    CHECK_FALSE(keylog::open(d.path, why));
    CHECK_FALSE(keylog::open(d.path + "/no/such/dir/k.log", why));
    CHECK(why.find("No such file or directory") != std::string::npos);
    CHECK_FALSE(keylog::enabled());
}

TEST_CASE("keylog: an ESP SA line carries the wire, ESN and the outer addresses") {
    Dir d;
    const std::string f = d.path + "/keys.log";
    std::string why;
    REQUIRE(keylog::open(f, why));
    const std::uint8_t key32[32] = {0xab};
    keylog::write_esp(3, 7, keylog::Dir::tx, 0xc1a2b3d4, key32, kSalt, true, "192.0.2.1", "2001:db8::1234:5678:9abc:def0");
    keylog::write_esp(3, 7, keylog::Dir::rx, 0x101, kKey, kSalt, false, "192.0.2.2", "192.0.2.1");
    keylog::write(3, 7, keylog::Dir::rx, 0x200, 2, kKey, kSalt);   // a P3 line is unchanged
    keylog::close();
    const auto l = lines_of(f);
    REQUIRE(l.size() == 3);
    CHECK(std::regex_match(l[0], std::regex(R"(\d+\.\d{6} session=3 remote=7 dir=tx p3_id=0xc1a2b3d4 lanes=1 key=ab0{62} salt=0a0b0c0d wire=esp esn=1 src=192\.0\.2\.1 dst=2001:db8::1234:5678:9abc:def0)")));
    CHECK(std::regex_match(l[1], std::regex(R"(\d+\.\d{6} session=3 remote=7 dir=rx p3_id=0x101 lanes=1 key=00112233445566778899aabbccddeeff salt=0a0b0c0d wire=esp esn=0 src=192\.0\.2\.2 dst=192\.0\.2\.1)")));
    CHECK(std::regex_match(l[2], std::regex(R"(\d+\.\d{6} session=3 remote=7 dir=rx p3_id=0x200 lanes=2 key=00112233445566778899aabbccddeeff salt=0a0b0c0d)")));
}
