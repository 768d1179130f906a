"""What the nginx.conf builders share: statements, argument values, inheritance, the base builder.

A :class:`_Stmt` is one directive as the reader found it. The value helpers turn its arguments
into milliseconds, bytes, ports and hosts, or raise the error ``nginx -t`` would print.
:class:`_Scope` is one level of directives that inherit inwards, :class:`_Proto` what one ``http``
or ``stream`` block declares. :class:`_BuilderBase` holds what every context's builder uses: the
list of directives not simulated, the names of shared memory zones, ``resolver``, ``listen``, and
the reference checks at the end of a block. These names are private to :mod:`sim.conf`; its
public face is :mod:`sim.conf.reader`.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field, replace
from typing import Any

from sim.conf.config import (
    CachePathConf,
    ConfigError,
    HealthCheckConf,
    KeyvalConf,
    KeyvalZoneConf,
    LimitConnZoneConf,
    LimitReqZoneConf,
    ListenConf,
    MatchConf,
    NotSimulated,
    ResolverConf,
    UpstreamConf,
    Where,
    ZoneSyncServerConf,
)
from sim.core.clock import UnitError, parse_duration, parse_size

#: Blocks whose lines are data rather than directives (crossplane's table does not describe them).
_FREEFORM_BLOCKS = frozenset({"types", "map", "geo", "split_clients", "charset_map", "match"})


@dataclass
class _Stmt:
    directive: str
    args: list[str]
    where: Where
    block: list[_Stmt] | None = None


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
# What one http or stream block declares


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
    internal: bool = False
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


# ---------------------------------------------------------------------------------------------
# The base of the builders

_LISTEN_FLAGS = {
    "http": {"default_server", "default", "ssl", "http2", "quic", "proxy_protocol", "deferred", "bind",
             "reuseport", "multipath"},
    "stream": {"udp", "ssl", "proxy_protocol", "bind", "reuseport", "multipath"},
}  # fmt: skip
_LISTEN_KEYS = {
    "backlog", "rcvbuf", "sndbuf", "accept_filter", "fastopen", "ipv6only", "so_keepalive", "setfib",
}  # fmt: skip


class _BuilderBase:
    """Where skipped directives and shared memory zones are recorded, and what http and stream share."""

    def __init__(self) -> None:
        self.not_simulated: list[NotSimulated] = []
        self.shm: dict[str, str] = {}  # shared memory zone name -> its use
        self.zone_sync_where: Where | None = None

    def skip(self, st: _Stmt) -> None:
        """A valid directive clustersim does not model: listed, with what its block holds."""
        self.not_simulated.append(NotSimulated(st.directive, st.where))
        if st.block and st.directive not in _FREEFORM_BLOCKS:
            for child in st.block:
                self.skip(child)

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
