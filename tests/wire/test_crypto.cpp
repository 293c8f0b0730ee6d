// AES-GCM through ipsec-mb: known-answer vectors (the GCM specification's test cases and NIST
// CAVP vectors), the P3 nonce/AAD construction against OpenSSL, scatter-gather, bursts with
// mixed keys, and key material wiped on destruction.
#include <catch2/catch.hpp>

#include <new>

#include "common/crypto.hpp"
#include "tests/wire/test_wire_util.hpp"

using namespace p3::wire;
using p3test::Bytes;
using p3test::hex;

namespace {

struct Kat {
    const char* name;
    const char* key;
    const char* iv;
    const char* aad;
    const char* pt;
    const char* ct;
    const char* tag;
};

// McGrew/Viega "The Galois/Counter Mode of Operation", appendix B (96-bit IVs), and NIST CAVP
// GCMVS vectors.
const Kat kKats[] = {
    {"gcm-spec 2 (AES-128)", "00000000000000000000000000000000", "000000000000000000000000", "",
     "00000000000000000000000000000000", "0388dace60b6a392f328c2b971b2fe78", "ab6e47d42cec13bdf53a67b21257bddf"},
    {"gcm-spec 3 (AES-128)", "feffe9928665731c6d6a8f9467308308", "cafebabefacedbaddecaf888", "",
     "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b391aafd255",
     "42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091473f5985",
     "4d5c2af327cd64a62cf35abd2ba6fab4"},
    {"gcm-spec 4 (AES-128, AAD)", "feffe9928665731c6d6a8f9467308308", "cafebabefacedbaddecaf888",
     "feedfacedeadbeeffeedfacedeadbeefabaddad2",
     "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39",
     "42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091",
     "5bc94fbc3221a5db94fae95ae7121a47"},
    {"gcm-spec 14 (AES-256)", "0000000000000000000000000000000000000000000000000000000000000000", "000000000000000000000000", "",
     "00000000000000000000000000000000", "cea7403d4d606b6e074ec5d3baf39d18", "d0d1c8a799996bf0265b98b5d48ab919"},
    {"gcm-spec 15 (AES-256)", "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308", "cafebabefacedbaddecaf888", "",
     "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b391aafd255",
     "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662898015ad",
     "b094dac5d93471bdec1a502270e3cc6c"},
    {"gcm-spec 16 (AES-256, AAD)", "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308", "cafebabefacedbaddecaf888",
     "feedfacedeadbeeffeedfacedeadbeefabaddad2",
     "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39",
     "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662",
     "76fc6ece0f4e1768cddf8853bb2d551b"},
    {"CAVP AES-128 (no AAD)", "7fddb57453c241d03efbed3ac44e371c", "ee283a3fc75575e33efd4887", "",
     "d5de42b461646c255c87bd2962d3b9a2", "2ccda4a5415cb91e135c2a0f78c9b2fd", "b36d1df9b9d5e596f83e8b7f52971cb3"},
    {"CAVP AES-256 (AAD)", "83688deb4af8007f9b713b47cfa6c73e35ea7a3aa4ecdb414dded03bf7a0fd3a", "0b459724904e010a46901cf3",
     "794a14ccd178c8ebfd1379dc704c5e208f9d8424", "33d893a2114ce06fc15d55e454cf90c3", "cc66bee423e3fcd4c0865715e9586696",
     "0fb291bd3dba94a1dfd8b286cfb97ac5"},
};

// The KAT's IV as salt || 8 bytes: exactly the P3 nonce construction (RFC 4106 style).
GcmKey key_of(const Bytes& key, const Bytes& iv) { return GcmKey({key.data(), key.size()}, {iv.data(), 4}); }

}  // namespace

TEST_CASE("AES-GCM known answers through the ipsec-mb key schedule and engine", "[crypto]") {
    GcmEngine::Ptr e = GcmEngine::make();
    REQUIRE(e);
    for (const Kat& k : kKats) {
        SECTION(k.name) {
            const Bytes key = hex(k.key), iv = hex(k.iv), aad = hex(k.aad), pt = hex(k.pt), ct = hex(k.ct), tag = hex(k.tag);
            GcmKey gk = key_of(key, iv);
            REQUIRE(gk.valid());
            CHECK(gk.type() == (key.size() == 16 ? KeyType::aes128 : KeyType::aes256));
            // The schedule through the engine's own manager (arbitrary AAD lengths).
            Bytes buf = pt;
            std::uint8_t got[16];
            gcm_context_data ctx;
            if (key.size() == 16)
                IMB_AES128_GCM_ENC(e->mgr(), &gk.schedule(), &ctx, buf.data(), buf.data(), buf.size(), iv.data(), aad.data(), aad.size(), got, 16);
            else
                IMB_AES256_GCM_ENC(e->mgr(), &gk.schedule(), &ctx, buf.data(), buf.data(), buf.size(), iv.data(), aad.data(), aad.size(), got, 16);
            CHECK(buf == ct);
            CHECK(Bytes(got, got + 16) == tag);
            // And the independent implementation agrees with the published answer.
            Bytes o = p3test::ossl_seal(key, iv, aad, pt);
            CHECK(Bytes(o.begin(), o.end() - 16) == ct);
            CHECK(Bytes(o.end() - 16, o.end()) == tag);
        }
    }
}

