// DataplaneLink: the control channel's key installer and control-packet sender on dp::Dataplane.
#include "control/channel/dp_link.hpp"

#include <rte_mbuf.h>

#include <algorithm>
#include <cstring>

#include "common/log.hpp"
#include "common/slots.hpp"

namespace p3::channel {

namespace {
dp::LaneKeys lane_keys(const KeyMaterial& k, std::uint32_t lanes, bool size_hiding) {
    dp::LaneKeys lk;
    lk.key = k.key.span();
    lk.salt = k.salt.span();
    lk.lanes = lanes;
    lk.size_hiding = size_hiding;
    return lk;
}
}  // namespace

std::optional<std::uint32_t> DataplaneLink::install_rx(const KeyMaterial& data, std::uint32_t lanes) {
    auto base = dp_.reserve_rx_ids(lanes);
    if (!base) return std::nullopt;
    if (!dp_.install_rx(sid_, *base, lane_keys(data, lanes, size_hiding_))) {
        dp_.retire_rx(sid_, *base);
        return std::nullopt;
    }
    rx_lanes_[*base] = lanes;
    return base;
}

bool DataplaneLink::rx_seen(std::uint32_t p3_id) {
    auto it = rx_lanes_.find(p3_id);
    const std::uint32_t lanes = it == rx_lanes_.end() ? 1 : it->second;
    wire::SlotTable& t = dp_.slots();
    for (std::uint32_t l = 0; l < lanes; ++l) {
        const wire::RxSlot* s = t.rx(wire::SlotId(p3_id).lane(l).raw());
        if (s && s->replay().top() != 0) return true;
    }
    return false;
}

bool DataplaneLink::switch_tx(std::uint32_t peer_p3_id, const KeyMaterial& data, std::uint32_t lanes) {
    return dp_.install_tx(sid_, peer_p3_id, lane_keys(data, lanes, size_hiding_));
}

std::uint64_t DataplaneLink::tx_packets() {
    std::uint64_t most = 0;
    for (unsigned l = 0; l < dp_.tx_lanes(); ++l) most = std::max(most, dp_.tx_last_seq(sid_, static_cast<std::uint16_t>(l)));
    return most;
}

void DataplaneLink::send_control(std::span<const std::uint8_t> inner) {
    rte_mbuf* m = rte_pktmbuf_alloc(dp_.pool());
    if (m == nullptr || inner.size() > rte_pktmbuf_tailroom(m)) {
        if (m) rte_pktmbuf_free(m);
        ++send_failures_;
        return;
    }
    char* p = rte_pktmbuf_append(m, static_cast<std::uint16_t>(inner.size()));
    std::memcpy(p, inner.data(), inner.size());
    dp::PktMeta& md = dp::meta(m);
    md = dp::PktMeta{};
    md.kind = dp::MsgKind::tx_inner;
    md.side = dp::Side::wan;
    md.session = sid_;
    if (!dp_.send_to_workers(m)) {
        rte_pktmbuf_free(m);
        ++send_failures_;
    }
}

}  // namespace p3::channel
