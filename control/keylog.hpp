// The insecure key log (test and debugging only): `p3d --insecure-key-log FILE` appends one line
// per data key installed in the dataplane, so an observer's tools can decrypt a capture of the
// WAN (tests/sh/54-invisible-rekey.sh) the way Wireshark reads an SSLKEYLOGFILE:
//
//   <unix-time> session=<sid> remote=<id> dir=rx|tx p3_id=0x<base> lanes=<n> key=<hex> salt=<hex>
//   ... wire=esp esn=0|1 src=<addr> dst=<addr>      (an ESP SA: p3_id is its SPI, lanes=1)
//
// The key and salt are the session-level material of lane 0 at P3 ID base; lane n > 0 (P3 ID
// base + n) derives its own by HKDF as DESIGN.md §Wire format says. `dir=rx` is a key we
// receive under (base = our inbound block), `dir=tx` one we send under (base = the peer's).
//
// Off by default: then write() is one load and a return. On, it is loud: open() logs P3-W0009
// naming the file; the file is created owner-only (0600), never followed through a symbolic
// link, refused when it exists readable by group or others, and appended to (no fsync: a test
// reads it after p3d stopped or while it runs, and a lost line costs nothing but that test).
// Control thread (and start-up) only; a lock makes a stray other caller harmless.
#pragma once

#include <cstdint>
#include <span>
#include <string>

namespace p3::control::keylog {

enum class Dir { rx, tx };

// Opens (creates 0600) and appends to path, logging P3-W0009; false with why (and nothing
// opened) when the file cannot be opened, is not a regular file, or is open to group or others.
bool open(const std::string& path, std::string& why);
bool enabled() noexcept;
// One line, when the log is on; a no-op otherwise. A failed write is logged (P3-E0010) once.
void write(std::uint32_t session, std::uint32_t remote, Dir dir, std::uint32_t p3_base, std::uint32_t lanes,
           std::span<const std::uint8_t> key, std::span<const std::uint8_t> salt) noexcept;
// An ESP SA (wire = "esp"): the same fields (p3_id = the SPI, lanes=1) and
// ` wire=esp esn=0|1 src=<addr> dst=<addr>`, the outer addresses of that direction, so a test
// can fill tshark's ESP SA table from it.
void write_esp(std::uint32_t session, std::uint32_t remote, Dir dir, std::uint32_t spi, std::span<const std::uint8_t> key,
               std::span<const std::uint8_t> salt, bool esn, const std::string& src, const std::string& dst) noexcept;
// Closes the file (p3d's exit; tests).
void close() noexcept;

}  // namespace p3::control::keylog
