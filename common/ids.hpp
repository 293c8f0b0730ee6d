// Strong types for the numbers that name things, so one cannot be passed where another is
// meant (a session id where a remote id belongs was a real bug class: both are small
// integers). Value types, no run-time cost; raw() where a table index or a wire field needs
// the number.
//
//   RemoteId   a configured remote (remotes[].id, 1..; on a secondary, its primary)
//   SessionId  the dataplane's session table index (1..kMaxSessions-1; 0 = none)
//   P3Id       a P3 ID as written on the wire: the receiver chose it (wire::SlotId is how this
//              side's slot table reads one of its own)
#pragma once

#include <compare>
#include <cstdint>
#include <functional>

namespace p3 {

template <class Tag>
class Id {
public:
    constexpr Id() noexcept = default;
    constexpr explicit Id(std::uint32_t v) noexcept : v_(v) {}
    constexpr std::uint32_t raw() const noexcept { return v_; }
    constexpr explicit operator bool() const noexcept { return v_ != 0; }
    constexpr auto operator<=>(const Id&) const noexcept = default;

private:
    std::uint32_t v_ = 0;
};

using RemoteId = Id<struct RemoteIdTag>;
using SessionId = Id<struct SessionIdTag>;
using P3Id = Id<struct P3IdTag>;

}  // namespace p3

template <class Tag>
struct std::hash<p3::Id<Tag>> {
    std::size_t operator()(p3::Id<Tag> id) const noexcept { return std::hash<std::uint32_t>{}(id.raw()); }
};
