// p3ctl stats' JSON flattening (nlohmann-json's SAX reader): what a user sees from p3d's telemetry
// replies, and every kind of malformed reply refused with a reason (nothing printed from a
// half-read document).
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <string>
#include <utility>
#include <vector>

#include "control/admin/telemetry_client.hpp"

using p3::admin::flatten_json;
using KV = std::vector<std::pair<std::string, std::string>>;

TEST_CASE("a telemetry reply flattens into key=value pairs in document order", "[p3ctl]") {
    KV kv;
    std::string err;
    REQUIRE(flatten_json(R"({"/p3/stats": {"workers": 2, "encrypted": 12345, "state": "up", "ratio": -1.5e3,)"
                         R"( "up": true, "peer": null, "lanes": [0, 1], "nested": {"a": {"b": "c"}}}})",
                         kv, err));
    const KV want = {{"/p3/stats.workers", "2"},      {"/p3/stats.encrypted", "12345"}, {"/p3/stats.state", "up"},
                     {"/p3/stats.ratio", "-1.5e3"},   {"/p3/stats.up", "true"},         {"/p3/stats.peer", "null"},
                     {"/p3/stats.lanes.0", "0"},      {"/p3/stats.lanes.1", "1"},       {"/p3/stats.nested.a.b", "c"}};
    CHECK(kv == want);
    // DPDK's answer to a command that failed (an unknown session): the value is null.
    REQUIRE(flatten_json(R"({"/p3/session": null})", kv, err));
    CHECK(kv == KV{{"/p3/session", "null"}});
    // Empty containers give no pairs; escapes are decoded.
    REQUIRE(flatten_json(R"( { "e": {}, "f": [], "s": "a\"b\\c\/d\n\u00e9\u20ac" } )", kv, err));
    CHECK(kv == KV{{"s", "a\"b\\c/d\n\xc3\xa9\xe2\x82\xac"}});
}

TEST_CASE("malformed replies are refused with a reason and leave nothing behind", "[p3ctl]") {
    std::string deep(p3::admin::kMaxJsonDepth + 2, '[');
    deep.append(p3::admin::kMaxJsonDepth + 2, ']');
    std::string ok_deep(p3::admin::kMaxJsonDepth, '[');
    ok_deep.push_back('1');
    ok_deep.append(p3::admin::kMaxJsonDepth, ']');
    struct Case {
        std::string text;
        const char* why;
    };
    const Case cases[] = {
        {"", "unexpected end of input"},
        {"   ", "unexpected end of input"},
        {"{", "expected string literal"},
        {R"({"a")", "expected ':'"},
        {R"({"a":})", "unexpected '}'"},
        {R"({"a":1,})", "unexpected '}'; expected string literal"},
        {R"({"a":1 "b":2})", "expected '}'"},
        {R"({"a":1)", "unexpected end of input; expected '}'"},
        {"[1,]", "unexpected ']'"},
        {"[1 2]", "expected ']'"},
        {"[1", "unexpected end of input; expected ']'"},
        {R"("abc)", "missing closing quote"},
        {"\"a\x01\"", "must be escaped"},
        {R"("\q")", "forbidden character after backslash"},
        {R"("\u12")", "must be followed by 4 hex digits"},
        {R"("\u12g4")", "must be followed by 4 hex digits"},
        {"-", "expected digit after '-'"},
        {"1.", "expected digit after '.'"},
        {"1e+", "expected digit after exponent sign"},
        {"tru", "invalid literal"},
        {"1 2", "expected end of input"},
        {"{} x", "parse error"},
        {"\"\xff\"", "invalid string"},                  // not UTF-8
        {R"("\ud800")", "surrogate"},                     // a lone surrogate half
        {"1e999", "number overflow"},
        {deep, "nested too deep"},
    };
    for (const auto& c : cases) {
        INFO(c.text);
        KV kv = {{"left", "over"}};
        std::string err;
        CHECK_FALSE(flatten_json(c.text, kv, err));
        INFO(err);
        CHECK(err.find(c.why) != std::string::npos);
        CHECK(kv.empty());
    }
    KV kv;
    std::string err;
    CHECK(flatten_json(ok_deep, kv, err));
    CHECK(kv.size() == 1);
}

TEST_CASE("no more than kMaxJsonLeaves values are taken", "[p3ctl]") {
    std::string many = "[";
    for (std::size_t i = 0; i <= p3::admin::kMaxJsonLeaves; ++i) many += i ? ",0" : "0";
    many += "]";
    KV kv;
    std::string err;
    CHECK_FALSE(flatten_json(many, kv, err));
    CHECK(err.find("too many values") != std::string::npos);
    CHECK(flatten_json("[0]", kv, err));
}

TEST_CASE("the telemetry socket follows EAL's runtime directory", "[p3ctl]") {
    ::unsetenv("RUNTIME_DIRECTORY");
    CHECK(p3::admin::telemetry_socket("p3a") == "/var/run/dpdk/p3a/dpdk_telemetry.v2");
    // EAL's directory under RUNTIME_DIRECTORY is RUNTIME_DIRECTORY/dpdk/PREFIX.
    ::setenv("RUNTIME_DIRECTORY", "/tmp/rt", 1);
    CHECK(p3::admin::telemetry_socket("p3a") == "/tmp/rt/dpdk/p3a/dpdk_telemetry.v2");
    ::unsetenv("RUNTIME_DIRECTORY");
    // Run from a shell, p3ctl finds the socket of a p3d whose runtime directory it was not
    // told: here the one under XDG_RUNTIME_DIR (a p3d run by that user).
    char tmpl[] = "/tmp/p3rt.XXXXXX";
    REQUIRE(::mkdtemp(tmpl) != nullptr);
    const std::string dir = tmpl, sub = dir + "/dpdk/p3sock" + std::to_string(::getpid());
    REQUIRE(::mkdir((dir + "/dpdk").c_str(), 0700) == 0);
    REQUIRE(::mkdir(sub.c_str(), 0700) == 0);
    const std::string sock = sub + "/dpdk_telemetry.v2";
    ::close(::open(sock.c_str(), O_CREAT | O_WRONLY, 0600));
    ::setenv("XDG_RUNTIME_DIR", dir.c_str(), 1);
    CHECK(p3::admin::telemetry_socket("p3sock" + std::to_string(::getpid())) == sock);
    ::unsetenv("XDG_RUNTIME_DIR");
    ::unlink(sock.c_str());
    ::rmdir(sub.c_str());
    ::rmdir((dir + "/dpdk").c_str());
    ::rmdir(dir.c_str());
    std::string reply, err;
    CHECK_FALSE(p3::admin::telemetry_query("/nonexistent/dpdk_telemetry.v2", "/p3/stats", reply, err));
    CHECK(err.find("No such file or directory") != std::string::npos);
}
