// Key arrays of one session, both sides (arrays.hpp).
#include "control/channel/arrays.hpp"

#include <algorithm>
#include <cstring>

#include "control/channel/timers.hpp"

namespace p3::channel {

using namespace detail;

using std::chrono::seconds;

void KeyArrays::clear() {
    delivery_.reset();
    c_.timers.cancel_array_chunk();
    for (auto& a : arrays_) a.wipe();
    for (auto& a : incoming_) a.wipe();
}

Duration KeyArrays::lifetime(ArrayKind k) const noexcept {
    return seconds(k == ArrayKind::data ? c_.cfg.params.data_array_time : c_.cfg.params.control_array_time);
}

bool KeyArrays::fresh(ArrayKind k) const noexcept {
    const Array& a = active(k);
    return a.complete && a.unused >= 1 && c_.now() < a.complete_at + lifetime(k);
}

// ---- primary: delivery ----------------------------------------------------------------------

void KeyArrays::start_delivery(ArrayKind k) {
    const std::uint32_t size = std::min(c_.cfg.params.array_size, limits::kMaxArraySize);
    Delivery d;
    d.kind = k;
    d.array.gen = next_gen_++;
    d.array.size = size;
    d.array.entry = c_.key_len() + limits::kSaltLen;
    d.array.keys = SecretBytes(std::size_t{size} * d.array.entry);
    if (!c_.keys.fill(d.array.keys.span())) {
        P3_LOG_ERROR(KEY_SOURCE_FAILED, "%s: key generator failed: no %s key array", c_.name(), kind_name(k));
        return c_.ops.finish_work(Work::Kind::deliver);
    }
    d.array.used.assign(size, false);
    d.array.unused = size;
    delivery_ = std::move(d);
    send_chunk();
}

Duration KeyArrays::chunk_spacing(ArrayKind k) const noexcept {
    const std::uint32_t size = std::max<std::uint32_t>(1, std::min(c_.cfg.params.array_size, limits::kMaxArraySize));
    const std::uint32_t chunks = (size + limits::kKeysPerChunk - 1) / limits::kKeysPerChunk;
    const Duration share = lifetime(k) / (std::int64_t{limits::kChunkSpreadShare} * chunks);
    return std::min<Duration>(limits::kChunkSpacing, share);
}

void KeyArrays::on_chunk_due() {
    if (!delivery_ || delivery_->chunk_out) return;
    if (c_.ops.rekey_beside()) {
        delivery_->waiting = true;  // resume() sends it when the rekey is over
        return;
    }
    send_chunk();
}

void KeyArrays::resume() {
    if (!delivery_ || !delivery_->waiting) return;
    delivery_->waiting = false;
    send_chunk();
}

void KeyArrays::send_chunk() {
    Delivery& d = *delivery_;
    d.chunk_out = true;
    const std::uint32_t n = std::min(limits::kKeysPerChunk, d.array.size - d.next_offset);
    Message m;
    m.type = MsgType::array_chunk;
    m.array_kind = d.kind;
    m.array_gen = d.array.gen;
    m.array_size = d.array.size;
    m.array_offset = d.next_offset;
    m.key_len = static_cast<std::uint8_t>(c_.key_len());
    m.array_keys = SecretBytes(d.array.keys.span().subspan(std::size_t{d.next_offset} * d.array.entry,
                                                           std::size_t{n} * d.array.entry));
    link_.request(std::move(m));
}

void KeyArrays::on_chunk_ack(const Message& m) {
    if (!delivery_ || m.array_gen != delivery_->array.gen || m.array_offset != delivery_->next_offset) {
        ++c_.stats.unexpected;
        return;
    }
    if (*m.status != Status::ok) {
        P3_LOG_WARN(ARRAY_DELIVERY_FAILED, "%s: %s key array generation %u refused: %s", c_.name(),
                    kind_name(delivery_->kind), delivery_->array.gen, status_name(*m.status).data());
        delivery_.reset();
        return c_.ops.finish_work(Work::Kind::deliver);
    }
    Delivery& d = *delivery_;
    d.chunk_out = false;
    d.next_offset += std::min(limits::kKeysPerChunk, d.array.size - d.next_offset);
    if (d.next_offset < d.array.size) {
        // A trickle: the next chunk after a jittered pause, during which a rekey may run.
        c_.timers.array_chunk(SessionCore::scaled(chunk_spacing(d.kind), c_.uniform(0.5, 1.5)));
        return c_.ops.delivery_paused();
    }
    // Complete on both sides: the new generation replaces the old one, which is wiped.
    const ArrayKind k = d.kind;
    d.array.complete = true;
    d.array.complete_at = c_.now();
    active(k) = std::move(d.array);
    delivery_.reset();
    ++c_.stats.arrays_delivered;
    P3_LOG_INFO(ARRAY_ACTIVE, "%s: %s key array generation %u active (%u keys)", c_.name(), kind_name(k),
                active(k).gen, active(k).size);
    c_.emit({.kind = Event::Kind::array_active, .array = k, .gen = active(k).gen, .reason = Reason::ARRAY_ACTIVE});
    c_.timers.array_due(k, lifetime(k));
    c_.ops.finish_work(Work::Kind::deliver);
}

void KeyArrays::on_chunk_failed() {
    if (!delivery_) return;
    P3_LOG_WARN(ARRAY_DELIVERY_FAILED, "%s: %s key array generation %u not acknowledged; retried later", c_.name(),
                kind_name(delivery_->kind), delivery_->array.gen);
    const ArrayKind k = delivery_->kind;
    delivery_.reset();
    c_.timers.cancel_array_chunk();
    c_.ops.finish_work(Work::Kind::deliver);
    // Try again after a while; until then rekeys carry explicit keys.
    c_.timers.array_retry(k, limits::kRequestTimeout * 4);
}

void KeyArrays::on_due(ArrayKind k) {
    P3_LOG_INFO(ARRAY_REPLACE, "%s: %s key array generation %u is %ld s old: replaced", c_.name(), kind_name(k),
                active(k).gen, secs(lifetime(k)));
    c_.ops.queue({.kind = Work::Kind::deliver, .kinds = kind_bit(k)});
}

void KeyArrays::flush_ours(ArrayKind k, bool with_new) {
    const std::uint32_t gen = active(k).gen;
    active(k).wipe();
    c_.timers.cancel_array(k);
    P3_LOG_NOTICE(ARRAY_FLUSHED, "%s: %s key array generation %u flushed%s", c_.name(), kind_name(k), gen,
                  with_new ? "; a new one follows" : "");
    c_.emit({.kind = Event::Kind::array_flushed, .array = k, .gen = gen, .reason = Reason::ARRAY_FLUSHED});
}

void KeyArrays::drop_before_flush(std::uint8_t kinds) {
    for (ArrayKind k : {ArrayKind::data, ArrayKind::control})
        if ((kinds & kind_bit(k)) && active(k).gen) {
            active(k).wipe();
            c_.timers.cancel_array(k);
        }
}

// ---- primary: keys for a rekey ------------------------------------------------------------------

std::optional<KeyMaterial> KeyArrays::make_key() {
    WipedBuf<limits::kKeyMaterial256> b;
    const std::size_t n = c_.key_len() + limits::kSaltLen;
    if (!c_.keys.fill({b.b, n})) {
        P3_LOG_ERROR(KEY_SOURCE_FAILED, "%s: key generator failed", c_.name());
        return std::nullopt;
    }
    return KeyMaterial::from_wire({b.b, n});
}

bool KeyArrays::choose_key(ArrayKind kind, KeyRef& ref, KeyMaterial& out) {
    Array& a = active(kind);
    if (fresh(kind)) {
        std::uint8_t rb[4];
        c_.rng.fill(rb);
        std::uint32_t r = ((std::uint32_t(rb[0]) << 24) | (rb[1] << 16) | (rb[2] << 8) | rb[3]) % a.unused;
        for (std::uint32_t i = 0; i < a.size; ++i) {
            if (a.used[i]) continue;
            if (r-- == 0) {
                a.used[i] = true;
                --a.unused;
                ++c_.stats.indices_used;
                ref.index = ArrayIndex{a.gen, i};
                out = KeyMaterial::from_wire(a.keys.span().subspan(i * a.entry, a.entry));
                c_.emit({.kind = Event::Kind::array_index_used, .array = kind, .gen = a.gen, .index = i});
                if (a.unused < limits::kIndicesPerRekey) {
                    P3_LOG_INFO(ARRAY_REPLACE, "%s: %s key array generation %u used up: replaced", c_.name(),
                                kind_name(kind), a.gen);
                    c_.ops.queue({.kind = Work::Kind::deliver, .kinds = kind_bit(kind)});
                }
                return true;
            }
        }
        return false;
    }
    auto k = make_key();
    if (!k) return false;
    ref.material = k->to_wire();
    out = std::move(*k);
    return true;
}

// ---- secondary ------------------------------------------------------------------------------------

void KeyArrays::on_chunk(const Message& m) {
    const ArrayKind k = *m.array_kind;
    Array& act = active(k);
    Array& in = incoming_[kind_slot(k)];
    const std::uint32_t gen = *m.array_gen, off = *m.array_offset;
    Message a;
    a.type = MsgType::array_chunk_ack;
    a.array_kind = k;
    a.array_gen = gen;
    a.array_offset = off;
    a.status = Status::ok;
    if (act.complete && gen == act.gen) return link_.respond(m, std::move(a));  // late duplicate
    std::uint32_t& newest = newest_gen_[kind_slot(k)];
    if ((act.complete && gen < act.gen) || (in.gen && gen < in.gen) || gen < newest) {
        a.status = Status::stale;
        return link_.respond(m, std::move(a));
    }
    if (*m.key_len != c_.key_len()) {
        a.status = Status::bad_key;
        return link_.respond(m, std::move(a));
    }
    newest = gen;
    if (in.gen != gen) {
        in.wipe();
        in.gen = gen;
        in.size = *m.array_size;
        in.entry = c_.key_len() + limits::kSaltLen;
        in.keys = SecretBytes(std::size_t{in.size} * in.entry);
        in.have.assign(in.size, false);
    }
    if (*m.array_size != in.size) {
        a.status = Status::bad_key;
        return link_.respond(m, std::move(a));
    }
    const std::size_t n = m.array_keys.size() / in.entry;
    std::memcpy(in.keys.data() + std::size_t{off} * in.entry, m.array_keys.data(), n * in.entry);
    for (std::size_t i = off; i < off + n; ++i)
        if (!in.have[i]) {
            in.have[i] = true;
            ++in.have_count;
        }
    if (in.have_count == in.size) activate_incoming(k);
    link_.respond(m, std::move(a));
}

// Every chunk of the incoming generation is in: it replaces the active array.
void KeyArrays::activate_incoming(ArrayKind k) {
    Array& act = active(k);
    Array& in = incoming_[kind_slot(k)];
    in.complete = true;
    in.complete_at = c_.now();
    in.used.assign(in.size, false);
    in.unused = in.size;
    in.have.clear();
    act = std::move(in);
    in.wipe();
    ++c_.stats.arrays_delivered;
    P3_LOG_INFO(ARRAY_ACTIVE, "%s: %s key array generation %u active (%u keys)", c_.name(), kind_name(k), act.gen,
                act.size);
    c_.emit({.kind = Event::Kind::array_active, .array = k, .gen = act.gen, .reason = Reason::ARRAY_ACTIVE});
}

void KeyArrays::on_flush(const Message& m) {
    for (ArrayKind k : {ArrayKind::data, ArrayKind::control}) {
        if (!(*m.flush_kinds & kind_bit(k))) continue;
        const std::uint32_t gen = active(k).gen;
        if (gen || incoming_[kind_slot(k)].gen) {
            P3_LOG_NOTICE(ARRAY_FLUSHED, "%s: %s key array generation %u flushed by the primary", c_.name(),
                          kind_name(k), gen);
            c_.emit({.kind = Event::Kind::array_flushed, .array = k, .gen = gen, .reason = Reason::ARRAY_FLUSHED});
        }
        active(k).wipe();
        incoming_[kind_slot(k)].wipe();
    }
    Message a;
    a.type = MsgType::array_flush_ack;
    a.flush_kinds = *m.flush_kinds;
    link_.respond(m, std::move(a));
}

std::optional<KeyMaterial> KeyArrays::resolve_key(ArrayKind kind, const KeyRef& ref, Status& st) {
    if (st != Status::ok) return std::nullopt;
    if (!ref.material.empty()) {
        if (ref.material.size() != c_.key_len() + limits::kSaltLen) {
            st = Status::bad_key;
            return std::nullopt;
        }
        return KeyMaterial::from_wire(ref.material.span());
    }
    const Array& a = active(kind);
    if (!ref.index || !a.complete || a.gen != ref.index->gen || ref.index->index >= a.size) {
        st = Status::unknown_array;
        return std::nullopt;
    }
    if (a.used[ref.index->index]) {
        st = Status::index_reused;
        return std::nullopt;
    }
    if (a.entry != c_.key_len() + limits::kSaltLen) {
        st = Status::bad_key;
        return std::nullopt;
    }
    return KeyMaterial::from_wire(a.keys.span().subspan(ref.index->index * a.entry, a.entry));
}

void KeyArrays::spend(ArrayKind kind, std::uint32_t index) {
    Array& a = active(kind);
    a.used[index] = true;
    --a.unused;
    ++c_.stats.indices_used;
    c_.emit({.kind = Event::Kind::array_index_used, .array = kind, .gen = a.gen, .index = index});
}

}  // namespace p3::channel
