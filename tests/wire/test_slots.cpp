// Key slot table (common/slots.hpp): IDs and generations, reservation, publication, lanes,
// retirement through RCU (a slot is never freed while a reader may hold it, and is wiped
// when it is), and many publish/retire cycles under a concurrent reader.
//
// No EAL: the rte_rcu_qsbr lives on plain memory (qsbr_create) and reader threads are
// std::threads that register thread ids themselves.
#include <catch2/catch.hpp>

#include <atomic>
#include <random>
#include <cstring>
#include <thread>
#include <vector>

#include "common/lanes.hpp"
#include "common/log.hpp"
#include "common/slots.hpp"
#include "tests/wire/slots_util.hpp"

using namespace p3::wire;
using p3::Reason;

using namespace p3test::slots;

TEST_CASE("slots: P3 ID layout is generation | index") {
    static_assert(kSlotIndexBits + kSlotGenerationBits == 32);
    const SlotId id = SlotId::make(5, 0x101);
    CHECK(id.raw() == ((5u << kSlotIndexBits) | 0x101u));
    CHECK(id.index() == 0x101);
    CHECK(id.generation() == 5);
    CHECK(id.valid());
    CHECK(id.lane(3).index() == 0x104);
    CHECK(id.lane(3).generation() == 5);
    CHECK_FALSE(SlotId::make(7, 0).valid());   // index 0 is never used
    CHECK(SlotId::make(kSlotGenerationMax + 1, 1).generation() == 0);   // generation wraps in its bits
    CHECK(SlotId(0xffffffffu).index() == kSlotIndexMask);
    CHECK(SlotId(0xffffffffu).generation() == kSlotGenerationMax);
}

TEST_CASE("slots: table configuration is checked") {
    Qsbr q;
    CHECK_THROWS_AS(SlotTable(SlotTableConfig{1, 1, 1}, q.q), std::invalid_argument);
    CHECK_THROWS_AS(SlotTable(SlotTableConfig{kSlotTableMax + 1, 1, 1}, q.q), std::invalid_argument);
    CHECK_THROWS_AS(SlotTable(SlotTableConfig{16, 0, 1}, q.q), std::invalid_argument);
    CHECK_THROWS_AS(SlotTable(SlotTableConfig{16, 1, kMaxLanes + 1}, q.q), std::invalid_argument);
    CHECK_THROWS_AS(SlotTable(SlotTableConfig{16, 1, 1}, nullptr), std::invalid_argument);
    SlotTable t(SlotTableConfig{kSlotTableMax, 1, 1}, q.q);   // the largest table
    CHECK(t.rx_capacity() == kSlotTableMax);
}

TEST_CASE("slots: publish, look up, retire (RX)") {
    LogCapture logs;
    Qsbr q;
    SlotTable t(SlotTableConfig{64, 8, 4}, q.q);
    FreeLog fl;
    t.set_free_hook(FreeLog::hook, &fl);

    auto id = t.reserve_rx(1);
    REQUIRE(id);
    CHECK(id->valid());
    CHECK(t.stats().rx_reserved == 1);
    CHECK(t.rx(id->raw()) == nullptr);   // reserved: nothing to decrypt with yet

    Material m(7);
    RxParams p;
    p.session = 3;
    p.lane = 0;
    p.size_hiding = SizeHiding::on;
    p.replay_window = 4096;
    REQUIRE(t.publish_rx(*id, m.k(), m.s(), p));
    CHECK(t.stats().rx_reserved == 0);
    CHECK(t.stats().rx_published == 1);

    RxSlot* s = t.rx(id->raw());
    REQUIRE(s != nullptr);
    CHECK(s->id() == *id);
    CHECK(s->session() == 3);
    CHECK(s->size_hiding() == SizeHiding::on);
    CHECK(s->replay().size() == 4096);
    CHECK(s->ref().key == &s->key());
    GcmKey ref(m.k(), m.s());
    CHECK(same_schedule(s->key(), ref));

    // Other generations, index 0, out of range: nothing.
    CHECK(t.rx(SlotId::make(id->generation() + 1, id->index()).raw()) == nullptr);
    CHECK(t.rx(0) == nullptr);
    CHECK(t.rx(SlotId::make(id->generation(), 64).raw()) == nullptr);
    CHECK(t.rx(0xffffffffu) == nullptr);

    // Publishing twice on one ID is refused (not reserved any more).
    CHECK_FALSE(t.publish_rx(*id, m.k(), m.s(), p));
    CHECK(logs.saw(Reason::SLOT_ID_CONFLICT));

    // Retire: gone at once; freed (no reader registered: grace period over) and wiped.
    t.retire_rx(*id);
    CHECK(t.rx(id->raw()) == nullptr);
    CHECK(t.stats().rx_published == 0);
    CHECK(t.stats().pending == 0);
    REQUIRE(fl.freed.size() == 1);
    CHECK(fl.freed[0].rx);
    CHECK(fl.freed[0].id == id->raw());
    CHECK(fl.freed[0].session == 3);
    CHECK(fl.freed[0].bytes >= sizeof(RxSlot) + 8 * ReplayWindow::words_for(4096));
    CHECK(fl.not_wiped == 0);
    CHECK(t.generation_of(id->index()) == id->generation() + 1);
    // Retiring again (stale ID) changes nothing.
    t.retire_rx(*id);
    CHECK(t.generation_of(id->index()) == id->generation() + 1);
    CHECK(fl.freed.size() == 1);
}

