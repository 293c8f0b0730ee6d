// The SessionSink of the ESP tests: SPIs handed out from `first`, every SA the engine installs
// or retires recorded (inbound SAs live, the outbound one), sessions down with their reasons.
#pragma once

#include <map>
#include <set>
#include <vector>

#include "control/setup/session_sink.hpp"

namespace p3::setup::test {

struct EspSink final : SessionSink {
    explicit EspSink(std::uint32_t first) : next(first) {}
    std::optional<std::uint32_t> reserve_rx_id(std::uint32_t, std::uint32_t lanes) override {
        widths.push_back(lanes);
        reserved.insert(next);
        return next++;
    }
    void release_rx_id(std::uint32_t id) override { reserved.erase(id); }
    bool install(EstablishedSession&& s) override {
        reserved.erase(s.rx_p3_id);
        rx[s.rx_p3_id] = s.data_rx.key.clone();
        tx_spi = s.tx_p3_id;
        tx_key = s.data_tx.key.clone();
        esn = s.esn;
        sessions.push_back(std::move(s));
        return true;
    }
    bool esp_install_rx(std::uint32_t, std::uint32_t spi, const DirectionKeys& k, bool e) override {
        if (refuse) return false;
        reserved.erase(spi);
        rx[spi] = k.key.clone();
        esn = e;
        return true;
    }
    bool esp_install_tx(std::uint32_t, std::uint32_t spi, const DirectionKeys& k, bool) override {
        tx_spi = spi;
        tx_key = k.key.clone();
        ++tx_installs;
        return true;
    }
    void esp_remove_rx(std::uint32_t, std::uint32_t spi) override { rx.erase(spi); }
    void esp_down(std::uint32_t id, Reason r) override {
        rx.clear();
        downs.emplace_back(id, r);
    }
    std::uint64_t esp_tx_packets(std::uint32_t) override { return tx_packets; }

    std::uint32_t next;
    bool refuse = false;
    std::vector<std::uint32_t> widths;
    std::set<std::uint32_t> reserved;
    std::map<std::uint32_t, SecretBytes> rx;   // inbound SAs live
    std::uint32_t tx_spi = 0;
    SecretBytes tx_key;
    bool esn = false;
    unsigned tx_installs = 0;
    std::uint64_t tx_packets = 0;
    std::vector<EstablishedSession> sessions;
    std::vector<std::pair<std::uint32_t, Reason>> downs;
};

}  // namespace p3::setup::test
