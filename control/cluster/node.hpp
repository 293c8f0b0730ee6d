// One member of the cluster inside a process (p3d's Appliance; docs/cluster.md): the cluster
// key, the engine on its CPG transport, the HELLO timer, and the replicated sessions as they
// arrive. Control thread only; the owner's EventLoop must watch fds (run_once), not only
// timers, for the CPG fd to be dispatched.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "control/cluster/cpg_transport.hpp"
#include "control/cluster/engine.hpp"
#include "control/cluster/settings.hpp"

namespace p3::cluster {

class Node final : public ReplicaSink {
public:
    // Reads the key; nullptr with why when it cannot (P3-E0905 is the caller's to log).
    static std::unique_ptr<Node> create(const ClusterSettings& s, control::EventLoop& loop, std::string& why);
    ~Node() override;

    void start();
    void stop();

    Engine& engine() noexcept { return *engine_; }
    const Engine& engine() const noexcept { return *engine_; }
    const CpgTransport& transport() const noexcept { return transport_; }
    const ClusterSettings& settings() const noexcept { return settings_; }
    std::uint64_t now_ms() const;

    // What arrives (the merge connects these to the dataplane and the audit trail).
    std::function<void(const SessionRecord&)> on_session_record;
    std::function<void(std::uint8_t member, Role)> on_member_role;
    // The members in view changed (one joined or left, or a role changed).
    std::function<void(std::span<const Member>)> on_members_changed;
    // A control packet another member forwarded for a session this member holds (false: none).
    std::function<bool(std::uint32_t remote_id, std::span<const std::uint8_t>)> on_control_message;

    // Another member applied this member's record `epoch` of a remote.
    std::function<void(std::uint8_t member, std::uint32_t remote_id, std::uint32_t epoch)> on_record_ack;

    // ReplicaSink
    void on_session(const SessionRecord& r) override;
    void on_role(std::uint8_t member, Role role) override;
    void on_members(std::span<const Member> m) override {
        if (on_members_changed) on_members_changed(m);
    }
    void on_ack(std::uint8_t member, std::uint32_t remote_id, std::uint32_t epoch) override {
        if (on_record_ack) on_record_ack(member, remote_id, epoch);
    }
    bool on_control(std::uint32_t remote_id, std::span<const std::uint8_t> bytes) override {
        return on_control_message && on_control_message(remote_id, bytes);
    }

private:
    Node(const ClusterSettings& s, SecretBytes key, control::EventLoop& loop);
    void tick();

    ClusterSettings settings_;
    control::EventLoop& loop_;
    SecretBytes key_bytes_;
    SealKey key_;
    CpgTransport transport_;
    std::unique_ptr<Engine> engine_;
    control::TimerId tick_;
};

}  // namespace p3::cluster
