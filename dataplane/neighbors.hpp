// Neighbour table of one port (ARP for IPv4, ND for IPv6): IP -> MAC for next hops.
//
// Workers only read; the control thread is the only writer (it learns from ARP/ND packets the
// workers pass it, sends requests, retries, and holds packets waiting for an answer; see
// resolver.hpp). An entry, once inserted, keeps its IP for the life of the table, so a
// reader needs no lock: it finds the slot by open addressing and loads the MAC word (bit 63 =
// valid) with one atomic load. Capacity kNeighborSlots; a full table means "unresolvable".
#pragma once

#include <atomic>
#include <cstdint>
#include <cstring>

#include <rte_ether.h>
#include <rte_hash_crc.h>

#include "common/net.hpp"
#include "dataplane/limits.hpp"

namespace p3::dp {

class NeighborTable {
public:
    static constexpr std::uint64_t kValid = 1ull << 63;

    struct Entry {
        std::atomic<std::uint8_t> used{0};  // release-published after ip is written
        IpAddr ip;
        std::atomic<std::uint64_t> mac{0};  // kValid | 48-bit MAC; 0 = unresolved
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
            if (!e.used.load(std::memory_order_acquire)) return false;
            if (e.ip == ip) {
                std::uint64_t w = e.mac.load(std::memory_order_acquire);
                if (!(w & kValid)) return false;
                unpack(w, mac);
                return true;
            }
        }
        return false;
    }

    // Writer (control thread only). nullptr when the table is full.
    Entry* find_or_insert(const IpAddr& ip) noexcept {
        std::uint32_t i = hash(ip) & (kNeighborSlots - 1);
        for (unsigned n = 0; n < kNeighborSlots; ++n, i = (i + 1) & (kNeighborSlots - 1)) {
            Entry& e = slots_[i];
            if (!e.used.load(std::memory_order_relaxed)) {
                e.ip = ip;
                e.mac.store(0, std::memory_order_relaxed);
                e.used.store(1, std::memory_order_release);
                ++count_;
                return &e;
            }
            if (e.ip == ip) return &e;
        }
        return nullptr;
    }
    Entry* find(const IpAddr& ip) noexcept {
        std::uint32_t i = hash(ip) & (kNeighborSlots - 1);
        for (unsigned n = 0; n < kNeighborSlots; ++n, i = (i + 1) & (kNeighborSlots - 1)) {
            Entry& e = slots_[i];
            if (!e.used.load(std::memory_order_relaxed)) return nullptr;
            if (e.ip == ip) return &e;
        }
        return nullptr;
    }
    static void set_mac(Entry& e, const rte_ether_addr& mac) noexcept {
        e.mac.store(pack(mac), std::memory_order_release);
    }
    unsigned size() const noexcept { return count_; }
    const Entry& slot(unsigned i) const noexcept { return slots_[i]; }

private:
    Entry slots_[kNeighborSlots];
    unsigned count_ = 0;
};

}  // namespace p3::dp
