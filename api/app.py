"""The NGINX Plus REST API of one simulated node, as a FastAPI application.

:func:`create_app` mounts the routers of ``api/routers`` under the node's ``api`` location
(``/api`` unless the configuration says otherwise): ``GET /api/`` lists the versions served, and
``/api/{version}/...`` holds one mounted router per resource, so a request is matched against a
few routes rather than all of them. In front of FastAPI sits :class:`NginxFront`, a plain ASGI
layer doing what nginx does before the API module sees a request:

* the path is normalised (duplicate slashes merged, a trailing slash added), so ``/x`` and
  ``/x/`` are one request and no redirect is ever sent;
* the request becomes traffic on the node (:class:`api.traffic.ApiTraffic`): a client connection, a request
  on a worker, the server zone and location zone of the API's server block and its
  ``limit_req``/``limit_conn``, through the node's own request path -- unless the caller did that
  already and says so with ``scope["nginx.counted"]`` (the live server, ``api/live/``, which
  also passes the worker's ``scope["nginx.pid"]``);
* ``allow``/``deny`` of the API location are applied to the client address.

GETs of endpoints the GET table knows reach that layer straight from :class:`ApiApp`, before
FastAPI's own middleware stack (docs/api-server.md, "Speed").

Every error is the NGINX error object (``api/errors.py``); what nginx answers outside the API
module (403 from ``deny``, 503 from a limit, 404 outside the API location) is nginx's HTML page.
docs/api-server.md records the choices.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route, Router

from sim.core.errors import SimError

from . import render
from . import versions as V
from .deps import GATES, JSON_TYPE, ApiState, NginxJSON, Plan, Resource, json_response, state_of, wire_headers
from .errors import ApiError, from_sim, html_page
from .routers import http, keyvals, nginx, resolvers, stream, upstreams
from .traffic import Access, ApiTraffic, response_head_bytes

#: Resource routers in the order requests are matched against them (the most polled first).
RESOURCES: list[Resource] = [
    *upstreams.RESOURCES,
    *http.RESOURCES,
    *keyvals.RESOURCES,
    *stream.RESOURCES,
    *resolvers.RESOURCES,
    *nginx.RESOURCES,
]


def create_app(node, *, write: bool | None = None, api_prefix: str | None = None, version_policy="all",
               fast_get: bool = True) -> FastAPI:
    """The FastAPI application serving the NGINX Plus API of ``node``.

    ``write``: None follows ``api write=`` of the node's API location (read-only without one);
    True/False override it. ``api_prefix``: None takes the API location's path (``/api`` without
    one). ``version_policy``: ``"all"`` (1..9), the newest version N to serve 1..N (an older
    NGINX Plus), or an explicit collection of versions. ``fast_get``: GET requests skip FastAPI's
    request machinery (:class:`GetTable`); False sends everything through FastAPI (same answers).
    """
    state = ApiState(node, write=write, api_prefix=api_prefix, version_policy=version_policy)
    app = ApiApp(
        title=f"NGINX Plus API of {node.name}",
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
        redirect_slashes=False,
    )
    app.state.nginx = state

    version_routes: list = []
    for res in RESOURCES:
        if res.mount:
            version_routes.append(Mount(res.mount, app=Router(res.router.routes, redirect_slashes=False)))
        else:
            version_routes.extend(res.router.routes)
    prefix = state.prefix
    app.router.routes.append(Route(prefix + "/", _versions_endpoint, methods=["GET"]))
    app.router.routes.append(Mount(prefix + "/{version}", app=Router(version_routes, redirect_slashes=False)))

    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(SimError, _sim_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _internal_error)
    table = GetTable(RESOURCES) if fast_get else None
    app.add_middleware(NginxFront, state=state, get_table=table)
    if table is not None:
        app.fast_front = NginxFront(None, state, table)
        app.answer_get = app.fast_front.answer_get
    return app


class ApiApp(FastAPI):
    """FastAPI, with the GET fast path in front of its middleware stack.

    A GET that :class:`GetTable` knows never reaches FastAPI's own layers (error middleware,
    telemetry, body limit, exception middleware, router): :attr:`fast_front` answers it with the
    same front layer the middleware stack holds. What the error middleware would do for an
    unexpected exception is done here too: nginx's 500 page when nothing was sent yet, and the
    exception raised on to the server.
    """

    fast_front: NginxFront | None = None
    #: :meth:`NginxFront.answer_get` of :attr:`fast_front`, for a server that counted the
    #: request itself and wants the answer without ASGI messages (None without the fast path)
    answer_get: Callable | None = None

    async def __call__(self, scope, receive, send):
        front = self.fast_front
        fast = front.fast_get(scope) if front is not None and scope["type"] == "http" else None
        if fast is None:
            await super().__call__(scope, receive, send)
            return
        scope["app"] = self
        try:
            await front.serve(scope, receive, send, fast)
        except Exception as exc:
            if not fast.started:
                response = await _internal_error(Request(scope), exc)
                await response(scope, receive, send)
            raise


async def _versions_endpoint(request: Request) -> Response:
    return json_response(render.versions_list(state_of(request).versions))


# --------------------------------------------------------------------------------------------------
# Errors


def _error_response(request: Request, err: ApiError) -> Response:
    state_of(request)
    return _error_of(request.scope, err)


def _error_of(scope: dict, err: ApiError) -> Response:
    """The NGINX error object for ``err``, for the request of ``scope`` (which holds the API
    state under ``nginx.state``), in the codes of the version its path names."""
    state: ApiState = scope["nginx.state"]
    path = scope.get("nginx.path", scope["path"])
    version = state.version_in_path(path)
    if version is not None:
        err = err.in_version(version)
    body = state.error_body(err, path, scope.get("nginx.method", scope["method"]), version)
    return NginxJSON(body, status_code=err.status)


async def _api_error(request: Request, exc: ApiError) -> Response:
    return _error_response(request, exc)


async def _sim_error(request: Request, exc: SimError) -> Response:
    return _error_response(request, from_sim(exc))


def _routing_error(request: Request, status: int) -> Response:
    """404/405 from routing, in the order of docs/api.md: UnknownVersion, PathNotFound (or the
    not-configured code of ``/stream/``), MethodNotSupported."""
    state: ApiState = state_of(request)
    path = request.scope.get("nginx.path", request.scope["path"])
    rest = _inside(state.prefix, _normalize(path))
    if rest is None:
        return Response(html_page(404, state.node.version), status_code=404, media_type="text/html")
    segment = rest.strip("/").split("/", 1)[0]
    version = state.version_in_path(path)
    if segment and version is None:
        err = ApiError("UnknownVersion")
    elif status == 405:
        # the route matched the path for another method: its gate knows the path's versions
        gate = GATES.get(request.scope.get("endpoint"))
        err = ApiError("MethodNotSupported")
        if gate is not None and version is not None:
            if not gate.exists_in(version):
                err = ApiError("PathNotFound")
            elif gate.stream and not render.has_stream(state.node):
                err = ApiError(V.not_configured_error(version, "stream"))
            elif gate.zone_sync and not render.has_zone_sync(state.node):
                err = ApiError(V.not_configured_error(version, "zone_sync"))
    else:
        err = ApiError("PathNotFound")
    return _error_response(request, err)


async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
    return _routing_error(request, exc.status_code)


async def _validation_error(request: Request, exc: RequestValidationError) -> Response:
    # Every parameter is declared as a string, so FastAPI has nothing to refuse; should that
    # change, the client still gets nginx's answer for a path it cannot serve.
    return _routing_error(request, 404)


async def _internal_error(request: Request, exc: Exception) -> Response:
    state: ApiState = state_of(request)
    return Response(html_page(500, state.node.version), status_code=500, media_type="text/html")


# --------------------------------------------------------------------------------------------------
# In front of the API module

_SLASHES = re.compile(r"/{2,}")
_NOT_LOOKED_UP = object()


def _normalize(path: str) -> str:
    """``merge_slashes`` and one canonical form for ``/x`` and ``/x/``."""
    if "//" in path:
        path = _SLASHES.sub("/", path)
    return path if path.endswith("/") else path + "/"


def _inside(prefix: str, path: str) -> str | None:
    """The part of a normalised ``path`` below ``prefix`` (starting with "/"), or None."""
    if path.startswith(prefix + "/"):
        return path[len(prefix) :]
    return None


class GetTable:
    """Every GET endpoint by path segments, called without FastAPI's per-request machinery.

    FastAPI spends more time per request than rendering a small object takes (routing through
    every route, building and validating parameters); monitoring clients only GET, so GETs are
    looked up here, in a tree of path segments, and their handler is run through :class:`Plan`
    with the same dependencies. A path that is not found here goes to FastAPI, which answers
    the errors.
    """

    def __init__(self, resources: list[Resource]):
        self.root: dict = {}
        for res in resources:
            for method, template, fn in res.operations:
                if method != "GET":
                    continue
                names = frozenset(seg[1:-1] for seg in template.split("/") if seg.startswith("{"))
                node = self.root
                for seg in (s for s in template.split("/") if s):
                    key = "{}" if seg.startswith("{") else seg
                    node = node.setdefault(key, {})
                    if key == "{}":
                        node["\0name"] = seg[1:-1]
                node["\0handler"] = (fn, Plan(fn, names | {"version"}))

    def match(self, segments: list[str]) -> tuple[Callable, Plan, dict] | None:
        """Handler, plan and path parameters for ``[version, *segments]``, or None."""
        params = {"version": segments[0]}
        node = self.root
        for seg in segments[1:]:
            child = node.get(seg)
            if child is None:
                child = node.get("{}")
                if child is None:
                    return None
                params[child["\0name"]] = seg
            node = child
        found = node.get("\0handler")
        if found is None:
            return None
        return found[0], found[1], params


class NginxFront:
    """Pure ASGI layer in front of the API: path form, traffic accounting, access rules."""

    def __init__(self, app, state: ApiState, get_table: GetTable | None = None):
        self.app = app
        self.state = state
        self.get_table = get_table
        self.traffic = ApiTraffic(state)
        self._access_conf = None
        self._access: Access | None = None
        #: request path -> what :meth:`fast_get` found for it (the table and the prefix never
        #: change, and monitoring clients ask for the same few paths over and over)
        self._found: dict[str, tuple | None] = {}

    def _access_rules(self) -> Access:
        loc = self.state.api_location
        if loc is not self._access_conf or self._access is None:
            self._access_conf = loc
            self._access = Access(loc.location.access if loc is not None else ())
        return self._access

    def fast_get(self, scope) -> _FastGet | None:
        """The GET table's handler for this GET (or HEAD) request, or None; changes nothing."""
        method = scope["method"]
        if method != "GET" and method != "HEAD":
            return None
        return self._handler(scope["path"])

    def _handler(self, raw: str) -> _FastGet | None:
        """The GET table's handler for request path ``raw`` (as sent), or None."""
        found = self._lookup(raw)
        if found is None:
            return None
        fn, plan, params, path = found
        return _FastGet(fn, plan, params.copy(), path)

    def _lookup(self, raw: str) -> tuple | None:
        """(handler, plan, path parameters, normalised path) of the GET table for request path
        ``raw`` (as sent), or None; kept per path."""
        found = self._found.get(raw, _NOT_LOOKED_UP)
        if found is _NOT_LOOKED_UP:
            found = None
            table = self.get_table
            path = _normalize(raw)
            rest = _inside(self.state.prefix, path)
            if table is not None and rest is not None and len(rest) > 1:
                match = table.match(rest[1:-1].split("/"))
                if match is not None:
                    found = (*match, path)
            if len(self._found) >= 1024:  # paths come from clients: keep a bounded number
                self._found.clear()
            self._found[raw] = found
        return found

    async def answer_get(self, method: str, path: str, query_string: bytes, pid: int | None) -> tuple | None:
        """The answer to a GET (or HEAD) of ``path`` (normalised by the server, as sent
        otherwise) that the server counted already (``nginx.counted``, see :meth:`serve`) and
        whose worker is ``pid``: (status, headers as ``(name, value)`` strings, body; for a HEAD
        too, which the server sends without it), or None when the GET table does not know the
        path or the method is another (the request then goes through the app).

        The same handler, plan and errors as :meth:`serve` gives such a request, without the
        ASGI messages: the live server (``api/live/``) answers the API's GETs through this."""
        if method != "GET" and method != "HEAD":
            return None
        found = self._lookup(path)
        if found is None:
            return None
        fn, plan, params, npath = found
        scope = {"type": "http", "method": "GET", "path": npath, "query_string": query_string,
                 "path_params": params.copy(), "endpoint": fn, "nginx.state": self.state, "nginx.path": path,
                 "nginx.method": method, "nginx.pid": pid, "nginx.counted": True}
        response = await _run_get(plan, scope)
        headers = response.raw_headers
        if len(headers) == 2 and headers[1] is JSON_TYPE:
            return response.status_code, _JSON_HEADERS, response.body
        return response.status_code, wire_headers(headers), response.body

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        await self.serve(scope, receive, send)

    async def serve(self, scope, receive, send, fast: _FastGet | None = None):
        """One http request: what nginx does before the API module, then the API (the GET
        table's handler, or the app behind this layer). ``fast``: the handler :meth:`fast_get`
        found for it already."""
        original = scope["path"]
        scope["nginx.path"] = original
        scope["nginx.state"] = self.state
        scope["nginx.method"] = scope["method"]
        if scope["method"] == "HEAD":
            # answered as GET without the body; the live server (``nginx.counted``) leaves the
            # body out itself and needs it for the Content-Length a HEAD answer carries
            scope["method"] = "GET"
            if not scope.get("nginx.counted"):
                send = _headless(send)
        if fast is not None:
            scope["path"] = fast.path
            app = fast
        else:
            path = _normalize(original)
            scope["path"] = path
            rest = _inside(self.state.prefix, path)
            if rest is None:
                await self.app(scope, receive, send)
                return
            app = (self._handler(original) if scope["method"] == "GET" else None) or self.app
        if scope.get("nginx.counted"):
            # the live server already took the request through the node (counters, limits,
            # allow/deny) and says which worker's pid it was
            await app(scope, receive, send)
            return
        query = scope.get("query_string") or b""
        uri = original + ("?" + query.decode("latin-1") if query else "")
        ticket = self.traffic.begin(scope, uri)
        node = self.state.node
        if ticket is not None:
            scope["nginx.pid"] = ticket.pid
            if ticket.rejected:
                if fast is not None:
                    fast.started = True
                await _send_page(send, ticket.req.status or 503, node.version)
                node.close_conn(ticket.conn)
                return
        client = scope.get("client")
        if not self._access_rules().allows(client[0] if client else None):
            if fast is not None:
                fast.started = True
            nbytes = await _send_page(send, 403, node.version)
            if ticket is not None:
                ticket.finish(403, nbytes)
            return
        if ticket is None:
            await app(scope, receive, send)
            return
        sent = [500, 0]
        head = scope["nginx.method"] == "HEAD"

        async def counting_send(message):
            kind = message["type"]
            if kind == "http.response.start":
                sent[0] = message["status"]
                sent[1] += response_head_bytes(message)
            elif kind == "http.response.body" and not head:
                sent[1] += len(message.get("body", b""))
            await send(message)

        try:
            await app(scope, receive, counting_send)
        finally:
            ticket.finish(sent[0], sent[1])


