"""Reading nginx.conf into the typed objects of :mod:`sim.conf.config`.

crossplane (NGINX's own parser) tokenises the files and knows in which contexts each directive
is valid; the statement loop, ``include`` handling and the translation into frozen config
objects with nginx's defaults, validation rules and inheritance live here. The public entry
points are :func:`load` and :func:`loads`.
"""

from __future__ import annotations

import glob
import io
import ipaddress
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from crossplane.analyzer import analyze, enter_block_ctx
from crossplane.errors import NgxParserBaseException
from crossplane.lexer import _balance_braces, _lex_file_object

from sim.conf.config import (  # noqa: F401
    BALANCING_METHODS,
    AccessRule,
    CachePathConf,
    CacheValid,
    ConfigError,
    HeaderTest,
    HealthCheckConf,
    HttpConf,
    HttpServerConf,
    KeyvalConf,
    KeyvalZoneConf,
    LimitConnConf,
    LimitConnZoneConf,
    LimitReqConf,
    LimitReqZoneConf,
    ListenConf,
    LocationConf,
    MatchConf,
    NginxConf,
    NotSimulated,
    ProxyConf,
    ResolverConf,
    ServerConf,
    StatusTest,
    StreamConf,
    StreamServerConf,
    UpstreamConf,
    Where,
    ZoneSyncConf,
    ZoneSyncServerConf,
)
from sim.core.clock import UnitError, parse_duration, parse_size

# =============================================================================================
# Reading: crossplane's lexer and directive table, driven by a loop of our own
#
# crossplane.parse() reads each included file only once whatever context includes it, cannot
# remap absolute include paths and cannot read a string, so the statement loop lives here; the
# tokens and the validity of each directive in its context still come from crossplane.

#: Blocks whose lines are data rather than directives (crossplane's table does not describe them).
_FREEFORM_BLOCKS = frozenset({"types", "map", "geo", "split_clients", "charset_map", "match"})
_GLOB_MAGIC = re.compile(r"[*?[]")


@dataclass
class _Stmt:
    directive: str
    args: list[str]
    where: Where
    block: list[_Stmt] | None = None


class _Reader:
    """Turns files into a tree of statements, with included files spliced in where written."""

    def __init__(self, conf_dir: str | None, include_map: dict[str, str] | None):
        self.conf_dir = conf_dir
        # Longest prefix first, so "/etc/nginx/conf.d" wins over "/etc/nginx".
        self.include_map = sorted((include_map or {}).items(), key=lambda kv: -len(kv[0]))
        self.files: list[str] = []
        self._reading: list[str] = []

    def read_file(self, path: str, ctx: tuple[str, ...], where: Where | None = None) -> list[_Stmt]:
        try:
            text = Path(path).read_text(encoding="utf-8", errors="replace")
        except OSError as e:
            raise ConfigError(f'open() "{path}" failed ({e.errno}: {e.strerror})', where) from None
        return self.read_text(text, path, ctx, where)

    def read_text(
        self, text: str, fname: str, ctx: tuple[str, ...], where: Where | None = None
    ) -> list[_Stmt]:
        key = fname if fname.startswith("<") else os.path.realpath(fname)
        if key in self._reading:
            # nginx itself would recurse until it runs out of file descriptors.
            raise ConfigError(f'include of "{fname}" is recursive', where)
        if fname not in self.files:
            self.files.append(fname)
        self._reading.append(key)
        try:
            tokens = _balance_braces(_lex_file_object(io.StringIO(text)), fname)
            return self._block(tokens, fname, ctx, freeform=False)
        except NgxParserBaseException as e:
            raise ConfigError(e.strerror, Where(e.filename or fname, e.lineno or 0)) from None
        finally:
            self._reading.pop()

    def _block(self, tokens, fname: str, ctx: tuple[str, ...], freeform: bool) -> list[_Stmt]:
        stmts: list[_Stmt] = []
        for token, line, quoted in tokens:
            if not quoted:
                if token == "}":
                    return stmts
                if token.startswith("#"):
                    continue
                if token in ("{", ";"):
                    raise ConfigError(f'unexpected "{token}"', Where(fname, line))
            where = Where(fname, line)
            args: list[str] = []
            while True:
                nxt = next(tokens, None)
                if nxt is None:
                    raise ConfigError('unexpected end of file, expecting ";" or "}"', where)
                term, term_line, term_quoted = nxt
                if term_quoted or term not in ("{", ";", "}"):
                    if term_quoted or not term.startswith("#"):
                        args.append(term)
                    continue
                break
            if term == "}":
                raise ConfigError('unexpected "}"', Where(fname, term_line))
            stmt = _Stmt(token, args, where)
            if not freeform:
                analyze(fname, {"directive": token, "line": line, "args": args}, term, ctx, strict=True)
                if token == "include":
                    stmts.extend(self._include(stmt, ctx))
                    continue
            if term == "{":
                inner = enter_block_ctx({"directive": token}, ctx)
                stmt.block = self._block(tokens, fname, inner, freeform or token in _FREEFORM_BLOCKS)
            stmts.append(stmt)
        return stmts

    def _include(self, stmt: _Stmt, ctx: tuple[str, ...]) -> list[_Stmt]:
        pattern = stmt.args[0]
        if os.path.isabs(pattern):
            pattern = self._remap(pattern)
        elif self.conf_dir is None:
            raise ConfigError(
                f'relative include "{pattern}" needs a base directory (pass base_dir)', stmt.where
            )
        else:
            pattern = os.path.join(self.conf_dir, pattern)
        if _GLOB_MAGIC.search(pattern):
            names = sorted(n for n in glob.glob(pattern) if os.path.isfile(n))
        else:
            names = [pattern]
        out: list[_Stmt] = []
        for name in names:
            out.extend(self.read_file(name, ctx, stmt.where))
        return out

    def _remap(self, path: str) -> str:
        for prefix, replacement in self.include_map:
            p = prefix.rstrip("/")
            if path == p or path.startswith(p + "/"):
                return replacement.rstrip("/") + path[len(p) :]
        return path


