// The start checks (config.hpp check_start): what a configuration that loads still lacks for
// p3d to start or to forward. Loading (config_validate.cpp) refuses what is inconsistent in
// itself; these are about the appliance it describes: a LAN address to route onto, a way to
// every remote (on the WAN link or through its gateway), the WAN port answering to the address
// peers set up sessions with, remote subnets that are not our own LAN, and sizes the
// dataplane's tables and packet pool can hold. p3ctl config check reports them as errors;
// p3d logs them when it starts (it still starts: a secondary may be brought up before its
// network is complete).
#include <algorithm>
#include <string>
#include <vector>

#include "common/config.hpp"
#include "common/dp_sizes.hpp"   // the sizes the dataplane refuses beyond

namespace p3::config {

namespace {

int first(int a, int b, int c = 0) { return a ? a : b ? b : c; }

// A host address of the port (host bits kept) as a prefix of the link it is on.
bool on_link(const PortConfig& pc, const IpAddr& a) { return pc.address.addr.family && pc.address.contains(a); }

void check_lan(const Config& cfg, std::vector<Error>& out) {
    const auto& lan = cfg.dataplane.lan;
    const auto& L = cfg.lines;
    if (lan.address.addr.family == 0) {
        out.push_back({cfg.source, first(L.lan, L.local, 1), Reason::CFG_NO_LAN_ADDRESS,
                       "dataplane.lan.address missing: p3d would start but forward nothing (no address on the "
                       "LAN port to answer ARP/ND for and route decrypted traffic from)"});
        return;
    }
    for (const auto& s : cfg.local.subnets)
        if (!lan.gateway && !on_link(lan, s.addr))
            out.push_back({cfg.source, first(L.local_subnets, L.lan), Reason::CFG_NO_GATEWAY,
                           "local.subnets " + s.str() + " is not on the LAN link " + lan.address.str() +
                               " and dataplane.lan.gateway is not set: its hosts cannot be reached"});
}

void check_wan(const Config& cfg, std::vector<Error>& out) {
    const auto& wan = cfg.dataplane.wan;
    const auto& L = cfg.lines;
    if (wan.address.addr != cfg.local.address)
        out.push_back({cfg.source, first(L.address, L.wan, L.local), Reason::CFG_WAN_ADDRESS_MISMATCH,
                       "local.address " + cfg.local.address.str() + " is not the WAN port's address " +
                           wan.address.str() + ": peers would send their setup to an address the WAN port does not have"});
    if (wan.gateway) return;
    for (const auto& r : cfg.remotes)
        if (!on_link(wan, r.address))
            out.push_back({cfg.source, r.line, Reason::CFG_NO_GATEWAY,
                           "remote " + std::to_string(r.id) + ": address " + r.address.str() + " is not on the WAN link " +
                               wan.address.str() + " and dataplane.wan.gateway is not set: it cannot be reached"});
}

// A remote's subnet that overlaps the LAN prefix or local.subnets: packets from our LAN to our
// own hosts in the overlap would be routed into the tunnel, and the remote would be accepted
// as the source of addresses that are ours.
void check_own_lan(const Config& cfg, std::vector<Error>& out) {
    std::vector<Prefix> own = cfg.local.subnets;
    if (cfg.dataplane.lan.address.addr.family) own.push_back(cfg.dataplane.lan.address);
    for (const auto& r : cfg.remotes)
        for (const auto& s : r.subnets)
            for (const auto& o : own)
                if (s.overlaps(o)) {
                    const bool lan = &o == &own.back() && cfg.dataplane.lan.address.addr.family;
                    Prefix net = o;
                    out.push_back({cfg.source, r.line, Reason::CFG_SUBNET_COVERS_LAN,
                                   "remote " + std::to_string(r.id) + ": subnet " + s.str() + " overlaps our own " +
                                       (lan ? "LAN " + net.str() + " (dataplane.lan.address)"
                                            : "network " + net.str() + " (local.subnets)")});
                    break;
                }
}

// The dataplane's fixed sizes (common/dp_sizes.hpp): sessions, route tables, and RX rings of
// at least 64 buffers each on both ports within the packet pool (at least kMinMbufs buffers).
void check_sizes(const Config& cfg, std::vector<Error>& out) {
    const auto& L = cfg.lines;
    if (cfg.remotes.size() > dp::kMaxSessions - 1)
        out.push_back({cfg.source, cfg.remotes[dp::kMaxSessions - 1].line, Reason::CFG_DP_LIMIT,
                       std::to_string(cfg.remotes.size()) + " remotes: the dataplane holds at most " +
                           std::to_string(dp::kMaxSessions - 1) + " sessions"});
    std::size_t v4 = 0, v6 = 0;
    for (const auto& r : cfg.remotes)
        for (const auto& s : r.subnets) (s.addr.is_v4() ? v4 : v6) += 1;
    if (v4 > dp::kMaxRoutes4 || v6 > dp::kMaxRoutes6)
        out.push_back({cfg.source, cfg.remotes.empty() ? 0 : cfg.remotes.back().line, Reason::CFG_DP_LIMIT,
                       std::to_string(v4) + " IPv4 and " + std::to_string(v6) +
                           " IPv6 remote subnets: the route tables hold at most " + std::to_string(dp::kMaxRoutes4) +
                           " and " + std::to_string(dp::kMaxRoutes6)});
    const unsigned rxq = cfg.dataplane.rx_queues;
    const unsigned mbufs = std::max<unsigned>(cfg.dataplane.mbufs, dp::kMinMbufs);
    if (rxq != 0 && 2u * rxq * 64u > mbufs)
        out.push_back({cfg.source, first(L.rx_queues, L.mbufs), Reason::CFG_DP_LIMIT,
                       "dataplane.rx_queues " + std::to_string(rxq) + " on both ports need at least " +
                           std::to_string(2u * rxq * 64u) + " packet buffers for their RX rings (64 each), more than " +
                           "dataplane.mbufs gives (" + std::to_string(mbufs) + "): raise mbufs or lower rx_queues"});
}

// A member needs its cluster key to seal and open what it replicates: missing, unreadable
// or of the wrong length, it is an error here (loading only warns of a file not there yet).
void check_cluster_key(const Config& cfg, std::vector<Error>& out) {
    if (!cfg.local.cluster_state || cfg.cluster.key_file.empty()) return;
    SecretBytes key;
    std::string why;
    if (!read_cluster_key(cfg.cluster.key_file, key, why))
        out.push_back({cfg.source, first(cfg.lines.cluster_key, cfg.cluster.line), Reason::CLUSTER_KEY,
                       "cluster.key_file " + why});
}

}  // namespace

std::vector<Error> check_start(const Config& cfg) {
    std::vector<Error> out;
    check_lan(cfg, out);
    check_wan(cfg, out);
    check_own_lan(cfg, out);
    check_sizes(cfg, out);
    check_cluster_key(cfg, out);
    return out;
}

}  // namespace p3::config