class _FastGet:
    """An ASGI app running one GET handler found by :class:`GetTable` for the normalised
    ``path``; ``started`` once it (or the front layer, for a page of its own) began to answer."""

    __slots__ = ("fn", "plan", "params", "path", "started")

    def __init__(self, fn, plan: Plan, params: dict, path: str):
        self.fn = fn
        self.plan = plan
        self.params = params
        self.path = path
        self.started = False

    async def __call__(self, scope, receive, send):
        scope["path_params"] = self.params
        scope["endpoint"] = self.fn
        response = await _run_get(self.plan, scope)
        self.started = True
        await response(scope, receive, send)


async def _run_get(plan: Plan, scope: dict) -> Response:
    """The response of a GET handler run through its plan: what it returned, or the NGINX
    error object for the error it raised."""
    try:
        return await plan.run(scope)
    except ApiError as exc:
        return _error_of(scope, exc)
    except SimError as exc:
        return _error_of(scope, from_sim(exc))


#: The headers of the API's JSON answers, as :meth:`NginxFront.answer_get` gives them.
_JSON_HEADERS = (("Content-Type", "application/json"),)


def _headless(send):
    async def send_head(message):
        if message["type"] == "http.response.body" and message.get("body"):
            message = {"type": "http.response.body", "body": b"",
                       "more_body": message.get("more_body", False)}
        await send(message)

    return send_head


async def _send_page(send, status: int, version: str) -> int:
    body = html_page(status, version)
    headers = [(b"content-type", b"text/html"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
    return response_head_bytes({"headers": headers}) + len(body)
