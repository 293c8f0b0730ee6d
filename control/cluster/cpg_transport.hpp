// The engine's transport on corosync's CPG (closed process groups): agreed-order, reliable
// multicast in a named group, with membership changes; corosync encrypts and authenticates
// its own traffic with its authkey, and the engine seals every message again under the
// cluster key (message.hpp), so keys are never in clear inside corosync either.
//
// Driven from the owner's EventLoop: the CPG fd (cpg_fd_get) is watched and cpg_dispatch
// (CPG_DISPATCH_ALL) runs when it is readable; nothing here blocks. A transport id is
// (nodeid << 32 | pid). Our own join seen in a configuration change is Engine::joined();
// others are Engine::view().
//
// States: disconnected --connect ok--> connected (joined when our join is seen)
//   --dispatch or send fails (corosync stopped or restarted)--> Engine::lost(), disconnected,
//   retry after a back-off (1 s, doubling, at most kMaxRetry). A send refused with
//   CS_ERR_TRY_AGAIN (corosync's flow control) waits in a bounded queue, flushed every 10 ms.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <string>
#include <vector>

#include "control/cluster/engine.hpp"
#include "control/event_loop.hpp"

namespace p3::cluster {

class CpgTransport final : public Transport {
public:
    static constexpr std::chrono::seconds kFirstRetry{1};
    static constexpr std::chrono::seconds kMaxRetry{8};
    static constexpr std::size_t kMaxQueued = 4096;

    CpgTransport(control::EventLoop& loop, std::string group);
    ~CpgTransport() override;
    CpgTransport(const CpgTransport&) = delete;
    CpgTransport& operator=(const CpgTransport&) = delete;

    // The engine that gets the callbacks; before start().
    void attach(Engine& e) noexcept { engine_ = &e; }
    void start();
    void stop();

    bool send(std::span<const std::uint8_t> bytes) override;
    bool connected() const noexcept { return handle_ != 0; }
    std::uint64_t reconnects() const noexcept { return reconnects_; }
    std::size_t queued() const noexcept { return queue_.size(); }

    // The C callbacks (cpg_callbacks_t) reach the object through cpg_context_get.
    void on_deliver(std::uint32_t nodeid, std::uint32_t pid, const void* msg, std::size_t len);
    void on_confchg(const void* members, std::size_t n_members, const void* left, std::size_t n_left,
                    const void* joined, std::size_t n_joined);

private:
    bool connect();
    void disconnect(bool lost);
    void retry_later();
    void on_readable();
    bool try_send(std::span<const std::uint8_t> bytes, bool& again);
    void flush();

    control::EventLoop& loop_;
    std::string group_;
    Engine* engine_ = nullptr;
    std::uint64_t handle_ = 0;   // cpg_handle_t
    int fd_ = -1;
    std::uint64_t self_ = 0;
    bool joined_ = false;
    bool stopped_ = true;
    unsigned failures_ = 0;
    std::uint64_t reconnects_ = 0;
    bool was_connected_ = false;
    control::TimerId retry_, flush_;
    std::deque<std::vector<std::uint8_t>> queue_;
};

}  // namespace p3::cluster
