// Anti-replay window (common/replay.hpp): numbered edge-case tables in the style of
// WireGuard's counter selftest, then a differential run against a plain reference model.
#include <catch2/catch.hpp>

#include <cstdint>
#include <limits>
#include <random>
#include <set>
#include <vector>

#include "common/replay.hpp"

using p3::wire::OwnedReplayWindow;
using p3::wire::ReplayResult;
using p3::wire::ReplayWindow;

namespace {

constexpr std::uint64_t kMax = std::numeric_limits<std::uint64_t>::max();

struct Step {
    std::uint64_t seq;
    ReplayResult expect;   // of check() and of update() (after a verified tag)
};

// Runs a table against a fresh window of size w: check() must predict, update() must agree.
void run_table(std::uint32_t w, const std::vector<Step>& steps) {
    OwnedReplayWindow win(w);
    for (std::size_t i = 0; i < steps.size(); ++i) {
        const Step& s = steps[i];
        INFO("window " << w << ", step " << i + 1 << ": seq " << s.seq);
        const std::uint64_t top_before = win->top();
        CHECK(p3::wire::replay_result_name(win->check(s.seq)) == std::string(p3::wire::replay_result_name(s.expect)));
        CHECK(win->top() == top_before);   // check() never moves the window
        CHECK(p3::wire::replay_result_name(win->update(s.seq)) == std::string(p3::wire::replay_result_name(s.expect)));
    }
}

}  // namespace

TEST_CASE("replay: window sizes and storage") {
    CHECK(ReplayWindow::valid_size(64));
    CHECK(ReplayWindow::valid_size(1024));
    CHECK(ReplayWindow::valid_size(4096));
    CHECK(ReplayWindow::valid_size(8192));
    CHECK_FALSE(ReplayWindow::valid_size(63));
    CHECK_FALSE(ReplayWindow::valid_size(8193));
    CHECK_FALSE(ReplayWindow::valid_size(1));
    CHECK(ReplayWindow::valid_size(0));   // kReplayOff: no window at all (static keys only)
    // One redundant word beyond the window.
    CHECK(ReplayWindow::words_for(64) == 2);
    CHECK(ReplayWindow::words_for(1024) == 17);
    CHECK(ReplayWindow::words_for(100) == 3);
    CHECK(ReplayWindow::words_for(8192) == 129);
    OwnedReplayWindow d;
    CHECK(d->size() == 1024);
    CHECK(d->words() == 17);
    OwnedReplayWindow small(10);   // clamped, never a buffer overrun
    CHECK(small->size() == 64);
}

TEST_CASE("replay: edge table, window 1024 (WireGuard counter style)") {
    const std::uint64_t W = 1024;
    run_table(W, {
        /*  1 */ {0, ReplayResult::zero},          // sequence 0 is never valid
        /*  2 */ {1, ReplayResult::ok},            // first packet
        /*  3 */ {1, ReplayResult::duplicate},
        /*  4 */ {9, ReplayResult::ok},            // a gap
        /*  5 */ {8, ReplayResult::ok},            // in-window, out of order
        /*  6 */ {7, ReplayResult::ok},
        /*  7 */ {7, ReplayResult::duplicate},
        /*  8 */ {W + 9, ReplayResult::ok},        // top = W+9: 9 is now exactly W back
        /*  9 */ {10, ReplayResult::ok},           // W-1 back: the oldest still inside
        /* 10 */ {10, ReplayResult::duplicate},
        /* 11 */ {9, ReplayResult::too_old},       // W back: rejected
        /* 12 */ {8, ReplayResult::too_old},
        /* 13 */ {W + 8, ReplayResult::ok},        // just below top
        /* 14 */ {W + 9, ReplayResult::duplicate}, // top itself
        /* 15 */ {0, ReplayResult::zero},
        /* 16 */ {W + 10, ReplayResult::ok},       // one past top: 10 falls out
        /* 17 */ {10, ReplayResult::too_old},
        /* 18 */ {11, ReplayResult::ok},           // now exactly W-1 back
        /* 19 */ {3 * W, ReplayResult::ok},        // far jump (more than the window)
        /* 20 */ {W + 20, ReplayResult::too_old},  // everything before the jump is out
        /* 21 */ {2 * W + 1, ReplayResult::ok},    // 3W - (2W+1) = W-1 back: in, and never seen
        /* 22 */ {2 * W, ReplayResult::too_old},   // W back
        /* 23 */ {3 * W - 1, ReplayResult::ok},
        /* 24 */ {3 * W - 1, ReplayResult::duplicate},
    });
}

