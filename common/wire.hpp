// P3 encapsulation and decapsulation of packets in mbufs (DESIGN.md §Wire format,
// docs/wire-format.md). Owns the byte layout of a P3 packet: outer IPv4/IPv6 header (+ UDP for
// NAT traversal), P3 header, ciphertext of inner | padding | pad length | next header, ICV.
// Stateless: the caller brings the key (a slot's GcmKey), the sequence counter (owned by the
// sending lcore) and the per-lcore GcmEngine. Nothing here allocates, throws, locks or logs.
//
// Outbound, per packet:  [l2][inner IP packet]
//                  ->    [l2][outer IP][UDP?][P3 header][ciphertext][ICV]
// Inbound, per packet:   [l2][outer IP][UDP?][P3 header][ciphertext][ICV]
//                  ->    [l2][inner IP packet]
// The l2_len bytes in front (the Ethernet header on the dataplane) are carried along
// unchanged; the caller rewrites them (addresses, EtherType: outer_v6() tells which) before TX.
//
// Standard ESP (RFC 4303 tunnel mode, RFC 4106 AES-GCM-16, RFC 3948 UDP encapsulation) is
// the same layout with its own header: [SPI][Seq low 32][IV = 8 bytes][ciphertext][ICV], 16
// bytes like the P3 header, so sizes, trailer, ECN and the outer header are shared; a slot's
// WireKind picks its seal/open variant when it is built (docs/wire-format.md §Standard ESP).
//
// Inbound is split so the anti-replay check comes BEFORE decryption and its update after:
//   parse_outer() (optional; the dataplane classifier does the same) -> parse_p3() -> caller
//   finds the slot by P3 ID and checks the replay window -> decap_burst() -> for every
//   packet with authenticated(status) the caller updates the window -> forwards the ok ones.
#pragma once

#include <cstdint>
#include <cstring>

#include <rte_mbuf.h>

#include "common/crypto.hpp"
#include "common/net.hpp"
#include "common/wire_limits.hpp"

