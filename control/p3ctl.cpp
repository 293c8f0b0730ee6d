// p3ctl: administration of p3d. Subcommands that work without a running p3d (configuration
// checks and conversion, the reason-code reference) are handled here directly; the others
// will talk to p3d over its admin socket.
#include <cstdio>
#include <cstring>
#include <string>
#include <string_view>

#include "common/reasons.hpp"

namespace {

int usage(FILE* out, int status) {
    std::fputs(
        "usage: p3ctl COMMAND ...\n"
        "\n"
        "  config check FILE       validate FILE, print the effective configuration (secrets masked)\n"
        "  config convert LEGACY   print the libconfig equivalent of a legacy (Appendix A) file\n"
        "  reasons [--markdown]    list every reason code with its meaning and what to do\n"
        "\n"
        "exit status: 0 ok, 2 invalid input (the message says file:line: reason)\n",
        out);
    return status;
}

int cmd_reasons(int argc, char** argv) {
    if (argc > 2 && std::strcmp(argv[2], "--markdown") == 0) {
        std::fputs(p3::reasons_markdown().c_str(), stdout);
        return 0;
    }
    for (const auto& r : p3::all_reasons())
        std::printf("%.*s  %.*s\n    -> %.*s\n", int(r.code.size()), r.code.data(),
                    int(r.meaning.size()), r.meaning.data(), int(r.action.size()), r.action.data());
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 2) return usage(stderr, 2);
    std::string_view cmd = argv[1];
    if (cmd == "-h" || cmd == "--help" || cmd == "help") return usage(stdout, 0);
    if (cmd == "reasons") return cmd_reasons(argc, argv);
    std::fprintf(stderr, "p3ctl: unknown command '%s'\n", argv[1]);
    return usage(stderr, 2);
}
