"""Scenario files (YAML) -> a validated, inert :class:`Scenario`.

A scenario names the nginx.conf (a path relative to the scenario file, or inline text), the
nodes, the scenario's DNS (``hosts``), the network, the backends, the workloads, a timeline of
faults, the run's duration, seed and sampling interval, and expectations to check at the end.
The format is documented in ``scenarios/README.md``. Validation happens once, here; an invalid
file raises :class:`ScenarioError` whose message names the file, the line and the field.
Durations are nginx-style strings (``"90s"``, ``"500ms"``) or numbers of seconds; sizes accept
``k``/``m``/``g``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator

from sim.cluster.backend import BackendSpec
from sim.cluster.faults import step_problem
from sim.cluster.network import LinkSpec
from sim.cluster.yaml_lines import _clean_loc, _field, _line_for, _line_map, read_mapping
from sim.conf import config as nginx_config
from sim.conf import reader as conf_reader
from sim.core import dists
from sim.core.clock import UnitError, parse_duration, parse_size
from sim.workload.clients import PathSpec, WorkloadSpec
from sim.workload.keyval_writers import KeyvalWriterSpec
from sim.workload.stream_clients import StreamWorkloadSpec


class ScenarioError(ValueError):
    """An invalid scenario: ``str(err)`` is ``"file:line: field: reason"``."""


def _duration(v: Any) -> float:
    if isinstance(v, bool):
        raise ValueError("expected a duration like '30s' or a number of seconds")
    try:
        return float(parse_duration(v))
    except (UnitError, TypeError) as e:
        raise ValueError(str(e)) from None


def _size(v: Any) -> int:
    try:
        return parse_size(v)
    except (UnitError, TypeError) as e:
        raise ValueError(str(e)) from None


def _dist(v: Any) -> dists.DistSpec:
    try:
        return dists.parse(v, "value")
    except dists.DistError as e:
        raise ValueError(str(e).removeprefix("value: ").removeprefix("value.")) from None


def _signed_duration(v: Any) -> float:
    """A duration that may be negative (a clock running behind): ``"-200ms"``, ``-2``."""
    if isinstance(v, str) and v.strip().startswith("-"):
        return -_duration(v.strip()[1:])
    if isinstance(v, int | float) and not isinstance(v, bool) and v < 0:
        return -_duration(-v)
    return _duration(v)


Duration = Annotated[float, BeforeValidator(_duration)]
SignedDuration = Annotated[float, BeforeValidator(_signed_duration)]
Size = Annotated[int, BeforeValidator(_size)]
Dist = Annotated[dists.DistSpec, BeforeValidator(_dist)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True, frozen=True)


class NodeModel(_Model):
    name: str
    address: str | None = None
    nginx_conf: str | None = None
    clock_offset: SignedDuration = 0.0
    worker_connections: int = Field(512, ge=1)
    cache_hit_ms: float = Field(0.2, ge=0)


class NetworkModel(_Model):
    latency_ms: float = Field(0.5, ge=0)  # one way, node <-> backend
    loss: float = Field(0.0, ge=0, le=1)
    bandwidth_mbps: float = Field(1000.0, gt=0)
    node_latency_ms: float = Field(1.0, ge=0)  # one way, node <-> node (the zone_sync mesh)
    node_loss: float = Field(0.0, ge=0, le=1)


class BackendModel(_Model):
    concurrency: int = Field(64, ge=1)
    service_time: Dist = dists.DistSpec("exponential", (20.0,))
    response_size: Dist = dists.DistSpec("constant", (4096.0,))
    status_mix: dict[int, float] = Field(default_factory=lambda: {200: 1.0})
    header_bytes: int = Field(200, ge=0)
    health_status: int = Field(200, ge=100, le=599)
    health_body: str = "OK"
    health_headers: dict[str, str] = Field(default_factory=lambda: {"Content-Type": "text/plain"})
    health_time: Dist = dists.DistSpec("constant", (1.0,))
    cache_max_age: Duration | None = None
    content_change: Duration | None = None
    error_status: int = Field(500, ge=100, le=599)
    stream_response_bytes: Dist = dists.DistSpec("constant", (1024.0,))

    @field_validator("status_mix")
    @classmethod
    def _mix(cls, v):
        if not v:
            raise ValueError("must name at least one status")
        for code, w in v.items():
            if not 100 <= code <= 599:
                raise ValueError(f"status {code} is not an HTTP status")
            if w < 0 or math.isnan(w):
                raise ValueError(f"weight of {code} must be non-negative")
        if sum(v.values()) <= 0:
            raise ValueError("weights must not all be zero")
        return v


class PathsModel(_Model):
    count: int = Field(100, ge=1, le=10_000_000)
    zipf: float = Field(1.0, ge=0)
    prefix: str = "/item/"
    list: tuple[str, ...] = ()


class WorkloadModel(_Model):
    name: str = "clients"
    nodes: list[str] | Literal["all"] = "all"
    rate: float = Field(100.0, ge=0)
    rate_curve: list[tuple[Duration, float]] = Field(default_factory=list)
    arrivals: Literal["poisson", "constant"] = "poisson"
    host: str = "localhost"
    port: int = Field(80, ge=1, le=65535)
    paths: PathsModel = Field(default_factory=PathsModel)
    request_size: Dist = dists.DistSpec("constant", (300.0,))
    keepalive_requests: int = Field(1, ge=1)
    clients: int = Field(1000, ge=1)
    bypass_share: float = Field(0.0, ge=0, le=1)
    ssl_session_reuse: float = Field(0.0, ge=0, le=1)
    ssl_handshake_failure: float = Field(0.0, ge=0, le=1)
    start: Duration = 0.0
    stop: Duration | None = None

    @field_validator("rate_curve")
    @classmethod
    def _curve(cls, v):
        times = [t for t, _ in v]
        if times != sorted(times):
            raise ValueError("points must be in time order")
        if any(r < 0 for _, r in v):
            raise ValueError("rates must be non-negative")
        return v


class FaultModel(_Model):
    """One step of the timeline: a fault, a reload, a DNS change or an API write (faults.py)."""
    at: Duration
    action: Literal[
        "backend_down", "backend_up", "backend_slow", "backend_erroring",
        "partition", "heal", "cut_link", "restore_link", "slow_link",
        "crash_node", "restart_node", "crash_worker", "reload", "clock_offset",
        "dns", "api",
    ]
    # backend address, node name, "a|b" link, a host name (dns); for reload also a list or "all"
    target: str | list[str] | None = None
    nodes: list[str] = Field(default_factory=list)
    other: list[str] = Field(default_factory=list)
    factor: float = Field(1.0, gt=0)
    rate: float = Field(1.0, ge=0, le=1)
    latency: Duration = 0.0
    offset: SignedDuration | None = None
    duration: Duration | None = None  # heal automatically after this long
    # reload: the configuration to load (relative to the scenario), one node after another
    nginx_conf: str | None = None
    stagger: Duration | None = None
    # dns: what the name server answers for `target` from now on (addresses or an error word)
    addresses: list[str] | str | None = None
    # api: one request a user would send to `node`'s NGINX Plus API
    node: str | None = None
    method: Literal["GET", "POST", "PATCH", "PUT", "DELETE", "HEAD"] | None = None
    path: str | None = None
    body: Any = None


class ExpectationModel(_Model):
    name: str | None = None
    metric: str
    op: Literal["<", "<=", "==", "!=", ">=", ">"]
    value: float


class StreamWorkloadModel(_Model):
    """``stream_workloads[]``: open-loop TCP sessions (sim/stream/side.py)."""

    name: str = "tcp_clients"
    nodes: list[str] | Literal["all"] = "all"
    port: int = Field(12345, ge=1, le=65535)
    rate: float = Field(10.0, ge=0)  # sessions per second per node
    arrivals: Literal["poisson", "constant"] = "poisson"
    duration: Dist = dists.DistSpec("constant", (1000.0,))  # ms
    bytes_sent: Dist = dists.DistSpec("constant", (512.0,))
    clients: int = Field(1000, ge=1)
    discard_share: float = Field(0.0, ge=0, le=1)
    start: Duration = 0.0
    stop: Duration | None = None


class KeyvalWriterModel(_Model):
    """``keyval_writers[]``: simulated API clients writing keyval pairs (sim/workload/keyval_writers.py)."""

    name: str = "writer"
    zone: str
    side: Literal["stream", "http"] = "stream"
    nodes: list[str] | Literal["all"] = "all"
    rate: float = Field(1.0, ge=0)  # writes per second per node
    arrivals: Literal["poisson", "constant"] = "poisson"
    keys: int = Field(100, ge=1)
    key_prefix: str = "key"
    order: Literal["random", "cycle"] = "random"
    zipf: float = Field(0.0, ge=0)
    delete_share: float = Field(0.0, ge=0, le=1)
    value_bytes: int = Field(0, ge=0)
    start: Duration = 0.0
    stop: Duration | None = None


class ScenarioModel(_Model):
    name: str | None = None
    description: str = ""
    seed: int = 1
    duration: Duration = 60_000.0
    sample_interval: Duration = 1000.0
    scrape_interval: Duration | None = None  # a Prometheus scraper (clustersim.monitoring), if set
    epoch_ms: int | None = None
    nginx_conf: str | None = None
    nginx_conf_inline: str | None = None
    include_map: dict[str, str] = Field(default_factory=dict)
    nodes: int | list[NodeModel] = 3
    hosts: dict[str, list[str]] = Field(default_factory=dict)
    network: NetworkModel = Field(default_factory=NetworkModel)
    backend_defaults: BackendModel = Field(default_factory=BackendModel)
    backends: dict[str, BackendModel] = Field(default_factory=dict)
    workloads: list[WorkloadModel] = Field(default_factory=list)
    faults: list[FaultModel] = Field(default_factory=list)
    expectations: list[ExpectationModel] = Field(default_factory=list)
    stream_workloads: list[StreamWorkloadModel] = Field(default_factory=list)
    keyval_writers: list[KeyvalWriterModel] = Field(default_factory=list)

    @field_validator("nodes")
    @classmethod
    def _nodes(cls, v):
        if isinstance(v, int):
            if not 1 <= v <= 64:
                raise ValueError("node count must be between 1 and 64")
        else:
            names = [n.name for n in v]
            if len(set(names)) != len(names):
                raise ValueError("node names must be unique")
            if not names:
                raise ValueError("at least one node")
        return v

    @field_validator("duration", "sample_interval", "scrape_interval")
    @classmethod
    def _positive(cls, v):
        if v is not None and v <= 0:
            raise ValueError("must be positive")
        return v


# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NodeSpec:
    name: str
    address: str
    conf: nginx_config.NginxConf
    clock_offset_ms: float
    params: dict


@dataclass(frozen=True)
class Scenario:
    """A validated scenario, ready for :class:`sim.cluster.cluster.Cluster`."""

    name: str
    file: str
    model: ScenarioModel
    nodes: tuple[NodeSpec, ...]
    backends: dict[str, BackendSpec]
    backend_default: BackendModel
    workloads: tuple[WorkloadSpec, ...]
    link: LinkSpec
    node_link: LinkSpec
    stream_workloads: tuple[StreamWorkloadSpec, ...] = ()
    keyval_writers: tuple[KeyvalWriterSpec, ...] = ()
    #: the nginx.conf of each ``reload`` step that names one, by its index in ``faults``
    fault_confs: dict[int, nginx_config.NginxConf] = field(default_factory=dict)

    @property
    def seed(self) -> int:
        return self.model.seed

    @property
    def duration_ms(self) -> float:
        return self.model.duration

    def with_seed(self, seed: int) -> Scenario:
        from dataclasses import replace

        return replace(self, model=self.model.model_copy(update={"seed": seed}))

    def backend_spec(self, address: str) -> BackendSpec:
        spec = self.backends.get(address)
        return spec if spec is not None else backend_spec(address, self.backend_default)


def backend_spec(address: str, m: BackendModel) -> BackendSpec:
    return BackendSpec(
        address=address,
        concurrency=m.concurrency,
        service_time=m.service_time,
        response_size=m.response_size,
        status_mix=tuple(sorted(m.status_mix.items())),
        header_bytes=m.header_bytes,
        health_status=m.health_status,
        health_body=m.health_body,
        health_headers=tuple(m.health_headers.items()),
        health_time=m.health_time,
        cache_max_age_ms=int(m.cache_max_age) if m.cache_max_age is not None else None,
        content_change_ms=int(m.content_change) if m.content_change is not None else None,
        error_status=m.error_status,
        stream_response_bytes=m.stream_response_bytes,
    )


def load(path: str | Path, *, seed: int | None = None) -> Scenario:
    """Read and validate a scenario file."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise ScenarioError(f"{path}: cannot read: {e.strerror}") from None
    return loads(text, filename=str(path), base_dir=path.parent, seed=seed)


