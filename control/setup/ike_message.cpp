// IKE message encode/decode. Decoding walks the payload chain with a cursor that is checked
// against the datagram length before every read; a length field that points outside its
// container is an error, never a read.
#include "control/setup/ike_message.hpp"

#include "control/setup/ike_crypto.hpp"

namespace p3::setup {

std::string_view to_string(DecodeError e) noexcept {
    switch (e) {
        case DecodeError::ok: return "ok";
        case DecodeError::too_short: return "shorter than an IKE header";
        case DecodeError::too_long: return "longer than the limit";
        case DecodeError::bad_version: return "not IKEv2";
        case DecodeError::bad_length: return "length field does not match the datagram";
        case DecodeError::payload_overrun: return "payload length overruns the message";
        case DecodeError::too_many_payloads: return "too many payloads";
        case DecodeError::bad_payload: return "malformed payload body";
        case DecodeError::sk_not_last: return "SK payload not last";
        case DecodeError::auth_tag: return "SK integrity check failed";
        case DecodeError::not_encrypted: return "no SK payload";
    }
    return "?";
}

Bytes IdPayload::body() const {
    // Built byte by byte into a reserved vector: the fixed 4-byte prefix then the data.
    Bytes b;
    b.reserve(4 + data.size());
    put8(b, id_type);
    put8(b, 0);
    put16(b, 0);
    append(b, data);
    return b;
}

const NotifyPayload* Message::notify(std::uint16_t type) const {
    for (const auto& p : payloads)
        if (auto* n = std::get_if<NotifyPayload>(&p.body); n && p.type == pt::notify && n->type == type) return n;
    return nullptr;
}

const NotifyPayload* Message::error_notify() const {
    for (const auto& p : payloads)
        if (auto* n = std::get_if<NotifyPayload>(&p.body); n && p.type == pt::notify && nt::is_error(n->type))
            return n;
    return nullptr;
}

// ---- payload bodies ------------------------------------------------------------------

namespace {

void encode_sa(const SaPayload& sa, Bytes& b) {
    for (std::size_t i = 0; i < sa.proposals.size(); ++i) {
        const auto& p = sa.proposals[i];
        const std::size_t start = b.size();
        put8(b, i + 1 == sa.proposals.size() ? 0 : 2);
        put8(b, 0);
        put16(b, 0);  // length, patched
        put8(b, p.num);
        put8(b, p.protocol);
        put8(b, std::uint8_t(p.spi.size()));
        put8(b, std::uint8_t(p.transforms.size()));
        append(b, p.spi);
        for (std::size_t t = 0; t < p.transforms.size(); ++t) {
            const auto& tr = p.transforms[t];
            put8(b, t + 1 == p.transforms.size() ? 0 : 3);
            put8(b, 0);
            put16(b, tr.key_bits ? 12 : 8);
            put8(b, tr.type);
            put8(b, 0);
            put16(b, tr.id);
            if (tr.key_bits) {
                put16(b, 0x8000 | attr_key_length);
                put16(b, tr.key_bits);
            }
        }
        set16(b, start + 2, std::uint16_t(b.size() - start));
    }
}

bool decode_sa(ByteView body, SaPayload& sa) {
    std::size_t off = 0;
    std::uint8_t last = 2;
    while (last == 2) {
        if (body.size() - off < 8 || sa.proposals.size() >= limits::max_proposals) return false;
        const std::uint8_t* p = body.data() + off;
        last = p[0];
        const std::size_t plen = get16(p + 2);
        if ((last != 0 && last != 2) || plen < 8 || plen > body.size() - off) return false;
        Proposal prop;
        prop.num = p[4];
        prop.protocol = p[5];
        const std::size_t spi_size = p[6];
        const std::size_t ntrans = p[7];
        if (8 + spi_size > plen || ntrans > limits::max_transforms) return false;
        prop.spi.assign(p + 8, p + 8 + spi_size);
        std::size_t toff = 8 + spi_size;
        for (std::size_t t = 0; t < ntrans; ++t) {
            if (plen - toff < 8) return false;
            const std::uint8_t* q = p + toff;
            const std::size_t tlen = get16(q + 2);
            const bool tlast = q[0] == 0;
            if ((q[0] != 0 && q[0] != 3) || tlen < 8 || tlen > plen - toff || tlast != (t + 1 == ntrans))
                return false;
            Transform tr;
            tr.type = q[4];
            tr.id = get16(q + 6);
            // Attributes: TV (AF=1, 4 bytes) or TLV (AF=0). Only Key Length is understood; a
            // transform with any other attribute cannot be selected (RFC 7296 §3.3.6), so it
            // is marked unusable by an impossible key length.
            std::size_t aoff = 8;
            while (aoff < tlen) {
                if (tlen - aoff < 4) return false;
                const std::uint16_t at = get16(q + aoff);
                const std::uint16_t av = get16(q + aoff + 2);
                if (at & 0x8000) {
                    if ((at & 0x7fff) == attr_key_length) tr.key_bits = av;
                    else tr.key_bits = 0xffff;
                    aoff += 4;
                } else {
                    if (tlen - aoff - 4 < av) return false;
                    tr.key_bits = 0xffff;
                    aoff += 4 + av;
                }
            }
            prop.transforms.push_back(tr);
            toff += tlen;
        }
        if (toff != plen) return false;
        sa.proposals.push_back(std::move(prop));
        off += plen;
    }
    return off == body.size() && !sa.proposals.empty();
}

void encode_ts(const TsPayload& ts, Bytes& b) {
    put8(b, std::uint8_t(ts.selectors.size()));
    put8(b, 0);
    put16(b, 0);
    for (const auto& s : ts.selectors) {
        const bool v6 = s.start.is_v6();
        const std::size_t alen = v6 ? 16 : 4;
        put8(b, v6 ? ts_ipv6_range : ts_ipv4_range);
        put8(b, s.ip_proto);
        put16(b, std::uint16_t(8 + 2 * alen));
        put16(b, s.start_port);
        put16(b, s.end_port);
        b.insert(b.end(), s.start.bytes.begin(), s.start.bytes.begin() + alen);
        b.insert(b.end(), s.end.bytes.begin(), s.end.bytes.begin() + alen);
    }
}

bool decode_ts(ByteView body, TsPayload& ts) {
    if (body.size() < 4) return false;
    const std::size_t n = body[0];
    if (n == 0 || n > limits::max_selectors) return false;
    std::size_t off = 4;
    for (std::size_t i = 0; i < n; ++i) {
        if (body.size() - off < 8) return false;
        const std::uint8_t* p = body.data() + off;
        const std::size_t len = get16(p + 2);
        if (len > body.size() - off) return false;
        std::size_t alen;
        if (p[0] == ts_ipv4_range) alen = 4;
        else if (p[0] == ts_ipv6_range) alen = 16;
        else return false;  // other selector types are not used between appliances
        if (len != 8 + 2 * alen) return false;
        TrafficSelector s;
        s.ip_proto = p[1];
        s.start_port = get16(p + 4);
        s.end_port = get16(p + 6);
        s.start.family = s.end.family = alen == 4 ? 4 : 6;
        std::copy(p + 8, p + 8 + alen, s.start.bytes.begin());
        std::copy(p + 8 + alen, p + 8 + 2 * alen, s.end.bytes.begin());
        ts.selectors.push_back(s);
        off += len;
    }
    return off == body.size();
}

}  // namespace

Bytes encode_body(const Payload& p) {
    Bytes b;
    std::visit(
        [&](const auto& v) {
            using T = std::decay_t<decltype(v)>;
            if constexpr (std::is_same_v<T, RawPayload>) append(b, v.body);
            else if constexpr (std::is_same_v<T, SaPayload>) encode_sa(v, b);
            else if constexpr (std::is_same_v<T, KePayload>) {
                b.reserve(4 + v.data.size());   // one allocation (and no GCC 12 false -Wstringop-overread)
                put16(b, v.group);
                put16(b, 0);
                append(b, v.data);
            } else if constexpr (std::is_same_v<T, NoncePayload>) append(b, v.data);
            else if constexpr (std::is_same_v<T, NotifyPayload>) {
                put8(b, v.protocol);
                put8(b, std::uint8_t(v.spi.size()));
                put16(b, v.type);
                append(b, v.spi);
                append(b, v.data);
            } else if constexpr (std::is_same_v<T, IdPayload>) b = v.body();
            else if constexpr (std::is_same_v<T, AuthPayload>) {
                b.reserve(4 + v.data.size());
                put8(b, v.method);
                put8(b, 0);
                put16(b, 0);
                append(b, v.data);
            } else if constexpr (std::is_same_v<T, CertPayload>) {
                put8(b, v.encoding);
                append(b, v.data);
            } else if constexpr (std::is_same_v<T, TsPayload>) encode_ts(v, b);
        },
        p.body);
    return b;
}

bool decode_body(std::uint8_t type, ByteView body, PayloadBody& out) {
    switch (type) {
        case pt::sa: {
            SaPayload sa;
            if (!decode_sa(body, sa)) return false;
            out = std::move(sa);
            return true;
        }
        case pt::ke: {
            if (body.size() < 4 || body.size() - 4 > limits::max_ke_data) return false;
            out = KePayload{get16(body.data()), Bytes(body.begin() + 4, body.end())};
            return true;
        }
        case pt::nonce:
            if (body.size() < limits::min_nonce || body.size() > limits::max_nonce) return false;
            out = NoncePayload{Bytes(body.begin(), body.end())};
            return true;
        case pt::notify: {
            if (body.size() < 4) return false;
            const std::size_t spi_size = body[1];
            if (body.size() - 4 < spi_size || body.size() - 4 - spi_size > limits::max_notify_data) return false;
            NotifyPayload n;
            n.protocol = body[0];
            n.type = get16(body.data() + 2);
            n.spi.assign(body.begin() + 4, body.begin() + 4 + spi_size);
            n.data.assign(body.begin() + 4 + spi_size, body.end());
            out = std::move(n);
            return true;
        }
        case pt::idi:
        case pt::idr:
            if (body.size() < 5 || body.size() > 1024) return false;
            out = IdPayload{body[0], Bytes(body.begin() + 4, body.end())};
            return true;
        case pt::auth:
            if (body.size() < 5 || body.size() > 2048) return false;
            out = AuthPayload{body[0], Bytes(body.begin() + 4, body.end())};
            return true;
        case pt::cert:
        case pt::certreq:
            if (body.size() < 1 || body.size() > limits::max_cert) return false;
            out = CertPayload{body[0], Bytes(body.begin() + 1, body.end())};
            return true;
        case pt::tsi:
        case pt::tsr: {
            TsPayload ts;
            if (!decode_ts(body, ts)) return false;
            out = std::move(ts);
            return true;
        }
        default:
            out = RawPayload{Bytes(body.begin(), body.end())};
            return true;
    }
}

// ---- messages ------------------------------------------------------------------------

namespace {

void encode_header(const Header& h, std::uint8_t next, Bytes& b) {
    put64(b, h.spi_i.v);
    put64(b, h.spi_r.v);
    put8(b, next);
    put8(b, h.version);
    put8(b, static_cast<std::uint8_t>(h.exchange));
    put8(b, h.flags);
    put32(b, h.msg_id);
    put32(b, 0);  // length, patched
}

void encode_chain(const std::vector<Payload>& ps, Bytes& b) {
    for (std::size_t i = 0; i < ps.size(); ++i) {
        const Bytes body = encode_body(ps[i]);
        put8(b, i + 1 < ps.size() ? ps[i + 1].type : pt::none);
        put8(b, ps[i].critical ? 0x80 : 0);
        put16(b, std::uint16_t(limits::payload_header + body.size()));
        append(b, body);
    }
}

// Parses a chain starting with type `first` over [off, end) of bytes into out. Stops at an SK
// payload if allow_sk (recording where). Returns ok or the error.
DecodeError decode_chain(ByteView bytes, std::size_t off, std::uint8_t first, bool allow_sk, Message& out) {
    std::uint8_t next = first;
    while (next != pt::none) {
        if (out.payloads.size() >= limits::max_payloads) return DecodeError::too_many_payloads;
        if (bytes.size() - off < limits::payload_header) return DecodeError::payload_overrun;
        const std::uint8_t* p = bytes.data() + off;
        const std::size_t len = get16(p + 2);
        if (len < limits::payload_header || len > bytes.size() - off) return DecodeError::payload_overrun;
        if (next == pt::sk) {
            if (!allow_sk) return DecodeError::bad_payload;
            if (off + len != bytes.size()) return DecodeError::sk_not_last;
            if (len < limits::payload_header + limits::gcm_iv + limits::gcm_icv + 1) return DecodeError::bad_payload;
            out.encrypted = true;
            out.sk_offset = off;
            out.sk_first = p[0];
            return DecodeError::ok;
        }
        Payload pl;
        pl.type = next;
        pl.critical = (p[1] & 0x80) != 0;
        if (!decode_body(next, bytes.subspan(off + limits::payload_header, len - limits::payload_header), pl.body))
            return DecodeError::bad_payload;
        out.payloads.push_back(std::move(pl));
        next = p[0];
        off += len;
    }
    return off == bytes.size() ? DecodeError::ok : DecodeError::bad_length;
}

}  // namespace

Bytes encode(const Message& m) {
    Bytes b;
    b.reserve(512);
    encode_header(m.hdr, m.payloads.empty() ? pt::none : m.payloads[0].type, b);
    encode_chain(m.payloads, b);
    set32(b, 24, std::uint32_t(b.size()));
    return b;
}

std::optional<Bytes> encode_sk(const Message& m, const SkKey& key, std::uint64_t iv_value) {
    Bytes inner;
    encode_chain(m.payloads, inner);
    inner.push_back(0);  // Pad Length: GCM needs no padding (RFC 5282 §3)
    Bytes b;
    encode_header(m.hdr, pt::sk, b);
    const std::size_t sk_at = b.size();
    put8(b, m.payloads.empty() ? pt::none : m.payloads[0].type);
    put8(b, 0);
    put16(b, std::uint16_t(limits::payload_header + limits::gcm_iv + inner.size() + limits::gcm_icv));
    set32(b, 24, std::uint32_t(b.size() + limits::gcm_iv + inner.size() + limits::gcm_icv));
    Bytes iv;
    put64(iv, iv_value);
    // AAD: the IKE header and the SK generic header (RFC 5282 §5.1).
    const Bytes aad(b.begin(), b.end());
    (void)sk_at;
    append(b, iv);
    Bytes sealed;
    const bool ok = gcm_seal(key.key.span(), key.salt.span(), iv, aad, inner, sealed);
    secure_wipe(inner.data(), inner.size());
    if (!ok) return std::nullopt;
    append(b, sealed);
    return b;
}

DecodeError decode_header(ByteView bytes, Header& h) {
    if (bytes.size() < limits::ike_header) return DecodeError::too_short;
    if (bytes.size() > limits::max_message) return DecodeError::too_long;
    const std::uint8_t* p = bytes.data();
    h.spi_i.v = get64(p);
    h.spi_r.v = get64(p + 8);
    h.next = p[16];
    h.version = p[17];
    h.exchange = static_cast<Exchange>(p[18]);
    h.flags = p[19];
    h.msg_id = get32(p + 20);
    h.length = get32(p + 24);
    if ((h.version >> 4) != 2) return DecodeError::bad_version;
    if (h.length != bytes.size()) return DecodeError::bad_length;
    return DecodeError::ok;
}

DecodeError decode(ByteView bytes, Message& out) {
    out = Message{};
    if (auto e = decode_header(bytes, out.hdr); e != DecodeError::ok) return e;
    return decode_chain(bytes, limits::ike_header, out.hdr.next, true, out);
}

DecodeError open_sk(ByteView bytes, const Message& outer, const SkKey& key, Message& out) {
    if (!outer.encrypted || outer.sk_offset + limits::payload_header > bytes.size()) return DecodeError::not_encrypted;
    const std::size_t body_at = outer.sk_offset + limits::payload_header;
    const ByteView aad = bytes.first(body_at);
    const ByteView iv = bytes.subspan(body_at, limits::gcm_iv);
    const ByteView ct = bytes.subspan(body_at + limits::gcm_iv);
    SecretBytes plain;
    if (!gcm_open(key.key.span(), key.salt.span(), iv, aad, ct, plain)) return DecodeError::auth_tag;
    if (plain.size() < 1) return DecodeError::bad_payload;
    const std::size_t pad = plain.data()[plain.size() - 1];
    if (pad + 1 > plain.size()) return DecodeError::bad_payload;
    out = Message{};
    out.hdr = outer.hdr;
    out.payloads = outer.payloads;
    const ByteView inner = plain.span().first(plain.size() - 1 - pad);
    return decode_chain(inner, 0, outer.sk_first, false, out);
}

}  // namespace p3::setup