TEST_CASE("replay: bitmap word boundaries and ring wrap") {
    // Window 64 has two words: every crossing of a 64 boundary reuses a word.
    run_table(64, {
        /*  1 */ {63, ReplayResult::ok},
        /*  2 */ {64, ReplayResult::ok},           // next word
        /*  3 */ {1, ReplayResult::ok},            // 63 back
        /*  4 */ {0, ReplayResult::zero},
        /*  5 */ {127, ReplayResult::ok},          // top word 1: 64 and 127
        /*  6 */ {64, ReplayResult::duplicate},    // 63 back, seen
        /*  7 */ {63, ReplayResult::too_old},      // 64 back
        /*  8 */ {128, ReplayResult::ok},          // word 2 = ring slot 0 again: cleared
        /*  9 */ {65, ReplayResult::ok},           // 63 back, in the old word, not seen
        /* 10 */ {64, ReplayResult::too_old},
        /* 11 */ {127, ReplayResult::duplicate},
        /* 12 */ {191, ReplayResult::ok},          // word 2 still holds 128
        /* 13 */ {128, ReplayResult::duplicate},   // 63 back
        /* 14 */ {255, ReplayResult::ok},          // two words up: both cleared
        /* 15 */ {192, ReplayResult::ok},          // 63 back: the fresh word, not seen
        /* 16 */ {191, ReplayResult::too_old},
        /* 17 */ {256 + 64 * 5, ReplayResult::ok}, // far jump: whole ring cleared
        /* 18 */ {256 + 64 * 5 - 63, ReplayResult::ok},
        /* 19 */ {256 + 64 * 5 - 64, ReplayResult::too_old},
    });
}

TEST_CASE("replay: a window that is not a multiple of 64") {
    run_table(100, {
        {1, ReplayResult::ok},
        {101, ReplayResult::ok},    // 1 is exactly 100 back
        {1, ReplayResult::too_old},
        {2, ReplayResult::ok},      // 99 back
        {2, ReplayResult::duplicate},
        {150, ReplayResult::ok},
        {51, ReplayResult::ok},     // 99 back
        {50, ReplayResult::too_old},
    });
}

TEST_CASE("replay: every configurable edge W, W-1 back, for 64..8192") {
    for (std::uint32_t w : {64u, 128u, 1000u, 1024u, 4096u, 8192u}) {
        INFO("window " << w);
        for (std::uint64_t top : {std::uint64_t{2} * w, std::uint64_t{w} + 1, std::uint64_t{5} * w + 37,
                                  kMax}) {
            OwnedReplayWindow win(w);
            REQUIRE(win->update(top) == ReplayResult::ok);
            CHECK(win->check(top - (w - 1)) == ReplayResult::ok);   // W-1 back
            CHECK(win->update(top - (w - 1)) == ReplayResult::ok);
            CHECK(win->update(top - (w - 1)) == ReplayResult::duplicate);
            CHECK(win->check(top - w) == ReplayResult::too_old);    // W back
            CHECK(win->update(top - w) == ReplayResult::too_old);
            CHECK(win->check(top) == ReplayResult::duplicate);
        }
    }
}

TEST_CASE("replay: maximum sequence") {
    OwnedReplayWindow win(1024);
    CHECK(win->update(kMax - 1) == ReplayResult::ok);
    CHECK(win->check(kMax) == ReplayResult::ok);   // no overflow in top - seq or seq + W
    CHECK(win->update(kMax) == ReplayResult::ok);
    CHECK(win->update(kMax) == ReplayResult::duplicate);
    CHECK(win->update(kMax - 1) == ReplayResult::duplicate);
    CHECK(win->update(kMax - 1023) == ReplayResult::ok);
    CHECK(win->update(kMax - 1024) == ReplayResult::too_old);
    CHECK(win->update(1) == ReplayResult::too_old);
    // A jump from the very bottom to the very top.
    OwnedReplayWindow w2(64);
    CHECK(w2->update(1) == ReplayResult::ok);
    CHECK(w2->update(kMax) == ReplayResult::ok);
    CHECK(w2->update(1) == ReplayResult::too_old);
    CHECK(w2->check(kMax - 63) == ReplayResult::ok);
}

