// The dataplane's fixed sizes that the configuration is checked against: here, in common/, so
// that `p3ctl config check` (common/config_check.cpp) and the dataplane (dataplane/limits.hpp,
// which includes this) read one definition and common/ includes nothing from dataplane/.
#pragma once

#include <cstdint>

namespace p3::dp {

inline constexpr unsigned kMinMbufs = 1023;
inline constexpr std::uint32_t kMaxSessions = 32768;      // session ids 1..kMaxSessions-1
inline constexpr std::uint32_t kMaxRoutes4 = 1u << 18;    // IPv4 prefixes
inline constexpr std::uint32_t kMaxRoutes6 = 1u << 17;    // IPv6 prefixes

}  // namespace p3::dp
