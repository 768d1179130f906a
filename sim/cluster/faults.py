"""Faults: things that go wrong on purpose, applied to a running cluster.

Each fault is a model operation (a backend goes down, slow or erroring; a link is cut or
slowed; the node mesh is partitioned; a node crashes or restarts, a worker dies, a node
reloads, a clock drifts). :func:`apply_fault` performs one from a scenario's timeline entry
(or its healing when ``heal`` is true); the live control endpoint calls the same operations.
Each returns a short note for the run's fault log.

Three steps change the configuration or the world rather than break something:

* ``reload`` reloads its target nodes (one, a list, or ``all``), with the scenario's
  ``nginx_conf`` of the step if it names one, one node after another ``stagger`` apart (a
  rolling reload; each node's reload is its own fault-log entry). With ``duration`` the nodes
  are reloaded back to their own configuration afterwards. What survives a reload is
  :mod:`sim.node.cycle`'s business (docs/reload.md).
* ``dns`` changes what the name server answers for a host from now on: every node's resolver
  gives the new answer once its cached one expires, so ``server ... resolve`` peers follow.
* ``api`` is one request a user would send to a node's NGINX Plus API. The model does not
  speak HTTP: the driver sets ``cluster.api_hook`` (``api.inprocess.attach``), a callable
  ``(node_name, method, path, body) -> (status, body_bytes)`` that runs the request through the
  node's real API application. Without one the step fails with :class:`ApiHookMissing`.
"""

from __future__ import annotations

import json

from simpy.events import Timeout

NODE_STEPS = ("crash_node", "restart_node", "crash_worker", "reload", "clock_offset")
#: Fields only some timeline steps take, and the steps that take them.
STEP_FIELDS = {
    "nginx_conf": ("reload",),
    "stagger": ("reload",),
    "addresses": ("dns",),
    "node": ("api",),
    "method": ("api",),
    "path": ("api",),
    "body": ("api",),
}


class ApiHookMissing(RuntimeError):
    """An ``api`` step came due, but the driver gave the cluster no way to reach its API."""


def check_api_hook(cluster) -> None:
    """Refuse to run a scenario with ``api`` steps when nothing can answer them."""
    if getattr(cluster, "api_hook", None) is not None:
        return
    steps = [f for f in cluster.scenario.model.faults if f.action == "api"]
    if steps:
        f = steps[0]
        raise ApiHookMissing(
            f"scenario {cluster.scenario.name}: {len(steps)} api step(s) (the first at {f.at / 1000:g}s: "
            f"{f.method} {f.path} on {f.node}) need the cluster's API; set cluster.api_hook "
            "(api.inprocess.attach(cluster)) before running"
        )


def step_targets(f, node_names) -> list[str]:
    """The nodes a node step applies to, in order (``all``: every node, in scenario order)."""
    if f.target == "all":
        return list(node_names)
    if isinstance(f.target, list):
        return list(f.target)
    return [] if f.target is None else [f.target]


def step_problem(f, node_names) -> tuple[str | None, str] | None:
    """What is wrong with a reload, dns or api step (or a field given to the wrong step), as
    ``(field or None, reason)``; None when nothing is. Other actions are checked by the caller."""
    for name, actions in STEP_FIELDS.items():
        if f.action not in actions and name in f.model_fields_set:
            return name, f"only for {' and '.join(actions)} steps, not {f.action}"
    if isinstance(f.target, list) and f.action != "reload":
        return "target", "a list of nodes is only for reload"
    if f.target == "all" and f.action in NODE_STEPS and f.action != "reload":
        return "target", '"all" is only for reload'
    if f.action == "reload":
        names = step_targets(f, node_names)
        if not names:
            return "target", 'expected a node name, a list of them, or "all"'
        unknown = [n for n in names if n not in node_names]
        if unknown:
            return "target", f"unknown node {unknown[0]!r}"
        if len(set(names)) != len(names):
            return "target", "a node is named twice"
        if f.duration is not None and f.nginx_conf is None:
            return "duration", "only a reload with nginx_conf heals (back to the node's own configuration)"
    elif f.action == "dns":
        if not f.target or f.addresses is None:
            return None, "a dns step needs target (a host name) and addresses"
        if f.duration is not None:
            return "duration", "a dns change does not heal; add another dns step"
    elif f.action == "api":
        if f.node not in node_names:
            return "node", f"expected a node name, got {f.node!r}"
        if f.method is None or not f.path:
            return None, "an api step needs method and path"
        if not f.path.startswith("/"):
            return "path", "must start with '/' (for example /api/9/http/server_zones/www)"
        if f.target is not None:
            return "target", "an api step names its node with node:"
        if f.duration is not None:
            return "duration", "an api step does not heal; add another api step"
    return None


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
    if a == "reload":
        return _reload(cluster, f, heal)
    if a == "dns":
        return _dns(cluster, f)
    if a == "api":
        return _api(cluster, f)
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
    if a == "clock_offset":
        node.clock.offset_ms = 0.0 if heal else float(f.offset or 0.0)
        return f"{node.name} clock offset {node.clock.offset_ms} ms"
    raise ValueError(f"unknown fault action {a!r}")


# --- configuration, DNS and API steps -----------------------------------------------------------


def _step_conf(cluster, f):
    """The nginx.conf a scenario's reload step names (parsed when the scenario was loaded)."""
    for i, g in enumerate(cluster.scenario.model.faults):
        if g is f:
            return cluster.scenario.fault_confs.get(i)
    return None


def _reload(cluster, f, heal: bool) -> str:
    names = step_targets(f, list(cluster.nodes))
    conf = None if heal else _step_conf(cluster, f)
    own = {spec.name: spec.conf for spec in cluster.scenario.nodes}
    action = "reload:healed" if heal else "reload"

    def one(name: str) -> str:
        node = cluster.nodes[name]
        if not node.up:
            return f"{name} is down: not reloaded"
        if heal:
            node.reload(own[name])
        else:
            node.reload(conf)
        via = " to its own nginx.conf" if heal else ("" if conf is None else f" with {f.nginx_conf}")
        return f"{name} reloaded{via} (generation {node.generation})"

    if not f.stagger:
        return "; ".join(one(n) for n in names)
    # a rolling reload: the first node now, each next one `stagger` later, each logged as it happens
    for k, name in enumerate(names[1:], start=1):
        ev = Timeout(cluster.env, k * f.stagger)
        ev.callbacks.append(lambda _ev, name=name: cluster.fault_log.append((cluster.env.now, action, one(name))))
    return one(names[0])


def _dns(cluster, f) -> str:
    answer = f.addresses
    cluster.hosts[f.target] = answer
    for node in cluster.nodes.values():
        for resolver in (node.http_resolver, node.stream_resolver):
            if resolver is not None:
                resolver.set_answer(f.target, answer)
    shown = answer if isinstance(answer, str) else ", ".join(answer) or "no records"
    return f"{f.target} now resolves to {shown}"


def _api(cluster, f) -> str:
    hook = getattr(cluster, "api_hook", None)
    if hook is None:
        raise ApiHookMissing(
            f"scenario {cluster.scenario.name}: the api step at {f.at / 1000:g}s ({f.method} {f.path} on {f.node}) "
            "needs the cluster's API: set cluster.api_hook (api.inprocess.attach(cluster)) before running"
        )
    status, body = hook(f.node, f.method, f.path, f.body)
    note = f"{f.node} {f.method} {f.path} -> {status}"
    if status >= 400:
        try:
            err = json.loads(body)["error"]
            note += f" {err['code']}: {err['text']}"
        except (ValueError, KeyError, TypeError):
            pass
    return note
