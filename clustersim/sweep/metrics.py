"""What a sweep keeps of a run: derived metrics computed from the model, and summary paths.

Derived metrics describe the cluster as a whole (every node, every workload):

| name | meaning |
|---|---|
| ``requests`` | client requests that got a response |
| ``offered_rps`` | requests the clients sent, per simulated second |
| ``throughput_rps`` | responses the clients got, per simulated second |
| ``mean_ms``, ``p50_ms``, ``p90_ms``, ``p95_ms``, ``p99_ms``, ``p999_ms`` | client response time, from the nodes' merged histograms (bucket upper bounds) |
| ``error_ratio`` | (5xx responses + refused + discarded) / requests with an outcome |
| ``cache_hit_ratio`` | HIT / lookups over every cache zone of every node (None with no cache lookups) |
| ``backend_utilization`` | busy slot time / (slots x duration), over the HTTP backends that served requests |
| ``backend_queue_wait_ms`` | mean time a request waited for a free backend slot (Wq) |
| ``zone_sync_convergence_s`` | the slowest zone's time to converge after its last write or heal (None if one did not converge or nothing replicated) |
"""

from __future__ import annotations

from clustersim.report import lookup
from sim.http.traffic import LatencyHistogram

DERIVED = ("requests", "offered_rps", "throughput_rps", "mean_ms", "p50_ms", "p90_ms", "p95_ms", "p99_ms",
           "p999_ms", "error_ratio", "cache_hit_ratio", "backend_utilization", "backend_queue_wait_ms",
           "zone_sync_convergence_s")

_CACHE_STATUSES = ("hit", "miss", "expired", "stale", "updating", "revalidated")


def derived(cluster, summary: dict) -> dict:
    """Every derived metric of a finished run."""
    dur_s = cluster.env.now / 1000.0
    hist = LatencyHistogram()
    for node in cluster.nodes.values():
        hist.merge(node.latency)
    sent = completed = failed = outcomes = 0
    for w in cluster.workloads:
        for st in w.stats.values():
            sent += st.sent
            completed += st.completed
            errors_5xx = sum(n for code, n in st.statuses.items() if code >= 500)
            failed += errors_5xx + st.refused + st.discarded
            outcomes += st.completed + st.refused + st.discarded
    hits = lookups = 0
    for n in summary["nodes"].values():
        for c in (((n.get("api") or {}).get("http") or {}).get("caches") or {}).values():
            hits += c["hit"]["responses"]
            lookups += sum(c[s]["responses"] for s in _CACHE_STATUSES)
    busy = capacity = wait = served = 0.0
    for b in cluster.backends.values():
        if b.requests:
            busy += b.busy_slot_ms()
            capacity += b.concurrency * cluster.env.now
            wait += b.queue_wait_ms
            served += b.requests
    convergence = None
    reps = summary.get("replication") or {}
    if reps and all(r["converged"] and r["time_to_converge_ms"] is not None for r in reps.values()):
        convergence = max(r["time_to_converge_ms"] for r in reps.values()) / 1000.0

    def q(p):
        v = hist.quantile(p)
        return None if v is None else round(v, 3)

    return {
        "requests": hist.n,
        "offered_rps": round(sent / dur_s, 6) if dur_s else None,
        "throughput_rps": round(completed / dur_s, 6) if dur_s else None,
        "mean_ms": None if hist.mean is None else round(hist.mean, 6),
        "p50_ms": q(0.5),
        "p90_ms": q(0.9),
        "p95_ms": q(0.95),
        "p99_ms": q(0.99),
        "p999_ms": q(0.999),
        "error_ratio": round(failed / outcomes, 9) if outcomes else None,
        "cache_hit_ratio": round(hits / lookups, 9) if lookups else None,
        "backend_utilization": round(busy / capacity, 9) if capacity else None,
        "backend_queue_wait_ms": round(wait / served, 9) if served else None,
        "zone_sync_convergence_s": convergence,
    }


def extract(metrics, cluster, summary: dict) -> tuple[dict, list[str]]:
    """The kept metrics of a run as ``{name: value}``, and notes on paths the summary lacks."""
    values = derived(cluster, summary) if any(m.path is None for m in metrics) else {}
    out: dict = {}
    notes: list[str] = []
    for m in metrics:
        if m.path is None:
            out[m.name] = values[m.derived]
            continue
        try:
            v = lookup(summary, m.path)
        except KeyError:
            out[m.name] = None
            notes.append(f"no such metric in summary.json: {m.path}")
            continue
        if isinstance(v, bool):
            v = int(v)
        if not isinstance(v, int | float | str) and v is not None:
            out[m.name] = None
            notes.append(f"{m.path} is a {type(v).__name__}, not a number")
            continue
        out[m.name] = v
    return out, notes
