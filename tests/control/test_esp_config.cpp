// remotes[].wire: "p3" (default) or "esp"; what an ESP remote refuses (static keys, size
// hiding, no subnets) and warns about (key arrays, lanes); the setting survives the effective
// configuration and a run-time change of it sets the session up again.
#include <catch2/catch.hpp>

#include "common/config.hpp"

using namespace p3;
using namespace p3::config;

namespace {

std::string primary_with(const std::string& remote_body, const std::string& local_extra = "") {
    return "role = \"primary\";\nlocal = { address = \"192.0.2.1\"; " + local_extra +
           " };\nremotes = ( { id = 1; address = \"192.0.2.2\";\n" + remote_body + " } );\n";
}

Config ok(const std::string& text) {
    auto r = load_libconfig_text(text, "t.conf");
    if (auto* e = std::get_if<Error>(&r)) FAIL(e->str());
    return std::move(std::get<Config>(r));
}

Error err(const std::string& text) {
    auto r = load_libconfig_text(text, "t.conf");
    REQUIRE(std::holds_alternative<Error>(r));
    return std::get<Error>(r);
}

}  // namespace

TEST_CASE("wire: p3 by default, esp when asked, anything else refused", "[config][esp]") {
    auto c = ok(primary_with("subnets = [ \"10.2.0.0/24\" ];"));
    CHECK(c.remotes[0].wire == WireMode::p3);
    c = ok(primary_with("subnets = [ \"10.2.0.0/24\" ]; wire = \"esp\";"));
    CHECK(c.remotes[0].wire == WireMode::esp);
    c = ok(primary_with("subnets = [ \"10.2.0.0/24\" ]; wire = \"P3\";"));
    CHECK(c.remotes[0].wire == WireMode::p3);
    const Error e = err(primary_with("subnets = [ \"10.2.0.0/24\" ]; wire = \"ipsec\";"));
    CHECK(e.reason == Reason::CFG_BAD_VALUE);
    CHECK(e.what.find("\"p3\" or \"esp\"") != std::string::npos);
}

TEST_CASE("wire: an ESP remote refuses size hiding, static keys and missing subnets", "[config][esp]") {
    Error e = err(primary_with("subnets = [ \"10.2.0.0/24\" ]; wire = \"esp\"; size_hiding = true;"));
    CHECK(e.reason == Reason::CFG_ESP_SIZE_HIDING);
    CHECK(e.line == 4);
    // Inherited from local's defaults counts too: the peer could not read it either way.
    e = err(primary_with("subnets = [ \"10.2.0.0/24\" ]; wire = \"esp\";", "size_hiding = true;"));
    CHECK(e.reason == Reason::CFG_ESP_SIZE_HIDING);
    e = err(primary_with("subnets = [ \"10.2.0.0/24\" ]; wire = \"esp\"; static_keys = { tx_id = 0x100; rx_id = 0x200; "
                         "tx_key = \"00112233445566778899aabbccddeeff\"; rx_key = \"ffeeddccbbaa99887766554433221100\"; "
                         "tx_salt = \"01020304\"; rx_salt = \"05060708\"; };"));
    CHECK(e.reason == Reason::CFG_ESP_STATIC_KEYS);
    // A secondary's remote may do without subnets in P3 mode (the primary pushes them), not in ESP.
    const std::string sec = "role = \"secondary\";\nlocal = { address = \"192.0.2.2\"; };\n"
                            "remotes = ( { address = \"192.0.2.1\"; WIRE } );\n";
    auto s = sec;
    s.replace(s.find("WIRE"), 4, "");
    CHECK(ok(s).remotes[0].wire == WireMode::p3);
    s = sec;
    s.replace(s.find("WIRE"), 4, "wire = \"esp\";");
    CHECK(err(s).reason == Reason::CFG_ESP_SUBNETS);
}

TEST_CASE("wire: key arrays and lanes of an ESP remote are warned about, not refused", "[config][esp]") {
    auto c = ok(primary_with("subnets = [ \"10.2.0.0/24\" ]; wire = \"esp\"; array_size = 16; lanes = 2;"));
    bool warned = false;
    for (const auto& w : c.warnings)
        if (w.reason == Reason::CFG_ESP_IGNORED) {
            warned = true;
            CHECK(w.what.find("array_size, lanes") != std::string::npos);
        }
    CHECK(warned);
    c = ok(primary_with("subnets = [ \"10.2.0.0/24\" ]; wire = \"esp\";"));
    for (const auto& w : c.warnings) CHECK(w.reason != Reason::CFG_ESP_IGNORED);
}

TEST_CASE("wire: written back, compared, and a change of it sets the remote up again", "[config][esp]") {
    auto a = ok(primary_with("subnets = [ \"10.2.0.0/24\" ]; wire = \"esp\";"));
    const std::string text = to_libconfig(a);
    CHECK(text.find("wire = \"esp\";") != std::string::npos);
    auto again = ok(text);
    CHECK(again.remotes[0].wire == WireMode::esp);
    CHECK(same_settings(a, again));
    auto b = with_remote_settings(a, 1, {{"wire", "p3"}});
    REQUIRE(std::holds_alternative<Config>(b));
    const Config& bc = std::get<Config>(b);
    CHECK(bc.remotes[0].wire == WireMode::p3);
    CHECK_FALSE(same_settings(a, bc));
    const Diff d = diff(a, bc);
    REQUIRE(d.changed.size() == 1);
    CHECK(d.changed[0].reestablish);
    CHECK(std::find(d.changed[0].fields.begin(), d.changed[0].fields.end(), "wire") != d.changed[0].fields.end());
    // Unset: the default again.
    auto u = with_remote_settings(a, 1, {{"wire", ""}});
    REQUIRE(std::holds_alternative<Config>(u));
    CHECK(std::get<Config>(u).remotes[0].wire == WireMode::p3);
}