TEST_CASE("slots: an RX slot's peer check, resolved by family when the slot is built") {
    Qsbr q;
    SlotTable t(SlotTableConfig{64, 8, 4}, q.q);
    Material m(9);
    auto hdr4 = [](const char* src, const char* dst) {
        std::uint8_t h[40] = {0x45};
        std::memcpy(h + 12, p3::IpAddr::parse(src)->bytes.data(), 4);
        std::memcpy(h + 16, p3::IpAddr::parse(dst)->bytes.data(), 4);
        return std::vector<std::uint8_t>(h, h + 40);
    };
    auto hdr6 = [](const char* src, const char* dst) {
        std::uint8_t h[40] = {0x60};
        std::memcpy(h + 8, p3::IpAddr::parse(src)->bytes.data(), 16);
        std::memcpy(h + 24, p3::IpAddr::parse(dst)->bytes.data(), 16);
        return std::vector<std::uint8_t>(h, h + 40);
    };
    const std::uint16_t port_be = 0x9411;   // 4500, network order on a little-endian host
    struct Case {
        const char* peer;                  // nullptr: any (family 0)
        std::uint16_t peer_port;
        std::vector<std::uint8_t> outer;
        std::uint32_t src;                 // src_tag of how the packet came
        bool pass;
    };
    const Case cases[] = {
        // 1-4: IPv4 peer, native
        {"192.0.2.2", 0, hdr4("192.0.2.2", "192.0.2.1"), RxSlot::src_tag(false, 0), true},
        {"192.0.2.2", 0, hdr4("192.0.2.3", "192.0.2.1"), RxSlot::src_tag(false, 0), false},
        {"192.0.2.2", 0, hdr4("192.0.2.2", "192.0.2.1"), RxSlot::src_tag(true, port_be), false},
        {"192.0.2.2", 0, hdr4("192.0.2.2", "192.0.2.9"), RxSlot::src_tag(false, 0), true},   // dst not read
        // 5-7: IPv4 peer behind UDP 4500
        {"192.0.2.2", 4500, hdr4("192.0.2.2", "192.0.2.1"), RxSlot::src_tag(true, port_be), true},
        {"192.0.2.2", 4500, hdr4("192.0.2.2", "192.0.2.1"), RxSlot::src_tag(true, 0), false},
        {"192.0.2.2", 4500, hdr4("192.0.2.2", "192.0.2.1"), RxSlot::src_tag(false, 0), false},
        // 8-10: IPv6 peer
        {"2001:db8::2", 0, hdr6("2001:db8::2", "2001:db8::1"), RxSlot::src_tag(false, 0), true},
        {"2001:db8::2", 0, hdr6("2001:db8::3", "2001:db8::1"), RxSlot::src_tag(false, 0), false},
        {"2001:db8::2", 0, hdr6("2001:db9::2", "2001:db8::1"), RxSlot::src_tag(false, 0), false},
        // 11-12: any peer, however carried
        {nullptr, 0, hdr4("198.51.100.7", "192.0.2.1"), RxSlot::src_tag(true, 0x1234), true},
        {nullptr, 0, hdr6("2001:db8::9", "2001:db8::1"), RxSlot::src_tag(false, 0), true},
    };
    unsigned n = 0;
    for (const Case& c : cases) {
        ++n;
        CAPTURE(n);
        auto id = t.reserve_rx(1);
        REQUIRE(id);
        RxParams p;
        if (c.peer) p.peer = *p3::IpAddr::parse(c.peer);
        p.peer_port = c.peer_port;
        REQUIRE(t.publish_rx(*id, m.k(), m.s(), p));
        const RxSlot* s = t.rx(id->raw());
        REQUIRE(s != nullptr);
        CHECK(s->from_peer(c.outer.data(), c.src) == c.pass);
        t.retire_rx(*id);
    }
}

