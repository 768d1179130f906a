"""The served cluster: :class:`LiveCluster` binds every node and the control endpoint, runs the
pacer and stops cleanly; :func:`serve` runs one until asked to stop."""

from __future__ import annotations

import asyncio
import gc
import os
import time

from api.live.asgi import _AsgiHandler
from api.live.frontend import NodeFrontend, _StreamConnection
from api.live.http import HttpConnection
from api.live.listen import Binding, LiveError, _listen_socket, node_bindings, plan_bindings
from api.live.pacer import Pacer


class LiveCluster:
    """A :class:`sim.cluster.cluster.Cluster` served on loopback: nodes, pacer and control endpoint."""

    def __init__(self, cluster, *, speed: float = 1.0, port_offset: int | None = None,
                 address_base: str | None = None, control_host: str = "127.0.0.1", control_port: int = 0,
                 api_app_factory=None):
        self.cluster = cluster
        self.speed = speed
        self.port_offset = port_offset
        self.address_base = address_base
        self.control_host = control_host
        self.control_port = control_port
        self.pacer = Pacer(cluster, speed)
        self.frontends: dict[str, NodeFrontend] = {}
        self.control_server = None
        self.started_wall = 0.0
        self._api_apps: dict[str, object] = {}
        self._api_app_factory = api_app_factory
        self._pacer_task: asyncio.Task | None = None
        self._frozen = False
        self.fault_log: list[dict] = []

    # --- the API apps ---------------------------------------------------------------------------

    def api_app(self, node):
        app = self._api_apps.get(node.name)
        if app is None:
            factory = self._api_app_factory
            if factory is None:
                from api.app import create_app as factory
            app = self._api_apps[node.name] = factory(node)
        return app

    # --- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Bind every node's sockets and the control endpoint, then start the pacer."""
        loop = asyncio.get_running_loop()
        # live timestamps are the wall clock's: sim time now is this instant (at speed 1 they
        # stay together; at speed X the API's clock runs X times as fast)
        self.cluster.set_epoch(int(time.time() * 1000 - self.cluster.env.now))
        self.pacer.begin()
        plan = plan_bindings(self.cluster, port_offset=self.port_offset, address_base=self.address_base)
        taken: dict[tuple[str, int], Binding] = {}
        for b in plan:
            other = taken.get((b.bind_address, b.bind_port))
            if other is not None:
                raise LiveError(
                    f"node {b.node.name}: cannot listen on {b.bind_address}:{b.bind_port} ({b.kind}): "
                    f"already used by node {other.node.name} ({other.kind})"
                )
            taken[(b.bind_address, b.bind_port)] = b
        sockets = []
        try:
            for b in plan:
                sockets.append((b, _listen_socket(b)))
            csock = _listen_socket(Binding(_Named("control"), "control", self.control_port, self.control_host,
                                           self.control_port))
        except LiveError:
            for _, s in sockets:
                s.close()
            raise
        for node in self.cluster.nodes.values():
            self.frontends[node.name] = NodeFrontend(self, node)
        for b, sock in sockets:
            fe = self.frontends[b.node.name]
            fe.bindings.append(b)
            b.server = await loop.create_server(self._factory(fe, b), sock=sock)
        from api.control import create_control_app

        self.control_port = csock.getsockname()[1]
        handler = _AsgiHandler(create_control_app(self), self.control_host, self.control_port)
        self.control_server = await loop.create_server(lambda: HttpConnection(handler), sock=csock)
        self.pacer.after_step.append(self._after_step)
        for node in self.cluster.nodes.values():
            # now rather than on the first API request: importing and building the app the first
            # time holds the loop for tens of milliseconds
            self.api_app(node)
        # Everything built so far (model, apps, sockets) lives as long as the server: leave it out
        # of the collector's full passes, which otherwise stall the loop for tens of milliseconds.
        gc.collect()
        gc.freeze()
        self._frozen = True
        self.started_wall = time.time()
        self._pacer_task = loop.create_task(self.pacer.run())

    @staticmethod
    def _factory(fe: NodeFrontend, b: Binding):
        if b.kind == "http":
            return lambda: HttpConnection(fe, b)
        return lambda: _StreamConnection(fe, b)

    def _after_step(self) -> None:
        for fe in self.frontends.values():
            fe.check_crash()

    async def rebind(self, node) -> list[str]:
        """After a reload with a new configuration: open new listens, close dropped ones."""
        fe = self.frontends[node.name]
        index = list(self.cluster.nodes).index(node.name)
        want = {(b.kind, b.port): b for b in node_bindings(node, index, port_offset=self.port_offset,
                                                            address_base=self.address_base)}
        have = {(b.kind, b.port): b for b in fe.bindings}
        notes = []
        loop = asyncio.get_running_loop()
        for key, b in have.items():
            if key not in want:
                b.server.close()
                for proto in list(b.connections):
                    proto.abort()
                fe.bindings.remove(b)
                notes.append(f"closed {b.bind_address}:{b.bind_port}")
            else:
                b.config_addresses = want[key].config_addresses
        for key, b in want.items():
            if key not in have:
                sock = _listen_socket(b)
                b.server = await loop.create_server(self._factory(fe, b), sock=sock)
                fe.bindings.append(b)
                notes.append(f"listening on {b.bind_address}:{b.bind_port}")
        fe._addr_cache.clear()
        return notes

    async def stop(self) -> None:
        """Close every socket and stop the pacer."""
        self.pacer.stop()
        servers = [b.server for fe in self.frontends.values() for b in fe.bindings if b.server is not None]
        if self.control_server is not None:
            servers.append(self.control_server)
        for s in servers:
            s.close()
        for fe in self.frontends.values():
            for b in fe.bindings:
                for proto in list(b.connections):
                    proto.abort()
            for t in list(fe.tasks):
                t.cancel()
        if self._pacer_task is not None:
            try:
                await asyncio.wait_for(self._pacer_task, 5)
            except (TimeoutError, asyncio.CancelledError):
                pass
        for s in servers:
            try:
                await asyncio.wait_for(s.wait_closed(), 1)
            except (TimeoutError, Exception):
                pass
        if self._frozen:
            self._frozen = False
            gc.unfreeze()

    @property
    def pacer_task(self) -> asyncio.Task | None:
        return self._pacer_task

    # --- what the control endpoint and the start banner show -------------------------------------

    def describe_node(self, node) -> dict:
        fe = self.frontends.get(node.name)
        bindings = fe.bindings if fe is not None else []
        api = []
        for b in bindings:
            if b.kind != "http" or node.conf.http is None:
                continue
            for s in node.conf.http.servers:
                if not any(lst.port == b.port for lst in s.listens):
                    continue
                for loc in _walk(s.locations):
                    if loc.api:
                        api.append({"url": f"http://{b.bind_address}:{b.bind_port}{loc.path.rstrip('/')}",
                                    "write": loc.api_write,
                                    "host": next((n for n in s.server_names if n and not n.startswith(("~", "*", "."))), None)})
        return {
            "name": node.name,
            "address": bindings[0].bind_address if bindings else node.address,
            "model_address": node.address,
            "up": node.up,
            "generation": node.generation,
            "clock_offset_ms": node.clock.offset_ms,
            "listens": [b.describe() for b in bindings],
            "api": api,
            "stream": getattr(node, "stream", None) is not None,
            "zone_sync": getattr(node, "zone_sync", None) is not None,
            # requests the wire refused (by status) and connections closed without an answer
            "wire": {"refused": {str(k): v for k, v in sorted(fe.refused.items())} if fe else {},
                     "dropped": dict(sorted(fe.dropped_by.items())) if fe else {}},
        }

    def describe(self) -> dict:
        return {
            "event": "serving",
            "scenario": self.cluster.scenario.name,
            "seed": self.cluster.seed,
            "speed": self.speed,
            "pid": os.getpid(),
            "control": f"http://{self.control_host}:{self.control_port}",
            "nodes": [self.describe_node(n) for n in self.cluster.nodes.values()],
        }


class _Named:
    def __init__(self, name: str):
        self.name = name


def _walk(locs):
    for loc in locs:
        yield loc
        yield from _walk(loc.locations)


async def serve(live: LiveCluster, stop: asyncio.Event, on_start=None) -> None:
    """Start ``live``, call ``on_start(live)``, run until ``stop`` is set, then stop cleanly."""
    await live.start()
    try:
        if on_start is not None:
            on_start(live)
        waiter = asyncio.ensure_future(stop.wait())
        done, _ = await asyncio.wait({waiter, live.pacer_task}, return_when=asyncio.FIRST_COMPLETED)
        if live.pacer_task in done and live.pacer_task.exception() is not None:
            waiter.cancel()
            raise live.pacer_task.exception()
        waiter.cancel()
    finally:
        await live.stop()
