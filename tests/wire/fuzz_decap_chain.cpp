// libFuzzer target: decryption of multi-segment packets, as outer reassembly hands them over
// (a chain of mbufs whose split points nobody chose). The input is a packet the known key
// really sealed, cut at fuzzed points; the oracle is the same packet in one segment:
//   - decap of the chain never crashes and leaves a consistent chain (pkt_len = sum of
//     data_len, nb_segs = segments);
//   - whatever the chain yields the flat packet yields too, byte for byte;
//   - the chain may refuse what the flat packet accepts only where a header has to sit in
//     the first segment (the P3 header; the inner IP header, rewritten in place for ECN).
// Input: [mode][nsplit][nsplit x u16 cut][plaintext ...]
//   mode bit 0: size hiding on the slot; bit 1: outer IPv6; bits 2-3: outer ECN;
//   bit 4: make the plaintext a well-formed inner packet (IPv4 or IPv6 by bit 5: lengths and
//   trailer set, so the fuzzer spends its time past the inner checks); bit 6: flip one
//   ciphertext byte (tag failure); bit 7: next header 59 (dummy) when well-formed.
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include <rte_eal.h>
#include <rte_mbuf.h>

#include "common/crypto.hpp"
#include "common/wire.hpp"

using namespace p3::wire;

