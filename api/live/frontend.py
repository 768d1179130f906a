"""The data plane of one served node: live requests and stream sessions into the model.

:class:`NodeFrontend` answers the node's HTTP connections through :meth:`sim.node.node.Node.handle`
(and its ``api_hook`` for ``api`` and file locations); :class:`_StreamConnection` carries one TCP
connection to a stream server as one stream session.
"""

from __future__ import annotations

import asyncio
import ipaddress
import mimetypes
from pathlib import Path

from api.live.asgi import call_asgi
from api.live.http import _FILL, HttpConnection, HttpRequest
from api.live.listen import Binding
from api.live.pages import error_page
from sim.conf.config import ClientConf
from sim.http.routing import _name_matches
from sim.node.refused import refuse

_DEFAULT_CLIENT = ClientConf()


class _Pending:
    """A live request inside the model: the connection to answer and what to answer with."""

    __slots__ = ("proto", "req", "body", "headers", "hooked")

    def __init__(self, proto, req):
        self.proto = proto
        self.req = req
        self.body = None
        self.headers = None
        self.hooked = False


def access_allowed(rules, client_ip: str) -> bool:
    """nginx's ``allow``/``deny``: the first rule that matches decides; none matching allows."""
    if not rules:
        return True
    ip = ipaddress.ip_address(client_ip)
    for rule in rules:
        if rule.cidr == "all" or ip in ipaddress.ip_network(rule.cidr, strict=False):
            return rule.action == "allow"
    return True


