// The control keys of one session by epoch, and how long inbound control keys live. (Data
// keys are not kept by epoch: each inbound lane holds a current and a next key in the
// dataplane, next_keys.* settles them; P3 IDs never change.)
//
// Outbound: one control key and its sequence (from 1, never repeated), switched by a rekey.
// Inbound: per epoch, the control key and its replay window (common/replay.hpp, kReplayWindow
// packets). The control-layer epoch travels inside the data encryption, so keeping several
// shows nothing on the wire. An epoch's key stays until a control packet under a newer epoch
// authenticated (+kRetireLinger) or the peer announced its switch (+kRetireTimeout); then it
// is wiped. At most kMaxRxEpochs are held: beyond, the oldest the peer does not send under goes.
//
//   epoch e: installed --first authenticated control packet--> seen
//            (any state) --a newer epoch seen / switched--> retire timer --> retired
#pragma once

#include <cstdint>
#include <map>

#include "common/replay.hpp"
#include "control/channel/core.hpp"

namespace p3::channel {

class Epochs {
public:
    struct Tx {
        std::uint32_t epoch = 0;
        KeyMaterial ctl;
        std::uint64_t seq = 0;
        // Cluster: the sequence in the last replicated state; replicated: one was taken.
        std::uint64_t published = 0;
        bool replicated = false;
    };
    struct Rx {
        KeyMaterial ctl;
        bool seen = false;
        wire::InlineReplayWindow<limits::kReplayWindow> win;   // never moves: a map node
        TimerId retire_timer;
        TimePoint retire_at{};
    };
    static constexpr std::uint32_t kNotAsked = 0xffffffffu;

    explicit Epochs(SessionCore& core) : c_(core) {}

    // Epoch 0 from a setup exchange.
    void start(KeyMaterial&& control_tx, KeyMaterial&& control_rx);
    // A channel another cluster member held (Session::take_over): its outbound epoch from
    // sequence `seq` on, its inbound epochs with their windows from the replicated top.
    void adopt(std::uint32_t tx_epoch, KeyMaterial&& tx_ctl, std::uint64_t seq, std::vector<ChannelState::Rx>&& rx,
               std::uint32_t peer_tx_epoch);
    // Drops (wipes) every epoch.
    void clear();

    // Sends under `epoch` from now on, sequences from 1.
    void switch_tx(std::uint32_t epoch, KeyMaterial&& ctl);
    Tx& tx() noexcept { return tx_; }
    const Tx& tx() const noexcept { return tx_; }

    // A new inbound epoch (replaces one of the same number).
    void add_rx(std::uint32_t epoch, KeyMaterial&& ctl);
    Rx* rx(std::uint32_t epoch);
    std::size_t rx_count() const noexcept { return rx_.size(); }
    const std::map<std::uint32_t, Rx>& rx_all() const noexcept { return rx_; }

    std::uint32_t peer_tx_epoch() const noexcept { return peer_tx_epoch_; }
    // The peer sends under `epoch` (it said so): older keys retire after `after`.
    void peer_switched(std::uint32_t epoch, Duration after);

    // A control packet under `epoch` authenticated.
    void note_seen(std::uint32_t epoch);
    // More than kMaxRxEpochs: drop the oldest the peer is known not to use.
    void enforce_cap();

    // The packet-count limit was raised for this outbound epoch (kNotAsked: not yet).
    std::uint32_t limit_asked = kNotAsked;

private:
    void schedule_retire_below(std::uint32_t epoch, Duration after);
    void retire(std::uint32_t epoch);

    SessionCore& c_;
    Tx tx_;
    std::map<std::uint32_t, Rx> rx_;
    std::uint32_t peer_tx_epoch_ = 0;
};

}  // namespace p3::channel
