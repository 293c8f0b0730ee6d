// Anti-replay sliding window of one inbound key slot (DESIGN.md §Wire format), in the style
// of WireGuard's counter: a ring of 64-bit bitmap words, one more than the window needs, so
// advancing the window clears whole words and never a partial one.
//
// A window of W packets accepts sequence s when s > top (the highest accepted), or
// top - s < W and s was not seen. Sequence 0 is never valid. Two steps, as the packet path
// needs them:
//   check(s)  before decryption: no state change (a forged packet must not move the window);
//   update(s) after the tag verifies: records s. It re-checks, because two copies of one
//             packet in a burst both pass check() before either is recorded; the caller drops
//             the packet unless update() says ok.
// State: top = 0 (nothing seen) -> top = highest accepted; bits for (top - W, top].
// A window of kReplayOff (static keys that asked for it) accepts every sequence but 0 and
// only follows top.
//
// Single writer, no locks: the worker lcore that receives the slot's packets. The words live
// in memory the owner provides (the slot allocates them behind its header), so a window costs
// 8 * words(W) bytes: 136 B at the default 1024, 1032 B at 8192.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>

#include "common/wire_limits.hpp"

namespace p3::wire {

enum class ReplayResult : std::uint8_t {
    ok = 0,        // new: accept (check) / recorded (update)
    zero,          // sequence 0: never valid
    too_old,       // left of the window
    duplicate,     // inside the window and already seen
};
const char* replay_result_name(ReplayResult r) noexcept;

class ReplayWindow {
public:
    static constexpr bool valid_size(std::uint32_t window) noexcept {
        return window == kReplayOff || (window >= kReplayWindowMin && window <= kReplayWindowMax);
    }
    // Bitmap words for a window: enough for the W sequences below top when top sits at the
    // start of its word, plus the word top is in.
    static constexpr std::uint32_t words_for(std::uint32_t window) noexcept {
        return (window + 63) / 64 + 1;
    }

    // bits: words_for(window) words owned by the caller, outliving the window. window must be
    // valid_size() (callers validate; an invalid one is clamped into range).
    ReplayWindow(std::uint32_t window, std::uint64_t* bits) noexcept
        : window_(clamp(window)), nwords_(words_for(window_)), bits_(bits), off_(window == kReplayOff) {
        reset();
    }
    ReplayWindow(const ReplayWindow&) = delete;
    ReplayWindow& operator=(const ReplayWindow&) = delete;

    // Before decryption. Never changes state.
    ReplayResult check(std::uint64_t seq) const noexcept {
        if (seq == 0) [[unlikely]] return ReplayResult::zero;
        if (seq > top_ || off_) return ReplayResult::ok;
        if (top_ - seq >= window_) return ReplayResult::too_old;
        return (bits_[word_of(seq)] >> (seq & 63)) & 1 ? ReplayResult::duplicate : ReplayResult::ok;
    }

    // After the tag verified. ok = recorded now; anything else = drop the packet.
    ReplayResult update(std::uint64_t seq) noexcept {
        if (seq == 0) [[unlikely]] return ReplayResult::zero;
        if (off_) [[unlikely]] {
            if (seq > top_) set_top(seq);
            return ReplayResult::ok;
        }
        if (seq > top_) {
            advance(seq);
            bits_[head_] |= std::uint64_t{1} << (seq & 63);
            return ReplayResult::ok;
        }
        if (top_ - seq >= window_) return ReplayResult::too_old;
        std::uint64_t& w = bits_[word_of(seq)];
        const std::uint64_t bit = std::uint64_t{1} << (seq & 63);
        if (w & bit) return ReplayResult::duplicate;
        w |= bit;
        return ReplayResult::ok;
    }

    // Forget everything (a new key starts a new window).
    void reset() noexcept {
        std::memset(bits_, 0, sizeof(std::uint64_t) * nwords_);
        set_top(0);
        head_ = 0;
    }

    // Any thread (the control thread asks whether a key has been used yet): the receiving
    // worker stores top_ as a relaxed atomic, so this load is never torn (a plain mov both
    // ways on x86-64), possibly stale.
    std::uint64_t top() const noexcept { return __atomic_load_n(&top_, __ATOMIC_RELAXED); }
    std::uint32_t size() const noexcept { return off_ ? kReplayOff : window_; }
    bool enabled() const noexcept { return !off_; }
    std::uint32_t words() const noexcept { return nwords_; }

    static constexpr std::uint32_t clamp(std::uint32_t w) noexcept {
        return w < kReplayWindowMin ? kReplayWindowMin : (w > kReplayWindowMax ? kReplayWindowMax : w);
    }

private:

    // Ring position of seq's word; seq is inside the window, so it is at most nwords_ - 1
    // words behind top's word (head_). No division on the packet path.
    std::uint32_t word_of(std::uint64_t seq) const noexcept {
        const auto back = static_cast<std::uint32_t>((top_ >> 6) - (seq >> 6));
        return head_ >= back ? head_ - back : head_ + nwords_ - back;
    }

    // Moves top to seq (> top), clearing the words that enter the window.
    void advance(std::uint64_t seq) noexcept {
        const std::uint64_t jump = (seq >> 6) - (top_ >> 6);
        if (jump >= nwords_) {
            std::memset(bits_, 0, sizeof(std::uint64_t) * nwords_);
            head_ = 0;
        } else {
            for (auto i = static_cast<std::uint32_t>(jump); i > 0; --i) {
                head_ = head_ + 1 == nwords_ ? 0 : head_ + 1;
                bits_[head_] = 0;
            }
        }
        set_top(seq);
    }
    void set_top(std::uint64_t seq) noexcept { __atomic_store_n(&top_, seq, __ATOMIC_RELAXED); }

    std::uint64_t top_ = 0;        // highest accepted sequence (0: none yet)
    std::uint32_t head_ = 0;       // ring index of top's word
    std::uint32_t window_;
    std::uint32_t nwords_;
    std::uint64_t* bits_;
    bool off_;
};

static_assert(ReplayWindow::words_for(kReplayWindowMax) == kReplayWordsMax);

// A window that owns its words (tests, tools; slots embed theirs).
class OwnedReplayWindow {
public:
    explicit OwnedReplayWindow(std::uint32_t window = kReplayWindowDefault)
        : bits_(new std::uint64_t[ReplayWindow::words_for(ReplayWindow::clamp(window))]),
          w_(window, bits_.get()) {}
    ReplayWindow& operator*() noexcept { return w_; }
    ReplayWindow* operator->() noexcept { return &w_; }

private:
    std::unique_ptr<std::uint64_t[]> bits_;
    ReplayWindow w_;
};

// A window with its words inside it, for owners that keep a few small windows in place (the
// control channel: one of limits::kReplayWindow packets per inbound control key, in a map
// node that never moves). Neither copied nor moved: the window points at its own words.
template <std::uint32_t W>
class InlineReplayWindow {
    static_assert(W != kReplayOff && ReplayWindow::valid_size(W));

public:
    InlineReplayWindow() noexcept : w_(W, bits_) {}
    ReplayWindow& operator*() noexcept { return w_; }
    const ReplayWindow& operator*() const noexcept { return w_; }
    ReplayWindow* operator->() noexcept { return &w_; }
    const ReplayWindow* operator->() const noexcept { return &w_; }

private:
    std::uint64_t bits_[ReplayWindow::words_for(W)];
    ReplayWindow w_;
};

}  // namespace p3::wire
