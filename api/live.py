"""Live mode: the simulated cluster served on loopback, in step with the wall clock.

Everything runs on one asyncio loop and one thread: a :class:`Pacer` task advances the simpy
environment to the sim time the wall clock (times a speed factor) has reached, and the nodes'
sockets feed real requests into the same model. Nothing here sleeps inside the model, and no
other thread touches it (see DESIGN.md section 4).

* **HTTP** (:class:`_HttpConnection`): a small HTTP/1.1 server of our own on asyncio
  protocols (keep-alive, pipelining, ``Content-Length`` and chunked bodies). One TCP connection
  is one client connection of the node (:meth:`sim.node.node.Node.open_conn`). Each request is
  handed to the pacer, which injects it at ``env.now`` right after advancing the clock, through
  :meth:`sim.node.node.Node.handle`; the client gets the simulated status and a body of the
  simulated size when the simulated response completes. ``api`` locations reach the node's
  FastAPI app and ``root``/``alias`` locations the disk through the node's ``api_hook``, so
  every live request counts in the node's counters like a simulated one.
* **stream** (:class:`_StreamConnection`): a TCP connection to a stream server's port is one
  stream session through the model; see docs/live.md for what the client receives.
* **control** (:mod:`api.control`): a JSON app on its own port that lists nodes, reports sim
  time and pacer lag, and injects faults.

:class:`LiveCluster` binds everything (a port in use is a :class:`LiveError` naming the node,
address and port), runs the pacer, and stops cleanly.
"""

from __future__ import annotations

import asyncio
import gc
import ipaddress
import mimetypes
import os
import socket
import time
from collections import deque
from dataclasses import dataclass, field
from email.utils import formatdate
from http import HTTPStatus
from pathlib import Path
from urllib.parse import unquote

from sim.http.routing import _name_matches

SERVER_HEADER = "nginx"
MAX_HEADER_BYTES = 64 * 1024
MAX_BODY_BYTES = 64 * 1024 * 1024


class LiveError(RuntimeError):
    """Live mode cannot start (a port in use, an address that cannot be bound)."""


# ---------------------------------------------------------------------------------------------
# The pacer


class LagStats:
    """A bounded window of lag samples (ms) with percentiles."""

    def __init__(self, window: int = 50_000):
        self.samples: deque[float] = deque(maxlen=window)
        self.count = 0
        self.max = 0.0

    def add(self, ms: float) -> None:
        self.samples.append(ms)
        self.count += 1
        if ms > self.max:
            self.max = ms

    def reset(self) -> None:
        self.samples.clear()
        self.count = 0
        self.max = 0.0

    def summary(self) -> dict:
        s = sorted(self.samples)
        n = len(s)

        def q(p: float) -> float | None:
            return round(s[min(n - 1, int(p * n))], 3) if n else None

        return {"count": self.count, "p50_ms": q(0.50), "p99_ms": q(0.99), "max_ms": round(self.max, 3)}


