"""Server and location selection as nginx does it."""

from sim.conf.reader import loads
from sim.http.routing import Router

CONF = """
http {
    server { listen 80; server_name example.com www.example.com; location / { return 200 "exact-name"; } }
    server { listen 80; server_name *.example.com; location / { return 200 "leading-wildcard"; } }
    server { listen 80; server_name mail.*; location / { return 200 "trailing-wildcard"; } }
    server { listen 80; server_name ~^api\\d+\\.example\\.org$; location / { return 200 "regex"; } }
    server { listen 80 default_server; server_name _; location / { return 200 "default"; } }
    server { listen 8080; server_name example.com;
        location = /exact { return 200 "eq"; }
        location /static/ { return 200 "prefix-static"; }
        location ^~ /static/img/ { return 200 "caret"; }
        location ~ \\.php$ { return 200 "regex-php"; }
        location ~* \\.(png|jpg)$ { return 200 "regex-img"; }
        location / { return 200 "root";
            location /nested/ { return 200 "nested"; }
        }
    }
}
"""


def router():
    conf = loads(CONF, filename="routing.conf")
    return Router(conf.http.servers), conf.http.servers


def body(servers, si, loc):
    return loc.return_text


def test_exact_server_name_wins():
    r, s = router()
    assert body(s, 0, r.location_for(r.server_for("www.example.com", 80), "/")) == "exact-name"


def test_leading_wildcard_beats_trailing_wildcard():
    r, _ = router()
    assert r.location_for(r.server_for("shop.example.com", 80), "/").return_text == "leading-wildcard"
    assert r.location_for(r.server_for("mail.example.net", 80), "/").return_text == "trailing-wildcard"


def test_regex_server_names_and_default_server():
    r, _ = router()
    assert r.location_for(r.server_for("api7.example.org", 80), "/").return_text == "regex"
    assert r.location_for(r.server_for("unknown.test", 80), "/").return_text == "default"


def test_host_header_port_and_case_are_ignored():
    r, _ = router()
    assert r.server_for("WWW.Example.COM:80", 80) == r.server_for("www.example.com", 80)


def test_no_server_on_that_port():
    r, _ = router()
    assert r.server_for("example.com", 9999) is None


def test_location_rules_exact_caret_regex_prefix_nested():
    r, _ = router()
    si = r.server_for("example.com", 8080)
    cases = {
        "/exact": "eq",
        "/exact/more": "root",
        "/static/app.js": "prefix-static",
        "/static/img/logo.png": "caret",  # ^~ stops the regex search
        "/static/logo.png": "regex-img",  # a regex beats the longest plain prefix
        "/index.php": "regex-php",
        "/a/B.JPG": "regex-img",  # ~* ignores case
        "/nested/page": "nested",
        "/other?x=1": "root",
    }
    for uri, expected in cases.items():
        assert r.location_for(si, uri).return_text == expected, uri


def test_an_explicit_listen_address_takes_its_connections_from_wildcard_servers():
    conf = loads(
        """
        http {
            server { server_name backend.example.com; location / { return 200 "data"; } }
            server { listen 127.0.0.1; location /api { return 200 "api"; } }
        }
        """,
        filename="seed-like.conf",
    )
    r = Router(conf.http.servers)
    assert r.server_for("anything", 80, "127.0.0.1") == 1
    assert r.server_for("backend.example.com", 80, "127.0.0.1") == 1
    assert r.server_for("backend.example.com", 80, "127.0.0.5") == 0
    assert r.server_for("backend.example.com", 80, None) == 0