TEST_CASE("seal/open: nonce = salt || sequence, AAD = the P3 header, as OpenSSL computes it", "[crypto]") {
    GcmEngine::Ptr e = GcmEngine::make();
    REQUIRE(e);
    const std::size_t key_lens[] = {16, 32};
    const std::size_t lens[] = {0, 1, 15, 16, 17, 22, 64, 255, 256, 1000, 1422, 9002};
    for (std::size_t kl : key_lens) {
        Bytes key(kl), salt = {0xde, 0xad, 0xbe, 0xef};
        for (std::size_t i = 0; i < kl; ++i) key[i] = static_cast<std::uint8_t>(i * 7 + kl);
        GcmKey gk({key.data(), kl}, {salt.data(), 4});
        REQUIRE(gk.valid());
        for (std::size_t len : lens) {
            CAPTURE(kl, len);
            const Bytes hdr = {0, 0, 0, 0, 0x00, 0x10, 0x00, 0x05, 0, 0, 0, 0, 0, 0, 0x12, static_cast<std::uint8_t>(len)};
            Bytes pt(len);
            for (std::size_t i = 0; i < len; ++i) pt[i] = static_cast<std::uint8_t>(i ^ 0x5a);
            Bytes buf = pt;
            std::uint8_t tag[16];
            e->seal(gk, hdr.data(), buf.data(), len, tag);
            Bytes iv = salt;
            iv.insert(iv.end(), hdr.begin() + 8, hdr.end());
            Bytes want = p3test::ossl_seal(key, iv, hdr, pt);
            Bytes got = buf;
            got.insert(got.end(), tag, tag + 16);
            REQUIRE(got == want);
            CHECK(e->open(gk, hdr.data(), buf.data(), len, tag));
            CHECK(buf == pt);
            // A different sequence in the header is a different nonce and AAD: no verify.
            Bytes hdr2 = hdr;
            hdr2[15] ^= 1;
            Bytes again = Bytes(want.begin(), want.end() - 16);
            CHECK_FALSE(e->open(gk, hdr2.data(), again.data(), len, want.data() + len));
        }
    }
}

TEST_CASE("scatter-gather seal/open equals the contiguous result for every split", "[crypto]") {
    GcmEngine::Ptr e = GcmEngine::make();
    REQUIRE(e);
    const Bytes key = hex("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"), salt = {1, 2, 3, 4};
    GcmKey gk({key.data(), 32}, {salt.data(), 4});
    const Bytes hdr = {0, 0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 9};
    Bytes pt(301);
    for (std::size_t i = 0; i < pt.size(); ++i) pt[i] = static_cast<std::uint8_t>(i * 13);
    Bytes ref = pt;
    std::uint8_t ref_tag[16];
    e->seal(gk, hdr.data(), ref.data(), ref.size(), ref_tag);
    const std::vector<std::vector<std::uint32_t>> splits = {{301}, {1, 300}, {16, 285}, {17, 0, 284}, {100, 100, 101},
                                                            {3, 5, 7, 11, 13, 262}, {300, 1}};
    for (const auto& sp : splits) {
        Bytes buf = pt;
        std::vector<IoSeg> segs;
        std::uint32_t off = 0;
        for (std::uint32_t l : sp) {
            segs.push_back({buf.data() + off, l});
            off += l;
        }
        REQUIRE(off == pt.size());
        std::uint8_t tag[16];
        e->seal_sgl(gk, hdr.data(), segs, tag);
        CHECK(buf == ref);
        CHECK(std::memcmp(tag, ref_tag, 16) == 0);
        CHECK(e->open_sgl(gk, hdr.data(), segs, tag));
        CHECK(buf == pt);
        buf = ref;
        tag[3] ^= 0x80;
        CHECK_FALSE(e->open_sgl(gk, hdr.data(), segs, tag));
    }
}

