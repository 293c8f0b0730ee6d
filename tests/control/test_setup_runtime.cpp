// The setup engine's peers and keys changed while it runs (the administrator's remote add,
// set, remove, shutdown and start): two engines in one process, stepped datagram by datagram.
// A peer added at run time sets up; a removed one cannot, and its running exchange goes with
// its reserved receive IDs; a replaced one uses its new address, subnets and key, and the old
// key no longer authenticates; a shut one is refused with AUTHENTICATION_FAILED after its
// proof, and sets up once started again; reload_psk takes a changed key file and refuses one
// holding another remote's key.
#include <catch2/catch.hpp>

#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>

#include "setup_harness.hpp"

using namespace p3;
using namespace p3::setup;
using namespace p3::setup::test;
using namespace std::chrono_literals;

namespace {

constexpr const char* kKeyA = "remote seven's first key, 16+";
constexpr const char* kKeyB = "remote seven's second key, 16+";
constexpr const char* kKeyC = "remote eight's own key, 16+ bytes";

ByteView view(const char* s) { return ByteView(reinterpret_cast<const std::uint8_t*>(s), std::strlen(s)); }
bool holds(const Credentials& c, std::uint32_t id, const char* key) {
    const SecretBytes* k = c.psk_for(id);
    return k && k->equals(view(key));
}

// The primary's remote 7 as primary_config() has it, with other subnets when asked.
config::Remote remote7(std::vector<Prefix> subnets = {*Prefix::parse("10.2.0.0/24")}) {
    config::Config c = primary_config(PairConfig{});
    config::Remote r = c.remotes[0].clone();
    r.subnets = std::move(subnets);
    return r;
}

config::Config without_remotes(config::Config c) {
    c.remotes.clear();
    return c;
}

// The IKE_AUTH exchange of a pair, up to (not including) the secondary's IKE_AUTH request
// reaching the primary: the secondary has reserved its receive IDs by then.
void to_auth_sent(Pair& pr) {
    REQUIRE(pr.s->connect(1));
    REQUIRE(pr.deliver_to_p());  // IKE_SA_INIT
    REQUIRE(pr.deliver_to_s());  // its response; the secondary sends IKE_AUTH
    REQUIRE(pr.to_p.q.size() == 1);
}

}  // namespace

TEST_CASE("setup at run time: an engine with no setup remote is harmless; a peer added later sets up",
          "[setup][runtime]") {
    LogCapture logs;
    Pair pr(without_remotes(primary_config(PairConfig{})), secondary_config(PairConfig{}), Credentials{},
            psk(kKeyA, {1}));
    // Before the remote exists: the primary answers IKE_SA_INIT and refuses the identity.
    REQUIRE(pr.s->connect(1));
    pr.run();
    CHECK(pr.sink_p.sessions.empty());
    CHECK(logs.count(Reason::SETUP_UNKNOWN_IDENTITY) == 1);
    pr.tick(60s);  // the failed exchanges expire
    CHECK(pr.p->exchanges() == 0);

    REQUIRE(pr.p->credentials().add_psk(7, view(kKeyA)));
    pr.p->add_peer(remote7());
    CHECK(pr.p->has_peer(7));
    REQUIRE(pr.s->connect(1));
    pr.run();
    REQUIRE(pr.up());
    CHECK(pr.sink_p.sessions[0].remote_id == 7);
    CHECK(pr.sink_s.sessions[0].config.secondary_subnets == std::vector<Prefix>{*Prefix::parse("10.2.0.0/24")});

    SECTION("a secondary without remotes connects to nothing") {
        control::SeededRandom rnd(9);
        Queue q(pr.clock);
        RecordingSink sink(0x3000);
        SetupEngine s(without_remotes(secondary_config(PairConfig{})), Credentials{}, {}, pr.clock, rnd, q, sink);
        CHECK(!s.connect(1));
        CHECK(q.q.empty());
        CHECK(s.next_deadline() == std::nullopt);
    }
}

