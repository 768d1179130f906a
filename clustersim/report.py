"""What a run writes: summary.json, the sampled tables, the fault timeline, PNGs, report.html and verdicts.

The summary holds, per node, the API-shaped state of every object (rendered by
:func:`api.render.node_state`, the same code the live API uses), plus what the model measured:
client latency percentiles from the node's histogram, request rates, backend load and the
directives that were accepted but not simulated. Every number comes from the model.
"""

from __future__ import annotations

import csv
import operator
from pathlib import Path

import orjson
import yaml

from api.render import node_state
from clustersim.plotting.data import divergence_series, run_data, scheduled_faults
from sim.checks.metrics import CACHE_COLUMNS, COLUMNS, PEER_COLUMNS

_OPS = {"<": operator.lt, "<=": operator.le, "==": operator.eq, "!=": operator.ne, ">=": operator.ge, ">": operator.gt}


def _round(v):
    return None if v is None else round(v, 3)


def _latency(hist) -> dict:
    return {
        "count": hist.n,
        "mean_ms": _round(hist.mean),
        "p50_ms": _round(hist.quantile(0.5)),
        "p90_ms": _round(hist.quantile(0.9)),
        "p99_ms": _round(hist.quantile(0.99)),
        "p999_ms": _round(hist.quantile(0.999)),
    }


def build_summary(cluster, version: int = 9) -> dict:
    sc = cluster.scenario
    dur_s = cluster.env.now / 1000.0
    nodes = {}
    for name, node in cluster.nodes.items():
        wl = {}
        for w in cluster.workloads:
            st = w.stats.get(name)
            if st is not None:
                wl[w.spec.name] = {
                    "sent": st.sent,
                    "completed": st.completed,
                    "refused": st.refused,
                    "discarded": st.discarded,
                    "statuses": {str(k): v for k, v in sorted(st.statuses.items())},
                }
        nodes[name] = {
            "address": node.address,
            "up": node.up,
            "api": node_state(node, version) if node.up else None,
            "latency": _latency(node.latency),
            "requests_per_s": round(node.requests_total / dur_s, 3) if dur_s > 0 else None,
            "workloads": wl,
        }
    backends = {
        addr: {
            "requests": b.requests,
            "health_requests": b.health_requests,
            "refused": b.refused,
            "max_queue": b.max_queue,
            "state": b.state,
        }
        for addr, b in sorted(cluster.backends.items())
    }
    not_sim = []
    for spec in sc.nodes:
        for ns in spec.conf.not_simulated:
            item = {"directive": ns.directive, "where": str(ns.where)}
            if item not in not_sim:
                not_sim.append(item)
    out = {
        "scenario": sc.name,
        "seed": cluster.seed,
        "duration_s": dur_s,
        "api_version": version,
        "nodes": nodes,
        "backends": backends,
        "faults": [{"at_s": round(t / 1000.0, 3), "action": a, "note": n} for t, a, n in cluster.fault_log],
        "not_simulated": not_sim,
    }
    replication = cluster.replication_reports()
    if replication:
        out["replication"] = replication
    return out


def lookup(summary: dict, path: str):
    """Follow a dotted path (``nodes.node1.latency.p99_ms``) through the summary."""
    cur = summary
    for part in path.split("."):
        if isinstance(cur, dict) and part in cur:
            cur = cur[part]
        elif isinstance(cur, list) and part.isdigit() and int(part) < len(cur):
            cur = cur[int(part)]
        else:
            raise KeyError(path)
    return cur


def check_expectations(summary: dict, expectations) -> list[dict]:
    verdicts = []
    for e in expectations:
        try:
            actual = lookup(summary, e.metric)
            ok = isinstance(actual, int | float) and not isinstance(actual, bool) and _OPS[e.op](actual, e.value)
            reason = None if isinstance(actual, int | float) else "not a number"
        except KeyError:
            actual, ok, reason = None, False, "no such metric"
        v = {"name": e.name or f"{e.metric} {e.op} {e.value}", "metric": e.metric, "op": e.op,
             "expected": e.value, "actual": actual, "passed": bool(ok)}
        if reason:
            v["reason"] = reason
        verdicts.append(v)
    return verdicts


