"""http ``server{}`` and ``location{}`` blocks, and the directives they inherit from ``http``.

The proxy, cache, limit and access directives valid at all three levels go into one
:class:`_Scope` per level. A server's ``listen``, ``server_name`` and ``return``; a location's
modifier and path with nginx's rules for nesting them, ``proxy_pass``, ``api``, ``root`` or
``alias`` and ``health_check``. Once the whole ``http`` block is read, each location becomes a
:class:`LocationConf` that carries its effective, inherited values.
"""

from __future__ import annotations

import ipaddress
import re

from sim.conf.build_upstream import _UpstreamBuilder
from sim.conf.build_zones import _ZonesBuilder
from sim.conf.config import (
    AccessRule,
    CacheValid,
    ClientConf,
    ConfigError,
    ErrorPageConf,
    HttpServerConf,
    ListenConf,
    LocationConf,
    ProxyConf,
)
from sim.conf.directives import (
    _check_regex,
    _flag_arg,
    _invalid,
    _num_arg,
    _parse_int,
    _parse_size,
    _parse_time,
    _Proto,
    _RawLocation,
    _RawServer,
    _Scope,
    _size_arg,
    _Stmt,
    _time_arg,
)

_HTTP_NEXT_UPSTREAM = (
    "error", "timeout", "invalid_header", "http_500", "http_502", "http_503", "http_504",
    "http_403", "http_404", "http_429", "non_idempotent", "off",
)  # fmt: skip
_CACHE_USE_STALE = (
    "error", "timeout", "invalid_header", "updating", "http_500", "http_502", "http_503",
    "http_504", "http_403", "http_404", "http_429", "off",
)  # fmt: skip
_HTTP_TIMES = (
    "proxy_connect_timeout", "proxy_read_timeout", "proxy_send_timeout",
    "proxy_next_upstream_timeout", "proxy_cache_lock_timeout", "proxy_cache_lock_age",
)  # fmt: skip
#: scope key (the directive, or a value one sets) -> its ClientConf field
_CLIENT_FIELDS = {
    "client_header_buffer_size": "header_buffer_size", "large_client_header_buffers": "large_header_buffers",
    "client_header_timeout": "header_timeout_ms", "client_body_timeout": "body_timeout_ms",
    "client_max_body_size": "max_body_size", "keepalive_timeout": "keepalive_timeout_ms",
    "keepalive_header": "keepalive_header_s", "keepalive_requests": "keepalive_requests",
    "merge_slashes": "merge_slashes", "max_headers": "max_headers", "lingering_close": "lingering_close",
    "lingering_time": "lingering_time_ms", "lingering_timeout": "lingering_timeout_ms",
}  # fmt: skip
_CLIENT_DIRECTIVES = frozenset(_CLIENT_FIELDS) - {"keepalive_header"}  # set by keepalive_timeout
_HTTP_FLAGS = (
    "proxy_cache_revalidate", "proxy_cache_lock", "proxy_cache_background_update",
    "limit_req_dry_run", "limit_conn_dry_run", "proxy_intercept_errors", "recursive_error_pages",
)  # fmt: skip