# ---------------------------------------------------------------------------------------------
# Values


def _parse_time(text: str, seconds: bool = False) -> int | None:
    """Milliseconds, or None when nginx would refuse it.

    ``seconds``: nginx keeps some values in whole seconds and refuses an ``ms`` unit there
    (``fail_timeout``, ``slow_start``, ``inactive``, ``valid``).
    """
    if seconds and "ms" in text:
        return None
    try:
        return parse_duration(text)
    except UnitError:
        return None


def _parse_size(text: str) -> int | None:
    try:
        return parse_size(text)
    except UnitError:
        return None


def _parse_int(text: str) -> int | None:
    return int(text) if text.isdigit() else None


def _time_arg(st: _Stmt, index: int = 0) -> int:
    ms = _parse_time(st.args[index])
    if ms is None:
        raise ConfigError(f'"{st.directive}" directive invalid value', st.where)
    return ms


def _size_arg(st: _Stmt, index: int = 0) -> int:
    size = _parse_size(st.args[index])
    if size is None:
        raise ConfigError(f'"{st.directive}" directive invalid value', st.where)
    return size


def _num_arg(st: _Stmt, index: int = 0) -> int:
    n = _parse_int(st.args[index])
    if n is None:
        raise ConfigError(f'"{st.directive}" directive invalid number', st.where)
    return n


def _flag_arg(st: _Stmt) -> bool:
    return st.args[0].lower() == "on"  # crossplane already refused anything but on|off


def _invalid(st: _Stmt, param: str) -> ConfigError:
    return ConfigError(f'invalid parameter "{param}"', st.where)


def _zone_param(st: _Stmt, param: str, prefix: str = "zone=") -> tuple[str, int]:
    """``zone=name:size`` -> (name, bytes)."""
    name, sep, size_text = param[len(prefix) :].partition(":")
    size = _parse_size(size_text) if sep else None
    if not name or size is None or size == 0:
        raise ConfigError(f'invalid zone size "{param}"', st.where)
    return name, size


_HOSTNAME = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_])?")


def _valid_host(host: str) -> bool:
    if ":" in host:
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            return False
        return True
    return bool(_HOSTNAME.fullmatch(host))


def _host_port(text: str) -> tuple[str, str | None] | None:
    """``host[:port]`` or ``[v6][:port]`` -> (host, port text); None when malformed."""
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            return None
        host, rest = text[1:end], text[end + 1 :]
        if not rest:
            return host, None
        return (host, rest[1:]) if rest.startswith(":") else None
    if text.count(":") > 1:
        return None  # IPv6 needs brackets when a port may follow
    host, sep, port = text.partition(":")
    return host, (port if sep else None)


def _port(text: str) -> int | None:
    n = _parse_int(text)
    return n if n is not None and 1 <= n <= 65535 else None


def _join(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _decode_escapes(text: str) -> str:
    """``\\xNN``, ``\\r``, ``\\n``, ``\\t``, ``\\\\`` as nginx's config reader and ``match`` decode them."""
    simple = {"r": "\r", "n": "\n", "t": "\t", "\\": "\\", '"': '"', "'": "'"}
    out: list[str] = []
    i = 0
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text):
            nxt = text[i + 1]
            if nxt == "x" and re.fullmatch(r"[0-9A-Fa-f]{2}", text[i + 2 : i + 4]):
                out.append(chr(int(text[i + 2 : i + 4], 16)))
                i += 4
                continue
            if nxt in simple:
                out.append(simple[nxt])
                i += 2
                continue
        out.append(c)
        i += 1
    return "".join(out)


def _check_regex(st: _Stmt, pattern: str, ignore_case: bool = False) -> None:
    # PCRE's "(?<name>" is Python's "(?P<name>"; lookbehinds "(?<=" and "(?<!" are shared.
    py = re.sub(r"\(\?<(?![=!])", "(?P<", pattern)
    try:
        re.compile(py, re.IGNORECASE if ignore_case else 0)
    except re.error as e:
        raise ConfigError(f'pcre2_compile() failed: {e.msg} in "{pattern}"', st.where) from None


# ---------------------------------------------------------------------------------------------
# Inheritance


