// Strict TLV codec of the control messages. One table says, per message type, which TLVs it
// requires and which it allows; parse() checks framing, then each TLV's size and range, then
// the table, then the cross-field rules (one key source per key, chunk inside its array);
// each of those is its own step (check_header, walk_tlvs with set_field, check_fields).
#include "control/channel/messages.hpp"

#include "common/bytes.hpp"

#include <cstring>

namespace p3::channel {

namespace {

constexpr std::uint32_t bit(std::uint16_t t) { return std::uint32_t{1} << t; }

struct TypeRule {
    std::uint32_t required;
    std::uint32_t allowed;  // includes required
};

constexpr std::uint32_t kKeyTlvs = bit(tlv::data_key_p2s) | bit(tlv::data_key_s2p) |
                                   bit(tlv::ctl_key_p2s) | bit(tlv::ctl_key_s2p) |
                                   bit(tlv::data_idx_p2s) | bit(tlv::data_idx_s2p) |
                                   bit(tlv::ctl_idx_p2s) | bit(tlv::ctl_idx_s2p);

// Indexed by MsgType.
constexpr TypeRule kRules[kMaxMsgType + 1] = {
    /* 0 */ {0, 0},
    /* heartbeat */ {0, 0},
    /* heartbeat_ack */ {0, 0},
    /* rekey_request */
    {bit(tlv::epoch) | bit(tlv::lanes), bit(tlv::epoch) | bit(tlv::lanes) | kKeyTlvs | bit(tlv::dh_share)},
    /* rekey_status */
    {bit(tlv::epoch) | bit(tlv::status), bit(tlv::epoch) | bit(tlv::status) | bit(tlv::lanes) | bit(tlv::dh_share)},
    /* rekey_switch */ {bit(tlv::epoch) | bit(tlv::first_seq), bit(tlv::epoch) | bit(tlv::first_seq)},
    /* rekey_switch_ack */
    {bit(tlv::epoch) | bit(tlv::first_seq), bit(tlv::epoch) | bit(tlv::first_seq)},
    /* rekey_ask */ {bit(tlv::ask_reason), bit(tlv::ask_reason)},
    /* rekey_ask_ack */ {0, bit(tlv::status)},
    /* array_chunk */
    {bit(tlv::array_kind) | bit(tlv::array_gen) | bit(tlv::array_size) | bit(tlv::array_offset) |
         bit(tlv::key_len) | bit(tlv::array_keys),
     bit(tlv::array_kind) | bit(tlv::array_gen) | bit(tlv::array_size) | bit(tlv::array_offset) |
         bit(tlv::key_len) | bit(tlv::array_keys)},
    /* array_chunk_ack */
    {bit(tlv::array_kind) | bit(tlv::array_gen) | bit(tlv::array_offset) | bit(tlv::status),
     bit(tlv::array_kind) | bit(tlv::array_gen) | bit(tlv::array_offset) | bit(tlv::status)},
    /* array_flush */ {bit(tlv::flush_kinds), bit(tlv::flush_kinds)},
    /* array_flush_ack */ {bit(tlv::flush_kinds), bit(tlv::flush_kinds) | bit(tlv::status)},
    /* error */ {bit(tlv::error_code), bit(tlv::error_code)},
    /* goodbye */ {bit(tlv::goodbye_reason), bit(tlv::goodbye_reason)},
    /* goodbye_ack */ {0, 0},
};
static_assert(tlv::max < 32, "a TLV type is one bit of a TypeRule");

bool valid_material_len(std::size_t n) {
    return n == limits::kKeyMaterial128 || n == limits::kKeyMaterial256;
}
bool valid_status(std::uint16_t v) { return v <= static_cast<std::uint16_t>(Status::dh_failed); }

ParseError fail(ParseError e, ParseError* why, ParseStats* stats) {
    if (why) *why = e;
    if (stats) ++stats->rejected[static_cast<std::size_t>(e)];
    return e;
}

// Writer over a fixed buffer: every put checks room; ok() false once anything did not fit.
class Writer {
public:
    explicit Writer(std::span<std::uint8_t> out) : out_(out) {}
    bool tlv(std::uint16_t type, const std::uint8_t* v, std::size_t n) {
        if (!ok_ || n > 0xffff || pos_ + limits::kTlvHeaderLen + n > out_.size()) return ok_ = false;
        be::put16(&out_[pos_], type);
        be::put16(&out_[pos_ + 2], static_cast<std::uint16_t>(n));
        if (n) std::memcpy(&out_[pos_ + 4], v, n);
        pos_ += limits::kTlvHeaderLen + n;
        return true;
    }
    void u8(std::uint16_t type, std::uint8_t v) { tlv(type, &v, 1); }
    void u16(std::uint16_t type, std::uint16_t v) {
        std::uint8_t b[2];
        be::put16(b, v);
        tlv(type, b, 2);
    }
    void u32(std::uint16_t type, std::uint32_t v) {
        std::uint8_t b[4];
        be::put32(b, v);
        tlv(type, b, 4);
    }
    void u64(std::uint16_t type, std::uint64_t v) {
        std::uint8_t b[8];
        be::put64(b, v);
        tlv(type, b, 8);
    }
    void index(std::uint16_t type, const ArrayIndex& i) {
        std::uint8_t b[8];
        be::put32(b, i.gen);
        be::put32(b + 4, i.index);
        tlv(type, b, 8);
    }
    void fail() { ok_ = false; }
    bool ok() const { return ok_; }
    std::size_t pos() const { return pos_; }
    void skip(std::size_t n) { pos_ += n; }

private:
    std::span<std::uint8_t> out_;
    std::size_t pos_ = 0;
    bool ok_ = true;
};

void write_key(Writer& w, const KeyRef& k, std::uint16_t key_tlv, std::uint16_t idx_tlv) {
    if (!k.material.empty()) {
        if (!valid_material_len(k.material.size()) || k.index) return w.fail();
        w.tlv(key_tlv, k.material.data(), k.material.size());
    } else if (k.index) {
        w.index(idx_tlv, *k.index);
    }
}

}  // namespace

std::string_view msg_type_name(MsgType t) noexcept {
    switch (t) {
    case MsgType::heartbeat: return "heartbeat";
    case MsgType::heartbeat_ack: return "heartbeat-ack";
    case MsgType::rekey_request: return "rekey-request";
    case MsgType::rekey_status: return "rekey-status";
    case MsgType::rekey_switch: return "rekey-switch";
    case MsgType::rekey_switch_ack: return "rekey-switch-ack";
    case MsgType::rekey_ask: return "rekey-ask";
    case MsgType::rekey_ask_ack: return "rekey-ask-ack";
    case MsgType::array_chunk: return "array-chunk";
    case MsgType::array_chunk_ack: return "array-chunk-ack";
    case MsgType::array_flush: return "array-flush";
    case MsgType::array_flush_ack: return "array-flush-ack";
    case MsgType::error: return "error";
    case MsgType::goodbye: return "goodbye";
    case MsgType::goodbye_ack: return "goodbye-ack";
    }
    return "?";
}

bool is_request(MsgType t) noexcept {
    switch (t) {
    case MsgType::heartbeat:
    case MsgType::rekey_request:
    case MsgType::rekey_switch:
    case MsgType::rekey_ask:
    case MsgType::array_chunk:
    case MsgType::array_flush:
    case MsgType::goodbye: return true;
    default: return false;
    }
}

MsgType response_of(MsgType r) noexcept {
    switch (r) {
    case MsgType::heartbeat: return MsgType::heartbeat_ack;
    case MsgType::rekey_request: return MsgType::rekey_status;
    case MsgType::rekey_switch: return MsgType::rekey_switch_ack;
    case MsgType::rekey_ask: return MsgType::rekey_ask_ack;
    case MsgType::array_chunk: return MsgType::array_chunk_ack;
    case MsgType::array_flush: return MsgType::array_flush_ack;
    case MsgType::goodbye: return MsgType::goodbye_ack;
    default: return MsgType::error;
    }
}

std::string_view status_name(Status s) noexcept {
    switch (s) {
    case Status::ok: return "ok";
    case Status::stale: return "stale";
    case Status::bad_key: return "bad-key";
    case Status::unknown_array: return "unknown-array";
    case Status::index_reused: return "index-reused";
    case Status::install_failed: return "install-failed";
    case Status::unknown_epoch: return "unknown-epoch";
    case Status::busy: return "busy";
    case Status::not_allowed: return "not-allowed";
    case Status::dh_failed: return "dh-failed";
    }
    return "?";
}

std::string_view goodbye_reason_name(GoodbyeReason r) noexcept {
    switch (r) {
    case GoodbyeReason::none: return "none";
    case GoodbyeReason::administrator: return "shut down by its administrator";
    case GoodbyeReason::stopping: return "stopping";
    }
    return "?";
}

std::string_view parse_error_name(ParseError e) noexcept {
    switch (e) {
    case ParseError::none: return "none";
    case ParseError::short_header: return "short header";
    case ParseError::bad_version: return "unknown version";
    case ParseError::unknown_type: return "unknown message type";
    case ParseError::bad_length: return "length field does not match";
    case ParseError::truncated_tlv: return "truncated TLV";
    case ParseError::unknown_tlv: return "unknown TLV type";
    case ParseError::duplicate_tlv: return "duplicate TLV";
    case ParseError::bad_tlv_length: return "TLV of the wrong length";
    case ParseError::bad_value: return "value out of range";
    case ParseError::too_many_tlvs: return "too many TLVs";
    case ParseError::not_allowed: return "TLV not allowed in this message";
    case ParseError::missing: return "required TLV missing";
    case ParseError::key_conflict: return "key given both explicitly and by index, or not at all";
    case ParseError::count_: break;
    }
    return "?";
}

Message Message::clone() const {
    Message m;
    m.type = type;
    m.msg_id = msg_id;
    m.epoch = epoch;
    m.lanes = lanes;
    m.array_gen = array_gen;
    m.array_size = array_size;
    m.array_offset = array_offset;
    m.status = status;
    m.error_code = error_code;
    m.first_seq = first_seq;
    m.dh_share = dh_share;
    m.array_kind = array_kind;
    m.flush_kinds = flush_kinds;
    m.ask_reason = ask_reason;
    m.key_len = key_len;
    m.goodbye_reason = goodbye_reason;
    m.data_p2s = data_p2s.clone();
    m.data_s2p = data_s2p.clone();
    m.ctl_p2s = ctl_p2s.clone();
    m.ctl_s2p = ctl_s2p.clone();
    m.array_keys = array_keys.clone();
    return m;
}

namespace {

// The fixed header: version, a known type, a body that fits the buffer and the limit.
ParseError check_header(std::span<const std::uint8_t> in, std::size_t& body_len) {
    if (in.size() < limits::kHeaderLen) return ParseError::short_header;
    const std::uint8_t* p = in.data();
    if (p[0] != limits::kVersion) return ParseError::bad_version;
    if (p[1] == 0 || p[1] > kMaxMsgType) return ParseError::unknown_type;
    body_len = be::get16(p + 2);
    if (body_len > limits::kMaxBodyLen || limits::kHeaderLen + body_len > in.size()) return ParseError::bad_length;
    return ParseError::none;
}

// The fixed-size scalar TLVs: size first, then range, then the field.
ParseError set_scalar(Message& m, std::uint16_t t, const std::uint8_t* v, std::size_t n) {
    auto need = [&](std::size_t len) { return n == len; };
    ParseError e = ParseError::none;
    switch (t) {
    case tlv::epoch:
    case tlv::lanes:
    case tlv::array_gen:
    case tlv::array_size:
    case tlv::array_offset: {
        if (!need(4)) return ParseError::bad_tlv_length;
        const std::uint32_t x = be::get32(v);
        if (t == tlv::epoch) m.epoch = x;
        else if (t == tlv::lanes) {
            if (x == 0 || x > wire::kMaxLanes) e = ParseError::bad_value;
            m.lanes = x;
        } else if (t == tlv::array_gen) m.array_gen = x;
        else if (t == tlv::array_size) {
            if (x == 0 || x > limits::kMaxArraySize) e = ParseError::bad_value;
            m.array_size = x;
        } else m.array_offset = x;
        return e;
    }
    case tlv::status:
    case tlv::error_code: {
        if (!need(2)) return ParseError::bad_tlv_length;
        const std::uint16_t x = be::get16(v);
        if (!valid_status(x)) return ParseError::bad_value;
        (t == tlv::status ? m.status : m.error_code) = static_cast<Status>(x);
        return e;
    }
    case tlv::first_seq: {
        // One u64 per lane of the sender: 1 .. kMaxLanes entries, each 1 .. 2^62 - 1, or 0: not
        // announced (a cluster member announces its own lanes only; the receiver learns the
        // switch of the others' from the first packet under the next key, docs/cluster.md);
        // never all of them.
        if (n == 0 || n % 8 != 0 || n / 8 > wire::kMaxLanes) return ParseError::bad_tlv_length;
        m.first_seq.resize(n / 8);
        bool announced = false;
        for (std::size_t i = 0; i < n / 8; ++i) {
            m.first_seq[i] = be::get64(v + 8 * i);
            if (m.first_seq[i] >= wire::kSeqHardLimit) e = ParseError::bad_value;
            announced |= m.first_seq[i] != 0;
        }
        if (!announced) e = ParseError::bad_value;
        return e;
    }
    case tlv::dh_share:
        if (!need(limits::kDhShareLen)) return ParseError::bad_tlv_length;
        m.dh_share.emplace();
        std::memcpy(m.dh_share->data(), v, limits::kDhShareLen);
        return e;
    case tlv::array_kind:
        if (!need(1)) return ParseError::bad_tlv_length;
        if (v[0] != 1 && v[0] != 2) return ParseError::bad_value;
        m.array_kind = static_cast<ArrayKind>(v[0]);
        return e;
    case tlv::flush_kinds:
        if (!need(1)) return ParseError::bad_tlv_length;
        if (v[0] == 0 || v[0] > 3) return ParseError::bad_value;
        m.flush_kinds = v[0];
        return e;
    case tlv::ask_reason:
        if (!need(1)) return ParseError::bad_tlv_length;
        m.ask_reason = v[0];
        return e;
    case tlv::goodbye_reason: {
        // Only the reasons this version knows: an unknown one is a malformed goodbye (the
        // sender then closes after its wait and the session is lost by heartbeat, as without).
        if (!need(2)) return ParseError::bad_tlv_length;
        const std::uint16_t x = be::get16(v);
        if (x == 0 || x > kMaxGoodbyeReason) return ParseError::bad_value;
        m.goodbye_reason = static_cast<GoodbyeReason>(x);
        return e;
    }
    case tlv::key_len:
        if (!need(1)) return ParseError::bad_tlv_length;
        if (v[0] != limits::kAes128KeyLen && v[0] != limits::kAes256KeyLen) return ParseError::bad_value;
        m.key_len = v[0];
        return e;
    default: return ParseError::unknown_tlv;
    }
}

// The key TLVs: a key's material or its array index, and an array chunk's keys.
ParseError set_key(Message& m, std::uint16_t t, const std::uint8_t* v, std::size_t n) {
    switch (t) {
    case tlv::data_key_p2s:
    case tlv::data_key_s2p:
    case tlv::ctl_key_p2s:
    case tlv::ctl_key_s2p: {
        if (!valid_material_len(n)) return ParseError::bad_tlv_length;
        KeyRef& k = t == tlv::data_key_p2s ? m.data_p2s
                    : t == tlv::data_key_s2p ? m.data_s2p
                    : t == tlv::ctl_key_p2s  ? m.ctl_p2s
                                             : m.ctl_s2p;
        k.material = SecretBytes(std::span<const std::uint8_t>(v, n));
        return ParseError::none;
    }
    case tlv::data_idx_p2s:
    case tlv::data_idx_s2p:
    case tlv::ctl_idx_p2s:
    case tlv::ctl_idx_s2p: {
        if (n != 8) return ParseError::bad_tlv_length;
        KeyRef& k = t == tlv::data_idx_p2s ? m.data_p2s
                    : t == tlv::data_idx_s2p ? m.data_s2p
                    : t == tlv::ctl_idx_p2s  ? m.ctl_p2s
                                             : m.ctl_s2p;
        k.index = ArrayIndex{be::get32(v), be::get32(v + 4)};
        return ParseError::none;
    }
    case tlv::array_keys:
        if (n == 0 || n > limits::kKeysPerChunk * limits::kKeyMaterial256) return ParseError::bad_tlv_length;
        m.array_keys = SecretBytes(std::span<const std::uint8_t>(v, n));
        return ParseError::none;
    default: return ParseError::unknown_tlv;
    }
}

// One TLV's value into its field.
ParseError set_field(Message& m, std::uint16_t t, const std::uint8_t* v, std::size_t n) {
    return (kKeyTlvs | bit(tlv::array_keys)) & bit(t) ? set_key(m, t, v, n) : set_scalar(m, t, v, n);
}

// The body's TLVs in order: framing, count, known type, no repeat, allowed for the message
// type, then the value. `seen` collects the TLV types met.
ParseError walk_tlvs(Message& m, const std::uint8_t* b, std::size_t body_len, const TypeRule& rule,
                     std::uint32_t& seen) {
    std::size_t count = 0;
    std::size_t pos = 0;
    while (pos < body_len) {
        if (body_len - pos < limits::kTlvHeaderLen) return ParseError::truncated_tlv;
        const std::uint16_t t = be::get16(b + pos);
        const std::size_t n = be::get16(b + pos + 2);
        pos += limits::kTlvHeaderLen;
        if (n > body_len - pos) return ParseError::truncated_tlv;
        const std::uint8_t* v = b + pos;
        pos += n;
        if (++count > limits::kMaxTlvs) return ParseError::too_many_tlvs;
        if (t == 0 || t > tlv::max) return ParseError::unknown_tlv;
        if (seen & bit(t)) return ParseError::duplicate_tlv;
        seen |= bit(t);
        if (!(rule.allowed & bit(t))) return ParseError::not_allowed;
        if (const ParseError e = set_field(m, t, v, n); e != ParseError::none) return e;
    }
    return ParseError::none;
}

// Cross-field rules: one key source per key, a successful status names its p3 and lanes,
// a chunk's keys are whole entries inside its array.
ParseError check_fields(const Message& m) {
    if (m.type == MsgType::rekey_request) {
        for (const KeyRef* k : {&m.data_p2s, &m.data_s2p, &m.ctl_p2s, &m.ctl_s2p})
            if (k->material.empty() == !k->index.has_value()) return ParseError::key_conflict;
    }
    if (m.type == MsgType::rekey_status && m.status == Status::ok && !m.lanes) return ParseError::missing;
    // A share travels with an accepted status only (a refusal installs nothing to mix).
    if (m.type == MsgType::rekey_status && m.status != Status::ok && m.dh_share) return ParseError::not_allowed;
    if (m.type == MsgType::array_chunk) {
        const std::size_t entry = *m.key_len + limits::kSaltLen;
        const std::size_t nkeys = m.array_keys.size() / entry;
        if (m.array_keys.size() % entry != 0 || nkeys == 0 || nkeys > limits::kKeysPerChunk ||
            *m.array_offset >= *m.array_size || nkeys > *m.array_size - *m.array_offset)
            return ParseError::bad_value;
    }
    return ParseError::none;
}

}  // namespace

std::optional<Message> parse(std::span<const std::uint8_t> in, ParseError* why, ParseStats* stats) {
    if (why) *why = ParseError::none;
    std::size_t body_len = 0;
    if (const ParseError e = check_header(in, body_len); e != ParseError::none)
        return (fail(e, why, stats), std::nullopt);
    const std::uint8_t* p = in.data();
    Message m;
    m.type = static_cast<MsgType>(p[1]);
    m.msg_id = be::get32(p + 4);
    const TypeRule& rule = kRules[p[1]];
    std::uint32_t seen = 0;
    if (const ParseError e = walk_tlvs(m, p + limits::kHeaderLen, body_len, rule, seen); e != ParseError::none)
        return (fail(e, why, stats), std::nullopt);
    if ((seen & rule.required) != rule.required) return (fail(ParseError::missing, why, stats), std::nullopt);
    if (const ParseError e = check_fields(m); e != ParseError::none) return (fail(e, why, stats), std::nullopt);
    if (stats) ++stats->ok;
    return m;
}

std::size_t encode(const Message& m, std::span<std::uint8_t> out) noexcept {
    const auto t = static_cast<std::uint8_t>(m.type);
    if (t == 0 || t > kMaxMsgType || out.size() < limits::kHeaderLen) return 0;
    const std::size_t cap = std::min(out.size(), limits::kMaxMessageLen);
    Writer w(out.subspan(limits::kHeaderLen, cap - limits::kHeaderLen));
    if (m.epoch) w.u32(tlv::epoch, *m.epoch);
    if (m.status) w.u16(tlv::status, static_cast<std::uint16_t>(*m.status));
    if (m.lanes) w.u32(tlv::lanes, *m.lanes);
    write_key(w, m.data_p2s, tlv::data_key_p2s, tlv::data_idx_p2s);
    write_key(w, m.data_s2p, tlv::data_key_s2p, tlv::data_idx_s2p);
    write_key(w, m.ctl_p2s, tlv::ctl_key_p2s, tlv::ctl_idx_p2s);
    write_key(w, m.ctl_s2p, tlv::ctl_key_s2p, tlv::ctl_idx_s2p);
    if (m.dh_share) w.tlv(tlv::dh_share, m.dh_share->data(), m.dh_share->size());
    if (!m.first_seq.empty()) {
        std::uint8_t b[wire::kMaxLanes * 8];
        if (m.first_seq.size() > wire::kMaxLanes) w.fail();
        else {
            for (std::size_t i = 0; i < m.first_seq.size(); ++i) be::put64(b + 8 * i, m.first_seq[i]);
            w.tlv(tlv::first_seq, b, 8 * m.first_seq.size());
        }
    }
    if (m.array_kind) w.u8(tlv::array_kind, static_cast<std::uint8_t>(*m.array_kind));
    if (m.array_gen) w.u32(tlv::array_gen, *m.array_gen);
    if (m.array_size) w.u32(tlv::array_size, *m.array_size);
    if (m.array_offset) w.u32(tlv::array_offset, *m.array_offset);
    if (m.key_len) w.u8(tlv::key_len, *m.key_len);
    if (!m.array_keys.empty()) w.tlv(tlv::array_keys, m.array_keys.data(), m.array_keys.size());
    if (m.flush_kinds) w.u8(tlv::flush_kinds, *m.flush_kinds);
    if (m.error_code) w.u16(tlv::error_code, static_cast<std::uint16_t>(*m.error_code));
    if (m.ask_reason) w.u8(tlv::ask_reason, *m.ask_reason);
    if (m.goodbye_reason) {
        const auto r = static_cast<std::uint16_t>(*m.goodbye_reason);
        if (r == 0 || r > kMaxGoodbyeReason) w.fail();
        else w.u16(tlv::goodbye_reason, r);
    }
    if (!w.ok()) {
        secure_wipe(out.data(), cap);
        return 0;
    }
    out[0] = limits::kVersion;
    out[1] = t;
    be::put16(&out[2], static_cast<std::uint16_t>(w.pos()));
    be::put32(&out[4], m.msg_id);
    return limits::kHeaderLen + w.pos();
}

}  // namespace p3::channel
