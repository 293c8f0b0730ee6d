// The CPG transport (see cpg_transport.hpp).
#include "control/cluster/cpg_transport.hpp"

#include <corosync/cpg.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "common/log.hpp"

namespace p3::cluster {

namespace {

constexpr std::chrono::milliseconds kFlushEvery{10};

CpgTransport* self_of(cpg_handle_t h) {
    void* ctx = nullptr;
    if (cpg_context_get(h, &ctx) != CS_OK) return nullptr;
    return static_cast<CpgTransport*>(ctx);
}

void deliver_cb(cpg_handle_t h, const cpg_name*, std::uint32_t nodeid, std::uint32_t pid, void* msg, std::size_t len) {
    if (CpgTransport* t = self_of(h)) t->on_deliver(nodeid, pid, msg, len);
}

void confchg_cb(cpg_handle_t h, const cpg_name*, const cpg_address* members, std::size_t n_members,
                const cpg_address* left, std::size_t n_left, const cpg_address* joined, std::size_t n_joined) {
    if (CpgTransport* t = self_of(h)) t->on_confchg(members, n_members, left, n_left, joined, n_joined);
}

cpg_callbacks_t g_callbacks = {deliver_cb, confchg_cb};

std::uint64_t origin_of(const cpg_address& a) { return std::uint64_t(a.nodeid) << 32 | a.pid; }

std::vector<std::uint64_t> origins(const void* list, std::size_t n) {
    const auto* a = static_cast<const cpg_address*>(list);
    std::vector<std::uint64_t> out;
    for (std::size_t i = 0; i < n; ++i) out.push_back(origin_of(a[i]));
    return out;
}

}  // namespace

CpgTransport::CpgTransport(control::EventLoop& loop, std::string group) : loop_(loop), group_(std::move(group)) {}

CpgTransport::~CpgTransport() { stop(); }

void CpgTransport::start() {
    stopped_ = false;
    if (!connect()) retry_later();
}

void CpgTransport::stop() {
    stopped_ = true;
    if (retry_) loop_.cancel(retry_);
    if (flush_) loop_.cancel(flush_);
    retry_ = flush_ = {};
    disconnect(false);
}

bool CpgTransport::connect() {
    cpg_handle_t h = 0;
    cs_error_t rc = cpg_initialize(&h, &g_callbacks);
    const char* what = "cpg_initialize";
    unsigned nodeid = 0;
    int fd = -1;
    if (rc == CS_OK) {
        cpg_context_set(h, this);
        cpg_name name{};
        name.length = static_cast<std::uint32_t>(std::min(group_.size(), sizeof name.value));
        std::memcpy(name.value, group_.data(), name.length);
        if ((rc = cpg_local_get(h, &nodeid)) != CS_OK) what = "cpg_local_get";
        else if ((rc = cpg_fd_get(h, &fd)) != CS_OK) what = "cpg_fd_get";
        else if ((rc = cpg_join(h, &name)) != CS_OK) what = "cpg_join";
        if (rc != CS_OK) cpg_finalize(h);
    }
    if (rc != CS_OK) {
        if (failures_ == 0)
            P3_LOG_ERROR(CLUSTER_CPG_FAILED, "cluster: %s failed (corosync error %d): retrying", what, static_cast<int>(rc));
        return false;
    }
    handle_ = h;
    fd_ = fd;
    self_ = std::uint64_t(nodeid) << 32 | static_cast<std::uint32_t>(::getpid());
    joined_ = false;
    if (was_connected_) ++reconnects_;
    was_connected_ = true;
    failures_ = 0;
    loop_.add_fd(fd_, [this](std::uint32_t) { on_readable(); });
    return true;
}

void CpgTransport::disconnect(bool lost) {
    if (!handle_) return;
    loop_.remove_fd(fd_);
    cpg_finalize(handle_);
    handle_ = 0;
    fd_ = -1;
    joined_ = false;
    queue_.clear();
    if (lost) {
        P3_LOG_WARN(CLUSTER_CPG_LOST, "cluster: the connection to corosync was lost: reconnecting");
        if (engine_) engine_->lost();
    }
}

void CpgTransport::retry_later() {
    if (stopped_ || retry_) return;
    auto wait = std::chrono::duration_cast<control::Duration>(kFirstRetry) * (1u << std::min(failures_, 3u));
    wait = std::min<control::Duration>(wait, kMaxRetry);
    ++failures_;
    retry_ = loop_.after(wait, [this] {
        retry_ = {};
        if (!connect()) retry_later();
    });
}

void CpgTransport::on_readable() {
    const cs_error_t rc = cpg_dispatch(handle_, CS_DISPATCH_ALL);
    if (rc == CS_OK || rc == CS_ERR_TRY_AGAIN) return flush();
    disconnect(true);
    retry_later();
}

void CpgTransport::on_deliver(std::uint32_t nodeid, std::uint32_t pid, const void* msg, std::size_t len) {
    if (engine_) engine_->deliver(std::uint64_t(nodeid) << 32 | pid, std::span(static_cast<const std::uint8_t*>(msg), len));
}

void CpgTransport::on_confchg(const void*, std::size_t, const void* left, std::size_t n_left, const void* joined,
                              std::size_t n_joined) {
    if (!engine_) return;
    auto j = origins(joined, n_joined);
    const auto l = origins(left, n_left);
    if (!joined_ && std::find(j.begin(), j.end(), self_) != j.end()) {
        joined_ = true;
        j.erase(std::find(j.begin(), j.end(), self_));
        engine_->view({}, l);
        engine_->joined(self_);
        if (!j.empty()) engine_->view(j, {});
        return;
    }
    engine_->view(j, l);
}

bool CpgTransport::try_send(std::span<const std::uint8_t> bytes, bool& again) {
    iovec iov{const_cast<std::uint8_t*>(bytes.data()), bytes.size()};
    const cs_error_t rc = cpg_mcast_joined(handle_, CPG_TYPE_AGREED, &iov, 1);
    again = rc == CS_ERR_TRY_AGAIN;
    return rc == CS_OK;
}

bool CpgTransport::send(std::span<const std::uint8_t> bytes) {
    if (!handle_) return false;
    bool again = false;
    if (queue_.empty() && try_send(bytes, again)) return true;
    if (!queue_.empty() || again) {
        if (queue_.size() >= kMaxQueued) return false;
        queue_.emplace_back(bytes.begin(), bytes.end());
        if (!flush_) flush_ = loop_.after(kFlushEvery, [this] {
            flush_ = {};
            flush();
        });
        return true;
    }
    // Anything else: corosync is gone; the fd will say so too.
    return false;
}

void CpgTransport::flush() {
    while (handle_ && !queue_.empty()) {
        bool again = false;
        if (!try_send(queue_.front(), again)) {
            if (!again) return;
            if (!flush_) flush_ = loop_.after(kFlushEvery, [this] {
                flush_ = {};
                flush();
            });
            return;
        }
        queue_.pop_front();
    }
}

}  // namespace p3::cluster
