// Key arrays of one session (docs/control-channel.md §6), both sides.
//
// Primary: delivers an array of fresh keys in chunks of kKeysPerChunk, one acknowledged chunk
// at a time and spread out (a trickle, not a burst an observer could count): the next chunk
// goes U(0.5, 1.5) x spacing after the previous one was acknowledged, spacing = kChunkSpacing
// but at most 1 / (kChunkSpreadShare x chunks) of the array's lifetime. Between two chunks a
// queued rekey may run (session.cpp); the next chunk then waits for it to end, so a rekey
// never names an index while the array it comes from could change under it. When the last
// chunk is acknowledged the generation is active on both sides and replaces the old one (wiped). A rekey takes an unused index of a fresh array (marked used at once,
// never again) or, without one, a key carried explicitly. An array is replaced when its
// lifetime (data_array_time / control_array_time) is over or fewer than kIndicesPerRekey
// indices are left; an unacknowledged delivery is tried again 4 x kRequestTimeout later.
//   delivery: chunk 0 --ack--> pause --timer (and no rekey beside)--> chunk 1 ... chunk n-1 --ack--> active
// Secondary: collects the chunks of the newest generation (older ones are stale, never taken
// again); when all are in, it replaces the active array. Indices named by a rekey request are
// resolved and spent here.
//   incoming gen g: chunks --all in--> active;  flush: active and incoming wiped
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <vector>

#include "control/channel/core.hpp"
#include "control/channel/link.hpp"

namespace p3::channel {

class KeyArrays {
public:
    struct Array {
        std::uint32_t gen = 0, size = 0;
        std::size_t entry = 0;           // key length + salt
        SecretBytes keys;                // size x entry
        std::vector<bool> used, have;
        std::uint32_t have_count = 0, unused = 0;
        bool complete = false;
        TimePoint complete_at{};
        void wipe() { *this = Array{}; }
    };

    KeyArrays(SessionCore& core, MessageLink& link) : c_(core), link_(link) {}

    // The session starts anew (generations may start over) / is torn down (all wiped).
    void start() { newest_gen_ = {}; }
    void clear();

    Array& active(ArrayKind k) noexcept { return arrays_[detail::kind_slot(k)]; }
    const Array& active(ArrayKind k) const noexcept { return arrays_[detail::kind_slot(k)]; }
    const std::array<Array, 2>& all_active() const noexcept { return arrays_; }
    const std::array<Array, 2>& all_incoming() const noexcept { return incoming_; }
    std::uint32_t gen(ArrayKind k) const noexcept { return active(k).complete ? active(k).gen : 0; }
    std::uint32_t unused(ArrayKind k) const noexcept { return active(k).complete ? active(k).unused : 0; }

    // --- primary ---
    void start_delivery(ArrayKind k);
    void on_chunk_ack(const Message& m);
    void on_chunk_failed();              // a chunk unanswered: the delivery is abandoned
    void on_chunk_due();                 // the pause between two chunks is over
    void resume();                       // the rekey that ran beside the delivery is over
    // A delivery is waiting between two chunks (no chunk unacknowledged).
    bool between_chunks() const noexcept { return delivery_ && !delivery_->chunk_out; }
    // The pause between chunks of this kind's array (before the U(0.5, 1.5) factor).
    Duration chunk_spacing(ArrayKind k) const noexcept;
    void on_due(ArrayKind k);            // timer: the array's lifetime is over
    // The administrator flushes ours (no rekey names them from here on).
    void flush_ours(ArrayKind k, bool with_new);
    // Before a flush goes out: an array delivered since the command goes too.
    void drop_before_flush(std::uint8_t kinds);
    // A key for a rekey: an index of a fresh array, or a fresh key carried explicitly.
    bool choose_key(ArrayKind kind, KeyRef& ref, KeyMaterial& out);

    // --- secondary ---
    void on_chunk(const Message& m);
    void on_flush(const Message& m);
    // The key a rekey request names; st becomes the refusal when there is none.
    std::optional<KeyMaterial> resolve_key(ArrayKind kind, const KeyRef& ref, Status& st);
    void spend(ArrayKind kind, std::uint32_t index);

private:
    struct Delivery {
        ArrayKind kind = ArrayKind::data;
        Array array;
        std::uint32_t next_offset = 0;
        bool chunk_out = false;          // a chunk is sent and not yet acknowledged
        bool waiting = false;            // the pause ended while a rekey ran beside
    };
    bool fresh(ArrayKind k) const noexcept;
    Duration lifetime(ArrayKind k) const noexcept;
    void send_chunk();
    std::optional<KeyMaterial> make_key();
    void activate_incoming(ArrayKind k);

    SessionCore& c_;
    MessageLink& link_;
    std::array<Array, 2> arrays_{};
    std::optional<Delivery> delivery_;       // primary
    std::uint32_t next_gen_ = 1;             // primary: never reset, generations never repeat
    std::array<Array, 2> incoming_{};        // secondary
    std::array<std::uint32_t, 2> newest_gen_{};  // never accept an older generation again
};

}  // namespace p3::channel
