"""The HTTP/1.1 wire of a served node: httptools (llhttp) parses, nginx's rules decide.

:class:`HttpConnection` is one client connection. Bytes go through the head's budget
(:class:`api.live.rules.HeadBudget`, nginx's header buffers) and then to the parser; at the end of
a head the request is checked as nginx checks it (``Host``, ``Content-Length``,
``Transfer-Encoding``, the URI) and shown to the handler, which may refuse it by its size
before any of the body is read. The body is read piece by piece as it arrives, counted against
``client_max_body_size`` and kept only as far as the handler asks. Requests are answered one at
a time and in order (pipelining); the connection's timers are nginx's: the header, body,
keep-alive and lingering timeouts, in simulated time (the handler converts them to wall time).
docs/live.md lists every rule with nginx's defaults.
"""

from __future__ import annotations

import asyncio
import socket

import httptools

from api.live.pages import CLOSES, SERVER_HEADER, error_page, http_date, status_line, wire_status
from api.live.request import HttpRequest
from api.live.rules import HeadBudget, HeadTooLarge, RequestLine, absolute_host, normalize_path, valid_host
from sim.conf.config import ClientConf

_FILL = b"x" * 65536
#: Bytes of pipelined requests held while one is answered, before the socket stops being read.
PIPELINE_HOLD = 256 * 1024
#: Request headers nginx takes once (a second one is a 400).
_UNIQUE = frozenset({b"host", b"content-length", b"transfer-encoding", b"expect", b"if-modified-since",
                     b"if-unmodified-since", b"if-match", b"if-none-match", b"if-range", b"content-range",
                     b"authorization", b"proxy-authorization"})

_HEAD, _BODY, _WAIT, _LINGER, _CLOSED = range(5)


class _Refuse(Exception):
    """Raised in a parser callback to stop it; the status is kept in ``_refused``."""

    def __init__(self, status: int):
        self.status = status


