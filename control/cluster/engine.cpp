// The replication engine (see engine.hpp).
#include "control/cluster/engine.hpp"

#include <ctime>

#include "common/dp_sizes.hpp"
#include "common/log.hpp"

namespace p3::cluster {

namespace {

const char* refusal_name(Refusal r) {
    switch (r) {
    case Refusal::short_message: return "too short";
    case Refusal::too_long: return "too long";
    case Refusal::version: return "unknown version";
    case Refusal::type: return "unknown type";
    case Refusal::sender: return "bad sender number";
    case Refusal::auth: return "does not open under the cluster key";
    case Refusal::body: return "malformed body";
    case Refusal::replay: return "replayed counter";
    case Refusal::member_clash: return "member number held by another member";
    case Refusal::full: return "a new session beyond the most a dataplane holds";
    case Refusal::count_: break;
    }
    return "?";
}

std::uint64_t boot_counter() {
    return static_cast<std::uint64_t>(std::time(nullptr)) << 20;
}

}  // namespace

Engine::Engine(const EngineConfig& cfg, const SealKey& key, Transport& t, ReplicaSink& sink, NowMs now)
    : cfg_(cfg), key_(key), t_(t), sink_(sink), now_(std::move(now)),
      counter_(cfg.counter_start ? cfg.counter_start : boot_counter()) {}

bool Engine::send_body(const Body& b) {
    Header h;
    h.type = type_of(b);
    h.sender = cfg_.member;
    h.counter = ++counter_;
    const SecretBytes body = encode(b);
    const auto msg = seal(key_, h, body.span());
    if (msg.empty() || !t_.send(msg)) {
        ++counters_.send_failed;
        return false;
    }
    ++counters_.sent;
    if (h.type == MsgType::session) {
        ++counters_.sessions_sent;
        if (cfg_.role == Role::primary) applied_ = h.counter;
    }
    return true;
}

void Engine::send_hello() {
    Hello h;
    h.role = cfg_.role;
    h.config_digest = cfg_.config_digest;
    h.boot_id = cfg_.boot_id;
    h.applied = applied_;
    send_body(h);
}

void Engine::joined(std::uint64_t self_origin) {
    in_group_ = true;
    self_origin_ = self_origin;
    P3_LOG_INFO(CLUSTER_JOINED, "cluster: member %u joined the group as %s", cfg_.member,
                role_name(cfg_.role).data());
    send_hello();
}

void Engine::lost() {
    in_group_ = false;
    while (!peers_.empty()) member_gone(peers_.begin()->first);
    origins_.clear();
}

void Engine::view(std::span<const std::uint64_t> joined, std::span<const std::uint64_t> left) {
    for (std::uint64_t o : left) {
        auto it = origins_.find(o);
        if (it == origins_.end()) continue;
        const std::uint8_t n = it->second;
        origins_.erase(it);
        member_gone(n);
    }
    if (!joined.empty() && in_group_) send_hello();   // the newcomer learns who is here
}

void Engine::member_gone(std::uint8_t number) {
    auto it = peers_.find(number);
    if (it == peers_.end()) return;
    P3_LOG_WARN(CLUSTER_MEMBER_LEFT, "cluster: member %u (%s) left", number, role_name(it->second.m.role).data());
    origins_.erase(it->second.origin);
    peers_.erase(it);
    tell_members();
}

void Engine::refuse(Refusal why, std::uint64_t origin) {
    ++counters_.refused[static_cast<std::size_t>(why)];
    P3_PEER_LOG(warning, Reason::CLUSTER_MSG_DROPPED, "cluster: message from group member %llx dropped: %s",
                static_cast<unsigned long long>(origin), refusal_name(why));
}

void Engine::deliver(std::uint64_t origin, std::span<const std::uint8_t> bytes) {
    if (in_group_ && origin == self_origin_) return;   // our own, in agreed order
    ++counters_.received;
    Refusal why{};
    auto opened = open(key_, bytes, why);
    if (!opened) return refuse(why, origin);
    const Header& h = opened->header;
    if (h.sender == cfg_.member) return refuse(Refusal::member_clash, origin);
    // One transport id per member number: a second one claiming it is refused.
    if (auto o = origins_.find(origin); o != origins_.end() && o->second != h.sender)
        return refuse(Refusal::member_clash, origin);
    if (auto p = peers_.find(h.sender); p != peers_.end() && p->second.origin != origin)
        return refuse(Refusal::member_clash, origin);
    if (h.counter <= last_counter_[h.sender]) return refuse(Refusal::replay, origin);
    auto body = decode(h.type, opened->body.span());
    if (!body) return refuse(Refusal::body, origin);
    last_counter_[h.sender] = h.counter;
    on_message(origin, h, *body);
}

void Engine::on_message(std::uint64_t origin, const Header& h, Body& b) {
    auto [it, fresh] = peers_.try_emplace(h.sender);
    Peer& p = it->second;
    if (fresh) {
        p.origin = origin;
        p.m.number = h.sender;
        origins_[origin] = h.sender;
    }
    p.m.last_heard_ms = now_();
    if (auto* hello = std::get_if<Hello>(&b)) {
        const bool role_changed = !fresh && p.m.role != hello->role;
        p.m.role = hello->role;
        p.m.boot_id = hello->boot_id;
        p.m.applied = hello->applied;
        // Members must share the remotes, lanes and addresses (settings.hpp): said once per
        // change, the member's status shows it meanwhile. All zeros: not known (a probe).
        static constexpr std::array<std::uint8_t, 32> kNone{};
        const bool differs = hello->config_digest != cfg_.config_digest && hello->config_digest != kNone &&
                             cfg_.config_digest != kNone;
        if (differs && !p.m.config_differs)
            P3_PEER_LOG(warning, Reason::CLUSTER_CONFIG_DIFFERS,
                        "cluster: member %u's configuration differs from this member's (VIP, ports, max_members, "
                        "director, load_balance or remotes): it cannot carry this member's sessions", h.sender);
        p.m.config_differs = differs;
        if (fresh)
            P3_PEER_LOG(info, Reason::CLUSTER_MEMBER_JOINED, "cluster: member %u (%s) joined", h.sender,
                        role_name(p.m.role).data());
        if (fresh || role_changed) tell_members();
        // A primary seen for the first time (we joined, it joined, or our corosync came back):
        // ask it for the state. Asking at our own join would be lost when no primary is there yet.
        if (fresh && hello->role == Role::primary && cfg_.role != Role::primary) send_body(StateRequest{});
    } else if (std::get_if<StateRequest>(&b)) {
        answer_state_request();
    } else if (auto* r = std::get_if<RoleMsg>(&b)) {
        if (r->member == h.sender) {   // a member speaks for itself only
            p.m.role = r->role;
            P3_PEER_LOG(info, Reason::CLUSTER_MEMBER_ROLE, "cluster: member %u is now %s", r->member, role_name(r->role).data());
            sink_.on_role(r->member, r->role);
            tell_members();
        } else {
            refuse(Refusal::body, origin);
        }
    } else if (auto* s = std::get_if<SessionRecord>(&b)) {
        // The holder is the member the record names (a primary answering a STATE_REQUEST
        // sends records other members published), or its sender.
        if (s->holder == 0) s->holder = h.sender;
        auto cur = sessions_.find(s->remote_id);
        // Older than ours, or two members published the same epoch at once (both took the
        // session over): the lower member number wins, on every member alike (agreed order).
        if (cur != sessions_.end() &&
            (cur->second.epoch > s->epoch || (cur->second.epoch == s->epoch && cur->second.holder < s->holder)))
            return;
        if (cur == sessions_.end() && sessions_.size() >= dp::kMaxSessions - 1) return refuse(Refusal::full, origin);
        if (p.m.role == Role::primary) applied_ = h.counter;
        ++counters_.sessions_applied;
        if (s->holder != cfg_.member) own_.erase(s->remote_id);   // another member publishes it now
        holder_[s->remote_id] = s->holder;
        SessionRecord& stored = sessions_[s->remote_id];
        stored = std::move(*s);
        sink_.on_session(stored);
        // The holder waits for these before a rekey switches (not for a primary's copies).
        if (stored.holder == h.sender) {
            ++counters_.acks_sent;
            send_body(AckMsg{stored.remote_id, stored.epoch, stored.holder});
        }
    } else if (auto* c = std::get_if<ControlMsg>(&b)) {
        if (c->holder == cfg_.member) on_control(*c);   // CPG carries it to every member
    } else if (auto* a = std::get_if<AckMsg>(&b)) {
        if (a->holder == cfg_.member) {
            ++counters_.acks_received;
            sink_.on_ack(h.sender, a->remote_id, a->epoch);
        }
    }
}

bool Engine::control_drop(std::uint32_t remote_id, bool rate, const char* why) {
    ++(rate ? counters_.control_dropped_rate : counters_.control_dropped);
    P3_PEER_LOG(warning, Reason::CLUSTER_CONTROL_DROPPED, "cluster: remote %u: control message dropped: %s", remote_id,
                why);
    return false;
}

bool Engine::forward_control(std::uint32_t remote_id, std::span<const std::uint8_t> bytes) {
    const auto s = sessions_.find(remote_id);
    const auto hd = holder_.find(remote_id);
    if (s == sessions_.end() || hd == holder_.end() || own_.count(remote_id))
        return control_drop(remote_id, false, "no other member holds its control session");
    if (bytes.empty() || bytes.size() > kMaxControlBytes)
        return control_drop(remote_id, false, "empty, or over 2048 bytes");
    if (!in_group_) return control_drop(remote_id, false, "not in the cluster's group");
    const std::uint64_t now = now_();
    if (!ctl_out_[remote_id].take(now, kControlPerRemote) || !ctl_out_all_.take(now, kControlTotal))
        return control_drop(remote_id, true, "over the rate of forwarded control messages");
    ControlMsg c{remote_id, s->second.epoch, hd->second, {bytes.begin(), bytes.end()}};
    if (!send_body(c)) return control_drop(remote_id, false, "the group refused it");
    ++counters_.control_forwarded;
    return true;
}

void Engine::on_control(const ControlMsg& c) {
    if (!own_.count(c.remote_id)) {
        control_drop(c.remote_id, false, "forwarded, but this member does not hold its control session");
        return;
    }
    const std::uint64_t now = now_();
    if (!ctl_in_[c.remote_id].take(now, kControlPerRemote) || !ctl_in_all_.take(now, kControlTotal)) {
        control_drop(c.remote_id, true, "over the rate of forwarded control messages");
        return;
    }
    if (!sink_.on_control(c.remote_id, c.bytes)) {
        control_drop(c.remote_id, false, "forwarded, but its control session is not up here");
        return;
    }
    ++counters_.control_delivered;
}

void Engine::answer_state_request() {
    for (const auto& [id, rec] : sessions_)
        if (cfg_.role == Role::primary || own_.count(id)) send_body(rec.clone());
}

void Engine::publish(const SessionRecord& r) {
    SessionRecord& stored = sessions_[r.remote_id];
    stored = r.clone();
    stored.holder = cfg_.member;
    own_[r.remote_id] = true;
    holder_[r.remote_id] = cfg_.member;
    if (in_group_) send_body(stored.clone());
}

std::uint8_t Engine::holder_of(std::uint32_t remote_id) const {
    const auto it = holder_.find(remote_id);
    return it == holder_.end() ? 0 : it->second;
}

void Engine::set_role(Role r) {
    const bool was_primary = cfg_.role == Role::primary;
    cfg_.role = r;
    P3_LOG_NOTICE(CLUSTER_MEMBER_ROLE, "cluster: this member (%u) is now %s", cfg_.member, role_name(r).data());
    if (in_group_) {
        send_body(RoleMsg{cfg_.member, r});
        // A new primary answers for every session from now on: the members get its state now,
        // so their `applied` follows its counter.
        if (r == Role::primary && !was_primary) answer_state_request();
    }
    if (on_role) on_role(r);
}

void Engine::tick() {
    if (in_group_) send_hello();
}

void Engine::tell_members() {
    const auto list = members();
    sink_.on_members(list);
}

std::vector<Member> Engine::members() const {
    std::vector<Member> out;
    Member self;
    self.number = cfg_.member;
    self.role = cfg_.role;
    self.self = true;
    self.boot_id = cfg_.boot_id;
    self.applied = applied_;
    self.last_heard_ms = now_();
    out.push_back(self);
    for (const auto& [n, p] : peers_) out.push_back(p.m);
    return out;
}

Engine::Lag Engine::lag_of(const Member& m) const {
    Lag lag;
    std::optional<std::uint64_t> primary_applied;
    if (cfg_.role == Role::primary) primary_applied = applied_;
    for (const auto& [n, p] : peers_)
        if (p.m.role == Role::primary) primary_applied = p.m.applied;
    if (!primary_applied) return lag;
    lag.primary_known = true;
    if (m.role == Role::primary || m.applied >= *primary_applied || *primary_applied == 0) {
        lag.synced = true;
        return lag;
    }
    lag.messages = *primary_applied - m.applied;
    lag.synced = m.applied != 0 && lag.messages < kCounterSpan;
    if (!lag.synced) lag.messages = 0;
    return lag;
}

}  // namespace p3::cluster
