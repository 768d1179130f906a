"""Node-wide endpoints: the endpoint lists, ``/nginx``, ``/processes``, ``/connections``, ``/ssl``,
``/slabs/``, ``/workers/`` and ``/license``."""

from __future__ import annotations

from .. import render
from ..deps import ApiDep, Resource, SlabPoolDep, WorkerDep, json_response, no_content

top = Resource("")
slabs = Resource("/slabs")
workers = Resource("/workers")


@top.get("/")
async def get_root_endpoints(api: ApiDep):
    return json_response(render.root_entries(api.node, api.version))


@top.get("/http/")
async def get_http_endpoints(api: ApiDep):
    return json_response(render.http_entries(api.node, api.version))


@top.get("/stream/")
async def get_stream_endpoints(api: ApiDep):
    return json_response(render.stream_entries(api.node, api.version))


@top.get("/nginx/")
async def get_nginx(api: ApiDep, fields: str | None = None):
    return json_response(render.filter_fields(render.nginx(api.node, api.version, api.pid), fields))


@top.get("/processes/")
async def get_processes(api: ApiDep):
    return json_response(render.processes(api.node, api.version))


@top.delete("/processes/")
async def delete_processes(api: ApiDep):
    api.node.reset_processes()
    return no_content()


@top.get("/connections/")
async def get_connections(api: ApiDep, fields: str | None = None):
    return json_response(render.filter_fields(render.connections(api.node, api.version), fields))


@top.delete("/connections/")
async def delete_connections(api: ApiDep):
    api.node.reset_connections()
    return no_content()


@top.get("/ssl/")
async def get_ssl(api: ApiDep, fields: str | None = None):
    return json_response(render.filter_fields(render.ssl(api.node.ssl, api.version), fields))


@top.delete("/ssl/")
async def delete_ssl(api: ApiDep):
    api.node.ssl.reset_statistics()
    return no_content()


@top.get("/license/")
async def get_license(api: ApiDep):
    return json_response(render.license(api.node, api.version))


@slabs.get("/")
async def get_slabs(api: ApiDep, fields: str | None = None):
    return json_response(render.filter_members(render.slabs(api.node, api.version), fields))


@slabs.get("/{zone}/")
async def get_slab(api: ApiDep, pool: SlabPoolDep, fields: str | None = None):
    return json_response(render.filter_fields(render.slab(pool, api.version), fields))


@slabs.delete("/{zone}/")
async def delete_slab(api: ApiDep, pool: SlabPoolDep):
    pool.reset_statistics()
    return no_content()


@workers.get("/")
async def get_workers(api: ApiDep, fields: str | None = None):
    out = render.workers(api.node, api.version)
    if fields is not None:
        out = [render.filter_fields(w, fields) for w in out]
    return json_response(out)


@workers.delete("/")
async def delete_workers(api: ApiDep):
    for w in api.node.workers:
        w.reset_statistics()
    return no_content()


@workers.get("/{worker_id}/")
async def get_worker(api: ApiDep, w: WorkerDep, fields: str | None = None):
    return json_response(render.filter_fields(render.worker(w, api.version), fields))


@workers.delete("/{worker_id}/")
async def delete_worker(api: ApiDep, w: WorkerDep):
    w.reset_statistics()
    return no_content()


RESOURCES = [top, slabs, workers]
