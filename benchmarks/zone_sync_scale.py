"""zone_sync at scale: a 50-node full mesh replicating one stream keyval zone, watched by the probe.

The run the replication checker must keep up with: 50 nodes that each list one shared DNS name
(a full mesh), API writers putting 2,000 writes/s into one zone for 60 s over 100k keys (a zone
big enough to hold them all), one node partitioned from the rest from 30 s to 50 s, the
replication probe sampling every 100 ms, 150 s simulated. It prints one JSON object: wall
seconds (and the CPU seconds of the process, steadier on a shared machine), record applications
(records received and merged) per wall second, simulated seconds
per wall second, the checker's verdict (converged, lost updates by cause), and the probe's
share of the run, measured as the difference with the same run unwatched (``--no-baseline`` skips
that second run). The goal is under 30 s of wall time on one core, converged, no lost update,
and a probe cost under 10% of the run.

    python benchmarks/zone_sync_scale.py [--nodes 50] [--rate 2000] [--keys 100000]
        [--write-for 60] [--duration 150] [--probe-ms 100] [--no-baseline] [--profile FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sim import _native as native  # noqa: E402
from sim.checks.replication import report_for_cluster  # noqa: E402
from sim.cluster import scenario as scenario_mod  # noqa: E402
from sim.cluster.cluster import Cluster  # noqa: E402

CONF = """
stream {
    resolver 127.0.0.53 valid=30s;
    keyval_zone zone=sessions:%(zone_mb)dm timeout=1h sync;
    server {
        listen 9000;
        zone_sync;
        zone_sync_server cluster.local:9000 resolve;
        zone_sync_interval 1s;
        zone_sync_buffers 64 64k;
    }
}
"""


def scenario_text(nodes: int, rate: float, keys: int, write_for_s: float, duration_s: float,
                  partition: tuple[float, float] | None) -> str:
    names = [f"node{i + 1}" for i in range(nodes)]
    # one pair holds a 128-byte slot: 80 bytes of node, key and value; leave room for twice the keys
    zone_mb = max(1, -(-(keys * 128 * 2) // (1 << 20)))
    body = "\n".join("  " + line for line in (CONF % {"zone_mb": zone_mb}).splitlines())
    faults = ""
    if partition is not None and nodes > 1:
        start, end = partition
        faults = (f"faults: [{{at: {start * 1000:.0f}ms, action: partition, nodes: [{names[-1]}], "
                  f"other: [{', '.join(names[:-1])}], duration: {(end - start) * 1000:.0f}ms}}]")
    return f"""
name: zone-sync-scale
seed: 11
duration: {duration_s * 1000:.0f}ms
sample_interval: 10s
nodes: {nodes}
network: {{node_latency_ms: 1.0}}
hosts: {{cluster.local: [{', '.join(names)}]}}
keyval_writers:
  - {{name: api, zone: sessions, side: stream, rate: {rate / nodes}, keys: {keys}, stop: {write_for_s * 1000:.0f}ms}}
{faults}
nginx_conf_inline: |
{body}
"""


def run_once(sc, probe_ms: float | None) -> dict:
    t0, c0 = time.perf_counter(), time.process_time()
    cl = Cluster(sc, sample=False, probe_interval_ms=probe_ms if probe_ms is not None else 1e12)
    if probe_ms is None:
        # unwatched: stop the probe's watches so no record application reaches it
        for probe in cl.replication_probes.values():
            for zones in probe.zones_seen.values():
                for z in zones:
                    z.unwatch(probe._changed)
    build = time.perf_counter() - t0
    t1 = time.perf_counter()
    cl.run()
    ran = time.perf_counter() - t1
    t2 = time.perf_counter()
    reports = {}
    if probe_ms is not None:
        for (zone, side), probe in cl.replication_probes.items():
            reports[zone] = report_for_cluster(cl, cl.keyval_writers.history, zone, side, probe)
    checked = time.perf_counter() - t2
    applied = sum(n.zone_sync.records_received for n in cl.nodes.values() if n.zone_sync is not None)
    return {"cluster": cl, "reports": reports, "build_s": build, "run_s": ran, "check_s": checked,
            "applied": applied, "cpu_s": time.process_time() - c0}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=50)
    ap.add_argument("--rate", type=float, default=2000.0, help="writes per second, all nodes together")
    ap.add_argument("--keys", type=int, default=100_000)
    ap.add_argument("--write-for", type=float, default=60.0, help="seconds of writes")
    ap.add_argument("--duration", type=float, default=150.0, help="simulated seconds")
    ap.add_argument("--probe-ms", type=float, default=100.0)
    ap.add_argument("--no-partition", action="store_true")
    ap.add_argument("--no-baseline", action="store_true", help="skip the unwatched run")
    ap.add_argument("--profile", help="write a cProfile of the watched run to this file")
    args = ap.parse_args(argv)
    partition = None if args.no_partition else (30.0, 50.0)
    sc = scenario_mod.loads(scenario_text(args.nodes, args.rate, args.keys, args.write_for, args.duration, partition))
    if args.profile:
        import cProfile

        prof = cProfile.Profile()
        prof.enable()
    watched = run_once(sc, args.probe_ms)
    if args.profile:
        prof.disable()
        prof.dump_stats(args.profile)
    wall = watched["build_s"] + watched["run_s"] + watched["check_s"]
    out = {
        "build": native.MODE,
        "nodes": args.nodes,
        "writes": len(watched["cluster"].keyval_writers.history),
        "simulated_s": args.duration,
        "wall_s": round(wall, 2),
        "run_s": round(watched["run_s"], 2),
        "check_s": round(watched["check_s"], 2),
        "cpu_s": round(watched["cpu_s"], 2),
        "record_applications": watched["applied"],
        "applications_per_s": round(watched["applied"] / watched["run_s"]),
        "sim_to_wall": round(args.duration / wall, 2),
    }
    probe = next(iter(watched["cluster"].replication_probes.values()))
    out["probe_samples"] = probe.samples
    out["probe_rebuilds"] = probe.rebuilds
    for r in watched["reports"].values():
        s = r.summary()
        out["verdict"] = {k: s[k] for k in ("zone", "converged", "time_to_converge_ms", "max_divergent_keys",
                                            "lost_updates", "causes", "unexplained", "ok")}
    if not args.no_baseline:
        bare = run_once(sc, None)
        bare_wall = bare["build_s"] + bare["run_s"]
        out["unwatched_wall_s"] = round(bare_wall, 2)
        out["watcher_share"] = round(max(0.0, wall - bare_wall) / wall, 3)
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