class _Scope:
    """One level (http, server, location; stream, server) of directives that inherit inwards.

    Scalars are looked up from the innermost level that sets them. Array directives
    (``proxy_cache_valid``, ``limit_req``, ``allow``/``deny`` ...) are taken whole from the
    innermost level that has any of them, as nginx's merge does.
    """

    def __init__(self, parent: _Scope | None = None):
        self.parent = parent
        self.values: dict[str, Any] = {}
        self.arrays: dict[str, list] = {}

    def set(self, st: _Stmt, value: Any, key: str | None = None) -> None:
        key = key or st.directive
        if key in self.values:
            raise ConfigError(f'"{st.directive}" directive is duplicate', st.where)
        self.values[key] = value

    def add(self, key: str, *items: Any) -> None:
        self.arrays.setdefault(key, []).extend(items)

    def get(self, key: str, default: Any = None) -> Any:
        s: _Scope | None = self
        while s is not None:
            if key in s.values:
                return s.values[key]
            s = s.parent
        return default

    def get_array(self, key: str) -> list:
        s: _Scope | None = self
        while s is not None:
            if key in s.arrays:
                return s.arrays[key]
            s = s.parent
        return []


# ---------------------------------------------------------------------------------------------
# Building the objects

_HTTP_NEXT_UPSTREAM = (
    "error", "timeout", "invalid_header", "http_500", "http_502", "http_503", "http_504",
    "http_403", "http_404", "http_429", "non_idempotent", "off",
)  # fmt: skip
_CACHE_USE_STALE = (
    "error", "timeout", "invalid_header", "updating", "http_500", "http_502", "http_503",
    "http_504", "http_403", "http_404", "http_429", "off",
)  # fmt: skip
_LEAST_TIME_MODES = {"http": ("header", "last_byte"), "stream": ("connect", "first_byte", "last_byte")}
_NO_BACKUP_METHODS = ("hash", "ip_hash", "random")  # nor slow_start
_HTTP_TIMES = (
    "proxy_connect_timeout", "proxy_read_timeout", "proxy_send_timeout",
    "proxy_next_upstream_timeout", "proxy_cache_lock_timeout", "proxy_cache_lock_age",
)  # fmt: skip
_HTTP_FLAGS = (
    "proxy_cache_revalidate", "proxy_cache_lock", "proxy_cache_background_update",
    "limit_req_dry_run", "limit_conn_dry_run",
)  # fmt: skip
_STREAM_TIMES = (
    "proxy_connect_timeout", "proxy_timeout", "proxy_next_upstream_timeout", "health_check_timeout",
    "zone_sync_interval", "zone_sync_connect_retry_interval", "zone_sync_connect_timeout",
    "zone_sync_timeout",
)  # fmt: skip
_LISTEN_FLAGS = {
    "http": {"default_server", "default", "ssl", "http2", "quic", "proxy_protocol", "deferred", "bind",
             "reuseport", "multipath"},
    "stream": {"udp", "ssl", "proxy_protocol", "bind", "reuseport", "multipath"},
}  # fmt: skip
_LISTEN_KEYS = {
    "backlog", "rcvbuf", "sndbuf", "accept_filter", "fastopen", "ipv6only", "so_keepalive", "setfib",
}  # fmt: skip
#: Stream directives that give a server something to do with a connection.
_STREAM_HANDLERS = ("proxy_pass", "return", "zone_sync", "pass")


class _Proto:
    """What one ``http`` or ``stream`` block declares, and the references to check at its end."""

    def __init__(self, kind: str):
        self.kind = kind
        self.upstreams: dict[str, UpstreamConf] = {}
        self.upstream_zone_sizes: dict[str, int | None] = {}
        self.upstream_zone_where: dict[str, Where] = {}
        self.matches: dict[str, MatchConf] = {}
        self.cache_paths: dict[str, CachePathConf] = {}
        self.keyval_zones: dict[str, KeyvalZoneConf] = {}
        self.keyvals: list[KeyvalConf] = []
        self.limit_req_zones: dict[str, LimitReqZoneConf] = {}
        self.limit_conn_zones: dict[str, LimitConnZoneConf] = {}
        self.resolvers: list[tuple[ResolverConf, _Scope]] = []
        self.resolve_checks: list[tuple[_Scope, Where]] = []
        self.refs: list[tuple[str, str, _Stmt]] = []  # (what, name, stmt)

    def find_upstream(self, host: str) -> str | None:
        # nginx compares upstream names case-insensitively.
        for name in self.upstreams:
            if name.lower() == host.lower():
                return name
        return None


@dataclass
class _RawLocation:
    modifier: str
    path: str
    scope: _Scope
    where: Where
    proxy_pass: _Stmt | None = None
    return_: tuple[int, str | None] | None = None
    api: _Stmt | None = None
    api_write: bool = False
    alias: str | None = None
    health_checks: list[tuple[HealthCheckConf, _Stmt]] = field(default_factory=list)
    status_zone: str | None = None
    status_zone_set: bool = False
    children: list[_RawLocation] = field(default_factory=list)


@dataclass
class _RawServer:
    scope: _Scope
    where: Where
    listens: list[ListenConf] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    locations: list[_RawLocation] = field(default_factory=list)
    return_: tuple[int, str | None] | None = None
    # stream only
    proxy_pass: _Stmt | None = None
    return_text: str | None = None
    health_checks: list[tuple[HealthCheckConf, _Stmt]] = field(default_factory=list)
    zone_sync: _Stmt | None = None
    zone_sync_servers: list[ZoneSyncServerConf] = field(default_factory=list)
    handlers: set[str] = field(default_factory=set)