namespace p3::wire {

enum class SizeHiding : bool { off = false, on = true };

// What a slot's packets are on the wire: P3, or standard ESP without / with extended (64-bit)
// sequence numbers. Fixed when a slot is built; the seal/open variant follows from it.
enum class WireKind : std::uint8_t { p3 = 0, esp, esp_esn };
constexpr bool is_esp(WireKind k) noexcept { return k != WireKind::p3; }

// Why a packet was not encapsulated / decapsulated. The dataplane maps each to a drop counter
// (suggested mapping in the comment). Append only.
enum class WireStatus : std::uint8_t {
    ok = 0,
    dummy,          // in: authenticated traffic-flow padding (next header 59)      -> P3_DUMMY
    // outbound
    bad_input,      // out: not an IPv4/IPv6 packet whose length matches the mbuf  -> CRYPTO
    too_big,        // out: inner longer than kMaxInnerLen; in: plaintext longer than
                    // kMaxPlainLen (no sender makes it)   -> TOO_BIG / P3_TRUNCATED
    no_room,        // out: not enough headroom/tailroom in the mbuf              -> NO_ROOM
    seq_exhausted,  // out: the lane's sequence reached kSeqHardLimit (rekey!)     -> NO_TX_SLOT
    chain_too_long, // out/in: more than kMaxSegs segments                          -> CRYPTO
    // inbound, before decryption
    bad_outer,      // in: no IPv4/IPv6 header we accept, or not P3 (proto/port)  -> WAN_NOT_P3
    fragment,       // in: outer fragment (reassemble first)                       -> REASSEMBLY
    nat_keepalive,  // in: RFC 3948 keepalive (one byte 0xff)                      -> NAT_KEEPALIVE
    truncated,      // in: shorter than P3 header + trailer + ICV / lengths wrong  -> P3_TRUNCATED
    flags,          // in: a P3 Flags bit we do not know                           -> P3_FLAGS
    no_key,         // in: the caller gave no key for this packet (unknown P3 ID)  -> P3_UNKNOWN_ID
    // inbound, after decryption
    auth,           // in: ICV did not verify                                      -> P3_AUTH
    bad_trailer,    // in: pad length beyond the plaintext, or unknown next header -> P3_BAD_INNER
    bad_inner,      // in: inner packet not the IP version / length the trailer says -> P3_BAD_INNER
    ecn_drop,       // in: outer CE over a Not-ECT inner packet (RFC 6040 says drop) -> P3_BAD_INNER
    seq_unreserved, // out: the lane reached its own limit (static keys: the mark persisted so far,
                    // raised by the control thread ahead of the sender)          -> SEQ_UNRESERVED
    count_
};
const char* status_name(WireStatus s) noexcept;
// The ICV verified: the sender really sent this sequence (update the replay window).
constexpr bool authenticated(WireStatus s) noexcept {
    return s == WireStatus::ok || s == WireStatus::dummy || s == WireStatus::bad_trailer ||
           s == WireStatus::bad_inner || s == WireStatus::ecn_drop;
}

// ---- outbound ---------------------------------------------------------------------------

// What encapsulation does with the l2_len bytes in front of a packet: kept (the l2 bytes move
// with the packet) or room only (the caller rewrites the whole Ethernet header, as the
// dataplane does: 14 bytes not copied per packet). Decapsulation likewise.
enum class L2 : std::uint8_t { keep, room };

// Where the packets of one TX slot go.
struct OuterSpec {
    IpAddr src;                  // our WAN address
    IpAddr dst;                  // the peer's WAN address (same family)
    std::uint16_t udp_src = 0;   // udp_dst != 0: UDP encapsulation (NAT traversal, port 4500)
    std::uint16_t udp_dst = 0;
};

struct TxRef;
// A seal variant: n packets whose views share it, sealed as encap_burst says (st[i] per
// packet, the count of ok returned); ahead (>= n) packets are readable from pkts on, for
// prefetching past the run.
using SealRunFn = unsigned (*)(GcmEngine& e, rte_mbuf* const* pkts, const TxRef* tx, unsigned n, unsigned ahead,
                               unsigned l2_len, WireStatus* st, L2 l2) noexcept;
using SealDummyFn = WireStatus (*)(GcmEngine& e, rte_mbuf* m, const TxRef& tx, unsigned l2_len) noexcept;
namespace detail {
// What a view that was never initialised seals with: every packet refused (bad_input).
unsigned seal_unset(GcmEngine&, rte_mbuf* const*, const TxRef*, unsigned n, unsigned, unsigned, WireStatus* st,
                    L2) noexcept;
WireStatus seal_unset_dummy(GcmEngine&, rte_mbuf*, const TxRef&, unsigned) noexcept;
}  // namespace detail

// Everything encapsulation needs about one TX slot (one lane of one session), built by the
// control thread when the slot is made and immutable afterwards; the outer header is
// prepared here once so the packet path only fills lengths, DSCP/ECN and the checksum.
// The seal variant is chosen here too (lib/ipsec's per-session process function): one
// function per outer shape (IPv4 / IPv6, native / UDP) and size hiding, in which those are
// constants, so sealing a packet never asks them.
struct TxView {
    // false (and the view unusable) on a null/invalid key, unset or mixed address families,
    // or ESP with size hiding. wan_mtu (0 = none) caps size-hiding padding so the outer packet
    // never exceeds it. kind ESP: p3_id is the peer's SPI.
    bool init(std::uint32_t p3_id, const GcmKey* key, const OuterSpec& outer, SizeHiding sh,
              std::uint16_t wan_mtu = 0, WireKind kind = WireKind::p3) noexcept;

    bool outer_v6() const noexcept { return v6; }
    bool udp() const noexcept { return udp_on; }
    std::uint16_t outer_len() const noexcept { return outer_hlen; }  // IP (+ UDP) bytes
    // Bytes added to an inner packet of len bytes (outer + P3 header + pad + trailer + ICV),
    // without size hiding.
    std::size_t overhead_for(std::size_t len) const noexcept;

