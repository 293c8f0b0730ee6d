#include "dataplane/routes.hpp"

#include <rte_errno.h>

#include <string>
#include <vector>

#include "common/log.hpp"
#include "dataplane/limits.hpp"

namespace p3::dp {

RouteTable::~RouteTable() {
    if (v4_) rte_lpm_free(v4_);
    for (auto* t : v6_)
        if (t) rte_lpm6_free(t);
}

bool RouteTable::create(const char* name, rte_rcu_qsbr* qsbr) {
    qsbr_ = qsbr;
    rte_lpm_config c4{};
    c4.max_rules = kMaxRoutes4;
    c4.number_tbl8s = kTbl8Groups4;
    std::string n4 = std::string(name) + "_r4";
    v4_ = rte_lpm_create(n4.c_str(), SOCKET_ID_ANY, &c4);
    if (!v4_) {
        P3_LOG_ERROR(DP_TABLES, "IPv4 route table %s: %s", n4.c_str(), rte_strerror(rte_errno));
        return false;
    }
    if (qsbr) {
        rte_lpm_rcu_config rc{};
        rc.v = qsbr;
        rc.mode = RTE_LPM_QSBR_MODE_DQ;
        if (rte_lpm_rcu_qsbr_add(v4_, &rc) != 0) {
            P3_LOG_ERROR(DP_TABLES, "IPv4 route table %s: RCU: %s", n4.c_str(), rte_strerror(rte_errno));
            return false;
        }
    }
    rte_lpm6_config c6{};
    c6.max_rules = kMaxRoutes6;
    c6.number_tbl8s = kTbl8Groups6;
    for (int i = 0; i < 2; ++i) {
        std::string n6 = std::string(name) + "_r6" + std::to_string(i);
        v6_[i] = rte_lpm6_create(n6.c_str(), SOCKET_ID_ANY, &c6);
        if (!v6_[i]) {
            P3_LOG_ERROR(DP_TABLES, "IPv6 route table %s: %s", n6.c_str(), rte_strerror(rte_errno));
            return false;
        }
    }
    v6_active_.store(v6_[0], std::memory_order_release);
    return true;
}

bool RouteTable::apply6(const Prefix* p, std::size_t n, std::uint32_t session, bool add) {
    rte_lpm6* active = v6_active_.load(std::memory_order_relaxed);
    rte_lpm6* idle = active == v6_[0] ? v6_[1] : v6_[0];
    auto one = [&](rte_lpm6* t, const Prefix& x) {
        return add ? rte_lpm6_add(t, x.addr.bytes.data(), x.len, session)
                   : rte_lpm6_delete(t, x.addr.bytes.data(), x.len);
    };
    for (std::size_t i = 0; i < n; ++i) {
        int rc = one(idle, p[i]);
        if (rc != 0) {
            // Undo on the idle copy so both copies stay equal (the active one is untouched).
            for (std::size_t j = 0; j < i; ++j) rte_lpm6_delete(idle, p[j].addr.bytes.data(), p[j].len);
            P3_LOG_ERROR(DP_ROUTE, "%s %s: %s", add ? "add" : "remove", p[i].str().c_str(), rte_strerror(-rc));
            return false;
        }
    }
    v6_active_.store(idle, std::memory_order_release);
    if (qsbr_) rte_rcu_qsbr_synchronize(qsbr_, RTE_QSBR_THRID_INVALID);
    for (std::size_t i = 0; i < n; ++i) one(active, p[i]);
    return true;
}

bool RouteTable::add(const Prefix& p, std::uint32_t session) { return add_many({&p, 1}, session); }

std::uint32_t RouteTable::owner(const Prefix& p) const noexcept {
    std::uint32_t nh = 0;
    if (p.addr.is_v4()) return v4_ && rte_lpm_is_rule_present(v4_, p.addr.v4_host(), p.len, &nh) == 1 ? nh : 0;
    rte_lpm6* t = v6_active_.load(std::memory_order_relaxed);   // both copies agree between changes
    return t && rte_lpm6_is_rule_present(t, p.addr.bytes.data(), p.len, &nh) == 1 ? nh : 0;
}

// The IPv4 routes go in one by one (rte_lpm is RCU-safe per change); the IPv6 ones in one
// apply6 (one grace period). Counts only prefixes that were not in the table before.
bool RouteTable::add_many(std::span<const Prefix> prefixes, std::uint32_t session) {
    std::vector<Prefix> v6, added4;
    std::uint32_t new6 = 0;
    for (const auto& p : prefixes) {
        if (p.addr.is_v4()) {
            const bool had = owner(p) != 0;
            int rc = rte_lpm_add(v4_, p.addr.v4_host(), p.len, session);
            if (rc != 0) {
                P3_LOG_ERROR(DP_ROUTE, "add %s: %s", p.str().c_str(), rte_strerror(-rc));
                for (const auto& q : added4) rte_lpm_delete(v4_, q.addr.v4_host(), q.len);
                n4_ -= static_cast<std::uint32_t>(added4.size());
                return false;
            }
            if (!had) {
                ++n4_;
                added4.push_back(p);
            }
        } else {
            if (owner(p) == 0) ++new6;
            v6.push_back(p);
        }
    }
    if (!v6.empty()) {
        if (!apply6(v6.data(), v6.size(), session, true)) {
            for (const auto& q : added4) rte_lpm_delete(v4_, q.addr.v4_host(), q.len);
            n4_ -= static_cast<std::uint32_t>(added4.size());
            return false;
        }
        n6_ += new6;
    }
    return true;
}

bool RouteTable::remove(const Prefix& p) { return remove_many({&p, 1}); }

bool RouteTable::remove_many(std::span<const Prefix> prefixes) {
    bool ok = true;
    std::vector<Prefix> v6;
    for (const auto& p : prefixes) {
        if (p.addr.is_v4()) {
            int rc = rte_lpm_delete(v4_, p.addr.v4_host(), p.len);
            if (rc != 0) {
                P3_LOG_ERROR(DP_ROUTE, "remove %s: %s", p.str().c_str(), rte_strerror(-rc));
                ok = false;
                continue;
            }
            --n4_;
        } else if (owner(p) != 0) {   // apply6 is all or nothing: only what is there
            v6.push_back(p);
        } else {
            P3_LOG_ERROR(DP_ROUTE, "remove %s: not in the table", p.str().c_str());
            ok = false;
        }
    }
    if (!v6.empty()) {
        if (!apply6(v6.data(), v6.size(), 0, false)) return false;
        n6_ -= static_cast<std::uint32_t>(v6.size());
    }
    return ok;
}

}  // namespace p3::dp
