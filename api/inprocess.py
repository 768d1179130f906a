"""API requests from inside a run: the ``api`` steps of a scenario's timeline.

A scenario can say "at 40 s, a user sends ``DELETE /api/9/http/server_zones/www`` to node1".
The model does not speak HTTP (``sim/`` never imports ``api/``), so the driver hands the cluster
an :class:`InProcessApi` as ``cluster.api_hook`` with :func:`attach`: ``clustersim run``,
``clustersim serve``, tests and notebooks all use this one helper. A request goes through the
node's real API application (:func:`api.app.create_app`) exactly as one from the network would:
nginx's front (path normalisation, the request counted on the node's worker, server and
location zones, ``limit_req``/``limit_conn``, ``allow``/``deny``), the routers, the model's
validation and the NGINX error objects. So ``api write=on`` must be set in the API location for
a write to succeed, as on a real NGINX Plus; otherwise the step gets ``405 MethodDisabled``,
and the fault log says so.

The application is an ASGI coroutine. It runs to completion on a short-lived thread with its
own event loop while the caller (the simulation, in virtual time or inside the live pacer)
waits, so it works whether or not the calling thread already runs an event loop (a notebook,
the live server), and the model is never touched by two threads at once.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import orjson

from api.app import create_app

#: The client address an ``api`` step's request comes from (a loopback operator's shell).
CLIENT = ("127.0.0.1", 50000)


class InProcessApi:
    """``cluster.api_hook``: ``(node_name, method, path, body) -> (status, body_bytes)``.

    One API application per node, created on first use (a node keeps its application across
    reloads; the application reads the node's current configuration). Every call is kept in
    :attr:`calls` as ``(sim_ms, node, method, path, status)``.
    """

    def __init__(self, cluster, version_policy: Any = "all"):
        self.cluster = cluster
        self.version_policy = version_policy
        self._apps: dict[str, Any] = {}
        self.calls: list[tuple[float, str, str, str, int]] = []

    def app_for(self, name: str):
        app = self._apps.get(name)
        if app is None:
            app = self._apps[name] = create_app(self.cluster.nodes[name], version_policy=self.version_policy)
        return app

    def __call__(self, node: str, method: str, path: str, body: Any = None) -> tuple[int, bytes]:
        status, _headers, payload = request(self.app_for(node), method, path, body)
        self.calls.append((self.cluster.env.now, node, method, path, status))
        return status, payload


def attach(cluster, version_policy: Any = "all") -> InProcessApi:
    """Give ``cluster`` its ``api_hook`` (the one way drivers do it) and return it."""
    hook = InProcessApi(cluster, version_policy)
    cluster.api_hook = hook
    return hook


def request(app, method: str, path: str, body: Any = None) -> tuple[int, list[tuple[str, str]], bytes]:
    """One HTTP request through an ASGI ``app``; returns status, headers and body.

    ``body`` is sent as JSON unless it is None (no body) or already bytes/str.
    """
    if body is None:
        raw = b""
    elif isinstance(body, bytes):
        raw = body
    elif isinstance(body, str):
        raw = body.encode()
    else:
        raw = orjson.dumps(body)
    target, _, query = path.partition("?")
    headers = [(b"host", b"localhost"), (b"user-agent", b"clustersim-timeline")]
    if raw:
        headers += [(b"content-type", b"application/json"), (b"content-length", str(len(raw)).encode())]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": method.upper(),
        "scheme": "http",
        "path": target,
        "raw_path": target.encode("latin-1"),
        "query_string": query.encode("latin-1"),
        "root_path": "",
        "headers": headers,
        "client": CLIENT,
        "server": ("127.0.0.1", 80),
        "state": {},
    }
    answer: dict[str, Any] = {"status": 500, "headers": [], "body": []}

    async def receive():
        return {"type": "http.request", "body": raw, "more_body": False}

    async def send(message):
        if message["type"] == "http.response.start":
            answer["status"] = message["status"]
            answer["headers"] = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in message.get("headers", ())]
        elif message["type"] == "http.response.body":
            answer["body"].append(message.get("body", b""))

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="clustersim-api-step") as pool:
        pool.submit(asyncio.run, app(scope, receive, send)).result()
    return answer["status"], answer["headers"], b"".join(answer["body"])