TEST_CASE("one engine seals and opens packets of mixed keys; each bad tag is reported on its own", "[crypto]") {
    GcmEngine::Ptr e = GcmEngine::make();
    REQUIRE(e);
    const Bytes k1 = hex("00112233445566778899aabbccddeeff"), k2 = hex("ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100");
    const Bytes s = {9, 9, 9, 9};
    GcmKey g1({k1.data(), 16}, {s.data(), 4}), g2({k2.data(), 32}, {s.data(), 4});
    constexpr unsigned n = 40;
    std::vector<Bytes> bufs(n), hdrs(n), tags(n, Bytes(16)), plain(n);
    auto key_of = [&](unsigned i) -> const GcmKey& { return i % 3 ? g1 : g2; };
    for (unsigned i = 0; i < n; ++i) {
        bufs[i].assign(20 + i * 37, static_cast<std::uint8_t>(i));
        plain[i] = bufs[i];
        hdrs[i] = Bytes(16, 0);
        hdrs[i][15] = static_cast<std::uint8_t>(i + 1);
    }
    // One after the other in one engine, as encap_burst does, the key changing between calls.
    for (unsigned i = 0; i < n; ++i) e->seal(key_of(i), hdrs[i].data(), bufs[i].data(), bufs[i].size(), tags[i].data());
    for (unsigned i = 0; i < n; ++i) {
        const Bytes& key = i % 3 ? k1 : k2;
        Bytes iv = s;
        iv.insert(iv.end(), hdrs[i].begin() + 8, hdrs[i].end());
        Bytes want = p3test::ossl_seal(key, iv, hdrs[i], plain[i]);
        Bytes got = bufs[i];
        got.insert(got.end(), tags[i].begin(), tags[i].end());
        CHECK(got == want);
    }
    tags[7][0] ^= 1;
    bufs[21][5] ^= 1;
    // Opened one by one, as decap_burst does, in the same engine right after the seals.
    bool ok[n];
    unsigned good = 0;
    for (unsigned i = 0; i < n; ++i) good += ok[i] = e->open(key_of(i), hdrs[i].data(), bufs[i].data(), bufs[i].size(), tags[i].data());
    CHECK(good == n - 2);
    for (unsigned i = 0; i < n; ++i) {
        CAPTURE(i);
        CHECK(ok[i] == (i != 7 && i != 21));
        if (ok[i]) CHECK(bufs[i] == plain[i]);
    }
}

TEST_CASE("key material: sizes checked, schedule wiped on destruction", "[crypto]") {
    const Bytes k16(16, 1), k24(24, 1), k32(32, 1), s4(4, 2), s3(3, 2);
    CHECK(GcmKey({k16.data(), 16}, {s4.data(), 4}).valid());
    CHECK(GcmKey({k32.data(), 32}, {s4.data(), 4}).valid());
    CHECK_FALSE(GcmKey({k24.data(), 24}, {s4.data(), 4}).valid());   // AES-192 is not a key type
    CHECK_FALSE(GcmKey({k16.data(), 16}, {s3.data(), 3}).valid());
    CHECK_FALSE(GcmKey({k16.data(), 0}, {s4.data(), 4}).valid());
    CHECK(GcmKey::make({k24.data(), 24}, {s4.data(), 4}) == nullptr);
    p3::SecretBytes ks(Bytes{k32.begin(), k32.end()});
    p3::SecretBytes both(36);
    std::memcpy(both.data(), k32.data(), 32);
    std::memcpy(both.data() + 32, s4.data(), 4);
    GcmKey from_secret(both);
    CHECK(from_secret.valid());
    CHECK(std::memcmp(from_secret.salt(), s4.data(), 4) == 0);
    CHECK_FALSE(GcmKey(ks).valid());   // 32 bytes = a 28-byte key and a salt: not a key

    alignas(GcmKey) std::uint8_t storage[sizeof(GcmKey)];
    GcmKey* k = new (storage) GcmKey({k16.data(), 16}, {s4.data(), 4});
    REQUIRE(k->valid());
    const std::size_t off = static_cast<std::size_t>(reinterpret_cast<const std::uint8_t*>(&k->schedule()) - storage);
    bool nonzero = false;
    for (std::size_t i = 0; i < sizeof(gcm_key_data); ++i) nonzero |= storage[off + i] != 0;
    CHECK(nonzero);
    const std::size_t salt_off = static_cast<std::size_t>(k->salt() - storage);
    k->~GcmKey();
    bool all_zero = true;
    for (std::size_t i = 0; i < sizeof(gcm_key_data); ++i) all_zero &= storage[off + i] == 0;
    for (std::size_t i = 0; i < kSaltLen; ++i) all_zero &= storage[salt_off + i] == 0;
    CHECK(all_zero);
}

TEST_CASE("tag comparison", "[crypto]") {
    std::uint8_t a[16] = {}, b[16] = {};
    CHECK(tag_equal(a, b));
    for (int i = 0; i < 16; ++i) {
        b[i] = 0x01;
        CHECK_FALSE(tag_equal(a, b));
        b[i] = 0;
    }
    CHECK(std::string(arch_name()) != "none");
}