TEST_CASE("slots: bad key material is refused and nothing is published") {
    LogCapture logs;
    Qsbr q;
    SlotTable t(SlotTableConfig{16, 4, 2}, q.q);
    auto id = t.reserve_rx(1);
    REQUIRE(id);
    Material m(1);
    const std::uint8_t k24[24] = {};
    struct Case {
        const char* name;
        std::span<const std::uint8_t> key, salt;
        std::uint32_t window;
    } cases[] = {
        {"24-byte key", {k24, 24}, m.s(), 1024},
        {"empty key", {}, m.s(), 1024},
        {"3-byte salt", m.k(), m.s().first(3), 1024},
        {"window 32", m.k(), m.s(), 32},
        {"window 16384", m.k(), m.s(), 16384},
    };
    for (const auto& c : cases) {
        INFO(c.name);
        logs.reasons.clear();
        RxParams p;
        p.replay_window = c.window;
        CHECK_FALSE(t.publish_rx(*id, c.key, c.salt, p));
        CHECK(logs.saw(Reason::SLOT_BAD_KEY));
        CHECK(t.rx(id->raw()) == nullptr);
        CHECK(t.stats().rx_reserved == 1);   // still reserved: the caller may try again
    }
    // AES-256 is fine.
    Material m256(2, 32);
    CHECK(t.publish_rx(*id, m256.k(), m256.s(), RxParams{}));
    REQUIRE(t.rx(id->raw()));
    CHECK(t.rx(id->raw())->key().type() == KeyType::aes256);
    CHECK(t.stats().freed == 0);   // refused slots were never published, so never "freed"
}

TEST_CASE("slots: a retired P3 ID never finds a key, even after its index is reused") {
    LogCapture logs;
    Qsbr q;
    // Capacity 2: index 1 is the only one, so every reservation reuses it.
    SlotTable t(SlotTableConfig{2, 1, 1}, q.q);
    std::vector<SlotId> old_ids;
    for (std::uint32_t round = 0; round < 5; ++round) {
        INFO("round " << round);
        auto id = t.reserve_rx(1);
        REQUIRE(id);
        CHECK(id->index() == 1);
        CHECK(id->generation() == round + 1);   // from 1, one generation further per retirement
        Material m(round);
        REQUIRE(t.publish_rx(*id, m.k(), m.s(), RxParams{}));
        for (SlotId old : old_ids) CHECK(t.rx(old.raw()) == nullptr);   // stale generation
        RxSlot* s = t.rx(id->raw());
        REQUIRE(s);
        CHECK(same_schedule(s->key(), GcmKey(m.k(), m.s())));
        CHECK_FALSE(t.reserve_rx(1));   // full
        CHECK(logs.saw(Reason::SLOT_NO_FREE_ID));
        t.retire_rx(*id);
        old_ids.push_back(*id);
    }
}

TEST_CASE("slots: generations run 1..2047 and wrap to 1: an ID handed out is never < 256 nor has its top bit") {
    LogCapture logs;
    Qsbr q;
    SlotTable t(SlotTableConfig{2, 1, 1}, q.q);
    for (std::uint32_t i = kSlotGenerationFirst; i <= kSlotGenerationLast; ++i) {
        auto id = t.reserve_rx(1);
        REQUIRE(id);
        REQUIRE(id->generation() == i);
        REQUIRE(id->raw() >= 256u);
        REQUIRE(id->raw() < kFlagUdp);
        t.retire_rx(*id);
    }
    CHECK(t.generation_of(1) == kSlotGenerationFirst);
    auto id = t.reserve_rx(1);
    REQUIRE(id);
    CHECK(id->generation() == 1);
    CHECK(id->raw() == (1u << kSlotIndexBits | 1u));
    t.retire_rx(*id);
    // An exact ID from the configuration may carry any generation; retired, the index goes
    // back to the handed-out range.
    REQUIRE(t.reserve_rx_at(SlotId::make(4000, 1), 1));
    t.retire_rx(SlotId::make(4000, 1));
    auto again = t.reserve_rx(1);
    REQUIRE(again);
    CHECK(again->generation() == 1);
    CHECK(again->raw() < kFlagUdp);
}

