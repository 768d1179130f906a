"""Time and size units: the one place that converts.

Simulated time (``env.now``) is a float number of **milliseconds** since the start of the run.
nginx writes durations as ``"10s"``, ``"500ms"``, ``"1h 30m"`` or a bare number of seconds, and
sizes as ``"64k"`` or ``"10m"``; the API writes instants as ISO 8601 strings with millisecond
resolution in UTC. Every conversion between those forms lives here.
"""

from __future__ import annotations

import datetime as _dt
import re

#: The wall-clock instant that simulated time 0 stands for (unless a scenario says otherwise).
#: A fixed epoch keeps timestamps in summaries identical from run to run.
DEFAULT_EPOCH_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z

_UNIT_MS = {
    "ms": 1,
    "s": 1000,
    "m": 60_000,
    "h": 3_600_000,
    "d": 86_400_000,
    "w": 604_800_000,
    "M": 2_592_000_000,  # nginx: a month is 30 days
    "y": 31_536_000_000,  # nginx: a year is 365 days
}
_DURATION_PART = re.compile(r"(\d+)(ms|s|m|h|d|w|M|y)?")

_SIZE_UNIT = {"": 1, "k": 1024, "K": 1024, "m": 1024**2, "M": 1024**2, "g": 1024**3, "G": 1024**3}
_SIZE = re.compile(r"(\d+)([kKmMgG]?)")


class UnitError(ValueError):
    """A duration or size that nginx would not accept."""


def parse_duration(text: str | int | float, default_unit: str = "s") -> int:
    """Parse an nginx time value into milliseconds.

    ``"10s"`` -> 10000, ``"500ms"`` -> 500, ``"1m30s"`` or ``"1m 30s"`` -> 90000, and a bare
    number is taken in ``default_unit`` (seconds for most directives, as nginx does). Each unit
    may appear once, largest first, as nginx's parser requires.
    """
    if isinstance(text, bool):
        raise UnitError(f"invalid time value {text!r}")
    if isinstance(text, int | float):
        if text < 0:
            raise UnitError(f"invalid time value {text!r}")
        return int(text * _UNIT_MS[default_unit])
    s = text.strip().replace(" ", "")
    if not s:
        raise UnitError("empty time value")
    pos = 0
    total = 0
    last_rank = None
    order = list(_UNIT_MS)
    while pos < len(s):
        m = _DURATION_PART.match(s, pos)
        if not m or m.end() == pos:
            raise UnitError(f'invalid time value "{text}"')
        number, unit = int(m.group(1)), m.group(2)
        if unit is None:
            if m.end() != len(s) or pos != 0:
                raise UnitError(f'invalid time value "{text}"')
            unit = default_unit
        rank = order.index(unit)
        if last_rank is not None and rank >= last_rank:
            raise UnitError(f'invalid time value "{text}"')
        last_rank = rank
        total += number * _UNIT_MS[unit]
        pos = m.end()
    if total > 2**53:
        raise UnitError(f'time value "{text}" is too large')
    return total


def format_seconds(ms: int | float) -> str:
    """Render a duration the way the API echoes server times: whole seconds with ``s``.

    nginx keeps ``fail_timeout`` and ``slow_start`` in seconds, so ``"500ms"`` is stored as 0s
    and ``"1m"`` is echoed as ``"60s"``.
    """
    return f"{int(ms) // 1000}s"


def parse_size(text: str | int) -> int:
    """Parse an nginx size (``"64k"``, ``"10m"``, ``"1g"``, ``"4096"``) into bytes."""
    if isinstance(text, bool):
        raise UnitError(f"invalid size {text!r}")
    if isinstance(text, int):
        if text < 0:
            raise UnitError(f"invalid size {text!r}")
        return text
    m = _SIZE.fullmatch(text.strip())
    if not m:
        raise UnitError(f'invalid size "{text}"')
    return int(m.group(1)) * _SIZE_UNIT[m.group(2)]


def iso_ms(epoch_ms: float) -> str:
    """An instant (ms since the Unix epoch) as ISO 8601 with millisecond resolution, UTC."""
    ms = int(epoch_ms)
    t = _dt.datetime.fromtimestamp(ms // 1000, tz=_dt.UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S") + f".{ms % 1000:03d}Z"


def iso_s(epoch_ms: float) -> str:
    """An instant at second resolution (the API's ``selected`` field is written this way)."""
    t = _dt.datetime.fromtimestamp(int(epoch_ms) // 1000, tz=_dt.UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


class NodeClock:
    """A node's view of wall-clock time: the run's epoch plus sim time plus the node's offset.

    zone_sync resolves conflicts by the origin node's clock, so each node may be skewed on
    purpose (``offset_ms``) to study what skew does to last-write-wins.
    """

    __slots__ = ("env", "epoch_ms", "offset_ms")

    def __init__(self, env, epoch_ms: int = DEFAULT_EPOCH_MS, offset_ms: float = 0.0):
        self.env = env
        self.epoch_ms = epoch_ms
        self.offset_ms = offset_ms

    def now_ms(self) -> float:
        """Milliseconds since the Unix epoch as this node believes."""
        return self.epoch_ms + self.env.now + self.offset_ms

    def iso(self) -> str:
        return iso_ms(self.now_ms())

    def iso_at(self, sim_ms: float) -> str:
        """ISO timestamp of a past sim instant, as this node's clock showed it."""
        return iso_ms(self.epoch_ms + sim_ms + self.offset_ms)
