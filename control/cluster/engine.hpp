// The replication engine (docs/cluster.md §Membership and replication): membership from the
// group's view and the members' HELLOs, state to joiners, roles; every message sealed
// (message.hpp). It sits on an abstract Transport so tests run several engines on an
// in-memory loopback; p3d and tests/cluster/cpg_probe use corosync CPG (cpg_transport.hpp).
//
// The transport calls, on the owner's thread: joined(self) once it is in the group (the
// engine sends HELLO); view(joined, left) on each membership change (HELLO, so a newcomer
// learns who is there; a member whose transport id left is gone); deliver(origin,
// bytes) for each message of the group in agreed order, its own included (ignored); lost()
// when the transport itself is gone (every other member is then out of view).
//
// A member that is not primary sends STATE_REQUEST when it first hears a primary's HELLO: a
// joiner, a member back after a leave or a lost corosync, or one that was there before the
// primary, is brought up to date (asking at its own join would go unanswered when the primary
// joins later). Who answers a STATE_REQUEST: the primary with every record it holds, and any member with the
// records it published itself (load balancing: each member holds its own control sessions).
// A record replaces the stored one of the same remote unless its epoch is older.
//
// Refused messages (counted per Refusal, logged through write_peer): not opening under the
// cluster key, a counter not above the sender's last one (replay), a member number already
// held by another transport id, a malformed body, a new remote beyond the dataplane's session
// table (kMaxSessions: the records' memory is bounded). Lines a member can cause go through
// write_peer. A member's counter starts at its boot time
// (seconds << 20), so a member that restarts continues above its old counters.
//
// Forwarded control messages (docs/cluster.md §Forwarded control messages): a member that
// receives a control-channel packet of a session it holds only as a replica hands it to
// forward_control(), which sends CONTROL to the member that published the session's record;
// that member gives it to its sink (on_control), which feeds the session's channel. The
// channel's own replay window refuses a packet that arrives twice (directly and forwarded).
// Both ends are bounded: at most kControlPerRemote messages a second per session and
// kControlTotal in all, each way; what is over, too long, without a holder, or for a
// session the receiver does not hold is dropped, counted and logged through write_peer.
//
// Lag: each HELLO carries `applied`, the counter of the last SESSION message from the primary
// this member applied (the primary: its last one sent); a member's lag is the primary's
// applied minus its own, in the primary's messages.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <span>
#include <vector>

#include "control/cluster/message.hpp"
#include "control/cluster/replica.hpp"

namespace p3::cluster {

struct Transport {
    virtual ~Transport() = default;
    // Multicasts to the group (ordered, reliable, including the sender). false: not sent (not
    // connected, or the transport refused it).
    virtual bool send(std::span<const std::uint8_t> bytes) = 0;
};

struct EngineConfig {
    std::uint8_t member = 1;
    std::uint8_t max_members = 4;
    Role role = Role::backup;
    std::array<std::uint8_t, 32> config_digest{};
    std::uint64_t boot_id = 0;
    std::uint64_t counter_start = 0;   // 0: boot time (seconds << 20)
};

struct EngineCounters {
    std::uint64_t sent = 0, send_failed = 0, received = 0;
    std::uint64_t sessions_sent = 0, sessions_applied = 0;
    std::uint64_t acks_sent = 0, acks_received = 0;   // records applied, confirmed to their holder
    // CONTROL: sent by this member, delivered to its channel here, dropped over a rate, and
    // dropped for any other cause (too long, no holder, not held here, not in the group).
    std::uint64_t control_forwarded = 0, control_delivered = 0, control_dropped_rate = 0, control_dropped = 0;
    std::array<std::uint64_t, static_cast<std::size_t>(Refusal::count_)> refused{};
    std::uint64_t refused_total() const noexcept {
        std::uint64_t n = 0;
        for (auto v : refused) n += v;
        return n;
    }
};

class Engine {
public:
    using NowMs = std::function<std::uint64_t()>;
    Engine(const EngineConfig& cfg, const SealKey& key, Transport& t, ReplicaSink& sink, NowMs now);

    // From the transport (see above).
    void joined(std::uint64_t self_origin);
    void view(std::span<const std::uint64_t> joined, std::span<const std::uint64_t> left);
    void deliver(std::uint64_t origin, std::span<const std::uint8_t> bytes);
    void lost();

