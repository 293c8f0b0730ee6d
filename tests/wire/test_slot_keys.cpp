// Key slots whose keys switch by sequence (common/slots.hpp, docs/key-slots.md): the
// receiver's choice of key as a numbered table, next RX keys set, announced, promoted and
// dropped (old keys wiped, the lane never changes), and the TX switch's exact first sequence
// on an idle lane and under a concurrent sender, over 100 switches.
//
// No EAL: the rte_rcu_qsbr lives on plain memory and the sender is a std::thread.
#include <catch2/catch.hpp>

#include <atomic>
#include <cstring>
#include <memory>
#include <thread>
#include <vector>

#include "common/lanes.hpp"
#include "common/slots.hpp"
#include "tests/wire/slots_util.hpp"

using namespace p3test::slots;

namespace {
// A packet of one sequence sealed under a key: what a test opens afterwards under each key.
struct Sealed {
    std::uint64_t seq;
    std::uint8_t data[32];
    std::uint8_t tag[16];
};
void header_for(std::uint8_t* hdr, std::uint32_t id, std::uint64_t seq) {
    std::memset(hdr, 0, 16);
    const std::uint32_t id_be = __builtin_bswap32(id);
    const std::uint64_t seq_be = __builtin_bswap64(seq);
    std::memcpy(hdr + 4, &id_be, 4);
    std::memcpy(hdr + 8, &seq_be, 8);
}
}  // namespace

TEST_CASE("slots: the receiver's key by sequence, as a numbered table") {
    GcmKey a(Material(1).k(), Material(1).s()), b(Material(2).k(), Material(2).s());
    struct Row {
        int n;
        std::uint64_t cur_from, next_from, learned;
        bool has_next;
        std::uint64_t seq;
        const GcmKey* want;   // nullptr: dropped without AES
        const GcmKey* alt;    // the key to retry under when the tag fails
    };
    const Row rows[] = {
        {1, 1, 0, 0, false, 1, &a, nullptr},            // one key: everything under it
        {2, 1, 0, 0, false, ~0ull >> 1, &a, nullptr},
        {3, 500, 0, 0, false, 499, nullptr, nullptr},   // below the current key's switch point
        {4, 500, 0, 0, false, 500, &a, nullptr},
        {5, 1, 900, 0, true, 899, &a, nullptr},         // announced: exact, one try
        {6, 1, 900, 0, true, 900, &b, nullptr},
        {7, 1, 900, 950, true, 920, &b, nullptr},       // announced wins over learned
        {8, 1, 0, 0, true, 1000, &a, &b},               // pending, unknown: cur, then next
        {9, 1, 0, 950, true, 950, &b, nullptr},         // learned: from it on, next at once
        {10, 1, 0, 950, true, 2000, &b, nullptr},
        {11, 1, 0, 950, true, 949, &a, &b},             // below learned: cur, then next
        {12, 300, 0, 950, true, 299, nullptr, nullptr}, // below cur_from: nothing, even pending
    };
    for (const Row& r : rows) {
        INFO("row " << r.n);
        RxKeys k;
        k.cur = &a;
        k.cur_from = r.cur_from;
        k.next = r.has_next ? &b : nullptr;
        k.next_from = r.next_from;
        k.learned = r.learned;
        const GcmKey* alt = nullptr;
        CHECK(k.pick(r.seq, alt) == r.want);
        CHECK(alt == r.alt);
    }
    // learned only goes down.
    RxKeys k;
    k.learn(900);
    CHECK(k.learned == 900);
    k.learn(950);
    CHECK(k.learned == 900);
    k.learn(880);
    CHECK(k.learned == 880);
}