class Pacer:
    """Advances ``cluster`` to the sim time the wall clock has reached, times ``speed``.

    The only code that advances the model in live mode. Work that must happen at the current
    sim time (a request arriving) is handed over with :meth:`submit`; the pacer wakes at once,
    advances the clock to now and runs it. Work that holds the loop for a while (an API
    request) calls :meth:`catch_up` first, so that events due meanwhile do not wait behind it.

    ``lag`` records, for every simulated event, how late (wall ms) it ran behind the wall
    clock; ``step_lag``, for every step that had events due, how late the oldest of them ran
    (fewer samples: a step that catches up a backlog counts once); ``inject_delay`` how long
    submitted work waited for the pacer. docs/live.md says where lag comes from.
    """

    def __init__(self, cluster, speed: float = 1.0, *, max_idle_s: float = 0.1):
        if speed <= 0:
            raise ValueError("speed must be positive")
        self.cluster = cluster
        self.env = cluster.env
        self.speed = float(speed)
        self.max_idle_s = max_idle_s
        self.ms_per_s = 1000.0 * self.speed
        self.loop: asyncio.AbstractEventLoop | None = None
        self.clock = time.monotonic
        self.wall0 = 0.0
        self.sim0 = 0.0
        self.steps = 0
        self.lag = LagStats(200_000)
        self.step_lag = LagStats()
        self.inject_delay = LagStats()
        self.after_step: list = []
        self._pending: list[tuple[float, object, tuple]] = []
        self._waiter: asyncio.Future | None = None
        self._stopping = False
        self._stepping = False
        self._begun = False

    def target(self, wall: float | None = None) -> float:
        """The sim time (ms) the wall clock has reached."""
        if wall is None:
            wall = self.clock()
        return self.sim0 + (wall - self.wall0) * self.ms_per_s

    def submit(self, fn, *args) -> None:
        """Run ``fn(*args)`` in the pacer, at the current sim time, as soon as possible."""
        self._pending.append((self.clock(), fn, args))
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    def wake(self) -> None:
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    def stop(self) -> None:
        self._stopping = True
        self.wake()

    def stats(self) -> dict:
        return {
            "speed": self.speed,
            "sim_ms": round(self.env.now, 3),
            "target_ms": round(self.target(), 3),
            "steps": self.steps,
            "lag": self.lag.summary(),
            "step_lag": self.step_lag.summary(),
            "inject_delay": self.inject_delay.summary(),
        }

    def reset_stats(self) -> None:
        self.lag.reset()
        self.step_lag.reset()
        self.inject_delay.reset()

    def begin(self, clock=None) -> None:
        """Start the wall clock: now is the current sim time. ``clock`` (seconds) defaults to the
        running loop's; tests pass their own and call :meth:`step`."""
        if clock is None:
            self.loop = asyncio.get_running_loop()
            clock = self.loop.time
        self.clock = clock
        self.wall0 = clock()
        self.sim0 = self.env.now
        self._begun = True

    def step(self, now: float) -> float:
        """One step at wall time ``now`` (loop seconds): advance the model to the sim time the wall
        clock has reached, run the submitted work there, and return how long (seconds after
        ``now``) the pacer may sleep before the next simulated event is due (0: go on at once)."""
        env = self.env
        target = self.sim0 + (now - self.wall0) * self.ms_per_s
        self._stepping = True
        try:
            nxt = env.peek()
            if nxt <= target:
                due = nxt if nxt > env.now else env.now
                self.step_lag.add((target - due) / self.speed)
                self._run_due(target)
            if target > env.now:
                self.cluster.run(target)  # nothing is due any more: this only moves the clock
                if env.peek() == env.now:
                    # simpy re-queues its own "until" marker at env.now after every run (without
                    # callbacks); drop it so the next wake-up is the next real event
                    env.step()
            self.steps += 1
            if self._pending:
                pending, self._pending = self._pending, []
                for t_in, fn, args in pending:
                    self.inject_delay.add((now - t_in) * 1000.0 if now > t_in else 0.0)
                    fn(*args)
            for hook in self.after_step:
                hook()
        finally:
            self._stepping = False
        if self._pending:
            return 0.0
        nxt = env.peek()
        if nxt == float("inf"):
            return self.max_idle_s
        return min(self.max_idle_s, self.wall0 + (nxt - self.sim0) / self.ms_per_s - now)

    def _run_due(self, target: float) -> None:
        """Run every event due by ``target``, one at a time, recording how late each one ran."""
        env = self.env
        peek, step, add = env.peek, env.step, self.lag.add
        clock, wall0, sim0, ms_per_s, speed = self.clock, self.wall0, self.sim0, self.ms_per_s, self.speed
        while True:
            t = peek()
            if t > target:
                return
            if t < env.now:
                t = env.now
            late = sim0 + (clock() - wall0) * ms_per_s - t
            add(late / speed if late > 0.0 else 0.0)
            step()

    def catch_up(self) -> None:
        """Run what is due now, before work that holds the loop (an API request).

        The pacer task wakes on a timer or when work is submitted, but it runs only when the loop
        gets to it, after whatever else is ready; an API request takes a few hundred
        microseconds, and several in a row would make simulated events late. The task is woken
        afterwards to plan its next sleep from the new state of the model.
        """
        if self._stepping or self._stopping or not self._begun:
            return
        now = self.clock()
        if self._pending or self.env.peek() <= self.sim0 + (now - self.wall0) * self.ms_per_s:
            self.step(now)
            self.wake()

    async def run(self) -> None:
        if self.loop is None:
            self.begin()
        loop = self.loop
        while not self._stopping:
            now = loop.time()
            delay = self.step(now) - (loop.time() - now)
            if delay <= 0:
                await asyncio.sleep(0)
                continue
            waiter = self._waiter = loop.create_future()
            handle = loop.call_later(delay, _resolve, waiter)
            try:
                await waiter
            finally:
                handle.cancel()
                self._waiter = None


