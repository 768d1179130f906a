"""The whole simulated system built from a scenario: env, streams, network, backends, nodes.

:class:`Cluster` owns the simpy environment and the named random streams, creates the nodes and
the shared backends, starts the workloads and the fault timeline, and samples time series.
Only a driver calls :meth:`run` (the virtual-time CLI, a test, a notebook, or the live pacer);
requests never advance time themselves.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from simpy.events import Timeout

from sim.checks.metrics import Sampler
from sim.checks.replication import ReplicationProbe, report_for_cluster
from sim.cluster.backend import Backend
from sim.cluster.faults import apply_fault, check_api_hook
from sim.cluster.network import Network
from sim.cluster.scenario import Scenario
from sim.core.clock import DEFAULT_EPOCH_MS
from sim.core.environment import Environment
from sim.core.rng import Streams
from sim.node.node import Node
from sim.workload.clients import Workload
from sim.workload.keyval_writers import start_keyval_writers
from sim.workload.stream_clients import start_stream_workloads


class Cluster:
    """A cluster of NGINX Plus nodes and their backends, ready to run."""

    def __init__(self, scenario: Scenario, *, seed: int | None = None, env: Environment | None = None,
                 start_workloads: bool = True, sample: bool = True, state_dir=None,
                 probe_interval_ms: float = 100.0):
        self.scenario = scenario
        self.seed = scenario.seed if seed is None else seed
        # where keyval `state=` files live (the run's output directory); None keeps them in memory
        self.state_dir = None if state_dir is None else Path(state_dir)
        if env is not None and not isinstance(env, Environment):
            raise TypeError("Cluster: env must be a sim.core.environment.Environment (a simpy environment with the model's fast lane)")
        self.env = env or Environment()
        self.streams = Streams(self.seed)
        self.epoch_ms = scenario.model.epoch_ms if scenario.model.epoch_ms is not None else DEFAULT_EPOCH_MS
        self.network = Network(self.streams, scenario.link, scenario.node_link)
        self.hosts = dict(scenario.model.hosts)
        self.backends: dict[str, Backend] = {}
        self.nodes: dict[str, Node] = {}
        self.fault_log: list[tuple[float, str, str]] = []
        #: set by the driver (api.inprocess.attach): answers the timeline's `api` steps
        self.api_hook = None
        for spec in scenario.nodes:
            self.network.register_node(spec.name)
        for i, spec in enumerate(scenario.nodes):
            self.nodes[spec.name] = Node(self, spec.name, spec.conf, index=i, address=spec.address, params=spec.params)
        for node in self.nodes.values():
            node.start()
        self.workloads: list[Workload] = []
        for w in scenario.workloads:
            targets = [self.nodes[n] for n in w.nodes] if w.nodes else list(self.nodes.values())
            self.workloads.append(Workload(self.env, w, targets, self.streams))
        self.stream_workloads: list = []
        self.keyval_writers = None
        self.replication_probes: dict[tuple[str, str], ReplicationProbe] = {}
        self._probe_interval_ms = probe_interval_ms
        if start_workloads:
            for w in self.workloads:
                w.start()
            self.start_background_clients()
        for i, fault in enumerate(scenario.model.faults):
            self._schedule_fault(i, fault)
        self.sampler = Sampler(self, scenario.model.sample_interval) if sample else None
        if self.sampler is not None:
            self.sampler.start()

    def start_background_clients(self) -> None:
        """Start the stream workloads and the keyval writers (with a replication probe per zone)."""
        self.stream_workloads = start_stream_workloads(self)
        self.keyval_writers = start_keyval_writers(self)
        for zone, side in self.keyval_writers.zones():
            self.replication_probes[(zone, side)] = ReplicationProbe(
                self, zone, side, interval_ms=self._probe_interval_ms, history=self.keyval_writers.history
            )

    def replication_reports(self) -> dict[str, dict]:
        """The replication checker's verdict for each keyval zone the writers used."""
        if self.keyval_writers is None:
            return {}
        return {
            zone: report_for_cluster(self, self.keyval_writers.history, zone, side, probe).summary()
            for (zone, side), probe in self.replication_probes.items()
        }

    # --- services the nodes use -------------------------------------------------------------------

    def resolve_name(self, host: str) -> list[str] | None:
        """The scenario's DNS: a host name -> addresses (node names stand for their addresses)."""
        entries = self.hosts.get(host)
        return None if entries is None else [self.node_address(e) for e in entries]

    def set_epoch(self, epoch_ms: int) -> None:
        """Put sim time 0 at ``epoch_ms`` (Unix ms) for the cluster and every node's clock.
        Live mode calls it before serving, so timestamps follow the wall clock."""
        self.epoch_ms = epoch_ms
        for node in self.nodes.values():
            node.clock.epoch_ms = epoch_ms

    def node_address(self, entry: str) -> str:
        """A host-map entry that names a node stands for that node's address."""
        node = self.nodes.get(entry) if hasattr(self, "nodes") else None
        return node.address if node is not None else entry

    def backend(self, server: str, name: str | None = None) -> Backend | None:
        """The backend at ``server`` (resolved address), created on first use from the scenario."""
        b = self.backends.get(server)
        if b is None:
            spec = self.scenario.backends.get(server) or (self.scenario.backends.get(name) if name else None)
            if spec is None:
                spec = self.scenario.backend_spec(server)
            elif spec.address != server:
                from dataclasses import replace

                spec = replace(spec, address=server)
            b = Backend(self.env, spec, self.streams)
            self.backends[server] = b
        return b

    # --- driving ----------------------------------------------------------------------------------

    def run(self, until_ms: float | None = None) -> None:
        """Advance simulated time to ``until_ms`` (default: the scenario's duration)."""
        target = self.scenario.duration_ms if until_ms is None else until_ms
        check_api_hook(self)
        if target > self.env.now:
            with _fewer_collections():
                self.env.run(until=target)

    def _schedule_fault(self, index: int, fault) -> None:
        def fire(_ev, f=fault):
            note = apply_fault(self, f, heal=False)
            self.fault_log.append((self.env.now, f.action, note))
            if f.duration is not None:
                ev2 = Timeout(self.env, f.duration)
                ev2.callbacks.append(lambda _e, f=f: self.fault_log.append((self.env.now, f.action + ":healed", apply_fault(self, f, heal=True))))

        ev = Timeout(self.env, max(fault.at - self.env.now, 0.0))
        ev.callbacks.append(fire)


