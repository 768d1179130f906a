"""A small HTTP/1.1 server of our own on asyncio protocols.

:class:`_HttpConnection` is one client connection: it parses requests (keep-alive, pipelining,
``Content-Length`` and chunked bodies), hands each one to its handler, one at a time and in
order, and writes the answer with nginx's ``Server`` header and error pages.
"""

from __future__ import annotations

import asyncio
import socket
import time
from email.utils import formatdate
from http import HTTPStatus

from api.live.listen import Binding

SERVER_HEADER = "nginx"
MAX_HEADER_BYTES = 64 * 1024
MAX_BODY_BYTES = 64 * 1024 * 1024


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

