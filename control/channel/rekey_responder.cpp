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
}

void RekeyResponder::reply_again(const Message& m) {
    Message st = status_for(*m.epoch);
    if (rekey_in_ && rekey_in_->epoch == *m.epoch) {
        st.status = Status::ok;
        st.p3_id = rekey_in_->my_rx_id;
        st.lanes = c_.local_lanes;
    } else {
        st.status = last_req_status_.value_or(Status::stale);
    }
    link_.respond(m, std::move(st));
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
    Status s = Status::ok;
    auto data_p2s = arrays_.resolve_key(ArrayKind::data, m.data_p2s, s);
    auto data_s2p = arrays_.resolve_key(ArrayKind::data, m.data_s2p, s);
    auto ctl_p2s = arrays_.resolve_key(ArrayKind::control, m.ctl_p2s, s);
    auto ctl_s2p = arrays_.resolve_key(ArrayKind::control, m.ctl_s2p, s);
    if (s == Status::ok && ((m.data_p2s.index && m.data_p2s.index == m.data_s2p.index) ||
                            (m.ctl_p2s.index && m.ctl_p2s.index == m.ctl_s2p.index)))
        s = Status::index_reused;  // one index for both directions: that would be a reuse
    std::optional<std::uint32_t> id;
    if (s == Status::ok) {
        // Mark every index used before anything else can fail: an index named once is spent.
        for (auto [kind, ref] : {std::pair{ArrayKind::data, &m.data_p2s}, std::pair{ArrayKind::data, &m.data_s2p},
                                 std::pair{ArrayKind::control, &m.ctl_p2s}, std::pair{ArrayKind::control, &m.ctl_s2p}})
            if (ref->index) arrays_.spend(kind, ref->index->index);
        id = c_.installer.install_rx(*data_p2s, *m.lanes);
        if (!id) {
            P3_LOG_ERROR(KEY_INSTALL_FAILED, "%s: rekey epoch %u: dataplane refused the inbound keys", c_.name(), e);
            s = Status::install_failed;
        }
    } else if (s == Status::index_reused || s == Status::unknown_array) {
        P3_LOG_ERROR(ARRAY_INDEX_REFUSED, "%s: rekey epoch %u names an array index that is %s", c_.name(), e,
                     s == Status::index_reused ? "already used" : "unknown");
    } else {
        P3_LOG_WARN(REKEY_REJECTED, "%s: rekey epoch %u refused: %s", c_.name(), e, status_name(s).data());
    }
    last_req_status_ = s;
    st.status = s;
    if (s == Status::ok) {
        epochs_.add_rx(e, *id, std::move(*ctl_p2s));
        Accepted in;
        in.epoch = e;
        in.data_s2p = std::move(*data_s2p);
        in.ctl_s2p = std::move(*ctl_s2p);
        in.peer_rx_id = *m.p3_id;
        in.my_rx_id = *id;
        rekey_in_ = std::move(in);
        epochs_.enforce_cap();
        st.p3_id = *id;
        st.lanes = c_.local_lanes;
        P3_LOG_INFO(REKEY_START, "%s: rekey epoch %u: new inbound keys installed", c_.name(), e);
        c_.emit({.kind = Event::Kind::rekey_started, .epoch = e, .reason = Reason::REKEY_START});
    }
    link_.respond(m, std::move(st));
}

void RekeyResponder::on_switch(const Message& m) {
    const std::uint32_t e = *m.epoch;
    Message a;
    a.type = MsgType::rekey_switch_ack;
    a.epoch = e;
    a.first_seq = 1;
    if (rekey_in_ && rekey_in_->epoch == e && !rekey_in_->switched) {
        // The primary sends under epoch e (and has our inbound keys since its request): follow.
        if (!c_.installer.switch_tx(rekey_in_->peer_rx_id, rekey_in_->data_s2p, c_.local_lanes)) {
            P3_LOG_ERROR(KEY_INSTALL_FAILED, "%s: rekey epoch %u: dataplane refused the outbound keys", c_.name(), e);
            return link_.respond(m, error_of(Status::install_failed));
        }
        epochs_.switch_tx(e, rekey_in_->ctl_s2p.clone());
        rekey_in_->switched = true;
        epochs_.peer_switched(e, limits::kRetireTimeout);
        ++c_.stats.rekeys_done;
        c_.emit({.kind = Event::Kind::tx_switched, .epoch = e, .p3_id = rekey_in_->peer_rx_id});
        P3_LOG_INFO(REKEY_DONE, "%s: rekey epoch %u complete", c_.name(), e);
        c_.emit({.kind = Event::Kind::rekey_done, .epoch = e, .reason = Reason::REKEY_DONE});
        return link_.respond(m, std::move(a));
    }
    if (epochs_.tx().epoch == e) return link_.respond(m, std::move(a));  // a retransmission: same answer
    ++c_.stats.unexpected;
    link_.respond(m, error_of(e < epochs_.tx().epoch ? Status::stale : Status::unknown_epoch));
}

}  // namespace p3::channel
