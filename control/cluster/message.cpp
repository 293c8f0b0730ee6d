// The sealed cluster message (see message.hpp): OpenSSL's EVP AES-256-GCM (control path: one
// context per message is cheap next to a CPG round trip) and a bounds-checked body codec.
#include "control/cluster/message.hpp"

#include <openssl/evp.h>

#include <cstring>
#include <memory>
#include <string_view>

#include "common/hkdf.hpp"

namespace p3::cluster {

namespace {

constexpr std::string_view kInfo = "p3 cluster v1";

struct CtxFree {
    void operator()(EVP_CIPHER_CTX* c) const noexcept { EVP_CIPHER_CTX_free(c); }
};
using Ctx = std::unique_ptr<EVP_CIPHER_CTX, CtxFree>;

void put_header(const Header& h, std::uint8_t* out) {
    out[0] = h.version;
    out[1] = static_cast<std::uint8_t>(h.type);
    out[2] = h.sender;
    out[3] = 0;
    for (int i = 0; i < 8; ++i) out[4 + i] = static_cast<std::uint8_t>(h.counter >> (56 - 8 * i));
}

void nonce_of(const Header& h, std::uint8_t n[12]) {
    n[0] = n[1] = n[2] = 0;
    n[3] = h.sender;
    for (int i = 0; i < 8; ++i) n[4 + i] = static_cast<std::uint8_t>(h.counter >> (56 - 8 * i));
}

// Writes big-endian fields into a buffer, or only counts them (buf empty): encode() runs it
// twice, once to size the SecretBytes, once to fill it.
struct Writer {
    std::span<std::uint8_t> buf;
    std::size_t n = 0;
    void bytes(const std::uint8_t* p, std::size_t len) {
        if (!buf.empty() && len != 0) std::memcpy(buf.data() + n, p, len);
        n += len;
    }
    void u(std::uint64_t v, int width) {
        std::uint8_t b[8];
        for (int i = 0; i < width; ++i) b[i] = static_cast<std::uint8_t>(v >> (8 * (width - 1 - i)));
        bytes(b, static_cast<std::size_t>(width));
    }
    void secret(const SecretBytes& s) {
        u(s.size(), 1);
        bytes(s.data(), s.size());
    }
    void ids(const std::vector<std::uint32_t>& v) {
        u(v.size(), 1);
        for (auto id : v) u(id, 4);
    }
};

struct Reader {
    std::span<const std::uint8_t> in;
    std::size_t n = 0;
    bool ok = true;
    bool take(std::size_t len, const std::uint8_t*& p) {
        if (!ok || in.size() - n < len) return ok = false;
        p = in.data() + n;
        n += len;
        return true;
    }
    std::uint64_t u(int width) {
        const std::uint8_t* p = nullptr;
        if (!take(static_cast<std::size_t>(width), p)) return 0;
        std::uint64_t v = 0;
        for (int i = 0; i < width; ++i) v = (v << 8) | p[i];
        return v;
    }
    void secret(SecretBytes& s) {
        const std::size_t len = u(1);
        const std::uint8_t* p = nullptr;
        if (len > kMaxKeyMaterial) ok = false;
        if (!take(len, p)) return;
        s = SecretBytes(std::span(p, len));
    }
    void ids(std::vector<std::uint32_t>& v) {
        const std::size_t count = u(1);
        if (count > kMaxIds || in.size() - n < 4 * count) {
            ok = false;
            return;
        }
        v.reserve(count);
        for (std::size_t i = 0; i < count; ++i) v.push_back(static_cast<std::uint32_t>(u(4)));
    }
    bool done() const noexcept { return ok && n == in.size(); }
};

void write_control(Writer& w, const ControlRecord& c) {
    w.u(c.tx_epoch, 4);
    w.u(c.tx_seq, 8);
    w.secret(c.tx_ctl);
    w.u(c.peer_tx_epoch, 4);
    w.u(c.next_epoch, 4);
    w.u(c.next_msg_id, 4);
    w.u(c.next_rx_epoch, 4);
    w.u(c.key_type, 1);
    w.u(c.rx.size(), 1);
    for (const auto& r : c.rx) {
        w.u(r.epoch, 4);
        w.u(r.top, 8);
        w.secret(r.ctl);
    }
}

bool read_control(Reader& r, ControlRecord& c) {
    c.tx_epoch = static_cast<std::uint32_t>(r.u(4));
    c.tx_seq = r.u(8);
    r.secret(c.tx_ctl);
    c.peer_tx_epoch = static_cast<std::uint32_t>(r.u(4));
    c.next_epoch = static_cast<std::uint32_t>(r.u(4));
    c.next_msg_id = static_cast<std::uint32_t>(r.u(4));
    c.next_rx_epoch = static_cast<std::uint32_t>(r.u(4));
    c.key_type = static_cast<std::uint8_t>(r.u(1));
    const std::size_t n = r.u(1);
    if (!r.ok || n == 0 || n > kMaxControlEpochs || c.tx_ctl.empty()) return false;
    for (std::size_t i = 0; i < n && r.ok; ++i) {
        ControlRecord::Rx x;
        x.epoch = static_cast<std::uint32_t>(r.u(4));
        x.top = r.u(8);
        r.secret(x.ctl);
        if (x.ctl.empty()) return false;
        c.rx.push_back(std::move(x));
    }
    return r.ok;
}

void write_body(Writer& w, const Body& b) {
    if (const auto* h = std::get_if<Hello>(&b)) {
        w.u(static_cast<std::uint8_t>(h->role), 1);
        w.bytes(h->config_digest.data(), h->config_digest.size());
        w.u(h->boot_id, 8);
        w.u(h->applied, 8);
    } else if (const auto* r = std::get_if<RoleMsg>(&b)) {
        w.u(r->member, 1);
        w.u(static_cast<std::uint8_t>(r->role), 1);
    } else if (const auto* c = std::get_if<ControlMsg>(&b)) {
        w.u(c->remote_id, 4);
        w.u(c->epoch, 4);
        w.u(c->holder, 1);
        w.u(c->bytes.size(), 2);
        w.bytes(c->bytes.data(), c->bytes.size());
    } else if (const auto* a = std::get_if<AckMsg>(&b)) {
        w.u(a->remote_id, 4);
        w.u(a->epoch, 4);
        w.u(a->holder, 1);
    } else if (const auto* s = std::get_if<SessionRecord>(&b)) {
        w.u(s->remote_id, 4);
        w.u(s->epoch, 4);
        w.u(s->peer_v6 ? 1 : 0, 1);
        w.bytes(s->peer_addr.data(), s->peer_addr.size());
        w.u(s->peer_port, 2);
        w.u(s->wire, 1);
        w.u(s->lanes, 2);
        w.ids(s->rx_ids);
        w.ids(s->tx_ids);
        w.secret(s->rx_cur);
        w.secret(s->rx_next);
        w.secret(s->tx_cur);
        w.secret(s->tx_next);
        w.u(s->rx_switch, 8);
        w.u(s->tx_switch, 8);
        w.u(s->holder, 1);
        w.u(s->handover, 1);
        w.u((s->control ? 1 : 0) | (s->withdrawn ? 2 : 0), 1);
        if (s->control) write_control(w, *s->control);
    }   // StateRequest: no body
}

bool role_ok(std::uint64_t v) { return v <= static_cast<std::uint8_t>(Role::primary); }

}  // namespace

SealKey::SealKey(std::span<const std::uint8_t> cluster_key) {
    if (cluster_key.size() != kClusterKeyLen) return;
    SecretBytes k(kClusterKeyLen);
    const auto* info = reinterpret_cast<const std::uint8_t*>(kInfo.data());
    if (hkdf_sha256({}, cluster_key, std::span(info, kInfo.size()), k.span())) key_ = std::move(k);
}

MsgType type_of(const Body& b) noexcept {
    switch (b.index()) {
    case 0: return MsgType::hello;
    case 1: return MsgType::state_request;
    case 2: return MsgType::session;
    case 3: return MsgType::role;
    case 4: return MsgType::control;
    default: return MsgType::ack;
    }
}

SecretBytes encode(const Body& b) {
    Writer count;
    write_body(count, b);
    SecretBytes out(count.n);
    Writer w{out.span()};
    write_body(w, b);
    return out;
}

std::optional<Body> decode(MsgType type, std::span<const std::uint8_t> bytes) {
    Reader r{bytes};
    switch (type) {
    case MsgType::hello: {
        Hello h;
        const std::uint64_t role = r.u(1);
        const std::uint8_t* d = nullptr;
        if (r.take(h.config_digest.size(), d)) std::memcpy(h.config_digest.data(), d, h.config_digest.size());
        h.boot_id = r.u(8);
        h.applied = r.u(8);
        if (!r.done() || !role_ok(role)) return std::nullopt;
        h.role = static_cast<Role>(role);
        return Body(h);
    }
    case MsgType::state_request:
        if (!bytes.empty()) return std::nullopt;
        return Body(StateRequest{});
    case MsgType::role: {
        RoleMsg m;
        const std::uint64_t member = r.u(1), role = r.u(1);
        if (!r.done() || member == 0 || member > kMaxMembers || !role_ok(role)) return std::nullopt;
        m.member = static_cast<std::uint8_t>(member);
        m.role = static_cast<Role>(role);
        return Body(m);
    }
    case MsgType::control: {
        ControlMsg c;
        c.remote_id = static_cast<std::uint32_t>(r.u(4));
        c.epoch = static_cast<std::uint32_t>(r.u(4));
        const std::uint64_t holder = r.u(1);
        const std::size_t len = r.u(2);
        const std::uint8_t* p = nullptr;
        if (len == 0 || len > kMaxControlBytes || !r.take(len, p)) return std::nullopt;
        if (!r.done() || c.remote_id == 0 || holder == 0 || holder > kMaxMembers) return std::nullopt;
        c.holder = static_cast<std::uint8_t>(holder);
        c.bytes.assign(p, p + len);
        return Body(std::move(c));
    }
    case MsgType::ack: {
        AckMsg a;
        a.remote_id = static_cast<std::uint32_t>(r.u(4));
        a.epoch = static_cast<std::uint32_t>(r.u(4));
        const std::uint64_t holder = r.u(1);
        if (!r.done() || a.remote_id == 0 || holder == 0 || holder > kMaxMembers) return std::nullopt;
        a.holder = static_cast<std::uint8_t>(holder);
        return Body(a);
    }
    case MsgType::session: {
        SessionRecord s;
        s.remote_id = static_cast<std::uint32_t>(r.u(4));
        s.epoch = static_cast<std::uint32_t>(r.u(4));
        const std::uint64_t v6 = r.u(1);
        const std::uint8_t* a = nullptr;
        if (r.take(s.peer_addr.size(), a)) std::memcpy(s.peer_addr.data(), a, s.peer_addr.size());
        s.peer_v6 = v6 == 1;
        s.peer_port = static_cast<std::uint16_t>(r.u(2));
        s.wire = static_cast<std::uint8_t>(r.u(1));
        s.lanes = static_cast<std::uint16_t>(r.u(2));
        r.ids(s.rx_ids);
        r.ids(s.tx_ids);
        r.secret(s.rx_cur);
        r.secret(s.rx_next);
        r.secret(s.tx_cur);
        r.secret(s.tx_next);
        s.rx_switch = r.u(8);
        s.tx_switch = r.u(8);
        const std::uint64_t holder = r.u(1), handover = r.u(1), flags = r.u(1);
        if (!r.ok || holder > kMaxMembers || handover > kMaxMembers || flags > 3) return std::nullopt;
        s.holder = static_cast<std::uint8_t>(holder);
        s.handover = static_cast<std::uint8_t>(handover);
        s.withdrawn = (flags & 2) != 0;
        if ((flags & 1) && !read_control(r, s.control.emplace())) return std::nullopt;
        if (!r.done() || v6 > 1 || s.remote_id == 0) return std::nullopt;
        return Body(std::move(s));
    }
    }
    return std::nullopt;
}

std::vector<std::uint8_t> seal(const SealKey& k, const Header& h, std::span<const std::uint8_t> body) {
    if (!k.valid() || kHeaderLen + body.size() + kTagLen > kMaxMessage) return {};
    std::vector<std::uint8_t> out(kHeaderLen + body.size() + kTagLen);
    put_header(h, out.data());
    std::uint8_t nonce[12];
    nonce_of(h, nonce);
    Ctx c(EVP_CIPHER_CTX_new());
    int len = 0;
    if (!c || EVP_EncryptInit_ex(c.get(), EVP_aes_256_gcm(), nullptr, k.key().data(), nonce) != 1 ||
        EVP_EncryptUpdate(c.get(), nullptr, &len, out.data(), static_cast<int>(kHeaderLen)) != 1 ||
        (!body.empty() && EVP_EncryptUpdate(c.get(), out.data() + kHeaderLen, &len, body.data(),
                                            static_cast<int>(body.size())) != 1) ||
        EVP_EncryptFinal_ex(c.get(), out.data() + kHeaderLen + body.size(), &len) != 1 ||
        EVP_CIPHER_CTX_ctrl(c.get(), EVP_CTRL_GCM_GET_TAG, static_cast<int>(kTagLen),
                            out.data() + kHeaderLen + body.size()) != 1)
        return {};
    return out;
}

std::optional<Opened> open(const SealKey& k, std::span<const std::uint8_t> msg, Refusal& why) {
    if (msg.size() < kHeaderLen + kTagLen) return why = Refusal::short_message, std::nullopt;
    if (msg.size() > kMaxMessage) return why = Refusal::too_long, std::nullopt;
    Opened o;
    o.header.version = msg[0];
    o.header.sender = msg[2];
    for (int i = 0; i < 8; ++i) o.header.counter = (o.header.counter << 8) | msg[4 + i];
    if (msg[0] != kVersion || msg[3] != 0) return why = Refusal::version, std::nullopt;
    if (msg[1] < 1 || msg[1] > 6) return why = Refusal::type, std::nullopt;
    o.header.type = static_cast<MsgType>(msg[1]);
    if (o.header.sender == 0 || o.header.sender > kMaxMembers) return why = Refusal::sender, std::nullopt;
    if (!k.valid()) return why = Refusal::auth, std::nullopt;
    const std::size_t body_len = msg.size() - kHeaderLen - kTagLen;
    o.body = SecretBytes(body_len);
    std::uint8_t nonce[12];
    nonce_of(o.header, nonce);
    std::uint8_t tag[kTagLen];
    std::memcpy(tag, msg.data() + kHeaderLen + body_len, kTagLen);
    Ctx c(EVP_CIPHER_CTX_new());
    int len = 0;
    if (!c || EVP_DecryptInit_ex(c.get(), EVP_aes_256_gcm(), nullptr, k.key().data(), nonce) != 1 ||
        EVP_DecryptUpdate(c.get(), nullptr, &len, msg.data(), static_cast<int>(kHeaderLen)) != 1 ||
        (body_len && EVP_DecryptUpdate(c.get(), o.body.data(), &len, msg.data() + kHeaderLen,
                                       static_cast<int>(body_len)) != 1) ||
        EVP_CIPHER_CTX_ctrl(c.get(), EVP_CTRL_GCM_SET_TAG, static_cast<int>(kTagLen), tag) != 1 ||
        EVP_DecryptFinal_ex(c.get(), tag, &len) != 1)
        return why = Refusal::auth, std::nullopt;   // o.body is wiped on the way out
    return o;
}

}  // namespace p3::cluster
