// Control messages: every type round-trips; the strict parser rejects each class of malformed
// input (table-driven) and counts it.
#include <catch2/catch.hpp>

#include <cstring>
#include <vector>

#include "control/channel/messages.hpp"

using namespace p3;
using namespace p3::channel;

namespace {

std::vector<std::uint8_t> enc(const Message& m) {
    std::vector<std::uint8_t> b(limits::kMaxMessageLen);
    b.resize(encode(m, b));
    return b;
}

SecretBytes material(std::size_t n, std::uint8_t seed) {
    SecretBytes s(n);
    for (std::size_t i = 0; i < n; ++i) s.data()[i] = static_cast<std::uint8_t>(seed + i);
    return s;
}

Message rekey_request_explicit() {
    Message m;
    m.type = MsgType::rekey_request;
    m.msg_id = 77;
    m.epoch = 3;
    m.lanes = 2;
    m.data_p2s.material = material(20, 1);
    m.data_s2p.material = material(20, 2);
    m.ctl_p2s.material = material(20, 3);
    m.ctl_s2p.material = material(20, 4);
    return m;
}

// Hand-built message: header + raw TLVs.
std::vector<std::uint8_t> raw(std::uint8_t type, std::vector<std::vector<std::uint8_t>> tlvs, std::uint8_t version = 2) {
    // (push_back, not insert: GCC 12 warns falsely on vector::insert of small vectors)
    std::vector<std::uint8_t> body;
    for (auto& tv : tlvs)
        for (auto x : tv) body.push_back(x);
    std::vector<std::uint8_t> b{version, type, static_cast<std::uint8_t>(body.size() >> 8),
                                static_cast<std::uint8_t>(body.size()), 0, 0, 0, 9};
    for (auto x : body) b.push_back(x);
    return b;
}
std::vector<std::uint8_t> t(std::uint16_t type, std::vector<std::uint8_t> v) {
    std::vector<std::uint8_t> b{static_cast<std::uint8_t>(type >> 8), static_cast<std::uint8_t>(type),
                                static_cast<std::uint8_t>(v.size() >> 8), static_cast<std::uint8_t>(v.size())};
    for (auto x : v) b.push_back(x);
    return b;
}
std::vector<std::uint8_t> u32(std::uint32_t x) {
    return {static_cast<std::uint8_t>(x >> 24), static_cast<std::uint8_t>(x >> 16), static_cast<std::uint8_t>(x >> 8),
            static_cast<std::uint8_t>(x)};
}

}  // namespace

TEST_CASE("channel messages: rekey request with explicit keys round-trips, keys intact") {
    Message m = rekey_request_explicit();
    auto b = enc(m);
    REQUIRE(b.size() == limits::kHeaderLen + 2 * (4 + 4) + 4 * (4 + 20));
    ParseStats st;
    auto p = parse(b, nullptr, &st);
    REQUIRE(p);
    CHECK(st.ok == 1);
    CHECK(p->type == MsgType::rekey_request);
    CHECK(p->msg_id == 77);
    CHECK(p->epoch == 3u);
    CHECK(p->lanes == 2u);
    CHECK_FALSE(p->dh_share);
    CHECK(p->data_p2s.material.equals(m.data_p2s.material.span()));
    CHECK(p->ctl_s2p.material.equals(m.ctl_s2p.material.span()));
    CHECK_FALSE(p->data_p2s.index);
}

