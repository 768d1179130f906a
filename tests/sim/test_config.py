"""nginx.conf parsing: the seed example, nginx's errors, includes, inheritance and defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from sim.conf.config import (
    AccessRule,
    CacheValid,
    ConfigError,
    HealthCheckConf,
    LimitConnConf,
    LimitReqConf,
    ListenConf,
    NotSimulated,
    ProxyConf,
    ServerConf,
    StatusTest,
    Where,
)
from sim.conf.reader import load, loads

SEED = Path(__file__).resolve().parents[2] / "scenarios" / "configs" / "seed-example.conf"


def error_of(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        loads(text, filename="t.conf")
    return str(info.value)


def http(body: str) -> str:
    """A config whose http block holds ``body`` (line 1 of ``body`` is line 2 of the file)."""
    return "http {\n" + body + "\n}\n"


def location(body: str, upstream: str = "upstream u { zone z 64k; server a.example:80; }") -> str:
    """One server, one location ``/`` holding ``body`` (which starts on line 4)."""
    return http(f"{upstream}\nserver {{\nlocation / {{\n{body}\n}}\n}}")


# ---------------------------------------------------------------------------------------------
# The seed example


@pytest.fixture(scope="module")
def seed():
    return load(SEED)


def test_seed_http_upstream_has_zone_and_two_servers_with_port_80(seed):
    up = seed.http.upstreams["backend"]
    assert (up.kind, up.zone, up.zone_size, up.method) == ("http", "http_backend", 64 * 1024, "round_robin")
    where = Where(str(SEED), 8)
    first = ServerConf("backend1.example.com:80", "backend1.example.com", 80, weight=5, where=where)
    assert up.servers[0] == first
    assert up.servers[1] == ServerConf(
        "backend2.example.com:80", "backend2.example.com", 80, where=Where(str(SEED), 9)
    )


def test_seed_cache_path_and_keyval_zone(seed):
    cache = seed.http.cache_paths["cache_backend"]
    assert (cache.path, cache.keys_zone_size, cache.inactive_ms, cache.max_size) == (
        "/data/nginx/cache_backend", 10 * 1024 * 1024, 600_000, None,
    )  # fmt: skip
    zone = seed.http.keyval_zones["one"]
    got = (zone.kind, zone.size, zone.state, zone.timeout_ms, zone.sync)
    assert got == ("http", 32768, "one.keyval", None, False)
    assert [(k.key, k.variable, k.zone) for k in seed.http.keyvals] == [("$arg_text", "$text", "one")]


def test_seed_backend_server_proxies_to_the_upstream_with_cache_and_health_check(seed):
    server = seed.http.servers[0]
    assert server.server_names == ("backend.example.com",)
    assert server.status_zone == "server_backend"
    assert server.listens == (ListenConf(None, 80, where=Where(str(SEED), 14)),)
    (loc,) = server.locations
    got = (loc.path, loc.proxy_pass, loc.upstream, loc.proxy_pass_address)
    assert got == ("/", "http://backend", "backend", None)
    assert loc.proxy.cache == "cache_backend"
    assert loc.health_checks == (HealthCheckConf(where=Where(str(SEED), 21)),)


def test_seed_api_location_allows_writes_from_loopback_only(seed):
    server = seed.http.servers[1]
    assert [(x.address, x.port) for x in server.listens] == [("127.0.0.1", 80)]
    (loc,) = server.locations
    assert (loc.path, loc.api, loc.api_write) == ("/api", True, True)
    assert loc.access == (AccessRule("allow", "127.0.0.1"), AccessRule("deny", "all"))


def test_seed_stream_upstream_and_server(seed):
    up = seed.stream.upstreams["backend"]
    assert (up.kind, up.zone, up.zone_size) == ("stream", "stream_backend", 65536)
    assert [(s.address, s.weight) for s in up.servers] == [
        ("backend1.example.com:12345", 5), ("backend2.example.com:12345", 1),
    ]  # fmt: skip
    (server,) = seed.stream.servers
    assert server.listens == (ListenConf("127.0.0.1", 12345, where=Where(str(SEED), 50)),)
    got = (server.upstream, server.status_zone, server.proxy_timeout_ms)
    assert got == ("backend", "server_backend", 600_000)
    assert server.health_checks == (HealthCheckConf(where=Where(str(SEED), 53)),)


def test_seed_has_nothing_unsimulated_and_reads_one_file(seed):
    assert seed.not_simulated == ()
    assert seed.files == (str(SEED),)
    assert seed.worker_processes == 1


# ---------------------------------------------------------------------------------------------
# Errors: each a tiny config and the exact "file:line: message"

ERRORS = [
    ("unknown_directive", http("foo bar;"), 't.conf:2: unknown directive "foo"'),
    ("not_allowed_here", "proxy_pass http://x;", 't.conf:1: "proxy_pass" directive is not allowed here'),
    ("unclosed_block", "http {\n", 't.conf:1: unexpected end of file, expecting "}"'),
    ("extra_brace", "http { }\n}", 't.conf:2: unexpected "}"'),
    ("missing_semicolon", "worker_processes 2", 't.conf:1: unexpected end of file, expecting ";" or "}"'),
    ("bad_arg_count", http("keepalive_requests;"),
     't.conf:2: invalid number of arguments in "keepalive_requests" directive'),
    ("bad_flag", http("server { location / { proxy_cache_lock yes; } }"),
     't.conf:2: invalid value "yes" in "proxy_cache_lock" directive, it must be "on" or "off"'),
    ("worker_processes", "worker_processes many;", 't.conf:1: "worker_processes" directive invalid value'),
    ("duplicate_http", "http {}\nhttp {}", 't.conf:2: "http" directive is duplicate'),
    ("server_param", http("upstream u {\nserver a:1 foo;\n}"), 't.conf:3: invalid parameter "foo"'),
    ("weight_zero", http("upstream u {\nserver a:1 weight=0;\n}"), 't.conf:3: invalid parameter "weight=0"'),
    ("fail_timeout_ms", http("upstream u {\nserver a:1 fail_timeout=500ms;\n}"),
     't.conf:3: invalid parameter "fail_timeout=500ms"'),
    ("route_too_long", http("upstream u {\nserver a:1 route=" + "r" * 33 + ";\n}"),
     f't.conf:3: invalid parameter "route={"r" * 33}"'),
    ("backup_after_hash", http("upstream u {\nhash $uri;\nserver a:1 backup;\n}"),
     't.conf:4: balancing method does not support parameter "backup"'),
    ("backup_before_random", http("upstream u {\nserver a:1 backup;\nrandom;\n}"),
     't.conf:3: balancing method does not support parameter "backup"'),
    ("slow_start_ip_hash", http("upstream u {\nip_hash;\nserver a:1 slow_start=10s;\n}"),
     't.conf:4: balancing method does not support parameter "slow_start"'),
    ("method_redefined", http("upstream u {\nleast_conn;\nleast_time header;\nserver a:1;\n}"),
     "t.conf:4: load balancing method redefined"),
    ("least_time_stream_mode_in_http", http("upstream u {\nleast_time connect;\nserver a:1;\n}"),
     't.conf:3: invalid parameter "connect"'),
    ("drain_in_stream", "stream {\nupstream u {\nserver a:1 drain;\n}\n}",
     't.conf:3: invalid parameter "drain"'),
    ("stream_server_without_port", "stream {\nupstream u {\nserver a.example;\n}\n}",
     't.conf:3: no port in upstream "a.example"'),
    ("invalid_port", http("upstream u {\nserver a:99999;\n}"),
     't.conf:3: invalid port in upstream "a:99999"'),
    ("duplicate_upstream", http("upstream u { server a:1; }\nupstream u { server b:1; }"),
     't.conf:3: duplicate upstream "u"'),
    ("empty_upstream", http("upstream u {\n}"), "t.conf:2: no servers are inside upstream"),
    ("service_without_resolve", http("upstream u {\nzone z 64k;\nserver a.example service=http;\n}"),
     't.conf:4: service upstream "a.example" requires "resolve" parameter'),
    ("resolve_without_zone", http("resolver 10.0.0.53;\nupstream u {\nserver a.example resolve;\n}"),
     't.conf:4: resolving names at run time requires upstream "u" in t.conf:3 to be in shared memory'),
    ("resolve_without_resolver", http("upstream u {\nzone z 64k;\nserver a.example resolve;\n}"),
     "t.conf:4: no resolver defined to resolve names at run time"),
    ("state_with_server", http("upstream u {\nzone z 64k;\nstate /var/u.state;\nserver a:1;\n}"),
     't.conf:4: "state" directive cannot be used with "server" directives'),
    ("zone_size_conflict",
     http("upstream u { zone z 64k; server a:1; }\nupstream v { zone z 32k; server a:1; }"),
     't.conf:3: the size 32768 of shared memory zone "z" conflicts with already declared size 65536'),
    ("zone_without_size", http("upstream u {\nzone z;\nserver a:1;\n}"),
     't.conf:3: zero size shared memory zone "z"'),
    ("proxy_pass_duplicate", location("proxy_pass http://u;\nproxy_pass http://u;"),
     't.conf:6: "proxy_pass" directive is duplicate'),
    ("proxy_pass_unknown_name", location("proxy_pass http://backnd;"),
     't.conf:5: host not found in upstream "backnd"'),
    ("proxy_pass_upstream_with_port", location("proxy_pass http://u:8080;"),
     't.conf:5: upstream "u" may not have port 8080'),
    ("proxy_pass_bad_scheme", location("proxy_pass ftp://u;"), 't.conf:5: invalid URL prefix in "ftp://u"'),
    ("stream_proxy_pass_no_port", "stream {\nserver {\nlisten 12345;\nproxy_pass nowhere;\n}\n}",
     't.conf:4: no port in upstream "nowhere"'),
    ("proxy_cache_unknown", location("proxy_cache nope;"), 't.conf:5: "proxy_cache" zone "nope" is unknown'),
    ("keyval_unknown", http("keyval $arg_a $a zone=nope;"), 't.conf:2: "keyval" zone "nope" is unknown'),
    ("keyval_sync_without_timeout", http("keyval_zone zone=one:32k sync;"),
     't.conf:2: "keyval_zone" with "sync" requires "timeout"'),
    ("keyval_zone_without_zone", http("keyval_zone state=a.json;"),
     't.conf:2: "keyval_zone" must have "zone" parameter'),
    ("limit_req_unknown", location("limit_req zone=nope;"), 't.conf:5: unknown limit_req_zone "nope"'),
    ("limit_conn_unknown", location("limit_conn nope 10;"), 't.conf:5: unknown limit_conn_zone "nope"'),
    ("limit_req_rate", http("limit_req_zone $binary_remote_addr zone=r:1m rate=10r/h;"),
     't.conf:2: invalid rate "rate=10r/h"'),
    ("limit_req_status_range", location("limit_req_status 200;"),
     "t.conf:5: value must be between 400 and 599"),
    ("duplicate_zone", http("keyval_zone zone=one:32k;\nkeyval_zone zone=one:64k;"),
     't.conf:3: duplicate zone "one"'),
    ("zone_for_two_uses", http("upstream u { zone one 64k; server a:1; }\nkeyval_zone zone=one:32k;"),
     't.conf:3: the shared memory zone "one" is already declared for a different use'),
    ("health_check_without_zone",
     location("proxy_pass http://u;\nhealth_check;", "upstream u { server a:1; }"),
     't.conf:6: health check requires upstream "u" to be in shared memory'),
    ("health_check_without_upstream", location("proxy_pass http://10.0.0.1:80;\nhealth_check;"),
     't.conf:6: "health_check" requires "proxy_pass" to an upstream in shared memory'),
    ("health_check_unknown_match", location("proxy_pass http://u;\nhealth_check match=nope;"),
     't.conf:6: match "nope" not found'),
    ("persistent_without_mandatory", location("proxy_pass http://u;\nhealth_check persistent;"),
     't.conf:6: "persistent" parameter requires "mandatory"'),
    ("health_check_bad_interval", location("proxy_pass http://u;\nhealth_check interval=soon;"),
     't.conf:6: invalid parameter "interval=soon"'),
    ("api_twice_in_server", http("server {\nlocation /a { api; }\nlocation /b { api write=on; }\n}"),
     't.conf:4: only one "api" location is allowed per server'),
    ("api_bad_parameter", location("api write=yes;"), 't.conf:5: invalid parameter "write=yes"'),
    ("next_upstream_value", location("proxy_next_upstream error http_418;"),
     't.conf:5: invalid value "http_418"'),
    ("bad_timeout", location("proxy_read_timeout 5parsecs;"),
     't.conf:5: "proxy_read_timeout" directive invalid value'),
    ("duplicate_scalar", location("proxy_read_timeout 5s;\nproxy_read_timeout 6s;"),
     't.conf:6: "proxy_read_timeout" directive is duplicate'),
    ("cache_valid_status", location("proxy_cache_valid 200 999 10m;"), 't.conf:5: invalid status "999"'),
    ("cache_path_without_keys_zone", http("proxy_cache_path /tmp/c levels=1:2;"),
     't.conf:2: "proxy_cache_path" must have "keys_zone" parameter'),
    ("cache_path_levels", http("proxy_cache_path /tmp/c levels=3 keys_zone=c:1m;"),
     't.conf:2: invalid "levels" "levels=3"'),
    ("location_modifier", http("server {\nlocation ~~ /x { }\n}"),
     't.conf:3: invalid location modifier "~~"'),
    ("location_outside_parent", http("server {\nlocation /a {\nlocation /b { }\n}\n}"),
     't.conf:4: location "/b" is outside location "/a"'),
    ("duplicate_location", http("server {\nlocation /a { }\nlocation /a { }\n}"),
     't.conf:4: duplicate location "/a"'),
    ("alias_after_root", location("root /srv;\nalias /srv/x;"),
     't.conf:6: "alias" directive is duplicate, "root" directive was specified earlier'),
    ("duplicate_default_server",
     http("server { listen 80 default_server; }\nserver { listen 80 default_server; }"),
     "t.conf:3: a duplicate default server for 0.0.0.0:80"),
    ("match_unknown_test", http("match m {\nstatus 200;\nsend x;\n}"), 't.conf:4: unknown directive "send"'),
    ("stream_listen_without_port", "stream {\nserver {\nlisten 127.0.0.1;\nreturn x;\n}\n}",
     't.conf:3: no port in "127.0.0.1" of the "listen" directive'),
    ("stream_server_without_handler", "stream {\nserver {\nlisten 12345;\n}\n}",
     "t.conf:2: no handler for server"),
    ("zone_sync_without_servers", "stream {\nserver {\nlisten 9000;\nzone_sync;\n}\n}",
     't.conf:4: no "zone_sync_server" is defined for "zone_sync"'),
    ("zone_sync_server_without_port",
     "stream {\nserver {\nlisten 9000;\nzone_sync;\nzone_sync_server n1.example;\n}\n}",
     't.conf:5: no port in "n1.example" of the "zone_sync_server" directive'),
    ("relative_include_inline", http("include other.conf;"),
     't.conf:2: relative include "other.conf" needs a base directory (pass base_dir)'),
]  # fmt: skip


@pytest.mark.parametrize(("text", "expected"), [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS])
def test_invalid_config_is_refused_with_nginx_message(text, expected):
    assert error_of(text) == expected


def test_config_error_carries_message_and_where_apart():
    with pytest.raises(ConfigError) as info:
        loads(http("foo;"), filename="t.conf")
    assert info.value.message == 'unknown directive "foo"'
    assert info.value.where == Where("t.conf", 2)


# ---------------------------------------------------------------------------------------------
# Includes


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_relative_include_is_taken_from_the_main_files_directory(tmp_path):
    write(tmp_path / "conf.d" / "up.conf", "upstream u { server a:1; }\n")
    # nginx resolves relative includes against its configuration directory, not the includer's.
    write(tmp_path / "conf.d" / "nested.conf", "include conf.d/up.conf;\n")
    main = write(tmp_path / "nginx.conf", "http {\ninclude conf.d/nested.conf;\n}\n")
    conf = load(main)
    assert list(conf.http.upstreams) == ["u"]
    assert conf.http.upstreams["u"].where == Where(str(tmp_path / "conf.d" / "up.conf"), 1)
    conf_d = tmp_path / "conf.d"
    assert conf.files == (str(main), str(conf_d / "nested.conf"), str(conf_d / "up.conf"))


def test_glob_include_reads_matches_in_sorted_order(tmp_path):
    write(tmp_path / "sites" / "b.conf", "server { server_name b; }\n")
    write(tmp_path / "sites" / "a.conf", "server { server_name a; }\n")
    write(tmp_path / "sites" / "c.txt", "garbage\n")
    main = write(tmp_path / "nginx.conf", "http {\ninclude sites/*.conf;\n}\n")
    assert [s.server_names for s in load(main).http.servers] == [("a",), ("b",)]


def test_glob_include_matching_nothing_is_accepted(tmp_path):
    main = write(tmp_path / "nginx.conf", "http {\ninclude sites/*.conf;\n}\n")
    assert load(main).http.servers == ()


def test_absolute_include_is_remapped_by_prefix(tmp_path):
    write(tmp_path / "repo" / "conf.d" / "up.conf", "upstream u { server a:1; }\n")
    main = write(tmp_path / "nginx.conf", "http {\ninclude /etc/nginx/conf.d/*.conf;\n}\n")
    conf = load(main, include_map={"/etc/nginx": str(tmp_path / "repo")})
    assert list(conf.http.upstreams) == ["u"]
    assert conf.files[1] == str(tmp_path / "repo" / "conf.d" / "up.conf")


def test_include_map_matches_whole_path_components(tmp_path):
    write(tmp_path / "repo" / "a.conf", "upstream a { server a:1; }\n")
    write(tmp_path / "nginx2" / "b.conf", "upstream b { server b:1; }\n")
    main = write(
        tmp_path / "nginx.conf",
        f"http {{\ninclude /etc/nginx/a.conf;\ninclude {tmp_path}/nginx2/b.conf;\n}}\n",
    )
    conf = load(main, include_map={"/etc/nginx": str(tmp_path / "repo"), str(tmp_path / "nginx"): "/nowhere"})
    assert list(conf.http.upstreams) == ["a", "b"]


def test_one_file_included_into_two_servers_is_read_for_each(tmp_path):
    write(tmp_path / "common.conf", "location /health { return 200; }\n")
    twice = "server { include common.conf; }\n" * 2
    main = write(tmp_path / "nginx.conf", "http {\n" + twice + "}\n")
    servers = load(main).http.servers
    assert [[loc.path for loc in s.locations] for s in servers] == [["/health"], ["/health"]]


def test_inline_config_includes_relative_to_base_dir(tmp_path):
    write(tmp_path / "up.conf", "upstream u { server a:1; }\n")
    conf = loads("http {\ninclude up.conf;\n}\n", base_dir=tmp_path)
    assert list(conf.http.upstreams) == ["u"]
    assert conf.files == ("<inline>", str(tmp_path / "up.conf"))


def test_missing_include_names_the_including_line(tmp_path):
    main = write(tmp_path / "nginx.conf", "http {\ninclude missing.conf;\n}\n")
    with pytest.raises(ConfigError) as info:
        load(main)
    missing = tmp_path / "missing.conf"
    assert str(info.value) == f'{main}:2: open() "{missing}" failed (2: No such file or directory)'


def test_error_inside_included_file_names_that_file(tmp_path):
    inc = write(tmp_path / "bad.conf", "\n\nbogus on;\n")
    main = write(tmp_path / "nginx.conf", "http {\ninclude bad.conf;\n}\n")
    with pytest.raises(ConfigError) as info:
        load(main)
    assert str(info.value) == f'{inc}:3: unknown directive "bogus"'


def test_directives_in_an_included_file_are_checked_in_the_including_context(tmp_path):
    write(tmp_path / "loc.conf", "proxy_pass http://u;\n")
    main = write(tmp_path / "nginx.conf", "http {\ninclude loc.conf;\n}\n")
    with pytest.raises(ConfigError) as info:
        load(main)
    assert str(info.value) == f'{tmp_path / "loc.conf"}:1: "proxy_pass" directive is not allowed here'


def test_recursive_include_is_refused(tmp_path):
    main = write(tmp_path / "nginx.conf", "include nginx.conf;\n")
    with pytest.raises(ConfigError) as info:
        load(main)
    assert str(info.value) == f'{main}:1: include of "{main}" is recursive'


# ---------------------------------------------------------------------------------------------
# Inheritance


INHERIT = """
http {
    upstream u { zone z 64k; server a.example; }
    limit_req_zone $binary_remote_addr zone=r:1m rate=30r/m;
    proxy_cache_path /tmp/c keys_zone=c:1m;
    server {
        proxy_connect_timeout 3s;
        allow 10.0.0.0/8;
        deny all;
        limit_req zone=r burst=5;
        location / {
            proxy_pass http://u;
            proxy_cache_valid 404 1m;
            location /inner {
                proxy_read_timeout 7s;
                allow all;
            }
        }
        location /own {
            proxy_connect_timeout 9s;
            limit_req_dry_run on;
        }
    }
    proxy_read_timeout 5s;
    proxy_cache_valid 200 10m;
    limit_req_status 429;
}
"""


@pytest.fixture(scope="module")
def inherit():
    return loads(INHERIT)


def test_http_level_directive_after_the_server_still_applies(inherit):
    root = inherit.http.servers[0].locations[0]
    assert root.proxy.read_timeout_ms == 5000
    assert root.proxy.connect_timeout_ms == 3000  # from server{}


def test_inner_level_overrides_outer_scalar(inherit):
    own = inherit.http.servers[0].locations[1]
    assert own.proxy.connect_timeout_ms == 9000
    inner = inherit.http.servers[0].locations[0].locations[0]
    assert (inner.proxy.read_timeout_ms, inner.proxy.connect_timeout_ms) == (7000, 3000)


def test_array_directive_at_inner_level_replaces_the_outer_list(inherit):
    root = inherit.http.servers[0].locations[0]
    assert root.proxy.cache_valid == (CacheValid((404,), False, 60_000),)
    own = inherit.http.servers[0].locations[1]
    assert own.proxy.cache_valid == (CacheValid((200,), False, 600_000),)


def test_access_rules_are_replaced_not_merged(inherit):
    root, own = inherit.http.servers[0].locations
    assert root.access == (AccessRule("allow", "10.0.0.0/8"), AccessRule("deny", "all"))
    assert root.locations[0].access == (AccessRule("allow", "all"),)
    assert own.access == root.access


def test_limit_req_inherits_with_status_and_dry_run_resolved_where_it_applies(inherit):
    root, own = inherit.http.servers[0].locations
    assert root.limit_req == (LimitReqConf("r", burst=5, status=429),)
    assert own.limit_req == (LimitReqConf("r", burst=5, dry_run=True, status=429),)
    assert inherit.http.limit_req_zones["r"].rate_per_s == 0.5


def test_proxy_pass_and_health_check_are_not_inherited_by_nested_locations(inherit):
    inner = inherit.http.servers[0].locations[0].locations[0]
    assert (inner.proxy_pass, inner.upstream, inner.health_checks) == (None, None, ())


def test_location_status_zone_reaches_nested_locations_until_turned_off():
    conf = loads(
        http("server {\nlocation / {\nstatus_zone root;\nlocation /a { }\n"
             "location /b { status_zone off; }\n}\n}")
    )
    (root,) = conf.http.servers[0].locations
    zones = (root.status_zone, root.locations[0].status_zone, root.locations[1].status_zone)
    assert zones == ("root", "root", None)


def test_stream_level_settings_reach_servers():
    conf = loads(
        "stream {\nproxy_timeout 30s;\nhealth_check_timeout 2s;\n"
        "limit_conn_zone $binary_remote_addr zone=c:1m;\n"
        "limit_conn c 10;\nserver {\nlisten 53 udp;\nproxy_pass 10.0.0.1:53;\nproxy_timeout 1s;\n}\n"
        "server {\nlisten 54;\nproxy_pass 10.0.0.1:54;\nproxy_next_upstream off;\n}\n}"
    )
    a, b = conf.stream.servers
    assert (a.proxy_timeout_ms, b.proxy_timeout_ms, b.health_check_timeout_ms) == (1000, 30_000, 2000)
    assert a.listens[0].udp and not b.listens[0].udp
    assert (a.proxy_next_upstream, b.proxy_next_upstream) == (True, False)
    assert a.limit_conn == (LimitConnConf("c", 10),)
    assert a.proxy_pass_address == "10.0.0.1:53"


# ---------------------------------------------------------------------------------------------
# Defaults and parsing details


def test_server_without_listen_gets_every_address_port_80_and_empty_name():
    (server,) = loads(http("server { }")).http.servers
    assert [(x.address, x.port) for x in server.listens] == [(None, 80)]
    assert server.server_names == ("",)


def test_listen_forms_and_flags():
    conf = loads(http("server {\nlisten 8080 default_server;\nlisten [::1]:8443 ssl;\nlisten *:81;\n}"))
    got = [(x.address, x.port, x.ssl, x.default_server) for x in conf.http.servers[0].listens]
    assert got == [(None, 8080, False, True), ("::1", 8443, True, False), (None, 81, False, False)]
    assert conf.http.servers[0].ssl


def test_location_defaults_for_proxying():
    (loc,) = loads(location("proxy_pass http://u;")).http.servers[0].locations
    assert loc.proxy == ProxyConf()
    assert loc.proxy.next_upstream == ("error", "timeout")


def test_worker_processes_auto_is_two_not_the_host_cpu_count():
    assert loads("worker_processes auto;").worker_processes == 2
    assert loads("worker_processes 4;").worker_processes == 4


@pytest.mark.parametrize(
    ("url", "upstream", "address"),
    [
        ("http://u", "u", None),
        ("http://U/path", "u", None),
        ("http://10.0.0.7:8080/x", None, "10.0.0.7:8080"),
        ("http://b.example.com", None, "b.example.com:80"),
        ("https://b.example.com", None, "b.example.com:443"),
        ("http://[::1]", None, "[::1]:80"),
        ("http://$host", None, None),
    ],
)
def test_proxy_pass_names_an_upstream_or_an_address(url, upstream, address):
    (loc,) = loads(location(f"proxy_pass {url};")).http.servers[0].locations
    assert (loc.proxy_pass, loc.upstream, loc.proxy_pass_address) == (url, upstream, address)


def test_upstream_server_parameters_are_parsed_into_milliseconds_and_flags():
    conf = loads(http(
        "resolver 10.0.0.53 valid=30s ipv6=off status_zone=dns;\nresolver_timeout 5s;\n"
        "upstream u {\nzone z 64k;\nleast_time last_byte inflight;\nqueue 100 timeout=70s;\nkeepalive 16;\n"
        "server a.example:8080 weight=2 max_conns=10 max_fails=3 fail_timeout=1m slow_start=30s\n"
        "    route=r1 drain;\n"
        "server b.example resolve service=http backup down;\nserver unix:/tmp/s.sock;\nsticky cookie srv;\n}"
    ))  # fmt: skip
    up = conf.http.upstreams["u"]
    a, b, c = up.servers
    assert (a.address, a.weight, a.max_conns, a.max_fails, a.fail_timeout_ms, a.slow_start_ms) == (
        "a.example:8080", 2, 10, 3, 60_000, 30_000,
    )  # fmt: skip
    assert (a.route, a.drain, a.resolve) == ("r1", True, False)
    got = (b.address, b.port, b.service, b.resolve, b.backup, b.down)
    assert got == ("b.example", None, "http", True, True, True)
    assert (c.address, c.host, c.port) == ("unix:/tmp/s.sock", "unix:/tmp/s.sock", None)
    assert (up.method, up.least_time_mode, up.least_time_inflight) == ("least_time", "last_byte", True)
    assert (up.queue_size, up.queue_timeout_ms, up.keepalive) == (100, 70_000, 16)
    (resolver,) = conf.http.resolvers
    r = resolver
    assert (r.addresses, r.valid_ms, r.ipv6, r.status_zone, r.timeout_ms) == (
        ("10.0.0.53",), 30_000, False, "dns", 5000,
    )  # fmt: skip
    assert conf.not_simulated == (NotSimulated("sticky", Where("<inline>", 13)),)


@pytest.mark.parametrize(
    ("directive", "expected"),
    [
        ("hash $uri consistent;", {"method": "hash", "hash_key": "$uri", "hash_consistent": True}),
        ("random;", {"method": "random", "random_two": False, "random_method": None}),
        ("random two;", {"method": "random", "random_two": True, "random_method": "least_conn"}),
        ("random two least_time=header;", {"random_two": True, "random_method": "least_time=header"}),
        ("ip_hash;", {"method": "ip_hash"}),
        ("least_conn;", {"method": "least_conn"}),
    ],
)
def test_balancing_methods(directive, expected):
    up = loads(http(f"upstream u {{\n{directive}\nserver a:1;\n}}")).http.upstreams["u"]
    assert {k: getattr(up, k) for k in expected} == expected


def test_health_check_parameters_with_bare_numbers_in_seconds():
    conf = loads(http(
        "match ok { status 200 301-303; header ! X-Bad; require $a; }\n"
        "upstream u { zone z 64k; server a:1; }\nserver {\nlocation / {\nproxy_pass http://u;\n"
        "health_check interval=10 jitter=2s fails=3 passes=2 uri=/health port=8081 match=ok\n"
        "    mandatory persistent;\n}\n}"
    ))  # fmt: skip
    (hc,) = conf.http.servers[0].locations[0].health_checks
    assert hc == HealthCheckConf(
        interval_ms=10_000, jitter_ms=2000, fails=3, passes=2, uri="/health", port=8081, match="ok",
        mandatory=True, persistent=True, where=Where("<inline>", 7),
    )  # fmt: skip
    match = conf.http.matches["ok"]
    assert match.status == StatusTest(False, ((200, 200), (301, 303)))
    assert [(h.name, h.op) for h in match.headers] == [("X-Bad", "absent")]
    assert match.require == ("$a",)


def test_proxy_cache_valid_forms_and_cache_settings():
    conf = loads(http(
        "proxy_cache_path /c levels=1:2 keys_zone=c:1m inactive=1h max_size=1g\n"
        "    use_temp_path=off loader_files=50;\n"
        "server {\nlocation / {\nproxy_cache c;\nproxy_cache_valid 5m;\nproxy_cache_valid any 1m;\n"
        "proxy_cache_use_stale error updating;\nproxy_cache_bypass $cookie_nocache $arg_nocache;\n"
        "proxy_cache_lock on;\nproxy_cache_min_uses 3;\n}\nlocation /off { proxy_cache off; }\n}"
    ))  # fmt: skip
    path = conf.http.cache_paths["c"]
    got = (path.levels, path.inactive_ms, path.max_size, path.loader_files)
    assert got == ("1:2", 3_600_000, 1024**3, 50)
    loc, off = conf.http.servers[0].locations
    assert loc.proxy.cache_valid == (
        CacheValid((200, 301, 302), False, 300_000), CacheValid((), True, 60_000),
    )  # fmt: skip
    assert loc.proxy.cache_use_stale == ("error", "updating")
    assert loc.proxy.cache_bypass == ("$cookie_nocache", "$arg_nocache")
    assert (loc.proxy.cache_lock, loc.proxy.cache_min_uses) == (True, 3)
    assert off.proxy.cache is None


def test_proxy_next_upstream_off_is_an_empty_tuple():
    (loc,) = loads(location("proxy_next_upstream off;")).http.servers[0].locations
    assert loc.proxy.next_upstream == ()


def test_keyval_zone_with_sync_and_type():
    zone = loads(http("keyval_zone zone=s:1m timeout=1h type=ip sync;")).http.keyval_zones["s"]
    assert (zone.size, zone.timeout_ms, zone.type, zone.sync) == (1024**2, 3_600_000, "ip", True)


def test_return_and_regex_locations():
    conf = loads(http(
        "server {\nreturn 301 https://example.com$request_uri;\n"
        "location ~* \\.(?<ext>png|jpg)$ { return 404; }\n"
        "location = /x { return https://y.example; }\nlocation ^~ /img { return 200 ok; }\n}"
    ))  # fmt: skip
    server = conf.http.servers[0]
    assert (server.return_code, server.return_text) == (301, "https://example.com$request_uri")
    got = [(x.modifier, x.path, x.return_code, x.return_text) for x in server.locations]
    assert got == [
        ("~*", "\\.(?<ext>png|jpg)$", 404, None),
        ("=", "/x", 302, "https://y.example"),
        ("^~", "/img", 200, "ok"),
    ]  # fmt: skip


def test_stream_zone_sync_takes_stream_level_settings():
    conf = loads(
        "stream {\nresolver 10.0.0.53;\nzone_sync_interval 500ms;\nzone_sync_buffers 16 8k;\n"
        "server {\nlisten 9000;\nzone_sync;\nzone_sync_server n1.example:9000;\n"
        "zone_sync_server cluster.example:9000 resolve;\nzone_sync_timeout 2s;\nzone_sync_ssl on;\n"
        "zone_sync_ssl_verify on;\n}\n}"
    )
    (server,) = conf.stream.servers
    zs = server.zone_sync
    assert [(s.host, s.port, s.resolve) for s in zs.servers] == [
        ("n1.example", 9000, False), ("cluster.example", 9000, True),
    ]  # fmt: skip
    assert (zs.interval_ms, zs.buffers_number, zs.buffers_size, zs.recv_buffer_size) == (500, 16, 8192, 8192)
    got = (zs.timeout_ms, zs.connect_timeout_ms, zs.ssl, zs.where)
    assert got == (2000, 5000, True, Where("<inline>", 7))
    assert conf.not_simulated == (NotSimulated("zone_sync_ssl_verify", Where("<inline>", 12)),)


def test_stream_match_decodes_hex_escapes_in_send_and_expect():
    conf = loads('stream {\nmatch m {\nsend "\\x00\\x01PING\\r\\n";\nexpect "\\x2bPONG";\n}\n}')
    match = conf.stream.matches["m"]
    assert (match.send, match.expect, match.expect_regex) == ("\x00\x01PING\r\n", "+PONG", False)


def test_valid_but_unsimulated_directives_are_listed_in_order_with_where():
    conf = loads(
        "user nginx;\nevents {\nworker_connections 1024;\n}\n"
        "http {\nsendfile on;\ntypes { text/html html; }\n"
        "server {\nadd_header X-A b;\nlocation / {\nproxy_set_header Host $host;\ngzip on;\n}\n}\n}"
    )
    got = [(n.directive, n.where.line) for n in conf.not_simulated]
    assert got == [
        ("user", 1), ("events", 2), ("worker_connections", 3), ("sendfile", 6), ("types", 7),
        ("add_header", 9), ("proxy_set_header", 11), ("gzip", 12),
    ]  # fmt: skip


def test_upstreams_sharing_a_zone_take_the_size_declared_once():
    conf = loads(http("upstream a { zone shared 64k; server a:1; }\nupstream b { zone shared; server b:1; }"))
    got = [(u.zone, u.zone_size) for u in conf.http.upstreams.values()]
    assert got == [("shared", 65536), ("shared", 65536)]


def test_location_regex_with_invalid_syntax_is_refused():
    message = error_of(http("server {\nlocation ~ ^/(a {\n}\n}"))
    assert message == 't.conf:3: pcre2_compile() failed: missing ), unterminated subpattern in "^/(a"'
