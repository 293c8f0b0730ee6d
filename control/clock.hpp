// The control thread's notion of time and randomness, injectable. Production uses the
// monotonic clock and OpenSSL's DRBG; tests use ManualClock (time moves only when the test
// says so, so minutes of retransmission timers run in milliseconds) and SeededRandom
// (reproducible SPIs, nonces, cookies). Nothing here is used on the packet path.
#pragma once

#include <chrono>
#include <cstdint>
#include <span>

namespace p3::control {

using Duration = std::chrono::nanoseconds;
using TimePoint = std::chrono::time_point<std::chrono::steady_clock, Duration>;

class Clock {
public:
    virtual ~Clock() = default;
    virtual TimePoint now() const noexcept = 0;
};

// CLOCK_MONOTONIC: never jumps with the wall clock.
class SteadyClock final : public Clock {
public:
    TimePoint now() const noexcept override {
        return std::chrono::time_point_cast<Duration>(std::chrono::steady_clock::now());
    }
};

// Time stands still until advance(); starts at an arbitrary non-zero point.
class ManualClock final : public Clock {
public:
    TimePoint now() const noexcept override { return t_; }
    void advance(Duration d) noexcept { t_ += d; }
    void set(TimePoint t) noexcept { t_ = t; }

private:
    TimePoint t_{std::chrono::seconds(1000)};
};

class Random {
public:
    virtual ~Random() = default;
    // Fills out; returns false if the source failed (callers treat that as fatal for the
    // exchange: no SPI, nonce or key is ever made from a failed source).
    virtual bool fill(std::span<std::uint8_t> out) noexcept = 0;
};

// OpenSSL's CSPRNG (RAND_bytes).
class SystemRandom final : public Random {
public:
    bool fill(std::span<std::uint8_t> out) noexcept override;
};

// Deterministic (splitmix64) for tests only: never for keys in production.
class SeededRandom final : public Random {
public:
    explicit SeededRandom(std::uint64_t seed) noexcept : s_(seed) {}
    bool fill(std::span<std::uint8_t> out) noexcept override {
        for (auto& b : out) {
            if (n_ == 0) {
                std::uint64_t z = (s_ += 0x9e3779b97f4a7c15ULL);
                z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
                z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
                cur_ = z ^ (z >> 31);
                n_ = 8;
            }
            b = static_cast<std::uint8_t>(cur_);
            cur_ >>= 8;
            --n_;
        }
        return true;
    }

private:
    std::uint64_t s_, cur_ = 0;
    int n_ = 0;
};

}  // namespace p3::control
