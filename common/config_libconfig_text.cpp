// The libconfig text before libconfig reads it. Two libconfig 1.5 habits are worked around:
// a plain integer literal above 2^31-1 silently wraps (so such literals get the 64-bit 'L'
// suffix first and are then range-checked like any other), and @include would read other
// files (refused: one file is the whole configuration).
#include <string>

#include "common/config_internal.hpp"

namespace p3::config::detail {

namespace {

bool name_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '*';
}
bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_hex(char c) { return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }

}  // namespace

// Copies text, appending 'L' to integer literals libconfig 1.5 would wrap, and refuses
// @include. Strings and comments are copied untouched; line numbers do not change.
std::string prepare_libconfig(const std::string& text, const std::string& file) {
    std::string out;
    out.reserve(text.size() + 64);
    int line = 1;
    bool line_start = true;  // only blanks so far on this line
    std::size_t i = 0, n = text.size();
    while (i < n) {
        char c = text[i];
        if (c == '\n') {
            ++line;
            line_start = true;
            out += c;
            ++i;
            continue;
        }
        if (c == '"') {  // string: copy through the closing quote, honouring escapes
            out += c;
            ++i;
            while (i < n && text[i] != '"') {
                if (text[i] == '\n') ++line;
                if (text[i] == '\\' && i + 1 < n) out += text[i++];
                out += text[i++];
            }
            if (i < n) out += text[i++];
            line_start = false;
            continue;
        }
        if (c == '#' || (c == '/' && i + 1 < n && text[i + 1] == '/')) {
            while (i < n && text[i] != '\n') out += text[i++];
            continue;
        }
        if (c == '/' && i + 1 < n && text[i + 1] == '*') {
            out += "/*";
            i += 2;
            while (i < n && !(text[i] == '*' && i + 1 < n && text[i + 1] == '/')) {
                if (text[i] == '\n') ++line;
                out += text[i++];
            }
            if (i < n) {
                out += "*/";
                i += 2;
            }
            continue;
        }
        if (c == '@' && line_start && text.compare(i, 8, "@include") == 0)
            fail(file, line, Reason::CFG_SYNTAX, "@include is not supported: the configuration is one file");
        if (c != ' ' && c != '\t' && c != '\r') line_start = false;
        bool starts_number = is_digit(c);
        if (starts_number && i > 0) {
            char p = text[i - 1];
            if (name_char(p) || p == '.') starts_number = false;
            if ((p == '-' || p == '+') && i > 1 && name_char(text[i - 2])) starts_number = false;
        }
        if (!starts_number) {
            out += c;
            ++i;
            continue;
        }
        std::size_t start = i;
        bool big = false;
        if (c == '0' && i + 1 < n && (text[i + 1] == 'x' || text[i + 1] == 'X')) {
            i += 2;
            std::size_t d = i;
            while (i < n && text[i] == '0') ++i;  // leading zeros do not count
            std::size_t sig = i;
            while (i < n && is_hex(text[i])) ++i;
            big = (i - sig) > 8 || ((i - sig) == 8 && text[sig] >= '8');
            (void)d;
        } else {
            while (i < n && text[i] == '0') ++i;
            std::size_t sig = i;
            while (i < n && is_digit(text[i])) ++i;
            if (i < n && (text[i] == '.' || text[i] == 'e' || text[i] == 'E')) {
                // A float: copy the rest of it as it is.
                while (i < n && (is_digit(text[i]) || text[i] == '.' || text[i] == 'e' || text[i] == 'E' ||
                                 ((text[i] == '-' || text[i] == '+') && (text[i - 1] == 'e' || text[i - 1] == 'E'))))
                    ++i;
                out.append(text, start, i - start);
                continue;
            }
            std::size_t len = i - sig;
            big = len > 10 || (len == 10 && text.compare(sig, 10, "2147483647") > 0);
        }
        out.append(text, start, i - start);
        if (big && !(i < n && text[i] == 'L')) out += 'L';
    }
    return out;
}

}  // namespace p3::config::detail