TEST_CASE("slots: reservations: blocks, next fit, exact IDs, conflicts") {
    LogCapture logs;
    Qsbr q;
    SlotTable t(SlotTableConfig{32, 4, 4}, q.q);
    auto a = t.reserve_rx(4);
    REQUIRE(a);
    CHECK(a->index() == 1);   // index 0 is never handed out
    auto b = t.reserve_rx(3);
    REQUIRE(b);
    CHECK(b->index() == 5);
    CHECK(t.stats().rx_reserved == 7);

    // Exact reservations (static keys).
    struct Case {
        const char* name;
        SlotId base;
        std::uint32_t n;
        bool ok;
    } cases[] = {
        {"overlaps a block", SlotId::make(0, 6), 2, false},
        {"index 0", SlotId::make(0, 0), 1, false},
        {"runs past the end", SlotId::make(0, 30), 3, false},
        {"beyond the table", SlotId::make(0, 40), 1, false},
        {"zero IDs", SlotId::make(0, 20), 0, false},
        {"free, generation 9", SlotId::make(9, 20), 2, true},
        {"now taken", SlotId::make(9, 21), 1, false},
        {"last index", SlotId::make(1, 31), 1, true},
    };
    for (const auto& c : cases) {
        INFO(c.name);
        logs.reasons.clear();
        CHECK(t.reserve_rx_at(c.base, c.n) == c.ok);
        CHECK(logs.saw(Reason::SLOT_ID_CONFLICT) == !c.ok);
    }
    CHECK(t.generation_of(20) == 9);
    CHECK(t.generation_of(21) == 9);

    // Publishing needs the right generation of a reserved ID.
    Material m(3);
    CHECK_FALSE(t.publish_rx(SlotId::make(8, 20), m.k(), m.s(), RxParams{}));
    CHECK(t.publish_rx(SlotId::make(9, 20), m.k(), m.s(), RxParams{}));

    // A retired block is not handed out again while other indices are free (next fit).
    t.retire_rx(a->lane(0));
    t.retire_rx(a->lane(1));
    auto c = t.reserve_rx(2);
    REQUIRE(c);
    CHECK(c->index() == 8);
    // Releasing a reservation that was never published frees the index too.
    t.retire_rx(c->lane(1));
    CHECK(t.generation_of(9) == c->generation() + 1);

    // A block takes the highest next generation of its indices.
    SlotTable u(SlotTableConfig{8, 1, 1}, q.q);
    REQUIRE(u.reserve_rx_at(SlotId::make(5, 2), 1));
    u.retire_rx(SlotId::make(5, 2));   // index 2 -> next generation 6
    // Cursor at 1: the block 1..3 has generations 0, 6, 0 -> 6.
    auto d = u.reserve_rx(3);
    REQUIRE(d);
    CHECK(d->index() == 1);
    CHECK(d->generation() == 6);
    CHECK_FALSE(u.reserve_rx(kMaxLanes + 1));
    CHECK_FALSE(u.reserve_rx(0));
    auto e = u.reserve_rx(4);   // 4..7 is free
    REQUIRE(e);
    CHECK(e->index() == 4);
    CHECK_FALSE(u.reserve_rx(1));   // full
}

TEST_CASE("slots: TX slots per session and lane, replaced and retired") {
    LogCapture logs;
    Qsbr q;
    SlotTable t(SlotTableConfig{16, 10, 4}, q.q);
    FreeLog fl;
    t.set_free_hook(FreeLog::hook, &fl);
    Material m(11);
    TxParams p = tx_params(7, 0x201);
    p.lane = 2;
    REQUIRE(t.publish_tx(m.k(), m.s(), p));
    TxSlot* s = t.tx(7, 2);
    REQUIRE(s);
    CHECK(t.tx(7, 1) == nullptr);
    CHECK(t.tx(7, 4) == nullptr);    // lane out of range
    CHECK(t.tx(10, 0) == nullptr);   // session out of range
    CHECK(s->session() == 7);
    CHECK(s->lane() == 2);
    CHECK(s->peer_id() == 0x201);
    CHECK(s->view().p3_id == 0x201);
    CHECK(s->view().key == &s->key());
    CHECK(same_schedule(s->key(), GcmKey(m.k(), m.s())));
    // The lane's counter: the last sequence sent, starting at 0 (first packet = 1).
    TxRef r = s->ref();
    CHECK(r.view == &s->view());
    CHECK(*r.seq == 0);
    *r.seq = 41;   // as encap_burst would after 41 packets
    CHECK(s->last_seq() == 41);
    CHECK(t.stats().tx_published == 1);

    // A new key replaces the slot with one store; the old one is retired and freed.
    Material m2(12);
    REQUIRE(t.publish_tx(m2.k(), m2.s(), p));
    TxSlot* s2 = t.tx(7, 2);
    REQUIRE(s2);
    CHECK(s2 != s);
    CHECK(s2->last_seq() == 0);   // a new key starts a new sequence
    CHECK(t.stats().tx_published == 1);
    REQUIRE(fl.freed.size() == 1);
    CHECK_FALSE(fl.freed[0].rx);
    CHECK(fl.freed[0].id == 0x201);
    CHECK(fl.not_wiped == 0);

    // Carrying a sequence over (the same key re-published with other outer addresses).
    TxParams carry = p;
    carry.last_seq = 1000;
    carry.lane = 3;
    REQUIRE(t.publish_tx(m2.k(), m2.s(), carry));
    CHECK(t.tx(7, 3)->last_seq() == 1000);

    // Refused: out of range, bad key, peer ID 0, exhausted sequence, mixed families.
    struct Case {
        const char* name;
        TxParams p;
        std::size_t key_len;
        Reason why;
    };
    TxParams bad_range = p;
    bad_range.lane = 4;
    TxParams bad_id = p;
    bad_id.peer_id = 0;
    TxParams bad_seq = p;
    bad_seq.last_seq = kSeqHardLimit;
    TxParams bad_family = p;
    bad_family.outer.dst = *p3::IpAddr::parse("2001:db8::2");
    const Case cases[] = {
        {"lane out of range", bad_range, 16, Reason::SLOT_ID_CONFLICT},
        {"20-byte key", p, 20, Reason::SLOT_BAD_KEY},
        {"peer ID 0", bad_id, 16, Reason::SLOT_BAD_KEY},
        {"sequence exhausted", bad_seq, 16, Reason::SLOT_BAD_KEY},
        {"mixed address families", bad_family, 16, Reason::SLOT_BAD_KEY},
    };
    for (const auto& c : cases) {
        INFO(c.name);
        logs.reasons.clear();
        CHECK_FALSE(t.publish_tx({m.key, c.key_len}, m.s(), c.p));
        CHECK(logs.saw(c.why));
        CHECK(t.tx(7, 2) == s2);   // the current slot stays
    }

    t.retire_tx_session(7);
    CHECK(t.tx(7, 2) == nullptr);
    CHECK(t.tx(7, 3) == nullptr);
    CHECK(t.stats().tx_published == 0);
    CHECK(fl.freed.size() == 3);
    CHECK(fl.not_wiped == 0);
}

