// The static keys' sequence state on disk (dataplane/seq_reserve.hpp), without a dataplane:
// a fresh key starts at 0 and reserves a block; a restart resumes above the mark; a state
// that cannot be trusted (malformed, writable by others, not ours, used up) refuses the key
// instead of guessing where to start.
#include <catch2/catch.hpp>

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "common/wire_limits.hpp"
#include "dataplane/seq_reserve.hpp"

namespace {

struct Dir {
    std::string path;
    Dir() {
        char tmpl[] = "/tmp/p3-seqres-XXXXXX";
        REQUIRE(::mkdtemp(tmpl) != nullptr);
        path = tmpl;
    }
    ~Dir() { std::filesystem::remove_all(path); }
};

const std::vector<std::uint8_t> kKey(16, 0x42), kSalt{1, 2, 3, 4};

std::string state_of(const std::string& dir) {
    std::ifstream in(dir + "/" + p3::dp::SeqReserve::file_name(kKey, kSalt));
    return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

void put(const std::string& dir, const std::string& text, mode_t mode = 0600) {
    const std::string p = dir + "/" + p3::dp::SeqReserve::file_name(kKey, kSalt);
    { std::ofstream(p, std::ios::trunc) << text; }
    ::chmod(p.c_str(), mode);
}

}  // namespace

TEST_CASE("sequence state: fresh, resumed, and every state that is refused", "[seq]") {
    Dir d;
    const std::string dir = d.path + "/state";   // made by the first open, owner-only
    p3::dp::SeqReserve r(dir, 1000);
    CHECK(p3::dp::SeqReserve::file_name(kKey, kSalt).size() == 4 + 32);
    const std::vector<std::uint8_t> other_salt{1, 2, 3, 5};
    CHECK(p3::dp::SeqReserve::file_name(kKey, kSalt) != p3::dp::SeqReserve::file_name(kKey, other_salt));

    auto a = r.open(1, 7, kKey, kSalt);
    REQUIRE(a);
    CHECK(a->start_after == 0);
    CHECK(a->limit == 1000);
    CHECK(state_of(dir) == "p3 sequence mark 1\n1000\n");
    struct stat st{};
    REQUIRE(::stat(dir.c_str(), &st) == 0);
    CHECK((st.st_mode & 0777) == 0700);

    auto b = p3::dp::SeqReserve(dir, 1000).open(1, 7, kKey, kSalt);   // a restart
    REQUIRE(b);
    CHECK(b->start_after == 1000);
    CHECK(b->limit == 2000);
    CHECK(state_of(dir) == "p3 sequence mark 1\n2000\n");

    struct Bad {
        const char* what;
        std::string text;
        mode_t mode;
    };
    const Bad bad[] = {
        {"empty", "", 0600},
        {"no header", "2000\n", 0600},
        {"not a number", "p3 sequence mark 1\n2k00\n", 0600},
        {"no newline", "p3 sequence mark 1\n2000", 0600},
        {"negative", "p3 sequence mark 1\n-5\n", 0600},
        {"beyond 2^62", "p3 sequence mark 1\n99999999999999999999\n", 0600},
        {"used up", "p3 sequence mark 1\n" + std::to_string(p3::wire::kSeqLast - 1500) + "\n", 0600},
        {"writable by others", "p3 sequence mark 1\n2000\n", 0622},
    };
    for (const auto& x : bad) {
        INFO(x.what);
        put(dir, x.text, x.mode);
        CHECK_FALSE(p3::dp::SeqReserve(dir, 1000).open(1, 7, kKey, kSalt));
        if (x.mode == 0600) CHECK(state_of(dir) == x.text);   // left as it was, for a human to look at
    }

    // A directory others may write is refused as a whole; so is a file where it should be.
    put(dir, "p3 sequence mark 1\n2000\n");
    ::chmod(dir.c_str(), 0770);
    CHECK_FALSE(p3::dp::SeqReserve(dir, 1000).open(1, 7, kKey, kSalt));
    ::chmod(dir.c_str(), 0700);
    { std::ofstream(d.path + "/file") << "x"; }
    CHECK_FALSE(p3::dp::SeqReserve(d.path + "/file", 1000).open(1, 7, kKey, kSalt));
    CHECK(p3::dp::SeqReserve(dir, 1000).open(1, 7, kKey, kSalt));
}