TEST_CASE("slots: next RX keys: set, announce, promote, drop; the lane never changes and old keys are wiped") {
    LogCapture logs;
    Qsbr q;
    SlotTable t(SlotTableConfig{64, 4, 4}, q.q);
    FreeLog fl;
    t.set_free_hook(FreeLog::hook, &fl);
    Material m0(30), m1(31), m2(32);
    auto base = t.reserve_rx(2);
    REQUIRE(base);
    RxParams rp;
    rp.session = 2;
    REQUIRE(t.publish_rx_lanes(*base, 2, m0.k(), m0.s(), rp));
    RxSlot* s = t.rx(base->raw());
    REQUIRE(s);
    const GcmKey* k0 = s->keys()->cur;
    CHECK(s->keys()->cur_from == 1);
    CHECK(s->keys()->next == nullptr);
    CHECK_FALSE(t.next_seen_rx(*base));

    // A next key; then another replaces it before anyone used it: the first is wiped.
    REQUIRE(t.set_next_rx_lanes(*base, 2, m1.k(), m1.s()));
    const GcmKey* k1 = s->keys()->next;
    REQUIRE(k1 != nullptr);
    CHECK(s->keys()->cur == k0);
    CHECK(same_schedule(*k1, GcmKey(m1.k(), m1.s())));   // lane 0: the material as is
    REQUIRE(t.set_next_rx_lanes(*base, 2, m2.k(), m2.s()));
    const GcmKey* k2 = s->keys()->next;
    CHECK(fl.saw(k1, FreedKind::rx_key));
    CHECK(s->keys()->cur == k0);
    CHECK_FALSE(fl.saw(k0, FreedKind::rx_key));

    // Each call is per lane; the dataplane runs it over the session's block.
    auto both = [&](void (SlotTable::*f)(SlotId)) {
        (t.*f)(base->lane(0));
        (t.*f)(base->lane(1));
    };
    // Dropped: the current key stays, the next one is wiped.
    both(&SlotTable::drop_next_rx);
    CHECK(s->keys()->next == nullptr);
    CHECK(s->keys()->cur == k0);
    CHECK(fl.saw(k2, FreedKind::rx_key));

    // Learned from traffic, then promoted: current from the learned point, old key wiped.
    REQUIRE(t.set_next_rx_lanes(*base, 2, m1.k(), m1.s()));
    const GcmKey* k3 = s->keys()->next;
    CHECK_FALSE(t.next_seen_rx(*base));
    s->keys()->learn(7001);
    CHECK(t.next_seen_rx(*base));
    both(&SlotTable::promote_rx);
    CHECK(s->keys()->cur == k3);
    CHECK(s->keys()->cur_from == 7001);
    CHECK(s->keys()->next == nullptr);
    CHECK(fl.saw(k0, FreedKind::rx_key));
    both(&SlotTable::promote_rx);   // nothing pending: nothing changes
    CHECK(s->keys()->cur == k3);

    // Announced: exact; seen once the window's top reaches the switch point.
    REQUIRE(t.set_next_rx_lanes(*base, 2, m2.k(), m2.s()));
    const GcmKey* k4 = s->keys()->next;
    t.announce_rx(*base, 9000);
    CHECK(s->keys()->next_from == 9000);
    CHECK(s->keys()->next == k4);
    CHECK_FALSE(t.next_seen_rx(*base));
    REQUIRE(s->replay().update(8999) == ReplayResult::ok);
    CHECK_FALSE(t.next_seen_rx(*base));
    REQUIRE(s->replay().update(9000) == ReplayResult::ok);
    CHECK(t.next_seen_rx(*base));
    both(&SlotTable::promote_rx);
    CHECK(s->keys()->cur == k4);
    CHECK(s->keys()->cur_from == 9000);
    CHECK(fl.saw(k3, FreedKind::rx_key));

    // Lane 1 went through the same with its own keys; neither lane's slot was ever freed.
    RxSlot* s1 = t.rx(base->lane(1).raw());
    REQUIRE(s1);
    CHECK(s1->keys()->cur_from == 1);   // promoted from 1: never learned nor announced there
    CHECK(same_schedule(s1->key(), GcmKey(lane_key_material(m2.k(), m2.s(), 1))));
    CHECK(t.rx(base->raw()) == s);
    CHECK(fl.freed.empty());
    CHECK(fl.not_wiped == 0);
    CHECK(t.stats().keys_freed == 2 * 4);   // k1, k2, k0, k3 on both lanes

    // Refused: a block not published, a bad key; nothing changes.
    auto other = t.reserve_rx(1);
    REQUIRE(other);
    CHECK_FALSE(t.set_next_rx_lanes(*other, 1, m1.k(), m1.s()));
    CHECK_FALSE(t.set_next_rx_lanes(*base, 3, m1.k(), m1.s()));   // lane 2 is not published
    CHECK(s->keys()->next == nullptr);
    std::uint8_t k24[24] = {};
    CHECK_FALSE(t.set_next_rx_lanes(*base, 2, {k24, 24}, m1.s()));
    CHECK(s->keys()->next == nullptr);

    // The session goes: the slot takes its keys and state with it, all wiped.
    const GcmKey* last = s->keys()->cur;
    t.retire_rx(base->lane(0));
    t.retire_rx(base->lane(1));
    CHECK(fl.saw(last, FreedKind::rx_key));
    CHECK(fl.freed.size() == 2);
    CHECK(fl.not_wiped == 0);
}