class NodeFrontend:
    """The live face of one node: its HTTP and stream sockets, feeding :meth:`Node.handle`.

    ``live`` is the :class:`api.live.cluster.LiveCluster` that serves the node (not annotated:
    that module imports this one)."""

    def __init__(self, live, node):
        self.live = live
        self.node = node
        self.pacer = live.pacer
        self.bindings: list[Binding] = []
        self.api_app = None
        self._addr_cache: dict[tuple, str | None] = {}
        self._seen_incarnation = node.incarnation
        self.tasks: set[asyncio.Task] = set()
        #: what the wire refused (status: count) and the connections closed without an answer
        #: (the timeout: count), as nginx's error log would show them
        self.refused: dict[int, int] = {}
        self.dropped_by: dict[str, int] = {}
        node.api_hook = self._hook

    # --- connections ---------------------------------------------------------------------------

    def connection_made(self, proto) -> None:
        node = self.node
        conn = node.open_conn()
        if conn is None:  # the node is down or out of worker_connections
            proto.abort()
            return
        proto.state = (conn, node.incarnation)

    def connection_lost(self, proto) -> None:
        st = proto.state
        if st is None:
            return
        conn, incarnation = st
        proto.state = None
        if incarnation != self.node.incarnation:
            return  # the process that held it is gone; its counters went with it
        req = proto.current
        if req is not None and req.sim is not None and not req.sim.final:
            self.node.discard(req.sim)
        self.node.close_conn(conn)

    def check_crash(self) -> None:
        """After a pacer step: a crashed node drops every live connection."""
        node = self.node
        if node.incarnation != self._seen_incarnation:
            self._seen_incarnation = node.incarnation
            for b in self.bindings:
                for proto in list(b.connections):
                    if proto.state is not None and proto.state[1] != node.incarnation:
                        proto.abort()

    # --- reading requests: nginx's limits from the node's config ---------------------------------

    def wall(self, ms: float) -> float:
        """Wall seconds for ``ms`` of simulated time: nginx's timers run on the model's clock."""
        return ms / self.pacer.ms_per_s

    def client_conf(self, proto) -> ClientConf:
        """The default server's settings for the binding (nginx reads a head with them)."""
        http = self.node.conf.http
        binding = proto.binding
        if http is None or binding is None:
            return _DEFAULT_CLIENT
        addrs = binding.config_addresses
        address = next(iter(addrs)) if len(addrs) == 1 else None
        si = self.node.routes.router.server_for("", binding.port, address)
        return http.servers[si].client if si is not None else _DEFAULT_CLIENT

    def host_conf(self, proto, host: str) -> ClientConf | None:
        """The settings of the server ``host`` chooses on the binding (None without http)."""
        http = self.node.conf.http
        binding = proto.binding
        if http is None or binding is None:
            return None
        si = self.node.routes.router.server_for(host, binding.port, self._listen_address(binding, host))
        return http.servers[si].client if si is not None else None

    def admit(self, proto, req: HttpRequest) -> int | None:
        """At the end of a head: the location's settings, and 413 when the declared body is
        larger than its ``client_max_body_size`` (nginx decides it before reading the body)."""
        node = self.node
        http = node.conf.http
        binding = proto.binding
        conf = proto.conf
        loc = None
        if http is not None:
            host = req.host or binding.bind_address
            router = node.routes.router
            si = router.server_for(host, binding.port, self._listen_address(binding, host))
            if si is not None:
                conf = http.servers[si].client
                loc = router.location_for(si, req.path)
                if loc is not None:
                    conf = loc.client
        req.conf = conf
        if loc is not None and loc.api:
            # the API takes a body of up to client_body_buffer_size; one byte more says "larger"
            req.keep = http.client_body_buffer_size + 1
        if conf.max_body_size and (req.length or 0) > conf.max_body_size:
            return 413
        return None

    def dropped(self, proto, status: int, why: str) -> None:
        self.dropped_by[why] = self.dropped_by.get(why, 0) + 1

    def ended_on_wire(self, proto, status: int, why: str, host: str | None, path: str | None, bytes_in: int,
                bytes_out: int) -> None:
        """A request that ended on the wire (refused, timed out, or its client gone) never
        reached :meth:`Node.handle`; it is counted as nginx logs it (:func:`sim.node.refused.refuse`): in the
        server block ``host`` chose (the default server of the address and port without one)
        and, once ``path`` says its location was chosen, in that location's zone."""
        if why == "refused":
            self.refused[status] = self.refused.get(status, 0) + 1
        node = self.node
        st = proto.state
        http = node.conf.http
        binding = proto.binding
        if st is None or st[1] != node.incarnation or http is None or binding is None:
            return
        router = node.routes.router
        if host is None:
            addrs = binding.config_addresses
            si = router.server_for("", binding.port, next(iter(addrs)) if len(addrs) == 1 else None)
        else:
            si = router.server_for(host, binding.port, self._listen_address(binding, host))
        zone = None
        if si is not None and path is not None:
            loc = router.location_for(si, path)
            if loc is not None:
                zone = loc.status_zone or None
        refuse(node, st[0], si, status, bytes_in, bytes_out, zone)

    # --- requests ------------------------------------------------------------------------------

    def request(self, proto, req: HttpRequest) -> None:
        req.t_in = self.pacer.loop.time()
        self.pacer.submit(self._inject, proto, req)

    def _listen_address(self, binding: Binding, host: str) -> str | None:
        """The config address a live request is taken to have arrived at (docs/live.md)."""
        addrs = binding.config_addresses
        if len(addrs) == 1:
            return next(iter(addrs))
        key = (id(self.node.conf), binding.port, host)
        if key in self._addr_cache:
            return self._addr_cache[key]
        explicit = sorted(a for a in addrs if a is not None)
        chosen = explicit[0] if explicit else None
        http = self.node.conf.http
        if None in addrs and http is not None:
            h = host.split(":", 1)[0].lower().rstrip(".")
            for s in http.servers:
                if any(lst.port == binding.port and lst.address is None for lst in s.listens) and any(
                    n and _name_matches(n.lower(), h) is not None for n in s.server_names
                ):
                    chosen = None
                    break
        if len(self._addr_cache) < 10_000:
            self._addr_cache[key] = chosen
        return chosen

    def _inject(self, proto: HttpConnection, req: HttpRequest) -> None:
        if proto.closed:
            return
        st = proto.state
        node = self.node
        if st is None or st[1] != node.incarnation or not node.up:
            proto.abort()
            return
        conn = st[0]
        binding = proto.binding
        host = req.host or binding.bind_address
        pending = _Pending(proto, req)
        # the request carries its own way back to this connection, so an api location it reaches
        # later (after a limit_req delay, say) still answers it
        sim = node.handle(
            conn, req.uri, host, binding.port, proto.client_ip, req.nbytes,
            done=lambda r, p=pending: self._done(p, r), method=req.method,
            listen_address=self._listen_address(binding, host),
            api_handler=lambda r, p=pending: self._hooked(r, p),
        )
        if sim is None:
            # no server block listens there (or the node is down): nginx would not have accepted it
            proto.abort()
            return
        if not sim.final:
            req.sim = sim

    def _done(self, pending: _Pending, sim) -> None:
        proto = pending.proto
        if proto.closed:
            return
        if sim.status == 0:
            proto.abort()  # the node crashed under this request: the client sees a reset
            return
        st = proto.state
        if st is not None and st[1] == self.node.incarnation:
            self.node.idle_conn(st[0])
        loc = sim.loc
        if pending.body is not None:
            proto.respond(sim.status, pending.headers or [], pending.body)
        elif loc is not None and loc.return_code is not None and loc.return_text is not None:
            code = loc.return_code
            if code in (301, 302, 303, 307, 308):
                proto.respond(code, [("Content-Type", "text/html"), ("Location", loc.return_text)],
                              error_page(code))
            else:
                proto.respond(code, [("Content-Type", "text/plain")], loc.return_text.encode())
        elif loc is not None and (loc.root is not None or loc.alias is not None) and not pending.hooked:
            # the model answered a file location itself (no hook for it yet): serve the file anyway
            status, headers, body = self._static(loc, pending.req)
            proto.respond(status, headers, body)
        elif sim.status >= 400 and sim.resp_bytes == 0:
            proto.respond_error(sim.status)  # nginx's own page (and, after some, no keep-alive)
        else:
            headers = [("Content-Type", "application/octet-stream"), ("X-Node", self.node.name)]
            attempt = getattr(sim, "attempt", None)
            header_bytes = self.live.cluster.scenario.backend_default.header_bytes
            if attempt is not None:  # as `add_header X-Upstream-Addr $upstream_addr` would show it
                peer = attempt.peer
                headers.append(("X-Upstream-Addr", peer.server))
                backend = self.node.backend_of(peer.server, peer.name)
                if backend is not None:
                    header_bytes = backend.spec.header_bytes
            cs = getattr(sim, "cache_status", None)
            if cs is not None:
                headers.append(("X-Cache-Status", str(getattr(cs, "value", cs))))
            # the model's size includes the backend's response header; the client gets the body
            proto.respond(sim.status, headers, None, length=max(0, sim.resp_bytes - header_bytes))

    # --- api and files: the node's api_hook -----------------------------------------------------

    def _hook(self, sim) -> None:
        """A simulated client reached an ``api`` (or file) location: no HTTP to answer."""
        self.node.respond(sim, 404, 0)

    def _hooked(self, sim, pending: _Pending) -> None:
        """A live request reached an ``api`` (or file) location: answer it here and complete it."""
        node = self.node
        loc = sim.loc
        pending.hooked = True
        if not access_allowed(loc.access, sim.client_ip):
            pending.body = error_page(403)
            pending.headers = [("Content-Type", "text/html")]
            node.respond(sim, 403, len(pending.body))
            return
        if not loc.api:
            status, headers, body = self._static(loc, pending.req)
            pending.body, pending.headers = body, headers
            node.respond(sim, status, len(body))
            return
        task = self.pacer.loop.create_task(self._api(sim, pending))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _api(self, sim, pending: _Pending) -> None:
        self.pacer.catch_up()
        app = self.live.api_app(self.node)
        proto = pending.proto
        req = pending.req
        pid = sim.worker.pid if sim.worker is not None else None
        try:
            # the app's GETs without ASGI messages where it offers that (api.app.ApiApp.answer_get)
            answer_get = getattr(app, "answer_get", None)
            answer = None
            if answer_get is not None:
                answer = await answer_get(req.method, req.path, req.target.partition("?")[2].encode("latin-1"), pid)
            if answer is None:
                answer = await call_asgi(app, proto, req, (proto.binding.bind_address, proto.binding.bind_port),
                                         {"nginx.pid": pid, "nginx.counted": True})
            status, headers, body = answer
        except Exception:
            import traceback

            traceback.print_exc()
            status, headers, body = 500, [("Content-Type", "text/html")], error_page(500)
        pending.body, pending.headers = body, headers
        if not sim.final:
            # a HEAD answer has the body's Content-Length but not the body
            self.node.respond(sim, status, 0 if req.method == "HEAD" else len(body))

    def _static(self, loc, req: HttpRequest) -> tuple[int, list, bytes]:
        """A file from disk under ``root``/``alias``, as nginx maps the URI to a path."""
        if req.method not in ("GET", "HEAD"):
            return 405, [("Content-Type", "text/html")], error_page(405)
        path = req.path  # decoded, dot segments resolved (api.live.rules.normalize_path)
        if loc.alias is not None:
            rel = path[len(loc.path):] if loc.modifier in ("", "^~") and path.startswith(loc.path) else ""
            fs = Path(loc.alias + rel)
        else:
            fs = Path(loc.root + path)
        if fs.is_dir():
            fs = fs / "index.html"
        parts = Path(path).parts
        if ".." in parts or not fs.is_file():
            return 404, [("Content-Type", "text/html")], error_page(404)
        try:
            body = fs.read_bytes()
        except OSError:
            return 403, [("Content-Type", "text/html")], error_page(403)
        ctype = mimetypes.guess_type(fs.name)[0] or "application/octet-stream"
        return 200, [("Content-Type", ctype)], body


