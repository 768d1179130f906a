"""``/stream/``: server zones, limit_conn zones (6+) and ``zone_sync`` (3+); upstreams and keyvals
have their own modules. Every endpoint here needs a ``stream {}`` block (see :func:`api.deps.api_request`)."""

from __future__ import annotations

from .. import render
from ..deps import ApiDep, Resource, StreamLimitConnZoneDep, StreamServerZoneDep, json_response, no_content

server_zones = Resource("/stream/server_zones")
limit_conns = Resource("/stream/limit_conns")
zone_sync = Resource("/stream/zone_sync")


@server_zones.get("/")
async def get_stream_server_zones(api: ApiDep, fields: str | None = None):
    return json_response(render.filter_members(render.stream_server_zones_of(api.node, api.version), fields))


@server_zones.get("/{zone}/")
async def get_stream_server_zone(api: ApiDep, zone: StreamServerZoneDep, fields: str | None = None):
    tls = zone.name in render.tls_stream_server_zones(api.node)
    return json_response(render.filter_fields(render.stream_server_zone(zone, api.version, tls), fields))


@server_zones.delete("/{zone}/")
async def delete_stream_server_zone(api: ApiDep, zone: StreamServerZoneDep):
    zone.reset_statistics()
    return no_content()


@limit_conns.get("/")
async def get_stream_limit_conns(api: ApiDep, fields: str | None = None):
    out = {name: render.limit_conn(z, api.version) for name, z in render.stream_limit_conns(api.node).items()}
    return json_response(render.filter_members(out, fields))


@limit_conns.get("/{zone}/")
async def get_stream_limit_conn(api: ApiDep, zone: StreamLimitConnZoneDep, fields: str | None = None):
    return json_response(render.filter_fields(render.limit_conn(zone, api.version), fields))


@limit_conns.delete("/{zone}/")
async def delete_stream_limit_conn(api: ApiDep, zone: StreamLimitConnZoneDep):
    zone.reset_statistics()
    return no_content()


@zone_sync.get("/")
async def get_zone_sync(api: ApiDep):
    return json_response(render.zone_sync(api.node, api.version))


RESOURCES = [server_zones, limit_conns, zone_sync]