class _ServerBuilder(_ZonesBuilder, _UpstreamBuilder):
    """http server{} and location{}, with the directives inherited through http, server and location."""

    def http_common(self, c: _Stmt, scope: _Scope, p: _Proto) -> bool:
        """Directives of http, server and location that inherit inwards; False if not one."""
        d, a = c.directive, c.args
        if d == "proxy_next_upstream":
            scope.set(c, self.bitmask(c, _HTTP_NEXT_UPSTREAM))
        elif d == "proxy_cache_use_stale":
            scope.set(c, self.bitmask(c, _CACHE_USE_STALE))
        elif d in ("proxy_next_upstream_tries", "proxy_cache_min_uses"):
            scope.set(c, _num_arg(c))
        elif d in _HTTP_TIMES:
            scope.set(c, _time_arg(c))
        elif d in _HTTP_FLAGS:
            scope.set(c, _flag_arg(c))
        elif d == "proxy_cache":
            scope.set(c, None if a[0] == "off" else a[0])
            if a[0] != "off":
                p.refs.append(("proxy_cache", a[0], c))
        elif d == "proxy_cache_key":
            scope.set(c, a[0])
        elif d in ("proxy_cache_bypass", "proxy_no_cache"):
            scope.add(d, *a)
        elif d == "proxy_cache_valid":
            scope.add(d, self.cache_valid(c))
        elif d == "limit_req":
            limit = self.limit_req(c)
            if any(x.zone == limit.zone for x in scope.arrays.get(d, ())):
                raise ConfigError('"limit_req" directive is duplicate', c.where)
            scope.add(d, limit)
            p.refs.append(("limit_req", limit.zone, c))
        elif d == "limit_conn":
            self.add_limit_conn(c, scope, p)
        elif d in ("limit_req_status", "limit_conn_status"):
            scope.set(c, self.status_code(c))
        elif d in ("allow", "deny"):
            scope.add("access", self.access_rule(c))
        elif d == "error_page":
            scope.add(d, self.error_page(c))
        elif d == "root":
            scope.set(c, a[0])
        elif d in ("resolver", "resolver_timeout"):
            self.resolver_directive(c, scope, p)
        elif d in _CLIENT_DIRECTIVES:
            self.client_directive(c, scope)
        else:
            return False
        return True

    def client_directive(self, c: _Stmt, scope: _Scope) -> None:
        """How requests are read and connections kept; crossplane has checked the context."""
        d, a = c.directive, c.args
        if d in ("client_header_buffer_size", "client_max_body_size"):
            scope.set(c, _size_arg(c))
        elif d == "large_client_header_buffers":
            number, size = _parse_int(a[0]), _parse_size(a[1])
            if not number or not size:
                raise ConfigError(f'invalid value "{a[0] if not number else a[1]}"', c.where)
            scope.set(c, (number, size))
        elif d in ("client_header_timeout", "client_body_timeout", "lingering_time", "lingering_timeout"):
            scope.set(c, _time_arg(c))
        elif d == "keepalive_timeout":
            if len(a) > 1:
                header = _parse_time(a[1], seconds=True)
                if header is None:
                    raise ConfigError(f'invalid value "{a[1]}"', c.where)
                scope.set(c, header // 1000, key="keepalive_header")
            scope.set(c, _time_arg(c))
        elif d in ("keepalive_requests", "max_headers"):
            scope.set(c, _num_arg(c))
        elif d == "lingering_close":
            if a[0] not in ("on", "off", "always"):
                raise ConfigError(f'invalid value "{a[0]}" in "lingering_close" directive', c.where)
            scope.set(c, a[0])
        else:  # merge_slashes
            scope.set(c, _flag_arg(c))

    def client_conf(self, s: _Scope) -> ClientConf:
        default = ClientConf()
        return ClientConf(**{field: s.get(key, getattr(default, field)) for key, field in _CLIENT_FIELDS.items()})

    def bitmask(self, c: _Stmt, allowed: tuple[str, ...]) -> tuple[str, ...]:
        values: list[str] = []
        for a in c.args:
            if a not in allowed:
                raise ConfigError(f'invalid value "{a}"', c.where)
            if a not in values:
                values.append(a)
        return () if "off" in values else tuple(values)

    def cache_valid(self, c: _Stmt) -> CacheValid:
        *codes, time_text = c.args
        ms = _parse_time(time_text)
        if ms is None:
            raise ConfigError(f'invalid time value "{time_text}"', c.where)
        if not codes:
            return CacheValid((200, 301, 302), False, ms)
        out: list[int] = []
        any_code = False
        for code in codes:
            if code == "any":
                any_code = True
                continue
            n = _parse_int(code)
            if n is None or not 100 <= n <= 599:
                raise ConfigError(f'invalid status "{code}"', c.where)
            out.append(n)
        return CacheValid(tuple(out), any_code, ms)

    def error_page(self, c: _Stmt) -> ErrorPageConf:
        """``error_page 500 502 /50x.html``, ``error_page 404 =200 /empty``, ``error_page 404 = @fallback``,
        ``error_page 403 http://example.com/forbidden.html``, checked as nginx checks them."""
        *codes_text, uri = c.args
        response: int | None = None
        codes: list[int] = []
        for i, text in enumerate(codes_text):
            if text.startswith("="):
                if i != len(codes_text) - 1:
                    raise ConfigError(f'invalid value "{text}"', c.where)
                if text == "=":
                    response = -1
                else:
                    n = _parse_int(text[1:])
                    if n is None:
                        raise ConfigError(f'invalid value "{text}"', c.where)
                    response = n
                continue
            n = _parse_int(text)
            if n is None:
                raise ConfigError(f'invalid value "{text}"', c.where)
            if n == 499:
                raise ConfigError('value "499" is not allowed', c.where)
            if not 300 <= n <= 599:
                raise ConfigError(f'value "{text}" must be between 300 and 599', c.where)
            codes.append(n)
        if not codes:
            raise ConfigError('invalid number of arguments in "error_page" directive', c.where)
        return ErrorPageConf(tuple(codes), uri, response, c.where)

    def access_rule(self, c: _Stmt) -> AccessRule:
        value = c.args[0]
        if value != "all" and value != "unix:":
            try:
                ipaddress.ip_network(value, strict=False)
            except ValueError:
                raise _invalid(c, value) from None
        return AccessRule(c.directive, value)

    def http_server(self, st: _Stmt, outer: _Scope, p: _Proto) -> _RawServer:
        raw = _RawServer(scope=_Scope(outer), where=st.where)
        for c in st.block or ():
            d = c.directive
            if self.http_common(c, raw.scope, p):
                continue
            if d == "listen":
                raw.listens.append(self.listen(c, "http"))
            elif d == "server_name":
                raw.names.extend(c.args)
            elif d == "status_zone":
                raw.scope.set(c, c.args[0])
            elif d == "location":
                raw.locations.append(self.location(c, raw.scope, None, p))
            elif d == "return" and raw.return_ is None:
                raw.return_ = self.http_return(c)
            else:
                self.skip(c)
        self.check_duplicate_locations(raw.locations)
        return raw

    def location(self, st: _Stmt, outer: _Scope, parent: _RawLocation | None, p: _Proto) -> _RawLocation:
        modifier, path = self.location_args(st)
        if parent is not None:
            if path.startswith("@"):
                raise ConfigError(f'named location "{path}" can be on the server level only', st.where)
            if parent.modifier == "=":
                raise ConfigError(
                    f'location "{path}" cannot be inside the exact location "{parent.path}"', st.where
                )
            if parent.path.startswith("@"):
                raise ConfigError(
                    f'location "{path}" cannot be inside the named location "{parent.path}"', st.where
                )
            if (
                modifier in ("", "^~", "=")
                and parent.modifier in ("", "^~")
                and not path.startswith(parent.path)
            ):
                raise ConfigError(f'location "{path}" is outside location "{parent.path}"', st.where)
        raw = _RawLocation(modifier=modifier, path=path, scope=_Scope(outer), where=st.where)
        for c in st.block or ():
            d = c.directive
            if d == "root" and raw.alias is not None:
                raise ConfigError(
                    '"root" directive is duplicate, "alias" directive was specified earlier', c.where
                )
            if self.http_common(c, raw.scope, p):
                continue
            if d == "location":
                raw.children.append(self.location(c, raw.scope, raw, p))
            elif d == "proxy_pass":
                if raw.proxy_pass is not None:
                    raise ConfigError('"proxy_pass" directive is duplicate', c.where)
                raw.proxy_pass = c
            elif d == "return" and raw.return_ is None:
                raw.return_ = self.http_return(c)
            elif d == "api":
                if raw.api is not None:
                    raise ConfigError('"api" directive is duplicate', c.where)
                raw.api = c
                for a in c.args:
                    if a not in ("write=on", "write=off"):
                        raise _invalid(c, a)
                    raw.api_write = a == "write=on"
            elif d == "alias":
                if "root" in raw.scope.values:
                    raise ConfigError(
                        '"alias" directive is duplicate, "root" directive was specified earlier', c.where
                    )
                if raw.alias is not None:
                    raise ConfigError('"alias" directive is duplicate', c.where)
                raw.alias = c.args[0]
            elif d == "health_check":
                raw.health_checks.append((self.health_check(c, p), c))
            elif d == "internal":
                raw.internal = True
            elif d == "status_zone":
                if raw.status_zone_set:
                    raise ConfigError('"status_zone" directive is duplicate', c.where)
                raw.status_zone_set = True
                raw.status_zone = None if c.args[0] == "off" else c.args[0]
            else:
                self.skip(c)
        self.check_duplicate_locations(raw.children)
        return raw

    def location_args(self, st: _Stmt) -> tuple[str, str]:
        a = st.args
        if len(a) == 2:
            modifier, path = a
            if modifier not in ("=", "~", "~*", "^~"):
                raise ConfigError(f'invalid location modifier "{modifier}"', st.where)
        else:
            modifier, path = "", a[0]
            for m in ("^~", "~*", "=", "~"):  # nginx also takes the modifier glued to the path
                if path.startswith(m) and len(path) > len(m):
                    modifier, path = m, path[len(m) :]
                    break
        if modifier in ("~", "~*"):
            _check_regex(st, path, ignore_case=modifier == "~*")
        return modifier, path

    def check_duplicate_locations(self, locations: list[_RawLocation]) -> None:
        seen: set[tuple[str, str]] = set()
        for loc in locations:
            if loc.modifier in ("~", "~*"):
                continue  # regexes are tried in order; a repeated one is legal, merely dead
            key = ("=" if loc.modifier == "=" else "prefix", loc.path)
            if key in seen:
                raise ConfigError(f'duplicate location "{loc.path}"', loc.where)
            seen.add(key)

    def http_return(self, c: _Stmt) -> tuple[int, str | None]:
        a = c.args
        if len(a) == 1 and not a[0].isdigit():
            if not re.match(r"(https?://|\$scheme)", a[0]):
                raise ConfigError(f'invalid return code "{a[0]}"', c.where)
            return 302, a[0]
        code = _parse_int(a[0])
        if code is None or code > 999:
            raise ConfigError(f'invalid return code "{a[0]}"', c.where)
        return code, (a[1] if len(a) > 1 else None)

    def build_http_server(self, raw: _RawServer, p: _Proto) -> HttpServerConf:
        listens = tuple(raw.listens) or (ListenConf(address=None, port=80, where=raw.where),)
        locations = tuple(self.build_location(loc, p, None) for loc in raw.locations)
        apis = self.api_statements(raw.locations)  # in the order written
        if len(apis) > 1:
            raise ConfigError('only one "api" location is allowed per server', apis[1].where)
        code, text = raw.return_ or (None, None)
        return HttpServerConf(
            listens=listens,
            server_names=tuple(raw.names) or ("",),
            status_zone=raw.scope.values.get("status_zone"),
            locations=locations,
            ssl=any(listen.ssl for listen in listens),
            where=raw.where,
            return_code=code,
            return_text=text,
            error_pages=tuple(raw.scope.get_array("error_page")),
            client=self.client_conf(raw.scope),
        )

    def api_statements(self, locations: list[_RawLocation]) -> list[_Stmt]:
        out: list[_Stmt] = []
        for loc in locations:
            if loc.api is not None:
                out.append(loc.api)
            out.extend(self.api_statements(loc.children))
        return out

    def build_location(self, raw: _RawLocation, p: _Proto, outer_zone: str | None) -> LocationConf:
        s = raw.scope
        proxy = ProxyConf(
            next_upstream=s.get("proxy_next_upstream", ("error", "timeout")),
            next_upstream_tries=s.get("proxy_next_upstream_tries", 0),
            next_upstream_timeout_ms=s.get("proxy_next_upstream_timeout", 0),
            connect_timeout_ms=s.get("proxy_connect_timeout", 60_000),
            read_timeout_ms=s.get("proxy_read_timeout", 60_000),
            send_timeout_ms=s.get("proxy_send_timeout", 60_000),
            cache=s.get("proxy_cache"),
            cache_key=s.get("proxy_cache_key", "$scheme$proxy_host$request_uri"),
            cache_valid=tuple(s.get_array("proxy_cache_valid")),
            cache_use_stale=s.get("proxy_cache_use_stale", ()),
            cache_bypass=tuple(s.get_array("proxy_cache_bypass")),
            no_cache=tuple(s.get_array("proxy_no_cache")),
            cache_revalidate=s.get("proxy_cache_revalidate", False),
            cache_lock=s.get("proxy_cache_lock", False),
            cache_lock_timeout_ms=s.get("proxy_cache_lock_timeout", 5000),
            cache_lock_age_ms=s.get("proxy_cache_lock_age", 5000),
            cache_min_uses=s.get("proxy_cache_min_uses", 1),
            cache_background_update=s.get("proxy_cache_background_update", False),
        )
        upstream = address = None
        if raw.proxy_pass is not None:
            upstream, address = self.http_proxy_target(raw.proxy_pass, p)
        for _, st in raw.health_checks:
            self.check_health_check_target(st, upstream, p)
        zone = raw.status_zone if raw.status_zone_set else outer_zone
        code, text = raw.return_ or (None, None)
        return LocationConf(
            modifier=raw.modifier,
            path=raw.path,
            proxy_pass=raw.proxy_pass.args[0] if raw.proxy_pass else None,
            upstream=upstream,
            proxy_pass_address=address,
            return_code=code,
            return_text=text,
            api=raw.api is not None,
            api_write=raw.api_write,
            root=s.get("root"),
            alias=raw.alias,
            access=tuple(s.get_array("access")),
            health_checks=tuple(hc for hc, _ in raw.health_checks),
            status_zone=zone,
            proxy=proxy,
            limit_req=self.limits(s, "limit_req"),
            limit_conn=self.limits(s, "limit_conn"),
            locations=tuple(self.build_location(child, p, zone) for child in raw.children),
            where=raw.where,
            error_pages=tuple(s.get_array("error_page")),
            intercept_errors=s.get("proxy_intercept_errors", False),
            recursive_error_pages=s.get("recursive_error_pages", False),
            internal=raw.internal,
            client=self.client_conf(s),
        )

    def http_proxy_target(self, c: _Stmt, p: _Proto) -> tuple[str | None, str | None]:
        url = c.args[0]
        m = re.match(r"(?i)(https?)://", url)
        if not m:
            raise ConfigError(f'invalid URL prefix in "{url}"', c.where)
        rest = url[m.end() :]
        if rest.lower().startswith("unix:"):
            return None, "unix:" + rest[5:].split(":", 1)[0]
        hostport = re.split(r"[/?]", rest, maxsplit=1)[0]
        if "$" in hostport:
            return None, None  # chosen per request: not simulated (docs/config.md)
        default_port = 443 if m.group(1).lower() == "https" else 80
        return self.proxy_target(c, hostport, p, default_port)
