"""Two or more runs on the same axes: the before/after question of a configuration change.

Each run keeps one colour through every panel; the panels are cluster-wide (sums over the
nodes, or the worst node for latency), so runs with different node counts still compare.
"""

from __future__ import annotations

import numpy as np

from clustersim.plotting import series as S
from clustersim.plotting.data import RunData
from clustersim.plotting.panels import PALETTE, Panel, Section, Trace


def _cluster_cache_hit_ratio(run: RunData) -> tuple[np.ndarray, np.ndarray]:
    tab = run.caches
    if not len(tab):
        return np.array([]), np.array([])
    hits = np.full(len(tab), np.nan)
    lookups = np.full(len(tab), np.nan)
    for node, cache in S.cache_groups(tab):
        mask = (tab["node"] == node) & (tab["cache"] == cache)
        t = tab["time_s"][mask]
        hits[mask] = S.deltas(t, tab["hit"][mask])
        lookups[mask] = sum(S.deltas(t, tab[s][mask]) for s in ("hit", "miss", "expired", "stale", "updating", "revalidated"))
    x, h = S.sum_by_time(tab["time_s"], hits)
    _, n = S.sum_by_time(tab["time_s"], lookups)
    with np.errstate(invalid="ignore", divide="ignore"):
        return x, np.where(n > 0, h / np.where(n > 0, n, 1), np.nan)


def _node_rate(run: RunData, col: str) -> tuple[np.ndarray, np.ndarray]:
    rows = run.rows
    out = np.full(len(rows), np.nan)
    for node in run.nodes:
        mask = rows["node"] == node
        out[mask] = S.rate(rows["time_s"][mask], rows[col][mask])
    return S.sum_by_time(rows["time_s"], out)


def compare_sections(runs: list[RunData]) -> list[Section]:
    served = Panel("served", "req/s")
    offered = Panel("offered", "req/s")
    errors = Panel("5xx responses", "responses/s")
    p99 = Panel("worst node's p99", "ms", log_y=True)
    conns = Panel("active connections (all nodes)", "connections")
    peers = Panel("upstream peers up (all nodes)", "peers")
    hit = Panel("cache hit ratio (all caches)", "ratio", yrange=(0, 1))
    pending = Panel("zone_sync records_pending (all nodes)", "records")
    diverged = Panel("divergent keys", "keys")
    for i, run in enumerate(runs):
        colour, name = PALETTE[i % len(PALETTE)], run.label
        t = run.rows["time_s"]

        def add(panel, x, y, mode="line", name=name, colour=colour):
            if len(x) and not np.all(np.isnan(y)):
                panel.traces.append(Trace(name, x, y, mode=mode, colour=colour, group=name))

        add(served, *S.sum_by_time(t, run.rows["served_per_s"]))
        add(offered, *S.sum_by_time(t, run.rows["offered_per_s"]))
        add(errors, *_node_rate(run, "responses_5xx"))
        add(p99, *S.max_by_time(t, run.rows["latency_p99_ms"]))
        add(conns, *S.sum_by_time(t, run.rows["connections_active"]))
        add(peers, *S.sum_by_time(t, run.rows["peers_up"]), mode="step")
        add(hit, *_cluster_cache_hit_ratio(run))
        add(pending, *S.sum_by_time(t, run.rows["zone_sync_records_pending"]))
        for zone, tab in sorted(run.divergence.items()):
            add(diverged, tab["time_s"], tab["divergent_keys"], mode="step", name=f"{name}: {zone}")
    panels = [p for p in (served, offered, errors, p99, conns, peers, hit, pending, diverged) if p.traces]
    return [Section("compare", "The runs overlaid (cluster-wide)", panels,
                    "One colour per run. Sums over the nodes, except latency: the highest p99 of any node.")]
