"""The bridge from a live HTTP request to an ASGI app (a node's API app, the control app).

:func:`call_asgi` runs one request through an app and collects its answer; :class:`_AsgiHandler`
serves an app on its own :class:`api.live.http.HttpConnection` port (the control endpoint), with
nginx's default limits for reading requests.
"""

from __future__ import annotations

import asyncio

from api.deps import wire_headers
from api.live.http import HttpConnection, HttpRequest
from sim.conf.config import ClientConf


async def call_asgi(app, proto: HttpConnection, req: HttpRequest, server: tuple[str, int],
                    extra: dict | None = None) -> tuple[int, list[tuple[str, str]], bytes]:
    """Run one request through an ASGI app; return its status, headers and body. The app sees
    the normalized path (``path``) and the target as sent (``raw_path``)."""
    raw, _, qs = req.target.partition("?")
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": req.version[5:],
        "method": req.method,
        "scheme": "http",
        "path": req.path,
        "raw_path": raw.encode("latin-1"),
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
            headers = wire_headers(message.get("headers", ()))
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(scope, receive, send)
    return status, headers, b"".join(chunks)


class _AsgiHandler:
    """Serves an ASGI app (the control endpoint) on an :class:`HttpConnection`."""

    def __init__(self, app, address: str, port: int):
        self.app = app
        self.server = (address, port)
        self.tasks: set[asyncio.Task] = set()
        self.conf = ClientConf(max_body_size=0)

    def client_conf(self, proto) -> ClientConf:
        return self.conf

    def admit(self, proto, req) -> int | None:
        req.conf = self.conf
        req.keep = 1 << 20  # the control app's bodies are small JSON documents
        return 413 if (req.length or 0) > req.keep else None

    def wall(self, ms: float) -> float:
        return ms / 1000.0

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

