"""The bridge from a live HTTP request to an ASGI app (a node's API app, the control app).

:func:`call_asgi` runs one request through an app and collects its answer; :class:`_AsgiHandler`
serves an app on its own :class:`api.live.http._HttpConnection` port (the control endpoint).
"""

from __future__ import annotations

import asyncio
from urllib.parse import unquote

from api.live.http import HttpRequest, _HttpConnection


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