TEST_CASE("setup at run time: a removed peer cannot set up; its running exchange goes without leaking receive IDs",
          "[setup][runtime]") {
    LogCapture logs;
    Pair pr(PairConfig{}, psk(kKeyA, {7}), psk(kKeyA, {1}));

    SECTION("the secondary removes its primary while its IKE_AUTH is out") {
        to_auth_sent(pr);
        REQUIRE(pr.sink_s.reserved.size() == 1);
        const std::uint32_t rx = *pr.sink_s.reserved.begin();
        pr.s->remove_peer(1);
        CHECK(pr.s->exchanges() == 0);
        CHECK(pr.sink_s.reserved.empty());
        CHECK(pr.sink_s.released == std::vector<std::uint32_t>{rx});
        CHECK(pr.sink_s.failures.empty());  // aborted, not failed: no back-off, no log line
        CHECK(!pr.s->connect(1));
        CHECK(!pr.s->has_peer(1));
        // The primary's answer finds nothing; no retransmission follows.
        pr.run();
        CHECK(pr.sink_s.sessions.empty());
        CHECK(pr.s->counters().dropped_no_sa == 1);
        pr.tick(10s);
        CHECK(pr.to_p.q.empty());
    }
    SECTION("the primary removes the remote between IKE_SA_INIT and IKE_AUTH") {
        to_auth_sent(pr);
        pr.p->remove_peer(7);
        pr.p->credentials().remove_psk(7);
        CHECK(pr.p->credentials().psk_for(7) == nullptr);
        pr.run();
        CHECK(pr.sink_p.sessions.empty());
        CHECK(pr.sink_p.reserved.empty());
        CHECK(pr.sink_s.sessions.empty());
        CHECK(logs.count(Reason::SETUP_UNKNOWN_IDENTITY) == 1);
        CHECK(pr.sink_s.reserved.empty());  // the secondary's failure released its own
    }
    SECTION("the primary removes a remote that is up: its finished exchange goes too") {
        REQUIRE(pr.s->connect(1));
        pr.run();
        REQUIRE(pr.up());
        REQUIRE(pr.p->exchanges() == 1);  // kept for a retransmitted IKE_AUTH
        pr.p->remove_peer(7);
        CHECK(pr.p->exchanges() == 0);
        CHECK(pr.p->half_open() == 0);
        CHECK(pr.p->half_open_sources() == 0);
    }
}

TEST_CASE("setup at run time: a replaced peer uses its new settings; the old key no longer authenticates",
          "[setup][runtime]") {
    LogCapture logs;
    Pair pr(PairConfig{}, psk(kKeyA, {7}), psk(kKeyA, {1}));
    REQUIRE(pr.s->connect(1));
    pr.run();
    REQUIRE(pr.up());

    // The primary: remote 7 now protects 10.9.0.0/24 and has key B.
    REQUIRE(pr.p->credentials().add_psk(7, view(kKeyB)));
    pr.p->add_peer(remote7({*Prefix::parse("10.9.0.0/24")}));
    CHECK(pr.p->exchanges() == 0);  // the finished exchange of the old peer is gone

    // A secondary still holding key A is refused.
    REQUIRE(pr.s->connect(1));
    pr.run();
    CHECK(pr.sink_p.sessions.size() == 1);
    CHECK(pr.sink_s.sessions.size() == 1);
    CHECK(logs.count(Reason::SETUP_AUTH_FAILED) == 1);
    REQUIRE(!pr.sink_s.failures.empty());
    CHECK(pr.sink_s.failures.back().second == Reason::SETUP_PEER_REJECTED);

    // The secondary replaced too: its primary at a new address, with key B.
    config::Config sc = secondary_config(PairConfig{});
    sc.remotes[0].address = *IpAddr::parse("192.0.2.9");
    REQUIRE(pr.s->credentials().add_psk(1, view(kKeyB)));
    pr.s->add_peer(sc.remotes[0]);
    REQUIRE(pr.s->connect(1));
    REQUIRE(pr.to_p.q.size() == 1);
    CHECK(pr.to_p.q.front().to.addr == *IpAddr::parse("192.0.2.9"));
    pr.run();
    REQUIRE(pr.sink_p.sessions.size() == 2);
    REQUIRE(pr.sink_s.sessions.size() == 2);
    CHECK(pr.sink_s.sessions[1].config.secondary_subnets == std::vector<Prefix>{*Prefix::parse("10.9.0.0/24")});
    CHECK(pr.sink_s.sessions[1].peer.addr == *IpAddr::parse("192.0.2.9"));

    SECTION("replacing a peer mid-exchange aborts the exchange and releases its receive IDs") {
        to_auth_sent(pr);
        REQUIRE(pr.sink_s.reserved.size() == 1);
        pr.s->add_peer(sc.remotes[0]);
        CHECK(pr.sink_s.reserved.empty());
        CHECK(pr.s->exchanges() == 0);
        CHECK(pr.s->connect(1));  // the replaced peer is there
    }
    SECTION("a remote now on static keys is no peer") {
        config::Remote r = remote7();
        r.static_keys = config::StaticKeys{};
        pr.p->add_peer(r);
        CHECK(!pr.p->has_peer(7));
    }
}

