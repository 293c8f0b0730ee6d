// Command-line helpers shared by the benchmark programs in perf/.
#pragma once

#include <cstdlib>
#include <vector>

namespace p3::perf {

// "64,128,1420" -> {64, 128, 1420}; stops at the first character that is neither a digit
// nor a comma (the caller validates the values).
inline std::vector<unsigned> parse_list(const char* s) {
    std::vector<unsigned> v;
    for (const char* p = s; *p;) {
        char* end;
        v.push_back(static_cast<unsigned>(std::strtoul(p, &end, 10)));
        if (end == p) break;
        p = end;
        if (*p == ',') ++p;
        else if (*p) break;
    }
    return v;
}

}  // namespace p3::perf
