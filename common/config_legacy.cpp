// The seed spec's Appendix A line format (localstart ... localend, N/keyword value).
#include "common/config.hpp"
#include "common/config_internal.hpp"

namespace p3::config {

Result<Config> load_legacy_text(const std::string& text, const std::string& name) {
    (void)text;
    return Error{name, 1, Reason::CFG_SYNTAX, "the legacy line format is not read yet"};
}

}  // namespace p3::config