#: CPython's cyclic collector runs its youngest generation after this many more container
#: allocations than deallocations while a run advances (its default is 700). Every simulated
#: request allocates a few such objects (its request, its delivery, queue entries) that live
#: until its response, so with the default the collector keeps walking the requests in flight;
#: fewer, larger collections do the same work for about 7% of a heavy run's time. Garbage
#: cycles (a request and its upstream attempt) are still collected, in batches.
RUN_GC_THRESHOLD = 10_000
#: ... and it looks at the oldest generation (every object) only after this many collections of
#: the middle one (its default is 10). A model's long-lived objects are what it holds: pairs of
#: every keyval zone on every node, cache nodes, queue entries. A 10-node zone_sync run holding
#: 700k records spent a fifth of its time in four full collections that found nothing to free;
#: the garbage a run makes (a request and its attempt) dies young and is freed by the younger
#: generations' collections, which are not changed.
RUN_GC_OLDEST = 1000


@contextmanager
def _fewer_collections() -> Iterator[None]:
    """Raise the collection thresholds for the duration of a run (never lower them, and leave a
    disabled collector alone), then restore the caller's setting."""
    before = gc.get_threshold()
    if before[0] > 0:
        gc.set_threshold(max(before[0], RUN_GC_THRESHOLD), before[1], max(before[2], RUN_GC_OLDEST))
    try:
        yield
    finally:
        gc.set_threshold(*before)


def run_replication(scenario, *, state_dir=None, probe_interval_ms: float = 100.0, until_ms: float | None = None):
    """Run a scenario with keyval writers in virtual time; returns ``(cluster, {zone: report})``."""
    cluster = Cluster(scenario, state_dir=state_dir, probe_interval_ms=probe_interval_ms)
    cluster.run(until_ms)
    reports = {
        zone: report_for_cluster(cluster, cluster.keyval_writers.history, zone, side, probe)
        for (zone, side), probe in cluster.replication_probes.items()
    }
    return cluster, reports
