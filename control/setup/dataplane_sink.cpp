// Session keys from the setup exchange into the dataplane's key slots (see dataplane_sink.hpp).
#include "control/setup/dataplane_sink.hpp"

#include "common/log.hpp"
#include "common/slots.hpp"
#include "common/wire_limits.hpp"

namespace p3::setup {

std::optional<std::uint32_t> DataplaneSink::reserve_rx_id(std::uint32_t /*remote_id*/, std::uint32_t peer_lanes) {
    const std::uint32_t width = peer_lanes >= 1 && peer_lanes <= wire::kMaxLanes ? peer_lanes : wire::kMaxLanes;
    auto id = dp_.reserve_rx_ids(width);
    if (id) reserved_[*id] = width;
    return id;
}

std::uint32_t DataplaneSink::give_back(std::uint32_t rx_id, std::uint32_t from) {
    auto it = reserved_.find(rx_id);
    const std::uint32_t width = it == reserved_.end() ? wire::kMaxLanes : it->second;
    // Retiring an ID that is only reserved frees it; one that is free stays free.
    for (std::uint32_t n = from; n < width; ++n) dp_.slots().retire_rx(wire::SlotId(rx_id).lane(n));
    if (it != reserved_.end()) reserved_.erase(it);
    return width;
}

void DataplaneSink::release_rx_id(std::uint32_t rx_id) { give_back(rx_id); }

bool DataplaneSink::install(EstablishedSession&& s) {
    const std::uint32_t sid = dp_.session_of(s.remote_id);
    if (sid == 0) {
        P3_LOG_ERROR(SETUP_KEYS_REJECTED, "setup with remote %u: no dataplane session for it", s.remote_id);
        return false;
    }
    // Who sends on how many lanes: the push says (params.lanes = the secondary's, primary_lanes
    // = the primary's); 0 means one per worker of that machine.
    // The block reserved for it is as wide as the peer announced (or the most a peer may use);
    // a secondary learns the primary's lanes from the push and gives the rest back.
    const bool primary = s.local_role == config::Role::primary;
    const auto res = reserved_.find(s.rx_p3_id);
    const std::uint32_t width = res == reserved_.end() ? wire::kMaxLanes : res->second;
    std::uint32_t peer_lanes = primary ? width : s.config.primary_lanes;
    if (peer_lanes == 0 || peer_lanes > width) peer_lanes = width;
    const bool hiding = s.config.params.size_hiding;
    const dp::LaneKeys rx{s.data_rx.key.span(), s.data_rx.salt.span(), peer_lanes, hiding};
    const dp::LaneKeys tx{s.data_tx.key.span(), s.data_tx.salt.span(), dp_.tx_lanes(), hiding};
    // Behind a NAT, P3 travels in UDP between the nat_ports (set before install_tx, which
    // builds the outer headers). The primary addresses the secondary where the NAT showed it;
    // which port the NAT maps the secondary's nat_port to is not visible in the setup
    // exchange (which runs on another port), so the primary assumes a port-preserving NAT
    // (following another mapping is not done yet: docs/setup-exchange.md §NAT detection).
    if (s.nat()) {
        const std::uint16_t port = dp_.config().local.nat_port;
        if (!dp_.set_peer(sid, s.peer.addr, port, port)) {
            give_back(s.rx_p3_id);
            return false;
        }
    }
    // Inbound first: the peer may send as soon as it has our answer.
    if (!dp_.install_rx(sid, s.rx_p3_id, rx)) {
        give_back(s.rx_p3_id);
        return false;
    }
    if (!dp_.install_tx(sid, s.tx_p3_id, tx)) {
        dp_.retire_rx(sid, s.rx_p3_id);
        give_back(s.rx_p3_id);
        return false;
    }
    give_back(s.rx_p3_id, peer_lanes);   // the lanes the peer does not use
    ++installed_;
    if (on_up_) on_up_(s, sid, dp_.tx_lanes(), peer_lanes);
    return true;
}

}  // namespace p3::setup
