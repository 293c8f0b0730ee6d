// libFuzzer target: decapsulation of arbitrary bytes, as the WAN side would see them.
// Input: one mode byte, then a frame [14-byte link header][outer IP][UDP?][P3 ...].
//   mode bit 0: seal first — the bytes after the P3 header are taken as plaintext and sealed
//               with the installed key (and the tag written at the end), so the fuzzer reaches
//               everything after the tag check: trailer, size hiding, inner checks, ECN, strip;
//   mode bit 1: size hiding on for the slot;
//   mode bits 2-3: split the frame into a chain of 2, 3 or 4 segments;
//   mode bit 4: standard ESP instead of P3 (bit 5: ESN, bit 6: Seq high 1), the known SPI
//               being the known P3 ID.
// The known key answers P3 ID 0x00100001 (AES-128, key 00..0f, salt "p3fz"); any other ID
// has no key. Every outcome is counted; nothing is forwarded. A packet whose tag failed is
// restored (restore_failed, the receiver's step before a second try under a next key) and must
// then be byte for byte what it was before the open. A crash, a sanitizer report or a restore
// that differs is a failure.
#include <unistd.h>

#include <array>
#include <cstdint>
#include <cstdio>
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

rte_mempool* g_pool = nullptr;
GcmEngine* g_engine = nullptr;
GcmKey* g_key = nullptr;
std::array<std::uint64_t, static_cast<std::size_t>(WireStatus::count_)> g_count{};
std::string g_prefix;

void init() {
    g_prefix = "p3fuzzwire" + std::to_string(getpid());
    const char* argv[] = {"fuzz_decap", "--no-huge", "-m", "256", "--no-pci", "--no-shconf", "--file-prefix",
                          g_prefix.c_str(), "--log-level", "error", "--no-telemetry", "-l", "0"};
    int argc = static_cast<int>(std::size(argv));
    if (rte_eal_init(argc, const_cast<char**>(argv)) < 0) std::abort();
    std::atexit([] {
        if (std::getenv("P3_FUZZ_STATS") != nullptr)
            for (std::size_t i = 0; i < g_count.size(); ++i)
                std::fprintf(stderr, "%-16s %llu\n", status_name(static_cast<WireStatus>(i)),
                             static_cast<unsigned long long>(g_count[i]));
        std::error_code ec;
        std::filesystem::remove_all("/var/run/dpdk/" + g_prefix, ec);
    });
    g_pool = rte_pktmbuf_pool_create("fuzz_pool", 255, 0, 0, 10240 + RTE_PKTMBUF_HEADROOM, SOCKET_ID_ANY);
    g_engine = GcmEngine::create();
    static const std::uint8_t key[16] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
    static const std::uint8_t salt[4] = {'p', '3', 'f', 'z'};
    g_key = new GcmKey(key, salt);
    if (g_pool == nullptr || g_engine == nullptr || !g_key->valid()) std::abort();
}

// The frame in 1..4 segments (the first one keeps its headroom).
rte_mbuf* to_mbuf(const std::uint8_t* d, std::size_t n, unsigned parts) {
    rte_mbuf* head = rte_pktmbuf_alloc(g_pool);
    if (head == nullptr) return nullptr;
    const std::size_t cut = parts > 1 ? (n + parts - 1) / parts : n;
    std::size_t off = 0;
    rte_mbuf* cur = head;
    do {
        const std::size_t take = std::min(cut, n - off);
        if (take > rte_pktmbuf_tailroom(cur)) {
            rte_pktmbuf_free(head);
            return nullptr;
        }
        if (take) std::memcpy(rte_pktmbuf_append(cur, static_cast<std::uint16_t>(take)), d + off, take);
        if (cur != head) {
            head->pkt_len += static_cast<std::uint32_t>(take);
        }
        off += take;
        if (off < n) {
            rte_mbuf* next = rte_pktmbuf_alloc(g_pool);
            if (next == nullptr || rte_pktmbuf_chain(head, next) != 0) {
                if (next) rte_pktmbuf_free(next);
                rte_pktmbuf_free(head);
                return nullptr;
            }
            cur = next;
        }
    } while (off < n);
    return head;
}

// The packet's bytes, however many segments.
void bytes_of(const rte_mbuf* m, std::vector<std::uint8_t>& out) {
    out.resize(m->pkt_len);
    const void* p = rte_pktmbuf_read(m, 0, m->pkt_len, out.data());
    if (p != nullptr && p != out.data()) std::memcpy(out.data(), p, m->pkt_len);
}