def loads(text: str, *, filename: str = "<scenario>", base_dir: str | Path = ".", seed: int | None = None) -> Scenario:
    base_dir = Path(base_dir)
    root, data = read_mapping(text, filename, "scenario", ScenarioError)
    lines = _line_map(root)
    try:
        model = ScenarioModel.model_validate(data)
    except ValidationError as e:
        # a union (nodes: int | list) reports one error per branch: the deepest is the useful one
        err = max(e.errors(), key=lambda x: len(_clean_loc(x["loc"])))
        loc = _clean_loc(err["loc"])
        line = _line_for(lines, loc)
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown field"
        raise ScenarioError(f"{filename}:{line}: {_field(loc)}: {msg}") from None
    if seed is not None:
        model = model.model_copy(update={"seed": seed})

    def where(*loc) -> str:
        return f"{filename}:{_line_for(lines, loc)}"

    def conf_from(ref: str | None, inline: str | None, loc: tuple) -> nginx_config.NginxConf:
        try:
            if inline is not None:
                return conf_reader.loads(inline, filename=f"{filename}#nginx_conf_inline", base_dir=str(base_dir))
            if ref is None:
                raise ScenarioError(f"{where(*loc)}: nginx_conf: a scenario needs nginx_conf or nginx_conf_inline")
            conf_path = (base_dir / ref) if not Path(ref).is_absolute() else Path(ref)
            if not conf_path.exists():
                raise ScenarioError(f"{where(*loc)}: nginx_conf: file not found: {conf_path}")
            include_map = {k: str((base_dir / v).resolve()) if not Path(v).is_absolute() else v for k, v in model.include_map.items()}
            return conf_reader.load(conf_path, include_map=include_map or None)
        except nginx_config.ConfigError as e:
            if inline is not None and e.where is not None and e.where.file.endswith("#nginx_conf_inline"):
                # the inline text starts on the line after its key (a YAML block scalar)
                line = _line_for(lines, ("nginx_conf_inline",)) + e.where.line
                raise ScenarioError(f"{filename}:{line}: nginx_conf_inline: {e.message}") from None
            raise ScenarioError(f"{e} (nginx_conf of {where(*loc)})") from None

    default_conf = None
    if model.nginx_conf is not None or model.nginx_conf_inline is not None:
        default_conf = conf_from(model.nginx_conf, model.nginx_conf_inline, ("nginx_conf",))
    nodes = []
    node_models = (
        [NodeModel(name=f"node{i + 1}") for i in range(model.nodes)] if isinstance(model.nodes, int) else model.nodes
    )
    for i, nm in enumerate(node_models):
        if nm.nginx_conf is not None:
            conf = conf_from(nm.nginx_conf, None, ("nodes", i, "nginx_conf"))
        elif default_conf is not None:
            conf = default_conf
        else:
            raise ScenarioError(f"{where('nodes')}: nginx_conf: node {nm.name} has no nginx_conf and the scenario none")
        nodes.append(
            NodeSpec(
                name=nm.name,
                address=nm.address or f"127.0.0.{11 + i}",
                conf=conf,
                clock_offset_ms=nm.clock_offset,
                params={
                    "worker_connections": nm.worker_connections,
                    "cache_hit_ms": nm.cache_hit_ms,
                    "clock_offset_ms": nm.clock_offset,
                },
            )
        )
    node_names = {n.name for n in nodes}
    workloads = []
    for i, w in enumerate(model.workloads):
        if w.nodes != "all":
            for n in w.nodes:
                if n not in node_names:
                    raise ScenarioError(f"{where('workloads', i, 'nodes')}: workloads[{i}].nodes: unknown node {n!r}")
        workloads.append(
            WorkloadSpec(
                name=w.name if sum(1 for x in model.workloads if x.name == w.name) == 1 else f"{w.name}{i}",
                nodes=None if w.nodes == "all" else tuple(w.nodes),
                rate=w.rate,
                rate_curve=tuple((float(t), float(r)) for t, r in w.rate_curve),
                arrivals=w.arrivals,
                host=w.host,
                port=w.port,
                paths=PathSpec(count=w.paths.count, zipf=w.paths.zipf, prefix=w.paths.prefix, explicit=tuple(w.paths.list)),
                request_size=w.request_size,
                keepalive_requests=w.keepalive_requests,
                clients=w.clients,
                bypass_share=w.bypass_share,
                ssl_session_reuse=w.ssl_session_reuse,
                ssl_handshake_failure=w.ssl_handshake_failure,
                start_ms=w.start,
                stop_ms=w.stop,
            )
        )
    fault_confs: dict[int, nginx_config.NginxConf] = {}
    for i, f in enumerate(model.faults):
        for n in [*f.nodes, *f.other]:
            if n not in node_names:
                raise ScenarioError(f"{where('faults', i)}: faults[{i}]: unknown node {n!r}")
        if (problem := step_problem(f, node_names)) is not None:  # reload, dns and api steps
            name, reason = problem
            loc = ("faults", i, name) if name else ("faults", i)
            raise ScenarioError(f"{where(*loc)}: faults[{i}]{'.' + name if name else ''}: {reason}")
        if f.action in ("crash_node", "restart_node", "crash_worker", "clock_offset") and f.target not in node_names:
            raise ScenarioError(f"{where('faults', i, 'target')}: faults[{i}].target: expected a node name, got {f.target!r}")
        if f.action == "reload" and f.nginx_conf is not None:
            fault_confs[i] = conf_from(f.nginx_conf, None, ("faults", i, "nginx_conf"))
        if f.action.startswith("backend_") and not f.target:
            raise ScenarioError(f"{where('faults', i)}: faults[{i}].target: a backend address is required")
        if f.action in ("cut_link", "restore_link", "slow_link") and (not f.target or "|" not in f.target):
            raise ScenarioError(f"{where('faults', i)}: faults[{i}].target: expected 'a|b' naming a link")
        if f.action == "partition" and (not f.nodes or not f.other):
            raise ScenarioError(f"{where('faults', i)}: faults[{i}]: partition needs nodes and other")
    backends = {addr: backend_spec(addr, m) for addr, m in model.backends.items()}
    bw = model.network.bandwidth_mbps * 1e6 / 8 / 1000  # bytes per ms
    link = LinkSpec(latency_ms=model.network.latency_ms, loss=model.network.loss, bandwidth_bytes_per_ms=bw)
    node_link = LinkSpec(latency_ms=model.network.node_latency_ms, loss=model.network.node_loss, bandwidth_bytes_per_ms=bw)
    return Scenario(
        name=model.name or Path(filename).stem,
        file=filename,
        model=model,
        nodes=tuple(nodes),
        backends=backends,
        backend_default=model.backend_defaults,
        workloads=tuple(workloads),
        link=link,
        node_link=node_link,
        fault_confs=fault_confs,
        **_stream_and_keyval_specs(model, nodes, where),
    )


