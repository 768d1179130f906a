"""What every API handler needs: the node's API state, the request's version, lookups, the body.

FastAPI dependencies in the "bigger applications" style: handlers declare ``api: ApiDep`` and
the objects they work on (``up: HttpUpstreamDep``, ``zone: HttpKeyvalZoneDep`` ...), and every
"not found" is raised here, in one place, with nginx's code. :class:`Resource` is the router of
one API resource: it registers each operation together with its row of ``api/versions.py``, so
that :func:`api_request` can refuse an endpoint the requested version does not have, a
``/stream/`` endpoint without ``stream {}``, or a modifying method while the API is read-only,
before any lookup runs (the order nginx answers them in, see docs/api-server.md).
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, get_origin

import orjson
from fastapi import APIRouter, Depends, Request
from fastapi import params as fastapi_params
from starlette.datastructures import QueryParams
from starlette.responses import Response

from sim.conf.config import LocationConf

from . import render
from . import versions as V
from .errors import ApiError

# --------------------------------------------------------------------------------------------------
# Responses


class NginxJSON(Response):
    """Compact JSON, as nginx writes it."""

    media_type = "application/json"

    def __init__(self, content=None, status_code: int = 200, headers=None, media_type=None, background=None):
        if type(content) is bytes and headers is None and media_type is None and status_code >= 200 \
                and status_code not in (204, 304):
            # the hot path (every GET): the headers Starlette would build, without building them
            self.status_code = status_code
            self.background = background
            self.body = content
            self.raw_headers = [(b"content-length", str(len(content)).encode()), JSON_TYPE]
            return
        super().__init__(content, status_code, headers, media_type, background)


JSON_TYPE = (b"content-type", b"application/json")

#: Headers of an ASGI answer the live server writes itself (from the body and the connection).
_SERVER_WRITES = (b"content-length", b"connection", b"date", b"server")


def wire_headers(raw) -> list[tuple[str, str]]:
    """An ASGI answer's headers (lower-case byte pairs) as the live server writes them: names
    spelled as nginx spells them (``Content-Type``), without those it writes itself."""
    return [("-".join(w.capitalize() for w in k.decode("latin-1").split("-")), v.decode("latin-1"))
            for k, v in raw if k.lower() not in _SERVER_WRITES]


def json_response(obj: Any, status: int = 200) -> Response:
    return NginxJSON(orjson.dumps(obj), status_code=status)


def no_content() -> Response:
    return Response(status_code=204)


# --------------------------------------------------------------------------------------------------
# The API of one node


@dataclass(frozen=True)
class ApiLocation:
    """Where the ``api`` directive sits in the node's configuration."""

    server_index: int
    server: Any  # sim.conf.config.HttpServerConf
    location: LocationConf


def find_api_location(conf) -> ApiLocation | None:
    """The first location with ``api`` in the http servers of ``conf`` (nested ones included)."""
    http = conf.http
    if http is None:
        return None

    def walk(locs):
        for loc in locs:
            yield loc
            yield from walk(loc.locations)

    for si, server in enumerate(http.servers):
        for loc in walk(server.locations):
            if loc.api:
                return ApiLocation(si, server, loc)
    return None


def parse_version_policy(policy) -> tuple[int, ...]:
    """The versions a node serves: ``"all"``/None, the newest version N (1..N), or a collection."""
    if policy is None or policy == "all":
        return V.VERSIONS
    if isinstance(policy, int) and not isinstance(policy, bool):
        if policy not in V.VERSIONS:
            raise ValueError(f"no API version {policy}")
        return tuple(v for v in V.VERSIONS if v <= policy)
    versions = tuple(sorted(set(policy)))
    if not versions or any(v not in V.VERSIONS for v in versions):
        raise ValueError(f"API versions must be among {V.VERSIONS}, got {policy!r}")
    return versions


