// The child SA of an ESP remote (wire = "esp"): proposals (AES-GCM-16 of the remote's key
// size, ESN or not, preferring ESN), traffic selectors narrowed to the configuration (RFC 7296
// §2.9), and KEYMAT (§2.17). Used by the IKE_AUTH task ChildCreate and by CREATE_CHILD_SA
// (esp_exchanges.cpp). The SPIs are IDs from the dataplane's slot table (reserve_rx_id(remote, 1):
// never >= 0x80000000, DESIGN.md §Wire format).
#pragma once

#include "control/setup/ike_sa.hpp"

namespace p3::setup::esp {

// Our protected networks (the LAN prefix and local.subnets), the remote's (its subnets).
std::vector<Prefix> local_networks(const LocalConfig& local);

// Narrowing: the parts of `ours` that the peer's selectors cover (address ranges that are
// whole prefixes; any protocol and port). Selectors restricted to a protocol or ports are not
// taken (the dataplane forwards by address). Empty: TS_UNACCEPTABLE.
std::vector<Prefix> narrow(const std::vector<Prefix>& ours, const TsPayload& theirs);
TsPayload selectors(const std::vector<Prefix>& ps);

// The first proposal of the peer (in its order) with AES-GCM-16 of `key_bits` and an ESN
// transform we take (ESN preferred when offered), a 4-byte SPI other than 0, and no integrity
// other than none. dh_group: the KE group the request carries (0: none); a proposal must then
// offer it (PFS), and without KE it must allow none.
struct Choice {
    std::uint8_t num = 0;            // 0: nothing acceptable
    std::uint32_t peer_spi = 0;
    bool esn = false;
    std::uint16_t dh = 0;
};
Choice choose(const SaPayload& sa, std::uint16_t key_bits, std::uint16_t dh_group);
// Our offer: one ESP proposal with our SPI, AES-GCM-16 of key_bits, ESN and no ESN, and the
// group when dh != 0.
Proposal offer(std::uint32_t spi, std::uint16_t key_bits, std::uint16_t dh);
// The chosen proposal as the answer carries it.
Proposal answer(const Choice& c, std::uint32_t our_spi, std::uint16_t key_bits);

// KEYMAT = prf+(SK_d, [g^ir (new)] | Ni | Nr): i->r key ‖ salt, then r->i (§2.17).
// `i` is the exchange's initiator (the one who sent the CREATE_CHILD_SA request).
bool derive_child(const IkeSa& sa, const SecretBytes* shared, const Bytes& ni, const Bytes& nr, std::size_t key_len,
                  DirectionKeys& i_to_r, DirectionKeys& r_to_i);

// Delete payload (§3.11): protocol, SPI size, count, SPIs.
struct Delete {
    std::uint8_t protocol = 0;
    std::vector<std::uint32_t> spis;  // ESP (4-byte SPIs); empty for IKE
};
std::optional<Delete> parse_delete(const RawPayload& p);
RawPayload make_delete(std::uint8_t protocol, const std::vector<std::uint32_t>& spis);

}  // namespace p3::setup::esp