    const GcmKey* key = nullptr;
    std::uint32_t p3_id = 0;
    SizeHiding size_hiding = SizeHiding::off;
    WireKind kind = WireKind::p3;
    bool v6 = false;
    bool udp_on = false;
    std::uint16_t outer_hlen = 0;
    std::uint16_t max_outer = 0;          // wan_mtu, 0 = none
    std::uint32_t csum_base = 0;          // IPv4: header sum of the fixed fields; v6 UDP: pseudo header
    IpAddr dst;
    SealRunFn seal_run = &detail::seal_unset;            // this view's variant
    SealDummyFn seal_dummy = &detail::seal_unset_dummy;
    alignas(16) std::uint8_t tmpl[kMaxOuterLen] = {};   // outer IP (+ UDP) with the fixed fields set
};

// One packet to encapsulate: the TX view and the sending lcore's sequence counter for it.
// *seq holds the LAST sequence sent (0 before the first packet): encapsulation uses *seq + 1
// and stores it back, so sequences start at 1 and never repeat while the counter lives.
// *limit is the last sequence the lane may send (read relaxed: another thread may raise it;
// a TxSlot keeps it on the counter's cache line); beyond it encapsulation refuses the packet.
inline constexpr std::uint64_t kSeqLastSendable = kSeqLast;
struct TxRef {
    const TxView* view;
    std::uint64_t* seq;
    const std::uint64_t* limit = &kSeqLastSendable;
};

// Encapsulates and seals n (<= kMaxBurst) packets in place. pkts[i] holds [l2][inner IPv4 or
// IPv6 packet], pkt_len = l2_len + the inner packet's IP length (link padding already trimmed).
// Any mix of views: each run of packets whose views share a seal variant goes through that
// variant in one call. Writes st[i] for every packet and returns how many are ok; failed
// packets are left as they were (not freed) for the caller to count and free.
// The caller guarantees: tx[i].view initialised and its key alive for the call (RCU read
// side), tx[i].seq owned by this lcore, mbufs writable (not shared/indirect).
// On success pkt_len/data_len are updated; tx_offload (l2_len, l3_len...) is not touched: a
// single-segment packet is handled without reading or writing the mbuf's second cache line.
unsigned encap_burst(GcmEngine& e, rte_mbuf* const* pkts, const TxRef* tx, unsigned n, unsigned l2_len,
                     WireStatus* st, L2 l2 = L2::keep) noexcept;
// A dummy packet (next header 59): the bytes after l2_len (any content, any length <= 
// kMaxInnerLen, 0 allowed) are carried as the "inner packet" and dropped by the receiver.
WireStatus encap_dummy(GcmEngine& e, rte_mbuf* m, const TxRef& tx, unsigned l2_len) noexcept;

// ---- inbound ----------------------------------------------------------------------------

struct OuterInfo {
    bool v6 = false;
    bool udp = false;
    std::uint8_t ecn = 0;          // outer ECN codepoint (RFC 6040 decapsulation)
    std::uint16_t p3_off = 0;      // offset of the P3 header in the mbuf
    IpAddr src;                    // outer source (the peer)
    std::uint16_t udp_src = 0;     // the peer's UDP port when udp
};
// Parses [l2][outer IP][UDP?] at l2_len: IPv4 (any header length, checksum verified) or IPv6
// (no extension headers), protocol 50, or UDP with destination port nat_port. Trims link
// padding beyond the IP total length. Reads only the first segment for headers.
WireStatus parse_outer(rte_mbuf* m, unsigned l2_len, std::uint16_t nat_port, OuterInfo& o) noexcept;

struct P3Header {
    std::uint32_t flags = 0;
    std::uint32_t id = 0;
    std::uint64_t seq = 0;
};
// Reads the P3 header at p3_off: length (header + trailer + ICV at least, to the end of the
// packet), nothing else.
inline WireStatus read_p3(const rte_mbuf* m, unsigned p3_off, P3Header& h) noexcept {
    if (m->pkt_len < p3_off + kP3HeaderLen + kTrailerFixed + kIcvLen || m->data_len < p3_off + kP3HeaderLen)
        return WireStatus::truncated;
    const std::uint8_t* p = rte_pktmbuf_mtod_offset(m, const std::uint8_t*, p3_off);
    std::uint32_t f, id;
    std::uint64_t seq;
    std::memcpy(&f, p, 4);
    std::memcpy(&id, p + kFlagsLen, 4);
    std::memcpy(&seq, p + kFlagsLen + kIdLen, 8);
    h.flags = rte_be_to_cpu_32(f);
    h.id = rte_be_to_cpu_32(id);
    h.seq = rte_be_to_cpu_64(seq);
    return WireStatus::ok;
}
// read_p3, then the flags: exactly kFlagUdp when the packet came in UDP (udp), exactly 0 on
// IP protocol 50; anything else -> flags. The caller then finds the slot by h.id and checks
// the replay window with h.seq, before decap_burst(). Inline: once per received packet.
inline WireStatus parse_p3(const rte_mbuf* m, unsigned p3_off, P3Header& h, bool udp) noexcept {
    const WireStatus s = read_p3(m, p3_off, h);
    if (s != WireStatus::ok) return s;
    if (h.flags != (udp ? kFlagUdp : 0u)) return WireStatus::flags;
    return WireStatus::ok;
}

// ---- ESP (RFC 4303) ------------------------------------------------------------------------
struct EspHeader {
    std::uint32_t spi = 0;
    std::uint32_t seq_low = 0;
};
// Reads the ESP header at off: length (SPI, sequence, IV, trailer and ICV at least, to the end
// of the packet). The caller infers the full sequence (esn_seq), finds the slot by SPI and
// checks its replay window before decap_burst(), which reads the IV from the packet.
inline WireStatus parse_esp(const rte_mbuf* m, unsigned off, EspHeader& h) noexcept {
    if (m->pkt_len < off + kEspHeaderLen + kTrailerFixed + kIcvLen || m->data_len < off + kEspHeaderLen)
        return WireStatus::truncated;
    const std::uint8_t* p = rte_pktmbuf_mtod_offset(m, const std::uint8_t*, off);
    std::uint32_t spi, sl;
    std::memcpy(&spi, p, 4);
    std::memcpy(&sl, p + 4, 4);
    h.spi = rte_be_to_cpu_32(spi);
    h.seq_low = rte_be_to_cpu_32(sl);
    return WireStatus::ok;
}
// The full 64-bit sequence of a received ESP packet from its low 32 bits, as RFC 4303
// Appendix A2.2 infers Seq-high from the window: top = the highest sequence accepted so far
// (0: none), window = the window's size W (>= 1). A sequence below the window of a first
// epoch (top < W, seq_low far above top's low half) stays in epoch 0 rather than -1.
// Without ESN the sequence is seq_low as it is.
constexpr std::uint64_t esn_seq(std::uint64_t top, std::uint32_t window, std::uint32_t seq_low) noexcept {
    const std::uint32_t th = static_cast<std::uint32_t>(top >> 32), tl = static_cast<std::uint32_t>(top);
    const std::uint32_t bottom = tl - (window - 1);   // Tl - W + 1, modulo 2^32
    std::uint32_t sh;
    if (tl >= window - 1) sh = seq_low >= bottom ? th : th + 1;   // case A: the window in one epoch
    else sh = seq_low >= bottom && th != 0 ? th - 1 : th;         // case B: it spans the epoch before
    return (std::uint64_t{sh} << 32) | seq_low;
}

struct RxRef;
struct DecapResult {
    WireStatus status;
    std::uint8_t next_header;   // 4, 41 or 59 once the trailer was read, else 0
};
// An open variant: n packets whose refs share it, opened as decap_burst says.
// seq: the full sequence of each packet (ESP with ESN reads Seq-high from it; the others
// ignore it; nullptr: Seq-high 0).
using OpenRunFn = unsigned (*)(GcmEngine& e, rte_mbuf* const* pkts, const std::uint16_t* p3_off, const RxRef* rx,
                               unsigned n, unsigned l2_len, DecapResult* res, L2 l2,
                               const std::uint64_t* seq) noexcept;
namespace detail {
unsigned open_run_plain(GcmEngine&, rte_mbuf* const*, const std::uint16_t*, const RxRef*, unsigned, unsigned,
                        DecapResult*, L2, const std::uint64_t*) noexcept;
unsigned open_run_hidden(GcmEngine&, rte_mbuf* const*, const std::uint16_t*, const RxRef*, unsigned, unsigned,
                         DecapResult*, L2, const std::uint64_t*) noexcept;
unsigned open_run_esp(GcmEngine&, rte_mbuf* const*, const std::uint16_t*, const RxRef*, unsigned, unsigned,
                      DecapResult*, L2, const std::uint64_t*) noexcept;
unsigned open_run_esp_esn(GcmEngine&, rte_mbuf* const*, const std::uint16_t*, const RxRef*, unsigned, unsigned,
                          DecapResult*, L2, const std::uint64_t*) noexcept;
}  // namespace detail

// The slot a packet decrypts under; key == nullptr: not decrypted, status no_key. The open
// variant (with or without size hiding) is chosen when the ref is made; an RX slot makes its
// ref once, when it is built (RxSlot::ref()).
struct RxRef {
    constexpr RxRef() noexcept = default;
    constexpr RxRef(const GcmKey* k, SizeHiding sh) noexcept
        : key(k), open(sh == SizeHiding::on ? &detail::open_run_hidden : &detail::open_run_plain) {}
    // ESP (no size hiding) or P3, by kind.
    constexpr RxRef(const GcmKey* k, SizeHiding sh, WireKind kind) noexcept
        : key(k),
          open(kind == WireKind::esp       ? &detail::open_run_esp
               : kind == WireKind::esp_esn ? &detail::open_run_esp_esn
               : sh == SizeHiding::on      ? &detail::open_run_hidden
                                           : &detail::open_run_plain) {}
    // With the variant already chosen (what an RX slot keeps).
    constexpr RxRef(const GcmKey* k, OpenRunFn f) noexcept : key(k), open(f) {}
    const GcmKey* key = nullptr;
    OpenRunFn open = &detail::open_run_plain;   // the size-hiding setting, resolved
};
static_assert(sizeof(RxRef) == 16);   // two words: a burst's refs stay in a few cache lines
// Opens and strips n (<= kMaxBurst) packets in place. pkts[i] = [l2][outer IP at l2_len]
// [UDP?][P3 header at p3_off[i]]..., pkt_len = end of the IP packet (parse_outer trims).
// p3_off[i] == l2_len means "no outer header" (no ECN processing). Writes res[i]; returns
// how many are ok (forward them); every other packet is left for the caller to count/free.
// Each run of packets whose refs share an open variant goes through it in one call.
// On ok: [l2][inner packet], inner ECN combined with the outer per RFC 6040, pkt_len =
// l2_len + inner length (tx_offload not touched, as outbound).
// ESP: p3_off[i] is the ESP header's offset; seq[i] the packet's full sequence (esn_seq).
unsigned decap_burst(GcmEngine& e, rte_mbuf* const* pkts, const std::uint16_t* p3_off, const RxRef* rx,
                     unsigned n, unsigned l2_len, DecapResult* res, L2 l2 = L2::keep,
                     const std::uint64_t* seq = nullptr) noexcept;

// After decap_burst said auth for a packet (its tag did not verify under `failed`): the open
// ran in place, so the bytes between the P3 header and the ICV hold garbage. Re-applies
// AES-CTR under the same key and nonce over them (a seal into a scratch tag), which gives the
// ciphertext back as received, ready to be opened under another key. Contiguous or chained
// (the segments decap_burst used). false: the packet has no such shape (nothing changed).
// P3 only (an ESP SA has one key).
bool restore_failed(GcmEngine& e, rte_mbuf* m, unsigned p3_off, const GcmKey& failed) noexcept;

// ---- ECN (RFC 6040, normal mode), exposed for tests ----------------------------------------
inline constexpr std::uint8_t kNotEct = 0, kEct1 = 1, kEct0 = 2, kCe = 3;
// Outer ECN for an inner ECN at encapsulation: copied (normal mode).
constexpr std::uint8_t ecn_encap(std::uint8_t inner) noexcept { return inner & 3; }
// Inner ECN after decapsulation, or -1: drop (outer CE, inner Not-ECT).
constexpr int ecn_decap(std::uint8_t inner, std::uint8_t outer) noexcept {
    inner &= 3;
    outer &= 3;
    if (inner == kNotEct) return outer == kCe ? -1 : kNotEct;
    if (inner == kCe || outer == kCe) return kCe;
    if (outer == kEct1) return kEct1;        // ECT(0) inner, ECT(1) outer -> ECT(1)
    return inner;                            // outer Not-ECT / ECT(0): inner unchanged
}

}  // namespace p3::wire
