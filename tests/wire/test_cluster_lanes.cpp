// Lanes of cluster members (docs/cluster.md §Lanes of a member): two members of one session
// send on disjoint lane ranges, under different P3 IDs and keys derived per session lane;
// the peer, which receives every lane of the session, opens what either sends, each lane
// with its own replay window (both members' first sequences are accepted).
#include <catch2/catch.hpp>

#include <cstring>

#include "common/config.hpp"
#include "common/lanes.hpp"
#include "common/slots.hpp"
#include "tests/wire/slots_util.hpp"

using namespace p3test::slots;

namespace {

p3::config::Config member(std::uint32_t m, std::uint32_t max) {
    p3::config::Config c;
    c.local.cluster_state = 1;
    c.cluster.member = m;
    c.cluster.max_members = max;
    return c;
}

// Seals one packet of sequence seq on TX slot tx; true when RX slot rx opens it and its
// replay window takes the sequence.
bool deliver(GcmEngine& e, const TxSlot& tx, RxSlot& rx, std::uint64_t seq) {
    std::uint8_t hdr[16] = {};
    const std::uint32_t id_be = __builtin_bswap32(tx.peer_id());
    const std::uint64_t seq_be = __builtin_bswap64(seq);
    std::memcpy(hdr + 4, &id_be, 4);
    std::memcpy(hdr + 8, &seq_be, 8);
    std::uint8_t data[48], tag[16];
    for (unsigned i = 0; i < sizeof data; ++i) data[i] = static_cast<std::uint8_t>(i ^ seq);
    e.seal(tx.key(), hdr, data, sizeof data, tag);
    if (rx.replay().check(seq) != ReplayResult::ok) return false;
    if (!e.open(rx.key(), hdr, data, sizeof data, tag)) return false;
    return rx.replay().update(seq) == ReplayResult::ok;
}

}  // namespace

TEST_CASE("cluster lanes: a member's lanes are its own range of the session's max_members x L", "[cluster][lanes]") {
    const auto one = p3::config::member_lanes(member(1, 4), 3), three = p3::config::member_lanes(member(3, 4), 3);
    CHECK(one.offset == 0);
    CHECK(three.offset == 6);
    CHECK(one.total == 12);
    CHECK(three.total == 12);
    CHECK(three.per_member == 3);
    p3::config::Config off;   // not a cluster: one member, the lanes as they are
    const auto solo = p3::config::member_lanes(off, 3);
    CHECK(solo.offset == 0);
    CHECK(solo.total == 3);
    // A worker count the file could not know is capped to what a session holds.
    const auto capped = p3::config::member_lanes(member(16, 16), 8);
    CHECK(capped.total <= kMaxLanes);
    CHECK(capped.offset + capped.per_member <= capped.total);
}

TEST_CASE("cluster lanes: two members send under different IDs and keys; the peer opens both, a window per lane",
          "[cluster][lanes]") {
    LogCapture logs;
    Qsbr q;
    const std::uint32_t L = 2, M = 2;
    Material session(41);   // the session's outbound key material, the same on every member
    // The peer receives all M x L lanes of the session.
    SlotTable peer(SlotTableConfig{64, 4, 4}, q.q);
    auto base = peer.reserve_rx(M * L);
    REQUIRE(base);
    RxParams rp;
    rp.session = 1;
    REQUIRE(peer.publish_rx_lanes(*base, M * L, session.k(), session.s(), rp));

    SlotTable m1(SlotTableConfig{64, 4, 4}, q.q), m2(SlotTableConfig{64, 4, 4}, q.q);
    const auto l1 = p3::config::member_lanes(member(1, M), L), l2 = p3::config::member_lanes(member(2, M), L);
    REQUIRE(l1.total == M * L);
    REQUIRE(m1.publish_tx_lanes(L, session.k(), session.s(), tx_params(1, base->raw()), l1.offset));
    REQUIRE(m2.publish_tx_lanes(L, session.k(), session.s(), tx_params(1, base->raw()), l2.offset));

    auto engine = GcmEngine::make();
    REQUIRE(engine);
    for (std::uint32_t n = 0; n < L; ++n) {
        INFO("member lane " << n);
        const TxSlot* a = m1.tx(1, static_cast<std::uint16_t>(n));
        const TxSlot* b = m2.tx(1, static_cast<std::uint16_t>(n));
        REQUIRE(a);
        REQUIRE(b);
        // Disjoint session lanes: member 1 has 0..L-1, member 2 L..2L-1.
        CHECK(a->peer_id() == base->lane(n).raw());
        CHECK(b->peer_id() == base->lane(L + n).raw());
        CHECK_FALSE(same_schedule(a->key(), b->key()));
        CHECK(same_schedule(b->key(), GcmKey(lane_key_material(session.k(), session.s(), L + n))));
        for (std::uint32_t k = 0; k < L; ++k) CHECK(b->peer_id() != m1.tx(1, static_cast<std::uint16_t>(k))->peer_id());
        // Both members start at sequence 1 on their own lanes: the peer takes each (one
        // window per lane), opening under that lane's key only.
        RxSlot* ra = peer.rx(a->peer_id());
        RxSlot* rb = peer.rx(b->peer_id());
        REQUIRE(ra);
        REQUIRE(rb);
        for (std::uint64_t s = 1; s <= 3; ++s) {
            CHECK(deliver(*engine, *a, *ra, s));
            CHECK(deliver(*engine, *b, *rb, s));
        }
        CHECK_FALSE(deliver(*engine, *a, *ra, 2));   // a replay on a lane is still one
        CHECK_FALSE(deliver(*engine, *b, *ra, 4));   // member 2's key does not open member 1's lane
    }
    // A range beyond the session's lanes is refused.
    CHECK_FALSE(m2.publish_tx_lanes(L, session.k(), session.s(), tx_params(2, base->raw()), kMaxLanes - 1));
}
