// The one place in the control plane that reaches the dataplane: an adapter over its
// ControlPort (dataplane/control_port.hpp, which states the key-slot contract) for the two
// users of key slots, each through its own narrow interface (the seam its tests fake):
//
//   setup engine  setup::SessionSink (DataplanePort itself): P3 IDs reserved from the slot
//                 table; an established session's first data keys become inbound and
//                 outbound slots for every lane, which sets the session up.
//   channel       channel::KeyInstaller + ControlLink (DataplanePort::Link, one per session).
//                 The session's lanes and P3 IDs were fixed by the setup exchange; a rekey
//                 changes keys only (docs/key-slots.md), so each call is one port call:
//                 install_next_rx -> install_next_rx(sid, keys)   (the next key of every lane)
//                 rx_switch_at    -> rx_switch_at(sid, first seqs) (the peer's announcement)
//                 rx_next_seen    -> rx_next_seen(sid)
//                 promote_rx      -> promote_rx(sid)   (old keys wiped after the grace period)
//                 drop_next_rx    -> drop_next_rx(sid)
//                 switch_tx       -> switch_tx(sid, keys, first seqs) (one RCU grace period)
//                 tx_packets      -> tx_packets(sid)
//                 session_down    -> clear_keys(sid)   (RST / unreachable from then on)
//                 send_control    -> an mbuf with meta tx_inner for sid, to the workers
//                 With p3d --insecure-key-log, every data key installed (here and at setup)
//                 is written to the key log (control/keylog.hpp).
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
// block) and the rest of the block is given back; outbound lanes are the remote's `lanes`
// setting, or this dataplane's sending workers when it has none (lanes_for), and that is what
// this side announces and pushes, so the peer publishes exactly the lanes we send on. (Reserving 64 IDs for every session capped a
// primary at 2047 sessions in a table of 2^17 IDs.) The session's control keys and pushed
// parameters go on to the control channel through the optional on_up hook (called after the
// data keys are in place).
//
// Control thread only.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/ids.hpp"
#include "control/channel/interfaces.hpp"
#include "control/cluster/replica.hpp"
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
    std::uint32_t lanes_for(std::uint32_t remote_id) const override;
    // The lanes of a session with remote_id: this side's L, and in a cluster the session's
    // max_members x L and this member's offset (docs/cluster.md §Lanes of a member).
    config::MemberLanes member_lanes(std::uint32_t remote_id) const;

    // ESP remotes (wire = "esp"; dp_port_esp.cpp): one SA per direction through the port's
    // esp_install_rx / esp_install_tx / esp_remove_rx, each written to the key log.
    bool esp_install_rx(std::uint32_t remote_id, std::uint32_t spi, const setup::DirectionKeys& k, bool esn) override;
    bool esp_install_tx(std::uint32_t remote_id, std::uint32_t spi, const setup::DirectionKeys& k, bool esn) override;
    void esp_remove_rx(std::uint32_t remote_id, std::uint32_t spi) override;
    void esp_down(std::uint32_t remote_id, Reason reason) override;
    std::uint64_t esp_tx_packets(std::uint32_t remote_id) override;

    std::uint64_t installed() const noexcept { return installed_; }
    void set_on_up(UpHook h) { on_up_ = std::move(h); }

    // The channel's side for one session: its dataplane id, the remote it serves (for the key
    // log), the lanes each side sends on and the P3 ID bases fixed at setup.
    struct LinkIds {
        SessionId sid;
        RemoteId remote;
        std::uint32_t rx_base = 0, tx_base = 0;       // ours (we receive on), the peer's
        std::uint32_t rx_lanes = 1, tx_lanes = 1;     // the peer's lanes, ours
    };
    // A cluster member holding this control session tells the others what changes, before
    // the dataplane's switch (docs/cluster.md §Replicated keys): the next inbound keys once
    // installed, the new outbound keys just before switch_tx, the promotion of the next
    // inbound keys, their drop.
    enum class KeyStep : std::uint8_t { next_rx, tx_switching, rx_promoted, rx_dropped };
    using KeyHook = std::function<void(KeyStep, const channel::KeyMaterial*)>;
    class Link final : public channel::KeyInstaller, public channel::ControlLink {
    public:
        Link(dp::ControlPort& port, const LinkIds& ids, bool size_hiding) noexcept
            : port_(port), ids_(ids), size_hiding_(size_hiding) {}
        bool install_next_rx(const channel::KeyMaterial& data) override;
        void rx_switch_at(std::span<const std::uint64_t> first_seq) override { port_.rx_switch_at(ids_.sid, first_seq); }
        bool rx_next_seen() override { return port_.rx_next_seen(ids_.sid); }
        void promote_rx() override {
            port_.promote_rx(ids_.sid);
            if (on_keys) on_keys(KeyStep::rx_promoted, nullptr);
        }
        void drop_next_rx() override {
            port_.drop_next_rx(ids_.sid);
            if (on_keys) on_keys(KeyStep::rx_dropped, nullptr);
        }
        bool switch_tx(const channel::KeyMaterial& data, std::vector<std::uint64_t>& first_seq) override;
        std::uint64_t tx_packets() override { return port_.tx_packets(ids_.sid); }
        void session_down(Reason) override { port_.clear_keys(ids_.sid); }
        bool hold_switch(std::function<void()> ready) override {
            if (!on_hold || !on_hold()) return false;
            held_ = std::move(ready);
            return true;
        }
        // The wait hold_switch began is over (the members hold the keys, or its bound passed).
        void release_hold() {
            if (!held_) return;
            auto f = std::move(held_);
            held_ = nullptr;
            f();
        }
        void send_control(std::span<const std::uint8_t> inner) override;

        std::uint64_t send_failures() const noexcept { return send_failures_; }
        KeyHook on_keys;   // a cluster member's replication (empty outside a cluster)
        // A cluster member: true = the other members are to confirm the next inbound keys first
        // (the owner then calls release_hold); empty or false: switch at once.
        std::function<bool()> on_hold;
        // The peer set the session up again (new P3 IDs, maybe other lanes).
        void reset(const LinkIds& ids) noexcept { ids_ = ids; }

    private:
        dp::ControlPort& port_;
        LinkIds ids_;
        bool size_hiding_;
        std::uint64_t send_failures_ = 0;
        std::function<void()> held_;
    };
    std::unique_ptr<Link> link(const LinkIds& ids, bool size_hiding) {
        return std::make_unique<Link>(port_, ids, size_hiding);
    }

    // Datagrams the setup exchange sends (an IP packet in an mbuf, meta tx_ip), to the workers.
    rte_mbuf* alloc() noexcept { return port_.alloc(); }
    bool send(rte_mbuf* m) noexcept { return port_.send(m); }

    // A cluster member (dp_port_cluster.cpp, docs/cluster.md §Replicated keys): installs a
    // session record another member published: the peer's inbound lanes (all of them, the
    // same P3 IDs, current and next key) and this member's own outbound lanes at its offset,
    // through the calls above. A later record of the same session moves its keys on (next
    // inbound key, promotion, outbound switch with sequences carried on); a new setup (other
    // P3 IDs) replaces them.
    enum class Replica : std::uint8_t { applied, unchanged, unknown_remote, mismatch, refused };
    Replica apply_replica(const cluster::SessionRecord& r);
    // The holder withdrew the session (it went down there): the keys a record installed go.
    // False: none were installed here.
    bool drop_replica(std::uint32_t remote_id) {
        if (!replicas_.erase(remote_id)) return false;
        std::erase_if(replica_sids_, [&](const auto& e) { return e.second == remote_id; });
        if (const SessionId sid = port_.session_of(RemoteId(remote_id))) port_.clear_keys(sid);
        return true;
    }
    // This side set the session up itself: what a record installed is no longer there.
    void forget_replica(std::uint32_t remote_id) {
        if (replicas_.erase(remote_id))
            std::erase_if(replica_sids_, [&](const auto& e) { return e.second == remote_id; });
    }
    SessionId session_of(RemoteId remote) const noexcept { return port_.session_of(remote); }
    // The remote of a dataplane session this member holds from a record (its control packets
    // go to the holder: docs/cluster.md §Forwarded control messages); 0 when it holds none.
    std::uint32_t replica_remote(SessionId sid) const {
        const auto it = replica_sids_.find(sid.raw());
        return it == replica_sids_.end() ? 0 : it->second;
    }
    // A failover member let go of the control session it held (it became backup): the keys it
    // installed stay, as if r (the record it published last) had installed them, so the next
    // primary's records move them on or replace them (a new setup).
    void adopt_replica(const cluster::SessionRecord& r);