class ApiState:
    """The API of one node: what it serves, where, whether it writes, and its request ids."""

    def __init__(self, node, *, write: bool | None = None, api_prefix: str | None = None,
                 version_policy=None):
        self.node = node
        self.versions = parse_version_policy(version_policy)
        self._version_by_text = {str(v): v for v in self.versions}
        self.write_override = write
        self._conf = None
        self._location: ApiLocation | None = None
        loc = self.api_location
        if api_prefix is None:
            literal = loc is not None and loc.location.modifier in ("", "=", "^~")
            api_prefix = loc.location.path if literal else "/api"
        self.prefix = "/" + api_prefix.strip("/") if api_prefix.strip("/") else ""
        # $request_id: 16 random bytes from the node's own stream, never the wall clock
        self._ids = node.streams.get(f"{node.name}/api/request_id")
        #: encoded upstream objects, reused while the model has not changed them
        self.bodies = render.UpstreamBodies()

    @property
    def api_location(self) -> ApiLocation | None:
        """The ``api`` location of the node's current configuration (a reload may move it)."""
        conf = self.node.conf
        if conf is not self._conf:
            self._conf = conf
            self._location = find_api_location(conf)
        return self._location

    @property
    def write(self) -> bool:
        """``api write=on`` (or the override given to create_app)."""
        if self.write_override is not None:
            return self.write_override
        loc = self.api_location
        return bool(loc and loc.location.api_write)

    @property
    def body_limit(self) -> int:
        """``client_body_buffer_size`` of http: a larger request body is refused with 413."""
        http = self.node.conf.http
        return http.client_body_buffer_size if http is not None else 16_384

    def request_id(self) -> str:
        return self._ids.bytes(16).hex()

    def version(self, text: str) -> int:
        """The version named in the path, or UnknownVersion."""
        version = self._version_by_text.get(text)
        if version is None:
            raise ApiError("UnknownVersion")
        return version

    def version_in_path(self, path: str) -> int | None:
        """The served version a request path names, None when it names none (or an unknown one)."""
        rest = path[len(self.prefix) :] if path.startswith(self.prefix) else path
        text = rest.strip("/").split("/", 1)[0]
        return self._version_by_text.get(text)

    def error_body(self, err: ApiError, path: str, method: str, version: int | None) -> bytes:
        """The NGINX error object for ``err`` (already in ``version``'s codes).

        The version-4+ shape when no valid version is known (UnknownVersion). ``path`` and
        ``method`` (versions 1-3) are filled only by a node whose newest version is 3 or older; a
        newer nginx leaves them empty (docs/api.md).
        """
        if self.versions[-1] > 3:
            path = method = ""
        body = render.error(version or V.LATEST, err.status, err.code, err.text, self.request_id(), path,
                            method)
        return orjson.dumps(body)


# --------------------------------------------------------------------------------------------------
# Endpoints and their version gates


@dataclass(frozen=True)
class Gate:
    """What :func:`api_request` checks before a handler runs."""

    method: str
    template: str
    first: int
    last: int | None
    stream: bool  # a /stream/ endpoint: needs stream {}
    zone_sync: bool  # needs zone_sync

    def exists_in(self, version: int) -> bool:
        return self.first <= version and (self.last is None or version <= self.last)


#: Handler function -> its gate (filled by :class:`Resource` as routers are defined).
GATES: dict[Callable, Gate] = {}


def _norm(template: str) -> str:
    return template.rstrip("/") + "/"


class Resource:
    """The router of one API resource, mounted at ``mount`` under ``/api/N``.

    Paths are written with a trailing slash (the app normalises every request path to that
    form, so ``/x`` and ``/x/`` are the same request). Each operation must be a row of
    ``versions.ENDPOINTS``; its versions come from there.
    """

    def __init__(self, mount: str):
        self.mount = mount.rstrip("/")
        self.router = APIRouter()
        #: (method, path template below /api/N, handler), in registration order
        self.operations: list[tuple[str, str, Callable]] = []

    def operation(self, method: str, path: str) -> Callable[[Callable], Callable]:
        template = _norm(self.mount + path)
        rows = [ep for ep in V.ENDPOINTS if ep.method == method and _norm(ep.path) == template]
        if not rows:
            raise LookupError(f"{method} {template} is not an endpoint of api/versions.py")
        first = min(ep.first for ep in rows)
        last = None if any(ep.last is None for ep in rows) else max(ep.last for ep in rows)
        gate = Gate(method, template, first, last, template.startswith("/stream/"),
                    template.startswith("/stream/zone_sync/"))

        def register(fn: Callable) -> Callable:
            GATES[fn] = gate
            self.operations.append((method, template, fn))
            self.router.add_api_route(path, fn, methods=[method], response_model=None,
                                      operation_id=rows[0].operation_id)
            return fn

        return register

    def get(self, path: str):
        return self.operation("GET", path)

    def post(self, path: str):
        return self.operation("POST", path)

    def patch(self, path: str):
        return self.operation("PATCH", path)

    def delete(self, path: str):
        return self.operation("DELETE", path)