TEST_CASE("slots: lanes get derived keys; what lane n seals, only lane n opens") {
    LogCapture logs;
    Qsbr q;
    SlotTable t(SlotTableConfig{64, 4, 4}, q.q);
    Material m(21);
    const unsigned lanes = 4;
    auto base = t.reserve_rx(lanes);
    REQUIRE(base);
    RxParams rp;
    rp.session = 1;
    REQUIRE(t.publish_rx_lanes(*base, lanes, m.k(), m.s(), rp));
    TxParams tp = tx_params(1, base->raw());
    REQUIRE(t.publish_tx_lanes(lanes, m.k(), m.s(), tp));

    auto engine = GcmEngine::make();
    REQUIRE(engine);
    for (unsigned n = 0; n < lanes; ++n) {
        INFO("lane " << n);
        RxSlot* rx = t.rx(base->lane(n).raw());
        TxSlot* tx = t.tx(1, static_cast<std::uint16_t>(n));
        REQUIRE(rx);
        REQUIRE(tx);
        CHECK(rx->lane() == n);
        CHECK(tx->peer_id() == base->lane(n).raw());   // we send lane n to the peer's base + n
        auto mat = lane_key_material(m.k(), m.s(), n);
        REQUIRE(mat.size() == 20);
        const GcmKey want(mat);
        CHECK(same_schedule(rx->key(), want));
        CHECK(same_schedule(tx->key(), want));
        if (n == 0) CHECK(same_schedule(rx->key(), GcmKey(m.k(), m.s())));   // lane 0: as is

        // Seal under TX lane n, open under each RX lane: only lane n verifies.
        std::uint8_t hdr[16] = {0, 0, 0, 0};
        const std::uint32_t id_be = __builtin_bswap32(tx->peer_id());
        std::memcpy(hdr + 4, &id_be, 4);
        hdr[15] = 1;
        std::uint8_t data[64];
        for (unsigned i = 0; i < sizeof data; ++i) data[i] = static_cast<std::uint8_t>(i);
        std::uint8_t tag[16];
        engine->seal(tx->key(), hdr, data, sizeof data, tag);
        for (unsigned k = 0; k < lanes; ++k) {
            std::uint8_t copy[64];
            std::memcpy(copy, data, sizeof copy);
            const bool ok = engine->open(t.rx(base->lane(k).raw())->key(), hdr, copy, sizeof copy, tag);
            CHECK(ok == (k == n));
            if (ok) CHECK(copy[63] == 63);
        }
    }
    // All or nothing: lanes beyond the reserved block fail before any lane is published
    // (the IDs stay reserved).
    auto b2 = t.reserve_rx(2);
    REQUIRE(b2);
    CHECK_FALSE(t.publish_rx_lanes(*b2, 3, m.k(), m.s(), rp));
    CHECK(t.rx(b2->lane(0).raw()) == nullptr);
    CHECK(t.rx(b2->lane(1).raw()) == nullptr);
    CHECK(t.stats().rx_reserved == 2);
    CHECK(t.publish_rx_lanes(*b2, 2, m.k(), m.s(), rp));
    // TX: a lane beyond the table fails the whole call.
    CHECK_FALSE(t.publish_tx_lanes(5, m.k(), m.s(), tx_params(2, 0x300)));
    CHECK(t.tx(2, 0) == nullptr);
    // A rekey that cannot be built leaves every current lane as it was.
    TxSlot* before[lanes];
    for (unsigned n = 0; n < lanes; ++n) before[n] = t.tx(1, static_cast<std::uint16_t>(n));
    TxParams bad = tx_params(1, 0x400);
    bad.outer.dst = *p3::IpAddr::parse("2001:db8::9");   // mixed families: no view
    Material m2(22);
    CHECK_FALSE(t.publish_tx_lanes(lanes, m2.k(), m2.s(), bad));
    const std::uint8_t k24[24] = {};
    CHECK_FALSE(t.publish_tx_lanes(lanes, {k24, 24}, m2.s(), tx_params(1, 0x400)));
    for (unsigned n = 0; n < lanes; ++n) CHECK(t.tx(1, static_cast<std::uint16_t>(n)) == before[n]);
    CHECK(t.stats().pending == 0);
    // A good rekey replaces all lanes.
    REQUIRE(t.publish_tx_lanes(lanes, m2.k(), m2.s(), tx_params(1, 0x400)));
    for (unsigned n = 0; n < lanes; ++n) {
        CHECK(t.tx(1, static_cast<std::uint16_t>(n)) != before[n]);
        CHECK(t.tx(1, static_cast<std::uint16_t>(n))->peer_id() == 0x400 + n);
    }
    CHECK(t.stats().tx_published == lanes);
    CHECK_FALSE(t.publish_rx_lanes(*b2, 0, m.k(), m.s(), rp));
    CHECK_FALSE(t.publish_rx_lanes(*b2, kMaxLanes + 1, m.k(), m.s(), rp));
}