class _Builder:
    """Walks the statement tree once, validating as nginx does, and builds the frozen objects."""

    def __init__(self) -> None:
        self.not_simulated: list[NotSimulated] = []
        self.shm: dict[str, str] = {}  # shared memory zone name -> its use
        self.zone_sync_where: Where | None = None

    # -- the main context ------------------------------------------------------------------

    def build(self, stmts: list[_Stmt], file: str, files: list[str]) -> NginxConf:
        http = stream = None
        seen: set[str] = set()
        workers: int | None = None
        for st in stmts:
            d = st.directive
            if d in ("http", "stream", "events", "worker_processes"):
                if d in seen:
                    raise ConfigError(f'"{d}" directive is duplicate', st.where)
                seen.add(d)
            if d == "http":
                http = self.http(st)
            elif d == "stream":
                stream = self.stream(st)
            elif d == "worker_processes":
                workers = self.worker_processes(st)
            else:
                self.skip(st)
        return NginxConf(
            file=file,
            worker_processes=workers if workers is not None else 1,
            http=http,
            stream=stream,
            not_simulated=tuple(self.not_simulated),
            files=tuple(files),
        )

    def skip(self, st: _Stmt) -> None:
        """A valid directive clustersim does not model: listed, with what its block holds."""
        self.not_simulated.append(NotSimulated(st.directive, st.where))
        if st.block and st.directive not in _FREEFORM_BLOCKS:
            for child in st.block:
                self.skip(child)

    def worker_processes(self, st: _Stmt) -> int:
        if st.args[0] == "auto":
            return 2  # not the host's CPU count: a run must not depend on the machine (docs/config.md)
        n = _parse_int(st.args[0])
        if not n:
            raise ConfigError('"worker_processes" directive invalid value', st.where)
        return n

    def shm_zone(self, st: _Stmt, name: str, use: str) -> None:
        prev = self.shm.get(name)
        if prev is None:
            self.shm[name] = use
        elif prev != use:
            raise ConfigError(
                f'the shared memory zone "{name}" is already declared for a different use', st.where
            )
        elif not use.endswith("upstream"):  # upstream groups may share one zone
            raise ConfigError(f'duplicate zone "{name}"', st.where)

    # -- http ------------------------------------------------------------------------------

    def http(self, st: _Stmt) -> HttpConf:
        p = _Proto("http")
        scope = _Scope()
        servers: list[_RawServer] = []
        for c in st.block or ():
            d = c.directive
            if self.http_common(c, scope, p):
                continue
            if d == "upstream":
                self.upstream(c, p, scope)
            elif d == "server":
                servers.append(self.http_server(c, scope, p))
            elif d == "proxy_cache_path":
                self.cache_path(c, p)
            elif d == "keyval_zone":
                self.keyval_zone(c, p)
            elif d == "keyval":
                self.keyval(c, p)
            elif d == "limit_req_zone":
                self.limit_req_zone(c, p)
            elif d == "limit_conn_zone":
                self.limit_conn_zone(c, p)
            elif d == "match":
                self.match(c, p)
            elif d == "keepalive_timeout":
                if len(c.args) > 1:
                    _time_arg(c, 1)
                scope.set(c, _time_arg(c))
            elif d == "keepalive_requests":
                scope.set(c, _num_arg(c))
            elif d == "client_body_buffer_size":
                scope.set(c, _size_arg(c))
            else:
                self.skip(c)
        self.finish(p)
        built = tuple(self.build_http_server(s, p) for s in servers)
        self.check_default_servers(built)
        return HttpConf(
            upstreams=p.upstreams,
            servers=built,
            cache_paths=p.cache_paths,
            keyval_zones=p.keyval_zones,
            keyvals=tuple(p.keyvals),
            limit_req_zones=p.limit_req_zones,
            limit_conn_zones=p.limit_conn_zones,
            matches=p.matches,
            resolvers=self.resolvers(p),
            keepalive_timeout_ms=scope.get("keepalive_timeout", 75_000),
            keepalive_requests=scope.get("keepalive_requests", 1000),
            client_body_buffer_size=scope.get("client_body_buffer_size", 16_384),
        )

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
        elif d == "root":
            scope.set(c, a[0])
        elif d in ("resolver", "resolver_timeout"):
            self.resolver_directive(c, scope, p)
        else:
            return False
        return True

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

    def limit_req(self, c: _Stmt) -> LimitReqConf:
        zone = None
        burst = delay = 0
        nodelay = False
        for a in c.args:
            key, eq, value = a.partition("=")
            if eq and key == "zone" and value:
                zone = value
            elif eq and key in ("burst", "delay"):
                n = _parse_int(value)
                if not n:
                    raise ConfigError(f'invalid {key} value "{a}"', c.where)
                burst, delay = (n, delay) if key == "burst" else (burst, n)
            elif a == "nodelay":
                nodelay = True
            else:
                raise _invalid(c, a)
        if zone is None:
            raise ConfigError('"limit_req" must have "zone" parameter', c.where)
        return LimitReqConf(zone=zone, burst=burst, nodelay=nodelay, delay=delay)

    def add_limit_conn(self, c: _Stmt, scope: _Scope, p: _Proto) -> None:
        zone, number = c.args
        n = _parse_int(number)
        if not n:
            raise ConfigError(f'invalid number of connections "{number}"', c.where)
        if any(x.zone == zone for x in scope.arrays.get("limit_conn", ())):
            raise ConfigError('"limit_conn" directive is duplicate', c.where)
        scope.add("limit_conn", LimitConnConf(zone=zone, number=n))
        p.refs.append(("limit_conn", zone, c))

    def status_code(self, c: _Stmt) -> int:
        n = _parse_int(c.args[0])
        if n is None:
            raise ConfigError(f'"{c.directive}" directive invalid number', c.where)
        if not 400 <= n <= 599:
            raise ConfigError("value must be between 400 and 599", c.where)
        return n

    def access_rule(self, c: _Stmt) -> AccessRule:
        value = c.args[0]
        if value != "all" and value != "unix:":
            try:
                ipaddress.ip_network(value, strict=False)
            except ValueError:
                raise _invalid(c, value) from None
        return AccessRule(c.directive, value)

    def resolver_directive(self, c: _Stmt, scope: _Scope, p: _Proto) -> None:
        if c.directive == "resolver_timeout":
            scope.set(c, _time_arg(c))
            return
        addresses: list[str] = []
        kw: dict[str, Any] = {}
        for a in c.args:
            key, eq, value = a.partition("=")
            if not eq:
                hp = _host_port(a)
                if hp is None or not _valid_host(hp[0]) or (hp[1] is not None and _port(hp[1]) is None):
                    raise _invalid(c, a)
                addresses.append(a)
            elif key == "valid" and _parse_time(value, seconds=True) is not None:
                kw["valid_ms"] = _parse_time(value, seconds=True)
            elif key in ("ipv4", "ipv6") and value in ("on", "off"):
                if key == "ipv6":
                    kw["ipv6"] = value == "on"
            elif key == "status_zone" and value:
                kw["status_zone"] = value
            else:
                raise _invalid(c, a)
        if not addresses:
            raise ConfigError('invalid number of arguments in "resolver" directive', c.where)
        scope.set(c, True, key="resolver")
        p.resolvers.append((ResolverConf(addresses=tuple(addresses), where=c.where, **kw), scope))

    def resolvers(self, p: _Proto) -> tuple[ResolverConf, ...]:
        # resolver_timeout may follow the resolver or come from an outer level.
        return tuple(replace(r, timeout_ms=s.get("resolver_timeout", 30_000)) for r, s in p.resolvers)

    # -- upstream{} (http and stream) ------------------------------------------------------

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
        if not servers and state_st is None:
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

    # -- caches, keyvals, limits, match ----------------------------------------------------

    def cache_path(self, c: _Stmt, p: _Proto) -> None:
        kw: dict[str, Any] = {}
        name = size = None
        for a in c.args[1:]:
            key, eq, value = a.partition("=")
            if not eq:
                raise _invalid(c, a)
            if key == "keys_zone":
                zname, sep, size_text = value.partition(":")
                size = _parse_size(size_text) if sep else None
                if not zname or not size:
                    raise ConfigError(f'invalid keys zone size "{a}"', c.where)
                name = zname
            elif key == "levels":
                parts = value.split(":")
                if not 1 <= len(parts) <= 3 or any(x not in ("1", "2") for x in parts):
                    raise ConfigError(f'invalid "levels" "{a}"', c.where)
                kw["levels"] = value
            elif key in ("inactive", "loader_sleep", "loader_threshold", "manager_sleep",
                         "manager_threshold", "purger_sleep", "purger_threshold"):  # fmt: skip
                ms = _parse_time(value, seconds=key == "inactive")
                if ms is None:
                    raise ConfigError(f'invalid {key} value "{a}"', c.where)
                if key != "inactive" and not key.startswith("purger"):
                    kw[f"{key}_ms"] = ms
                elif key == "inactive":
                    kw["inactive_ms"] = ms
            elif key in ("max_size", "min_free"):
                n = _parse_size(value)
                if n is None:
                    raise ConfigError(f'invalid {key} value "{a}"', c.where)
                if key == "max_size":
                    kw["max_size"] = n
            elif key in ("loader_files", "manager_files", "purger_files"):
                n = _parse_int(value)
                if not n:
                    raise ConfigError(f'invalid {key} value "{a}"', c.where)
                if key != "purger_files":
                    kw[key] = n
            elif key in ("use_temp_path", "purger"):
                if value not in ("on", "off"):
                    raise ConfigError(f'invalid {key} value "{a}", it must be "on" or "off"', c.where)
            else:
                raise _invalid(c, a)
        if name is None or size is None:
            raise ConfigError('"proxy_cache_path" must have "keys_zone" parameter', c.where)
        self.shm_zone(c, name, "proxy_cache")
        p.cache_paths[name] = CachePathConf(
            path=c.args[0], name=name, keys_zone_size=size, where=c.where, **kw
        )

    def keyval_zone(self, c: _Stmt, p: _Proto) -> None:
        kw: dict[str, Any] = {}
        name = size = None
        for a in c.args:
            key, eq, value = a.partition("=")
            if eq and key == "zone":
                name, size = _zone_param(c, a)
            elif eq and key == "state" and value:
                kw["state"] = value
            elif eq and key == "timeout" and _parse_time(value):
                kw["timeout_ms"] = _parse_time(value)
            elif eq and key == "type" and value in ("string", "ip", "prefix"):
                kw["type"] = value
            elif a == "sync":
                kw["sync"] = True
            else:
                raise _invalid(c, a)
        if name is None or size is None:
            raise ConfigError('"keyval_zone" must have "zone" parameter', c.where)
        if kw.get("sync") and "timeout_ms" not in kw:
            raise ConfigError('"keyval_zone" with "sync" requires "timeout"', c.where)
        self.shm_zone(c, name, f"{p.kind} keyval")
        p.keyval_zones[name] = KeyvalZoneConf(name=name, kind=p.kind, size=size, where=c.where, **kw)

    def keyval(self, c: _Stmt, p: _Proto) -> None:
        key, variable, zone = c.args
        if len(variable) < 2 or not variable.startswith("$"):
            raise ConfigError(f'invalid variable name "{variable}"', c.where)
        if not zone.startswith("zone=") or len(zone) == 5:
            raise _invalid(c, zone)
        p.keyvals.append(KeyvalConf(key=key, variable=variable, zone=zone[5:], where=c.where))
        p.refs.append(("keyval", zone[5:], c))

    def limit_req_zone(self, c: _Stmt, p: _Proto) -> None:
        name = size = None
        rate = 1.0  # nginx's default when rate= is left out
        sync = False
        for a in c.args[1:]:
            key, eq, value = a.partition("=")
            if eq and key == "zone":
                name, size = _zone_param(c, a)
            elif eq and key == "rate":
                m = re.fullmatch(r"(\d+)r/([sm])", value)
                if not m or int(m.group(1)) == 0:
                    raise ConfigError(f'invalid rate "{a}"', c.where)
                rate = int(m.group(1)) / (1 if m.group(2) == "s" else 60)
            elif a == "sync":
                sync = True
            else:
                raise _invalid(c, a)
        if name is None or size is None:
            raise ConfigError('"limit_req_zone" must have "zone" parameter', c.where)
        self.shm_zone(c, name, "limit_req")
        p.limit_req_zones[name] = LimitReqZoneConf(
            name=name, key=c.args[0], size=size, rate_per_s=rate, sync=sync, where=c.where
        )

    def limit_conn_zone(self, c: _Stmt, p: _Proto) -> None:
        key, zone = c.args
        if not zone.startswith("zone="):
            raise _invalid(c, zone)
        name, size = _zone_param(c, zone)
        self.shm_zone(c, name, f"{p.kind} limit_conn")
        p.limit_conn_zones[name] = LimitConnZoneConf(
            name=name, kind=p.kind, key=key, size=size, where=c.where
        )

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

    # -- http servers and locations --------------------------------------------------------

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

    def listen(self, c: _Stmt, kind: str) -> ListenConf:
        text = c.args[0]
        flags: set[str] = set()
        for a in c.args[1:]:
            key, eq, _ = a.partition("=")
            if (eq and key not in _LISTEN_KEYS) or (not eq and a not in _LISTEN_FLAGS[kind]):
                raise _invalid(c, a)
            flags.add(a)
        address: str | None
        if text.startswith("unix:"):
            address, port = text, 0
        elif text.isdigit():
            address, port_or_none = None, _port(text)
            if port_or_none is None:
                raise ConfigError(f'invalid port in "{text}" of the "listen" directive', c.where)
            port = port_or_none
        else:
            hp = _host_port(text)
            if hp is None or not hp[0] or (hp[0] != "*" and not _valid_host(hp[0])):
                raise ConfigError(f'host not found in "{text}" of the "listen" directive', c.where)
            host, port_text = hp
            address = None if host == "*" else host
            if port_text is None:
                if kind == "stream":
                    raise ConfigError(f'no port in "{text}" of the "listen" directive', c.where)
                port = 80
            else:
                port_or_none = _port(port_text)
                if port_or_none is None:
                    raise ConfigError(f'invalid port in "{text}" of the "listen" directive', c.where)
                port = port_or_none
        return ListenConf(
            address=address,
            port=port,
            ssl="ssl" in flags,
            default_server=bool(flags & {"default_server", "default"}),
            udp="udp" in flags,
            where=c.where,
        )

    def check_default_servers(self, servers: tuple[HttpServerConf, ...]) -> None:
        seen: set[tuple[str | None, int]] = set()
        for server in servers:
            for listen in server.listens:
                if listen.default_server:
                    key = (listen.address, listen.port)
                    if key in seen:
                        shown = _join(listen.address or "0.0.0.0", listen.port)
                        raise ConfigError(f"a duplicate default server for {shown}", listen.where)
                    seen.add(key)

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
        )

    def limits(self, s: _Scope, name: str) -> tuple:
        # limit_*_dry_run and limit_*_status inherit on their own, apart from the limits.
        dry_run = s.get(f"{name}_dry_run", False)
        status = s.get(f"{name}_status", 503)
        return tuple(replace(x, dry_run=dry_run, status=status) for x in s.get_array(name))

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

    def check_health_check_target(self, c: _Stmt, upstream: str | None, p: _Proto) -> None:
        if upstream is None:
            raise ConfigError(
                '"health_check" requires "proxy_pass" to an upstream in shared memory', c.where
            )
        if p.upstreams[upstream].zone is None:
            raise ConfigError(f'health check requires upstream "{upstream}" to be in shared memory', c.where)

    # -- end of an http or stream block ----------------------------------------------------

    def finish(self, p: _Proto) -> None:
        for name, up in list(p.upstreams.items()):
            if up.zone is not None:
                size = p.upstream_zone_sizes.get(up.zone)
                if size is None:
                    raise ConfigError(
                        f'zero size shared memory zone "{up.zone}"', p.upstream_zone_where[up.zone]
                    )
                p.upstreams[name] = replace(up, zone_size=size)
        for scope, where in p.resolve_checks:
            if not scope.get("resolver"):
                raise ConfigError("no resolver defined to resolve names at run time", where)
        known = {
            "proxy_cache": p.cache_paths,
            "keyval": p.keyval_zones,
            "limit_req": p.limit_req_zones,
            "limit_conn": p.limit_conn_zones,
            "match": p.matches,
        }
        for what, name, c in p.refs:
            if name in known[what]:
                continue
            if what in ("limit_req", "limit_conn"):
                raise ConfigError(f'unknown {what}_zone "{name}"', c.where)
            if what == "match":
                raise ConfigError(f'match "{name}" not found', c.where)
            raise ConfigError(f'"{what}" zone "{name}" is unknown', c.where)

    # -- stream ----------------------------------------------------------------------------

    def stream(self, st: _Stmt) -> StreamConf:
        p = _Proto("stream")
        scope = _Scope()
        servers: list[_RawServer] = []
        for c in st.block or ():
            d = c.directive
            if self.stream_common(c, scope, p):
                continue
            if d == "upstream":
                self.upstream(c, p, scope)
            elif d == "server":
                servers.append(self.stream_server(c, scope, p))
            elif d == "keyval_zone":
                self.keyval_zone(c, p)
            elif d == "keyval":
                self.keyval(c, p)
            elif d == "limit_conn_zone":
                self.limit_conn_zone(c, p)
            elif d == "match":
                self.match(c, p)
            else:
                self.skip(c)
        self.finish(p)
        return StreamConf(
            upstreams=p.upstreams,
            servers=tuple(self.build_stream_server(s, p) for s in servers),
            keyval_zones=p.keyval_zones,
            keyvals=tuple(p.keyvals),
            limit_conn_zones=p.limit_conn_zones,
            matches=p.matches,
            resolvers=self.resolvers(p),
        )

    def stream_common(self, c: _Stmt, scope: _Scope, p: _Proto) -> bool:
        """Directives of stream and its servers that inherit inwards; False if not one."""
        d = c.directive
        if d in _STREAM_TIMES:
            scope.set(c, _time_arg(c))
        elif d == "proxy_next_upstream":
            scope.set(c, _flag_arg(c))
        elif d == "proxy_next_upstream_tries":
            scope.set(c, _num_arg(c))
        elif d == "limit_conn":
            self.add_limit_conn(c, scope, p)
        elif d == "limit_conn_dry_run":
            scope.set(c, _flag_arg(c))
        elif d in ("resolver", "resolver_timeout"):
            self.resolver_directive(c, scope, p)
        elif d == "zone_sync_buffers":
            n, size = _parse_int(c.args[0]), _parse_size(c.args[1])
            if not n or not size:
                raise ConfigError('"zone_sync_buffers" directive invalid value', c.where)
            scope.set(c, (n, size))
        elif d == "zone_sync_recv_buffer_size":
            scope.set(c, _size_arg(c))
        elif d == "zone_sync_ssl":
            scope.set(c, _flag_arg(c))
        else:
            return False
        return True

    def stream_server(self, st: _Stmt, outer: _Scope, p: _Proto) -> _RawServer:
        raw = _RawServer(scope=_Scope(outer), where=st.where)
        for c in st.block or ():
            d = c.directive
            if d in _STREAM_HANDLERS:
                raw.handlers.add(d)
            if self.stream_common(c, raw.scope, p):
                continue
            if d == "listen":
                raw.listens.append(self.listen(c, "stream"))
            elif d == "proxy_pass":
                if raw.proxy_pass is not None:
                    raise ConfigError('"proxy_pass" directive is duplicate', c.where)
                raw.proxy_pass = c
            elif d == "status_zone":
                raw.scope.set(c, c.args[0])
            elif d == "return":
                raw.return_text = c.args[0]
            elif d == "health_check":
                raw.health_checks.append((self.health_check(c, p), c))
            elif d == "zone_sync":
                if self.zone_sync_where is not None:
                    raise ConfigError('"zone_sync" directive is duplicate', c.where)
                self.zone_sync_where = c.where
                raw.zone_sync = c
            elif d == "zone_sync_server":
                raw.zone_sync_servers.append(self.zone_sync_server(c, raw.scope, p))
            else:
                self.skip(c)
        if not raw.listens:
            raise ConfigError('no "listen" is defined for server', st.where)
        if not raw.handlers:
            raise ConfigError("no handler for server", st.where)
        return raw

    def zone_sync_server(self, c: _Stmt, scope: _Scope, p: _Proto) -> ZoneSyncServerConf:
        text = c.args[0]
        if len(c.args) > 1 and c.args[1] != "resolve":
            raise _invalid(c, c.args[1])
        resolve = len(c.args) > 1
        if resolve:
            p.resolve_checks.append((scope, c.where))
        if text.startswith("unix:"):
            return ZoneSyncServerConf(host=text, port=0, resolve=resolve, where=c.where)
        hp = _host_port(text)
        if hp is None or not hp[0] or not _valid_host(hp[0]):
            raise ConfigError(f'invalid host in "{text}" of the "zone_sync_server" directive', c.where)
        if hp[1] is None:
            raise ConfigError(f'no port in "{text}" of the "zone_sync_server" directive', c.where)
        port = _port(hp[1])
        if port is None:
            raise ConfigError(f'invalid port in "{text}" of the "zone_sync_server" directive', c.where)
        return ZoneSyncServerConf(host=hp[0], port=port, resolve=resolve, where=c.where)

    def build_stream_server(self, raw: _RawServer, p: _Proto) -> StreamServerConf:
        s = raw.scope
        upstream = address = None
        if raw.proxy_pass is not None:
            text = raw.proxy_pass.args[0]
            if text.startswith("unix:"):
                address = text
            elif "$" not in text:
                upstream, address = self.proxy_target(raw.proxy_pass, text, p, None)
        for _, st in raw.health_checks:
            self.check_health_check_target(st, upstream, p)
        return StreamServerConf(
            listens=tuple(raw.listens),
            proxy_pass=raw.proxy_pass.args[0] if raw.proxy_pass else None,
            upstream=upstream,
            proxy_pass_address=address,
            status_zone=s.values.get("status_zone"),
            proxy_connect_timeout_ms=s.get("proxy_connect_timeout", 60_000),
            proxy_timeout_ms=s.get("proxy_timeout", 600_000),
            proxy_next_upstream=s.get("proxy_next_upstream", True),
            proxy_next_upstream_tries=s.get("proxy_next_upstream_tries", 0),
            proxy_next_upstream_timeout_ms=s.get("proxy_next_upstream_timeout", 0),
            health_checks=tuple(hc for hc, _ in raw.health_checks),
            health_check_timeout_ms=s.get("health_check_timeout", 5000),
            zone_sync=self.build_zone_sync(raw),
            limit_conn=self.limits(s, "limit_conn"),
            return_text=raw.return_text,
            ssl=any(listen.ssl for listen in raw.listens),
            where=raw.where,
        )

    def build_zone_sync(self, raw: _RawServer) -> ZoneSyncConf | None:
        if raw.zone_sync is None:
            if raw.zone_sync_servers:
                raise ConfigError('"zone_sync_server" requires "zone_sync"', raw.zone_sync_servers[0].where)
            return None
        if not raw.zone_sync_servers:
            raise ConfigError('no "zone_sync_server" is defined for "zone_sync"', raw.zone_sync.where)
        s = raw.scope
        number, size = s.get("zone_sync_buffers", (8, 4096))
        recv = s.get("zone_sync_recv_buffer_size")
        if recv is None:
            recv = max(4096, size)
        elif recv < size:
            raise ConfigError(
                '"zone_sync_recv_buffer_size" is smaller than a "zone_sync_buffers" buffer',
                raw.zone_sync.where,
            )
        return ZoneSyncConf(
            servers=tuple(raw.zone_sync_servers),
            interval_ms=s.get("zone_sync_interval", 1000),
            buffers_number=number,
            buffers_size=size,
            recv_buffer_size=recv,
            connect_retry_interval_ms=s.get("zone_sync_connect_retry_interval", 1000),
            connect_timeout_ms=s.get("zone_sync_connect_timeout", 5000),
            timeout_ms=s.get("zone_sync_timeout", 5000),
            ssl=s.get("zone_sync_ssl", False),
            where=raw.zone_sync.where,
        )


# ---------------------------------------------------------------------------------------------
# Entry points


def load(path: str | Path, *, include_map: dict[str, str] | None = None) -> NginxConf:
    """Parse an nginx.conf file (and what it includes) into a validated :class:`NginxConf`.

    Relative ``include`` paths are taken from the main file's directory, as nginx takes them
    from its configuration prefix. ``include_map`` remaps absolute include paths by prefix
    (``{"/etc/nginx": "scenarios/configs"}``), so a config written for a real server can be
    read from the repository.
    """
    file = str(path)
    reader = _Reader(os.path.dirname(file), include_map)
    stmts = reader.read_file(file, ())
    return _Builder().build(stmts, file, reader.files)


def loads(
    text: str,
    *,
    filename: str = "<inline>",
    base_dir: str | Path | None = None,
    include_map: dict[str, str] | None = None,
) -> NginxConf:
    """Parse configuration text; relative includes are taken from ``base_dir``."""
    reader = _Reader(None if base_dir is None else str(base_dir), include_map)
    stmts = reader.read_text(text, filename, ())
    return _Builder().build(stmts, filename, reader.files)
