// TLV encoding of the pushed session parameters.
#include "control/setup/config_push.hpp"

namespace p3::setup {

namespace {
void tlv_u32(Bytes& b, std::uint16_t t, std::uint32_t v) { put16(b, t); put16(b, 4); put32(b, v); }
void tlv_prefix(Bytes& b, std::uint16_t t, const Prefix& p) {
    const std::size_t alen = p.addr.is_v6() ? 16 : 4;
    put16(b, t);
    put16(b, std::uint16_t(2 + alen));
    put8(b, p.addr.family);
    put8(b, p.len);
    b.insert(b.end(), p.addr.bytes.begin(), p.addr.bytes.begin() + alen);
}
}  // namespace

Bytes encode_push(const PushedConfig& c) {
    Bytes b;
    for (const auto& p : c.primary_subnets) tlv_prefix(b, tlv::primary_subnet | tlv::critical, p);
    for (const auto& p : c.secondary_subnets) tlv_prefix(b, tlv::secondary_subnet | tlv::critical, p);
    put16(b, tlv::key_type | tlv::critical);
    put16(b, 1);
    put8(b, c.params.key_type == config::KeyType::aes256 ? 2 : 1);
    tlv_u32(b, tlv::rekey_wait, c.params.rekey_wait);
    put16(b, tlv::rekey_packets);
    put16(b, 8);
    put64(b, c.params.rekey_packets);
    tlv_u32(b, tlv::array_size, c.params.array_size);
    tlv_u32(b, tlv::data_array_time, c.params.data_array_time);
    tlv_u32(b, tlv::control_array_time, c.params.control_array_time);
    tlv_u32(b, tlv::heartbeat_time, c.params.heartbeat_time);
    tlv_u32(b, tlv::heartbeat_fail, c.params.heartbeat_fail);
    // Size hiding changes what the receiver must undo: a secondary that cannot do it must refuse.
    put16(b, tlv::size_hiding | tlv::critical);
    put16(b, 1);
    put8(b, c.params.size_hiding ? 1 : 0);
    tlv_u32(b, tlv::secondary_lanes, c.params.lanes);
    tlv_u32(b, tlv::primary_lanes, c.primary_lanes);
    // Forward secrecy at rekey: when on, a secondary that cannot mix in a DH share must refuse
    // the push rather than fail every rekey; off is what a secondary without it does anyway.
    put16(b, std::uint16_t(tlv::rekey_dh | (c.params.rekey_dh ? tlv::critical : 0)));
    put16(b, 1);
    put8(b, c.params.rekey_dh ? 1 : 0);
    return b;
}

std::optional<PushedConfig> decode_push(ByteView d) {
    PushedConfig c;
    bool have_key_type = false;
    std::size_t off = 0;
    while (off < d.size()) {
        if (d.size() - off < 4) return std::nullopt;
        const std::uint16_t type = get16(d.data() + off);
        const std::size_t len = get16(d.data() + off + 2);
        if (d.size() - off - 4 < len) return std::nullopt;
        const std::uint8_t* v = d.data() + off + 4;
        const std::uint16_t base = type & ~tlv::critical;
        auto u32 = [&](std::uint32_t& out) {
            if (len != 4) return false;
            out = get32(v);
            return true;
        };
        bool ok = true;
        switch (base) {
            case tlv::primary_subnet:
            case tlv::secondary_subnet: {
                if (len != 6 && len != 18) return std::nullopt;
                Prefix p;
                p.addr.family = v[0];
                p.len = v[1];
                const std::size_t alen = len - 2;
                if (!((p.addr.family == 4 && alen == 4 && p.len <= 32) || (p.addr.family == 6 && alen == 16 && p.len <= 128)))
                    return std::nullopt;
                std::copy(v + 2, v + len, p.addr.bytes.begin());
                (base == tlv::primary_subnet ? c.primary_subnets : c.secondary_subnets).push_back(p);
                if (c.primary_subnets.size() + c.secondary_subnets.size() > 1024) return std::nullopt;
                break;
            }
            case tlv::key_type:
                if (len != 1 || (v[0] != 1 && v[0] != 2)) return std::nullopt;
                c.params.key_type = v[0] == 2 ? config::KeyType::aes256 : config::KeyType::aes128;
                have_key_type = true;
                break;
            case tlv::rekey_wait: ok = u32(c.params.rekey_wait); break;
            case tlv::rekey_packets:
                if (len != 8) return std::nullopt;
                c.params.rekey_packets = get64(v);
                break;
            case tlv::array_size: ok = u32(c.params.array_size); break;
            case tlv::data_array_time: ok = u32(c.params.data_array_time); break;
            case tlv::control_array_time: ok = u32(c.params.control_array_time); break;
            case tlv::heartbeat_time: ok = u32(c.params.heartbeat_time); break;
            case tlv::heartbeat_fail: ok = u32(c.params.heartbeat_fail); break;
            case tlv::size_hiding:
                if (len != 1 || v[0] > 1) return std::nullopt;
                c.params.size_hiding = v[0] == 1;
                break;
            case tlv::secondary_lanes: ok = u32(c.params.lanes); break;
            case tlv::primary_lanes: ok = u32(c.primary_lanes); break;
            case tlv::rekey_dh:
                if (len != 1 || v[0] > 1) return std::nullopt;
                c.params.rekey_dh = v[0] == 1;
                break;
            default:
                if (type & tlv::critical) return std::nullopt;
        }
        if (!ok) return std::nullopt;
        off += 4 + len;
    }
    if (!have_key_type || c.params.rekey_wait == 0 || c.params.heartbeat_time == 0 || c.params.heartbeat_fail == 0)
        return std::nullopt;
    return c;
}

}  // namespace p3::setup
