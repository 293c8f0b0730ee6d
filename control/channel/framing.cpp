// Control-layer packets: fixed inner IPv4/IPv6 + TCP headers around a message sealed with the
// control key. Wire fields are written and read byte by byte (never through struct casts).
#include "control/channel/framing.hpp"

#include "common/bytes.hpp"
#include "common/checksum.hpp"
#include "common/headers.hpp"

#include <openssl/evp.h>

#include <cstring>
#include <memory>

namespace p3::channel {

namespace {

std::size_t ip_len(const FrameAddrs& a) { return a.local.is_v6() ? limits::kInnerV6Len : limits::kInnerV4Len; }

struct CtxFree {
    void operator()(EVP_CIPHER_CTX* c) const noexcept { EVP_CIPHER_CTX_free(c); }
};

const EVP_CIPHER* cipher_for(const KeyMaterial& k) {
    return k.key.size() == limits::kAes256KeyLen ? EVP_aes_256_gcm() : EVP_aes_128_gcm();
}

void make_iv(const KeyMaterial& k, std::uint64_t seq, std::uint8_t iv[12]) {
    std::memcpy(iv, k.salt.data(), limits::kSaltLen);
    be::put64(iv + 4, seq);
}

}  // namespace

std::string_view frame_error_name(FrameError e) noexcept {
    switch (e) {
    case FrameError::none: return "none";
    case FrameError::too_short: return "too short";
    case FrameError::not_ip: return "not an inner IP header of the session's family";
    case FrameError::not_tcp: return "not TCP";
    case FrameError::bad_length: return "length mismatch";
    case FrameError::wrong_address: return "addresses are not the session's";
    case FrameError::wrong_port: return "ports are not the session port";
    case FrameError::fragment: return "fragmented";
    case FrameError::auth_failed: return "authentication failed under the control key";
    case FrameError::count_: break;
    }
    return "?";
}

KeyMaterial KeyMaterial::from_wire(std::span<const std::uint8_t> m) {
    KeyMaterial k;
    if (m.size() != limits::kKeyMaterial128 && m.size() != limits::kKeyMaterial256) return k;
    const std::size_t kl = m.size() - limits::kSaltLen;
    k.key = SecretBytes(m.first(kl));
    k.salt = SecretBytes(m.subspan(kl));
    return k;
}

SecretBytes KeyMaterial::to_wire() const {
    SecretBytes out(key.size() + salt.size());
    if (!key.empty()) std::memcpy(out.data(), key.data(), key.size());
    if (!salt.empty()) std::memcpy(out.data() + key.size(), salt.data(), salt.size());
    return out;
}

bool gcm_seal(const KeyMaterial& k, std::uint64_t seq, std::span<const std::uint8_t> aad,
              std::span<const std::uint8_t> plain, std::span<std::uint8_t> out) noexcept {
    if (!k.valid() || out.size() < plain.size() + limits::kTagLen) return false;
    std::unique_ptr<EVP_CIPHER_CTX, CtxFree> ctx(EVP_CIPHER_CTX_new());
    if (!ctx) return false;
    std::uint8_t iv[12];
    make_iv(k, seq, iv);
    int len = 0;
    if (EVP_EncryptInit_ex(ctx.get(), cipher_for(k), nullptr, k.key.data(), iv) != 1) return false;
    if (!aad.empty() && EVP_EncryptUpdate(ctx.get(), nullptr, &len, aad.data(), static_cast<int>(aad.size())) != 1)
        return false;
    if (!plain.empty() &&
        EVP_EncryptUpdate(ctx.get(), out.data(), &len, plain.data(), static_cast<int>(plain.size())) != 1)
        return false;
    if (EVP_EncryptFinal_ex(ctx.get(), out.data() + plain.size(), &len) != 1) return false;
    return EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_GET_TAG, static_cast<int>(limits::kTagLen),
                               out.data() + plain.size()) == 1;
}

bool gcm_open(const KeyMaterial& k, std::uint64_t seq, std::span<const std::uint8_t> aad,
              std::span<const std::uint8_t> ct, std::span<const std::uint8_t> tag,
              std::span<std::uint8_t> out) noexcept {
    if (!k.valid() || tag.size() != limits::kTagLen || out.size() < ct.size()) return false;
    std::unique_ptr<EVP_CIPHER_CTX, CtxFree> ctx(EVP_CIPHER_CTX_new());
    if (!ctx) return false;
    std::uint8_t iv[12];
    make_iv(k, seq, iv);
    int len = 0;
    std::uint8_t tagbuf[limits::kTagLen];
    std::memcpy(tagbuf, tag.data(), sizeof tagbuf);
    bool ok = EVP_DecryptInit_ex(ctx.get(), cipher_for(k), nullptr, k.key.data(), iv) == 1 &&
              (aad.empty() ||
               EVP_DecryptUpdate(ctx.get(), nullptr, &len, aad.data(), static_cast<int>(aad.size())) == 1) &&
              (ct.empty() ||
               EVP_DecryptUpdate(ctx.get(), out.data(), &len, ct.data(), static_cast<int>(ct.size())) == 1) &&
              EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_TAG, static_cast<int>(sizeof tagbuf), tagbuf) == 1 &&
              EVP_DecryptFinal_ex(ctx.get(), out.data() + ct.size(), &len) == 1;
    if (!ok) secure_wipe(out.data(), ct.size());
    return ok;
}

