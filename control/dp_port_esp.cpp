// DataplanePort for ESP remotes (wire = "esp", see dp_port.hpp): the child SAs of the IKE SA
// that stays up, one per direction, under SPIs from the slot table (blocks of 1).
#include <rte_mbuf.h>

#include "common/log.hpp"
#include "control/dp_port.hpp"
#include "control/keylog.hpp"

namespace p3::control {

namespace {
dp::EspSa esp_sa(std::uint32_t spi, const setup::DirectionKeys& k, bool esn) {
    dp::EspSa sa;
    sa.spi = spi;
    sa.key = k.key.span();
    sa.salt = k.salt.span();
    sa.esn = esn;
    return sa;
}
}  // namespace

bool DataplanePort::install_esp(setup::EstablishedSession& s, SessionId sid) {
    // UDP encapsulation (RFC 3948) when a NAT is between us, or the peer floated to our
    // nat_port (kernel-libipsec peers encapsulate always): from our nat_port to the port the
    // peer's IKE came from on it (a NAT's mapping included). Plain ESP (protocol 50) otherwise.
    const std::uint16_t nat_port = port_.config().local.nat_port;
    const bool udp = s.nat() || s.framing == setup::Framing::non_esp_marker;
    const std::uint16_t dst = s.framing == setup::Framing::non_esp_marker ? s.peer.port : nat_port;
    if (!port_.set_peer(sid, s.peer.addr, udp ? nat_port : 0, udp ? dst : 0)) {
        give_back(s.rx_p3_id);
        return false;
    }
    // Routes: the remote's subnets as the selectors were narrowed (on a primary the secondary's
    // side, on a secondary the primary's), never wider than configured.
    const auto& routed = s.local_role == config::Role::primary ? s.config.secondary_subnets : s.config.primary_subnets;
    if (!routed.empty() && !port_.set_subnets(sid, std::span<const Prefix>(routed))) {
        P3_LOG_ERROR(SETUP_KEYS_REJECTED, "setup with remote %u: the negotiated subnets cannot be routed", s.remote_id);
        give_back(s.rx_p3_id);
        return false;
    }
    esp_peers_[s.remote_id] = EspPeer{s.local.addr.str(), s.peer.addr.str()};
    // Inbound first: the peer may send as soon as it has our answer.
    if (!esp_install_rx(s.remote_id, s.rx_p3_id, s.data_rx, s.esn)) {
        give_back(s.rx_p3_id);
        return false;
    }
    reserved_.erase(s.rx_p3_id);   // the SA owns its ID now
    if (!esp_install_tx(s.remote_id, s.tx_p3_id, s.data_tx, s.esn)) {
        port_.clear_keys(sid);
        return false;
    }
    ++installed_;
    return true;
}

bool DataplanePort::esp_install_rx(std::uint32_t remote_id, std::uint32_t spi, const setup::DirectionKeys& k, bool esn) {
    const SessionId sid = port_.session_of(RemoteId(remote_id));
    if (!sid || !port_.esp_install_rx(sid, esp_sa(spi, k, esn))) return false;
    reserved_.erase(spi);
    const auto& a = esp_peers_[remote_id];
    keylog::write_esp(sid.raw(), remote_id, keylog::Dir::rx, spi, k.key.span(), k.salt.span(), esn, a.peer, a.local);
    return true;
}

bool DataplanePort::esp_install_tx(std::uint32_t remote_id, std::uint32_t spi, const setup::DirectionKeys& k, bool esn) {
    const SessionId sid = port_.session_of(RemoteId(remote_id));
    if (!sid) return false;
    // Written before the switch: a capture may hold the first packet under it before the call returns.
    const auto& a = esp_peers_[remote_id];
    keylog::write_esp(sid.raw(), remote_id, keylog::Dir::tx, spi, k.key.span(), k.salt.span(), esn, a.local, a.peer);
    return port_.esp_install_tx(sid, esp_sa(spi, k, esn));
}

void DataplanePort::esp_remove_rx(std::uint32_t remote_id, std::uint32_t spi) {
    const SessionId sid = port_.session_of(RemoteId(remote_id));
    if (sid) port_.esp_remove_rx(sid, spi);
}

void DataplanePort::esp_down(std::uint32_t remote_id, Reason) {
    const SessionId sid = port_.session_of(RemoteId(remote_id));
    if (sid) port_.clear_keys(sid);
    esp_peers_.erase(remote_id);
}

std::uint64_t DataplanePort::esp_tx_packets(std::uint32_t remote_id) {
    const SessionId sid = port_.session_of(RemoteId(remote_id));
    return sid ? port_.tx_packets(sid) : 0;
}

}  // namespace p3::control