# --------------------------------------------------------------------------------------------------
# The request


class ApiRequest:
    """One API request after its gate: the node, the version, and the request's ASGI scope."""

    __slots__ = ("state", "node", "version", "scope")

    def __init__(self, state: ApiState, version: int, scope: dict):
        self.state = state
        self.node = state.node
        self.version = version
        self.scope = scope

    @property
    def pid(self) -> int | None:
        """The worker that handled this request (set by the app's traffic accounting)."""
        return self.scope.get("nginx.pid")


def state_of(request: Request) -> ApiState:
    """The node's API state (put in the scope by the app's front layer; put there now when a
    request reached a handler another way)."""
    scope = request.scope
    state = scope.get("nginx.state")
    if state is None:
        state = scope["nginx.state"] = request.app.state.nginx
    return state


async def api_request(request: Request) -> ApiRequest:
    """Check version, endpoint, stream configuration and write mode, in nginx's order."""
    state_of(request)
    return admit(request.scope)


def admit(scope: dict) -> ApiRequest:
    """What :func:`api_request` does, from the request's scope (which holds the API state under
    ``nginx.state``, the path parameters and the endpoint): the form :class:`Plan` calls."""
    state: ApiState = scope["nginx.state"]
    version = state.version(scope["path_params"]["version"])
    gate = GATES[scope["endpoint"]]
    if not gate.exists_in(version):
        raise ApiError("PathNotFound")
    if gate.stream:
        node = state.node
        if not render.has_stream(node):
            raise ApiError(V.not_configured_error(version, "stream"))
        if gate.zone_sync and not render.has_zone_sync(node):
            raise ApiError(V.not_configured_error(version, "zone_sync"))
    if gate.method != "GET" and not state.write:
        raise ApiError("MethodDisabled")
    return ApiRequest(state, version, scope)


ApiDep = Annotated[ApiRequest, Depends(api_request)]


# --------------------------------------------------------------------------------------------------
# Lookups: every "not found" of the API


def _lookup(collection: dict, name: str, code: str):
    obj = collection.get(name)
    if obj is None:
        raise ApiError(code)
    return obj


async def http_upstream(api: ApiDep, upstream: str):
    node = api.node
    up = node.upstreams.get(upstream)
    if up is None:
        if upstream in node.static_upstreams:
            raise ApiError("UpstreamStatic")
        raise ApiError("UpstreamNotFound")
    return up


async def stream_upstream(api: ApiDep, upstream: str):
    up = render.stream_upstreams(api.node).get(upstream)
    if up is None:
        if upstream in render.stream_static_upstreams(api.node):
            raise ApiError("UpstreamStatic")
        raise ApiError("UpstreamNotFound")
    return up


#: Largest server id nginx's number parser takes; longer digit strings are not ids.
MAX_SERVER_ID = 2**63 - 1


async def server_id(server_id: str) -> int:
    """A server id from the path: digits only (else UpstreamBadServerId)."""
    if not server_id.isascii() or not server_id.isdigit() or int(server_id) > MAX_SERVER_ID:
        raise ApiError("UpstreamBadServerId")
    return int(server_id)


async def http_keyval_zone(api: ApiDep, zone: str):
    return _lookup(api.node.keyvals, zone, "KeyvalNotFound")


async def stream_keyval_zone(api: ApiDep, zone: str):
    return _lookup(api.node.stream_keyvals, zone, "KeyvalNotFound")


async def http_server_zone(api: ApiDep, zone: str):
    return _lookup(api.node.server_zones, zone, "ServerZoneNotFound")


async def location_zone(api: ApiDep, zone: str):
    return _lookup(api.node.location_zones, zone, "LocationZoneNotFound")


async def cache_zone(api: ApiDep, zone: str):
    return _lookup(render.caches(api.node), zone, "CacheNotFound")


async def limit_req_zone(api: ApiDep, zone: str):
    return _lookup(render.limit_reqs(api.node), zone, "LimitReqNotFound")


async def http_limit_conn_zone(api: ApiDep, zone: str):
    return _lookup(render.limit_conns(api.node), zone, "LimitConnNotFound")


async def stream_limit_conn_zone(api: ApiDep, zone: str):
    return _lookup(render.stream_limit_conns(api.node), zone, "LimitConnNotFound")