std::size_t message_room(const FrameAddrs& a) noexcept {
    return limits::kControlInnerLen - ip_len(a) - limits::kTcpLen - limits::kSealOverhead;
}

std::size_t seal_packet(const FrameAddrs& a, const KeyMaterial& key, const FrameParams& fp,
                        std::span<const std::uint8_t> msg, std::span<std::uint8_t> out) {
    if (a.local.family != a.peer.family || (a.local.family != 4 && a.local.family != 6)) return 0;
    if (!key.valid() || msg.size() > limits::kMaxMessageLen || msg.size() > message_room(a)) return 0;
    const std::size_t total = limits::kControlInnerLen;
    if (out.size() < total) return 0;
    const std::size_t iph = ip_len(a);
    const std::size_t seg = total - iph;  // TCP header + payload
    std::uint8_t* p = out.data();
    std::memset(p, 0, total);

    // DSCP 0, not-ECT: the outer header copies these, as for best-effort data.
    if (a.local.is_v4())
        hdr::put_ipv4(p, total, wire::kTtl, wire::kIpProtoTcp, a.local.bytes.data(), a.peer.bytes.data(), fp.ip_id);
    else
        hdr::put_ipv6(p, seg, wire::kIpProtoTcp, wire::kTtl, a.local.bytes.data(), a.peer.bytes.data());
    std::uint8_t* t = p + iph;
    hdr::put_tcp(t, a.port, a.port, fp.tcp_seq, fp.tcp_ack, limits::kTcpFlagsPshAck, limits::kTcpWindow);

    std::uint8_t* s = t + limits::kTcpLen;
    be::put32(s, fp.epoch);
    be::put64(s + 4, fp.seq);
    // Plaintext = message || zero padding, sealed in place behind the seal header.
    const std::size_t plain_len = total - iph - limits::kTcpLen - limits::kSealOverhead;
    std::uint8_t* ct = s + limits::kSealHeaderLen;
    if (!msg.empty()) std::memcpy(ct, msg.data(), msg.size());  // (an empty span may have no data)
    if (!gcm_seal(key, fp.seq, {s, limits::kSealHeaderLen}, {ct, plain_len}, {ct, plain_len + limits::kTagLen})) {
        secure_wipe(p, total);
        return 0;
    }
    be::put16(t + 16, csum::l4(a.local.is_v6(), a.local.bytes.data(), a.peer.bytes.data(), wire::kIpProtoTcp, t, seg));
    return total;
}

std::optional<SealedView> parse_packet(const FrameAddrs& a, std::span<const std::uint8_t> pkt, FrameError* why) {
    auto bad = [&](FrameError e) -> std::optional<SealedView> {
        if (why) *why = e;
        return std::nullopt;
    };
    if (why) *why = FrameError::none;
    const std::size_t iph = ip_len(a);
    if (pkt.size() < iph + limits::kTcpLen + limits::kSealOverhead) return bad(FrameError::too_short);
    if (pkt.size() != limits::kControlInnerLen) return bad(FrameError::bad_length);  // one length, always
    const std::uint8_t* p = pkt.data();
    const IpAddr* src_ok = &a.peer;
    if (a.local.is_v4()) {
        if (p[0] != 0x45) return bad(FrameError::not_ip);
        if (p[9] != wire::kIpProtoTcp) return bad(FrameError::not_tcp);
        if (be::get16(p + 2) != pkt.size()) return bad(FrameError::bad_length);
        if ((be::get16(p + 6) & 0x3fff) != 0) return bad(FrameError::fragment);  // MF or offset
        if (std::memcmp(p + 12, src_ok->bytes.data(), 4) != 0 || std::memcmp(p + 16, a.local.bytes.data(), 4) != 0)
            return bad(FrameError::wrong_address);
    } else if (a.local.is_v6()) {
        if ((p[0] >> 4) != 6) return bad(FrameError::not_ip);
        if (p[6] != wire::kIpProtoTcp) return bad(FrameError::not_tcp);
        if (be::get16(p + 4) + iph != pkt.size()) return bad(FrameError::bad_length);
        if (std::memcmp(p + 8, src_ok->bytes.data(), 16) != 0 || std::memcmp(p + 24, a.local.bytes.data(), 16) != 0)
            return bad(FrameError::wrong_address);
    } else {
        return bad(FrameError::not_ip);
    }
    const std::uint8_t* t = p + iph;
    if (be::get16(t) != a.port || be::get16(t + 2) != a.port || (t[12] >> 4) != 5) return bad(FrameError::wrong_port);
    const std::uint8_t* s = t + limits::kTcpLen;
    const std::size_t sealed = pkt.size() - iph - limits::kTcpLen;
    SealedView v;
    v.epoch = be::get32(s);
    v.seq = be::get64(s + 4);
    v.ciphertext = {s + limits::kSealHeaderLen, sealed - limits::kSealOverhead};
    v.tag = {s + sealed - limits::kTagLen, limits::kTagLen};
    return v;
}

std::optional<std::size_t> open_sealed(const KeyMaterial& key, const SealedView& s, std::span<std::uint8_t> out) {
    if (out.size() < s.ciphertext.size()) return std::nullopt;
    std::uint8_t aad[limits::kSealHeaderLen];
    be::put32(aad, s.epoch);
    be::put64(aad + 4, s.seq);
    if (!gcm_open(key, s.seq, aad, s.ciphertext, s.tag, out)) return std::nullopt;
    return s.ciphertext.size();
}

}  // namespace p3::channel
