// The secondary's side of a rekey (rekey_responder.hpp).
#include "control/channel/rekey_responder.hpp"

#include <utility>

namespace p3::channel {

namespace {

// The answers this side gives: a status for a request's epoch, or an error.
Message status_for(std::uint32_t epoch) {
    Message st;
    st.type = MsgType::rekey_status;
    st.epoch = epoch;
    return st;
}

Message error_of(Status why) {
    Message err;
    err.type = MsgType::error;
    err.error_code = why;
    return err;
}

}  // namespace

void RekeyResponder::start_session() {
    newest_req_epoch_ = 0;
    last_req_status_.reset();
    rekey_in_.reset();
    switched_.reset();
}

void RekeyResponder::reply_again(const Message& m) {
    Message st = status_for(*m.epoch);
    if (rekey_in_ && rekey_in_->epoch == *m.epoch) {
        st.status = Status::ok;
        st.lanes = c_.local_lanes;
        st.dh_share = rekey_in_->share;
    } else {
        st.status = last_req_status_.value_or(Status::stale);
    }
    link_.respond(m, std::move(st));
}

Status RekeyResponder::resolve(const Message& m, dh::RekeyKeys& keys) {
    Status s = Status::ok;
    auto data_p2s = arrays_.resolve_key(ArrayKind::data, m.data_p2s, s);
    auto data_s2p = arrays_.resolve_key(ArrayKind::data, m.data_s2p, s);
    auto ctl_p2s = arrays_.resolve_key(ArrayKind::control, m.ctl_p2s, s);
    auto ctl_s2p = arrays_.resolve_key(ArrayKind::control, m.ctl_s2p, s);
    if (s == Status::ok && ((m.data_p2s.index && m.data_p2s.index == m.data_s2p.index) ||
                            (m.ctl_p2s.index && m.ctl_p2s.index == m.ctl_s2p.index)))
        s = Status::index_reused;  // one index for both directions: that would be a reuse
    if (s == Status::index_reused || s == Status::unknown_array) {
        P3_LOG_ERROR(ARRAY_INDEX_REFUSED, "%s: rekey epoch %u names an array index that is %s", c_.name(), *m.epoch,
                     s == Status::index_reused ? "already used" : "unknown");
        return s;
    }
    if (s == Status::ok && *m.lanes != c_.peer_lanes) s = Status::not_allowed;  // lanes are fixed at setup
    if (s != Status::ok) {
        P3_LOG_WARN(REKEY_REJECTED, "%s: rekey epoch %u refused: %s", c_.name(), *m.epoch, status_name(s).data());
        return s;
    }
    // Mark every index used before anything else can fail: an index named once is spent.
    for (auto [kind, ref] : {std::pair{ArrayKind::data, &m.data_p2s}, std::pair{ArrayKind::data, &m.data_s2p},
                             std::pair{ArrayKind::control, &m.ctl_p2s}, std::pair{ArrayKind::control, &m.ctl_s2p}})
        if (ref->index) arrays_.spend(kind, ref->index->index);
    keys = dh::RekeyKeys{std::move(*data_p2s), std::move(*data_s2p), std::move(*ctl_p2s), std::move(*ctl_s2p)};
    return Status::ok;
}

Status RekeyResponder::agree(const Message& m, dh::RekeyKeys& keys, std::optional<dh::Share>& share) {
    const bool dh_on = c_.cfg.params.rekey_dh;
    const char* what = nullptr;
    if (dh_on && !m.dh_share) what = "the request carries no X25519 share (rekey_dh differs?)";
    else if (!dh_on && m.dh_share) what = "the request carries an X25519 share, rekey_dh is off";
    else if (dh_on) {
        auto eph = dh::Ephemeral::generate();  // fresh for every request; gone when we return
        auto secret = eph ? eph->agree(*m.dh_share) : std::nullopt;
        if (!secret) what = eph ? "the primary's X25519 share is bad" : "no X25519 key pair";
        else if (!dh::mix_all(keys, secret->span(), *m.epoch)) what = "key mixing failed";
        else share = eph->share();
    }
    if (!what) return Status::ok;
    ++c_.stats.dh_failures;
    P3_LOG_WARN(REKEY_DH_FAILED, "%s: rekey epoch %u refused: %s", c_.name(), *m.epoch, what);
    return Status::dh_failed;
}

void RekeyResponder::on_request(const Message& m) {
    const std::uint32_t e = *m.epoch;
    Message st = status_for(e);
    if (e < newest_req_epoch_ || (e == 0)) {
        ++c_.stats.rekey_stale;
        st.status = Status::stale;
        return link_.respond(m, std::move(st));
    }
    if (e == newest_req_epoch_) return reply_again(m);
    newest_req_epoch_ = e;
    dh::RekeyKeys keys;
    std::optional<dh::Share> share;
    Status s = resolve(m, keys);
    if (s == Status::ok) s = agree(m, keys, share);
    // Settle the pending next keys (promote if the primary used them, else drop), then ours.
    if (s == Status::ok && !next_.install(keys.data_p2s, e)) {
        P3_LOG_ERROR(KEY_INSTALL_FAILED, "%s: rekey epoch %u: dataplane refused the inbound keys", c_.name(), e);
        s = Status::install_failed;
    }
    last_req_status_ = s;
    st.status = s;
    if (s == Status::ok) {
        epochs_.add_rx(e, std::move(keys.ctl_p2s));
        rekey_in_ = Accepted{e, std::move(keys.data_s2p), std::move(keys.ctl_s2p), share, false};
        epochs_.enforce_cap();
        st.lanes = c_.local_lanes;
        st.dh_share = share;
        P3_LOG_INFO(REKEY_START, "%s: rekey epoch %u: next inbound keys installed", c_.name(), e);
        c_.emit({.kind = Event::Kind::rekey_started, .epoch = e, .reason = Reason::REKEY_START});
    }
    link_.respond(m, std::move(st));
}

void RekeyResponder::on_switch(const Message& m) {
    const std::uint32_t e = *m.epoch;
    Message a;
    a.type = MsgType::rekey_switch_ack;
    a.epoch = e;
    if (rekey_in_ && rekey_in_->epoch == e && !rekey_in_->switched) {
        if (m.first_seq.size() != c_.peer_lanes) {
            ++c_.stats.unexpected;
            return link_.respond(m, error_of(Status::not_allowed));
        }
        // The primary sends under epoch e from these sequences (and has held our next inbound
        // keys since before its switch): tell the dataplane, then follow.
        next_.switch_at(m.first_seq);
        std::vector<std::uint64_t> first;
        if (!c_.installer.switch_tx(rekey_in_->data_s2p, first) || first.size() != c_.local_lanes) {
            P3_LOG_ERROR(KEY_INSTALL_FAILED, "%s: rekey epoch %u: dataplane refused the outbound keys", c_.name(), e);
            return link_.respond(m, error_of(Status::install_failed));
        }
        epochs_.switch_tx(e, rekey_in_->ctl_s2p.clone());
        rekey_in_->switched = true;
        switched_ = Switched{e, first};
        epochs_.peer_switched(e, limits::kRetireTimeout);
        ++c_.stats.rekeys_done;
        c_.emit({.kind = Event::Kind::tx_switched, .epoch = e});
        P3_LOG_INFO(REKEY_DONE, "%s: rekey epoch %u complete", c_.name(), e);
        c_.emit({.kind = Event::Kind::rekey_done, .epoch = e, .reason = Reason::REKEY_DONE});
        a.first_seq = std::move(first);
        return link_.respond(m, std::move(a));
    }
    if (switched_ && switched_->epoch == e) {  // a retransmission: the same answer
        a.first_seq = switched_->first_seq;
        return link_.respond(m, std::move(a));
    }
    ++c_.stats.unexpected;
    link_.respond(m, error_of(e < epochs_.tx().epoch ? Status::stale : Status::unknown_epoch));
}

}  // namespace p3::channel
