// The setup exchange's SessionSink on the real dataplane: P3 IDs are reserved from the
// dataplane's slot table, and an established session's first data keys become inbound and
// outbound key slots for every lane (dataplane/control_iface.hpp: reserve_rx_ids, install_rx,
// install_tx), which sets the session up so its traffic flows. Control thread only.
//
// Lanes: the block reserved for receiving is as wide as the lanes the peer announced in its
// IKE_AUTH request (notify p3_lanes: a p3 secondary says how many workers send); a peer that
// did not announce (the initiator's own reservation, made before it hears from the primary; a
// standard IKEv2 peer) gets wire::kMaxLanes. Inbound slots are published for the lanes the peer
// sends on (announced; or pushed primary_lanes on a secondary, 0 = the whole block) and the
// rest of the block is given back; outbound lanes are this dataplane's sending workers, and
// that is what this side announces. (Reserving 64 IDs for every session capped a primary at
// 2047 sessions in a table of 2^17 IDs.)
//
// The session's control keys and pushed parameters go on to the control channel through the
// optional on_up hook (called after the data keys are in place).
#pragma once

#include <functional>
#include <unordered_map>

#include "control/setup/session_sink.hpp"
#include "dataplane/dataplane.hpp"

namespace p3::setup {

class DataplaneSink final : public SessionSink {
public:
    // After the data keys are in place: the session, its dataplane id, and the lanes each side
    // sends on (what the control channel's InitialKeys needs with the control keys).
    using UpHook = std::function<void(const EstablishedSession&, std::uint32_t session_id, std::uint32_t local_lanes,
                                      std::uint32_t peer_lanes)>;
    explicit DataplaneSink(dp::Dataplane& dp, UpHook on_up = {}) : dp_(dp), on_up_(std::move(on_up)) {}

    std::optional<std::uint32_t> reserve_rx_id(std::uint32_t remote_id, std::uint32_t peer_lanes) override;
    void release_rx_id(std::uint32_t rx_id) override;
    bool install(EstablishedSession&& s) override;
    std::uint32_t local_lanes() const override { return dp_.tx_lanes(); }

    std::uint64_t installed() const noexcept { return installed_; }
    void set_on_up(UpHook h) { on_up_ = std::move(h); }

private:
    dp::Dataplane& dp_;
    // Drops the block reserved at rx_id (or its IDs from `from` on); returns its width.
    std::uint32_t give_back(std::uint32_t rx_id, std::uint32_t from = 0);

    UpHook on_up_;
    std::uint64_t installed_ = 0;
    std::unordered_map<std::uint32_t, std::uint32_t> reserved_;   // base P3 ID -> width, until installed
};

}  // namespace p3::setup