# ---------------------------------------------------------------------------------------------
# stream sessions


class _StreamConnection(asyncio.Protocol):
    """A TCP connection to a stream server: one stream session through the model.

    The session opens when the client connects; when the model's session ends with 200 the
    client receives the simulated response size, with any other status the connection closes.
    Bytes the client sends are echoed back while it stays connected. When the model offers
    ``StreamSide.close_session`` the session instead lasts until the client closes and counts
    the bytes it really sent.
    """

    def __init__(self, frontend: NodeFrontend, binding: Binding):
        self.frontend = frontend
        self.binding = binding
        self.transport = None
        self.session = None
        self.received = 0
        self.closed = False
        self.state = None
        self.current = None
        self.replied = False

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.binding.connections.add(self)
        peer = transport.get_extra_info("peername")
        self.client_ip = peer[0] if peer else "127.0.0.1"
        self.frontend.pacer.submit(self._open)

    def _open(self) -> None:
        if self.closed:
            return
        node = self.frontend.node
        side = getattr(node, "stream", None)
        if side is None or not node.up:
            self.abort()
            return
        addrs = self.binding.config_addresses
        listen_address = next(iter(addrs)) if len(addrs) == 1 else None
        self.session = side.open_session(
            self.binding.port, self.client_ip, 0, None, self._done,
            listen_address=listen_address, on_reply=self._reply,
        )
        if self.session is None:
            self.abort()

    def _reply(self, session) -> None:
        """The backend's answer has reached the client in the model: send that many bytes."""
        if self.closed or self.replied:
            return
        self.replied = True
        n = session.sent
        while n > 0:
            k = min(n, len(_FILL))
            self.transport.write(_FILL[:k])
            n -= k

    def _done(self, session) -> None:
        """The model ended the session (no peer, limit_conn, ``return``, proxy_timeout): nginx
        closes the connection, after sending what the session sent."""
        if self.closed:
            return
        if session.status == 200:
            self._reply(session)
        self.closed = True
        self.transport.close()

    def data_received(self, data: bytes) -> None:
        self.received += len(data)
        self.transport.write(data)
        s = self.session
        if s is not None and not s.final:
            self.frontend.pacer.submit(s.side.note_activity, s)  # proxy_timeout starts again

    def eof_received(self):
        return False

    def connection_lost(self, exc) -> None:
        self.closed = True
        self.binding.connections.discard(self)
        s = self.session
        node = self.frontend.node
        side = getattr(node, "stream", None)
        if s is not None and not s.final and side is not None:
            self.frontend.pacer.submit(s.side.close_session, s, self.received)

    def abort(self) -> None:
        if not self.closed:
            self.closed = True
            self.transport.abort()