TEST_CASE("setup at run time: a shut remote is refused after its proof with AUTHENTICATION_FAILED; started again it sets up",
          "[setup][runtime]") {
    LogCapture logs;
    Pair pr(PairConfig{}, psk(kKeyA, {7}), psk(kKeyA, {1}));
    pr.p->set_enabled(7, false);

    REQUIRE(pr.s->connect(1));
    pr.run();
    CHECK(pr.sink_p.sessions.empty());
    CHECK(pr.sink_s.sessions.empty());
    REQUIRE(pr.sink_s.failures.size() == 1);
    CHECK(pr.sink_s.failures[0].second == Reason::SETUP_PEER_REJECTED);  // AUTHENTICATION_FAILED, like any failed proof
    CHECK(logs.has(Reason::SETUP_PEER_REJECTED, "AUTHENTICATION_FAILED"));
    CHECK(logs.count(Reason::SETUP_REMOTE_SHUT) == 1);
    CHECK(logs.has(Reason::SETUP_REMOTE_SHUT, "P3-W0427"));
    CHECK(logs.has(Reason::SETUP_REMOTE_SHUT, "remote 7"));
    CHECK(logs.count(Reason::SETUP_AUTH_FAILED) == 0);
    // Nothing of the remote changed: no reservation left, no failure reported for it.
    CHECK(pr.sink_p.reserved.empty());
    CHECK(pr.sink_p.failures.empty());

    SECTION("a wrong key is refused for that, not for the shutdown: the proof comes first") {
        control::SeededRandom rnd(11);
        Queue q(pr.clock);
        RecordingSink sink(0x3000);
        SetupEngine other(secondary_config(PairConfig{}), psk(kKeyB, {1}), {}, pr.clock, rnd, q, sink);
        REQUIRE(other.connect(1));
        for (int i = 0; i < 10 && (!q.q.empty() || !pr.to_s.q.empty()); ++i) {
            while (!q.q.empty()) {
                pr.p->on_datagram(q.q.front().from, q.q.front().to, q.q.front().data);
                q.q.pop_front();
            }
            while (!pr.to_s.q.empty()) {
                other.on_datagram(pr.to_s.q.front().from, pr.to_s.q.front().to, pr.to_s.q.front().data);
                pr.to_s.q.pop_front();
            }
        }
        REQUIRE(sink.failures.size() == 1);
        CHECK(sink.failures[0].second == Reason::SETUP_PEER_REJECTED);
        CHECK(logs.count(Reason::SETUP_AUTH_FAILED) == 1);
        CHECK(logs.count(Reason::SETUP_REMOTE_SHUT) == 1);  // still only the first attempt's
    }
    SECTION("started again, it sets up") {
        pr.p->set_enabled(7, true);
        REQUIRE(pr.s->connect(1));
        pr.run();
        CHECK(pr.up());
        CHECK(logs.count(Reason::SETUP_REMOTE_SHUT) == 1);
    }
    SECTION("a shut peer stays shut when replaced") {
        pr.p->add_peer(remote7());
        REQUIRE(pr.s->connect(1));
        pr.run();
        CHECK(pr.sink_p.sessions.empty());
        CHECK(logs.count(Reason::SETUP_REMOTE_SHUT) == 2);
    }
    SECTION("a shut secondary does not connect, and its running exchange is aborted") {
        pr.p->set_enabled(7, true);
        to_auth_sent(pr);
        REQUIRE(pr.sink_s.reserved.size() == 1);
        pr.s->set_enabled(1, false);
        CHECK(pr.sink_s.reserved.empty());
        CHECK(pr.s->exchanges() == 0);
        CHECK(!pr.s->connect(1));
        pr.s->set_enabled(1, true);
        pr.to_p.q.clear();
        pr.to_s.q.clear();
        REQUIRE(pr.s->connect(1));
        pr.run();
        CHECK(pr.up());
    }
}