private:
    struct ReplicaKeys {          // what a member installed of a record, to see what changed
        std::uint32_t rx_base = 0, tx_base = 0, rx_lanes = 0;
        SecretBytes rx_cur, rx_next, tx_cur;
    };
    std::unordered_map<std::uint32_t, ReplicaKeys> replicas_;   // by remote id
    std::unordered_map<std::uint32_t, std::uint32_t> replica_sids_;   // session id -> remote id, of replicas_
    Replica replica_fresh(const cluster::SessionRecord& r, SessionId sid, ReplicaKeys& rep);
    Replica replica_move(const cluster::SessionRecord& r, SessionId sid, ReplicaKeys& rep);

    // The first SA pair of an ESP session (install() for wire = "esp"): outer header, routes
    // to the configured subnets, inbound before outbound; no on_up (no control channel).
    bool install_esp(setup::EstablishedSession& s, SessionId sid);
    struct EspPeer {            // outer addresses per session, for the key log
        std::string local, peer;
    };
    std::unordered_map<std::uint32_t, EspPeer> esp_peers_;   // by remote id

    // Drops the block reserved at rx_id (or its IDs from `from` on); returns its width.
    std::uint32_t give_back(std::uint32_t rx_id, std::uint32_t from = 0);

    dp::ControlPort& port_;
    UpHook on_up_;
    std::uint64_t installed_ = 0;
    std::unordered_map<std::uint32_t, std::uint32_t> reserved_;   // base P3 ID -> width, until installed
};

}  // namespace p3::control