// ESP (mode bit 4; bit 5: ESN, bit 6: Seq high 1): the same steps with the ESP header, the
// 8- or 12-byte AAD and the IV read from the packet. The known SPI is kKnownId.
WireStatus esp_one(rte_mbuf* m, const OuterInfo& o, std::uint8_t mode) {
    EspHeader h;
    WireStatus s = parse_esp(m, o.p3_off, h);
    if (s != WireStatus::ok) return s;
    const bool esn = (mode & 0x20) != 0;
    const std::uint64_t seq = (std::uint64_t{(mode & 0x40) ? 1u : 0u} << 32) | h.seq_low;
    const bool known = h.spi == kKnownId;
    if ((mode & 1) && known && m->nb_segs == 1) {
        std::uint8_t* p = rte_pktmbuf_mtod_offset(m, std::uint8_t*, o.p3_off);
        std::uint8_t aad[kEspAadEsnLen];
        std::memcpy(aad, p, 4);
        const std::uint32_t hi = rte_cpu_to_be_32(static_cast<std::uint32_t>(seq >> 32));
        if (esn) std::memcpy(aad + 4, &hi, 4);
        std::memcpy(aad + (esn ? 8 : 4), p + 4, 4);
        const std::size_t len = m->pkt_len - o.p3_off - kEspHeaderLen - kIcvLen;
        g_engine->seal_aad(*g_key, p, aad, esn ? kEspAadEsnLen : kEspAadLen, p + kEspHeaderLen, len,
                           p + kEspHeaderLen + len);
    }
    RxRef rx(known ? g_key : nullptr, SizeHiding::off, esn ? WireKind::esp_esn : WireKind::esp);
    DecapResult r;
    decap_burst(*g_engine, &m, &o.p3_off, &rx, 1, kEth, &r, L2::keep, &seq);
    if (r.status == WireStatus::ok) {
        const std::uint8_t* in = rte_pktmbuf_mtod_offset(m, const std::uint8_t*, kEth);
        const std::size_t len = m->pkt_len - kEth;
        const unsigned v = in[0] >> 4;
        const std::size_t claimed = v == 4 ? ((std::size_t(in[2]) << 8) | in[3]) : 40 + ((std::size_t(in[4]) << 8) | in[5]);
        if ((v != 4 && v != 6) || claimed != len) std::abort();
    }
    return r.status;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (g_pool == nullptr) init();
    if (size < 1 || size > 9500) return 0;
    const std::uint8_t mode = data[0];
    rte_mbuf* m = to_mbuf(data + 1, size - 1, 1 + ((mode >> 2) & 3));
    if (m == nullptr) return 0;
    OuterInfo o;
    WireStatus s = parse_outer(m, kEth, 4500, o);
    if ((mode & 0x10) && s == WireStatus::ok) {
        g_count[static_cast<std::size_t>(esp_one(m, o, mode))]++;
        rte_pktmbuf_free(m);
        return 0;
    }
    P3Header h;
    if (s == WireStatus::ok) s = parse_p3(m, o.p3_off, h, o.udp);
    if (s == WireStatus::ok) {
        const bool known = h.id == kKnownId;
        if ((mode & 1) && known && m->nb_segs == 1) {
            // Seal the plaintext in place so the packet passes the tag check.
            std::uint8_t* p = rte_pktmbuf_mtod_offset(m, std::uint8_t*, o.p3_off);
            const std::size_t len = m->pkt_len - o.p3_off - kP3HeaderLen - kIcvLen;
            g_engine->seal(*g_key, p, p + kP3HeaderLen, len, p + kP3HeaderLen + len);
        }
        RxRef rx{known ? g_key : nullptr, (mode & 2) ? SizeHiding::on : SizeHiding::off};
        static std::vector<std::uint8_t> before, after;
        if (known) bytes_of(m, before);
        DecapResult r;
        decap_burst(*g_engine, &m, &o.p3_off, &rx, 1, kEth, &r);
        s = r.status;
        if (s == WireStatus::auth) {
            // The open ran in place; restoring gives back the packet as received.
            if (!restore_failed(*g_engine, m, o.p3_off, *g_key)) std::abort();
            bytes_of(m, after);
            if (after != before) std::abort();
        }
        if (s == WireStatus::ok) {
            // What would be forwarded must be a whole IP packet of the length it claims.
            const std::uint8_t* in = rte_pktmbuf_mtod_offset(m, const std::uint8_t*, kEth);
            const std::size_t len = m->pkt_len - kEth;
            const unsigned v = in[0] >> 4;
            const std::size_t claimed = v == 4 ? ((std::size_t(in[2]) << 8) | in[3]) : 40 + ((std::size_t(in[4]) << 8) | in[5]);
            if ((v != 4 && v != 6) || claimed != len) std::abort();
        }
    }
    g_count[static_cast<std::size_t>(s)]++;
    rte_pktmbuf_free(m);
    return 0;
}