def write_outputs(cluster, out: Path, summary: dict, verdicts: list[dict], *, command: list[str] | None = None,
                  html: bool = True) -> list[Path]:
    """Write the run's files into ``out``: the summary, the sampled tables, the fault timeline,
    the resolved scenario, the PNGs and report.html (``clustersim report DIR`` rebuilds the
    report from these files alone)."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    summary = dict(summary, expectations=verdicts)
    p = out / "summary.json"
    p.write_bytes(orjson.dumps(summary, option=orjson.OPT_INDENT_2) + b"\n")
    written.append(p)
    sampler = cluster.sampler
    p = out / "timeseries.csv"
    with p.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        w.writeheader()
        for row in sampler.rows if sampler else []:
            w.writerow({k: ("" if v is None else v) for k, v in row.items()})
    written.append(p)
    for name, columns, rows in (("peers.csv", PEER_COLUMNS, sampler.peer_rows if sampler else []),
                                ("caches.csv", CACHE_COLUMNS, sampler.cache_rows if sampler else [])):
        p = out / name
        with p.open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(columns)
            w.writerows(tuple("" if v is None else v for v in r) for r in rows)
        written.append(p)
    p = out / "faults.json"
    faults = {"log": summary["faults"], "scheduled": scheduled_faults(cluster.scenario.model.faults)}
    p.write_bytes(orjson.dumps(faults, option=orjson.OPT_INDENT_2) + b"\n")
    written.append(p)
    divergence = divergence_series(cluster)
    if divergence:
        p = out / "replication.json"
        p.write_bytes(orjson.dumps({"reports": summary.get("replication", {}), "divergence": divergence}) + b"\n")
        written.append(p)
    p = out / "run.json"
    sc = cluster.scenario
    run = {"scenario_file": sc.file, "description": sc.model.description or "", "command": list(command or []),
           "sample_interval_s": sc.model.sample_interval / 1000.0}
    p.write_bytes(orjson.dumps(run, option=orjson.OPT_INDENT_2) + b"\n")
    written.append(p)
    p = out / "scenario.resolved.yaml"
    resolved = cluster.scenario.model.model_dump(mode="json", exclude_none=True)
    resolved["seed"] = cluster.seed
    p.write_text(yaml.safe_dump(_plain(resolved), sort_keys=False))
    written.append(p)
    data = run_data(cluster, summary, verdicts, command=command, label=out.name)
    written.extend(_plots(data, out))
    if html:
        from clustersim.reporting import write_report

        written.append(write_report([data], out / "report.html"))
    return written


def _plain(obj):
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_plain(v) for v in obj]
    if hasattr(obj, "kind") and hasattr(obj, "params"):
        return {"dist": obj.kind, "params": list(obj.params)}
    return obj


def _plots(data, out: Path) -> list[Path]:
    """traffic.png (and zone_sync.png when the nodes sync zones), drawn by clustersim.plotting
    from the same data as report.html, with the fault bands."""
    from clustersim import plotting

    if not len(data.rows):
        return []
    title = f"{data.name} (seed {data.seed})"
    written = [plotting.write_png(data, plotting.png_traffic_panels(data), out / "traffic.png", title)]
    zs = plotting.zone_sync_section(data)
    if zs is not None:
        written.append(plotting.write_png(data, zs.panels, out / "zone_sync.png", f"{data.name}: zone_sync (seed {data.seed})"))
    return written


def summary_table(summary: dict) -> str:
    """A readable table of the run, one row per node."""
    head = f"{'node':<10} {'requests':>10} {'req/s':>9} {'2xx':>9} {'4xx':>7} {'5xx':>7} {'p50 ms':>8} {'p99 ms':>8} {'peers up':>9} {'cache hit':>9}"
    lines = [head, "-" * len(head)]
    for name, n in summary["nodes"].items():
        api = n.get("api") or {}
        http = api.get("http", {})
        classes = [0, 0, 0, 0, 0]
        for z in http.get("server_zones", {}).values():
            for i, k in enumerate(("1xx", "2xx", "3xx", "4xx", "5xx")):
                classes[i] += z["responses"][k]
        peers = [p for u in http.get("upstreams", {}).values() for p in u["peers"]]
        up = sum(1 for p in peers if p["state"] == "up")
        hits = lookups = 0
        for c in http.get("caches", {}).values():
            hits += c["hit"]["responses"]
            lookups += sum(c[s]["responses"] for s in ("hit", "miss", "expired", "stale", "updating", "revalidated"))
        lat = n["latency"]
        fmt = lambda v: "-" if v is None else f"{v:.1f}"  # noqa: E731
        total = http.get("requests", {}).get("total", 0)
        lines.append(
            f"{name:<10} {total:>10} {fmt(n['requests_per_s']):>9} {classes[1]:>9} {classes[3]:>7} {classes[4]:>7} "
            f"{fmt(lat['p50_ms']):>8} {fmt(lat['p99_ms']):>8} {f'{up}/{len(peers)}':>9} "
            f"{(f'{hits / lookups:.1%}' if lookups else '-'):>9}"
        )
    zs_rows = []
    for name, n in summary["nodes"].items():
        zs = ((n.get("api") or {}).get("stream") or {}).get("zone_sync")
        if zs:
            st = zs["status"]
            pending = sum(z["records_pending"] for z in zs["zones"].values())
            total = sum(z["records_total"] for z in zs["zones"].values())
            zs_rows.append(f"{name:<10} {st['nodes_online']:>12} {st['msgs_out']:>9} {st['msgs_in']:>9} {pending:>15} {total:>13}")
    if zs_rows:
        head = f"{'node':<10} {'nodes_online':>12} {'msgs_out':>9} {'msgs_in':>9} {'records_pending':>15} {'records_total':>13}"
        lines += ["", "zone_sync", head, "-" * len(head), *zs_rows]
    for zone, r in summary.get("replication", {}).items():
        ttc = r["time_to_converge_ms"]
        lines.append(
            f"replication of {zone}: {'converged' if r['converged'] else 'NOT converged'}"
            f"{'' if ttc is None else f' {ttc / 1000:g}s after the last write or heal'}, "
            f"{r['writes']} writes, at most {r['max_divergent_keys']} keys divergent, "
            f"{r['lost_updates']} lost updates, {r['resurrected_keys']} resurrected"
        )
        causes = dict(r.get("causes") or {})
        if causes:
            lines.append("  by cause: " + ", ".join(f"{c} {n}" for c, n in causes.items()))
        for node, counts in (r.get("zone_full") or {}).items():
            lines.append(
                f"  zone full on {node}: {counts['writes_refused']} writes refused, "
                f"{counts['records_dropped']} remote records dropped"
            )
        if r.get("unexplained"):
            lines.append(f"  UNEXPLAINED: {r['unexplained']} (a model bug)")
    return "\n".join(lines)