TEST_CASE("slots: RCU: a retired slot is not freed while a reader holds it, then freed and wiped") {
    LogCapture logs;
    Qsbr q(4);
    SlotTable t(SlotTableConfig{16, 4, 2}, q.q);
    FreeLog fl;
    t.set_free_hook(FreeLog::hook, &fl);
    auto id = t.reserve_rx(1);
    REQUIRE(id);
    Material m(99);
    REQUIRE(t.publish_rx(*id, m.k(), m.s(), RxParams{}));
    REQUIRE(t.publish_tx(m.k(), m.s(), tx_params(1, 0x77)));
    const GcmKey want(m.k(), m.s());

    // 0: start, 1: reader holds both slots, 2: main retired them, 3: reader verified,
    // 4: reader reported quiescent, 5: done.
    std::atomic<int> phase{0};
    std::atomic<bool> key_intact{false}, session_intact{false};
    std::thread reader([&] {
        SlotReader r(q.q, 2);
        r.quiescent();
        RxSlot* rs = t.rx(id->raw());
        TxSlot* ts = t.tx(1, 0);
        if (!rs || !ts) {
            phase = -1;
            return;
        }
        phase = 1;
        while (phase.load() != 2) std::this_thread::yield();
        // Still inside the read section: the memory must be intact, not wiped.
        key_intact = same_schedule(rs->key(), want) && same_schedule(ts->key(), want);
        session_intact = rs->id() == *id && ts->peer_id() == 0x77;
        phase = 3;
        r.quiescent();   // done with the pointers
        phase = 4;
        while (phase.load() != 5) std::this_thread::yield();
    });
    while (phase.load() == 0) std::this_thread::yield();
    REQUIRE(phase.load() == 1);

    t.retire_rx(*id);
    t.retire_tx(1, 0);
    CHECK(t.rx(id->raw()) == nullptr);   // new lookups miss at once
    CHECK(t.tx(1, 0) == nullptr);
    for (int i = 0; i < 100; ++i) CHECK(t.reclaim() == 0);
    CHECK(t.stats().pending == 2);
    CHECK(t.stats().freed == 0);
    CHECK(fl.freed.empty());
    phase = 2;
    while (phase.load() < 4) std::this_thread::yield();
    CHECK(key_intact.load());
    CHECK(session_intact.load());

    // The reader reported quiescent after the retirement: both slots go now, wiped.
    CHECK(t.reclaim() == 2);
    CHECK(t.stats().pending == 0);
    REQUIRE(fl.freed.size() == 2);
    CHECK(fl.not_wiped == 0);
    phase = 5;
    reader.join();
}

TEST_CASE("slots: RCU: offline readers do not hold back reclamation; synchronize waits for online ones") {
    LogCapture logs;
    Qsbr q(4);
    SlotTable t(SlotTableConfig{16, 4, 2}, q.q);
    Material m(5);
    std::atomic<int> phase{0};
    std::thread reader([&] {
        SlotReader r(q.q, 1);
        r.offline();   // blocked or sleeping: not a reader
        phase = 1;
        while (phase.load() != 2) std::this_thread::yield();
        r.online();
        phase = 3;
        // Report quiescent until told to stop (so synchronize() can finish).
        while (phase.load() != 4) r.quiescent();
    });
    while (phase.load() != 1) std::this_thread::yield();
    auto id = t.reserve_rx(1);
    REQUIRE(id);
    REQUIRE(t.publish_rx(*id, m.k(), m.s(), RxParams{}));
    t.retire_rx(*id);
    CHECK(t.stats().pending == 0);   // the only reader is offline
    phase = 2;
    while (phase.load() != 3) std::this_thread::yield();
    auto id2 = t.reserve_rx(1);
    REQUIRE(id2);
    REQUIRE(t.publish_rx(*id2, m.k(), m.s(), RxParams{}));
    t.retire_rx(*id2);
    t.synchronize();   // waits for the online reader's next quiescent report
    CHECK(t.stats().pending == 0);
    CHECK(t.stats().freed == 2);
    phase = 4;
    reader.join();
}