TEST_CASE("replay: check then update across a burst (two copies of one packet)") {
    OwnedReplayWindow win(1024);
    REQUIRE(win->update(100) == ReplayResult::ok);
    // Both copies pass check() before decryption...
    CHECK(win->check(200) == ReplayResult::ok);
    CHECK(win->check(200) == ReplayResult::ok);
    CHECK(win->check(50) == ReplayResult::ok);
    // ...only the first is recorded after its tag verifies.
    CHECK(win->update(200) == ReplayResult::ok);
    CHECK(win->update(200) == ReplayResult::duplicate);
    // A packet that passed check() but whose tag failed never reaches update(): still new.
    CHECK(win->check(150) == ReplayResult::ok);
    CHECK(win->check(150) == ReplayResult::ok);
    // A later packet in the burst moved the window past an earlier checked one.
    CHECK(win->check(60) == ReplayResult::ok);
    CHECK(win->update(60 + 1024 + 5) == ReplayResult::ok);
    CHECK(win->update(60) == ReplayResult::too_old);
}

TEST_CASE("replay: a window switched off (static keys that ask for it) accepts every sequence but 0") {
    OwnedReplayWindow win(p3::wire::kReplayOff);
    CHECK_FALSE(win->enabled());
    CHECK(win->size() == p3::wire::kReplayOff);
    CHECK(ReplayWindow::valid_size(p3::wire::kReplayOff));
    CHECK(win->update(5000) == ReplayResult::ok);
    // The same sequence again, and one far left of any window: both accepted.
    CHECK(win->check(5000) == ReplayResult::ok);
    CHECK(win->update(5000) == ReplayResult::ok);
    CHECK(win->check(1) == ReplayResult::ok);
    CHECK(win->update(1) == ReplayResult::ok);
    CHECK(win->top() == 5000);   // still followed (the control plane reads it)
    CHECK(win->check(0) == ReplayResult::zero);
    CHECK(win->update(0) == ReplayResult::zero);
    // An enabled window of the same history refuses both.
    OwnedReplayWindow on(64);
    CHECK(on->enabled());
    REQUIRE(on->update(5000) == ReplayResult::ok);
    CHECK(on->update(5000) == ReplayResult::duplicate);
    CHECK(on->update(1) == ReplayResult::too_old);
}

TEST_CASE("replay: reset forgets everything") {
    OwnedReplayWindow win(64);
    REQUIRE(win->update(1000) == ReplayResult::ok);
    win->reset();
    CHECK(win->top() == 0);
    CHECK(win->update(1) == ReplayResult::ok);
    CHECK(win->update(1000) == ReplayResult::ok);
}

TEST_CASE("replay: agrees with a reference model over random traffic") {
    // Reference: the set of accepted sequences and the highest; s is new iff s > 0, not in the
    // set and top - s < W. Traffic: mostly forward with reordering, duplicates, stale and far
    // jumps, so every word of the ring wraps many times.
    for (std::uint32_t w : {64u, 100u, 1024u, 4096u}) {
        INFO("window " << w);
        std::mt19937_64 rng(0x5eed + w);
        OwnedReplayWindow win(w);
        std::set<std::uint64_t> seen;
        std::uint64_t top = 0, next = 1;
        unsigned mismatches = 0, accepted = 0;
        for (int i = 0; i < 60000; ++i) {
            std::uint64_t s;
            const unsigned kind = static_cast<unsigned>(rng() % 100);
            if (kind < 60) s = next++;
            else if (kind < 80) s = next > 2 * w ? next - 1 - rng() % (2 * w) : rng() % (next + 1);
            else if (kind < 90) s = seen.empty() || *seen.rbegin() < 4 ? 0 : *seen.rbegin() - rng() % 4;
            else if (kind < 98) s = next + rng() % (3 * w), next = s + 1;
            else s = next + 64 * w + rng() % 1000, next = s + 1;
            const bool ref_new = s > 0 && !seen.count(s) && (s > top || top - s < w);
            const ReplayResult c = win->check(s);
            // A tenth of the packets "fail their tag": checked, never updated.
            if (rng() % 10 == 0) {
                mismatches += (c == ReplayResult::ok) != ref_new;
                continue;
            }
            const ReplayResult u = win->update(s);
            mismatches += (c == ReplayResult::ok) != ref_new;
            mismatches += (u == ReplayResult::ok) != ref_new;
            if (ref_new) {
                seen.insert(s);
                if (s > top) top = s;
                ++accepted;
            }
            // Keep the reference small: what is left of the window can never count again.
            while (!seen.empty() && top - *seen.begin() >= w) seen.erase(seen.begin());
        }
        CHECK(mismatches == 0);
        CHECK(accepted > 30000);
        CHECK(win->top() == top);
    }
}

