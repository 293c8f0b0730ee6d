// The control channel's interfaces (interfaces.hpp) on the real dataplane and key generator:
//
//   DataplaneLink   KeyInstaller + ControlLink for one session of a dp::Dataplane
//                   install_rx   -> reserve_rx_ids(lanes) + install_rx(sid, base, keys)
//                   switch_tx    -> install_tx(sid, peer base, keys)
//                   retire_rx    -> retire_rx(sid, base)        (RCU, wiped after the grace period)
//                   session_down -> clear_keys(sid)             (RST / unreachable from then on)
//                   tx_packets   -> max over lanes of tx_last_seq(sid, lane)
//                   send_control -> an mbuf with meta tx_inner for sid, through send_to_workers
//   GeneratorKeys   KeySource over keys::KeyGenerator (software DRBG or RDSEED/RDRAND)
//
// Control thread only. rx_seen() reads the replay window of the block's inbound slots: its top
// moves off 0 only after a packet's tag verified (the window is updated after authentication).
// The word is written by one worker (a relaxed atomic store) and only ever grows; the control
// thread reads it with a relaxed atomic load (ReplayWindow::top) and only compares it with 0.
#pragma once

#include <cstdint>
#include <map>

#include "common/keygen.hpp"
#include "control/channel/interfaces.hpp"
#include "dataplane/control_iface.hpp"
#include "dataplane/dataplane.hpp"

namespace p3::channel {

class DataplaneLink final : public KeyInstaller, public ControlLink {
public:
    DataplaneLink(dp::Dataplane& dp, std::uint32_t sid, bool size_hiding) noexcept
        : dp_(dp), sid_(sid), size_hiding_(size_hiding) {}

    std::optional<std::uint32_t> install_rx(const KeyMaterial& data, std::uint32_t lanes) override;
    bool switch_tx(std::uint32_t peer_p3_id, const KeyMaterial& data, std::uint32_t lanes) override;
    void retire_rx(std::uint32_t p3_id) override {
        rx_lanes_.erase(p3_id);
        dp_.retire_rx(sid_, p3_id);
    }
    bool rx_seen(std::uint32_t p3_id) override;
    std::uint64_t tx_packets() override;
    void session_down(Reason) override { dp_.clear_keys(sid_); }
    void send_control(std::span<const std::uint8_t> inner) override;

    std::uint64_t send_failures() const noexcept { return send_failures_; }

private:
    dp::Dataplane& dp_;
    std::uint32_t sid_;
    bool size_hiding_;
    std::uint64_t send_failures_ = 0;
    std::map<std::uint32_t, std::uint32_t> rx_lanes_;  // inbound block base -> lanes
};

class GeneratorKeys final : public KeySource {
public:
    explicit GeneratorKeys(keys::KeyGenerator& gen) noexcept : gen_(gen) {}
    bool fill(std::span<std::uint8_t> out) noexcept override { return !gen_.fill(out).has_value(); }

private:
    keys::KeyGenerator& gen_;
};

}  // namespace p3::channel
