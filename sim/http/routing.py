"""Choosing the server block and the location for a request, as nginx does.

Server: among the server blocks listening on the request's address and port, the first exact
``server_name``, then the longest leading wildcard (``*.example.com``), then the longest
trailing wildcard (``www.*``), then the first matching regex (``~...``); otherwise the
``default_server`` of that listen, or the first block listening there.

Location: an exact ``=`` match wins at once; otherwise the longest matching prefix is
remembered; if it has ``^~`` it is used, else regular expressions (``~`` case-sensitive, ``~*``
not) are tried in order of appearance and the first match is used; failing that, the
remembered prefix. Nested locations repeat the search inside the chosen one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sim.conf.config import HttpServerConf, LocationConf


@dataclass(frozen=True)
class _Compiled:
    conf: LocationConf
    regex: re.Pattern | None
    children: tuple[_Compiled, ...]


def _compile(locs: tuple[LocationConf, ...]) -> tuple[_Compiled, ...]:
    out = []
    for loc in locs:
        rx = None
        if loc.modifier == "~":
            rx = re.compile(loc.path)
        elif loc.modifier == "~*":
            rx = re.compile(loc.path, re.IGNORECASE)
        out.append(_Compiled(loc, rx, _compile(loc.locations)))
    return tuple(out)


def _find(locs: tuple[_Compiled, ...], uri: str) -> LocationConf | None:
    best: _Compiled | None = None
    for c in locs:
        m = c.conf.modifier
        if m == "=":
            if uri == c.conf.path:
                return c.conf
        elif m in ("", "^~") and uri.startswith(c.conf.path):
            if best is None or len(c.conf.path) > len(best.conf.path):
                best = c
    if best is not None and best.children:
        inner = _find(best.children, uri)
        if inner is not None:
            return inner
    if best is None or best.conf.modifier != "^~":
        for c in locs:
            if c.regex is not None and c.regex.search(uri):
                if c.children:
                    inner = _find(c.children, uri)
                    if inner is not None:
                        return inner
                return c.conf
    return best.conf if best is not None else None


def _name_matches(pattern: str, host: str) -> tuple[int, int] | None:
    """Rank of a server_name match: (class, length); lower class wins, longer wins within a class."""
    if pattern.startswith("~"):
        return (3, 0) if re.search(pattern[1:], host) else None
    if pattern == host:
        return (0, len(pattern))
    if pattern.startswith("."):
        if host == pattern[1:] or host.endswith(pattern):
            return (1, len(pattern))
        return None
    if pattern.startswith("*.") and host.endswith(pattern[1:]):
        return (1, len(pattern))
    if pattern.endswith(".*") and host.startswith(pattern[:-1]):
        return (2, len(pattern))
    return None


class Router:
    """Server and location lookup for one node's http configuration, with a bounded memo."""

    def __init__(self, servers: tuple[HttpServerConf, ...]):
        self.servers = servers
        self._locs = [_compile(s.locations) for s in servers]
        self._memo: dict[tuple[int, str], LocationConf | None] = {}
        self._server_memo: dict[tuple[str, int, str | None], int | None] = {}

    def server_for(self, host: str, port: int, address: str | None = None) -> int | None:
        """Index of the server block that serves ``host`` on ``address:port``, or None."""
        key = (host, port, address)
        memo = self._server_memo
        if key in memo:
            return memo[key]
        found = self._server_for(host, port, address)
        if len(memo) < 10_000:
            memo[key] = found
        return found

    def _server_for(self, host: str, port: int, address: str | None) -> int | None:
        host = host.split(":", 1)[0].lower().rstrip(".")
        # a connection to an address that some server listens on explicitly is served only by
        # the servers listening on exactly that address; wildcard listens serve the rest
        exact = address is not None and any(
            lst.port == port and lst.address == address for s in self.servers for lst in s.listens
        )
        candidates = []
        default = None
        for i, s in enumerate(self.servers):
            for lst in s.listens:
                if lst.port == port and (address is None or lst.address == address or (lst.address is None and not exact)):
                    candidates.append(i)
                    if lst.default_server and default is None:
                        default = i
                    break
        if not candidates:
            return None
        best, rank = None, None
        for i in candidates:
            for name in self.servers[i].server_names:
                if not name:
                    continue
                r = _name_matches(name.lower(), host)
                if r is not None:
                    key = (r[0], -r[1]) if r[0] < 3 else (3, 0)
                    if rank is None or key < rank:
                        best, rank = i, key
            if rank is not None and rank[0] == 0:
                break
        if best is not None:
            return best
        return default if default is not None else candidates[0]

    def named_location(self, server: int, name: str) -> LocationConf | None:
        """The ``location @name`` of a server block (error_page, try_files), or None."""
        for loc in self.servers[server].locations:
            if loc.path == name and loc.modifier == "":
                return loc
        return None

    def location_for(self, server: int, uri: str) -> LocationConf | None:
        path = uri.split("?", 1)[0]
        key = (server, path)
        memo = self._memo
        if key in memo:
            return memo[key]
        loc = _find(self._locs[server], path)
        if len(memo) < 100_000:
            memo[key] = loc
        return loc
