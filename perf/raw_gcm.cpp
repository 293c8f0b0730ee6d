// raw_gcm: the physical limit the dataplane is compared with — Intel ipsec-mb AES-GCM on one
// core, one packet at a time, in place, with exactly the work p3d does per packet and nothing
// else: 12-byte IV (salt || sequence), 16-byte AAD (the P3 header), plaintext = inner IP packet
// + 2 trailer bytes, 16-byte tag. Decryption computes the tag and compares it, as p3d must.
//
//   raw_gcm [--sizes 64,128,...] [--imix] [--keys 128,256] [--seconds S] [--json]
//
// A size is an Ethernet frame, FCS included (64 B frame = 46 B IP packet), the same unit the
// dataplane benchmark uses. IMIX is 7 x 64 : 4 x 594 : 1 x 1420, measured as that sequence.
// The time base is the TSC, calibrated against CLOCK_MONOTONIC; cycles per packet are TSC cycles.
#include <intel-ipsec-mb.h>
#include <x86intrin.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <string>
#include <vector>

#include "cli.hpp"
#include "common/crypto.hpp"   // tag_equal: the tag comparison p3d makes

namespace {

constexpr unsigned kFcs = 4, kEth = 14, kTrailer = 2, kAad = 16, kIv = 12, kTag = 16;
const std::vector<unsigned> kImix = {64, 64, 64, 64, 64, 64, 64, 594, 594, 594, 594, 1420};

double now_s() {
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return double(ts.tv_sec) + double(ts.tv_nsec) * 1e-9;
}

double tsc_hz() {
    const double t0 = now_s();
    const std::uint64_t c0 = __rdtsc();
    while (now_s() - t0 < 0.1) {
    }
    const std::uint64_t c1 = __rdtsc();
    const double t1 = now_s();
    return double(c1 - c0) / (t1 - t0);
}

unsigned plaintext_len(unsigned frame) { return frame - kFcs - kEth + kTrailer; }

struct Gcm {
    IMB_MGR* mgr;
    unsigned key_bits;
    alignas(64) gcm_key_data key;  // the assembly expects 64-byte alignment
    alignas(64) gcm_context_data ctx;

    void encrypt(std::uint8_t* buf, unsigned len, const std::uint8_t* iv, const std::uint8_t* aad, std::uint8_t* tag) {
        if (key_bits == 128) IMB_AES128_GCM_ENC(mgr, &key, &ctx, buf, buf, len, iv, aad, kAad, tag, kTag);
        else IMB_AES256_GCM_ENC(mgr, &key, &ctx, buf, buf, len, iv, aad, kAad, tag, kTag);
    }
    void decrypt(std::uint8_t* buf, unsigned len, const std::uint8_t* iv, const std::uint8_t* aad, std::uint8_t* tag) {
        if (key_bits == 128) IMB_AES128_GCM_DEC(mgr, &key, &ctx, buf, buf, len, iv, aad, kAad, tag, kTag);
        else IMB_AES256_GCM_DEC(mgr, &key, &ctx, buf, buf, len, iv, aad, kAad, tag, kTag);
    }
};

struct Result {
    unsigned key_bits;
    bool decrypt;
    std::string size;     // "64" or "imix"
    double avg_frame;     // bytes, FCS included
    double cycles;        // TSC cycles per packet
    double mpps;
    double gbps;          // frame bits per second (FCS included, no preamble/IFG)
};

// Runs the sequence of frame sizes round-robin for `seconds`; returns cycles per packet.
double measure(Gcm& g, bool decrypt, const std::vector<unsigned>& frames, double seconds, double hz) {
    // One buffer per size in the sequence, as p3d works on different mbufs.
    std::vector<std::vector<std::uint8_t>> bufs;
    std::vector<std::array<std::uint8_t, kTag>> tags(frames.size());
    for (unsigned f : frames) bufs.emplace_back(plaintext_len(f), 0x5a);
    std::uint8_t iv[kIv] = {0x0a, 0x0b, 0x0c, 0x0d};
    std::uint8_t aad[kAad] = {0, 0, 0, 0, 0, 0, 1, 1};
    std::uint8_t tag[kTag];
    if (decrypt) {
        // Decrypting garbage costs the same as decrypting a real packet: the tag is computed
        // over the ciphertext either way and compared; nothing depends on the result.
        for (std::size_t i = 0; i < frames.size(); ++i) g.encrypt(bufs[i].data(), unsigned(bufs[i].size()), iv, aad, tags[i].data());
    }
    const std::uint64_t budget = std::uint64_t(seconds * hz);
    std::uint64_t n = 0;
    std::uint64_t seq = 1;
    const std::uint64_t c0 = __rdtsc();
    std::uint64_t c1 = c0;
    do {
        for (int rep = 0; rep < 64; ++rep) {
            for (std::size_t i = 0; i < frames.size(); ++i) {
                std::memcpy(iv + 4, &seq, 8);  // a new nonce per packet, as on the wire
                std::memcpy(aad + 8, &seq, 8);
                ++seq;
                if (decrypt) {
                    g.decrypt(bufs[i].data(), unsigned(bufs[i].size()), iv, aad, tag);
                    // The comparison p3d makes, the same inline code (a libc memcmp call here
                    // cost 15-20 cycles more per packet, a bound slower than the real one).
                    const bool eq = p3::wire::tag_equal(tag, tags[i].data());
                    asm volatile("" : : "r"(eq));
                } else {
                    g.encrypt(bufs[i].data(), unsigned(bufs[i].size()), iv, aad, tag);
                }
            }
            n += frames.size();
        }
        c1 = __rdtsc();
    } while (c1 - c0 < budget);
    return double(c1 - c0) / double(n);
}

using p3::perf::parse_list;

void usage() {
    std::fputs("usage: raw_gcm [--sizes 64,128,256,512,1024,1420] [--imix] [--keys 128,256] "
               "[--decrypt-too] [--seconds 0.3] [--json]\n", stderr);
}

}  // namespace