TEST_CASE("channel messages: every message type round-trips through encode and parse") {
    std::vector<Message> all;
    auto add = [&](MsgType ty) -> Message& {
        all.emplace_back();
        all.back().type = ty;
        all.back().msg_id = static_cast<std::uint32_t>(all.size());
        return all.back();
    };
    add(MsgType::heartbeat);
    add(MsgType::heartbeat_ack);
    {
        Message& m = add(MsgType::rekey_request);
        m.epoch = 9;
        m.lanes = 1;
        m.dh_share.emplace();
        for (std::size_t i = 0; i < 32; ++i) (*m.dh_share)[i] = static_cast<std::uint8_t>(i + 1);
        m.data_p2s.index = ArrayIndex{2, 10};
        m.data_s2p.index = ArrayIndex{2, 11};
        m.ctl_p2s.material = material(36, 5);
        m.ctl_s2p.index = ArrayIndex{3, 0};
    }
    {
        Message& m = add(MsgType::rekey_status);
        m.epoch = 9;
        m.status = Status::ok;
        m.lanes = 4;
        m.dh_share.emplace();
        m.dh_share->fill(0x42);
    }
    {
        Message& m = add(MsgType::rekey_status);
        m.epoch = 9;
        m.status = Status::dh_failed;
    }
    {
        Message& m = add(MsgType::rekey_status);
        m.epoch = 9;
        m.status = Status::index_reused;
    }
    {
        Message& m = add(MsgType::rekey_switch);
        m.epoch = 9;
        for (std::uint64_t i = 0; i < wire::kMaxLanes; ++i) m.first_seq.push_back(wire::kSeqLast - i);  // 64 lanes
    }
    {
        Message& m = add(MsgType::rekey_switch_ack);
        m.epoch = 9;
        m.first_seq = {1, 0, 3};   // lane 1 not announced (another cluster member's)
    }
    add(MsgType::rekey_ask).ask_reason = 3;
    add(MsgType::rekey_ask_ack).status = Status::ok;
    {
        Message& m = add(MsgType::array_chunk);
        m.array_kind = ArrayKind::control;
        m.array_gen = 4;
        m.array_size = 256;
        m.array_offset = 240;
        m.key_len = 32;
        m.array_keys = material(16 * 36, 9);
    }
    {
        Message& m = add(MsgType::array_chunk_ack);
        m.array_kind = ArrayKind::data;
        m.array_gen = 4;
        m.array_offset = 16;
        m.status = Status::ok;
    }
    add(MsgType::array_flush).flush_kinds = 3;
    add(MsgType::array_flush_ack).flush_kinds = 1;
    add(MsgType::error).error_code = Status::not_allowed;
    add(MsgType::goodbye).goodbye_reason = GoodbyeReason::administrator;
    add(MsgType::goodbye).goodbye_reason = GoodbyeReason::stopping;
    add(MsgType::goodbye_ack);

    for (const Message& m : all) {
        INFO(msg_type_name(m.type));
        auto b = enc(m);
        REQUIRE(b.size() >= limits::kHeaderLen);
        REQUIRE(b.size() <= limits::kMaxMessageLen);
        ParseError why;
        auto p = parse(b, &why);
        INFO(parse_error_name(why));
        REQUIRE(p);
        CHECK(p->type == m.type);
        CHECK(p->msg_id == m.msg_id);
        CHECK(p->epoch == m.epoch);
        CHECK(p->status == m.status);
        CHECK(p->array_gen == m.array_gen);
        CHECK(p->array_offset == m.array_offset);
        CHECK(p->data_p2s.index == m.data_p2s.index);
        CHECK(p->ctl_s2p.index == m.ctl_s2p.index);
        CHECK(p->array_keys.equals(m.array_keys.span()));
        CHECK(p->first_seq == m.first_seq);
        CHECK(p->dh_share == m.dh_share);
        CHECK(p->lanes == m.lanes);
        CHECK(p->goodbye_reason == m.goodbye_reason);
        // Re-encoding what was parsed gives the same bytes (canonical order).
        CHECK(enc(*p) == b);
        // Padding after the message (the framing's fixed length) is ignored.
        auto padded = b;
        padded.resize(b.size() + 200, 0);
        CHECK(parse(padded));
    }
    // Requests and their responses pair up.
    CHECK(response_of(MsgType::rekey_request) == MsgType::rekey_status);
    CHECK(response_of(MsgType::array_flush) == MsgType::array_flush_ack);
    CHECK(response_of(MsgType::goodbye) == MsgType::goodbye_ack);
    CHECK(is_request(MsgType::heartbeat));
    CHECK(is_request(MsgType::goodbye));
    CHECK_FALSE(is_request(MsgType::heartbeat_ack));
    CHECK_FALSE(is_request(MsgType::goodbye_ack));
    CHECK(msg_type_name(MsgType::goodbye) == "goodbye");
    CHECK(msg_type_name(MsgType::goodbye_ack) == "goodbye-ack");
}