TEST_CASE("slots: many publish/retire cycles under concurrent readers lose nothing") {
    // Readers look up every ID the writer may use, check that what they find is the slot that
    // ID was published with (the key material carries the ID), and report quiescent once per
    // pass. Under ASan any read of a freed slot fails the run.
    LogCapture logs;
    Qsbr q(4);
    SlotTable t(SlotTableConfig{32, 4, 4}, q.q);
    FreeLog fl;
    t.set_free_hook(FreeLog::hook, &fl);

    // The writer leaves the last ID it published per index here, so readers aim at live
    // slots; the generation before it was retired before it was published, so it never hits.
    std::atomic<std::uint32_t> hint[32] = {};
    std::atomic<bool> stop{false};
    std::atomic<std::uint64_t> hits{0}, wrong{0}, stale_hits{0}, passes{0};
    auto reader_fn = [&](unsigned tid, bool owns_tx) {
        SlotReader r(q.q, tid);
        std::uint64_t h = 0, bad = 0, stale = 0, n = 0;
        while (!stop.load(std::memory_order_relaxed)) {
            r.quiescent();   // top of the loop: no slot pointer held
            for (std::uint32_t idx = 1; idx < 32; ++idx) {
                const SlotId id(hint[idx].load(std::memory_order_relaxed));
                if (!id.valid()) continue;
                if (id.generation() > 0 && t.rx(SlotId::make(id.generation() - 1, idx).raw())) ++stale;
                RxSlot* s = t.rx(id.raw());
                if (!s) continue;   // retired meanwhile
                ++h;
                std::uint32_t tag;
                std::memcpy(&tag, s->key().salt(), 4);
                if (tag != s->id().raw() || s->id() != id || s->session() != (id.raw() & 0xffff)) ++bad;
                if (owns_tx) s->replay().update(n + 1);   // the window's single writer: this reader
            }
            for (std::uint16_t lane = 0; lane < 4 && owns_tx; ++lane) {
                TxSlot* s = t.tx(lane, lane);
                if (!s) continue;
                ++h;
                std::uint32_t tag;
                std::memcpy(&tag, s->key().salt(), 4);
                if (tag != s->peer_id()) ++bad;
                *s->ref().seq += 1;   // this reader is the lane's only sender
            }
            ++n;
        }
        hits += h;
        wrong += bad;
        stale_hits += stale;
        passes += n;
    };
    std::thread r1(reader_fn, 0, true);
    std::thread r2(reader_fn, 1, false);

    std::vector<SlotId> live;
    std::uint64_t published = 0;
    const int kCycles = 3000;
    for (int c = 0; c < kCycles; ++c) {
        auto id = t.reserve_rx(1 + c % 3);
        if (id) {
            const std::uint32_t n = 1 + c % 3;
            for (std::uint32_t l = 0; l < n; ++l) {
                const SlotId lid = id->lane(l);
                Material m(lid.raw());
                RxParams p;
                p.session = lid.raw() & 0xffff;
                p.lane = static_cast<std::uint16_t>(l);
                REQUIRE(t.publish_rx(lid, m.k(), m.s(), p));
                hint[lid.index()].store(lid.raw(), std::memory_order_relaxed);
                ++published;
                live.push_back(lid);
            }
        }
        // Retire the oldest until at most 20 are live.
        while (live.size() > 20) {
            t.retire_rx(live.front());
            live.erase(live.begin());
        }
        // TX: replace one lane's key.
        const std::uint16_t lane = static_cast<std::uint16_t>(c % 4);
        const std::uint32_t peer = 0x1000u + static_cast<std::uint32_t>(c);
        Material m(peer);
        TxParams tp = tx_params(lane, peer);
        tp.lane = lane;
        REQUIRE(t.publish_tx(m.k(), m.s(), tp));
        ++published;
        if (c % 50 == 0) std::this_thread::yield();
        t.reclaim();
    }
    stop = true;
    r1.join();
    r2.join();
    for (SlotId id : live) t.retire_rx(id);
    t.retire_tx_session(0);
    t.retire_tx_session(1);
    t.retire_tx_session(2);
    t.retire_tx_session(3);
    t.synchronize();

    CHECK(wrong.load() == 0);
    CHECK(stale_hits.load() == 0);
    CHECK(passes.load() > 0);
    CHECK(t.stats().pending == 0);
    CHECK(t.stats().rx_published == 0);
    CHECK(t.stats().tx_published == 0);
    CHECK(fl.freed.size() == published);   // every slot published was freed exactly once
    CHECK(fl.not_wiped == 0);
    INFO("reader hits " << hits.load() << ", passes " << passes.load());
    CHECK(hits.load() > 0);
}

