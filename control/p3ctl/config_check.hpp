// p3ctl config check: everything p3d would refuse at start, or could not forward with, found
// without starting it (docs/p3ctl.md "config check"). The file is loaded as p3d loads it
// (common/config), then the start checks p3d shares (config::check_start), then the setup
// credentials are loaded with p3d's own code (control/setup Credentials::load: certificates
// parsed, the private key matching, the CA, no pre-shared key used by two remotes).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "common/config.hpp"
#include "common/keygen.hpp"

namespace p3::ctl {

enum class Severity { error, warning, info };

struct Finding {
    Severity severity;
    config::Error what;   // file, line, reason code, message
};

struct CheckResult {
    std::optional<config::Config> cfg;   // loaded (even when a start check failed)
    std::vector<Finding> findings;       // in file order
    bool ok() const noexcept;            // no error among the findings
};

CheckResult check_config_file(const std::string& path);

// key_generation = "hardware" on a CPU without RDSEED and RDRAND: p3d's KeyGenerator refuses
// it at start (P3-E0801). check_config_file asks with this machine's CPU.
void check_key_generator(const config::Config& cfg, const keys::CpuRng& cpu, std::vector<Finding>& out);

// "file:line: error P3-E0104: what" lines (stderr form), one per finding.
std::string render_findings(const std::vector<Finding>& f);
// One JSON object: {"ok":..,"file":..,"findings":[{"code","severity","file","line","message"}]}.
std::string render_findings_json(const std::string& path, const CheckResult& r);

}  // namespace p3::ctl