TEST_CASE("slots: TX switch: first sequence exact on an idle lane and under a concurrent sender; "
          "no gap, no nonce reused, P3 ID and sequence kept over 100 switches") {
    LogCapture logs;
    Qsbr q(4);
    SlotTable t(SlotTableConfig{16, 4, 2}, q.q);
    FreeLog fl;
    t.set_free_hook(FreeLog::hook, &fl);
    constexpr unsigned kKeys = 101;
    std::vector<std::unique_ptr<Material>> mats;
    for (unsigned i = 0; i < kKeys; ++i) mats.push_back(std::make_unique<Material>(100 + i));
    TxParams p = tx_params(3, 0x500);
    p.lane = 0;
    REQUIRE(t.publish_tx(mats[0]->k(), mats[0]->s(), p));
    TxSlot* s = t.tx(3, 0);
    REQUIRE(s);
    CHECK(s->current()->first_seq == 1);
    std::vector<std::uint64_t> first(kKeys, 0);
    first[0] = 1;

    // Idle lane (its sender sends nothing): the control thread's claim wins, exactly last + 1.
    *s->ref().seq = 41;   // as if 41 packets went out
    std::uint64_t out[2] = {};
    REQUIRE(t.switch_tx(3, 1, mats[1]->k(), mats[1]->s(), out));
    CHECK(out[0] == 42);
    CHECK(s->current()->first_seq == 42);
    CHECK(s->packets() == 0);
    first[1] = 42;
    CHECK(fl.all.size() == 1);   // the first key object, wiped
    CHECK(fl.all[0].kind == FreedKind::tx_key);
    CHECK(fl.not_wiped == 0);

    // A busy lane: a sender seals packets in bursts, taking the key at the start of each burst
    // (as the dataplane's run does) and claiming it when it is the first to use it.
    std::vector<Sealed> sent(400000);
    std::atomic<std::size_t> n_sent{0};
    std::atomic<bool> stop{false};
    std::atomic<unsigned> switched{0};
    unsigned sender_claims = 0;   // keys whose first sequence the sender set (the rest: the control thread)
    std::thread sender([&] {
        SlotReader r(q.q, 1);
        auto e = GcmEngine::make();
        std::size_t n = n_sent.load();
        while (!stop.load(std::memory_order_relaxed) && n + 8 <= sent.size()) {
            r.quiescent();
            TxSlot* slot = t.tx(3, 0);
            const TxKey* k = slot->current();
            if (TxSlot::unclaimed(k)) sender_claims += slot->claim(k);
            TxRef ref = slot->ref_of(k);
            if (n > 256 * (switched.load() + 1)) continue;   // paced: every key carries some
            for (int i = 0; i < 8; ++i) {
                Sealed& x = sent[n++];
                x.seq = ++*ref.seq;
                std::uint8_t hdr[16];
                header_for(hdr, ref.view->p3_id, x.seq);
                for (unsigned j = 0; j < sizeof x.data; ++j) x.data[j] = static_cast<std::uint8_t>(x.seq + j);
                e->seal(ref.view->key[0], hdr, x.data, sizeof x.data, x.tag);
            }
            n_sent.store(n, std::memory_order_release);
        }
    });
    for (unsigned i = 2; i < kKeys; ++i) {
        while (s->last_seq() < first[i - 1] + 7) std::this_thread::yield();   // some packets under each key
        REQUIRE(t.switch_tx(3, 1, mats[i]->k(), mats[i]->s(), out));
        switched = i;
        CHECK(out[0] > first[i - 1]);
        first[i] = out[0];
        CHECK(t.tx(3, 0) == s);               // the lane stays
        CHECK(s->peer_id() == 0x500);
        CHECK(s->view().p3_id == 0x500);
    }
    while (s->last_seq() < first[kKeys - 1] + 7) std::this_thread::yield();
    stop = true;
    sender.join();
    const std::size_t n = n_sent.load();
    REQUIRE(n > 100);

    // Every sequence from 42 on exactly once, in order (the counter never restarted), and each
    // packet opens under exactly one key: the one whose range [first_seq, next first_seq) holds it.
    std::vector<std::unique_ptr<GcmKey>> keys;
    for (const auto& m : mats) keys.push_back(std::make_unique<GcmKey>(m->k(), m->s()));
    auto e = GcmEngine::make();
    unsigned wrong = 0, gaps = 0;
    for (std::size_t i = 0; i < n; ++i) {
        const Sealed& x = sent[i];
        if (x.seq != 42 + i) ++gaps;
        unsigned want = 0;
        while (want + 1 < kKeys && first[want + 1] <= x.seq) ++want;
        std::uint8_t hdr[16];
        header_for(hdr, 0x500, x.seq);
        unsigned opened = 0, under = 0;
        for (unsigned k = 0; k < kKeys; ++k) {
            std::uint8_t copy[32];
            std::memcpy(copy, x.data, sizeof copy);
            if (e->open(*keys[k], hdr, copy, sizeof copy, x.tag)) {
                ++opened;
                under = k;
            }
        }
        if (opened != 1 || under != want) ++wrong;
    }
    CHECK(gaps == 0);
    CHECK(wrong == 0);
    // A busy lane's sender takes the new key right after its quiescent report, while the
    // control thread still finishes its grace period: it usually claims first. Either way the
    // first sequences above were exact.
    CHECK(sender_claims > 0);
    CHECK(s->last_seq() == 41 + n);
    CHECK(s->packets() == s->last_seq() - first[kKeys - 1] + 1);
    CHECK(t.tx_packets(3, 0) == s->packets());
    // Every replaced key object was wiped; the slot itself never freed.
    t.synchronize();
    CHECK(fl.all.size() == kKeys - 1);
    CHECK(fl.freed.empty());
    CHECK(fl.not_wiped == 0);

    // Refused: a lane with no slot, a bad key, a short output; the current key stays.
    const TxKey* cur = s->current();
    CHECK_FALSE(t.switch_tx(3, 2, mats[1]->k(), mats[1]->s(), out));   // lane 1 has none
    std::uint8_t k24[24] = {};
    CHECK_FALSE(t.switch_tx(3, 1, {k24, 24}, mats[1]->s(), out));
    CHECK_FALSE(t.switch_tx(3, 1, mats[1]->k(), mats[1]->s(), std::span<std::uint64_t>{}));
    CHECK(s->current() == cur);
}