def _stream_and_keyval_specs(model: ScenarioModel, nodes: list[NodeSpec], where) -> dict:
    """``stream_workloads`` and ``keyval_writers`` as specs, checked against the nodes' configs."""
    by_name = {n.name: n for n in nodes}

    def targets(field: str, i: int, names) -> tuple[str, ...] | None:
        if names == "all":
            return None
        for n in names:
            if n not in by_name:
                raise ScenarioError(f"{where(field, i, 'nodes')}: {field}[{i}].nodes: unknown node {n!r}")
        return tuple(names)

    streams = []
    for i, w in enumerate(model.stream_workloads):
        streams.append(
            StreamWorkloadSpec(
                name=w.name if sum(1 for x in model.stream_workloads if x.name == w.name) == 1 else f"{w.name}{i}",
                nodes=targets("stream_workloads", i, w.nodes),
                port=w.port,
                rate=w.rate,
                arrivals=w.arrivals,
                duration=w.duration,
                bytes_sent=w.bytes_sent,
                clients=w.clients,
                discard_share=w.discard_share,
                start_ms=w.start,
                stop_ms=w.stop,
            )
        )
    writers = []
    for i, w in enumerate(model.keyval_writers):
        names = targets("keyval_writers", i, w.nodes)
        for n in names or by_name:
            block = getattr(by_name[n].conf, w.side)
            if block is None or w.zone not in block.keyval_zones:
                raise ScenarioError(
                    f"{where('keyval_writers', i, 'zone')}: keyval_writers[{i}].zone: "
                    f"node {n} has no {w.side} keyval_zone {w.zone!r}"
                )
        writers.append(
            KeyvalWriterSpec(
                name=w.name if sum(1 for x in model.keyval_writers if x.name == w.name) == 1 else f"{w.name}{i}",
                zone=w.zone,
                side=w.side,
                nodes=names,
                rate=w.rate,
                arrivals=w.arrivals,
                keys=w.keys,
                key_prefix=w.key_prefix,
                order=w.order,
                zipf=w.zipf,
                delete_share=w.delete_share,
                value_bytes=w.value_bytes,
                start_ms=w.start,
                stop_ms=w.stop,
            )
        )
    return {"stream_workloads": tuple(streams), "keyval_writers": tuple(writers)}
