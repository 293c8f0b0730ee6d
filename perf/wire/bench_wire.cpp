// bench_wire: what the wire core costs over raw AES-GCM, on one core.
//
// For each inner packet size (IPv4, bytes of the inner IP packet) a burst of 32 mbufs is
// encapsulated (encap_burst: outer IPv4 + P3 header + trailer + seal) and opened again
// (decap_burst: parse + open + trailer + inner checks + strip), which brings each mbuf back to
// where it started, so the loop repeats without copying. In the same run, interleaved with it,
// the same mbufs' plaintext (inner + trailer, as the wire core seals it) is sealed and opened by
// raw ipsec-mb AES-GCM: the direct functions (IMB_AES128_GCM_ENC/DEC), and the job API in
// bursts (IMB_SUBMIT_BURST). Each figure is the median over several interleaved rounds, in TSC
// cycles per packet; "ratio" is wire / raw direct.
//
//   bench_wire [--sizes 64,128,...] [--key 128|256] [--rounds 7] [--packets N] [--csv]
//
// Run it on a quiet core (see docs/wire-format.md for the command and the figures).
#include <intel-ipsec-mb.h>
#include <x86intrin.h>
#include <unistd.h>

#include <algorithm>
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
#include "common/sizehide.hpp"
#include "common/wire.hpp"

using namespace p3::wire;

#include "perf/cli.hpp"

namespace {

constexpr unsigned kBurst = 32;
constexpr unsigned kEth = 14;

using p3::perf::parse_list;

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

void make_inner(std::uint8_t* p, unsigned len) {
    for (unsigned i = 0; i < len; ++i) p[i] = static_cast<std::uint8_t>(i * 7);
    p[0] = 0x45;
    p[1] = 0;
    p[2] = static_cast<std::uint8_t>(len >> 8);
    p[3] = static_cast<std::uint8_t>(len);
    p[6] = 0x40;
    p[8] = 64;
    p[9] = 17;
}

struct Figures {
    std::vector<double> wire_seal, wire_open, raw_seal, raw_open, job_seal, job_open;
};

}  // namespace

