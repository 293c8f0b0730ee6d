// p3ctl init: the installation script of the functional specification's §3. It asks the
// administrator for the addresses (WAN address and gateway, LAN address, the primary's address
// on a secondary), the protected subnets and the credential (a pre-shared key generated or an
// existing key file), or takes each as a flag for automation, and writes a configuration that
// passes `p3ctl config check`, with its secrets owner-only (docs/p3ctl.md "init").
#pragma once

#include <cstdio>
#include <string>

namespace p3::ctl {

struct InitOptions {
    std::string role;         // "primary" / "secondary"; empty: asked
    std::string wan;          // WAN address with prefix length (192.0.2.2/24)
    std::string gateway;      // WAN gateway; "none": every peer is on the WAN link
    std::string lan;          // LAN address with prefix length
    std::string lan_gateway;  // needed when a subnet is off the LAN link
    std::string primary;      // a secondary's primary
    std::string subnets;      // protected networks besides the LAN prefix, comma separated; "none"
    std::string psk_file;     // a secondary's key: an existing file, or "generate"
    std::string out = "/etc/p3";
    bool yes = false;         // no confirmation asked
    bool force = false;       // existing files are replaced
    bool subnets_given = false, gateway_given = false, lan_gateway_given = false;
};

// Asks for what opts lacks on `in` (prompts on `out`), writes OUT/p3d.conf and, for a
// generated key, OUT/secrets/primary.psk (0600, directory 0700), then runs config check on the
// written file. Exit status: 0 written and checked, 2 invalid input / refused, 5 a write failed.
int run_init(InitOptions opts, std::FILE* in, std::FILE* out, std::FILE* err);

}  // namespace p3::ctl
