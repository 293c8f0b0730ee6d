// Shared by the wire suites: EAL once per binary (small pool, no hugepages), hex helpers,
// and an independent AES-GCM / HKDF implementation on OpenSSL (EVP, HMAC) that the tests use
// as the oracle for the bytes the wire core writes and reads.
#pragma once

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include <rte_eal.h>
#include <rte_mbuf.h>

namespace p3test {

using Bytes = std::vector<std::uint8_t>;

inline Bytes hex(const std::string& h) {
    Bytes b;
    for (std::size_t i = 0; i + 1 < h.size(); i += 2) b.push_back(static_cast<std::uint8_t>(std::stoul(h.substr(i, 2), nullptr, 16)));
    return b;
}

// EAL once for the binary; the runtime directory is removed at exit.
inline rte_mempool* wire_pool() {
    static rte_mempool* pool = [] {
        static std::string prefix = "p3wire" + std::to_string(getpid());
        const char* argv[] = {"test_wire", "--no-huge", "-m", "512", "--no-pci", "--no-shconf",
                              "--file-prefix", prefix.c_str(), "--log-level", "error", "--no-telemetry", "-l", "0"};
        int argc = static_cast<int>(std::size(argv));
        if (rte_eal_init(argc, const_cast<char**>(argv)) < 0) throw std::runtime_error("rte_eal_init failed");
        std::atexit([] {
            rte_eal_cleanup();
            std::error_code ec;
            std::filesystem::remove_all("/var/run/dpdk/" + prefix, ec);
        });
        // Data room large enough for a 9000-byte inner packet plus the encapsulation.
        rte_mempool* p = rte_pktmbuf_pool_create("wire_pool", 1023, 0, 0, 10240 + RTE_PKTMBUF_HEADROOM, SOCKET_ID_ANY);
        if (p == nullptr) throw std::runtime_error("mbuf pool");
        return p;
    }();
    return pool;
}

// A packet built from bytes: one segment, or split into segments of at most seg bytes (the
// first segment keeps the default headroom, the others none).
inline rte_mbuf* make_mbuf(const Bytes& b, std::size_t seg = 0) {
    rte_mempool* pool = wire_pool();
    rte_mbuf* head = rte_pktmbuf_alloc(pool);
    if (head == nullptr) throw std::runtime_error("mbuf alloc");
    if (seg == 0 || b.size() <= seg) {
        std::memcpy(rte_pktmbuf_append(head, static_cast<std::uint16_t>(b.size())), b.data(), b.size());
        return head;
    }
    std::size_t off = 0;
    rte_mbuf* cur = head;
    while (off < b.size()) {
        const std::size_t n = std::min(seg, b.size() - off);
        if (cur != head) cur->data_off = 0;
        std::memcpy(rte_pktmbuf_mtod(cur, std::uint8_t*), b.data() + off, n);
        cur->data_len = static_cast<std::uint16_t>(n);
        if (cur != head) {
            rte_pktmbuf_lastseg(head)->next = cur;
            head->nb_segs++;
        }
        head->pkt_len = static_cast<std::uint32_t>(off + n);
        off += n;
        if (off < b.size()) {
            cur = rte_pktmbuf_alloc(pool);
            if (cur == nullptr) throw std::runtime_error("mbuf alloc");
        }
    }
    return head;
}

inline Bytes mbuf_bytes(const rte_mbuf* m) {
    Bytes b(m->pkt_len);
    std::size_t off = 0;
    for (const rte_mbuf* s = m; s != nullptr; s = s->next) {
        std::memcpy(b.data() + off, rte_pktmbuf_mtod(s, const std::uint8_t*), s->data_len);
        off += s->data_len;
    }
    return b;
}

// ---- the oracle: OpenSSL EVP AES-GCM and an HMAC-built HKDF ------------------------------------

inline const EVP_CIPHER* gcm_cipher(std::size_t key_len) {
    return key_len == 16 ? EVP_aes_128_gcm() : EVP_aes_256_gcm();
}

// Returns ciphertext || tag.
inline Bytes ossl_seal(const Bytes& key, const Bytes& iv, const Bytes& aad, const Bytes& pt) {
    EVP_CIPHER_CTX* c = EVP_CIPHER_CTX_new();
    Bytes out(pt.size() + 16);
    int len = 0;
    EVP_EncryptInit_ex(c, gcm_cipher(key.size()), nullptr, nullptr, nullptr);
    EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_IVLEN, static_cast<int>(iv.size()), nullptr);
    EVP_EncryptInit_ex(c, nullptr, nullptr, key.data(), iv.data());
    if (!aad.empty()) EVP_EncryptUpdate(c, nullptr, &len, aad.data(), static_cast<int>(aad.size()));
    if (!pt.empty()) EVP_EncryptUpdate(c, out.data(), &len, pt.data(), static_cast<int>(pt.size()));
    EVP_EncryptFinal_ex(c, out.data() + pt.size(), &len);
    EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, 16, out.data() + pt.size());
    EVP_CIPHER_CTX_free(c);
    return out;
}

