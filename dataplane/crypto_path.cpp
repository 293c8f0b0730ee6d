// Placeholder until the wire core is in: no keys, so nothing is encrypted or decrypted.
#include "dataplane/fastpath.hpp"
#include "common/log.hpp"

namespace p3::dp {

struct Dataplane::KeyState {};

void outbound_crypto(Lcore& L, const Dataplane::Shared&, rte_mbuf** pkts, const std::uint32_t*, unsigned n) noexcept {
    for (unsigned i = 0; i < n; ++i) drop(L, pkts[i], Drop::NO_TX_SLOT);
}
void inbound_crypto(Lcore& L, const Dataplane::Shared&, rte_mbuf** pkts, const std::uint16_t*, unsigned n) noexcept {
    for (unsigned i = 0; i < n; ++i) drop(L, pkts[i], Drop::P3_UNKNOWN_ID);
}
bool wire_engine_create(Lcore&, const Dataplane::Shared&) { return true; }
void wire_engine_free(Lcore&) {}
bool Dataplane::install_static(const config::Remote& r, std::uint32_t) {
    P3_LOG_WARN(DP_SESSION, "remote %u: static keys not supported yet", r.id);
    return true;
}
void Dataplane::clear_keys(std::uint32_t) {}
bool Dataplane::keys_create() { keys_ = new KeyState; return true; }
void Dataplane::keys_destroy() noexcept { delete keys_; keys_ = nullptr; }
void Dataplane::clear_keys_now(std::uint32_t) {}

}  // namespace p3::dp