class HttpConnection(asyncio.Protocol):
    """One HTTP client connection; requests are handled one at a time, in order.

    The handler provides ``connection_made(proto)``, ``connection_lost(proto)``,
    ``request(proto, req)``, ``client_conf(proto)`` (the default server's :class:`ClientConf`),
    ``admit(proto, req)`` (at the end of the head: sets ``req.conf``, ``req.keep``, and returns
    None or an error status to answer at once, with nginx's page or, when it sets ``req.refuse``
    to ``(status, headers, body)``, that answer) and ``wall(ms)`` (seconds of wall time for ``ms``
    of simulated time); ``dropped(proto, status, why)`` is told of connections nginx closes
    without an answer (408), and ``ended_on_wire(proto, status, why, host, path, bytes_in, bytes_out)``
    (optional) of every request that ended on the wire without reaching ``request`` (refused,
    timed out, or its client gone; see :meth:`_note_refused`). ``handler`` may be None for a
    connection only used to write.
    """

    def __init__(self, handler, binding=None):
        self.handler = handler
        self.binding = binding
        self.transport = None
        self.buf = bytearray()
        self.phase = _HEAD
        self.closed = False
        self.client_ip = "127.0.0.1"
        self.client_port = 0
        self.state = None  # the handler's per-connection state (the node's client connection)
        self.current: HttpRequest | None = None  # the request being answered
        self.busy = False
        self.requests = 0
        self.conf = ClientConf()
        self.budget: HeadBudget | None = None
        self.parser = None
        self._req: HttpRequest | None = None  # the request being read
        self._url = bytearray()
        self._headers: list = []
        self._seen: set = set()
        self._host: str | None = None  # the Host header's host, once its line was read
        self._line = RequestLine()  # nginx's methods and bare LF on the request line, for llhttp
        self._msg_bytes = 0
        self._done = False
        self._refused = 0
        self._upgrade = False
        self._advancing = False
        self._paused = False
        self._timer = None
        self._linger = False
        self._last_read = 0.0
        self._linger_end = 0.0

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
        h = self.handler
        self.conf = h.client_conf(self)
        self.budget = HeadBudget(self.conf)
        self._new_parser()
        h.connection_made(self)
        if not self.closed:
            self._set_timer(self.conf.header_timeout_ms, self._header_timeout)

    def connection_lost(self, exc) -> None:
        if not self.closed and (self.phase == _BODY or (self.phase == _HEAD and self._msg_bytes)):
            # the client went away in the middle of a request: nginx logs it as a 400 it could
            # not send ("client prematurely closed connection")
            self._note_refused(400, "client closed", self._req, 0)
        self.closed = True
        self.phase = _CLOSED
        self._cancel_timer()
        if self.binding is not None:
            self.binding.connections.discard(self)
        self.handler.connection_lost(self)

    def data_received(self, data: bytes) -> None:
        phase = self.phase
        if phase == _LINGER:  # read and thrown away, until a pause or lingering_time
            left = self._linger_end - self._now()
            self._set_timer_wall(min(self.handler_wall(self.conf.lingering_timeout_ms), max(left, 0.0)), self._linger_over)
            return
        if self.closed:
            return
        self.buf += data
        if phase == _WAIT:
            if len(self.buf) > PIPELINE_HOLD and not self._paused:
                self._paused = True
                self.transport.pause_reading()
            return
        if phase == _BODY:
            self._last_read = self._now()
        elif self._timer is None or self._timer_cb != self._header_timeout:
            # the first bytes of a request on a kept-alive connection: the header timer starts
            self._set_timer(self.conf.header_timeout_ms, self._header_timeout)
        self._advance()

    def eof_received(self):
        if self.phase == _LINGER:
            self.close()
        return False

    # --- reading ---------------------------------------------------------------------------------

    def _new_parser(self) -> None:
        p = httptools.HttpRequestParser(self)
        p.set_dangerous_leniencies(lenient_version=True, lenient_optional_cr_before_lf=True)
        self.parser = p

    def _advance(self) -> None:
        """Feed what is buffered, as far as the current request goes."""
        if self._advancing:
            return
        self._advancing = True
        buf = self.buf
        pos = 0
        try:
            while not self.closed and pos < len(buf):
                if self.phase == _HEAD:
                    try:
                        end = self.budget.feed(buf, pos)
                    except HeadTooLarge as e:
                        limits = self.budget.large_number, self.budget.large_size
                        if not self._parse(pos, e.at):
                            return
                        pos = e.at
                        if limits != (self.budget.large_number, self.budget.large_size):
                            continue  # the Host line, parsed up to here, chose other buffers
                        self.fail(self._too_large_status(e.status), unread=True)
                        return
                    stop = len(buf) if end < 0 else end
                    if not self._parse(pos, stop):
                        return
                    pos = stop
                    if end >= 0 and self.phase == _HEAD and not self._done:
                        # the parser did not see the head end where nginx does
                        self.fail(400, unread=stop < len(buf))
                        return
                elif self.phase == _BODY:
                    req = self._req
                    if req.chunked:
                        stop = _chunk_end_candidate(buf, pos)
                    else:
                        stop = min(len(buf), pos + (req.length - req.received))
                    if not self._parse(pos, stop):
                        return
                    pos = stop
                else:
                    break
                if self._done:
                    self._dispatch()
        finally:
            if pos:
                del buf[:pos]
            self._advancing = False

    def _parse(self, start: int, stop: int) -> bool:
        """Feed ``buf[start:stop]`` to the parser; False when the connection was answered and closed."""
        if stop <= start:
            return True
        self._msg_bytes += stop - start
        line = self._line
        try:
            if line.line_done:
                self.parser.feed_data(memoryview(self.buf)[start:stop])
            else:
                self.parser.feed_data(line.feed(bytes(self.buf[start:stop])))
        except httptools.HttpParserUpgrade:
            self._upgrade = True  # not a protocol nginx switches to here: answered as a request
        except httptools.HttpParserError:
            status = self._refused or 400
            self._refused = 0
            if not self.closed:
                self.fail(status, unread=stop < len(self.buf))
            return False
        return not self.closed

    def _too_large_status(self, status: int) -> int:
        if status == 494 and self._req is None:
            # the request line was complete: nginx checked its URI before reading headers
            target = self._url.decode("latin-1")
            if target.startswith("/") and normalize_path(target, self.conf.merge_slashes) is None:
                return 400
        return status

    # httptools' callbacks

    def on_message_begin(self) -> None:
        self._url.clear()
        self._headers = []
        self._seen = set()
        self._host = None
        self._done = False
        self._max_headers = self.conf.max_headers  # the default server's, until Host names one

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        k = name.lower()
        if k in _UNIQUE:
            if k in self._seen:
                self._refused = 400  # nginx: "client sent duplicate header line"
                raise _Refuse(400)
            self._seen.add(k)
            if k == b"host":
                # nginx picks the name-based server as soon as it has read this line, and takes
                # large header buffers from it from then on
                self._host = valid_host(value.decode("latin-1"))
                named = getattr(self.handler, "host_conf", None)
                conf = named(self, self._host) if named is not None and self._host is not None else None
                if conf is not None:
                    self.budget.use_large_buffers(conf.large_header_buffers)
                    self._max_headers = conf.max_headers
        self._headers.append((k, value))
        if len(self._headers) > self._max_headers:
            self._refused = 494  # nginx: "client sent too many header lines"
            raise _Refuse(494)

    def on_headers_complete(self) -> None:
        status = self._check_head()
        if status:
            self._refused = status
            raise _Refuse(status)

    def on_body(self, body: bytes) -> None:
        req = self._req
        n = len(body)
        req.received += n
        conf = req.conf
        if req.chunked and conf is not None and conf.max_body_size and req.received > conf.max_body_size:
            self._refused = 413  # nginx: "client intended to send too large chunked body"
            raise _Refuse(413)
        room = req.keep - len(req.body)
        if room > 0:
            req.body += body[:room] if n > room else body

    def on_message_complete(self) -> None:
        self._done = True

    # --- the head, as nginx checks it -------------------------------------------------------------

    def _check_head(self) -> int:
        """Build the request from the parsed head; an error status when nginx refuses it, else 0."""
        p = self.parser
        version = p.get_http_version()
        target = self._url.decode("latin-1")
        major = version.split(".", 1)[0]
        if major != "1":
            return 505 if major.isdigit() and int(major) > 1 else 400
        method = self._line.method or p.get_method().decode("latin-1")
        req = HttpRequest(method, target, "HTTP/" + version, self._headers, p.should_keep_alive())
        self._req = req
        merge = self.conf.merge_slashes
        host_in_line = None
        if not target.startswith("/"):
            if target.lower().startswith(("http://", "https://")):  # absolute form: the host is in it
                rest = target.split("://", 1)[1]
                slash = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=len(rest))
                host_in_line = valid_host(rest[:slash])
                if host_in_line is None:
                    return 400
                target = rest[slash:] or "/"
                if target.startswith("?"):
                    target = "/" + target
            elif method != "OPTIONS" or target != "*":
                return 400
        normal = normalize_path(target, merge) if target != "*" else ("*", None)
        if normal is None:
            return 400  # nginx: "client sent invalid request"
        req.path, req.args = normal
        host = te = cl = expect = None
        for k, v in self._headers:
            if k == b"host":
                host = v
            elif k == b"content-length":
                cl = v
            elif k == b"transfer-encoding":
                te = v
            elif k == b"expect":
                expect = v
        if host is not None:
            req.host = valid_host(host.decode("latin-1"))
            if req.host is None:
                return 400  # nginx: "client sent invalid host header"
        if host_in_line is not None:
            req.host = host_in_line
        if host is None and version != "1.0":
            return 400  # nginx: "client sent HTTP/1.1 request without "Host" header"
        if cl is not None:
            if not cl.isdigit():
                return 400
            req.length = int(cl)
        if te is not None:
            if version == "1.0":
                return 400
            if te.lower() != b"chunked":
                return 501  # nginx: "client sent unknown "Transfer-Encoding""
            if cl is not None:
                return 400  # both at once: the request-smuggling case
            req.chunked = True
        if method in ("CONNECT", "TRACE"):
            return 405
        req.expect = expect is not None and expect.lower() == b"100-continue" and version != "1.0"
        self.requests += 1
        status = self.handler.admit(self, req)
        if status:
            return status  # decided from the head: the body is not read
        if req.chunked or (req.length or 0) > 0:
            self.phase = _BODY
            self._last_read = self._now()
            self._set_timer((req.conf or self.conf).body_timeout_ms, self._body_timeout)
            if req.expect:
                self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        return 0

    def _dispatch(self) -> None:
        req = self._req
        self._req = None
        self._done = False
        self._cancel_timer()
        req.nbytes = self._msg_bytes
        self._msg_bytes = 0
        self._line.reset()
        self.budget.reset()
        if self._upgrade:
            req.keep_alive = False
        self.phase = _WAIT
        self.busy = True
        self.current = req
        self.handler.request(self, req)

    # --- answering -------------------------------------------------------------------------------

    def respond(self, status: int, headers: list[tuple[str, str]], body=b"", *, length: int | None = None,
                keep_alive: bool = True) -> int:
        """Write a response: ``body`` bytes, or ``length`` filler bytes when ``body`` is None;
        returns the bytes written (head and body)."""
        if self.closed:
            return 0
        req = self.current
        conf = (req.conf if req is not None else None) or self.conf
        keep = (keep_alive and (req is None or req.keep_alive) and conf.keepalive_timeout_ms > 0
                and self.requests < conf.keepalive_requests and self.handler is not None)
        n = len(body) if body is not None else (length or 0)
        head = [status_line(status).decode("latin-1"), f"Server: {SERVER_HEADER}\r\nDate: {http_date()}\r\n"]
        for k, v in headers:
            head.append(f"{k}: {v}\r\n")
        no_body = status in (204, 304) or 100 <= status < 200
        if not no_body:
            head.append(f"Content-Length: {n}\r\n")
        if keep:
            head.append("Connection: keep-alive\r\n")
            if conf.keepalive_header_s is not None:
                head.append(f"Keep-Alive: timeout={conf.keepalive_header_s}\r\n")
            head.append("\r\n")
        else:
            head.append("Connection: close\r\n\r\n")
        t = self.transport
        data = "".join(head).encode("latin-1")
        written = len(data)
        if not no_body and (req is None or req.method != "HEAD"):
            # one write (one send) for the head and a body that is not large
            if body is None and n <= len(_FILL):
                body, n = _FILL[:n], 0
            if body is not None:
                written += len(body)
                if len(body) <= 65536:
                    data += body
                else:
                    t.write(data)
                    data = body
            else:
                t.write(data)
                written += n
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
            self.close()
            return written
        self.phase = _HEAD
        if self._paused:
            self._paused = False
            t.resume_reading()
        if self.buf:
            self._set_timer(self.conf.header_timeout_ms, self._header_timeout)
            self._advance()
        else:
            self._set_timer(conf.keepalive_timeout_ms, self._keepalive_over)
        return written

    def respond_error(self, status: int, headers: list[tuple[str, str]] | None = None) -> None:
        """An error nginx answers itself, with its page (and the connection closed after the
        errors nginx does not keep a connection for)."""
        self.respond(status, [("Content-Type", "text/html"), *(headers or ())], error_page(status),
                     keep_alive=status not in CLOSES)

    def fail(self, status: int, unread: bool = False) -> None:
        """A request nginx refuses while reading it: its error page (or what the handler set in
        ``req.refuse``), then the connection is closed, lingering when the client may still be
        sending (``unread`` input, or a body not read)."""
        if self.closed:
            return
        req = self._req
        self._req = None
        answer = (status, [("Content-Type", "text/html")], error_page(status))
        if req is not None:
            req.keep_alive = False
            if req.refuse is not None:
                answer = req.refuse
            unread = unread or req.chunked or (req.length or 0) > req.received
        self._linger = unread
        self.current = req
        nbytes = self._msg_bytes
        sent = self.respond(answer[0], answer[1], answer[2], keep_alive=False)
        self._note_refused(answer[0], "refused", req, sent, nbytes)

    def _note_refused(self, status: int, why: str, req: HttpRequest | None, sent: int,
                      nbytes: int | None = None) -> None:
        """Tell the handler of a request that ended on the wire: ``ended_on_wire(proto, status, why,
        host, path, bytes_in, bytes_out)`` with the status as sent (494 is a 400), the host
        that chose its server (None: the default server), the normalized path once the head was
        accepted (its location was chosen), and the bytes read of it and written for it."""
        note = getattr(self.handler, "ended_on_wire", None)
        if note is None:
            return
        if req is not None:
            host, path = req.host, (req.path if req.conf is not None else None)
        else:
            host, path = absolute_host(self._url) or self._host, None
        note(self, wire_status(status), why, host, path, self._msg_bytes if nbytes is None else nbytes, sent)

    def close(self) -> None:
        """Close after what was written; with unread input, nginx's lingering close."""
        if self.closed:
            return
        self._cancel_timer()
        t = self.transport
        if self.conf.lingering_close in ("always", "on" if self._linger else "always") and t.can_write_eof():
            self.buf.clear()
            self.phase = _LINGER
            self._linger_end = self._now() + self.handler_wall(self.conf.lingering_time_ms)
            t.write_eof()
            self._set_timer(self.conf.lingering_timeout_ms, self._linger_over)
            return
        self.closed = True
        self.phase = _CLOSED
        t.close()

    def abort(self) -> None:
        """Reset the connection (the node crashed or refused it)."""
        if not self.closed:
            self.closed = True
            self.phase = _CLOSED
            self._cancel_timer()
            self.transport.abort()

    # --- timers ----------------------------------------------------------------------------------

    _timer_cb = None

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    def handler_wall(self, ms: float) -> float:
        h = self.handler
        return h.wall(ms) if h is not None else ms / 1000.0

    def _set_timer(self, ms: float, cb) -> None:
        """Call ``cb`` after ``ms`` of simulated time (an nginx timer)."""
        self._set_timer_wall(self.handler_wall(ms), cb)

    def _set_timer_wall(self, delay: float, cb) -> None:
        self._cancel_timer()
        self._timer_cb = cb
        self._timer = asyncio.get_running_loop().call_later(delay, self._fire)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
            self._timer_cb = None

    def _fire(self) -> None:
        cb = self._timer_cb
        self._timer = None
        self._timer_cb = None
        if cb is not None and not self.closed:
            cb()

    def _header_timeout(self) -> None:
        if self.phase != _HEAD:
            return
        self._drop(408, "client_header_timeout")

    def _body_timeout(self) -> None:
        if self.phase != _BODY:
            return
        req = self._req
        timeout = (req.conf if req is not None and req.conf is not None else self.conf).body_timeout_ms
        idle = self._now() - self._last_read
        left = self.handler_wall(timeout) - idle
        if left > 1e-4:  # read since the timer was set: the timeout runs from the last read
            self._timer_cb = self._body_timeout
            self._timer = asyncio.get_running_loop().call_later(left, self._fire)
            return
        self._drop(408, "client_body_timeout")

    def _keepalive_over(self) -> None:
        if self.phase == _HEAD and not self.buf:
            self.closed = True
            self.phase = _CLOSED
            self.transport.close()

    def _linger_over(self) -> None:
        if self.phase == _LINGER and not self.closed:
            self.closed = True
            self.phase = _CLOSED
            self.transport.close()

    def _drop(self, status: int, why: str) -> None:
        """nginx closes the connection without an answer and logs ``status`` (408); a
        connection that timed out before any byte of a request came had no request."""
        if self.phase == _BODY or self._msg_bytes:
            self._note_refused(status, why, self._req, 0)
        self.closed = True
        self.phase = _CLOSED
        dropped = getattr(self.handler, "dropped", None)
        if dropped is not None:
            dropped(self, status, why)
        self.transport.close()


def _chunk_end_candidate(buf: bytearray, pos: int) -> int:
    """Where a chunked body may end in ``buf[pos:]``: just past the first empty line (the last
    chunk's and the trailers' end), or the end of the buffer. The parser decides whether it is."""
    start = max(pos - 2, 0)
    a = buf.find(b"\n\r\n", start)
    b = buf.find(b"\n\n", start)
    ends = [e + 3 for e in (a,) if e >= 0] + [e + 2 for e in (b,) if e >= 0]
    ends = [e for e in ends if e > pos]
    return min(ends) if ends else len(buf)

