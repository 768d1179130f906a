"""What nginx does with an API request before the API module: the request as traffic on the node.

:class:`ApiTraffic` takes a request that reached the app directly (not through the live server,
which does this itself) through the node's own request path, so it is counted as nginx counts it;
:class:`Access` applies the ``allow``/``deny`` rules of the API location. Used by
:class:`api.app.NginxFront`.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache

from .deps import ApiState


@lru_cache(maxsize=1024)
def _client_address(host: str):
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


class Access:
    """``allow``/``deny`` rules of a location: the first rule matching the client decides."""

    def __init__(self, rules):
        self.rules = [
            (r.action == "allow", None if r.cidr == "all" else ipaddress.ip_network(r.cidr, strict=False))
            for r in rules
        ]

    def allows(self, host: str | None) -> bool:
        if not self.rules:
            return True
        addr = _client_address(host) if host else None
        for allow, net in self.rules:
            if net is None or (addr is not None and addr.version == net.version and addr in net):
                return allow
        return True


class ApiTicket:
    """One API request in the node's books until :meth:`finish`."""

    __slots__ = ("node", "conn", "req", "rejected")

    def __init__(self, node, conn, req, rejected: bool):
        self.node = node
        self.conn = conn
        self.req = req
        self.rejected = rejected  # answered by limit_req/limit_conn before the API module

    @property
    def pid(self) -> int:
        return self.conn.worker.pid

    def finish(self, status: int, nbytes: int) -> None:
        node = self.node
        node.respond(self.req, status, nbytes)
        node.close_conn(self.conn)


class ApiTraffic:
    """API requests as traffic on the node, through the node's own request path.

    Each request opens a client connection (closed after the response: API clients are counted
    as non-keepalive), then :meth:`sim.node.node.Node.handle` routes it to the API location, counting
    the worker's request, the server and location zones and applying ``limit_conn`` and
    ``limit_req``. The node hands a request reaching an ``api`` location to the request's own
    ``api_handler``, here a recorder, so a request the node did not answer itself is ours to
    answer. A request ``limit_req`` would delay is answered
    at once (API requests never wait for simulated time; the zone still counts it as delayed).
    Requests that would not reach the API location in the node's configuration are not counted.
    """

    def __init__(self, state: ApiState):
        self.state = state
        self._conf = None
        self._target: tuple[str, int, str | None] | None = None

    def _route_target(self, loc) -> tuple[str, int, str | None] | None:
        """(host, port, listen address) that the node routes to the API's server block."""
        node = self.state.node
        if node.conf is self._conf:
            return self._target
        self._conf = node.conf
        self._target = None
        server = loc.server
        names = [n for n in server.server_names if n and not n.startswith(("~", "*", ".")) and "*" not in n]
        for listen in server.listens:
            for host in [*names, ""]:
                if node.router.server_for(host, listen.port, listen.address) == loc.server_index:
                    self._target = (host, listen.port, listen.address)
                    return self._target
        return None

    def begin(self, scope, uri: str) -> ApiTicket | None:
        node = self.state.node
        loc = self.state.api_location
        if loc is None or not node.up:
            return None
        target = self._route_target(loc)
        if target is None or node.router.location_for(loc.server_index, uri) is not loc.location:
            return None
        conn = node.open_conn(ssl=scope.get("scheme") == "https")
        if conn is None:
            return None
        host, port, address = target
        client = scope.get("client")
        client_ip = client[0] if client else "127.0.0.1"
        seen: list = []
        req = node.handle(conn, uri, host, port, client_ip, _request_bytes(scope), method=scope["method"],
                          listen_address=address, api_handler=seen.append)
        if req is None:
            node.close_conn(conn)
            return None
        return ApiTicket(node, conn, req, rejected=req.final and not seen)


def _request_bytes(scope) -> int:
    """Request line, headers and body as they came on the wire (the body by its Content-Length)."""
    n = len(scope["method"]) + len(scope.get("raw_path") or b"") + len(scope.get("query_string") or b"") + 13
    body = 0
    for name, value in scope.get("headers") or ():
        n += len(name) + len(value) + 4
        if name == b"content-length" and value.isdigit():
            body = int(value)
    return n + 2 + body


def response_head_bytes(message) -> int:
    return 17 + sum(len(k) + len(v) + 4 for k, v in message.get("headers") or ()) + 2