TEST_CASE("channel messages: a goodbye's bytes: type 14 with its reason as a u16 TLV 24, the ack bare") {
    Message m;
    m.type = MsgType::goodbye;
    m.msg_id = 0x01020304;
    m.goodbye_reason = GoodbyeReason::stopping;
    CHECK(enc(m) == std::vector<std::uint8_t>{2, 14, 0, 6, 1, 2, 3, 4, 0, 24, 0, 2, 0, 2});
    Message a;
    a.type = MsgType::goodbye_ack;
    a.msg_id = 0x01020304;
    CHECK(enc(a) == std::vector<std::uint8_t>{2, 15, 0, 0, 1, 2, 3, 4});
    // Only the reasons on the wire encode: none (no goodbye at all) and unknown values do not.
    std::vector<std::uint8_t> buf(limits::kMaxMessageLen);
    for (auto r : {GoodbyeReason::none, static_cast<GoodbyeReason>(3)}) {
        m.goodbye_reason = r;
        CHECK(encode(m, buf) == 0);
    }
}

TEST_CASE("channel messages: the parser rejects each class of malformed input and counts it") {
    const auto epoch = t(tlv::epoch, u32(1));
    const auto seq1 = t(tlv::first_seq, {0, 0, 0, 0, 0, 0, 0, 1});
    const auto share = t(tlv::dh_share, std::vector<std::uint8_t>(32, 9));
    const auto keys4 = [] {
        std::vector<std::vector<std::uint8_t>> k;
        for (auto ty : {tlv::data_key_p2s, tlv::data_key_s2p, tlv::ctl_key_p2s, tlv::ctl_key_s2p})
            k.push_back(t(ty, std::vector<std::uint8_t>(20)));
        return k;
    }();
    auto request_with = [&](std::vector<std::vector<std::uint8_t>> extra) {
        std::vector<std::vector<std::uint8_t>> v{epoch, t(tlv::lanes, u32(1))};
        for (auto& k : keys4) v.push_back(k);
        for (auto& x : extra) v.push_back(x);
        return raw(3, v);
    };
    std::vector<std::uint8_t> seq65;
    for (int i = 0; i < 65; ++i)
        for (std::uint8_t b : {0, 0, 0, 0, 0, 0, 0, 1}) seq65.push_back(b);
    struct Case {
        const char* what;
        std::vector<std::uint8_t> bytes;
        ParseError want;
    };
    auto hb = raw(1, {});
    auto long_len = hb;
    long_len[3] = 4;  // body length beyond the bytes
    auto over_max = hb;
    over_max[2] = 0x02;
    over_max[3] = 0xa0;  // 672 + header > kMaxMessageLen (678)
    std::vector<std::vector<std::uint8_t>> many;
    for (int i = 0; i < 25; ++i) many.push_back(t(tlv::epoch, u32(1)));
    const std::vector<Case> cases = {
        {"empty", {}, ParseError::short_header},
        {"7 bytes", {1, 1, 0, 0, 0, 0, 0}, ParseError::short_header},
        {"version 1 (P3 IDs per rekey)", raw(1, {}, 1), ParseError::bad_version},
        {"version 3", raw(1, {}, 3), ParseError::bad_version},
        {"version 0", raw(1, {}, 0), ParseError::bad_version},
        {"type 0", raw(0, {}), ParseError::unknown_type},
        {"type 16", raw(16, {}), ParseError::unknown_type},
        {"type 255", raw(255, {}), ParseError::unknown_type},
        {"body length past the end", long_len, ParseError::bad_length},
        {"body length over the limit", over_max, ParseError::bad_length},
        {"3-byte TLV stub", raw(5, {epoch, seq1, {0, 1, 0}}), ParseError::truncated_tlv},
        {"TLV value past the body", raw(5, {epoch, seq1, {0, 1, 0, 8, 1}}), ParseError::truncated_tlv},
        {"TLV type 0", raw(5, {epoch, seq1, t(0, {})}), ParseError::unknown_tlv},
        {"TLV type 25", raw(5, {epoch, seq1, t(25, {1})}), ParseError::unknown_tlv},
        {"TLV type 0xffff", raw(5, {epoch, seq1, t(0xffff, {})}), ParseError::unknown_tlv},
        {"epoch twice", raw(5, {epoch, epoch, seq1}), ParseError::duplicate_tlv},
        {"epoch of 3 bytes", raw(5, {t(tlv::epoch, {0, 0, 1}), seq1}), ParseError::bad_tlv_length},
        {"first_seq 0", raw(5, {epoch, t(tlv::first_seq, {0, 0, 0, 0, 0, 0, 0, 0})}), ParseError::bad_value},
        // 0 on a lane is "not announced" (another cluster member's lane), but never on all.
        {"first_seq 0 on both lanes", raw(5, {epoch, t(tlv::first_seq, std::vector<std::uint8_t>(16, 0))}),
         ParseError::bad_value},
        {"first_seq 2^63", raw(5, {epoch, t(tlv::first_seq, {0x80, 0, 0, 0, 0, 0, 0, 0})}), ParseError::bad_value},
        {"first_seq 2^62 on lane 1",
         raw(6, {epoch, t(tlv::first_seq, {0, 0, 0, 0, 0, 0, 0, 1, 0x40, 0, 0, 0, 0, 0, 0, 0})}), ParseError::bad_value},
        {"first_seq of 12 bytes", raw(5, {epoch, t(tlv::first_seq, std::vector<std::uint8_t>(12, 1))}),
         ParseError::bad_tlv_length},
        {"first_seq empty", raw(5, {epoch, t(tlv::first_seq, {})}), ParseError::bad_tlv_length},
        {"first_seq for 65 lanes", raw(5, {epoch, t(tlv::first_seq, seq65)}), ParseError::bad_tlv_length},
        {"dh_share of 31 bytes", request_with({t(tlv::dh_share, std::vector<std::uint8_t>(31))}),
         ParseError::bad_tlv_length},
        {"dh_share on a switch", raw(5, {epoch, seq1, share}), ParseError::not_allowed},
        {"dh_share with a refusal", raw(4, {epoch, t(tlv::status, {0, 2}), share}), ParseError::not_allowed},
        {"p3_id (version 1's) in a request", request_with({t(tlv::p3_id, u32(1))}), ParseError::not_allowed},
        {"p3_id in a status", raw(4, {epoch, t(tlv::status, {0, 0}), t(tlv::lanes, u32(1)), t(tlv::p3_id, u32(1))}),
         ParseError::not_allowed},
        {"key of 19 bytes", raw(3, {t(tlv::data_key_p2s, std::vector<std::uint8_t>(19))}), ParseError::bad_tlv_length},
        {"lanes 0", raw(3, {t(tlv::lanes, u32(0))}), ParseError::bad_value},
        {"lanes 65", raw(3, {t(tlv::lanes, u32(65))}), ParseError::bad_value},
        {"status 99", raw(4, {epoch, t(tlv::status, {0, 99})}), ParseError::bad_value},
        {"status 10", raw(4, {epoch, t(tlv::status, {0, 10})}), ParseError::bad_value},
        {"array kind 3", raw(11, {t(tlv::flush_kinds, {4})}), ParseError::bad_value},
        {"flush kinds 0", raw(11, {t(tlv::flush_kinds, {0})}), ParseError::bad_value},
        // (25 TLVs cannot avoid repeating a type: the duplicate rule bounds the count first)
        {"25 TLVs", raw(5, many), ParseError::duplicate_tlv},
        {"heartbeat with an epoch", raw(1, {epoch}), ParseError::not_allowed},
        {"switch with a key", raw(5, {epoch, seq1, t(tlv::data_key_p2s, std::vector<std::uint8_t>(20))}),
         ParseError::not_allowed},
        {"switch without first_seq", raw(5, {epoch}), ParseError::missing},
        {"flush without kinds", raw(11, {}), ParseError::missing},
        {"status ok without lanes", raw(4, {epoch, t(tlv::status, {0, 0}), share}), ParseError::missing},
        {"rekey without lanes", raw(3, {epoch, keys4[0], keys4[1], keys4[2], keys4[3]}), ParseError::missing},
        {"rekey with a key both explicit and by index",
         raw(3, {epoch, t(tlv::lanes, u32(1)),
                 t(tlv::data_key_p2s, std::vector<std::uint8_t>(20)), t(tlv::data_idx_p2s, std::vector<std::uint8_t>(8)),
                 t(tlv::data_key_s2p, std::vector<std::uint8_t>(20)), t(tlv::ctl_key_p2s, std::vector<std::uint8_t>(20)),
                 t(tlv::ctl_key_s2p, std::vector<std::uint8_t>(20))}),
         ParseError::key_conflict},
        {"rekey with a key missing",
         raw(3, {epoch, t(tlv::lanes, u32(1)),
                 t(tlv::data_key_p2s, std::vector<std::uint8_t>(20)), t(tlv::ctl_key_p2s, std::vector<std::uint8_t>(20)),
                 t(tlv::ctl_key_s2p, std::vector<std::uint8_t>(20))}),
         ParseError::key_conflict},
        {"chunk keys not whole entries",
         raw(9, {t(tlv::array_kind, {1}), t(tlv::array_gen, u32(1)), t(tlv::array_size, u32(16)),
                 t(tlv::array_offset, u32(0)), t(tlv::key_len, {16}), t(tlv::array_keys, std::vector<std::uint8_t>(21))}),
         ParseError::bad_value},
        {"chunk past the array's end",
         raw(9, {t(tlv::array_kind, {1}), t(tlv::array_gen, u32(1)), t(tlv::array_size, u32(16)),
                 t(tlv::array_offset, u32(15)), t(tlv::key_len, {16}), t(tlv::array_keys, std::vector<std::uint8_t>(40))}),
         ParseError::bad_value},
        {"chunk key length 24",
         raw(9, {t(tlv::array_kind, {1}), t(tlv::array_gen, u32(1)), t(tlv::array_size, u32(16)),
                 t(tlv::array_offset, u32(0)), t(tlv::key_len, {24}), t(tlv::array_keys, std::vector<std::uint8_t>(28))}),
         ParseError::bad_value},
        {"goodbye without a reason", raw(14, {}), ParseError::missing},
        {"goodbye reason 0", raw(14, {t(tlv::goodbye_reason, {0, 0})}), ParseError::bad_value},
        {"goodbye reason 3", raw(14, {t(tlv::goodbye_reason, {0, 3})}), ParseError::bad_value},
        {"goodbye reason 0x0101", raw(14, {t(tlv::goodbye_reason, {1, 1})}), ParseError::bad_value},
        {"goodbye reason of 1 byte", raw(14, {t(tlv::goodbye_reason, {1})}), ParseError::bad_tlv_length},
        {"goodbye reason of 4 bytes", raw(14, {t(tlv::goodbye_reason, u32(1))}), ParseError::bad_tlv_length},
        {"goodbye reason twice",
         raw(14, {t(tlv::goodbye_reason, {0, 1}), t(tlv::goodbye_reason, {0, 1})}), ParseError::duplicate_tlv},
        {"goodbye with an epoch", raw(14, {t(tlv::goodbye_reason, {0, 1}), epoch}), ParseError::not_allowed},
        {"goodbye-ack with a reason", raw(15, {t(tlv::goodbye_reason, {0, 1})}), ParseError::not_allowed},
        {"goodbye reason in a heartbeat", raw(1, {t(tlv::goodbye_reason, {0, 1})}), ParseError::not_allowed},
        {"array size 0",
         raw(9, {t(tlv::array_kind, {1}), t(tlv::array_gen, u32(1)), t(tlv::array_size, u32(0))}),
         ParseError::bad_value},
    };
    ParseStats st;
    for (const Case& c : cases) {
        INFO(c.what);
        ParseError why = ParseError::none;
        CHECK_FALSE(parse(c.bytes, &why, &st));
        CHECK(parse_error_name(why) == parse_error_name(c.want));
    }
    CHECK(st.ok == 0);
    CHECK(st.total_rejected() == cases.size());
    CHECK(st.rejected[static_cast<std::size_t>(ParseError::short_header)] == 2);
}

