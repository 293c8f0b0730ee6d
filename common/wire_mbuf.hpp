// The wire code's own helpers, shared by encapsulation (wire.cpp) and decapsulation
// (wire_in.cpp) and by nothing else: walking the segments of a chained mbuf. (Wire fields
// are read and written through common/bytes.hpp, sums through common/checksum.hpp.) Inline:
// they run per packet.
#pragma once

#include <rte_byteorder.h>
#include <rte_mbuf.h>

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "common/bytes.hpp"
#include "common/checksum.hpp"
#include "common/crypto.hpp"
#include "common/wire_limits.hpp"

namespace p3::wire::impl {

// ---- mbuf chain helpers -------------------------------------------------------------------

// Segments covering bytes [off, off + len) of the packet; 0 when more than max are needed
// or the range is beyond the packet.
inline unsigned segs_of(rte_mbuf* m, std::uint32_t off, std::uint32_t len, IoSeg* out, unsigned max) noexcept {
    unsigned k = 0;
    for (rte_mbuf* s = m; s != nullptr && len > 0; s = s->next) {
        if (off >= s->data_len) {
            off -= s->data_len;
            continue;
        }
        if (k == max) return 0;
        const std::uint32_t take = std::min<std::uint32_t>(s->data_len - off, len);
        out[k++] = IoSeg{rte_pktmbuf_mtod_offset(s, std::uint8_t*, off), take};
        len -= take;
        off = 0;
    }
    if (len != 0) return 0;
    if (k == 0) out[k++] = IoSeg{nullptr, 0};   // an empty range is one empty segment
    return k;
}

// Copies len bytes starting at off out of the chain (segs already computed).
inline void gather(const IoSeg* segs, unsigned ns, std::uint8_t* dst) noexcept {
    for (unsigned i = 0; i < ns; ++i) {
        std::memcpy(dst, segs[i].data, segs[i].len);
        dst += segs[i].len;
    }
}
// Writes src[(i + r) mod n] to position i of the chain (rotate left) ...
inline void scatter_rotl(const IoSeg* segs, unsigned ns, const std::uint8_t* src, std::size_t n, std::uint32_t r) noexcept {
    std::size_t pos = r;   // index in src of the next byte to write
    for (unsigned i = 0; i < ns; ++i) {
        std::uint8_t* d = segs[i].data;
        std::size_t left = segs[i].len;
        while (left) {
            const std::size_t run = std::min(left, n - pos);
            std::memcpy(d, src + pos, run);
            d += run;
            left -= run;
            pos += run;
            if (pos == n) pos = 0;
        }
    }
}

// Removes len bytes from the end of a (possibly chained) packet; segments left empty at the
// tail are freed. false if the packet is shorter.
inline bool chain_trim(rte_mbuf* m, std::uint32_t len) noexcept {
    if (len > m->pkt_len) return false;
    if (m->nb_segs == 1) {
        m->data_len = static_cast<std::uint16_t>(m->data_len - len);
        m->pkt_len -= len;
        return true;
    }
    std::uint32_t keep = m->pkt_len - len;
    rte_mbuf* s = m;
    rte_mbuf* last = m;
    std::uint16_t segs = 0;
    while (s != nullptr) {
        ++segs;
        last = s;
        if (keep <= s->data_len) {
            s->data_len = static_cast<std::uint16_t>(keep);
            break;
        }
        keep -= s->data_len;
        s = s->next;
    }
    if (last->next != nullptr) {
        rte_pktmbuf_free(last->next);
        last->next = nullptr;
    }
    m->nb_segs = segs;
    m->pkt_len -= len;
    return true;
}

inline constexpr unsigned kMaxSegsU = static_cast<unsigned>(kMaxSegs);

// Moves the link header (l2_len bytes). The Ethernet case is a constant-size move the
// compiler inlines; a libc call per packet costs more than the move.
[[gnu::always_inline]] inline void move_l2(std::uint8_t* dst, const std::uint8_t* src, unsigned l2_len) noexcept {
    if (l2_len == 14) {
        // Ethernet: two overlapping 8-byte loads, then the stores (a memmove, since both
        // loads come first), instead of a call into libc's memmove for 14 bytes.
        std::uint64_t a, b;
        std::memcpy(&a, src, 8);
        std::memcpy(&b, src + 6, 8);
        std::memcpy(dst, &a, 8);
        std::memcpy(dst + 6, &b, 8);
    } else if (l2_len != 0) {
        std::memmove(dst, src, l2_len);
    }
}

}  // namespace p3::wire::impl
