"""``/resolvers/`` (5+): the status zones of ``resolver ... status_zone=``."""

from __future__ import annotations

from .. import render
from ..deps import ApiDep, ResolverZoneDep, Resource, json_response, no_content

resolvers = Resource("/resolvers")


@resolvers.get("/")
async def get_resolvers(api: ApiDep, fields: str | None = None):
    out = {name: render.resolver(z, api.version) for name, z in render.resolvers(api.node).items()}
    return json_response(render.filter_members(out, fields))


@resolvers.get("/{zone}/")
async def get_resolver(api: ApiDep, zone: ResolverZoneDep, fields: str | None = None):
    return json_response(render.filter_fields(render.resolver(zone, api.version), fields))


@resolvers.delete("/{zone}/")
async def delete_resolver(api: ApiDep, zone: ResolverZoneDep):
    zone.reset_statistics()
    return no_content()


RESOURCES = [resolvers]
