"""Faults: things that go wrong on purpose, applied to a running cluster.

Each fault is a model operation (a backend goes down, slow or erroring; a link is cut or
slowed; the node mesh is partitioned; a node crashes or restarts, a worker dies, a node
reloads, a clock drifts). :func:`apply_fault` performs one from a scenario's timeline entry
(or its healing when ``heal`` is true); the live control endpoint calls the same operations.
Each returns a short note for the run's fault log.
"""

from __future__ import annotations


def apply_fault(cluster, f, heal: bool) -> str:
    a = f.action
    net = cluster.network
    if a.startswith("backend_"):
        backend = cluster.backend(f.target)
        if heal or a == "backend_up":
            backend.set_state("up")
            return f"backend {f.target} up"
        state = a.removeprefix("backend_")
        backend.set_state(state, factor=f.factor, error_rate=f.rate)
        return f"backend {f.target} {state}"
    if a == "partition":
        if heal:
            net.heal(f.nodes, f.other)
            return f"healed {f.nodes} | {f.other}"
        net.partition(f.nodes, f.other)
        return f"partitioned {f.nodes} | {f.other}"
    if a == "heal":
        if f.nodes and f.other:
            net.heal(f.nodes, f.other)
        else:
            net.heal()
        return "mesh healed"
    if a in ("cut_link", "restore_link", "slow_link"):
        x, y = f.target.split("|", 1)
        if a == "slow_link":
            net.slow(x, y, 0.0 if heal else f.latency)
            return f"link {x}|{y} extra latency {0.0 if heal else f.latency} ms"
        cut = a == "cut_link" and not heal
        net.cut(x, y, cut)
        return f"link {x}|{y} {'cut' if cut else 'restored'}"
    node = cluster.nodes[f.target]
    if a == "crash_node":
        if heal:
            node.restart()
            return f"{node.name} restarted"
        node.crash()
        return f"{node.name} crashed"
    if a == "restart_node":
        node.restart()
        return f"{node.name} restarted"
    if a == "crash_worker":
        node.crash_worker(0)
        return f"{node.name} worker respawned"
    if a == "reload":
        node.reload()
        return f"{node.name} reloaded (generation {node.generation})"
    if a == "clock_offset":
        node.clock.offset_ms = 0.0 if heal else float(f.offset or 0.0)
        return f"{node.name} clock offset {node.clock.offset_ms} ms"
    raise ValueError(f"unknown fault action {a!r}")