def _resolve(fut: asyncio.Future) -> None:
    if not fut.done():
        fut.set_result(None)


# ---------------------------------------------------------------------------------------------
# Where each node listens


@dataclass
class Binding:
    """One socket of one node: where it is bound and which config listens it stands for."""

    node: object  # sim.node.node.Node
    kind: str  # "http" | "stream"
    port: int  # the config's port (what the model sees)
    bind_address: str
    bind_port: int
    config_addresses: frozenset = frozenset()  # addresses the config's listens name on this port
    server: asyncio.AbstractServer | None = None
    connections: set = field(default_factory=set)

    def describe(self) -> dict:
        return {
            "kind": self.kind,
            "address": self.bind_address,
            "port": self.bind_port,
            "config_port": self.port,
            "url": f"http://{self.bind_address}:{self.bind_port}" if self.kind == "http" else None,
        }


def node_ports(conf) -> tuple[dict[int, frozenset], dict[int, frozenset]]:
    """``({http port: config addresses}, {stream tcp port: config addresses})`` of a config.
    Stream servers that only run ``zone_sync`` are left out: that traffic stays in the model."""
    http: dict[int, set] = {}
    stream: dict[int, set] = {}
    if conf.http is not None:
        for s in conf.http.servers:
            for lst in s.listens:
                http.setdefault(lst.port, set()).add(lst.address)
    if conf.stream is not None:
        for s in conf.stream.servers:
            if getattr(s, "zone_sync", None) is not None and s.proxy_pass is None and s.return_text is None:
                continue
            for lst in s.listens:
                if not lst.udp:
                    stream.setdefault(lst.port, set()).add(lst.address)
    return ({p: frozenset(a) for p, a in http.items()}, {p: frozenset(a) for p, a in stream.items()})


def bind_address_for(node, index: int, *, port_offset: int | None, address_base: str | None) -> str:
    if port_offset is not None:
        return "127.0.0.1"
    if address_base is not None:
        return str(ipaddress.IPv4Address(address_base) + index)
    return node.address


def plan_bindings(cluster, *, port_offset: int | None = None, address_base: str | None = None) -> list[Binding]:
    """Every socket the served cluster needs, in node order."""
    out = []
    for index, node in enumerate(cluster.nodes.values()):
        out.extend(node_bindings(node, index, port_offset=port_offset, address_base=address_base))
    return out


def node_bindings(node, index: int, *, port_offset: int | None, address_base: str | None) -> list[Binding]:
    """The sockets of one node (the ``index``-th of its cluster)."""
    addr = bind_address_for(node, index, port_offset=port_offset, address_base=address_base)
    http, stream = node_ports(node.conf)
    out = []
    for kind, ports in (("http", http), ("stream", stream)):
        for port in sorted(ports):
            bport = port + port_offset * index if port_offset is not None else port
            out.append(Binding(node, kind, port, addr, bport, ports[port]))
    return out


def _listen_socket(b: Binding) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((b.bind_address, b.bind_port))
        sock.listen(1024)
    except OSError as e:
        sock.close()
        what = e.strerror or str(e)
        hint = ""
        if e.errno == 99:  # EADDRNOTAVAIL: this system routes only 127.0.0.1
            hint = " (this system has no such loopback address: try --port-offset)"
        elif e.errno == 13:
            hint = " (ports below 1024 need privileges: try --port-offset or other ports)"
        raise LiveError(
            f"node {b.node.name}: cannot listen on {b.bind_address}:{b.bind_port} ({b.kind}): {what}{hint}"
        ) from None
    sock.setblocking(False)
    return sock


# ---------------------------------------------------------------------------------------------
# HTTP/1.1 on asyncio protocols


