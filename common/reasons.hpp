// Reason codes: the stable identifiers every failure and event message carries.
// The list lives in reasons/*.def (one X-macro file per area); this header turns it
// into an enum and a table. docs/reason-codes.md is generated from the same table.
#pragma once

#include <cstddef>
#include <span>
#include <string_view>

namespace p3 {

enum class Reason : unsigned short {
#define P3_REASON(ident, code, meaning, action) ident,
#include "common/reasons/all.def"
#undef P3_REASON
};

struct ReasonInfo {
    Reason reason;
    std::string_view code;     // "P3-E0101"
    std::string_view meaning;  // what happened
    std::string_view action;   // what the administrator should do
};

// Every reason, in declaration order.
std::span<const ReasonInfo> all_reasons() noexcept;
const ReasonInfo& reason_info(Reason r) noexcept;
inline std::string_view reason_code(Reason r) noexcept { return reason_info(r).code; }

// The reference page (docs/reason-codes.md) as Markdown.
std::string reasons_markdown();

}  // namespace p3
