"""The control endpoint of a served cluster: JSON over HTTP on its own loopback port.

Not part of NGINX Plus: this is the test bench's own handle on the live model. It lists the
nodes and where they listen, reports sim time and the pacer's lag, injects and heals faults
with the same actions (and the same fields) as a scenario's ``faults:`` list (applied by
:func:`sim.cluster.faults.apply_fault`), and reloads a node, optionally with a new nginx.conf.
Every change runs inside the pacer, at the current sim time. docs/live.md lists the endpoints.
"""

from __future__ import annotations

import asyncio

import orjson
from fastapi import FastAPI, Request
from pydantic import ValidationError
from simpy.events import Timeout
from starlette.responses import Response

from sim.cluster.faults import apply_fault
from sim.cluster.scenario import FaultModel
from sim.conf import config as nginx_config
from sim.conf import reader as conf_reader

NODE_ACTIONS = ("crash_node", "restart_node", "crash_worker", "reload", "clock_offset")


class ControlError(Exception):
    def __init__(self, status: int, message: str):
        self.status = status
        self.message = message


def _json(obj, status: int = 200) -> Response:
    return Response(orjson.dumps(obj), status_code=status, media_type="application/json")


def parse_fault(cluster, body: dict) -> FaultModel:
    """A fault given as a scenario's ``faults:`` entry (``at`` optional: it happens now)."""
    if not isinstance(body, dict):
        raise ControlError(400, "expected a JSON object describing a fault")
    try:
        f = FaultModel.model_validate({"at": 0, **body})
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise ControlError(400, f"{where}: {err['msg']}") from None
    nodes = cluster.nodes
    for n in [*f.nodes, *f.other]:
        if n not in nodes:
            raise ControlError(400, f"unknown node {n!r}")
    if f.action in NODE_ACTIONS and f.target not in nodes:
        raise ControlError(400, f"target: expected a node name, got {f.target!r}")
    if f.action.startswith("backend_") and not f.target:
        raise ControlError(400, "target: a backend address is required")
    if f.action in ("cut_link", "restore_link", "slow_link") and (not f.target or "|" not in f.target):
        raise ControlError(400, "target: expected 'a|b' naming a link")
    if f.action == "partition" and (not f.nodes or not f.other):
        raise ControlError(400, "partition needs nodes and other")
    return f


def create_control_app(live) -> FastAPI:
    """The control app of a :class:`api.live.LiveCluster`."""
    app = FastAPI(title="clustersim control", openapi_url=None, docs_url=None, redoc_url=None)
    cluster = live.cluster
    pacer = live.pacer

    async def in_pacer(fn, *args):
        """Run ``fn`` inside the pacer (at the current sim time) and return its result."""
        fut = asyncio.get_running_loop().create_future()

        def call():
            try:
                result = fn(*args)
            except Exception as e:  # handed to the awaiting handler
                if not fut.done():
                    fut.set_exception(e)
                return
            if not fut.done():
                fut.set_result(result)

        pacer.submit(call)
        return await fut

    def node_or_404(name: str):
        node = cluster.nodes.get(name)
        if node is None:
            raise ControlError(404, f"no node {name!r}")
        return node

    async def body_of(request: Request, required: bool):
        raw = await request.body()
        if not raw:
            if required:
                raise ControlError(400, "expected a JSON body")
            return {}
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError as e:
            raise ControlError(400, f"invalid JSON: {e}") from None

    @app.exception_handler(ControlError)
    async def _control_error(_request, exc: ControlError):
        return _json({"error": exc.message}, exc.status)

    @app.get("/")
    async def index():
        return _json(live.describe())

    @app.get("/nodes")
    async def nodes():
        return _json([live.describe_node(n) for n in cluster.nodes.values()])

    @app.get("/nodes/{name}")
    async def one_node(name: str):
        return _json(live.describe_node(node_or_404(name)))

    @app.get("/time")
    async def sim_time():
        return _json(pacer.stats())

    @app.post("/pacer/reset")
    async def pacer_reset():
        pacer.reset_stats()
        return _json(pacer.stats())

    @app.get("/faults")
    async def fault_log():
        return _json(live.fault_log)

    async def fault(request: Request, heal: bool):
        f = parse_fault(cluster, await body_of(request, required=True))

        def apply():
            note = apply_fault(cluster, f, heal=heal)
            entry = {"sim_ms": round(cluster.env.now, 3), "action": f.action + (":healed" if heal else ""),
                     "note": note}
            live.fault_log.append(entry)
            cluster.fault_log.append((cluster.env.now, entry["action"], note))
            if f.duration is not None and not heal:
                ev = Timeout(cluster.env, f.duration)

                def auto_heal(_ev):
                    n2 = apply_fault(cluster, f, heal=True)
                    live.fault_log.append({"sim_ms": round(cluster.env.now, 3), "action": f.action + ":healed",
                                           "note": n2})
                    cluster.fault_log.append((cluster.env.now, f.action + ":healed", n2))

                ev.callbacks.append(auto_heal)
            return entry

        try:
            entry = await in_pacer(apply)
        except (KeyError, ValueError) as e:
            raise ControlError(400, str(e)) from None
        return _json(entry)

    @app.post("/faults")
    async def inject(request: Request):
        return await fault(request, heal=False)

    @app.post("/faults/heal")
    async def heal(request: Request):
        return await fault(request, heal=True)

    @app.post("/nodes/{name}/reload")
    async def reload(name: str, request: Request):
        node = node_or_404(name)
        body = await body_of(request, required=False)
        text = body.get("nginx_conf") if isinstance(body, dict) else None
        conf = None
        if text is not None:
            try:
                conf = conf_reader.loads(text, filename=f"<control:{name}>", base_dir=".")
            except nginx_config.ConfigError as e:
                raise ControlError(400, f"nginx_conf: {e}") from None

        def do():
            node.reload(conf)
            return node.generation

        generation = await in_pacer(do)
        notes = await live.rebind(node) if conf is not None else []
        entry = {"sim_ms": round(cluster.env.now, 3), "action": "reload",
                 "note": f"{name} reloaded (generation {generation})", "listens": notes}
        live.fault_log.append(entry)
        return _json(entry)

    return app