class HttpRequest:
    __slots__ = ("method", "target", "version", "headers", "body", "nbytes", "keep_alive", "host", "t_in", "sim")

    def __init__(self, method, target, version, headers, body, nbytes, keep_alive, host):
        self.method = method
        self.target = target
        self.version = version
        self.headers = headers  # list of (lower-case name, value) as bytes
        self.body = body
        self.nbytes = nbytes
        self.keep_alive = keep_alive
        self.host = host
        self.t_in = 0.0
        self.sim = None  # the model's Request while it is in flight

    def header(self, name: bytes) -> bytes | None:
        for k, v in self.headers:
            if k == name:
                return v
        return None


class _BadRequest(Exception):
    def __init__(self, status: int):
        self.status = status


def _parse_head(head: bytes):
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ")
    if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
        raise _BadRequest(400)
    method, target, version = parts
    headers = []
    for line in lines[1:]:
        if not line:
            continue
        k, sep, v = line.partition(b":")
        if not sep or not k or k != k.strip():
            raise _BadRequest(400)
        headers.append((k.lower(), v.strip()))
    return method.decode("latin-1"), target.decode("latin-1"), version.decode("latin-1"), headers


def _dechunk(buf: bytearray, start: int):
    """(body, end offset) of a complete chunked body at ``start``, or None if incomplete."""
    body = bytearray()
    pos = start
    while True:
        eol = buf.find(b"\r\n", pos)
        if eol < 0:
            return None
        try:
            size = int(bytes(buf[pos:eol]).split(b";", 1)[0], 16)
        except ValueError:
            raise _BadRequest(400) from None
        pos = eol + 2
        if size == 0:
            end = buf.find(b"\r\n\r\n", pos - 2)
            if end < 0:
                return None
            return bytes(body), end + 4
        if len(buf) < pos + size + 2:
            return None
        body += buf[pos : pos + size]
        if len(body) > MAX_BODY_BYTES:
            raise _BadRequest(413)
        pos += size + 2


_REASONS = {s.value: s.phrase for s in HTTPStatus}
_FILL = b"x" * 65536


def reason(status: int) -> str:
    return _REASONS.get(status, "Unknown")


_DATE = [0, ""]


def _date() -> str:
    """The ``Date`` header, formatted once per second."""
    now = int(time.time())
    if _DATE[0] != now:
        _DATE[0], _DATE[1] = now, formatdate(now, usegmt=True)
    return _DATE[1]