TEST_CASE("channel messages: encode refuses what does not fit or is invalid, and wipes its buffer") {
    Message m = rekey_request_explicit();
    std::vector<std::uint8_t> small(40, 0xaa);
    CHECK(encode(m, small) == 0);
    for (auto b : small) REQUIRE((b == 0 || b == 0xaa));  // nothing of the keys left behind
    Message bad = rekey_request_explicit();
    bad.data_p2s.material = material(17, 0);
    std::vector<std::uint8_t> buf(limits::kMaxMessageLen);
    CHECK(encode(bad, buf) == 0);
    Message both = rekey_request_explicit();
    both.ctl_p2s.index = ArrayIndex{1, 1};
    CHECK(encode(both, buf) == 0);
    Message none;
    none.type = static_cast<MsgType>(0);
    CHECK(encode(none, buf) == 0);
    Message lanes65;
    lanes65.type = MsgType::rekey_switch;
    lanes65.epoch = 1;
    lanes65.first_seq.assign(65, 1);
    CHECK(encode(lanes65, buf) == 0);
}

TEST_CASE("channel messages: the largest messages fit the fixed control packet in either inner family") {
    std::vector<std::uint8_t> buf(limits::kMaxMessageLen);
    Message chunk;
    chunk.type = MsgType::array_chunk;
    chunk.msg_id = 0xffffffff;
    chunk.array_kind = ArrayKind::control;
    chunk.array_gen = 0xffffffff;
    chunk.array_size = limits::kMaxArraySize;
    chunk.array_offset = limits::kMaxArraySize - 16;
    chunk.key_len = 32;
    chunk.array_keys = material(16 * 36, 1);
    const std::size_t n = encode(chunk, buf);
    CHECK(n == limits::kMaxChunkMessage);
    Message sw;
    sw.type = MsgType::rekey_switch_ack;
    sw.epoch = 1;
    sw.first_seq.assign(wire::kMaxLanes, wire::kSeqLast);
    CHECK(encode(sw, buf) == limits::kMaxSwitchMessage);
    Message req = rekey_request_explicit();
    for (KeyRef* k : {&req.data_p2s, &req.data_s2p, &req.ctl_p2s, &req.ctl_s2p}) k->material = material(36, 7);
    req.dh_share.emplace();
    const std::size_t r = encode(req, buf);
    CHECK(r > 0);
    for (std::size_t len : {n, r, limits::kMaxSwitchMessage}) {
        CHECK(len <= limits::kControlInnerLen - 40 - 20 - 28);  // IPv6 inner
        CHECK(len <= limits::kControlInnerLen - 20 - 20 - 28);  // IPv4 inner
    }
}