namespace {

// A directory of key files, removed with what is in it.
struct KeyDir {
    std::string path;
    KeyDir() {
        char t[] = "/tmp/p3-reload-XXXXXX";
        REQUIRE(::mkdtemp(t));
        path = t;
    }
    ~KeyDir() {
        for (const char* f : {"/k7", "/k8"}) std::remove((path + f).c_str());
        ::rmdir(path.c_str());
    }
    std::string write(const char* name, const char* key, mode_t mode = 0600) const {
        const std::string f = path + "/" + name;
        std::remove(f.c_str());
        std::ofstream(f) << key;
        ::chmod(f.c_str(), mode);
        return f;
    }
};

}  // namespace

TEST_CASE("setup at run time: reload_psk takes a changed key; a key equal to another remote's is refused, the old kept",
          "[setup][runtime]") {
    LogCapture logs;
    KeyDir dir;
    config::Config cfg = primary_config(PairConfig{});
    cfg.remotes[0].psk_file = dir.write("k7", kKeyA);
    config::Remote r8 = cfg.remotes[0].clone();
    r8.id = 8;
    r8.identity = "b.test";
    r8.psk_file = dir.write("k8", kKeyC);
    cfg.remotes.push_back(std::move(r8));
    std::string err;
    Reason reason{};
    auto c = Credentials::load(cfg, err, reason);
    REQUIRE(c);
    REQUIRE(holds(*c, 7, kKeyA));
    REQUIRE(holds(*c, 8, kKeyC));

    std::string why;
    dir.write("k7", kKeyB);
    CHECK(c->reload_psk(cfg.remotes[0], why));
    CHECK(holds(*c, 7, kKeyB));
    CHECK(why.empty());

    dir.write("k7", kKeyC);  // remote 8's key
    CHECK(!c->reload_psk(cfg.remotes[0], why));
    CHECK(why.find("same key as remote 8") != std::string::npos);
    CHECK(why.find(kKeyC) == std::string::npos);  // never the key itself
    CHECK(holds(*c, 7, kKeyB));

    why.clear();
    dir.write("k7", kKeyA, 0644);  // readable by others
    CHECK(!c->reload_psk(cfg.remotes[0], why));
    CHECK(why.find("remote 7") != std::string::npos);
    CHECK(holds(*c, 7, kKeyB));

    why.clear();
    dir.write("k7", "short key");
    CHECK(!c->reload_psk(cfg.remotes[0], why));
    CHECK(holds(*c, 7, kKeyB));

    why.clear();
    std::remove(cfg.remotes[0].psk_file.c_str());  // absent: no key, logged
    CHECK(c->reload_psk(cfg.remotes[0], why));
    CHECK(c->psk_for(7) == nullptr);
    CHECK(logs.has(Reason::CFG_KEY_FILE_ABSENT, "remote 7"));
    // And the engine then authenticates remote 7 by nothing (not by a certificate either).
    std::uint8_t octets[4] = {1, 2, 3, 4};
    CHECK(!make_auth(*c, 7, prf_hmac_sha2_256, octets));

    dir.write("k7", kKeyA);
    CHECK(c->reload_psk(cfg.remotes[0], why));
    CHECK(holds(*c, 7, kKeyA));

    c->remove_psk(8);
    CHECK(c->psk_for(8) == nullptr);
    dir.write("k7", kKeyC);  // 8's old key is nobody's now
    CHECK(c->reload_psk(cfg.remotes[0], why));
    CHECK(holds(*c, 7, kKeyC));

    SECTION("credentials load with no setup remote at all") {
        config::Config none = without_remotes(primary_config(PairConfig{}));
        auto n = Credentials::load(none, err, reason);
        REQUIRE(n);
        CHECK(n->psks.empty());
    }
}
