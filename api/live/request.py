"""One HTTP request as the live wire read it (:class:`HttpRequest`), handed from
:mod:`api.live.http` to the handler that answers it."""

from __future__ import annotations

from sim.conf.config import ClientConf


class HttpRequest:
    """One request as read from the wire; the handler answers it with :meth:`HttpConnection.respond`."""

    __slots__ = ("method", "target", "version", "headers", "body", "nbytes", "keep_alive", "host", "t_in",
                 "sim", "path", "args", "length", "chunked", "expect", "keep", "received", "conf", "refuse")

    def __init__(self, method: str, target: str, version: str, headers: list, keep_alive: bool):
        self.method = method
        self.target = target  # as sent
        self.version = version
        self.headers = headers  # list of (lower-case name, value) as bytes
        self.body = b""
        self.nbytes = 0  # bytes of the request on the wire (head and body)
        self.keep_alive = keep_alive
        self.host: str | None = None  # validated, lower case, without port
        self.t_in = 0.0
        self.sim = None  # the model's Request while it is in flight
        self.path = "/"  # the normalized path locations are matched against
        self.args: str | None = None
        self.length: int | None = None  # Content-Length
        self.chunked = False
        self.expect = False  # Expect: 100-continue
        self.keep = 0  # body bytes the handler wants kept (the rest is only counted)
        self.received = 0  # body bytes read
        self.conf: ClientConf | None = None  # the location's client settings, once known
        self.refuse: tuple | None = None  # what the handler answers instead of reading the body

    @property
    def uri(self) -> str:
        """The normalized URI the model routes (path, and arguments as sent)."""
        path = self.path.replace("?", "%3F") if "?" in self.path else self.path
        return path if self.args is None else f"{path}?{self.args}"

    def header(self, name: bytes) -> bytes | None:
        for k, v in self.headers:
            if k == name:
                return v
        return None
