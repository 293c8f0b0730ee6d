// An in-memory stand-in for corosync CPG: one ordered bus, every message delivered to every
// member in the group (its sender too), joins and leaves seen by all. It keeps every byte sent,
// so a test can look for what must never be in clear.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <vector>

#include "control/cluster/engine.hpp"

namespace p3::cluster::test {

class Bus;

class Endpoint final : public Transport {
public:
    Endpoint(Bus& bus, std::uint64_t origin) : bus_(bus), origin_(origin) {}
    bool send(std::span<const std::uint8_t> bytes) override;
    Engine* engine = nullptr;
    bool in = false;
    std::uint64_t origin() const noexcept { return origin_; }

private:
    Bus& bus_;
    std::uint64_t origin_;
};

class Bus {
public:
    struct Sent {
        std::uint64_t origin;
        std::vector<std::uint8_t> bytes;
    };
    std::vector<Sent> wire;   // everything ever sent, in order

    void queue(std::uint64_t origin, std::span<const std::uint8_t> b) {
        wire.push_back({origin, {b.begin(), b.end()}});
        pending_.push_back(wire.size() - 1);
    }
    // Delivers until nothing is pending (answers included).
    void run() {
        while (!pending_.empty()) {
            const Sent s = wire[pending_.front()];
            pending_.pop_front();
            for (Endpoint* e : eps_)
                if (e->in) e->engine->deliver(s.origin, s.bytes);
        }
    }
    void join(Endpoint& ep) {
        run();
        if (std::find(eps_.begin(), eps_.end(), &ep) == eps_.end()) eps_.push_back(&ep);
        ep.in = true;
        const std::uint64_t o[1] = {ep.origin()};
        for (Endpoint* e : eps_)
            if (e->in && e != &ep) e->engine->view(o, {});
        ep.engine->joined(ep.origin());
        run();
    }
    void leave(Endpoint& ep) {
        run();
        ep.in = false;
        ep.engine->lost();
        const std::uint64_t o[1] = {ep.origin()};
        for (Endpoint* e : eps_)
            if (e->in) e->engine->view({}, o);
        eps_.erase(std::find(eps_.begin(), eps_.end(), &ep));
        run();
    }

private:
    std::vector<Endpoint*> eps_;
    std::deque<std::size_t> pending_;
};

inline bool Endpoint::send(std::span<const std::uint8_t> bytes) {
    if (!in) return false;
    bus_.queue(origin_, bytes);
    return true;
}

}  // namespace p3::cluster::test