class _HttpConnection(asyncio.Protocol):
    """One HTTP client connection; requests are handled one at a time, in order."""

    def __init__(self, handler, binding: Binding | None = None):
        self.handler = handler
        self.binding = binding
        self.transport = None
        self.buf = bytearray()
        self.busy = False
        self.closed = False
        self.client_ip = "127.0.0.1"
        self.client_port = 0
        self.state = None  # the handler's per-connection state (the node's client connection)
        self.current = None  # the request being answered

    # --- asyncio ---------------------------------------------------------------------------------

    def connection_made(self, transport) -> None:
        self.transport = transport
        peer = transport.get_extra_info("peername")
        if peer:
            self.client_ip, self.client_port = peer[0], peer[1]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
        if self.binding is not None:
            self.binding.connections.add(self)
        self.handler.connection_made(self)

    def connection_lost(self, exc) -> None:
        self.closed = True
        if self.binding is not None:
            self.binding.connections.discard(self)
        self.handler.connection_lost(self)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if not self.busy:
            self._next()

    # --- parsing ---------------------------------------------------------------------------------

    def _next(self) -> None:
        buf = self.buf
        if self.closed or not buf:
            return
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            if len(buf) > MAX_HEADER_BYTES:
                self.fail(431)
            return
        try:
            method, target, version, headers = _parse_head(bytes(buf[:end]))
            body_start = end + 4
            length = None
            chunked = False
            host = None
            conn_hdr = b""
            for k, v in headers:
                if k == b"content-length":
                    length = int(v)
                    if length < 0 or length > MAX_BODY_BYTES:
                        raise _BadRequest(413)
                elif k == b"transfer-encoding":
                    chunked = v.lower().endswith(b"chunked")
                elif k == b"host":
                    host = v.decode("latin-1")
                elif k == b"connection":
                    conn_hdr = v.lower()
            if chunked:
                got = _dechunk(buf, body_start)
                if got is None:
                    return
                body, consumed = got
            else:
                n = length or 0
                if len(buf) < body_start + n:
                    return
                body = bytes(buf[body_start : body_start + n])
                consumed = body_start + n
        except (_BadRequest, ValueError) as e:
            self.fail(e.status if isinstance(e, _BadRequest) else 400)
            return
        del buf[:consumed]
        keep = b"close" not in conn_hdr if version == "HTTP/1.1" else b"keep-alive" in conn_hdr
        req = HttpRequest(method, target, version, headers, body, consumed, keep, host)
        self.busy = True
        self.current = req
        self.handler.request(self, req)

    # --- answering -------------------------------------------------------------------------------

    def respond(self, status: int, headers: list[tuple[str, str]], body=b"", *, length: int | None = None,
                keep_alive: bool = True) -> None:
        """Write a response: ``body`` bytes, or ``length`` filler bytes when ``body`` is None."""
        if self.closed:
            return
        req = self.current
        keep = keep_alive and (req is None or req.keep_alive)
        n = len(body) if body is not None else (length or 0)
        head = [f"HTTP/1.1 {status} {reason(status)}\r\nServer: {SERVER_HEADER}\r\nDate: {_date()}\r\n"]
        for k, v in headers:
            head.append(f"{k}: {v}\r\n")
        no_body = status in (204, 304) or 100 <= status < 200
        if not no_body:
            head.append(f"Content-Length: {n}\r\n")
        head.append("Connection: keep-alive\r\n\r\n" if keep else "Connection: close\r\n\r\n")
        t = self.transport
        data = "".join(head).encode("latin-1")
        if not no_body and (req is None or req.method != "HEAD"):
            # one write (one send) for the head and a body that is not large
            if body is None and n <= len(_FILL):
                body, n = _FILL[:n], 0
            if body is not None:
                if len(body) <= 65536:
                    data += body
                else:
                    t.write(data)
                    data = body
            else:
                t.write(data)
                while n > 0:
                    k = min(n, len(_FILL))
                    t.write(_FILL[:k])
                    n -= k
                data = b""
        if data:
            t.write(data)
        self.current = None
        self.busy = False
        if not keep:
            self.closed = True
            t.close()
            return
        if self.buf:
            self._next()

    def fail(self, status: int) -> None:
        """A malformed request: answer and close, as nginx does."""
        self.current = None
        body = _error_page(status)
        self.respond(status, [("Content-Type", "text/html")], body, keep_alive=False)

    def abort(self) -> None:
        """Reset the connection (the node crashed or refused it)."""
        if not self.closed:
            self.closed = True
            self.transport.abort()


def _error_page(status: int) -> bytes:
    text = f"{status} {reason(status)}"
    return (f"<html>\r\n<head><title>{text}</title></head>\r\n<body>\r\n<center><h1>{text}</h1></center>\r\n"
            f"<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n").encode()


# ---------------------------------------------------------------------------------------------
# ASGI, for the nodes' API apps and the control app


async def call_asgi(app, proto: _HttpConnection, req: HttpRequest, server: tuple[str, int],
                    extra: dict | None = None) -> tuple[int, list[tuple[str, str]], bytes]:
    """Run one request through an ASGI app; return its status, headers and body."""
    path, _, qs = req.target.partition("?")
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": req.version[5:],
        "method": req.method,
        "scheme": "http",
        "path": unquote(path),
        "raw_path": path.encode("latin-1"),
        "query_string": qs.encode("latin-1"),
        "root_path": "",
        "headers": req.headers,
        "client": (proto.client_ip, proto.client_port),
        "server": server,
        "state": {},
    }
    if extra:
        scope.update(extra)
    sent_body = False

    async def receive():
        nonlocal sent_body
        if not sent_body:
            sent_body = True
            return {"type": "http.request", "body": req.body, "more_body": False}
        await asyncio.Event().wait()  # nothing more will come; the app finishes first
        return {"type": "http.disconnect"}

    status = 500
    headers: list[tuple[str, str]] = []
    chunks: list[bytes] = []

    async def send(message):
        nonlocal status, headers
        if message["type"] == "http.response.start":
            status = message["status"]
            headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in message.get("headers", ())
                       if k.lower() not in (b"content-length", b"connection", b"date", b"server")]
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(scope, receive, send)
    return status, headers, b"".join(chunks)


