// The key schedule of the setup exchange (RFC 7296 §2.14, §2.17, §2.18) and the NAT-D hash
// (§2.23); see ike_tasks.hpp.
#include "control/setup/ike_tasks.hpp"

namespace p3::setup {

namespace {
std::size_t encr_key_bytes(std::uint16_t bits) { return bits / 8; }
}  // namespace

bool derive_ike_keys(IkeSa& sa, const SecretBytes& shared) {
    Bytes ni_nr = sa.nonce_i;
    append(ni_nr, sa.nonce_r);
    // For HMAC PRFs the whole Ni | Nr is the key (§2.14).
    const SecretBytes skeyseed = prf(sa.prf_alg, ni_nr, shared.span());
    return derive_ike_keys_from(sa, skeyseed);
}

bool derive_ike_keys_from(IkeSa& sa, const SecretBytes& skeyseed) {
    if (skeyseed.empty()) return false;
    Bytes seed = sa.nonce_i;
    append(seed, sa.nonce_r);
    put64(seed, sa.spi_i.v);
    put64(seed, sa.spi_r.v);
    const std::size_t h = prf_size(sa.prf_alg);
    const std::size_t ke = encr_key_bytes(sa.encr_bits);
    const std::size_t e = ke + limits::gcm_salt;
    const SecretBytes all = prf_plus(sa.prf_alg, skeyseed.span(), seed, 3 * h + 2 * e);
    if (all.empty()) return false;
    const std::uint8_t* p = all.data();
    sa.sk_d = SecretBytes(ByteView(p, h));
    p += h;
    sa.sk_ei.key = SecretBytes(ByteView(p, ke));
    sa.sk_ei.salt = SecretBytes(ByteView(p + ke, limits::gcm_salt));
    p += e;
    sa.sk_er.key = SecretBytes(ByteView(p, ke));
    sa.sk_er.salt = SecretBytes(ByteView(p + ke, limits::gcm_salt));
    p += e;
    sa.sk_pi = SecretBytes(ByteView(p, h));
    p += h;
    sa.sk_pr = SecretBytes(ByteView(p, h));
    return true;
}

bool derive_session_keys(const IkeSa& sa, EstablishedSession& s) {
    const std::size_t k = sa.child_key == config::KeyType::aes256 ? 32 : 16;
    const std::size_t e = k + limits::gcm_salt;
    Bytes ni_nr = sa.nonce_i;
    append(ni_nr, sa.nonce_r);
    const SecretBytes keymat = prf_plus(sa.prf_alg, sa.sk_d.span(), ni_nr, 4 * e);
    if (keymat.empty()) return false;
    auto take = [&](std::size_t i) {
        const std::uint8_t* p = keymat.data() + i * e;
        return DirectionKeys{SecretBytes(ByteView(p, k)), SecretBytes(ByteView(p + k, limits::gcm_salt))};
    };
    DirectionKeys data_ir = take(0), data_ri = take(1), ctl_ir = take(2), ctl_ri = take(3);
    if (sa.initiator) {
        s.data_tx = std::move(data_ir);
        s.data_rx = std::move(data_ri);
        s.control_tx = std::move(ctl_ir);
        s.control_rx = std::move(ctl_ri);
    } else {
        s.data_tx = std::move(data_ri);
        s.data_rx = std::move(data_ir);
        s.control_tx = std::move(ctl_ri);
        s.control_rx = std::move(ctl_ir);
    }
    return true;
}

Bytes natd_hash(Spi spi_i, Spi spi_r, const Endpoint& ep) {
    Bytes b;
    put64(b, spi_i.v);
    put64(b, spi_r.v);
    b.insert(b.end(), ep.addr.bytes.begin(), ep.addr.bytes.begin() + (ep.addr.is_v6() ? 16 : 4));
    put16(b, ep.port);
    return sha1(b);
}

}  // namespace p3::setup