int main(int argc, char** argv) {
    std::vector<unsigned> sizes = {64, 128, 256, 512, 1024, 1420};
    unsigned key_bits = 128, rounds = 7, packets = 200000;
    bool csv = false;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        if (a == "--sizes" && i + 1 < argc) sizes = parse_list(argv[++i]);
        else if (a == "--key" && i + 1 < argc) key_bits = static_cast<unsigned>(std::atoi(argv[++i]));
        else if (a == "--rounds" && i + 1 < argc) rounds = static_cast<unsigned>(std::atoi(argv[++i]));
        else if (a == "--packets" && i + 1 < argc) packets = static_cast<unsigned>(std::atoi(argv[++i]));
        else if (a == "--csv") csv = true;
        else {
            std::fprintf(stderr, "usage: bench_wire [--sizes 64,128,...] [--key 128|256] [--rounds 7] [--packets N] [--csv]\n");
            return 2;
        }
    }
    if (key_bits != 128 && key_bits != 256) return 2;
    for (unsigned s : sizes)
        if (s < 20 || s > 9000) {
            std::fprintf(stderr, "bench_wire: size %u out of 20..9000\n", s);
            return 2;
        }

    static std::string prefix = "p3benchwire" + std::to_string(getpid());
    const char* eal[] = {"bench_wire", "--no-huge", "-m", "256", "--no-pci", "--no-shconf", "--file-prefix",
                         prefix.c_str(), "--log-level", "error", "--no-telemetry", "-l", "0"};
    int eargc = static_cast<int>(std::size(eal));
    if (rte_eal_init(eargc, const_cast<char**>(eal)) < 0) return 1;
    std::atexit([] {
        rte_eal_cleanup();
        std::error_code ec;
        std::filesystem::remove_all("/var/run/dpdk/" + prefix, ec);
    });
    rte_mempool* pool = rte_pktmbuf_pool_create("bench", 255, 0, 0, 10240 + RTE_PKTMBUF_HEADROOM, SOCKET_ID_ANY);
    GcmEngine::Ptr e = GcmEngine::make();
    if (pool == nullptr || !e) return 1;

    std::uint8_t keyb[32];
    for (int i = 0; i < 32; ++i) keyb[i] = static_cast<std::uint8_t>(i * 3 + 1);
    const std::uint8_t salt[4] = {0x0a, 0x0b, 0x0c, 0x0d};
    GcmKey key({keyb, key_bits / 8}, {salt, 4});
    OuterSpec os;
    os.src = *p3::IpAddr::parse("192.0.2.1");
    os.dst = *p3::IpAddr::parse("192.0.2.2");
    TxView view;
    if (!view.init(0x00100001, &key, os, SizeHiding::off)) return 1;
    IMB_MGR* mgr = e->mgr();

    // TSC rate, for the Gbps column.
    const std::uint64_t c0 = __rdtsc();
    usleep(100000);
    const double hz = static_cast<double>(__rdtsc() - c0) * 10.0;

    if (csv) std::printf("key,size,wire_seal,raw_seal,job_seal,seal_ratio,wire_open,raw_open,job_open,open_ratio\n");
    else {
        std::printf("bench_wire: ipsec-mb %s (%s), AES-%u-GCM, TSC %.2f GHz, one core, bursts of %u, median of %u rounds\n",
                    IMB_VERSION_STR, arch_name(), key_bits, hz / 1e9, kBurst, rounds);
        std::printf("cycles per packet; raw = the same plaintext through IMB_AES*_GCM_ENC/DEC; job = job API bursts\n");
        std::printf("%6s | %9s %9s %9s %6s | %9s %9s %9s %6s\n", "inner", "wire seal", "raw seal", "job seal", "ratio",
                    "wire open", "raw open", "job open", "ratio");
    }
    for (unsigned size : sizes) {
        rte_mbuf* m[kBurst];
        static std::uint8_t orig[9000];
        make_inner(orig, size);
        for (unsigned i = 0; i < kBurst; ++i) {
            m[i] = rte_pktmbuf_alloc(pool);
            std::uint8_t* d = reinterpret_cast<std::uint8_t*>(rte_pktmbuf_append(m[i], static_cast<std::uint16_t>(kEth + size)));
            std::memset(d, 0, kEth);
            std::memcpy(d + kEth, orig, size);
        }
        const unsigned plain = static_cast<unsigned>(plain_len(size));
        std::uint64_t seq[kBurst] = {};
        TxRef tx[kBurst];
        for (unsigned i = 0; i < kBurst; ++i) tx[i] = TxRef{&view, &seq[i]};
        RxRef rx[kBurst];
        for (unsigned i = 0; i < kBurst; ++i) rx[i] = RxRef{&key, SizeHiding::off};
        std::uint16_t p3off[kBurst];
        for (unsigned i = 0; i < kBurst; ++i) p3off[i] = kEth + 20;
        WireStatus st[kBurst];
        DecapResult res[kBurst];
        std::uint8_t hdr[kBurst][16] = {};
        std::uint8_t tags[kBurst][16];
        std::uint8_t got[16];
        gcm_context_data ctx;
        const unsigned iters = std::max(1u, packets / kBurst);
        Figures f;
        bool broken = false;

        auto round_wire = [&](double& seal_c, double& open_c) {
            std::uint64_t ts = 0, to = 0;
            for (unsigned it = 0; it < iters; ++it) {
                const std::uint64_t a = __rdtsc();
                const unsigned ok1 = encap_burst(*e, m, tx, kBurst, kEth, st);
                const std::uint64_t b = __rdtsc();
                const unsigned ok2 = decap_burst(*e, m, p3off, rx, kBurst, kEth, res);
                const std::uint64_t c = __rdtsc();
                ts += b - a;
                to += c - b;
                broken |= ok1 != kBurst || ok2 != kBurst;
            }
            seal_c = static_cast<double>(ts) / (iters * kBurst);
            open_c = static_cast<double>(to) / (iters * kBurst);
        };
        // The plaintext the wire core seals: inner + trailer, in the same mbufs (the inner
        // packet's tail room holds the trailer and the tag).
        auto round_raw = [&](double& seal_c, double& open_c) {
            std::uint64_t ts = 0, to = 0;
            std::uint8_t iv[12];
            std::memcpy(iv, salt, 4);
            for (unsigned it = 0; it < iters; ++it) {
                const std::uint64_t a = __rdtsc();
                for (unsigned i = 0; i < kBurst; ++i) {
                    std::uint8_t* d = rte_pktmbuf_mtod_offset(m[i], std::uint8_t*, kEth);
                    ++seq[i];
                    std::memcpy(hdr[i] + 8, &seq[i], 8);
                    std::memcpy(iv + 4, hdr[i] + 8, 8);
                    if (key_bits == 128) IMB_AES128_GCM_ENC(mgr, &key.schedule(), &ctx, d, d, plain, iv, hdr[i], 16, tags[i], 16);
                    else IMB_AES256_GCM_ENC(mgr, &key.schedule(), &ctx, d, d, plain, iv, hdr[i], 16, tags[i], 16);
                }
                const std::uint64_t b = __rdtsc();
                for (unsigned i = 0; i < kBurst; ++i) {
                    std::uint8_t* d = rte_pktmbuf_mtod_offset(m[i], std::uint8_t*, kEth);
                    std::memcpy(iv + 4, hdr[i] + 8, 8);
                    if (key_bits == 128) IMB_AES128_GCM_DEC(mgr, &key.schedule(), &ctx, d, d, plain, iv, hdr[i], 16, got, 16);
                    else IMB_AES256_GCM_DEC(mgr, &key.schedule(), &ctx, d, d, plain, iv, hdr[i], 16, got, 16);
                    broken |= !tag_equal(got, tags[i]);
                }
                const std::uint64_t c = __rdtsc();
                ts += b - a;
                to += c - b;
            }
            seal_c = static_cast<double>(ts) / (iters * kBurst);
            open_c = static_cast<double>(to) / (iters * kBurst);
        };
        std::uint8_t ivs[kBurst][12];
        std::uint8_t jtags[kBurst][16];
        auto round_job = [&](double& seal_c, double& open_c) {
            std::uint64_t ts = 0, to = 0;
            IMB_JOB* jobs[kBurst];
            for (unsigned it = 0; it < iters; ++it) {
                for (int dir = 0; dir < 2; ++dir) {
                    const std::uint64_t a = __rdtsc();
                    unsigned n = IMB_GET_NEXT_BURST(mgr, kBurst, jobs);
                    if (n < kBurst) {
                        IMB_FLUSH_BURST(mgr, kBurst, jobs);
                        n = IMB_GET_NEXT_BURST(mgr, kBurst, jobs);
                    }
                    for (unsigned i = 0; i < n; ++i) {
                        IMB_JOB* j = jobs[i];
                        std::uint8_t* d = rte_pktmbuf_mtod_offset(m[i], std::uint8_t*, kEth);
                        if (dir == 0) {
                            ++seq[i];
                            std::memcpy(hdr[i] + 8, &seq[i], 8);
                        }
                        std::memcpy(ivs[i], salt, 4);
                        std::memcpy(ivs[i] + 4, hdr[i] + 8, 8);
                        j->cipher_mode = IMB_CIPHER_GCM;
                        j->hash_alg = IMB_AUTH_AES_GMAC;
                        j->cipher_direction = dir == 0 ? IMB_DIR_ENCRYPT : IMB_DIR_DECRYPT;
                        j->chain_order = dir == 0 ? IMB_ORDER_CIPHER_HASH : IMB_ORDER_HASH_CIPHER;
                        j->enc_keys = &key.schedule();
                        j->dec_keys = &key.schedule();
                        j->key_len_in_bytes = key_bits / 8;
                        j->src = d;
                        j->dst = d;
                        j->cipher_start_src_offset_in_bytes = 0;
                        j->msg_len_to_cipher_in_bytes = plain;
                        j->hash_start_src_offset_in_bytes = 0;
                        j->msg_len_to_hash_in_bytes = plain;
                        j->iv = ivs[i];
                        j->iv_len_in_bytes = 12;
                        j->u.GCM.aad = hdr[i];
                        j->u.GCM.aad_len_in_bytes = 16;
                        j->auth_tag_output = dir == 0 ? tags[i] : jtags[i];
                        j->auth_tag_output_len_in_bytes = 16;
                    }
                    const unsigned done = IMB_SUBMIT_BURST(mgr, n, jobs);
                    if (dir == 1)
                        for (unsigned i = 0; i < done; ++i) broken |= !tag_equal(tags[i], jtags[i]);
                    const std::uint64_t b = __rdtsc();
                    broken |= done != n || n != kBurst;
                    (dir == 0 ? ts : to) += b - a;
                }
            }
            seal_c = static_cast<double>(ts) / (iters * kBurst);
            open_c = static_cast<double>(to) / (iters * kBurst);
        };
        double s, o;
        round_wire(s, o);   // warm caches, branch predictors and clocks
        round_raw(s, o);
        round_job(s, o);
        for (unsigned r = 0; r < rounds; ++r) {
            round_wire(s, o);
            f.wire_seal.push_back(s);
            f.wire_open.push_back(o);
            round_raw(s, o);
            f.raw_seal.push_back(s);
            f.raw_open.push_back(o);
            round_job(s, o);
            f.job_seal.push_back(s);
            f.job_open.push_back(o);
        }
        // The packets must have come back intact.
        for (unsigned i = 0; i < kBurst; ++i)
            broken |= m[i]->pkt_len != kEth + size || std::memcmp(rte_pktmbuf_mtod_offset(m[i], void*, kEth), orig, size) != 0;
        if (broken) {
            std::fprintf(stderr, "bench_wire: a packet did not round-trip at size %u\n", size);
            return 1;
        }
        const double ws = median(f.wire_seal), rs = median(f.raw_seal), js = median(f.job_seal);
        const double wo = median(f.wire_open), ro = median(f.raw_open), jo = median(f.job_open);
        if (csv)
            std::printf("%u,%u,%.1f,%.1f,%.1f,%.3f,%.1f,%.1f,%.1f,%.3f\n", key_bits, size, ws, rs, js, ws / rs, wo, ro, jo, wo / ro);
        else
            std::printf("%6u | %9.1f %9.1f %9.1f %6.3f | %9.1f %9.1f %9.1f %6.3f\n", size, ws, rs, js, ws / rs, wo, ro, jo, wo / ro);
        for (unsigned i = 0; i < kBurst; ++i) rte_pktmbuf_free(m[i]);
    }
    return 0;
}
