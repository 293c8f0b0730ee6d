// Helpers for the configuration suites: load text and require success or failure, temp dirs.
#pragma once

#include <catch2/catch.hpp>

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <string>

#include "common/config.hpp"

namespace p3test {

inline p3::config::Config must_load(const p3::config::Result<p3::config::Config>& r) {
    if (auto* e = std::get_if<p3::config::Error>(&r)) {
        FAIL_CHECK("refused: " << e->str() << " [" << p3::reason_code(e->reason) << "]");
        throw std::runtime_error("configuration refused");
    }
    return std::get<p3::config::Config>(r).clone();
}

inline p3::config::Error must_fail(const p3::config::Result<p3::config::Config>& r) {
    if (std::holds_alternative<p3::config::Config>(r)) {
        FAIL_CHECK("accepted a configuration that must be refused");
        throw std::runtime_error("configuration accepted");
    }
    return std::get<p3::config::Error>(r);
}

inline p3::config::Config lc_ok(const std::string& text) {
    return must_load(p3::config::load_libconfig_text(text, "t.conf"));
}
inline p3::config::Error lc_err(const std::string& text) {
    return must_fail(p3::config::load_libconfig_text(text, "t.conf"));
}
inline p3::config::Config legacy_ok(const std::string& text) {
    return must_load(p3::config::load_legacy_text(text, "t.txt"));
}
inline p3::config::Error legacy_err(const std::string& text) {
    return must_fail(p3::config::load_legacy_text(text, "t.txt"));
}

// A temporary directory removed (with its files) at the end of the scope.
struct TempDir {
    std::string path;
    TempDir() {
        char tmpl[] = "/tmp/p3-config-test-XXXXXX";
        REQUIRE(::mkdtemp(tmpl) != nullptr);
        path = tmpl;
    }
    ~TempDir() {
        std::string cmd = "rm -rf '" + path + "'";
        (void)std::system(cmd.c_str());
    }
    std::string write(const std::string& name, const std::string& text, mode_t mode = 0600) const {
        std::string p = path + "/" + name;
        {
            std::ofstream out(p, std::ios::binary | std::ios::trunc);
            out << text;
        }
        ::chmod(p.c_str(), mode);
        return p;
    }
};

inline std::string slurp(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

}  // namespace p3test
