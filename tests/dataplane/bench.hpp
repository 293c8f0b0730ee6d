// Dataplanes on ring ports for the tests: one alone (the test plays both the LAN and the WAN),
// or two back to back (see harness.hpp).
#pragma once

#include <functional>
#include <memory>

#include "harness.hpp"

namespace p3test {

struct Side {
    const char* lan;       // "10.1.0.1/24"
    const char* wan;       // "192.0.2.1/24"
    const char* lan_gw;    // nullptr = none
    const char* wan_gw;
    bool gw_arp = false;   // the gateways are asked for (ARP / ND) instead of a static gateway_mac
};

inline p3::config::Config make_config(const Side& s, std::uint16_t lan_port, std::uint16_t wan_port) {
    p3::config::Config c;
    c.role = p3::config::Role::primary;
    c.local.address = p3::Prefix::parse(s.wan, false)->addr;
    c.dataplane.lan.port_id = lan_port;
    c.dataplane.lan.address = *p3::Prefix::parse(s.lan, false);
    c.dataplane.wan.port_id = wan_port;
    c.dataplane.wan.address = *p3::Prefix::parse(s.wan, false);
    if (s.lan_gw) {
        c.dataplane.lan.gateway = p3::IpAddr::parse(s.lan_gw);
        if (!s.gw_arp) c.dataplane.lan.gateway_mac = p3::MacAddr::parse("02:00:00:00:00:fe");
    }
    if (s.wan_gw) {
        c.dataplane.wan.gateway = p3::IpAddr::parse(s.wan_gw);
        if (!s.gw_arp) c.dataplane.wan.gateway_mac = p3::MacAddr::parse("02:00:00:00:00:fe");
    }
    c.dataplane.rx_queues = 2;
    c.dataplane.mbufs = 4095;
    c.dataplane.idle_backoff_us = 50;   // several lcores share each CPU here
    c.dataplane.idle_polls = 64;
    c.source = "test";
    return c;
}

inline p3::config::Remote remote(std::uint32_t id, const char* addr, std::vector<const char*> subnets) {
    p3::config::Remote r;
    r.id = id;
    r.address = *p3::IpAddr::parse(addr);
    for (auto* s : subnets) r.subnets.push_back(*p3::Prefix::parse(s));
    return r;
}

inline std::vector<p3::config::Remote> one(p3::config::Remote r) {
    std::vector<p3::config::Remote> v;
    v.push_back(std::move(r));
    return v;
}

// One dataplane; the test holds both ends of both ports.
struct Single {
    RingPort lan, wan;
    p3::config::Config cfg;
    std::unique_ptr<p3::dp::Dataplane> dp;
    p3::control::SteadyClock clock;
    std::unique_ptr<p3::control::ControlThread> ctl;
    Mac lan_mac{}, wan_mac{};

    // control: the control plane (nullptr: what reaches the control thread is freed);
    // control_thread false: the test calls control_pass(*ctl, now_ms) itself, with a clock of
    // its own. local_nets: protected subnets behind a LAN gateway (local.subnets), which
    // inbound inner destinations may be in.
    Single(const std::string& name, const Side& s, std::vector<p3::config::Remote>&& remotes,
           std::vector<unsigned> lcores = {1, 2}, p3::control::Plane* control = nullptr,
           bool control_thread = true, std::vector<const char*> local_nets = {}, bool spread_lanes = false,
           const std::function<void(p3::config::Config&)>& edit = {}) {
        test_pool();
        static unsigned seq = 0;
        const std::string n = name + std::to_string(seq++);
        const unsigned w = static_cast<unsigned>(lcores.size());
        lan = make_port(n + "l", rings(n + "lr", 2), rings(n + "lt", w));
        wan = make_port(n + "w", rings(n + "wr", 2), rings(n + "wt", w));
        cfg = make_config(s, lan.port, wan.port);
        cfg.dataplane.spread_lanes = spread_lanes;
        for (auto& r : remotes) cfg.remotes.push_back(std::move(r));
        for (const char* p : local_nets) cfg.local.subnets.push_back(*p3::Prefix::parse(p));
        if (edit) edit(cfg);   // settings the arguments do not reach (a cluster)
        p3::dp::Options o;
        o.name = n;
        o.lcores = lcores;
        dp = std::make_unique<p3::dp::Dataplane>(cfg, o);
        REQUIRE(dp->init());
        ctl = std::make_unique<p3::control::ControlThread>(dp->control_port(), control, clock);
        REQUIRE(dp->start());
        if (control_thread) REQUIRE(ctl->start(n + "-ctl"));
        lan_mac = mac_of(lan.port);
        wan_mac = mac_of(wan.port);
    }
    ~Single() {
        ctl.reset();   // the control plane first: it uses the dataplane's port
        dp->request_stop();
        dp->wait();
        dp->close();
        for (auto* r : lan.rx) drain_free(r);
        for (auto* r : lan.tx) drain_free(r);
        for (auto* r : wan.rx) drain_free(r);
        for (auto* r : wan.tx) drain_free(r);
    }
    static void drain_free(rte_ring* r) {
        void* m;
        while (rte_ring_dequeue(r, &m) == 0) rte_pktmbuf_free(static_cast<rte_mbuf*>(m));
        rte_ring_free(r);
    }
    std::uint64_t drops(p3::dp::Drop d) const { return dp->drops(d); }
};

}  // namespace p3test
