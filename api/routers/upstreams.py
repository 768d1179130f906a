"""``/http/upstreams/`` and ``/stream/upstreams/``: statistics, and servers added, changed and removed.

Server changes go through the model (:meth:`sim.upstream.upstream.Upstream.add_server` and friends), which
validates the server object with nginx's rules and raises nginx's codes; a server added at run
time is handed to the node so that health checks take it on. Upstream objects are encoded through
the node's :class:`api.render.UpstreamBodies`, which reuses a body while the model has not changed.
"""

from __future__ import annotations

from .. import render
from ..deps import (
    ApiDep,
    HttpUpstreamDep,
    JsonBody,
    NginxJSON,
    Resource,
    ServerIdDep,
    StreamUpstreamDep,
    json_response,
    no_content,
)
from ..errors import ApiError

http_upstreams = Resource("/http/upstreams")
stream_upstreams = Resource("/stream/upstreams")


def _check_v1_body(api, body) -> None:
    # API 1 had "drain" only as a PATCH of an existing server (docs/api.md).
    if api.version == 1 and isinstance(body, dict) and "drain" in body:
        raise ApiError("UpstreamConfFormatError", 'unknown parameter "drain"')


# --- http ------------------------------------------------------------------------------------------


@http_upstreams.get("/")
async def get_http_upstreams(api: ApiDep, fields: str | None = None):
    node = api.node
    return NginxJSON(api.state.bodies.upstreams(node.upstreams, api.version, node.env.now, node.clock, fields))


@http_upstreams.get("/{upstream}/")
async def get_http_upstream(api: ApiDep, up: HttpUpstreamDep, fields: str | None = None):
    node = api.node
    return NginxJSON(api.state.bodies.upstream(up, api.version, node.env.now, node.clock, fields))


@http_upstreams.delete("/{upstream}/")
async def delete_http_upstream(api: ApiDep, up: HttpUpstreamDep):
    up.reset_statistics()
    return no_content()


@http_upstreams.get("/{upstream}/servers/")
async def get_http_upstream_servers(api: ApiDep, up: HttpUpstreamDep):
    return json_response(render.conf_servers(up, api.version))


@http_upstreams.post("/{upstream}/servers/")
async def post_http_upstream_server(api: ApiDep, up: HttpUpstreamDep, body: JsonBody):
    _check_v1_body(api, body)
    peer = up.add_server(body, has_resolver=api.node.http_resolver is not None)
    return json_response(render.conf_server(peer, up.kind, api.version), 201)


@http_upstreams.get("/{upstream}/servers/{server_id}/")
async def get_http_upstream_server(api: ApiDep, up: HttpUpstreamDep, sid: ServerIdDep):
    return json_response(render.conf_server(up.peer(sid), up.kind, api.version))


@http_upstreams.patch("/{upstream}/servers/{server_id}/")
async def patch_http_upstream_server(api: ApiDep, up: HttpUpstreamDep, sid: ServerIdDep, body: JsonBody):
    peer = up.patch_server(sid, body)
    return json_response(render.conf_server(peer, up.kind, api.version))


@http_upstreams.delete("/{upstream}/servers/{server_id}/")
async def delete_http_upstream_server(api: ApiDep, up: HttpUpstreamDep, sid: ServerIdDep):
    up.remove_server(sid)
    return json_response(render.conf_servers(up, api.version))


# --- stream ----------------------------------------------------------------------------------------


@stream_upstreams.get("/")
async def get_stream_upstreams(api: ApiDep, fields: str | None = None):
    node = api.node
    ups = render.stream_upstreams(node)
    return NginxJSON(api.state.bodies.upstreams(ups, api.version, node.env.now, node.clock, fields, stream=True))


@stream_upstreams.get("/{upstream}/")
async def get_stream_upstream(api: ApiDep, up: StreamUpstreamDep, fields: str | None = None):
    node = api.node
    return NginxJSON(api.state.bodies.stream_upstream(up, api.version, node.env.now, node.clock, fields))


@stream_upstreams.delete("/{upstream}/")
async def delete_stream_upstream(api: ApiDep, up: StreamUpstreamDep):
    up.reset_statistics()
    return no_content()


@stream_upstreams.get("/{upstream}/servers/")
async def get_stream_upstream_servers(api: ApiDep, up: StreamUpstreamDep):
    return json_response(render.conf_servers(up, api.version))


@stream_upstreams.post("/{upstream}/servers/")
async def post_stream_upstream_server(api: ApiDep, up: StreamUpstreamDep, body: JsonBody):
    peer = up.add_server(body, has_resolver=api.node.stream_resolver is not None)
    return json_response(render.conf_server(peer, up.kind, api.version), 201)


@stream_upstreams.get("/{upstream}/servers/{server_id}/")
async def get_stream_upstream_server(api: ApiDep, up: StreamUpstreamDep, sid: ServerIdDep):
    return json_response(render.conf_server(up.peer(sid), up.kind, api.version))


@stream_upstreams.patch("/{upstream}/servers/{server_id}/")
async def patch_stream_upstream_server(api: ApiDep, up: StreamUpstreamDep, sid: ServerIdDep, body: JsonBody):
    peer = up.patch_server(sid, body)
    return json_response(render.conf_server(peer, up.kind, api.version))


@stream_upstreams.delete("/{upstream}/servers/{server_id}/")
async def delete_stream_upstream_server(api: ApiDep, up: StreamUpstreamDep, sid: ServerIdDep):
    up.remove_server(sid)
    return json_response(render.conf_servers(up, api.version))


RESOURCES = [http_upstreams, stream_upstreams]