async def stream_server_zone(api: ApiDep, zone: str):
    return _lookup(render.stream_server_zones(api.node), zone, "ServerZoneNotFound")


async def resolver_zone(api: ApiDep, zone: str):
    return _lookup(render.resolvers(api.node), zone, "ResolverZoneNotFound")


async def slab_pool(api: ApiDep, zone: str):
    return _lookup(render.slab_pools(api.node), zone, "SlabNotFound")


async def worker(api: ApiDep, worker_id: str):
    if worker_id.isascii() and worker_id.isdigit():
        for w in api.node.workers:
            if w.id == int(worker_id):
                return w
    raise ApiError("WorkerNotFound")


HttpUpstreamDep = Annotated[Any, Depends(http_upstream)]
StreamUpstreamDep = Annotated[Any, Depends(stream_upstream)]
ServerIdDep = Annotated[int, Depends(server_id)]
HttpKeyvalZoneDep = Annotated[Any, Depends(http_keyval_zone)]
StreamKeyvalZoneDep = Annotated[Any, Depends(stream_keyval_zone)]
HttpServerZoneDep = Annotated[Any, Depends(http_server_zone)]
LocationZoneDep = Annotated[Any, Depends(location_zone)]
CacheZoneDep = Annotated[Any, Depends(cache_zone)]
LimitReqZoneDep = Annotated[Any, Depends(limit_req_zone)]
HttpLimitConnZoneDep = Annotated[Any, Depends(http_limit_conn_zone)]
StreamLimitConnZoneDep = Annotated[Any, Depends(stream_limit_conn_zone)]
StreamServerZoneDep = Annotated[Any, Depends(stream_server_zone)]
ResolverZoneDep = Annotated[Any, Depends(resolver_zone)]
SlabPoolDep = Annotated[Any, Depends(slab_pool)]
WorkerDep = Annotated[Any, Depends(worker)]


# --------------------------------------------------------------------------------------------------
# Request bodies


def parse_json(raw: bytes):
    """Decode a request body as strict JSON; ValueError when it is not JSON.

    orjson checks the text (strict UTF-8, no lone surrogates, no NaN, no trailing commas); the
    standard library then reads the values again, because orjson turns integers beyond 64 bits
    into floats and nginx's checks must see ``100000000000000000000000`` as a (too large) integer.
    """
    try:
        orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ValueError(str(exc)) from None
    try:
        return json.loads(raw)
    except RecursionError:
        raise ValueError("too deeply nested") from None


async def json_body(api: ApiDep, request: Request):
    """The request body as JSON: 413 beyond ``client_body_buffer_size``, 415 when it is not JSON."""
    raw = await request.body()
    if len(raw) > api.state.body_limit:
        raise ApiError("RequestEntityTooLarge")
    try:
        return parse_json(raw)
    except ValueError:
        raise ApiError("JsonError") from None


JsonBody = Annotated[Any, Depends(json_body)]


# --------------------------------------------------------------------------------------------------
# Calling a handler without FastAPI


