"""The fault timeline of a run as spans: when each fault began, when it healed, and its label.

The cluster's fault log holds ``(time, action, note)`` entries; a fault with a ``duration``
logs a second entry ``"<action>:healed"`` when it ends. A span pairs the two; a fault that was
still in force when the run ended reaches to the end (``open_end``); a fault without a
duration (a reload, a restart, an API call) is an instant. The label names the action and its
target, taken from the scenario's fault list where the log entry matches one (same action, at
the logged time or before it, for steps spread out by ``stagger``), else from the log's note,
so actions this module does not know (and faults injected live) are still labelled.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

HEALED = ":healed"


@dataclass
class FaultSpan:
    start_s: float
    end_s: float | None  # None: an instant
    action: str
    target: str
    note: str
    heal_note: str = ""
    open_end: bool = False  # still in force when the run ended
    index: int | None = None  # position in the scenario's fault list, when it came from there

    @property
    def label(self) -> str:
        return f"{self.action} {self.target}".strip()

    @property
    def is_instant(self) -> bool:
        return self.end_s is None


def target_of(f: dict) -> str:
    """What a scheduled fault acts on, in words: a backend, a node, a link, both sides of a partition."""
    action = f.get("action", "")
    target = f.get("target")
    if isinstance(target, list):
        target = ",".join(str(t) for t in target)
    if action in ("partition", "heal") and (f.get("nodes") or f.get("other")):
        return f"{','.join(f.get('nodes', []))} | {','.join(f.get('other', []))}"
    if action == "api":
        return " ".join(str(x) for x in (f.get("node"), f.get("method"), f.get("path")) if x)
    if action == "clock_offset" and "offset_s" in f:
        return f"{target} {f['offset_s']:+g}s"
    if action == "slow_link" and "latency_s" in f:
        return f"{target} +{f['latency_s'] * 1000:g}ms"
    return "" if target is None else str(target)


def _match(scheduled: list[dict], used: set[int], action: str, t: float) -> int | None:
    best = None
    for i, f in enumerate(scheduled):
        if f.get("action") != action:
            continue
        at = f.get("at_s")
        if not isinstance(at, int | float) or at > t + 1e-6:
            continue
        key = (at, i not in used)  # the latest one at or before t; unused before used
        if best is None or key > best[0]:
            best = (key, i)
    return None if best is None else best[1]


def fault_spans(fault_log, scheduled: list[dict], end_s: float) -> list[FaultSpan]:
    """Spans in the order the faults began."""
    spans: list[FaultSpan] = []
    waiting: dict[str, deque[FaultSpan]] = {}
    used: set[int] = set()
    for t, action, note in sorted(fault_log, key=lambda e: e[0]):
        if action.endswith(HEALED):
            base = action[: -len(HEALED)]
            queue = waiting.get(base)
            if queue:
                span = queue.popleft()
                span.end_s, span.heal_note, span.open_end = t, note, False
            else:  # a heal whose start we never saw: show it as an instant
                spans.append(FaultSpan(t, None, action, "", note))
            continue
        i = _match(scheduled, used, action, t)
        if i is not None:
            f = scheduled[i]
            used.add(i)
            span = FaultSpan(t, None, action, target_of(f) or note, note, index=i)
            if isinstance(f.get("duration_s"), int | float):
                span.end_s, span.open_end = max(end_s, t), True  # until its heal is logged
                waiting.setdefault(action, deque()).append(span)
        else:  # not from the scenario (injected live): a heal may still follow
            span = FaultSpan(t, None, action, note, note)
            waiting.setdefault(action, deque()).append(span)
        spans.append(span)
    return spans
