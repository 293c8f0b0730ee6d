// The control thread's event loop: timers on an injected clock, fd dispatch, cancel.
#include <catch2/catch.hpp>

#include <sys/socket.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "control/event_loop.hpp"

using namespace p3::control;
using namespace std::chrono_literals;

TEST_CASE("event loop: timers fire in deadline order on a manual clock, never early") {
    ManualClock clock;
    EventLoop loop(clock);
    std::vector<std::string> fired;
    loop.after(3s, [&] { fired.push_back("c"); });
    loop.after(1s, [&] { fired.push_back("a"); });
    loop.after(2s, [&] { fired.push_back("b1"); });
    loop.after(2s, [&] { fired.push_back("b2"); });  // same deadline: arming order
    CHECK(loop.run_due() == 0);
    clock.advance(999ms);
    CHECK(loop.run_due() == 0);
    clock.advance(1ms);
    CHECK(loop.run_due() == 1);
    clock.advance(10s);
    CHECK(loop.run_due() == 3);
    CHECK(fired == std::vector<std::string>{"a", "b1", "b2", "c"});
    CHECK(loop.timers_armed() == 0);
}

TEST_CASE("event loop: cancel, re-arm from a callback, minutes of back-off in no time") {
    ManualClock clock;
    EventLoop loop(clock);
    int fired = 0;
    TimerId t = loop.after(5s, [&] { ++fired; });
    CHECK(loop.cancel(t));
    CHECK_FALSE(loop.cancel(t));
    clock.advance(1min);
    CHECK(loop.run_due() == 0);
    CHECK(fired == 0);

    // Exponential back-off 1, 2, 4, ... 32 s: 63 s of timers.
    std::vector<long> at;
    const TimePoint start = clock.now();
    Duration d = 1s;
    std::function<void()> tick = [&] {
        at.push_back(std::chrono::duration_cast<std::chrono::seconds>(clock.now() - start).count());
        d *= 2;
        if (d <= 32s) loop.after(d, tick);
    };
    loop.after(d, tick);
    for (int i = 0; i < 200; ++i) {
        clock.advance(500ms);
        loop.run_due();
    }
    CHECK(at == std::vector<long>{1, 3, 7, 15, 31, 63});
    TimePoint next;
    CHECK_FALSE(loop.next_deadline(next));
}

TEST_CASE("event loop: fd callbacks run when data arrives; a callback may remove its fd") {
    SteadyClock clock;
    EventLoop loop(clock);
    int sv[2];
    REQUIRE(socketpair(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK, 0, sv) == 0);
    int got = 0;
    REQUIRE(loop.add_fd(sv[0], [&](std::uint32_t) {
        char buf[16];
        while (read(sv[0], buf, sizeof buf) > 0) ++got;
        loop.remove_fd(sv[0]);
    }));
    CHECK(loop.run_once(0ms) == 0);
    REQUIRE(write(sv[1], "x", 1) == 1);
    CHECK(loop.run_once(1s) == 1);
    CHECK(got == 1);
    REQUIRE(write(sv[1], "y", 1) == 1);
    CHECK(loop.run_once(10ms) == 0);  // removed
    close(sv[0]);
    close(sv[1]);
}

TEST_CASE("seeded random is reproducible and differs by seed") {
    SeededRandom a(1), b(1), c(2);
    std::uint8_t x[20], y[20], z[20];
    a.fill(x);
    b.fill(y);
    c.fill(z);
    CHECK(std::equal(x, x + 20, y));
    CHECK_FALSE(std::equal(x, x + 20, z));
}