class Plan:
    """How to call a handler (or a dependency) of this package directly, with its dependencies.

    The app's GET fast path uses it: the same handlers and the same dependency functions as
    FastAPI would run, resolved the way FastAPI resolves them for the few kinds of parameters
    used here (``Annotated[..., Depends(f)]``, a ``Request``, path parameters by name, optional
    string query parameters), each dependency once per request. The dependency tree is laid
    out once, here, as a list of calls in the order FastAPI makes them (depth first, in
    parameter order), each call's arguments naming the earlier results it takes; that list is
    then written out as one coroutine function (:attr:`run`), so a request pays for the calls
    themselves and nothing else. A dependency with a form that reads the scope
    (:data:`SCOPE_FORMS`: :func:`api_request` as :func:`admit`) is called in that form, and a
    Starlette ``Request`` is only built for a function that declares one.
    """

    def __init__(self, fn: Callable, path_params: frozenset[str], *, nested: bool = False):
        self.fn = fn
        self.params: list[tuple[str, str, Any]] = []
        for name, param in inspect.signature(fn, eval_str=True).parameters.items():
            ann = param.annotation
            dep = None
            if get_origin(ann) is Annotated:
                dep = next((m for m in ann.__metadata__ if isinstance(m, fastapi_params.Depends)), None)
            if dep is not None:
                self.params.append((name, "dep", Plan(dep.dependency, path_params, nested=True)))
            elif ann is Request:
                self.params.append((name, "request", None))
            elif name in path_params:
                self.params.append((name, "path", None))
            else:
                default = None if param.default is inspect.Parameter.empty else param.default
                self.params.append((name, "query", default))
        #: (function, its arguments in signature order as (kind, detail)): for a dependency,
        #: detail is the index of the call whose result it takes; for a path parameter, its
        #: name; for a query parameter, (name, default); for the request, None; for a function
        #: called in its scope form (kind _SCOPE, no arguments), None. Every handler and
        #: dependency here takes its parameters positionally (checked below).
        self.calls: list[tuple[Callable, tuple[tuple[int, Any], ...]]] = []
        if nested:  # a dependency's plan: laid out as part of the handler's
            return
        self._lay_out(self, {})
        #: ``await run(scope)``: the handler's result for a request whose scope holds
        #: ``path_params`` (and ``query_string``, ``endpoint``, ``nginx.state``)
        self.run: Callable[[dict], Any] = self._write_out()

    def _lay_out(self, plan: Plan, index: dict[Callable, int]) -> int:
        scope_form = SCOPE_FORMS.get(plan.fn)
        if scope_form is not None:
            index[plan.fn] = len(self.calls)
            self.calls.append((scope_form, ((_SCOPE, None),)))
            return index[plan.fn]
        positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        kinds = [p.kind for p in inspect.signature(plan.fn).parameters.values()]
        if any(k not in positional for k in kinds):
            raise TypeError(f"{plan.fn.__qualname__}: the GET fast path passes parameters by position")
        args: list[tuple[int, Any]] = []
        for name, kind, extra in plan.params:
            if kind == "dep":
                i = index.get(extra.fn)
                args.append((_DEP, self._lay_out(extra, index) if i is None else i))
            elif kind == "path":
                args.append((_PATH, name))
            elif kind == "query":
                args.append((_QUERY, (name, extra)))
            else:
                args.append((_REQUEST, None))
        index[plan.fn] = len(self.calls)
        self.calls.append((plan.fn, tuple(args)))
        return index[plan.fn]

    def _write_out(self) -> Callable[[dict], Any]:
        """:attr:`calls` as the source of one coroutine function, compiled once per plan.

        The source is made only of names chosen here (``r0``, ``f1``, ``d2``) and string
        literals of parameter names, written with ``repr``."""
        names: dict[str, Any] = {"QueryParams": QueryParams, "Request": Request}
        body: list[str] = []
        kinds = {kind for _, args in self.calls for kind, _ in args}
        if _PATH in kinds:
            body.append('path = scope["path_params"]')
        if _QUERY in kinds:
            body.append('qs = scope.get("query_string")')
            body.append("query = QueryParams(qs) if qs else None")
        if _REQUEST in kinds:
            body.append("request = Request(scope)")
        for i, (fn, args) in enumerate(self.calls):
            names[f"f{i}"] = fn
            argv = []
            for j, (kind, extra) in enumerate(args):
                if kind == _SCOPE:
                    argv.append("scope")
                elif kind == _DEP:
                    argv.append(f"r{extra}")
                elif kind == _PATH:
                    argv.append(f"path[{extra!r}]")
                elif kind == _QUERY:
                    names[f"d{i}_{j}"] = extra[1]
                    argv.append(f"(d{i}_{j} if query is None else query.get({extra[0]!r}, d{i}_{j}))")
                else:
                    argv.append("request")
            call = f"f{i}({', '.join(argv)})"
            if inspect.iscoroutinefunction(fn):
                call = "await " + call
            body.append(f"r{i} = {call}")
        body.append(f"return r{len(self.calls) - 1}")
        source = "async def run(scope):\n" + "".join(f"    {line}\n" for line in body)
        exec(compile(source, f"<plan of {self.fn.__qualname__}>", "exec"), names)
        return names["run"]


#: kinds of a :class:`Plan` call's arguments
_DEP, _PATH, _QUERY, _REQUEST, _SCOPE = 0, 1, 2, 3, 4

#: Dependencies :class:`Plan` calls in a form that reads the request's scope (plain functions,
#: no Starlette ``Request`` built for them): the same checks, in the same order.
SCOPE_FORMS: dict[Callable, Callable] = {api_request: admit}