TEST_CASE("slots: capacity for 10,000 remotes x 2 lanes, each with a current and a next key, without hugepages") {
    LogCapture logs;
    Qsbr q;
    const std::uint32_t remotes = 10000, lanes = 2;
    SlotTable t(SlotTableConfig{remotes * lanes + 1, remotes + 1, lanes}, q.q);
    Material m(1), next(2);
    std::vector<SlotId> ids;
    for (std::uint32_t r = 1; r <= remotes; ++r) {
        auto base = t.reserve_rx(lanes);   // one block for the session's life
        REQUIRE(base);
        RxParams p;
        p.session = r;
        REQUIRE(t.publish_rx_lanes(*base, lanes, m.k(), m.s(), p));
        REQUIRE(t.set_next_rx_lanes(*base, lanes, next.k(), next.s()));   // a rekey in flight
        ids.push_back(*base);
        TxParams tp = tx_params(r, 0x100);
        for (std::uint32_t l = 0; l < lanes; ++l) {
            tp.lane = static_cast<std::uint16_t>(l);
            REQUIRE(t.publish_tx(m.k(), m.s(), tp));
        }
    }
    CHECK(t.stats().rx_published == remotes * lanes);
    CHECK(t.stats().tx_published == remotes * lanes);
    CHECK_FALSE(t.reserve_rx(1));   // exactly full
    // Every ID finds its own slot, with both keys.
    std::uint32_t found = 0;
    for (SlotId id : ids)
        for (std::uint32_t l = 0; l < lanes; ++l) {
            const RxSlot* s = t.rx(id.lane(l).raw());
            found += s != nullptr && s->id() == id.lane(l) && s->keys()->next != nullptr;
        }
    CHECK(found == remotes * lanes);
}

TEST_CASE("slots: random reserve/publish/retire sequences agree with a model") {
    // Model: per index, the ID it holds and whether it is published. After every step every
    // ID ever handed out must look up exactly as the model says (a retired one: never).
    LogCapture logs;
    Qsbr q;
    const std::uint32_t cap = 48;
    SlotTable t(SlotTableConfig{cap, 4, 2}, q.q);
    FreeLog fl;
    t.set_free_hook(FreeLog::hook, &fl);
    struct Held {
        SlotId id;
        bool published;
    };
    std::vector<Held> held;                 // IDs currently reserved or published
    std::vector<SlotId> retired;            // every ID retired so far
    std::mt19937 rng(12345);
    std::uint64_t published_total = 0;
    unsigned mismatches = 0;
    for (int step = 0; step < 6000; ++step) {
        const unsigned op = rng() % 10;
        if (op < 4) {   // reserve a block
            const std::uint32_t n = 1 + rng() % 4;
            std::uint32_t in_use = static_cast<std::uint32_t>(held.size());
            auto base = t.reserve_rx(n);
            if (base) {
                for (std::uint32_t l = 0; l < n; ++l) {
                    const SlotId id = base->lane(l);
                    for (const Held& h : held) mismatches += h.id.index() == id.index();   // index taken twice
                    for (const SlotId& r : retired) mismatches += r == id;                   // retired ID back
                    held.push_back({id, false});
                }
            } else {
                mismatches += in_use == 0;   // an empty table refused a block
            }
        } else if (op < 7 && !held.empty()) {   // publish a reserved ID
            Held& h = held[rng() % held.size()];
            Material m(h.id.raw());
            const bool ok = t.publish_rx(h.id, m.k(), m.s(), RxParams{});
            mismatches += ok == h.published;   // only a reserved ID can be published
            if (ok) {
                h.published = true;
                ++published_total;
            }
        } else if (!held.empty()) {   // retire
            const std::size_t i = rng() % held.size();
            t.retire_rx(held[i].id);
            retired.push_back(held[i].id);
            held.erase(held.begin() + static_cast<std::ptrdiff_t>(i));
        }
        // Check the whole table against the model.
        for (const Held& h : held) {
            RxSlot* s = t.rx(h.id.raw());
            mismatches += (s != nullptr) != h.published;
            if (s) mismatches += s->id() != h.id;
        }
        if (step % 50 == 0)
            for (const SlotId& r : retired) mismatches += t.rx(r.raw()) != nullptr;
        std::uint32_t npub = 0;
        for (const Held& h : held) npub += h.published;
        mismatches += t.stats().rx_published != npub;
        mismatches += t.stats().rx_reserved != held.size() - npub;
    }
    CHECK(mismatches == 0);
    for (const Held& h : held) t.retire_rx(h.id);
    t.synchronize();
    CHECK(fl.freed.size() == published_total);
    CHECK(fl.not_wiped == 0);
    CHECK(retired.size() > 1000);
}
