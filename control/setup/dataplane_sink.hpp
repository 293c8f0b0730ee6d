// The setup exchange's SessionSink on the real dataplane: P3 IDs are reserved from the
// dataplane's slot table, and an established session's first data keys become inbound and
// outbound key slots for every lane (dataplane/control_iface.hpp: reserve_rx_ids, install_rx,
// install_tx), which sets the session up so its traffic flows. Control thread only.
//
// Lanes: the block reserved for receiving is wire::kMaxLanes wide, because the peer's lane
// count is known only from the configuration push, which arrives after the ID was announced.
// Inbound slots are published for the lanes the peer sends on (pushed; 0 = one per worker of
// an unknown machine = the whole block); outbound lanes are this dataplane's sending workers.
//
// The session's control keys and pushed parameters go on to the control channel through the
// optional on_up hook (called after the data keys are in place).
#pragma once

#include <functional>

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

    std::optional<std::uint32_t> reserve_rx_id(std::uint32_t remote_id) override;
    void release_rx_id(std::uint32_t rx_id) override;
    bool install(EstablishedSession&& s) override;

    std::uint64_t installed() const noexcept { return installed_; }
    void set_on_up(UpHook h) { on_up_ = std::move(h); }

private:
    dp::Dataplane& dp_;
    UpHook on_up_;
    std::uint64_t installed_ = 0;
};

}  // namespace p3::setup