namespace {

constexpr unsigned kEth = 14;
constexpr std::uint32_t kKnownId = 0x00100001;
constexpr std::size_t kMaxFrame = 6000;

rte_mempool* g_pool = nullptr;
GcmEngine* g_engine = nullptr;
GcmKey* g_key = nullptr;
std::string g_prefix;

void init() {
    g_prefix = "p3fuzzchain" + std::to_string(getpid());
    const char* argv[] = {"fuzz_decap_chain", "--no-huge", "-m", "256", "--no-pci", "--no-shconf", "--file-prefix",
                          g_prefix.c_str(), "--log-level", "error", "--no-telemetry", "-l", "0"};
    int argc = static_cast<int>(std::size(argv));
    if (rte_eal_init(argc, const_cast<char**>(argv)) < 0) std::abort();
    std::atexit([] {
        std::error_code ec;
        std::filesystem::remove_all("/var/run/dpdk/" + g_prefix, ec);
    });
    g_pool = rte_pktmbuf_pool_create("chain_pool", 1023, 0, 0, kMaxFrame + RTE_PKTMBUF_HEADROOM, SOCKET_ID_ANY);
    g_engine = GcmEngine::create();
    static const std::uint8_t key[16] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
    static const std::uint8_t salt[4] = {'p', '3', 'f', 'z'};
    g_key = new GcmKey(key, salt);
    if (g_pool == nullptr || g_engine == nullptr || !g_key->valid()) std::abort();
}

void wr16(std::uint8_t* p, std::size_t v) {
    p[0] = static_cast<std::uint8_t>(v >> 8);
    p[1] = static_cast<std::uint8_t>(v);
}

std::uint16_t csum(const std::uint8_t* p, std::size_t n) {
    std::uint32_t s = 0;
    for (std::size_t i = 0; i + 1 < n; i += 2) s += static_cast<std::uint32_t>(p[i] << 8 | p[i + 1]);
    while (s >> 16) s = (s & 0xffff) + (s >> 16);
    return static_cast<std::uint16_t>(~s);
}

// [eth][outer IP, protocol 50][P3 header][GCM(plain)][tag], sealed with the known key.
std::vector<std::uint8_t> build_frame(std::uint8_t mode, std::vector<std::uint8_t> plain, std::size_t& p3_off) {
    const bool v6 = mode & 2;
    const std::uint8_t ecn = (mode >> 2) & 3;
    const std::size_t ip = v6 ? 40 : 20;
    p3_off = kEth + ip;
    std::vector<std::uint8_t> f(p3_off + kP3HeaderLen + plain.size() + kIcvLen, 0);
    f[12] = v6 ? 0x86 : 0x08, f[13] = v6 ? 0xdd : 0x00;
    std::uint8_t* o = f.data() + kEth;
    const std::size_t total = f.size() - kEth;
    if (v6) {
        o[0] = 0x60 | 0;
        o[1] = static_cast<std::uint8_t>(ecn << 4);
        wr16(o + 4, total - 40);
        o[6] = 50, o[7] = 64;
        o[8] = 0x20, o[23] = 1, o[24] = 0x20, o[39] = 2;
    } else {
        o[0] = 0x45, o[1] = ecn;
        wr16(o + 2, total);
        o[8] = 64, o[9] = 50;
        o[12] = 192, o[15] = 1, o[16] = 192, o[19] = 2;
        wr16(o + 10, csum(o, 20));
    }
    std::uint8_t* h = f.data() + p3_off;
    h[4] = kKnownId >> 24, h[5] = (kKnownId >> 16) & 0xff, h[6] = (kKnownId >> 8) & 0xff, h[7] = kKnownId & 0xff;
    h[15] = 7;   // sequence 7
    std::memcpy(h + kP3HeaderLen, plain.data(), plain.size());
    g_engine->seal(*g_key, h, h + kP3HeaderLen, plain.size(), h + kP3HeaderLen + plain.size());
    return f;
}

// The frame as a chain cut at the given offsets (sorted, duplicates give empty segments).
rte_mbuf* to_chain(const std::vector<std::uint8_t>& f, std::vector<std::size_t> cuts) {
    std::sort(cuts.begin(), cuts.end());
    cuts.push_back(f.size());
    rte_mbuf* head = nullptr;
    std::size_t from = 0;
    for (std::size_t c : cuts) {
        rte_mbuf* m = rte_pktmbuf_alloc(g_pool);
        if (m == nullptr) {
            rte_pktmbuf_free(head);
            return nullptr;
        }
        const std::size_t n = c - from;
        if (n) std::memcpy(rte_pktmbuf_append(m, static_cast<std::uint16_t>(n)), f.data() + from, n);
        from = c;
        if (head == nullptr) head = m;
        else if (rte_pktmbuf_chain(head, m) != 0) {
            rte_pktmbuf_free(m);
            rte_pktmbuf_free(head);
            return nullptr;
        }
    }
    return head;
}

std::vector<std::uint8_t> bytes_of(const rte_mbuf* m) {
    std::vector<std::uint8_t> out;
    for (const rte_mbuf* s = m; s; s = s->next)
        out.insert(out.end(), rte_pktmbuf_mtod(s, const std::uint8_t*), rte_pktmbuf_mtod(s, const std::uint8_t*) + s->data_len);
    return out;
}

void check_chain(const rte_mbuf* m) {
    std::uint32_t len = 0;
    unsigned segs = 0;
    for (const rte_mbuf* s = m; s; s = s->next) {
        len += s->data_len;
        ++segs;
    }
    if (len != m->pkt_len || segs != m->nb_segs) std::abort();
}

DecapResult decap(rte_mbuf* m, std::size_t p3_off, bool sh) {
    const std::uint16_t off = static_cast<std::uint16_t>(p3_off);
    RxRef rx{g_key, sh ? SizeHiding::on : SizeHiding::off};
    DecapResult r{};
    decap_burst(*g_engine, &m, &off, &rx, 1, kEth, &r);
    return r;
}

// Well-formed: an inner IPv4/IPv6 packet of the plaintext's length, trailer after it.
void shape(std::uint8_t mode, std::vector<std::uint8_t>& p) {
    const bool v6 = mode & 0x20;
    const std::size_t hl = v6 ? 40 : 20;
    if (p.size() < hl + 2) p.resize(hl + 2, 0);
    const std::size_t pad = p[p.size() - 2] % 8 < p.size() - hl - 2 ? p[p.size() - 2] % 8 : 0;
    const std::size_t L = p.size() - 2 - pad;
    if (v6) {
        p[0] = static_cast<std::uint8_t>(0x60 | (p[0] & 0x0f));
        wr16(p.data() + 4, L - 40);
    } else {
        const unsigned ihl = std::max<unsigned>(5, p[0] & 0x0f);
        p[0] = static_cast<std::uint8_t>(0x40 | (ihl * 4 <= L ? ihl : 5));
        wr16(p.data() + 2, L);
    }
    p[p.size() - 2] = static_cast<std::uint8_t>(pad);
    p[p.size() - 1] = (mode & 0x80) ? 59 : (v6 ? 41 : 4);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (g_pool == nullptr) init();
    if (size < 2) return 0;
    const std::uint8_t mode = data[0];
    const unsigned nsplit = data[1] % 40;   // up to 40 segments: beyond kMaxSegs too
    if (size < 2 + 2 * nsplit) return 0;
    const std::uint8_t* cut_bytes = data + 2;
    std::vector<std::uint8_t> plain(data + 2 + 2 * nsplit, data + size);
    if (plain.size() + 120 > kMaxFrame) return 0;
    if (mode & 0x10) shape(mode, plain);
    if (plain.empty()) plain.push_back(0);
    std::size_t p3_off = 0;
    std::vector<std::uint8_t> f = build_frame(mode, plain, p3_off);
    if (mode & 0x40) f[p3_off + kP3HeaderLen + (data[1] % plain.size())] ^= 1;
    std::vector<std::size_t> cuts;
    for (unsigned i = 0; i < nsplit; ++i) cuts.push_back((cut_bytes[2 * i] << 8 | cut_bytes[2 * i + 1]) % (f.size() + 1));
    std::size_t first = f.size();
    for (std::size_t c : cuts) first = std::min(first, c);

    rte_mbuf* flat = to_chain(f, {});
    rte_mbuf* chain = to_chain(f, cuts);
    if (flat == nullptr || chain == nullptr) {
        rte_pktmbuf_free(flat);
        rte_pktmbuf_free(chain);
        return 0;
    }
    const DecapResult a = decap(flat, p3_off, mode & 1);
    const DecapResult b = decap(chain, p3_off, mode & 1);
    check_chain(chain);
    check_chain(flat);
    if (b.status == WireStatus::ok) {
        if (a.status != WireStatus::ok || bytes_of(flat) != bytes_of(chain)) std::abort();
    } else if (a.status == WireStatus::ok || b.status != a.status) {
        // Allowed only for headers that must be in the first segment, or a chain too long.
        const std::size_t inner_hdr = p3_off + kP3HeaderLen + 60;   // the longest inner header
        const bool header_split = first < p3_off + kP3HeaderLen || first < inner_hdr;
        const bool too_long = cuts.size() + 1 > kMaxSegs;
        if (!header_split && !too_long) std::abort();
    }
    rte_pktmbuf_free(flat);
    rte_pktmbuf_free(chain);
    return 0;
}
