// The primary's side of a rekey (rekey_initiator.hpp).
#include "control/channel/rekey_initiator.hpp"

#include "control/channel/timers.hpp"

namespace p3::channel {

using namespace detail;

void RekeyInitiator::arm_due() {
    // Jittered so that rekey instants have no period an observer could lock onto.
    const double f = c_.uniform(1.0 - limits::kRekeyJitter, 1.0 + limits::kRekeyJitter);
    c_.timers.rekey_due(SessionCore::scaled(std::chrono::seconds(c_.cfg.params.rekey_wait), f));
}

void RekeyInitiator::start(RekeyTrigger t, unsigned attempt) {
    Attempt r;
    r.epoch = next_epoch_++;
    r.attempt = attempt;
    r.trigger = t;
    Message m;
    m.type = MsgType::rekey_request;
    m.epoch = r.epoch;
    m.lanes = c_.local_lanes;
    if (!arrays_.choose_key(ArrayKind::data, m.data_p2s, r.keys.data_p2s) ||
        !arrays_.choose_key(ArrayKind::data, m.data_s2p, r.keys.data_s2p) ||
        !arrays_.choose_key(ArrayKind::control, m.ctl_p2s, r.keys.ctl_p2s) ||
        !arrays_.choose_key(ArrayKind::control, m.ctl_s2p, r.keys.ctl_s2p)) {
        rekey_ = std::move(r);
        return attempt_failed(Reason::KEY_SOURCE_FAILED, "no keys");
    }
    if (c_.cfg.params.rekey_dh) {
        r.eph = dh::Ephemeral::generate();  // fresh for every attempt
        if (!r.eph) {
            P3_LOG_ERROR(KEY_SOURCE_FAILED, "%s: rekey epoch %u: no X25519 key pair", c_.name(), r.epoch);
            rekey_ = std::move(r);
            return attempt_failed(Reason::KEY_SOURCE_FAILED, "no X25519 key pair");
        }
        m.dh_share = r.eph->share();
    }
    P3_LOG_INFO(REKEY_START, "%s: rekey epoch %u started (%s, attempt %u, keys %s%s)", c_.name(), r.epoch,
                trigger_name(t), attempt, m.data_p2s.index ? "by array index" : "explicit",
                r.eph ? ", X25519" : "");
    c_.emit({.kind = Event::Kind::rekey_started, .epoch = r.epoch, .reason = Reason::REKEY_START});
    rekey_ = std::move(r);
    link_.request(std::move(m));
}

void RekeyInitiator::attempt_failed(Reason why, const char* what) {
    if (!rekey_) return;
    ++c_.stats.rekey_attempts_failed;
    const unsigned attempt = rekey_->attempt;
    const RekeyTrigger t = rekey_->trigger;
    const std::uint32_t epoch = rekey_->epoch;
    // Any request of this attempt still in flight is abandoned.
    link_.abandon_epoch(epoch);
    rekey_.reset();  // its keys and our X25519 half are wiped with it
    c_.emit({.kind = Event::Kind::rekey_attempt_failed, .epoch = epoch, .reason = why});
    if (attempt >= limits::kRekeyAttempts) {
        P3_LOG_ERROR(REKEY_FAILED, "%s: rekey epoch %u: attempt %u of %u failed (%s)", c_.name(), epoch, attempt,
                     limits::kRekeyAttempts, what);
        return c_.ops.lose(Reason::SESSION_LOST_REKEY);
    }
    P3_LOG_WARN(REKEY_ATTEMPT_FAILED, "%s: rekey epoch %u: attempt %u of %u failed (%s); retrying", c_.name(), epoch,
                attempt, limits::kRekeyAttempts, what);
    c_.timers.rekey_retry(limits::kRekeyRetryDelay, t, attempt);
}

void RekeyInitiator::on_retry_due(RekeyTrigger t, unsigned attempt) {
    if (c_.up()) start(t, attempt + 1);
}

bool RekeyInitiator::agree(const Message& m) {
    const bool dh_on = c_.cfg.params.rekey_dh;
    const char* what = nullptr;
    if (dh_on && !m.dh_share) what = "the status carries no X25519 share";
    else if (!dh_on && m.dh_share) what = "the status carries an X25519 share, rekey_dh is off";
    else if (dh_on) {
        auto secret = rekey_->eph->agree(*m.dh_share);
        rekey_->eph.reset();  // used once
        if (!secret) what = "the secondary's X25519 share is bad";
        else if (!dh::mix_all(rekey_->keys, secret->span(), rekey_->epoch)) what = "key mixing failed";
    }
    if (!what) return true;
    ++c_.stats.dh_failures;
    P3_LOG_WARN(REKEY_DH_FAILED, "%s: rekey epoch %u: %s", c_.name(), rekey_->epoch, what);
    attempt_failed(Reason::REKEY_DH_FAILED, "X25519 failed");
    return false;
}

void RekeyInitiator::on_status(const Message& req, const Message& m) {
    if (!rekey_ || rekey_->switching || req.epoch != rekey_->epoch || m.epoch != rekey_->epoch) {
        ++c_.stats.unexpected;
        return;
    }
    const std::uint32_t e = rekey_->epoch;
    if (*m.status != Status::ok) {
        if (*m.status == Status::dh_failed) ++c_.stats.dh_failures;
        P3_LOG_WARN(REKEY_REJECTED, "%s: rekey epoch %u refused by the secondary: %s", c_.name(), e,
                    status_name(*m.status).data());
        return attempt_failed(*m.status == Status::dh_failed ? Reason::REKEY_DH_FAILED : Reason::REKEY_REJECTED,
                              "refused");
    }
    if (*m.lanes != c_.peer_lanes) {
        P3_LOG_WARN(REKEY_REJECTED, "%s: rekey epoch %u: the secondary sends on %u lanes, set up with %u", c_.name(),
                    e, *m.lanes, c_.peer_lanes);
        return attempt_failed(Reason::REKEY_REJECTED, "lanes differ");
    }
    if (!agree(m)) return;
    // The secondary holds its next inbound keys. Ours first (the secondary switches as soon as
    // it hears of our switch), then our sending side, then say so.
    if (!next_.install(rekey_->keys.data_s2p, e)) {
        P3_LOG_ERROR(KEY_INSTALL_FAILED, "%s: rekey epoch %u: dataplane refused the inbound keys", c_.name(), e);
        return attempt_failed(Reason::KEY_INSTALL_FAILED, "install refused");
    }
    epochs_.add_rx(e, rekey_->keys.ctl_s2p.clone());
    epochs_.enforce_cap();
    // In a cluster the other members install the same next inbound keys from our record: the
    // peer hears of our switch (and switches its own sending) once they hold them.
    if (c_.installer.hold_switch([this, e] {
            if (rekey_ && rekey_->epoch == e && !rekey_->switching) switch_out();
        }))
        return;
    switch_out();
}

void RekeyInitiator::switch_out() {
    const std::uint32_t e = rekey_->epoch;
    std::vector<std::uint64_t> first;
    if (!c_.installer.switch_tx(rekey_->keys.data_p2s, first) || first.size() != c_.local_lanes) {
        P3_LOG_ERROR(KEY_INSTALL_FAILED, "%s: rekey epoch %u: dataplane refused the outbound keys", c_.name(), e);
        return attempt_failed(Reason::KEY_INSTALL_FAILED, "switch refused");
    }
    epochs_.switch_tx(e, rekey_->keys.ctl_p2s.clone());
    rekey_->switching = true;
    c_.emit({.kind = Event::Kind::tx_switched, .epoch = e});
    Message s;
    s.type = MsgType::rekey_switch;
    s.epoch = e;
    s.first_seq = std::move(first);
    link_.request(std::move(s));
}

void RekeyInitiator::on_switch_ack(const Message& m) {
    if (!rekey_ || !rekey_->switching || m.epoch != rekey_->epoch) {
        ++c_.stats.unexpected;
        return;
    }
    const std::uint32_t e = rekey_->epoch;
    if (m.first_seq.size() == c_.peer_lanes) {
        next_.switch_at(m.first_seq);
    } else {
        // The dataplane still learns the point from the first packet under the new keys.
        ++c_.stats.unexpected;
        P3_PEER_LOG(warning, Reason::CH_UNEXPECTED, "%s: rekey epoch %u: switch ack names %zu lanes, not %u",
                    c_.name(), e, m.first_seq.size(), c_.peer_lanes);
    }
    epochs_.peer_switched(e, limits::kRetireTimeout);
    ++c_.stats.rekeys_done;
    P3_LOG_INFO(REKEY_DONE, "%s: rekey epoch %u complete (attempt %u)", c_.name(), e, rekey_->attempt);
    c_.emit({.kind = Event::Kind::rekey_done, .epoch = e, .reason = Reason::REKEY_DONE});
    rekey_.reset();
    arm_due();
    c_.ops.finish_work(Work::Kind::rekey);
}

void RekeyInitiator::on_request_failed(const Message& req) {
    if (!rekey_ || req.epoch != rekey_->epoch) return;
    if (req.type == MsgType::rekey_request && !rekey_->switching)
        attempt_failed(Reason::REKEY_ATTEMPT_FAILED, "request unanswered");
    else if (req.type == MsgType::rekey_switch && rekey_->switching)
        attempt_failed(Reason::REKEY_ATTEMPT_FAILED, "switch unanswered");
}

}  // namespace p3::channel
