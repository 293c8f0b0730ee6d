// The primary's side of a rekey (rekey_initiator.hpp).
#include "control/channel/rekey_initiator.hpp"

#include "control/channel/timers.hpp"

namespace p3::channel {

using namespace detail;

void RekeyInitiator::arm_due() { c_.timers.rekey_due(std::chrono::seconds(c_.cfg.params.rekey_wait)); }

void RekeyInitiator::start(RekeyTrigger t, unsigned attempt) {
    Attempt r;
    r.epoch = next_epoch_++;
    r.attempt = attempt;
    r.trigger = t;
    Message m;
    m.type = MsgType::rekey_request;
    m.epoch = r.epoch;
    m.lanes = c_.local_lanes;
    if (!arrays_.choose_key(ArrayKind::data, m.data_p2s, r.data_p2s) ||
        !arrays_.choose_key(ArrayKind::data, m.data_s2p, r.data_s2p) ||
        !arrays_.choose_key(ArrayKind::control, m.ctl_p2s, r.ctl_p2s) ||
        !arrays_.choose_key(ArrayKind::control, m.ctl_s2p, r.ctl_s2p)) {
        rekey_ = std::move(r);
        return attempt_failed(Reason::KEY_SOURCE_FAILED, "no keys");
    }
    // Our inbound keys first: the secondary may switch as soon as it hears our P3 ID.
    auto id = c_.installer.install_rx(r.data_s2p, c_.peer_lanes);
    if (!id) {
        P3_LOG_ERROR(KEY_INSTALL_FAILED, "%s: rekey epoch %u: dataplane refused the inbound keys", c_.name(), r.epoch);
        rekey_ = std::move(r);
        return attempt_failed(Reason::KEY_INSTALL_FAILED, "install refused");
    }
    r.my_rx_id = *id;
    m.p3_id = *id;
    epochs_.add_rx(r.epoch, *id, r.ctl_s2p.clone());
    epochs_.enforce_cap();
    P3_LOG_INFO(REKEY_START, "%s: rekey epoch %u started (%s, attempt %u, keys %s)", c_.name(), r.epoch,
                trigger_name(t), attempt, m.data_p2s.index ? "by array index" : "explicit");
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
    rekey_.reset();
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

void RekeyInitiator::on_status(const Message& req, const Message& m) {
    if (!rekey_ || rekey_->switching || req.epoch != rekey_->epoch || m.epoch != rekey_->epoch) {
        ++c_.stats.unexpected;
        return;
    }
    if (*m.status != Status::ok) {
        P3_LOG_WARN(REKEY_REJECTED, "%s: rekey epoch %u refused by the secondary: %s", c_.name(), rekey_->epoch,
                    status_name(*m.status).data());
        return attempt_failed(Reason::REKEY_REJECTED, "refused");
    }
    // The secondary receives under the new keys: switch our sending side, then say so.
    if (!c_.installer.switch_tx(*m.p3_id, rekey_->data_p2s, c_.local_lanes)) {
        P3_LOG_ERROR(KEY_INSTALL_FAILED, "%s: rekey epoch %u: dataplane refused the outbound keys", c_.name(),
                     rekey_->epoch);
        return attempt_failed(Reason::KEY_INSTALL_FAILED, "switch refused");
    }
    epochs_.switch_tx(rekey_->epoch, rekey_->ctl_p2s.clone());
    rekey_->switching = true;
    c_.emit({.kind = Event::Kind::tx_switched, .epoch = rekey_->epoch, .p3_id = *m.p3_id});
    Message s;
    s.type = MsgType::rekey_switch;
    s.epoch = rekey_->epoch;
    s.first_seq = 1;
    link_.request(std::move(s));
}

void RekeyInitiator::on_switch_ack(const Message& m) {
    if (!rekey_ || !rekey_->switching || m.epoch != rekey_->epoch) {
        ++c_.stats.unexpected;
        return;
    }
    const std::uint32_t e = rekey_->epoch;
    epochs_.peer_switched(e, limits::kRetireTimeout);
    ++c_.stats.rekeys_done;
    P3_LOG_INFO(REKEY_DONE, "%s: rekey epoch %u complete (attempt %u)", c_.name(), e, rekey_->attempt);
    c_.emit({.kind = Event::Kind::rekey_done, .epoch = e, .reason = Reason::REKEY_DONE});
    rekey_.reset();
    arm_due();
    c_.ops.finish_work();
}

void RekeyInitiator::on_request_failed(const Message& req) {
    if (!rekey_ || req.epoch != rekey_->epoch) return;
    if (req.type == MsgType::rekey_request && !rekey_->switching)
        attempt_failed(Reason::REKEY_ATTEMPT_FAILED, "request unanswered");
    else if (req.type == MsgType::rekey_switch && rekey_->switching)
        attempt_failed(Reason::REKEY_ATTEMPT_FAILED, "switch unanswered");
}

}  // namespace p3::channel
