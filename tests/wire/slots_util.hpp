// What the key slot tests share (test_slots.cpp, test_slot_keys.cpp): logged reasons captured,
// an rte_rcu_qsbr on plain memory, key material that says which slot it is for, a free hook
// that checks every freed object is wiped.
#pragma once

#include <catch2/catch.hpp>

#include <cstring>
#include <span>
#include <vector>

#include "common/log.hpp"
#include "common/slots.hpp"

namespace p3test::slots {

using namespace p3::wire;
using p3::Reason;

// Logged reasons, captured instead of printed.
struct LogCapture {
    std::vector<Reason> reasons;
    LogCapture() {
        p3::log::Options o;
        o.to_stderr = false;
        p3::log::init(o);
        p3::log::set_sink([](p3::log::Level, Reason r, std::string_view, void* ctx) {
            static_cast<LogCapture*>(ctx)->reasons.push_back(r);
        }, this);
    }
    ~LogCapture() {
        p3::log::set_sink(nullptr, nullptr);
        p3::log::Options o;
        p3::log::init(o);
    }
    bool saw(Reason r) const {
        for (auto x : reasons)
            if (x == r) return true;
        return false;
    }
};

struct Qsbr {
    rte_rcu_qsbr* q;
    explicit Qsbr(unsigned n = 4) : q(qsbr_create(n)) { REQUIRE(q != nullptr); }
    ~Qsbr() { qsbr_free(q); }
};

// Key material whose bytes say which slot it is for, so a reader can verify what it reads.
struct Material {
    std::uint8_t key[32];
    std::uint8_t salt[4];
    explicit Material(std::uint32_t tag, std::size_t key_len = 16) : len(key_len) {
        for (unsigned i = 0; i < sizeof key; ++i) key[i] = static_cast<std::uint8_t>(tag * 31 + i);
        std::memcpy(salt, &tag, 4);
    }
    std::span<const std::uint8_t> k() const { return {key, len}; }
    std::span<const std::uint8_t> s() const { return {salt, 4}; }
    std::size_t len;
};

inline bool same_schedule(const GcmKey& a, const GcmKey& b) {
    return a.valid() && b.valid() && std::memcmp(&a.schedule(), &b.schedule(), sizeof(gcm_key_data)) == 0 &&
           std::memcmp(a.salt(), b.salt(), kSaltLen) == 0;
}

// What the table freed: slots (freed) and every object, keys and key states too (all).
struct FreeLog {
    std::vector<FreedSlot> freed;
    std::vector<FreedSlot> all;
    unsigned not_wiped = 0;
    static void hook(const FreedSlot& f, void* ctx) {
        auto* self = static_cast<FreeLog*>(ctx);
        const auto* p = static_cast<const std::uint8_t*>(f.memory);
        for (std::size_t i = 0; i < f.bytes; ++i)
            if (p[i] != 0) {
                ++self->not_wiped;
                break;
            }
        self->all.push_back(f);
        if (f.kind == FreedKind::rx_slot || f.kind == FreedKind::tx_slot) self->freed.push_back(f);
    }
    // Freed and wiped: the object that was at p (a key, a key state).
    bool saw(const void* p, FreedKind k) const {
        for (const auto& f : all)
            if (f.memory == p && f.kind == k) return true;
        return false;
    }
};

inline TxParams tx_params(std::uint32_t session, std::uint32_t peer_id) {
    TxParams p;
    p.session = session;
    p.peer_id = peer_id;
    p.outer.src = *p3::IpAddr::parse("192.0.2.1");
    p.outer.dst = *p3::IpAddr::parse("192.0.2.2");
    return p;
}

}  // namespace p3test::slots
