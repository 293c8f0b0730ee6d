// Neighbour table of one port (ARP for IPv4, ND for IPv6): IP -> MAC for next hops.
//
// Workers only read; the control thread is the only writer (it learns from ARP/ND packets the
// workers pass it, sends requests, retries, and holds packets waiting for an answer; see
// resolver.hpp). A reader needs no lock: it finds the slot by open addressing (linear
// probing) and loads the MAC word (bit 63 = valid) with one atomic load.
//
// Slot states: empty -> live (IP written, then `used` published) -> dead (erase(): an entry
// that never resolved) -> live again for another IP. Readers skip dead slots and stop at
// empty ones. A dead slot keeps its IP until every worker has passed a quiescent state since
// it died (an RCU token, checked without waiting), so a reader that saw it live never reads
// an IP being rewritten. A live entry's MAC goes valid -> 0 only for a configured next hop
// that stopped answering (clear_mac). Capacity kNeighborSlots; a full table means "unresolvable".
#pragma once

#include <atomic>
#include <cstdint>
#include <cstring>

#include <rte_ether.h>
#include <rte_hash_crc.h>
#include <rte_rcu_qsbr.h>

#include "common/net.hpp"
#include "dataplane/limits.hpp"

namespace p3::dp {

class NeighborTable {
public:
    static constexpr std::uint64_t kValid = 1ull << 63;

    static constexpr std::uint8_t kEmpty = 0, kLive = 1, kDead = 2;

    struct Entry {
        std::atomic<std::uint8_t> used{kEmpty};  // kLive release-published after ip is written
        IpAddr ip;
        std::atomic<std::uint64_t> mac{0};  // kValid | 48-bit MAC; 0 = unresolved
        std::uint64_t dead_token = 0;       // writer only: RCU token taken when it died
    };

    static std::uint32_t hash(const IpAddr& ip) noexcept {
        std::uint32_t w[4];
        std::memcpy(w, ip.bytes.data(), sizeof w);   // IpAddr's bytes need not be aligned
        std::uint32_t h = rte_hash_crc_4byte(w[0], ip.family);
        if (!ip.is_v4()) {
            h = rte_hash_crc_4byte(w[1], h);
            h = rte_hash_crc_4byte(w[2], h);
            h = rte_hash_crc_4byte(w[3], h);
        }
        return h;
    }
    static std::uint64_t pack(const rte_ether_addr& a) noexcept {
        std::uint64_t w = 0;
        std::memcpy(&w, a.addr_bytes, 6);
        return w | kValid;
    }
    static void unpack(std::uint64_t w, rte_ether_addr& a) noexcept { std::memcpy(a.addr_bytes, &w, 6); }

    // Reader: true with the MAC when resolved.
    bool lookup(const IpAddr& ip, rte_ether_addr& mac) const noexcept {
        std::uint32_t i = hash(ip) & (kNeighborSlots - 1);
        for (unsigned n = 0; n < kNeighborSlots; ++n, i = (i + 1) & (kNeighborSlots - 1)) {
            const Entry& e = slots_[i];
            const std::uint8_t u = e.used.load(std::memory_order_acquire);
            if (u == kEmpty) return false;
            if (u == kLive && e.ip == ip) {
                std::uint64_t w = e.mac.load(std::memory_order_acquire);
                if (!(w & kValid)) return false;
                unpack(w, mac);
                return true;
            }
        }
        return false;
    }

    // Writer (control thread only). nullptr when the table is full. qsbr: the readers' RCU
    // variable (nullptr: no reader runs, a dead slot is reusable at once).
    Entry* find_or_insert(const IpAddr& ip, rte_rcu_qsbr* qsbr = nullptr) noexcept {
        std::uint32_t i = hash(ip) & (kNeighborSlots - 1);
        Entry* reuse = nullptr;
        for (unsigned n = 0; n < kNeighborSlots; ++n, i = (i + 1) & (kNeighborSlots - 1)) {
            Entry& e = slots_[i];
            const std::uint8_t u = e.used.load(std::memory_order_relaxed);
            if (u == kEmpty) return publish(reuse ? *reuse : e, ip);
            if (u == kLive && e.ip == ip) return &e;
            if (u == kDead && !reuse && (!qsbr || rte_rcu_qsbr_check(qsbr, e.dead_token, false) == 1)) reuse = &e;
        }
        return reuse ? publish(*reuse, ip) : nullptr;
    }
    Entry* find(const IpAddr& ip) noexcept {
        std::uint32_t i = hash(ip) & (kNeighborSlots - 1);
        for (unsigned n = 0; n < kNeighborSlots; ++n, i = (i + 1) & (kNeighborSlots - 1)) {
            Entry& e = slots_[i];
            const std::uint8_t u = e.used.load(std::memory_order_relaxed);
            if (u == kEmpty) return nullptr;
            if (u == kLive && e.ip == ip) return &e;
        }
        return nullptr;
    }
    // Writer: an entry that never resolved goes (a resolved one stays: its MAC may be in use).
    // Returns false when it is resolved, or not there.
    bool erase_unresolved(const IpAddr& ip, rte_rcu_qsbr* qsbr = nullptr) noexcept {
        Entry* e = find(ip);
        if (!e || (e->mac.load(std::memory_order_relaxed) & kValid)) return false;
        e->dead_token = qsbr ? rte_rcu_qsbr_start(qsbr) : 0;
        e->used.store(kDead, std::memory_order_release);
        --count_;
        return true;
    }
    static void set_mac(Entry& e, const rte_ether_addr& mac) noexcept {
        e.mac.store(pack(mac), std::memory_order_release);
    }
    // Writer: a configured next hop that stopped answering is unresolved again (readers hand
    // its frames to the control thread instead of sending them to a MAC that may be stale).
    static void clear_mac(Entry& e) noexcept { e.mac.store(0, std::memory_order_release); }
    unsigned size() const noexcept { return count_; }   // live entries
    const Entry& slot(unsigned i) const noexcept { return slots_[i]; }

private:
    Entry* publish(Entry& e, const IpAddr& ip) noexcept {
        e.ip = ip;   // readers skip the slot until `used` says live
        e.mac.store(0, std::memory_order_relaxed);
        e.used.store(kLive, std::memory_order_release);
        ++count_;
        return &e;
    }

    Entry slots_[kNeighborSlots];
    unsigned count_ = 0;
};

}  // namespace p3::dp
