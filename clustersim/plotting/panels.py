"""The figures of a run, as renderer-neutral panels: what is drawn, not how.

A :class:`Section` is one figure: panels stacked on a shared time axis, each holding traces
(lines, steps, stacked areas, markers) or a colour strip (a peer's state over time). The
plotly renderer (:mod:`clustersim.plotting.web`) and the PNG renderer
(:mod:`clustersim.plotting.png`) both draw these, with the run's fault bands on every panel.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from clustersim.plotting import series as S
from clustersim.plotting.data import RunData

#: Colours of the nodes (and of runs in a comparison), peers and lines in turn.
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22", "#17becf")
DASHES = ("solid", "dash", "dot", "dashdot", "longdash")
CLASS_COLOURS = {"2xx": "#2ca02c", "3xx": "#1f77b4", "4xx": "#ff7f0e", "5xx": "#d62728"}
STATE_COLOURS = {"up": "#2ca02c", "draining": "#9467bd", "checking": "#f2c80f", "unhealthy": "#d62728",
                 "unavail": "#ff7f0e", "down": "#7f7f7f"}
CACHE_COLOURS = {"hit": "#2ca02c", "stale": "#bcbd22", "updating": "#17becf", "revalidated": "#1f77b4",
                 "miss": "#ff7f0e", "expired": "#d62728", "bypass": "#7f7f7f"}
LATENCY = (("latency_p50_ms", "p50", "dot"), ("latency_p95_ms", "p95", "dash"), ("latency_p99_ms", "p99", "solid"))


@dataclass
class Trace:
    name: str
    x: np.ndarray
    y: np.ndarray
    mode: str = "line"  # line | step | area (stacked to 1 within a panel) | markers
    colour: str | None = None
    dash: str = "solid"
    group: str | None = None  # traces of one group share a legend entry
    symbol: str | None = None
    size: float | None = None  # marker sizes (markers mode)
    hover: str | None = None
    width: float = 1.6


@dataclass
class Strip:
    """Categories over time, one row per label (a peer's state), drawn as coloured cells."""

    labels: list[str]
    x: np.ndarray
    codes: np.ndarray  # rows x times, an index into categories, NaN where absent
    categories: tuple[str, ...]
    colours: tuple[str, ...]


@dataclass
class Panel:
    title: str
    ylabel: str
    traces: list[Trace] = field(default_factory=list)
    strip: Strip | None = None
    height: int = 150
    yrange: tuple[float, float] | None = None
    log_y: bool = False


@dataclass
class Section:
    key: str  # the HTML id
    title: str
    panels: list[Panel]
    note: str = ""


def node_colour(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


# ---------------------------------------------------------------------------------------------
# traffic


def _node_series(run: RunData):
    for i, node in enumerate(run.nodes):
        tab = run.node_rows(node)
        if len(tab):
            yield i, node, tab


def requests_section(run: RunData) -> Section:
    """Offered and served requests per second: the cluster, then each node."""
    rows = run.rows
    t = rows["time_s"]
    cluster = Panel("cluster", "req/s")
    for col, name, dash in (("offered_per_s", "offered", "dot"), ("served_per_s", "served", "solid"),
                            ("requests_per_s", "received by nginx", "dash")):
        x, y = S.sum_by_time(t, rows[col])
        cluster.traces.append(Trace(name, x, y, colour="#444444" if name != "served" else "#1f77b4",
                                    dash=dash, group=name))
    panels = [cluster]
    for i, node, tab in _node_series(run):
        p = Panel(node, "req/s")
        for col, name, dash in (("offered_per_s", "offered", "dot"), ("served_per_s", "served", "solid"),
                                ("requests_per_s", "received by nginx", "dash")):
            p.traces.append(Trace(name, tab["time_s"], tab[col], colour=node_colour(i), dash=dash, group=name))
        panels.append(p)
    return Section("requests", "Requests: offered by clients, served to them, received by nginx", panels,
                   "Offered: requests the scenario's clients sent to the node; served: those that got a "
                   "response; received: requests nginx counted (requests.total).")


def status_section(run: RunData) -> Section:
    """Responses per second by status class, from the server zones' counters."""
    panels = []
    rows = run.rows
    total = Panel("cluster", "responses/s")
    for k, colour in CLASS_COLOURS.items():
        x, y = S.sum_by_time(rows["time_s"], _rate_by_node(run, "responses_" + k))
        total.traces.append(Trace(k, x, y, colour=colour, group=k))
    panels.append(total)
    for _i, node, tab in _node_series(run):
        p = Panel(node, "responses/s")
        for k, colour in CLASS_COLOURS.items():
            p.traces.append(Trace(k, tab["time_s"], S.rate(tab["time_s"], tab["responses_" + k]), colour=colour, group=k))
        panels.append(p)
    return Section("status", "Responses by status class (server zones)", panels,
                   "Rates of the server zones' responses.2xx ... 5xx over each sampling interval.")


def _rate_by_node(run: RunData, col: str) -> np.ndarray:
    """A cumulative column as a rate, computed per node, in the row order of ``run.rows``."""
    out = np.full(len(run.rows), np.nan)
    nodes = run.rows["node"]
    for node in run.nodes:
        mask = nodes == node
        out[mask] = S.rate(run.rows["time_s"][mask], run.rows[col][mask])
    return out


def latency_section(run: RunData) -> Section:
    panels = []
    for i, node, tab in _node_series(run):
        p = Panel(node, "ms", log_y=True)
        for col, name, dash in LATENCY:
            p.traces.append(Trace(name, tab["time_s"], tab[col], colour=node_colour(i), dash=dash, group=name))
        panels.append(p)
    return Section("latency", "Client latency percentiles per node", panels,
                   "p50, p95 and p99 of the requests completed in each interval (the node's latency "
                   "histogram; a log scale).")


def connections_section(run: RunData) -> Section:
    active = Panel("active connections", "connections")
    idle = Panel("idle connections", "connections")
    peers = Panel("upstream peers up", "peers")
    for i, node, tab in _node_series(run):
        t = tab["time_s"]
        active.traces.append(Trace(node, t, tab["connections_active"], colour=node_colour(i), group=node,
                                   dash=DASHES[i % len(DASHES)]))
        idle.traces.append(Trace(node, t, tab["connections_idle"], colour=node_colour(i), group=node,
                                 dash=DASHES[i % len(DASHES)]))
        peers.traces.append(Trace(node, t, tab["peers_up"], mode="step", colour=node_colour(i), group=node,
                                  dash=DASHES[i % len(DASHES)]))
    return Section("connections", "Connections and upstream peers up", [active, idle, peers])


# ---------------------------------------------------------------------------------------------
# upstreams


def upstream_sections(run: RunData) -> list[Section]:
    out = []
    for node, kind, upstream in S.upstream_groups(run.peers):
        tab = run.peers.where(node=node, kind=kind, upstream=upstream)
        ps = S.PeerSeries(tab)
        n = len(ps.labels)
        strip = Panel("peer state", "", strip=Strip(ps.labels, ps.times, ps.states, S.PEER_STATES,
                                                      tuple(STATE_COLOURS[s] for s in S.PEER_STATES)),
                      height=40 + 22 * n)
        passed, failed = ps.health_marks()
        if passed.any() or failed.any():
            for marks, name, symbol, colour in ((passed, "health check passed", "triangle-up", "#1b7a1b"),
                                                (failed, "health check failed", "x", "#b00000")):
                rr, cc = np.nonzero(marks)
                strip.traces.append(Trace(name, ps.times[cc], np.array(ps.labels, dtype=object)[rr], mode="markers",
                                          colour=colour, symbol=symbol, group=name,
                                          size=np.clip(7 + 2 * np.log2(marks[rr, cc]), 7, 13)))
        counted = "connections" if kind == "stream" else "requests"
        req = Panel(f"{counted} per peer", "conn/s" if kind == "stream" else "req/s")
        fails = Panel("failures per peer", "fails/s")
        share = Panel("selected-peer share", "share", yrange=(0, 1))
        rates, frates, shares = ps.rate(ps.requests), ps.rate(ps.fails), ps.share()
        for j, label in enumerate(ps.labels):
            colour = PALETTE[j % len(PALETTE)]
            name = label + (" (backup)" if ps.backup.get(label) else "")
            req.traces.append(Trace(name, ps.times, rates[j], colour=colour, group=label))
            fails.traces.append(Trace(name, ps.times, frates[j], colour=colour, group=label))
            share.traces.append(Trace(name, ps.times, shares[j], mode="area", colour=colour, group=label))
        title = f"{node}: {'stream ' if kind == 'stream' else ''}upstream {upstream}"
        out.append(Section(f"upstream-{node}-{kind}-{upstream}", title, [strip, req, fails, share]))
    return out


# ---------------------------------------------------------------------------------------------
# caches, zone_sync


def cache_sections(run: RunData) -> list[Section]:
    from sim.http.cache import STAT_FIELDS

    out = []
    for node, cache in S.cache_groups(run.caches):
        tab = run.caches.where(node=node, cache=cache)
        t = tab["time_s"]
        shares = S.status_shares(tab, STAT_FIELDS)
        p = Panel("responses by cache status", "share", yrange=(0, 1))
        for s in STAT_FIELDS:
            p.traces.append(Trace(s.upper(), t, shares[s], mode="area", colour=CACHE_COLOURS[s], group=s))
        size = Panel("size", "bytes")
        size.traces.append(Trace("size", t, tab["size"], colour="#1f77b4", group="size"))
        if not np.all(np.isnan(tab["max_size"])):
            size.traces.append(Trace("max_size", t, tab["max_size"], colour="#d62728", dash="dash", group="max_size"))
        out.append(Section(f"cache-{node}-{cache}", f"{node}: cache {cache}", [p, size]))
    return out


def zone_sync_section(run: RunData) -> Section | None:
    rows = run.rows
    has_zs = len(rows) and not np.all(np.isnan(rows["zone_sync_nodes_online"]))
    if not has_zs and not run.divergence:
        return None
    panels = []
    if has_zs:
        online = Panel("nodes_online", "nodes")
        pending = Panel("records_pending", "records")
        for i, node, tab in _node_series(run):
            # wide to narrow, so equal lines stay visible
            width = max(1.2, 4.5 - 1.2 * i)
            online.traces.append(Trace(node, tab["time_s"], tab["zone_sync_nodes_online"], mode="step",
                                       colour=node_colour(i), group=node, width=width))
            pending.traces.append(Trace(node, tab["time_s"], tab["zone_sync_records_pending"],
                                        colour=node_colour(i), group=node, width=width))
        panels += [online, pending]
    if run.divergence:
        div = Panel("divergent keys", "keys")
        for j, (zone, tab) in enumerate(sorted(run.divergence.items())):
            div.traces.append(Trace(zone, tab["time_s"], tab["divergent_keys"], mode="step",
                                    colour=PALETTE[(j + 3) % len(PALETTE)], group="zone " + zone))
        panels.append(div)
    return Section("zone-sync", "keyval replication (zone_sync)", panels,
                   "nodes_online and records_pending as each node's API shows them; divergent keys: keys "
                   "whose value differs between the nodes, sampled by the replication probe.")


def run_sections(run: RunData) -> list[Section]:
    """Every time-series figure of one run, in the order of the report."""
    out = [requests_section(run), status_section(run), latency_section(run), connections_section(run)]
    out += upstream_sections(run)
    out += cache_sections(run)
    zs = zone_sync_section(run)
    if zs is not None:
        out.append(zs)
    return [s for s in out if any(p.strip is not None or any(_shows(t) for t in p.traces) for p in s.panels)]


def _shows(trace: Trace) -> bool:
    """Whether a trace has anything to show (a figure of nothing but zeros is left out)."""
    y = trace.y
    if y.dtype == object:
        return len(y) > 0
    finite = y[np.isfinite(y)]
    return bool(len(finite)) and bool(np.any(finite != 0))


def png_traffic_panels(run: RunData) -> list[Panel]:
    """The four panels of traffic.png: per node served req/s, 5xx/s, p99, and peers up."""
    served = Panel("served", "req/s")
    errors = Panel("5xx", "5xx responses/s")
    p99 = Panel("p99", "p99 latency (ms)")
    peers = Panel("peers up", "upstream peers up")
    for i, node, tab in _node_series(run):
        t, c, d = tab["time_s"], node_colour(i), DASHES[i % len(DASHES)]
        served.traces.append(Trace(node, t, tab["served_per_s"], colour=c, dash=d))
        errors.traces.append(Trace(node, t, S.rate(t, tab["responses_5xx"]), colour=c, dash=d))
        p99.traces.append(Trace(node, t, tab["latency_p99_ms"], colour=c, dash=d))
        peers.traces.append(Trace(node, t, tab["peers_up"], mode="step", colour=c, dash=d))
    return [served, errors, p99, peers]
