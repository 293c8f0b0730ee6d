// Size hiding building blocks: bucket lengths and their caps, padding from the packet's own
// bytes, the rotation's range and its exact inverse, and the per-key rotation secret against
// an independent HKDF.
#include <catch2/catch.hpp>

#include <numeric>

#include "common/sizehide.hpp"
#include "tests/wire/test_wire_util.hpp"

using namespace p3::wire;
using p3test::Bytes;
using p3test::hex;

TEST_CASE("plaintext lengths: ESP alignment without size hiding, buckets with it", "[sizehide]") {
    struct Row {
        std::size_t inner, cap, plain, hidden;
    };
    const Row rows[] = {
        // inner  cap   plain  hidden
        {0, 0, 4, 256},      {20, 0, 24, 256},    {22, 0, 24, 256},     {23, 0, 28, 256},
        {253, 0, 256, 256},  {254, 0, 256, 256},  {255, 0, 260, 512},   {1400, 0, 1404, 1536},
        {1400, 1460, 1404, 1460}, {1400, 1402, 1404, 1404}, {1400, 1403, 1404, 1404},
        {100, 130, 104, 128}, {100, 3, 104, 104},  {9000, 0, 9004, 9216},
    };
    for (const Row& r : rows) {
        CAPTURE(r.inner, r.cap);
        CHECK(plain_len(r.inner) == r.plain);
        const std::size_t t = sizehide_plain_len(r.inner, r.cap);
        CHECK(t == r.hidden);
        CHECK(t % 4 == 0);
        CHECK(t - r.inner - 2 <= kMaxPadLen);
    }
}

TEST_CASE("padding comes from the packet's own bytes", "[sizehide]") {
    Bytes b(40, 0xee);
    for (int i = 0; i < 7; ++i) b[i] = static_cast<std::uint8_t>(i + 1);
    sizehide_fill_pad(b.data(), 7, 40);
    for (int i = 7; i < 40; ++i) CHECK(b[i] == b[(i - 7) % 7]);
    Bytes z(10, 0xee);
    sizehide_fill_pad(z.data(), 0, 10);   // dummy packet of no bytes
    CHECK(z == Bytes(10, 0));
}

TEST_CASE("rotation: always in range, undone exactly", "[sizehide]") {
    const std::uint64_t key = 0xd1753234f108c0eaULL;
    std::vector<int> hist(8, 0);
    for (std::size_t n : {1u, 2u, 3u, 255u, 256u, 1500u, 9214u}) {
        for (std::uint64_t seq = 1; seq < 200; ++seq) {
            const std::uint32_t r = sizehide_rotation(key, seq, n);
            REQUIRE(r < n);
            if (n == 256) hist[r / 32]++;
        }
    }
    for (int h : hist) CHECK(h > 5);   // 199 draws over 8 bins: none empty or near empty
    Bytes in(1000);
    std::iota(in.begin(), in.end(), 0);
    for (std::uint32_t r : {0u, 1u, 499u, 999u}) {
        Bytes rot(1000), back(1000);
        sizehide_rotate_left(in.data(), rot.data(), 1000, r);
        CHECK(rot[0] == in[r]);
        sizehide_rotate_right(rot.data(), back.data(), 1000, r);
        CHECK(back == in);
    }
}

TEST_CASE("the rotation secret is HKDF-SHA256(key || salt, \"p3 size hiding\")", "[sizehide]") {
    const Bytes k = hex("000102030405060708090a0b0c0d0e0f"), s = hex("0a0b0c0d");
    Bytes ikm = k;
    ikm.insert(ikm.end(), s.begin(), s.end());
    const Bytes info = {'p', '3', ' ', 's', 'i', 'z', 'e', ' ', 'h', 'i', 'd', 'i', 'n', 'g'};
    const Bytes o = p3test::hkdf_hmac(ikm, info, 8);
    std::uint64_t want = 0;
    for (std::uint8_t b : o) want = (want << 8) | b;
    CHECK(sizehide_key(k, s) == want);
    CHECK(sizehide_key(k, s) == 0xd1753234f108c0eaULL);   // p3_decode.py / cryptography
    CHECK(sizehide_key(k, hex("0a0b0c0e")) != want);
}
