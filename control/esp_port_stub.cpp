// TEMPORARY (dropped when the dataplane's ESP implementation is merged): definitions of the
// ControlPort ESP calls declared in dataplane/control_port.hpp, so the control plane builds
// and links before the dataplane implements them. They refuse every SA: an ESP remote's
// setup then fails with P3-E0413 (the dataplane refused the keys) instead of coming up.
#include "dataplane/control_port.hpp"

namespace p3::dp {

bool ControlPort::esp_install_rx(SessionId, const EspSa&) { return false; }
bool ControlPort::esp_install_tx(SessionId, const EspSa&) { return false; }
void ControlPort::esp_remove_rx(SessionId, std::uint32_t) {}

}  // namespace p3::dp
