// The ESP child SA's proposals, selectors, keys and Delete payloads (see esp_child.hpp).
#include "control/setup/esp_child.hpp"

#include <algorithm>
#include <cstring>

#include "control/setup/ike_tasks.hpp"

namespace p3::setup::esp {

namespace {

std::size_t alen(const IpAddr& a) { return a.is_v6() ? 16 : 4; }

// A prefix as [start, end]: start with host bits clear, end with them set.
void bounds(const Prefix& p, IpAddr& lo, IpAddr& hi) {
    lo = hi = p.addr;
    for (std::size_t i = 0; i < alen(p.addr); ++i) {
        const int in = std::clamp(int(p.len) - int(i * 8), 0, 8);
        const std::uint8_t mask = std::uint8_t(0xff00 >> in);
        lo.bytes[i] &= mask;
        hi.bytes[i] = std::uint8_t(lo.bytes[i] | ~mask);
    }
}

int cmp(const IpAddr& a, const IpAddr& b) {
    return std::memcmp(a.bytes.data(), b.bytes.data(), alen(a));
}

// [lo, hi] as the fewest prefixes (the largest aligned block at lo, then on; at most `room`).
void range_to_prefixes(IpAddr lo, const IpAddr& hi, std::vector<Prefix>& out, std::size_t room) {
    const std::size_t n = alen(lo), bits = n * 8;
    while (cmp(lo, hi) <= 0 && out.size() < room) {
        IpAddr tl, th;
        Prefix p{lo, std::uint8_t(bits)};
        for (std::size_t len = 0; len <= bits; ++len) {
            Prefix t{lo, std::uint8_t(len)};
            bounds(t, tl, th);
            if (cmp(tl, lo) == 0 && cmp(th, hi) <= 0) {
                p = t;
                break;
            }
        }
        bounds(p, tl, th);
        out.push_back(Prefix{tl, p.len});
        bool carry = true;   // lo = th + 1; done when it wraps
        lo = th;
        for (std::size_t i = n; i-- > 0 && carry;) carry = ++lo.bytes[i] == 0;
        if (carry) break;
    }
}

}  // namespace

std::vector<Prefix> local_networks(const LocalConfig& local) {
    std::vector<Prefix> v;
    if (local.lan) v.push_back(*local.lan);
    for (const auto& p : local.subnets) v.push_back(p);
    return v;
}

std::vector<Prefix> narrow(const std::vector<Prefix>& ours, const TsPayload& theirs) {
    std::vector<Prefix> out;
    for (const auto& p : ours) {
        IpAddr lo, hi;
        bounds(p, lo, hi);
        for (const auto& s : theirs.selectors) {
            if (s.ip_proto != 0 || s.start_port != 0 || s.end_port != 65535) continue;
            if (s.start.family != p.addr.family || s.end.family != p.addr.family) continue;
            const IpAddr& a = cmp(s.start, lo) > 0 ? s.start : lo;
            const IpAddr& b = cmp(s.end, hi) < 0 ? s.end : hi;
            if (cmp(a, b) > 0) continue;
            range_to_prefixes(a, b, out, limits::max_selectors);
        }
    }
    std::sort(out.begin(), out.end(), [](const Prefix& x, const Prefix& y) {
        return x.addr.family != y.addr.family ? x.addr.family < y.addr.family : cmp(x.addr, y.addr) < 0;
    });
    out.erase(std::unique(out.begin(), out.end()), out.end());
    return out;
}

TsPayload selectors(const std::vector<Prefix>& ps) {
    TsPayload ts;
    for (const auto& p : ps) {
        TrafficSelector s;
        bounds(p, s.start, s.end);
        ts.selectors.push_back(s);
    }
    return ts;
}

Choice choose(const SaPayload& sa, std::uint16_t key_bits, std::uint16_t dh_group) {
    for (const auto& p : sa.proposals) {
        if (p.protocol != proto_esp || p.spi.size() != 4 || get32(p.spi.data()) == 0) continue;
        bool encr = false, esn_yes_ok = false, esn_no_ok = false, integ = false, dh_ok = dh_group == 0, dh_none = false,
             any_dh = false;
        for (const auto& t : p.transforms) {
            if (t.type == tt::encr) encr |= t.id == encr_aes_gcm_16 && t.key_bits == key_bits;
            else if (t.type == tt::esn) (t.id == esn_yes ? esn_yes_ok : esn_no_ok) |= t.id <= esn_yes;
            else if (t.type == tt::integ) integ |= t.id != 0;
            else if (t.type == tt::dh) {
                any_dh = true;
                dh_none |= t.id == 0;
                dh_ok |= dh_group != 0 && t.id == dh_group;
            }
        }
        if (dh_group == 0 && any_dh && !dh_none) continue;   // it wants PFS and sent no KE
        if (!encr || integ || !dh_ok || !(esn_yes_ok || esn_no_ok)) continue;
        return Choice{p.num, get32(p.spi.data()), esn_yes_ok, dh_group};
    }
    return {};
}

Proposal offer(std::uint32_t spi, std::uint16_t key_bits, std::uint16_t dh) {
    Proposal p;
    p.protocol = proto_esp;
    put32(p.spi, spi);
    p.transforms = {{tt::encr, encr_aes_gcm_16, key_bits}, {tt::esn, esn_yes, 0}, {tt::esn, esn_no, 0}};
    if (dh) p.transforms.push_back({tt::dh, dh, 0});
    return p;
}

Proposal answer(const Choice& c, std::uint32_t our_spi, std::uint16_t key_bits) {
    Proposal p;
    p.num = c.num;
    p.protocol = proto_esp;
    put32(p.spi, our_spi);
    p.transforms = {{tt::encr, encr_aes_gcm_16, key_bits}, {tt::esn, c.esn ? esn_yes : esn_no, 0}};
    if (c.dh) p.transforms.push_back({tt::dh, c.dh, 0});
    return p;
}

bool derive_child(const IkeSa& sa, const SecretBytes* shared, const Bytes& ni, const Bytes& nr, std::size_t key_len,
                  DirectionKeys& i_to_r, DirectionKeys& r_to_i) {
    const std::size_t e = key_len + limits::gcm_salt;
    SecretBytes seed(0);
    Bytes tail = ni;
    append(tail, nr);
    if (shared) {
        seed = SecretBytes(shared->size() + tail.size());
        std::copy(shared->span().begin(), shared->span().end(), seed.span().begin());
        std::copy(tail.begin(), tail.end(), seed.span().begin() + std::ptrdiff_t(shared->size()));
    }
    const SecretBytes keymat = prf_plus(sa.prf_alg, sa.sk_d.span(), shared ? ByteView(seed.span()) : ByteView(tail), 2 * e);
    if (keymat.empty()) return false;
    const std::uint8_t* p = keymat.data();
    i_to_r = DirectionKeys{SecretBytes(ByteView(p, key_len)), SecretBytes(ByteView(p + key_len, limits::gcm_salt))};
    r_to_i = DirectionKeys{SecretBytes(ByteView(p + e, key_len)), SecretBytes(ByteView(p + e + key_len, limits::gcm_salt))};
    return true;
}

std::optional<Delete> parse_delete(const RawPayload& p) {
    const Bytes& b = p.body;
    if (b.size() < 4) return std::nullopt;
    Delete d;
    d.protocol = b[0];
    const std::size_t spi_size = b[1], n = get16(b.data() + 2);
    if (d.protocol == proto_ike) {
        if (spi_size != 0 || n != 0 || b.size() != 4) return std::nullopt;
        return d;
    }
    if (d.protocol != proto_esp || spi_size != 4 || n == 0 || b.size() != 4 + 4 * n || n > limits::max_delete_spis)
        return std::nullopt;
    for (std::size_t i = 0; i < n; ++i) d.spis.push_back(get32(b.data() + 4 + 4 * i));
    return d;
}

RawPayload make_delete(std::uint8_t protocol, const std::vector<std::uint32_t>& spis) {
    RawPayload r;
    r.body.push_back(protocol);
    r.body.push_back(protocol == proto_ike ? 0 : 4);
    put16(r.body, std::uint16_t(spis.size()));
    for (auto s : spis) put32(r.body, s);
    return r;
}

}  // namespace p3::setup::esp
