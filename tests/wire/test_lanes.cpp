// Lane key material: lane 0 is the key as it is; lane n is HKDF-SHA256 exactly as DESIGN.md
// words it, checked against an HKDF written out with HMAC and against vectors computed by the
// independent Python decoder (tests/tools/p3_decode.py, module cryptography).
#include <catch2/catch.hpp>

#include "common/lanes.hpp"
#include "common/wire_limits.hpp"
#include "tests/wire/test_wire_util.hpp"

using namespace p3::wire;
using p3test::Bytes;
using p3test::hex;

namespace {
Bytes bytes_of(const p3::SecretBytes& s) { return Bytes(s.data(), s.data() + s.size()); }
}  // namespace

TEST_CASE("lane 0 is the key material itself", "[lanes]") {
    const Bytes k = hex("000102030405060708090a0b0c0d0e0f"), s = hex("0a0b0c0d");
    Bytes want = k;
    want.insert(want.end(), s.begin(), s.end());
    CHECK(bytes_of(lane_key_material(k, s, 0)) == want);
}

TEST_CASE("lane n: HKDF-SHA256(key || salt, no salt, \"p3 lane\" || n BE, key length + 4)", "[lanes]") {
    struct V {
        std::uint32_t lane;
        const char* key;
        const char* out;
    };
    // From p3_decode.py's lane_keys() (cryptography's HKDF).
    const V vs[] = {
        {1, "000102030405060708090a0b0c0d0e0f", "e5a3d1e2e40d4b2a2b0d9adf3260451a053c2e61"},
        {2, "000102030405060708090a0b0c0d0e0f", "d9039d16c569502b0093d8c5014d77c4d5bfcc09"},
        {63, "000102030405060708090a0b0c0d0e0f", "a88cd4af678529ac9298b6db2f93eba9914b4e3d"},
        {5, "202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f",
         "dbc7136785f38ebe82190f73d9eaa38288f6101afff1b2c51fb05be2aa9f983f100debc7"},
    };
    const Bytes s = hex("0a0b0c0d");
    for (const V& v : vs) {
        CAPTURE(v.lane, v.key);
        const Bytes k = hex(v.key);
        const Bytes got = bytes_of(lane_key_material(k, s, v.lane));
        CHECK(got == hex(v.out));
        CHECK(got == p3test::oracle_lane(k, s, v.lane));
    }
}

TEST_CASE("lanes are distinct from each other and from lane 0; bad input gives nothing", "[lanes]") {
    const Bytes k(32, 0x42), s(4, 0x17);
    std::vector<Bytes> seen;
    for (std::uint32_t n = 0; n < kMaxLanes; ++n) {
        Bytes b = bytes_of(lane_key_material(k, s, n));
        REQUIRE(b.size() == 36);
        CHECK(b == p3test::oracle_lane(k, s, n));
        for (const Bytes& o : seen) CHECK(o != b);
        seen.push_back(b);
    }
    CHECK(lane_key_material(k, s, kMaxLanes).empty());
    const Bytes k24(24, 1), s3(3, 1), s5(5, 1);
    CHECK(lane_key_material(k24, s, 1).empty());
    CHECK(lane_key_material(k, s3, 1).empty());
    CHECK(lane_key_material(k, s5, 0).empty());
}