TEST_CASE("replay: an inline window of 64 (the control channel's, one per inbound control key)") {
    p3::wire::InlineReplayWindow<64> win;
    CHECK(win->size() == 64);
    CHECK(win->words() == 2);
    const std::vector<Step> steps = {
        /*  1 */ {0, ReplayResult::zero},          // sequence 0 is never valid, even first
        /*  2 */ {1, ReplayResult::ok},
        /*  3 */ {1, ReplayResult::duplicate},
        /*  4 */ {64, ReplayResult::ok},
        /*  5 */ {1, ReplayResult::duplicate},     // 63 back, seen
        /*  6 */ {2, ReplayResult::ok},            // 62 back, never seen
        /*  7 */ {65, ReplayResult::ok},           // 1 is now 64 back
        /*  8 */ {1, ReplayResult::too_old},
        /*  9 */ {2, ReplayResult::duplicate},     // 63 back: the oldest still inside, seen
        /* 10 */ {1000000, ReplayResult::ok},      // far future: the whole window moves
        /* 11 */ {65, ReplayResult::too_old},
        /* 12 */ {1000000 - 63, ReplayResult::ok},
        /* 13 */ {1000000 - 64, ReplayResult::too_old},
        /* 14 */ {1000000, ReplayResult::duplicate},
        /* 15 */ {0, ReplayResult::zero},
    };
    for (std::size_t i = 0; i < steps.size(); ++i) {
        INFO("step " << i + 1 << ": seq " << steps[i].seq);
        CHECK(win->check(steps[i].seq) == steps[i].expect);
        CHECK(win->update(steps[i].seq) == steps[i].expect);
    }
}

TEST_CASE("replay: a window of 64 accepts exactly what the control channel's former window did") {
    // The former window: top and a 64-bit map, bit n = top - n seen; check before the tag,
    // update after it. Random traffic with reordering, duplicates, stale and far jumps.
    struct Former {
        std::uint64_t top = 0, bits = 0;
        bool check(std::uint64_t seq) const {
            if (seq == 0) return false;
            if (seq > top) return true;
            return top - seq < 64 && !((bits >> (top - seq)) & 1);
        }
        void update(std::uint64_t seq) {
            if (seq > top) {
                const std::uint64_t shift = seq - top;
                bits = shift >= 64 ? 0 : bits << shift;
                top = seq;
                bits |= 1;
            } else {
                bits |= std::uint64_t{1} << (top - seq);
            }
        }
    } former;
    p3::wire::InlineReplayWindow<64> win;
    std::mt19937_64 rng(0xc0de);
    std::uint64_t next = 1;
    unsigned mismatches = 0, accepted = 0;
    for (int i = 0; i < 60000; ++i) {
        std::uint64_t s;
        const unsigned kind = static_cast<unsigned>(rng() % 100);
        if (kind < 55) s = next++;
        else if (kind < 85) s = next > 130 ? next - 1 - rng() % 130 : rng() % (next + 1);
        else if (kind < 90) s = 0;
        else if (kind < 99) s = next + rng() % 200, next = s + 1;
        else s = next + (std::uint64_t{1} << 40) + rng() % 1000, next = s + 1;
        const bool ok = former.check(s);
        mismatches += ok != (win->check(s) == ReplayResult::ok);
        if (!ok || rng() % 10 == 0) continue;   // refused, or its tag failed
        former.update(s);
        mismatches += win->update(s) != ReplayResult::ok;
        ++accepted;
    }
    CHECK(mismatches == 0);
    CHECK(accepted > 30000);
    CHECK(win->top() == former.top);
}
