"""``upstream{}`` blocks (http and stream), and the active health checks that watch them.

An upstream's ``server`` lines, ``zone``, balancing method, ``queue``, ``keepalive``, ``state``
and ``resolver``; the upstream (or address) a ``proxy_pass`` names; ``match{}`` blocks and
``health_check``, which needs a ``proxy_pass`` to an upstream in shared memory.
"""

from __future__ import annotations

from typing import Any

from sim.conf.config import (
    ConfigError,
    HeaderTest,
    HealthCheckConf,
    MatchConf,
    ServerConf,
    StatusTest,
    UpstreamConf,
)
from sim.conf.directives import (
    _BuilderBase,
    _check_regex,
    _decode_escapes,
    _host_port,
    _invalid,
    _is_ip,
    _join,
    _parse_int,
    _parse_size,
    _parse_time,
    _port,
    _Proto,
    _Scope,
    _Stmt,
    _valid_host,
)

_LEAST_TIME_MODES = {"http": ("header", "last_byte"), "stream": ("connect", "first_byte", "last_byte")}
_NO_BACKUP_METHODS = ("hash", "ip_hash", "random")  # nor slow_start


class _UpstreamBuilder(_BuilderBase):
    """upstream{} and its servers, proxy_pass targets, match{} and health_check."""

    def upstream(self, st: _Stmt, p: _Proto, outer: _Scope) -> None:
        name = st.args[0]
        if p.find_upstream(name) is not None:
            raise ConfigError(f'duplicate upstream "{name}"', st.where)
        kind = p.kind
        scope = _Scope(outer)
        servers: list[tuple[ServerConf, set[str], _Stmt]] = []
        zone: str | None = None
        method = "round_robin"
        method_st: _Stmt | None = None
        kw: dict[str, Any] = {}
        state_st: _Stmt | None = None
        for c in st.block or ():
            d, a = c.directive, c.args
            if d == "server":
                servers.append((*self.upstream_server(c, kind), c))
            elif d == "zone":
                scope.set(c, True)
                zone = a[0]
                self.shm_zone(c, zone, f"{kind} upstream")
                self.upstream_zone(c, p)
            elif d in ("least_conn", "least_time", "hash", "ip_hash", "random"):
                if method_st is not None:
                    # nginx only warns; a second method silently replacing the first is a trap.
                    raise ConfigError("load balancing method redefined", c.where)
                method, method_st = d, c
                kw.update(self.balancing_method(c, kind))
            elif d == "queue":
                scope.set(c, True)
                kw.update(self.queue(c))
            elif d == "keepalive":
                n = _parse_int(a[0])
                if not n:
                    raise ConfigError(f'invalid value "{a[0]}" in "keepalive" directive', c.where)
                scope.set(c, True)
                kw["keepalive"] = n
            elif d == "state":
                scope.set(c, True)
                state_st = c
                kw["state_file"] = a[0]
            elif d in ("resolver", "resolver_timeout"):
                self.resolver_directive(c, scope, p)
                kw["resolver_in_block"] = kw.get("resolver_in_block", False) or d == "resolver"
            else:
                self.skip(c)
        if state_st is not None and servers:
            raise ConfigError('"state" directive cannot be used with "server" directives', state_st.where)
        if not servers and state_st is None and zone is None:
            # with a zone, NGINX Plus accepts an empty group: its servers come from the API
            raise ConfigError("no servers are inside upstream", st.where)
        for server, written, c in servers:
            if method in _NO_BACKUP_METHODS:
                for param in ("backup", "slow_start"):
                    if param in written:
                        raise ConfigError(f'balancing method does not support parameter "{param}"', c.where)
            if server.resolve:
                if zone is None:
                    raise ConfigError(
                        f'resolving names at run time requires upstream "{name}" in {st.where} '
                        "to be in shared memory",
                        c.where,
                    )
                p.resolve_checks.append((scope, c.where))
        p.upstreams[name] = UpstreamConf(
            name=name,
            kind=kind,
            servers=tuple(s for s, _, _ in servers),
            zone=zone,
            method=method,
            where=st.where,
            **kw,
        )

    def upstream_zone(self, c: _Stmt, p: _Proto) -> None:
        name = c.args[0]
        size = None
        if len(c.args) > 1:
            size = _parse_size(c.args[1])
            if not size:
                raise ConfigError(f'invalid zone size "{c.args[1]}"', c.where)
        prev = p.upstream_zone_sizes.get(name)
        if size is not None and prev is not None and prev != size:
            raise ConfigError(
                f'the size {size} of shared memory zone "{name}" conflicts with already declared size {prev}',
                c.where,
            )
        if prev is None:
            p.upstream_zone_sizes[name] = size
        p.upstream_zone_where.setdefault(name, c.where)

    def upstream_server(self, c: _Stmt, kind: str) -> tuple[ServerConf, set[str]]:
        text = c.args[0]
        kw: dict[str, Any] = {}
        written: set[str] = set()
        for a in c.args[1:]:
            key, eq, value = a.partition("=")
            if eq:
                if key in ("weight", "max_conns", "max_fails"):
                    n = _parse_int(value)
                    if n is None or (key == "weight" and n == 0):
                        raise _invalid(c, a)
                    kw[key] = n
                elif key in ("fail_timeout", "slow_start"):
                    ms = _parse_time(value, seconds=True)
                    if ms is None:
                        raise _invalid(c, a)
                    kw[f"{key}_ms"] = ms
                elif key == "route" and kind == "http":
                    if not value or len(value) > 32:  # the route is kept in a 32-byte sticky id
                        raise _invalid(c, a)
                    kw["route"] = value
                elif key == "service" and value:
                    kw["service"] = value
                else:
                    raise _invalid(c, a)
            elif a in ("backup", "down", "resolve") or (a == "drain" and kind == "http"):
                kw[a] = True
            else:
                raise _invalid(c, a)
            written.add(key)
        service = kw.get("service")
        if service is not None and not kw.get("resolve"):
            raise ConfigError(f'service upstream "{text}" requires "resolve" parameter', c.where)
        address, host, port = self.upstream_address(c, text, kind, service is not None)
        return ServerConf(address=address, host=host, port=port, where=c.where, **kw), written

    def upstream_address(
        self, c: _Stmt, text: str, kind: str, service: bool
    ) -> tuple[str, str, int | None]:
        if text.startswith("unix:"):
            if len(text) == 5:
                raise ConfigError(f'no path in the unix domain socket in upstream "{text}"', c.where)
            return text, text, None
        hp = _host_port(text)
        if hp is None or (hp[0] and not _valid_host(hp[0])):
            raise ConfigError(f'invalid host in upstream "{text}"', c.where)
        host, port_text = hp
        if not host:
            raise ConfigError(f'no host in upstream "{text}"', c.where)
        if service:
            if port_text is not None:
                raise ConfigError(f'service upstream "{text}" may not have port', c.where)
            return text, host, None  # the port comes from the SRV records
        if port_text is None:
            if kind == "stream":
                raise ConfigError(f'no port in upstream "{text}"', c.where)
            port: int | None = 80
        else:
            port = _port(port_text)
            if port is None:
                raise ConfigError(f'invalid port in upstream "{text}"', c.where)
        return _join(host, port), host, port

    def balancing_method(self, c: _Stmt, kind: str) -> dict[str, Any]:
        d, a = c.directive, c.args
        if d == "least_time":
            if a[0] not in _LEAST_TIME_MODES[kind]:
                raise _invalid(c, a[0])
            if len(a) > 1 and a[1] != "inflight":
                raise _invalid(c, a[1])
            return {"least_time_mode": a[0], "least_time_inflight": len(a) > 1}
        if d == "hash":
            if len(a) > 1 and a[1] != "consistent":
                raise _invalid(c, a[1])
            return {"hash_key": a[0], "hash_consistent": len(a) > 1}
        if d == "random" and a:
            if a[0] != "two":
                raise _invalid(c, a[0])
            allowed = ["least_conn", *(f"least_time={m}" for m in _LEAST_TIME_MODES[kind])]
            if len(a) > 1 and a[1] not in allowed:
                raise _invalid(c, a[1])
            return {"random_two": True, "random_method": a[1] if len(a) > 1 else "least_conn"}
        return {}

    def queue(self, c: _Stmt) -> dict[str, Any]:
        n = _parse_int(c.args[0])
        if not n:
            raise ConfigError(f'invalid value "{c.args[0]}" in "queue" directive', c.where)
        kw: dict[str, Any] = {"queue_size": n}
        for a in c.args[1:]:
            ms = _parse_time(a[8:]) if a.startswith("timeout=") else None
            if ms is None:
                raise _invalid(c, a)
            kw["queue_timeout_ms"] = ms
        return kw

    def proxy_target(
        self, c: _Stmt, hostport: str, p: _Proto, default_port: int | None
    ) -> tuple[str | None, str | None]:
        hp = _host_port(hostport)
        if not hostport or hp is None or not hp[0]:
            raise ConfigError(f'no host in upstream "{hostport}"', c.where)
        host, port_text = hp
        upstream = p.find_upstream(host)
        if upstream is not None:
            if port_text is not None:
                raise ConfigError(f'upstream "{upstream}" may not have port {port_text}', c.where)
            return upstream, None
        if not _valid_host(host):
            raise ConfigError(f'invalid host in upstream "{hostport}"', c.where)
        if port_text is None:
            if default_port is None:
                raise ConfigError(f'no port in upstream "{hostport}"', c.where)
            # A bare word that names no upstream is almost surely a typo'd upstream name; nginx
            # would fail to resolve it. Dotted names and IPs are taken as addresses (no DNS here).
            if not (_is_ip(host) or "." in host or host.lower() == "localhost"):
                raise ConfigError(f'host not found in upstream "{hostport}"', c.where)
            port = default_port
        else:
            port_or_none = _port(port_text)
            if port_or_none is None:
                raise ConfigError(f'invalid port in upstream "{hostport}"', c.where)
            port = port_or_none
        return None, _join(host, port)

    def match(self, st: _Stmt, p: _Proto) -> None:
        name = st.args[0]
        if name in p.matches:
            raise ConfigError(f'duplicate match "{name}"', st.where)
        kw: dict[str, Any] = {}
        headers: list[HeaderTest] = []
        seen: set[str] = set()
        allowed = ("status", "header", "body", "require") if p.kind == "http" else ("send", "expect")
        for c in st.block or ():
            d, a = c.directive, c.args
            if d not in allowed:
                raise ConfigError(f'unknown directive "{d}"', c.where)
            if c.block is not None:
                raise ConfigError(f'directive "{d}" is not terminated by ";"', c.where)
            if d in seen and d in ("status", "body", "send", "expect"):  # one of each per block
                raise ConfigError(f'"{d}" directive is duplicate', c.where)
            seen.add(d)
            if d == "status":
                kw["status"] = self.status_test(c)
            elif d == "header":
                headers.append(self.header_test(c))
            elif d == "body":
                if len(a) != 2 or a[0] not in ("~", "!~"):
                    raise ConfigError('invalid number of arguments in "body" directive', c.where)
                _check_regex(c, a[1])
                kw["body_regex"], kw["body_negate"] = a[1], a[0] == "!~"
            elif d == "require":
                if not a or any(not v.startswith("$") or len(v) < 2 for v in a):
                    raise ConfigError('invalid number of arguments in "require" directive', c.where)
                kw["require"] = (*kw.get("require", ()), *a)
            elif d == "send":
                if len(a) != 1:
                    raise ConfigError('invalid number of arguments in "send" directive', c.where)
                kw["send"] = _decode_escapes(a[0])
            else:  # expect
                if len(a) == 2 and a[0] == "~":
                    _check_regex(c, a[1])
                    kw["expect"], kw["expect_regex"] = a[1], True
                elif len(a) == 1:
                    kw["expect"] = _decode_escapes(a[0])
                else:
                    raise ConfigError('invalid number of arguments in "expect" directive', c.where)
        p.matches[name] = MatchConf(name=name, kind=p.kind, headers=tuple(headers), where=st.where, **kw)

    def status_test(self, c: _Stmt) -> StatusTest:
        args = list(c.args)
        negate = bool(args) and args[0] == "!"
        if negate:
            args = args[1:]
        if not args:
            raise ConfigError('invalid number of arguments in "status" directive', c.where)
        ranges: list[tuple[int, int]] = []
        for a in args:
            lo_text, _, hi_text = a.partition("-")
            lo, hi = _parse_int(lo_text), _parse_int(hi_text or lo_text)
            if lo is None or hi is None or not 100 <= lo <= hi <= 599:
                raise ConfigError(f'invalid status "{a}"', c.where)
            ranges.append((lo, hi))
        return StatusTest(negate, tuple(ranges))

    def header_test(self, c: _Stmt) -> HeaderTest:
        a = c.args
        if len(a) == 1:
            return HeaderTest(a[0], "exists")
        if len(a) == 2 and a[0] == "!":
            return HeaderTest(a[1], "absent")
        if len(a) == 3 and a[1] in ("=", "!=", "~", "!~"):
            if "~" in a[1]:
                _check_regex(c, a[2])
            return HeaderTest(a[0], a[1], a[2])
        raise ConfigError('invalid number of arguments in "header" directive', c.where)

    def health_check(self, c: _Stmt, p: _Proto) -> HealthCheckConf:
        kw: dict[str, Any] = {}
        for a in c.args:
            key, eq, value = a.partition("=")
            if eq and key in ("interval", "jitter"):
                ms = _parse_time(value)
                if ms is None or (key == "interval" and ms == 0):
                    raise _invalid(c, a)
                kw[f"{key}_ms"] = ms
            elif eq and key in ("fails", "passes"):
                n = _parse_int(value)
                if not n:
                    raise _invalid(c, a)
                kw[key] = n
            elif eq and key == "uri" and value and p.kind == "http":
                kw["uri"] = value
            elif eq and key == "port" and _port(value) is not None:
                kw["port"] = _port(value)
            elif eq and key == "match" and value:
                kw["match"] = value
                p.refs.append(("match", value, c))
            elif not eq and (a in ("mandatory", "persistent") or (a == "udp" and p.kind == "stream")):
                kw[a] = True
            else:
                raise _invalid(c, a)
        if kw.get("persistent") and not kw.get("mandatory"):
            raise ConfigError('"persistent" parameter requires "mandatory"', c.where)
        return HealthCheckConf(where=c.where, **kw)

    def check_health_check_target(self, c: _Stmt, upstream: str | None, p: _Proto) -> None:
        if upstream is None:
            raise ConfigError(
                '"health_check" requires "proxy_pass" to an upstream in shared memory', c.where
            )
        if p.upstreams[upstream].zone is None:
            raise ConfigError(f'health check requires upstream "{upstream}" to be in shared memory', c.where)