int main(int argc, char** argv) {
    std::vector<unsigned> sizes = {64, 128, 256, 512, 1024, 1420};
    std::vector<unsigned> keys = {128, 256};
    bool imix = false, json = false, decrypt_too = true, only_imix = false;
    double seconds = 0.3;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        if (a == "--sizes" && i + 1 < argc) sizes = parse_list(argv[++i]);
        else if (a == "--keys" && i + 1 < argc) keys = parse_list(argv[++i]);
        else if (a == "--seconds" && i + 1 < argc) seconds = std::atof(argv[++i]);
        else if (a == "--imix") imix = true;
        else if (a == "--imix-only") imix = only_imix = true;
        else if (a == "--encrypt-only") decrypt_too = false;
        else if (a == "--json") json = true;
        else { usage(); return 2; }
    }
    if (only_imix) sizes.clear();
    for (unsigned s : sizes)
        if (s < 64 || s > 9018) { std::fprintf(stderr, "raw_gcm: frame size %u out of 64..9018\n", s); return 2; }
    for (unsigned k : keys)
        if (k != 128 && k != 256) { std::fprintf(stderr, "raw_gcm: key size %u: 128 or 256\n", k); return 2; }

    IMB_MGR* mgr = alloc_mb_mgr(0);
    if (mgr == nullptr) { std::fputs("raw_gcm: alloc_mb_mgr failed\n", stderr); return 1; }
    IMB_ARCH arch;
    init_mb_mgr_auto(mgr, &arch);
    const char* arch_name[] = {"none", "no-aesni", "sse", "avx", "avx2", "avx512"};
    const double hz = tsc_hz();

    std::vector<Result> results;
    for (unsigned kb : keys) {
        Gcm g{mgr, kb, {}, {}};
        std::uint8_t key[32];
        for (int i = 0; i < 32; ++i) key[i] = std::uint8_t(i * 3 + 1);
        if (kb == 128) IMB_AES128_GCM_PRE(mgr, key, &g.key);
        else IMB_AES256_GCM_PRE(mgr, key, &g.key);
        for (int dec = 0; dec <= (decrypt_too ? 1 : 0); ++dec) {
            auto add = [&](const std::string& name, const std::vector<unsigned>& seq) {
                double avg = 0;
                for (unsigned f : seq) avg += f;
                avg /= double(seq.size());
                measure(g, dec != 0, seq, std::min(0.05, seconds), hz);  // warm caches and clocks
                const double cyc = measure(g, dec != 0, seq, seconds, hz);
                const double pps = hz / cyc;
                results.push_back({kb, dec != 0, name, avg, cyc, pps / 1e6, pps * avg * 8 / 1e9});
            };
            for (unsigned s : sizes) add(std::to_string(s), {s});
            if (imix) add("imix", kImix);
        }
    }
    if (json) {
        std::printf("{\"tool\": \"raw_gcm\", \"ipsec_mb\": \"%s\", \"arch\": \"%s\", \"tsc_hz\": %.0f, \"results\": [",
                    IMB_VERSION_STR, arch_name[arch < IMB_ARCH_NUM ? arch : 0], hz);
        for (std::size_t i = 0; i < results.size(); ++i) {
            const Result& r = results[i];
            std::printf("%s\n  {\"key\": %u, \"dir\": \"%s\", \"size\": \"%s\", \"avg_frame\": %.1f, "
                        "\"cycles\": %.1f, \"mpps\": %.4f, \"gbps\": %.4f}",
                        i ? "," : "", r.key_bits, r.decrypt ? "decrypt" : "encrypt", r.size.c_str(), r.avg_frame,
                        r.cycles, r.mpps, r.gbps);
        }
        std::printf("\n]}\n");
    } else {
        std::printf("ipsec-mb %s (%s), TSC %.3f GHz, one core, one packet per call\n", IMB_VERSION_STR,
                    arch_name[arch < IMB_ARCH_NUM ? arch : 0], hz / 1e9);
        std::printf("%-8s %-8s %6s %10s %9s %9s\n", "key", "op", "frame", "cycles/pkt", "Mpps", "Gbps");
        for (const Result& r : results)
            std::printf("AES-%-4u %-8s %6s %10.1f %9.3f %9.3f\n", r.key_bits, r.decrypt ? "decrypt" : "encrypt",
                        r.size.c_str(), r.cycles, r.mpps, r.gbps);
    }
    free_mb_mgr(mgr);
    return 0;
}