// ct_tag = ciphertext || tag; false when the tag does not verify.
inline bool ossl_open(const Bytes& key, const Bytes& iv, const Bytes& aad, const Bytes& ct_tag, Bytes& pt) {
    if (ct_tag.size() < 16) return false;
    const std::size_t n = ct_tag.size() - 16;
    EVP_CIPHER_CTX* c = EVP_CIPHER_CTX_new();
    pt.assign(n, 0);
    int len = 0;
    EVP_DecryptInit_ex(c, gcm_cipher(key.size()), nullptr, nullptr, nullptr);
    EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_IVLEN, static_cast<int>(iv.size()), nullptr);
    EVP_DecryptInit_ex(c, nullptr, nullptr, key.data(), iv.data());
    if (!aad.empty()) EVP_DecryptUpdate(c, nullptr, &len, aad.data(), static_cast<int>(aad.size()));
    if (n) EVP_DecryptUpdate(c, pt.data(), &len, ct_tag.data(), static_cast<int>(n));
    EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, 16, const_cast<std::uint8_t*>(ct_tag.data() + n));
    const bool ok = EVP_DecryptFinal_ex(c, pt.data() + n, &len) == 1;
    EVP_CIPHER_CTX_free(c);
    return ok;
}

// RFC 5869 with HMAC-SHA256, written out (extract with a zero salt, then expand).
inline Bytes hkdf_hmac(const Bytes& ikm, const Bytes& info, std::size_t len) {
    std::uint8_t zero[32] = {};
    std::uint8_t prk[32];
    unsigned plen = 0;
    HMAC(EVP_sha256(), zero, 32, ikm.data(), ikm.size(), prk, &plen);
    Bytes out, t;
    for (std::uint8_t i = 1; out.size() < len; ++i) {
        Bytes msg = t;
        msg.insert(msg.end(), info.begin(), info.end());
        msg.push_back(i);
        std::uint8_t blk[32];
        unsigned blen = 0;
        HMAC(EVP_sha256(), prk, 32, msg.data(), msg.size(), blk, &blen);
        t.assign(blk, blk + 32);
        out.insert(out.end(), t.begin(), t.end());
    }
    out.resize(len);
    return out;
}

// Lane n's key || salt, from DESIGN.md's words.
inline Bytes oracle_lane(const Bytes& key, const Bytes& salt, std::uint32_t lane) {
    Bytes ikm = key;
    ikm.insert(ikm.end(), salt.begin(), salt.end());
    if (lane == 0) return ikm;
    Bytes info = {'p', '3', ' ', 'l', 'a', 'n', 'e', std::uint8_t(lane >> 24), std::uint8_t(lane >> 16),
                  std::uint8_t(lane >> 8), std::uint8_t(lane)};
    return hkdf_hmac(ikm, info, key.size() + 4);
}

}  // namespace p3test

// Byte vectors print as their size and first bytes, so a failed comparison stays readable.
namespace Catch {
template <>
struct StringMaker<p3test::Bytes> {
    static std::string convert(const p3test::Bytes& b) {
        std::string s = std::to_string(b.size()) + " bytes:";
        char t[4];
        for (std::size_t i = 0; i < b.size() && i < 48; ++i) {
            std::snprintf(t, sizeof t, " %02x", b[i]);
            s += t;
        }
        return b.size() > 48 ? s + " ..." : s;
    }
};
}  // namespace Catch
