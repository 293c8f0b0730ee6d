// p3ctl capture (docs/capture.md): asks p3d to copy one port's packets into a pcapng file.
// p3ctl opens the file itself (it is the operator's, made 0600: it holds the LAN's clear
// packets) and passes the descriptor with the request over the admin socket (SCM_RIGHTS); p3d
// writes it from its control thread. p3d takes only a regular file, so for `-w -` onto a pipe
// or terminal p3ctl hands it an unnamed temporary file (O_TMPFILE) and relays what p3d
// writes to its standard output, freeing what it relayed (hole punching).
//
// The conversation: the request line, p3d's first answer (the capture runs), then p3d's last
// answer (written, seen, lost, why it ended). Ctrl-C (SIGINT) or SIGTERM closes p3ctl's
// sending side, which tells p3d to stop; p3ctl then waits for the last answer.
#pragma once

#include <cstdint>
#include <string>

namespace p3::ctl {

struct CaptureOptions {
    std::string port;                 // lan, wan, or a DPDK port id
    std::string direction = "both";   // rx, tx, both
    std::uint64_t count = 0;          // 0: until stopped
    std::uint32_t duration_s = 0;     // 0: until stopped
    std::uint32_t snaplen = 0;        // 0: p3d's default
    std::string out;                  // FILE, or "-" for standard output
};

// Runs one capture against the admin socket at socket_path; messages on stderr; returns
// p3ctl's exit status (admin_client.hpp's Exit). json: the last answer as JSON (on stdout,
// or on stderr when the capture itself goes to stdout).
int run_capture(const std::string& socket_path, const CaptureOptions& o, bool json);

}  // namespace p3::ctl
