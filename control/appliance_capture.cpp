// The admin socket's `capture` (docs/capture.md): checks the request and the file p3ctl
// passed along, starts the dataplane's capture (dataplane/capture.hpp) and hands the admin
// server a stream that drains the copies into the file every pass and ends the capture at its
// count, its duration, the client's end of input or p3d's stop, answering with what was
// written. One capture at a time.
//
// The file is the operator's: p3ctl opens it and passes the descriptor (SCM_RIGHTS), so p3d
// needs no right on its directory. p3d writes it from the control thread, which must never
// block: only a regular file is taken (a pipe or terminal could stall the thread; p3ctl
// relays those itself).
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <optional>

#include "common/log.hpp"
#include "control/appliance.hpp"

namespace p3::control {

namespace {

using admin::ErrorKind;
using admin::Reply;
using nlohmann::json;

std::string dir_name(std::uint8_t dirs) {
    return dirs == (dp::kCaptureRx | dp::kCaptureTx) ? "both" : dirs == dp::kCaptureRx ? "rx" : "tx";
}

class CaptureStream final : public admin::Stream {
public:
    CaptureStream(dp::Capture& cap, std::string port, std::optional<TimePoint> until)
        : cap_(cap), port_(std::move(port)), until_(until) {}
    ~CaptureStream() override {
        if (cap_.running()) end("ended");
    }

    std::optional<Reply> poll(TimePoint now, bool client_gone, unsigned& work) override {
        if (!cap_.running()) {   // stopped under it (p3d closing its dataplane)
            Reply rep;
            rep.result = {{"port", port_}, {"ended", "stopped"}};
            return rep;
        }
        bool ok = true;
        work = cap_.drain(ok);
        if (!ok) return end("write error", std::strerror(errno));
        if (cap_.done()) return end("count");
        if (until_ && now >= *until_) return end("duration");
        if (client_gone) return end("client");
        return std::nullopt;
    }

private:
    Reply end(const char* why, const char* error = nullptr) {
        const dp::CaptureTotals t = cap_.stop(why);
        if (error)
            P3_LOG_ERROR(ADMIN_CAPTURE_FAILED, "capture of port %s: the file could not be written (%s): stopped",
                         port_.c_str(), error);
        P3_LOG_NOTICE(ADMIN_CAPTURE_ENDED, "capture of port %s ended (%s): %llu packets written, %llu seen, %llu copies lost",
                      port_.c_str(), why, static_cast<unsigned long long>(t.written),
                      static_cast<unsigned long long>(t.seen), static_cast<unsigned long long>(t.lost));
        if (t.lost)
            P3_LOG_WARN(ADMIN_CAPTURE_LOST, "capture of port %s lost %llu copies (ring full or pool empty); forwarding was not affected",
                        port_.c_str(), static_cast<unsigned long long>(t.lost));
        Reply rep;
        rep.result = {{"port", port_}, {"ended", why}, {"written", t.written}, {"seen", t.seen}, {"lost", t.lost}};
        if (error) rep = Reply::error(ErrorKind::failed, std::string("capture file: ") + error + " (" +
                                                              std::to_string(t.written) + " packets written)");
        return rep;
    }

    dp::Capture& cap_;
    std::string port_;
    std::optional<TimePoint> until_;
};

// "lan", "wan" or the DPDK port id of one of them.
std::optional<dp::Side> side_of(const std::string& port, const dp::ControlPort& dp) {
    if (port == "lan") return dp::Side::lan;
    if (port == "wan") return dp::Side::wan;
    if (port.empty() || port.size() > 5 || port.find_first_not_of("0123456789") != std::string::npos) return std::nullopt;
    const unsigned long id = std::stoul(port);
    for (dp::Side s : {dp::Side::lan, dp::Side::wan})
        if (dp.port_id(s) == id) return s;
    return std::nullopt;
}

}  // namespace

admin::Reply Appliance::capture_command(const admin::Request& req, const admin::Caller& who) {
    const admin::CaptureArgs& a = req.capture;
    const auto side = side_of(a.port, dp_);
    if (!side)
        return Reply::error(ErrorKind::bad_request,
                            "port '" + a.port + "': lan, wan, or " + std::to_string(dp_.port_id(dp::Side::lan)) +
                                " or " + std::to_string(dp_.port_id(dp::Side::wan)) + " (their DPDK port ids)");
    if (req.fd < 0)
        return Reply::error(ErrorKind::bad_request, "capture: no file came with the request (p3ctl capture -w FILE passes it)");
    struct stat st{};
    const int mode = ::fcntl(req.fd, F_GETFL);
    if (::fstat(req.fd, &st) != 0 || !S_ISREG(st.st_mode) || mode < 0 ||
        ((mode & O_ACCMODE) != O_WRONLY && (mode & O_ACCMODE) != O_RDWR))
        return Reply::error(ErrorKind::bad_request, "capture: the file passed is not a regular file open for writing");
    dp::Capture& cap = dp_.capture();
    if (cap.running())
        return Reply::error(ErrorKind::failed, std::string("a capture of port ") + dp::side_name(cap.spec().side) +
                                                   " is running already: one at a time");
    dp::CaptureSpec spec;
    spec.side = *side;
    spec.dirs = a.direction == "rx" ? dp::kCaptureRx : a.direction == "tx" ? dp::kCaptureTx : dp::kCaptureRx | dp::kCaptureTx;
    spec.snaplen = a.snaplen ? a.snaplen : dp::kCaptureSnapDefault;
    spec.count = a.count;
    const std::string name = dp::side_name(*side);
    const std::uint16_t pid = dp_.port_id(*side);
    const std::string& dev = dp_.port_name(*side);
    const std::string comment = "p3d port " + name + " (DPDK port " + std::to_string(pid) + ", " + dev + "), direction " +
                                dir_name(spec.dirs) + ", by " + who.user;
    const int fd = ::fcntl(req.fd, F_DUPFD_CLOEXEC, 0);
    std::string why;
    if (fd < 0 || !cap.start(fd, spec, comment, why))
        return Reply::error(ErrorKind::failed, "capture: " + (fd < 0 ? std::string(std::strerror(errno)) : why));
    P3_LOG_NOTICE(ADMIN_CAPTURE_STARTED, "capture of port %s (DPDK port %u, %s), direction %s, count %llu, duration %u s, snaplen %u, for %s",
                  name.c_str(), static_cast<unsigned>(pid), dev.c_str(), dir_name(spec.dirs).c_str(),
                  static_cast<unsigned long long>(spec.count), a.duration_s, spec.snaplen, who.user.c_str());
    std::optional<TimePoint> until;
    if (a.duration_s) until = loop_.clock().now() + std::chrono::seconds(a.duration_s);
    Reply rep;
    rep.result = {{"port", name},       {"port_id", pid},           {"device", dev},
                  {"direction", dir_name(spec.dirs)}, {"snaplen", spec.snaplen}, {"count", spec.count},
                  {"duration_s", a.duration_s}};
    rep.stream = std::make_shared<CaptureStream>(cap, name, until);
    return rep;
}

}  // namespace p3::control
