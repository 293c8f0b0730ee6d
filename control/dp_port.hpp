// The one place in the control plane that reaches the dataplane: an adapter over its
// ControlPort (dataplane/control_port.hpp, which states the key-slot contract) for the two
// users of key slots, each through its own narrow interface (the seam its tests fake):
//
//   setup engine  setup::SessionSink (DataplanePort itself): P3 IDs reserved from the slot
//                 table; an established session's first data keys become inbound and
//                 outbound slots for every lane, which sets the session up.
//   channel       channel::KeyInstaller + ControlLink (DataplanePort::Link, one per session).
//                 Interim mapping of the channel's calls onto the stable-lane key API (a rekey
//                 changes keys only; the session's P3 IDs stay):
//                 install_rx   -> settle the pending next key (seen: promote_rx, else
//                                 drop_next_rx), install_next_rx(sid, keys); returns the
//                                 session's unchanged inbound base
//                 switch_tx    -> switch_tx(sid, keys) (the receiver learns the switch point
//                                 from the first packet under the new keys)
//                 retire_rx    -> promote_rx(sid) once the next key was seen (else nothing)
//                 rx_seen      -> rx_next_seen(sid)
//                 session_down -> clear_keys(sid)          (RST / unreachable from then on)
//                 tx_packets   -> tx_packets(sid)
//                 send_control -> an mbuf with meta tx_inner for sid, to the workers
//   setup UDP     alloc + send: the setup exchange's datagrams out of the WAN (meta tx_ip)
//
// The control thread (control_thread.hpp) uses the port's other half: the rings from the
// workers, the neighbour hand-off and the once-per-pass calls. Nothing else in control/
// touches dp::ControlPort.
//
// Lanes (setup): the block reserved for receiving is as wide as the lanes the peer announced
// in its IKE_AUTH request (notify p3_lanes: a p3 secondary says how many workers send); a peer
// that did not announce (the initiator's own reservation, made before it hears from the
// primary; a standard IKEv2 peer) gets wire::kMaxLanes. Inbound slots are published for the
// lanes the peer sends on (announced; or pushed primary_lanes on a secondary, 0 = the whole
// block) and the rest of the block is given back; outbound lanes are this dataplane's sending
// workers, and that is what this side announces. (Reserving 64 IDs for every session capped a
// primary at 2047 sessions in a table of 2^17 IDs.) The session's control keys and pushed
// parameters go on to the control channel through the optional on_up hook (called after the
// data keys are in place).
//
// Control thread only.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <unordered_map>

#include "common/ids.hpp"
#include "control/channel/interfaces.hpp"
#include "control/setup/session_sink.hpp"
#include "dataplane/control_port.hpp"

namespace p3::control {

class DataplanePort final : public setup::SessionSink {
public:
    // After the data keys are in place: the session, its dataplane id, and the lanes each side
    // sends on (what the control channel's InitialKeys needs with the control keys).
    using UpHook = std::function<void(const setup::EstablishedSession&, SessionId session,
                                      std::uint32_t local_lanes, std::uint32_t peer_lanes)>;
    explicit DataplanePort(dp::ControlPort& port, UpHook on_up = {}) : port_(port), on_up_(std::move(on_up)) {}

    // setup::SessionSink
    std::optional<std::uint32_t> reserve_rx_id(std::uint32_t remote_id, std::uint32_t peer_lanes) override;
    void release_rx_id(std::uint32_t rx_id) override;
    bool install(setup::EstablishedSession&& s) override;
    std::uint32_t local_lanes() const override { return port_.tx_lanes(); }

    std::uint64_t installed() const noexcept { return installed_; }
    void set_on_up(UpHook h) { on_up_ = std::move(h); }

    // The channel's side for one session.
    class Link final : public channel::KeyInstaller, public channel::ControlLink {
    public:
        // rx_base: the session's inbound base P3 ID (what install_rx answers; 0: not known,
        // then 1, which only the peer's switch_tx sees, and it ignores it).
        Link(dp::ControlPort& port, SessionId sid, bool size_hiding, std::uint32_t rx_base = 0) noexcept
            : port_(port), sid_(sid), size_hiding_(size_hiding), rx_base_(rx_base) {}
        std::optional<std::uint32_t> install_rx(const channel::KeyMaterial& data, std::uint32_t lanes) override;
        bool switch_tx(std::uint32_t peer_p3_id, const channel::KeyMaterial& data, std::uint32_t lanes) override;
        void retire_rx(std::uint32_t p3_id) override;
        bool rx_seen(std::uint32_t p3_id) override;
        std::uint64_t tx_packets() override;
        void session_down(Reason) override { port_.clear_keys(sid_); }
        void send_control(std::span<const std::uint8_t> inner) override;

        std::uint64_t send_failures() const noexcept { return send_failures_; }

    private:
        dp::ControlPort& port_;
        SessionId sid_;
        bool size_hiding_;
        std::uint64_t send_failures_ = 0;
        std::uint32_t rx_base_;
    };
    std::unique_ptr<Link> link(SessionId sid, bool size_hiding) {
        auto b = rx_base_.find(sid.raw());
        return std::make_unique<Link>(port_, sid, size_hiding, b == rx_base_.end() ? 0 : b->second);
    }

    // Datagrams the setup exchange sends (an IP packet in an mbuf, meta tx_ip), to the workers.
    rte_mbuf* alloc() noexcept { return port_.alloc(); }
    bool send(rte_mbuf* m) noexcept { return port_.send(m); }

private:
    // Drops the block reserved at rx_id (or its IDs from `from` on); returns its width.
    std::uint32_t give_back(std::uint32_t rx_id, std::uint32_t from = 0);

    dp::ControlPort& port_;
    UpHook on_up_;
    std::uint64_t installed_ = 0;
    std::unordered_map<std::uint32_t, std::uint32_t> reserved_;   // base P3 ID -> width, until installed
    std::unordered_map<std::uint32_t, std::uint32_t> rx_base_;    // session -> its inbound base P3 ID
};

}  // namespace p3::control
