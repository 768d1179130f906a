"""Writing scraped series as Prometheus text exposition and as OpenMetrics.

Both files hold every series of a run, each family once (``# HELP``, ``# TYPE``), each series'
samples in time order with their timestamps:

* :func:`write_prometheus` -- the text format (version 0.0.4) the exporter serves, with a
  millisecond timestamp after each value: ``name{labels} value 1700000000000``. Metric names
  are exactly the exporter's.
* :func:`write_openmetrics` -- OpenMetrics 1.0 text, as ``promtool tsdb create-blocks-from
  openmetrics FILE DIR`` takes it: timestamps in seconds, ``# EOF`` at the end. OpenMetrics
  names a counter's samples ``<family>_total``; the exporter's counters whose names end in
  ``_total`` (``nginxplus_http_requests_total``) are written as counters, the others as
  ``unknown``, so that every series keeps the name a Prometheus scraping the real exporter
  would store (``rate()`` works on either; docs/decisions.md).
"""

from __future__ import annotations

from typing import TextIO

from clustersim.monitoring.exporter import COUNTER, FAMILIES

Series = dict[tuple[str, tuple[tuple[str, str], ...]], list[tuple[int, float]]]


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _labels(labels) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{_escape_label(v)}"' for k, v in labels) + "}"


def _value(v: float) -> str:
    if v == int(v) and abs(v) < 2**53:
        return str(int(v))
    return repr(float(v))


def _by_family(series: Series) -> dict[str, list]:
    """Series grouped by family, families in the exporter's order."""
    grouped: dict[str, list] = {name: [] for name in FAMILIES}
    for (name, labels), points in series.items():
        grouped[name].append((labels, points))
    return {name: items for name, items in grouped.items() if items}


def write_prometheus(series: Series, f: TextIO) -> None:
    for name, items in _by_family(series).items():
        kind, help_text = FAMILIES[name]
        f.write(f"# HELP {name} {_escape_help(help_text)}\n# TYPE {name} {kind}\n")
        for labels, points in items:
            head = name + _labels(labels)
            for t_ms, v in points:
                f.write(f"{head} {_value(v)} {t_ms}\n")


def openmetrics_family(name: str, kind: str) -> tuple[str, str]:
    """(family name, OpenMetrics type) for one of the exporter's families."""
    if kind == COUNTER:
        if name.endswith("_total"):
            return name[: -len("_total")], "counter"
        return name, "unknown"
    return name, kind


def write_openmetrics(series: Series, f: TextIO) -> None:
    for name, items in _by_family(series).items():
        kind, help_text = FAMILIES[name]
        family, om_type = openmetrics_family(name, kind)
        f.write(f"# TYPE {family} {om_type}\n# HELP {family} {_escape_help(help_text)}\n")
        for labels, points in items:
            head = name + _labels(labels)
            for t_ms, v in points:
                f.write(f"{head} {_value(v)} {t_ms // 1000}.{t_ms % 1000:03d}\n")
    f.write("# EOF\n")
