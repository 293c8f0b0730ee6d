// One member of the cluster inside a process (see node.hpp).
#include "control/cluster/node.hpp"

#include <unistd.h>

#include <chrono>

#include "control/clock.hpp"

namespace p3::cluster {

std::unique_ptr<Node> Node::create(const ClusterSettings& s, control::EventLoop& loop, std::string& why) {
    if (!check(s, why)) return nullptr;
    SecretBytes key;
    if (!config::read_cluster_key(s.key_file, key, why)) return nullptr;
    return std::unique_ptr<Node>(new Node(s, std::move(key), loop));
}

Node::Node(const ClusterSettings& s, SecretBytes key, control::EventLoop& loop)
    : settings_(s), loop_(loop), key_bytes_(std::move(key)), key_(key_bytes_.span()), transport_(loop, s.group) {
    key_bytes_.reset();   // only the derived message key is kept
    EngineConfig c;
    c.member = s.member;
    c.max_members = s.max_members;
    c.role = s.role;
    c.config_digest = s.config_digest;
    c.boot_id = static_cast<std::uint64_t>(::getpid()) << 32 ^ static_cast<std::uint64_t>(std::time(nullptr));
    engine_ = std::make_unique<Engine>(c, key_, transport_, *this, [this] { return now_ms(); });
    transport_.attach(*engine_);
}

Node::~Node() { stop(); }

std::uint64_t Node::now_ms() const {
    return static_cast<std::uint64_t>(
        std::chrono::duration_cast<std::chrono::milliseconds>(loop_.clock().now().time_since_epoch()).count());
}

void Node::start() {
    transport_.start();
    tick();
}

void Node::stop() {
    if (tick_) loop_.cancel(tick_);
    tick_ = {};
    transport_.stop();
}

void Node::tick() {
    engine_->tick();
    tick_ = loop_.after(std::chrono::milliseconds(Engine::kHelloEveryMs), [this] { tick(); });
}

void Node::on_session(const SessionRecord& r) {
    if (on_session_record) on_session_record(r);
}

void Node::on_role(std::uint8_t member, Role role) {
    if (on_member_role) on_member_role(member, role);
}

}  // namespace p3::cluster
