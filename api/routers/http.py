"""``/http/``: requests, server zones, location zones (5+), caches, limit_conn and limit_req zones (6+)."""

from __future__ import annotations

from .. import render
from ..deps import (
    ApiDep,
    CacheZoneDep,
    HttpLimitConnZoneDep,
    HttpServerZoneDep,
    LimitReqZoneDep,
    LocationZoneDep,
    Resource,
    json_response,
    no_content,
)

requests = Resource("/http/requests")
server_zones = Resource("/http/server_zones")
location_zones = Resource("/http/location_zones")
caches = Resource("/http/caches")
limit_conns = Resource("/http/limit_conns")
limit_reqs = Resource("/http/limit_reqs")


@requests.get("/")
async def get_http_requests(api: ApiDep, fields: str | None = None):
    return json_response(render.filter_fields(render.http_requests(api.node, api.version), fields))


@requests.delete("/")
async def delete_http_requests(api: ApiDep):
    api.node.reset_requests()
    return no_content()


@server_zones.get("/")
async def get_server_zones(api: ApiDep, fields: str | None = None):
    return json_response(render.filter_members(render.server_zones(api.node, api.version), fields))


@server_zones.get("/{zone}/")
async def get_server_zone(api: ApiDep, zone: HttpServerZoneDep, fields: str | None = None):
    tls = zone.name in render.tls_server_zones(api.node)
    return json_response(render.filter_fields(render.server_zone(zone, api.version, tls), fields))


@server_zones.delete("/{zone}/")
async def delete_server_zone(api: ApiDep, zone: HttpServerZoneDep):
    zone.reset_statistics()
    return no_content()


@location_zones.get("/")
async def get_location_zones(api: ApiDep, fields: str | None = None):
    return json_response(render.filter_members(render.location_zones(api.node, api.version), fields))


@location_zones.get("/{zone}/")
async def get_location_zone(api: ApiDep, zone: LocationZoneDep, fields: str | None = None):
    return json_response(render.filter_fields(render.location_zone(zone, api.version), fields))


@location_zones.delete("/{zone}/")
async def delete_location_zone(api: ApiDep, zone: LocationZoneDep):
    zone.reset_statistics()
    return no_content()


@caches.get("/")
async def get_caches(api: ApiDep, fields: str | None = None):
    return json_response(render.filter_members(render.caches_of(api.node, api.version), fields))


@caches.get("/{zone}/")
async def get_cache(api: ApiDep, zone: CacheZoneDep, fields: str | None = None):
    return json_response(render.filter_fields(render.cache(zone, api.version), fields))


@caches.delete("/{zone}/")
async def delete_cache(api: ApiDep, zone: CacheZoneDep):
    zone.reset_statistics()
    return no_content()


@limit_conns.get("/")
async def get_limit_conns(api: ApiDep, fields: str | None = None):
    out = {name: render.limit_conn(z, api.version) for name, z in render.limit_conns(api.node).items()}
    return json_response(render.filter_members(out, fields))


@limit_conns.get("/{zone}/")
async def get_limit_conn(api: ApiDep, zone: HttpLimitConnZoneDep, fields: str | None = None):
    return json_response(render.filter_fields(render.limit_conn(zone, api.version), fields))


@limit_conns.delete("/{zone}/")
async def delete_limit_conn(api: ApiDep, zone: HttpLimitConnZoneDep):
    zone.reset_statistics()
    return no_content()


@limit_reqs.get("/")
async def get_limit_reqs(api: ApiDep, fields: str | None = None):
    out = {name: render.limit_req(z, api.version) for name, z in render.limit_reqs(api.node).items()}
    return json_response(render.filter_members(out, fields))


@limit_reqs.get("/{zone}/")
async def get_limit_req(api: ApiDep, zone: LimitReqZoneDep, fields: str | None = None):
    return json_response(render.filter_fields(render.limit_req(zone, api.version), fields))


@limit_reqs.delete("/{zone}/")
async def delete_limit_req(api: ApiDep, zone: LimitReqZoneDep):
    zone.reset_statistics()
    return no_content()


RESOURCES = [server_zones, requests, location_zones, caches, limit_conns, limit_reqs]