class _AsgiHandler:
    """Serves an ASGI app (the control endpoint) on an :class:`_HttpConnection`."""

    def __init__(self, app, address: str, port: int):
        self.app = app
        self.server = (address, port)
        self.tasks: set[asyncio.Task] = set()

    def connection_made(self, proto) -> None:
        pass

    def connection_lost(self, proto) -> None:
        pass

    def request(self, proto, req) -> None:
        task = asyncio.get_running_loop().create_task(self._run(proto, req))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _run(self, proto, req) -> None:
        try:
            status, headers, body = await call_asgi(self.app, proto, req, self.server)
        except Exception:  # the control app failed: say so rather than hang the client
            import traceback

            traceback.print_exc()
            status, headers, body = 500, [("Content-Type", "text/plain")], b"internal error\n"
        proto.respond(status, headers, body)


# ---------------------------------------------------------------------------------------------
# The data plane of one node


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
    """The live face of one node: its HTTP and stream sockets, feeding :meth:`Node.handle`."""

    def __init__(self, live: LiveCluster, node):
        self.live = live
        self.node = node
        self.pacer = live.pacer
        self.bindings: list[Binding] = []
        self.api_app = None
        self._waiting: dict[object, _Pending] = {}  # ClientConn -> live request awaiting its hook
        self._addr_cache: dict[tuple, str | None] = {}
        self._seen_incarnation = node.incarnation
        self.tasks: set[asyncio.Task] = set()
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
        self._waiting.pop(conn, None)
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

    def _inject(self, proto: _HttpConnection, req: HttpRequest) -> None:
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
        self._waiting[conn] = pending
        sim = node.handle(
            conn, req.target, host, binding.port, proto.client_ip, req.nbytes,
            done=lambda r, p=pending: self._done(p, r), method=req.method,
            listen_address=self._listen_address(binding, host),
        )
        self._waiting.pop(conn, None)
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
                              _error_page(code))
            else:
                proto.respond(code, [("Content-Type", "text/plain")], loc.return_text.encode())
        elif loc is not None and (loc.root is not None or loc.alias is not None) and not pending.hooked:
            # the model answered a file location itself (no hook for it yet): serve the file anyway
            status, headers, body = self._static(loc, pending.req)
            proto.respond(status, headers, body)
        elif sim.status >= 400 and sim.resp_bytes == 0:
            proto.respond(sim.status, [("Content-Type", "text/html")], _error_page(sim.status))
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
        """The model reached an ``api`` (or file) location: answer it here and complete it."""
        node = self.node
        pending = self._waiting.pop(sim.conn, None)
        loc = sim.loc
        if pending is None:
            node.respond(sim, 404, 0)  # a simulated client: no HTTP to answer
            return
        pending.hooked = True
        if not access_allowed(loc.access, sim.client_ip):
            pending.body = _error_page(403)
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
        extra = {"nginx.pid": sim.worker.pid if sim.worker is not None else None, "nginx.counted": True}
        try:
            status, headers, body = await call_asgi(app, proto, pending.req,
                                                    (proto.binding.bind_address, proto.binding.bind_port), extra)
        except Exception:
            import traceback

            traceback.print_exc()
            status, headers, body = 500, [("Content-Type", "text/html")], _error_page(500)
        pending.body, pending.headers = body, headers
        if not sim.final:
            self.node.respond(sim, status, len(body))

    def _static(self, loc, req: HttpRequest) -> tuple[int, list, bytes]:
        """A file from disk under ``root``/``alias``, as nginx maps the URI to a path."""
        if req.method not in ("GET", "HEAD"):
            return 405, [("Content-Type", "text/html")], _error_page(405)
        path = unquote(req.target.split("?", 1)[0])
        if loc.alias is not None:
            rel = path[len(loc.path):] if loc.modifier in ("", "^~") and path.startswith(loc.path) else ""
            fs = Path(loc.alias + rel)
        else:
            fs = Path(loc.root + path)
        if fs.is_dir():
            fs = fs / "index.html"
        parts = Path(path).parts
        if ".." in parts or not fs.is_file():
            return 404, [("Content-Type", "text/html")], _error_page(404)
        try:
            body = fs.read_bytes()
        except OSError:
            return 403, [("Content-Type", "text/html")], _error_page(403)
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


