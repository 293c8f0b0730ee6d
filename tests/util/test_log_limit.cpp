// The per-reason limit on lines a remote peer can cause (log::write_peer): a flood of N lines
// of one reason writes at most kPeerLinesPerSecond of them and then one line that says how
// many were left out; other reasons keep their own budget; ordinary lines are never limited.
#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "common/log.hpp"

using namespace p3;

namespace {

std::uint64_t g_now_ms = 0;
std::uint64_t fake_now() noexcept { return g_now_ms; }

struct Capture {
    std::vector<std::pair<Reason, std::string>> lines;
    Capture() {
        log::Options o;
        o.to_stderr = false;
        o.min_level = log::Level::info;
        log::init(o);
        log::set_sink(&Capture::on_line, this);
        g_now_ms = 1'000'000;
        log::set_time_source(&fake_now);
    }
    ~Capture() {
        log::set_sink(nullptr, nullptr);
        log::set_time_source(nullptr);
    }
    std::size_t count(Reason r, const char* text = "") const {
        std::size_t n = 0;
        for (const auto& l : lines)
            if (l.first == r && l.second.find(text) != std::string::npos) ++n;
        return n;
    }
    static void on_line(log::Level, Reason r, std::string_view line, void* ctx) {
        static_cast<Capture*>(ctx)->lines.emplace_back(r, std::string(line));
    }
};

}  // namespace

TEST_CASE("log: a flood of peer-caused lines is cut to the per-second budget plus one summary", "[log]") {
    Capture c;
    for (int i = 0; i < 5000; ++i) P3_PEER_LOG(warning, Reason::SETUP_MALFORMED, "bad datagram %d", i);
    CHECK(c.count(Reason::SETUP_MALFORMED) == log::kPeerLinesPerSecond);
    CHECK(c.count(Reason::SETUP_MALFORMED, "bad datagram 9") == 1);
    CHECK(c.count(Reason::SETUP_MALFORMED, "bad datagram 10") == 0);
    // Within the second nothing more, not even the summary.
    log::flush_suppressed();
    CHECK(c.count(Reason::SETUP_MALFORMED) == log::kPeerLinesPerSecond);
    // After it, the summary with the exact count, once, with the reason code and level.
    g_now_ms += 1000;
    log::flush_suppressed();
    log::flush_suppressed();
    CHECK(c.count(Reason::SETUP_MALFORMED, "4990 similar line(s) suppressed") == 1);
    CHECK(c.count(Reason::SETUP_MALFORMED, "warning P3-W0408") == log::kPeerLinesPerSecond + 1);
    CHECK(log::suppressed_total() >= 4990);
    // A new second has a new budget.
    for (int i = 0; i < 3; ++i) P3_PEER_LOG(warning, Reason::SETUP_MALFORMED, "again %d", i);
    CHECK(c.count(Reason::SETUP_MALFORMED, "again") == 3);
}

TEST_CASE("log: the summary comes before the next line when no flush ran; reasons are apart", "[log]") {
    Capture c;
    for (int i = 0; i < 25; ++i) P3_PEER_LOG(error, Reason::SETUP_AUTH_FAILED, "auth %d", i);
    for (int i = 0; i < 4; ++i) P3_PEER_LOG(error, Reason::SETUP_NO_PROPOSAL, "proposal %d", i);
    CHECK(c.count(Reason::SETUP_AUTH_FAILED) == log::kPeerLinesPerSecond);
    CHECK(c.count(Reason::SETUP_NO_PROPOSAL) == 4);  // its own budget
    g_now_ms += 1500;
    P3_PEER_LOG(error, Reason::SETUP_AUTH_FAILED, "auth late");
    REQUIRE(c.lines.size() >= 2);
    CHECK(c.lines[c.lines.size() - 2].second.find("15 similar line(s) suppressed") != std::string::npos);
    CHECK(c.lines.back().second.find("auth late") != std::string::npos);
    // Ordinary lines are never limited.
    for (int i = 0; i < 50; ++i) P3_LOG_ERROR(SETUP_AUTH_FAILED, "local %d", i);
    CHECK(c.count(Reason::SETUP_AUTH_FAILED, "local") == 50);
}

TEST_CASE("log: lines below the level are neither written nor counted", "[log]") {
    Capture c;
    const auto before = log::suppressed_total();
    for (int i = 0; i < 100; ++i) P3_PEER_LOG(debug, Reason::SETUP_MALFORMED, "quiet %d", i);
    CHECK(c.lines.empty());
    CHECK(log::suppressed_total() == before);
}