    // Local: a session's state changed (this member holds its control session).
    void publish(const SessionRecord& r);
    // A control packet of a session this member holds only as a replica, to the member that
    // published its record. false: not sent (counted, see above).
    bool forward_control(std::uint32_t remote_id, std::span<const std::uint8_t> bytes);
    static constexpr unsigned kControlPerRemote = 64;   // a second, per session (a channel sends a few)
    static constexpr unsigned kControlTotal = 2048;     // a second, all sessions
    // promote/demote: ROLE to the group, then on_role (the dataplane's role).
    void set_role(Role r);
    // The owner's periodic timer (every kHelloEvery): a HELLO, so members know who is alive.
    void tick();
    static constexpr std::uint64_t kHelloEveryMs = 1000;

    std::function<void(Role)> on_role;

    bool in_group() const noexcept { return in_group_; }
    Role role() const noexcept { return cfg_.role; }
    std::uint8_t member() const noexcept { return cfg_.member; }
    // This member first, then the others by number.
    std::vector<Member> members() const;
    // How far a member is behind the primary: messages of the primary it has not applied (0
    // when it is the primary or up to date). Not known without a primary in view; not synced
    // while the member has applied nothing of this primary's (its counter is from another
    // primary, or none: a difference of counters would mean nothing).
    struct Lag {
        bool primary_known = false;
        bool synced = false;
        std::uint64_t messages = 0;
    };
    Lag lag_of(const Member& m) const;
    static constexpr std::uint64_t kCounterSpan = 1ULL << 20;   // one boot second of counters
    const std::map<std::uint32_t, SessionRecord>& sessions() const noexcept { return sessions_; }
    // This member handed the session's control session to `to` (its record says so): control
    // packets go to `to` from now on (corosync delivers them after that record, so `to` holds
    // the session when they arrive).
    void handed_over(std::uint32_t remote_id, std::uint8_t to) {
        own_.erase(remote_id);
        holder_[remote_id] = to;
    }
    // The member that holds a session's control session (published its record); 0: none known.
    std::uint8_t holder_of(std::uint32_t remote_id) const;
    const EngineCounters& counters() const noexcept { return counters_; }

private:
    struct Peer {
        Member m;
        std::uint64_t origin = 0;
    };
    bool send_body(const Body& b);
    void send_hello();
    void on_message(std::uint64_t origin, const Header& h, Body& b);
    void answer_state_request();
    void refuse(Refusal why, std::uint64_t origin);
    void on_control(const ControlMsg& c);
    bool control_drop(std::uint32_t remote_id, bool rate, const char* why);
    // At most `max` events in one second of the engine's clock.
    struct Window {
        std::uint64_t second = ~0ULL;
        std::uint32_t n = 0;
        bool take(std::uint64_t now_ms, std::uint32_t max) noexcept {
            if (now_ms / 1000 != second) {
                second = now_ms / 1000;
                n = 0;
            }
            if (n >= max) return false;
            ++n;
            return true;
        }
    };
    void member_gone(std::uint8_t number);
    void tell_members();

    EngineConfig cfg_;
    const SealKey& key_;
    Transport& t_;
    ReplicaSink& sink_;
    NowMs now_;
    std::uint64_t counter_;
    bool in_group_ = false;
    std::uint64_t self_origin_ = 0;
    std::uint64_t applied_ = 0;                        // see Lag above
    std::map<std::uint8_t, Peer> peers_;               // other members in view, by number
    std::map<std::uint64_t, std::uint8_t> origins_;    // transport id -> member number
    std::array<std::uint64_t, kMaxMembers + 1> last_counter_{};   // replay floor per member
    std::map<std::uint32_t, SessionRecord> sessions_;  // by remote id
    std::map<std::uint32_t, bool> own_;                // remote ids this member published
    std::map<std::uint32_t, std::uint8_t> holder_;     // remote id -> member that published it
    // CONTROL rates, per remote (only remotes with a stored record: bounded like sessions_).
    std::map<std::uint32_t, Window> ctl_out_, ctl_in_;
    Window ctl_out_all_, ctl_in_all_;
    EngineCounters counters_;
};

}  // namespace p3::cluster