# ---------------------------------------------------------------------------------------------
# The served cluster


class LiveCluster:
    """A :class:`sim.cluster.cluster.Cluster` served on loopback: nodes, pacer and control endpoint."""

    def __init__(self, cluster, *, speed: float = 1.0, port_offset: int | None = None,
                 address_base: str | None = None, control_host: str = "127.0.0.1", control_port: int = 0,
                 api_app_factory=None):
        self.cluster = cluster
        self.speed = speed
        self.port_offset = port_offset
        self.address_base = address_base
        self.control_host = control_host
        self.control_port = control_port
        self.pacer = Pacer(cluster, speed)
        self.frontends: dict[str, NodeFrontend] = {}
        self.control_server = None
        self.started_wall = 0.0
        self._api_apps: dict[str, object] = {}
        self._api_app_factory = api_app_factory
        self._pacer_task: asyncio.Task | None = None
        self._frozen = False
        self.fault_log: list[dict] = []

    # --- the API apps ---------------------------------------------------------------------------

    def api_app(self, node):
        app = self._api_apps.get(node.name)
        if app is None:
            factory = self._api_app_factory
            if factory is None:
                from api.app import create_app as factory
            app = self._api_apps[node.name] = factory(node)
        return app

    # --- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Bind every node's sockets and the control endpoint, then start the pacer."""
        loop = asyncio.get_running_loop()
        self.pacer.begin()
        plan = plan_bindings(self.cluster, port_offset=self.port_offset, address_base=self.address_base)
        taken: dict[tuple[str, int], Binding] = {}
        for b in plan:
            other = taken.get((b.bind_address, b.bind_port))
            if other is not None:
                raise LiveError(
                    f"node {b.node.name}: cannot listen on {b.bind_address}:{b.bind_port} ({b.kind}): "
                    f"already used by node {other.node.name} ({other.kind})"
                )
            taken[(b.bind_address, b.bind_port)] = b
        sockets = []
        try:
            for b in plan:
                sockets.append((b, _listen_socket(b)))
            csock = _listen_socket(Binding(_Named("control"), "control", self.control_port, self.control_host,
                                           self.control_port))
        except LiveError:
            for _, s in sockets:
                s.close()
            raise
        for node in self.cluster.nodes.values():
            self.frontends[node.name] = NodeFrontend(self, node)
        for b, sock in sockets:
            fe = self.frontends[b.node.name]
            fe.bindings.append(b)
            b.server = await loop.create_server(self._factory(fe, b), sock=sock)
        from api.control import create_control_app

        self.control_port = csock.getsockname()[1]
        handler = _AsgiHandler(create_control_app(self), self.control_host, self.control_port)
        self.control_server = await loop.create_server(lambda: _HttpConnection(handler), sock=csock)
        self.pacer.after_step.append(self._after_step)
        for node in self.cluster.nodes.values():
            # now rather than on the first API request: importing and building the app the first
            # time holds the loop for tens of milliseconds
            self.api_app(node)
        # Everything built so far (model, apps, sockets) lives as long as the server: leave it out
        # of the collector's full passes, which otherwise stall the loop for tens of milliseconds.
        gc.collect()
        gc.freeze()
        self._frozen = True
        self.started_wall = time.time()
        self._pacer_task = loop.create_task(self.pacer.run())

    @staticmethod
    def _factory(fe: NodeFrontend, b: Binding):
        if b.kind == "http":
            return lambda: _HttpConnection(fe, b)
        return lambda: _StreamConnection(fe, b)

    def _after_step(self) -> None:
        for fe in self.frontends.values():
            fe.check_crash()

    async def rebind(self, node) -> list[str]:
        """After a reload with a new configuration: open new listens, close dropped ones."""
        fe = self.frontends[node.name]
        index = list(self.cluster.nodes).index(node.name)
        want = {(b.kind, b.port): b for b in node_bindings(node, index, port_offset=self.port_offset,
                                                            address_base=self.address_base)}
        have = {(b.kind, b.port): b for b in fe.bindings}
        notes = []
        loop = asyncio.get_running_loop()
        for key, b in have.items():
            if key not in want:
                b.server.close()
                for proto in list(b.connections):
                    proto.abort()
                fe.bindings.remove(b)
                notes.append(f"closed {b.bind_address}:{b.bind_port}")
            else:
                b.config_addresses = want[key].config_addresses
        for key, b in want.items():
            if key not in have:
                sock = _listen_socket(b)
                b.server = await loop.create_server(self._factory(fe, b), sock=sock)
                fe.bindings.append(b)
                notes.append(f"listening on {b.bind_address}:{b.bind_port}")
        fe._addr_cache.clear()
        return notes

    async def stop(self) -> None:
        """Close every socket and stop the pacer."""
        self.pacer.stop()
        servers = [b.server for fe in self.frontends.values() for b in fe.bindings if b.server is not None]
        if self.control_server is not None:
            servers.append(self.control_server)
        for s in servers:
            s.close()
        for fe in self.frontends.values():
            for b in fe.bindings:
                for proto in list(b.connections):
                    proto.abort()
            for t in list(fe.tasks):
                t.cancel()
        if self._pacer_task is not None:
            try:
                await asyncio.wait_for(self._pacer_task, 5)
            except (TimeoutError, asyncio.CancelledError):
                pass
        for s in servers:
            try:
                await asyncio.wait_for(s.wait_closed(), 1)
            except (TimeoutError, Exception):
                pass
        if self._frozen:
            self._frozen = False
            gc.unfreeze()

    @property
    def pacer_task(self) -> asyncio.Task | None:
        return self._pacer_task

    # --- what the control endpoint and the start banner show -------------------------------------

    def describe_node(self, node) -> dict:
        fe = self.frontends.get(node.name)
        bindings = fe.bindings if fe is not None else []
        api = []
        for b in bindings:
            if b.kind != "http" or node.conf.http is None:
                continue
            for s in node.conf.http.servers:
                if not any(lst.port == b.port for lst in s.listens):
                    continue
                for loc in _walk(s.locations):
                    if loc.api:
                        api.append({"url": f"http://{b.bind_address}:{b.bind_port}{loc.path.rstrip('/')}",
                                    "write": loc.api_write,
                                    "host": next((n for n in s.server_names if n and not n.startswith(("~", "*", "."))), None)})
        return {
            "name": node.name,
            "address": bindings[0].bind_address if bindings else node.address,
            "model_address": node.address,
            "up": node.up,
            "generation": node.generation,
            "clock_offset_ms": node.clock.offset_ms,
            "listens": [b.describe() for b in bindings],
            "api": api,
            "stream": getattr(node, "stream", None) is not None,
            "zone_sync": getattr(node, "zone_sync", None) is not None,
        }

    def describe(self) -> dict:
        return {
            "event": "serving",
            "scenario": self.cluster.scenario.name,
            "seed": self.cluster.seed,
            "speed": self.speed,
            "pid": os.getpid(),
            "control": f"http://{self.control_host}:{self.control_port}",
            "nodes": [self.describe_node(n) for n in self.cluster.nodes.values()],
        }


class _Named:
    def __init__(self, name: str):
        self.name = name


def _walk(locs):
    for loc in locs:
        yield loc
        yield from _walk(loc.locations)


async def serve(live: LiveCluster, stop: asyncio.Event, on_start=None) -> None:
    """Start ``live``, call ``on_start(live)``, run until ``stop`` is set, then stop cleanly."""
    await live.start()
    try:
        if on_start is not None:
            on_start(live)
        waiter = asyncio.ensure_future(stop.wait())
        done, _ = await asyncio.wait({waiter, live.pacer_task}, return_when=asyncio.FIRST_COMPLETED)
        if live.pacer_task in done and live.pacer_task.exception() is not None:
            waiter.cancel()
            raise live.pacer_task.exception()
        waiter.cancel()
    finally:
        await live.stop()
