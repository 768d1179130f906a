"""Running chaos schedules: one run per schedule, the checker's verdict as one row.

:func:`run_schedule` is the top-level, picklable function the sweep engine calls in its worker
processes. It builds the scenario's cluster, plays one :class:`clustersim.chaos.nemesis.Step`
list on it (each step logged in the cluster's fault log, its heal too), runs to the scenario's
end and returns a plain row. The row holds the schedule, converged or not, lost updates by
cause, the divergence peak, the time to converge after the last heal, and ``unexplained``.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from simpy.events import Timeout

from clustersim.chaos.nemesis import Step
from sim.checks.replication import report_for_cluster
from sim.cluster import scenario as scenario_mod
from sim.cluster.cluster import Cluster


def _wipe_state(node) -> None:
    """The node's ``state=`` files are lost (a rebuilt disk): nothing to read at restart."""
    for zones in (node.keyvals, node.stream_keyvals):
        for z in zones.values():
            z._saved = None
            path = z.state_path
            if path is not None and path.exists():
                path.unlink()


def _apply(cluster, step: Step, heal: bool) -> str:
    net = cluster.network
    kind = step.kind
    if kind == "partition":
        other = [n for n in cluster.nodes if n not in step.nodes]
        (net.heal if heal else net.partition)(list(step.nodes), other)
        return f"{'healed' if heal else 'partitioned'} {list(step.nodes)} | {other}"
    if kind == "cut_link":
        net.cut(step.nodes[0], step.nodes[1], not heal)
        return f"link {'|'.join(step.nodes)} {'restored' if heal else 'cut'}"
    if kind == "slow_link":
        net.slow(step.nodes[0], step.nodes[1], 0.0 if heal else step.offset_ms)
        return f"link {'|'.join(step.nodes)} extra latency {0.0 if heal else step.offset_ms} ms"
    node = cluster.nodes[step.nodes[0]]
    if kind in ("crash", "crash_wipe"):
        if heal:
            node.restart()
            return f"{node.name} restarted"
        node.crash()
        if kind == "crash_wipe":
            _wipe_state(node)
        return f"{node.name} crashed{' and lost its state files' if kind == 'crash_wipe' else ''}"
    if kind == "clock_offset":
        node.clock.offset_ms = 0.0 if heal else step.offset_ms
        return f"{node.name} clock offset {node.clock.offset_ms} ms"
    if kind == "reload":
        node.reload()
        return f"{node.name} reloaded"
    raise ValueError(f"unknown step kind {kind!r}")


#: fault-log action names, chosen so that sim.checks.replication.HEAL_ACTIONS sees the heals
_LOG = {"partition": "partition", "cut_link": "cut_link", "slow_link": "slow_link", "crash": "crash_node",
        "crash_wipe": "crash_node", "clock_offset": "clock_offset", "reload": "reload"}


def play(cluster, steps: list[Step]) -> None:
    """Schedule every step (and its heal) on the cluster's timeline."""
    for step in steps:
        def start(_ev, s=step):
            cluster.fault_log.append((cluster.env.now, _LOG[s.kind], _apply(cluster, s, heal=False)))

        Timeout(cluster.env, max(0.0, step.at_ms - cluster.env.now)).callbacks.append(start)
        if step.kind != "reload":
            def heal(_ev, s=step):
                cluster.fault_log.append((cluster.env.now, _LOG[s.kind] + ":healed", _apply(cluster, s, heal=True)))

            Timeout(cluster.env, max(0.0, step.at_ms + step.duration_ms - cluster.env.now)).callbacks.append(heal)


def run_schedule(payload: dict) -> dict:
    """One schedule: ``{"scenario", "seed", "index", "steps", "probe_ms"}`` -> a row."""
    sc = scenario_mod.load(payload["scenario"], seed=payload.get("seed"))
    steps = [Step.from_dict(d) for d in payload["steps"]]
    with tempfile.TemporaryDirectory(prefix="clustersim-chaos-") as tmp:
        cluster = Cluster(sc, sample=False, state_dir=Path(tmp), probe_interval_ms=payload.get("probe_ms", 100.0))
        play(cluster, steps)
        cluster.run()
        if cluster.keyval_writers is None or not cluster.replication_probes:
            raise ValueError(f"{payload['scenario']}: a chaos scenario needs keyval_writers (nothing to check)")
        (zone, side), probe = next(iter(cluster.replication_probes.items()))
        report = report_for_cluster(cluster, cluster.keyval_writers.history, zone, side, probe)
    last_heal = max((s.at_ms + s.duration_ms for s in steps), default=0.0)
    return {
        "index": payload["index"],
        "schedule": [s.describe() for s in steps],
        "steps": payload["steps"],
        "partition_ms": sum(s.duration_ms for s in steps if s.kind == "partition"),
        "max_clock_offset_ms": max((abs(s.offset_ms) for s in steps if s.kind == "clock_offset"), default=0.0),
        "writes": report.writes,
        "converged": report.converged,
        "lost_updates": len(report.lost_updates),
        "causes": report.causes(),
        "divergent_keys": len(report.divergent_keys),
        "max_divergent_keys": report.max_divergent_keys,
        "last_heal_ms": last_heal,
        "reference_ms": report.reference_ms,  # the later of the last write and the last heal
        "converged_at_ms": report.converged_at_ms,
        "time_to_converge_ms": report.time_to_converge_ms,
        "unexplained": report.unexplained,
    }


__all__ = ["play", "run_schedule"]
