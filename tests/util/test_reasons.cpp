// Reason codes: unique, well formed, documented, and carried by every logged line.
#include <catch2/catch.hpp>

#include <fstream>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "common/log.hpp"
#include "common/reasons.hpp"

using namespace p3;

TEST_CASE("every reason code is unique and of the form P3-[EWI]nnnn") {
    std::set<std::string_view> seen;
    std::regex form("P3-[EWI][0-9]{4}");
    for (const auto& r : all_reasons()) {
        INFO(r.code);
        CHECK(std::regex_match(std::string(r.code), form));
        CHECK(seen.insert(r.code).second);
        CHECK_FALSE(r.meaning.empty());
        CHECK_FALSE(r.action.empty());
    }
    CHECK(seen.size() > 10);
}

TEST_CASE("docs/reason-codes.md is the generated table, up to date") {
    std::ifstream in(P3_SOURCE_ROOT "/docs/reason-codes.md");
    REQUIRE(in.good());
    std::stringstream ss;
    ss << in.rdbuf();
    // If this fails: build/control/p3ctl reasons --markdown > docs/reason-codes.md
    CHECK(ss.str() == reasons_markdown());
}

namespace {
struct Captured {
    std::vector<std::string> lines;
};
void capture(log::Level, Reason, std::string_view line, void* ctx) {
    static_cast<Captured*>(ctx)->lines.emplace_back(line);
}
}  // namespace

TEST_CASE("a logged failure carries its reason code and level") {
    Captured c;
    log::init({.ident = "p3test", .to_stderr = false, .to_syslog = false, .min_level = log::Level::info});
    log::set_sink(capture, &c);
    P3_LOG_ERROR(CFG_SYNTAX, "%s:%d: %s", "/etc/p3.conf", 7, "unexpected '}'");
    P3_LOG_DEBUG(CFG_SYNTAX, "below the threshold: not written");
    log::set_sink(nullptr, nullptr);
    REQUIRE(c.lines.size() == 1);
    CHECK(c.lines[0] == "p3test: error P3-E0102: /etc/p3.conf:7: unexpected '}'");
}
