"""``/http/keyvals/`` and ``/stream/keyvals/`` (2+): read, add, change and empty keyval zones.

The zone (:class:`sim.zones.keyval.KeyvalZone`) applies nginx's rules and wording; up to API 4 a value
may not be an object, from 5 on ``{"value": ..., "expire": ms}`` is accepted.
"""

from __future__ import annotations

from starlette.responses import Response

from .. import render
from ..deps import (
    ApiDep,
    HttpKeyvalZoneDep,
    JsonBody,
    Resource,
    StreamKeyvalZoneDep,
    json_response,
    no_content,
)

http_keyvals = Resource("/http/keyvals")
stream_keyvals = Resource("/stream/keyvals")


def _zones(api, zones: dict, fields: str | None):
    return json_response(render.keyval_zones(zones, api.version, fields))


def _post(api, zone, body):
    zone.post(body, objects_allowed=api.version >= 5)
    return Response(status_code=201)


def _patch(api, zone, body):
    zone.patch(body, objects_allowed=api.version >= 5)
    return no_content()


@http_keyvals.get("/")
async def get_http_keyvals(api: ApiDep, fields: str | None = None):
    return _zones(api, api.node.keyvals, fields)


@http_keyvals.get("/{zone}/")
async def get_http_keyval_zone(api: ApiDep, zone: HttpKeyvalZoneDep, key: str | None = None):
    return json_response(render.keyval_zone(zone, api.version, key))


@http_keyvals.post("/{zone}/")
async def post_http_keyval(api: ApiDep, zone: HttpKeyvalZoneDep, body: JsonBody):
    return _post(api, zone, body)


@http_keyvals.patch("/{zone}/")
async def patch_http_keyval(api: ApiDep, zone: HttpKeyvalZoneDep, body: JsonBody):
    return _patch(api, zone, body)


@http_keyvals.delete("/{zone}/")
async def delete_http_keyvals(api: ApiDep, zone: HttpKeyvalZoneDep):
    zone.delete_all()
    return no_content()


@stream_keyvals.get("/")
async def get_stream_keyvals(api: ApiDep, fields: str | None = None):
    return _zones(api, api.node.stream_keyvals, fields)


@stream_keyvals.get("/{zone}/")
async def get_stream_keyval_zone(api: ApiDep, zone: StreamKeyvalZoneDep, key: str | None = None):
    return json_response(render.keyval_zone(zone, api.version, key))


@stream_keyvals.post("/{zone}/")
async def post_stream_keyval(api: ApiDep, zone: StreamKeyvalZoneDep, body: JsonBody):
    return _post(api, zone, body)


@stream_keyvals.patch("/{zone}/")
async def patch_stream_keyval(api: ApiDep, zone: StreamKeyvalZoneDep, body: JsonBody):
    return _patch(api, zone, body)


@stream_keyvals.delete("/{zone}/")
async def delete_stream_keyvals(api: ApiDep, zone: StreamKeyvalZoneDep):
    zone.delete_all()
    return no_content()


RESOURCES = [http_keyvals, stream_keyvals]
