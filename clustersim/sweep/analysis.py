"""Replications -> means with 95% confidence intervals, capacity curves and the knee.

A point's mean of a metric is over its successful replications; its 95% interval is Student's
t (two-sided) times the standard error. The knee of a curve (the other factors held at one
combination of levels) is the highest load before the objective first fails, judged on the
means: a load that fails makes every higher load fail too, so noise past the crossing never
adds capacity back. A curve whose lowest load already fails has no knee.
"""

from __future__ import annotations

import math
from pathlib import Path

#: Two-sided 95% quantiles of Student's t for 1..30 degrees of freedom (beyond: 1.96).
_T95 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
        2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
        2.045, 2.042)


def t95(df: int) -> float:
    return _T95[df - 1] if 1 <= df <= len(_T95) else 1.96


def mean_ci(values: list[float]) -> tuple[float | None, float | None, int]:
    """(mean, 95% half-width, n) of the numbers; the half-width is None below two values."""
    xs = [float(v) for v in values if isinstance(v, int | float) and not isinstance(v, bool) and not math.isnan(v)]
    n = len(xs)
    if not n:
        return None, None, 0
    m = sum(xs) / n
    if n < 2:
        return m, None, n
    var = sum((x - m) ** 2 for x in xs) / (n - 1)
    return m, t95(n - 1) * math.sqrt(var / n), n


def aggregate(sweep, rows: list[dict]) -> list[dict]:
    """One record per design point: its levels, runs, failures, and mean/ci/n of every metric."""
    by_point: dict[int, list[dict]] = {}
    for r in rows:
        by_point.setdefault(r["point"], []).append(r)
    out = []
    for p in sorted(by_point):
        rs = by_point[p]
        ok = [r for r in rs if r["status"] == "ok"]
        rec = {"point": p, **{f.name: rs[0][f.name] for f in sweep.factors}, "runs": len(rs), "failed": len(rs) - len(ok)}
        for m in sweep.metrics:
            mean, ci, n = mean_ci([r.get(m.name) for r in ok])
            rec[f"{m.name}_mean"] = mean
            rec[f"{m.name}_ci95"] = ci
            rec[f"{m.name}_n"] = n
        out.append(rec)
    return out


def meets(sweep, rec: dict) -> bool:
    return all(c.holds(rec.get(f"{c.metric}_mean")) for c in sweep.objective)


def _sort_key(v):
    return (0, v, "") if isinstance(v, int | float) else (1, 0, str(v))


def curves(sweep, points: list[dict]) -> dict[tuple, list[dict]]:
    """Points grouped by the levels of every factor but the load, each group sorted by load."""
    others = [f.name for f in sweep.factors if f.name != sweep.load]
    groups: dict[tuple, list[dict]] = {}
    for rec in points:
        groups.setdefault(tuple(rec[n] for n in others), []).append(rec)
    return {k: sorted(v, key=lambda r: _sort_key(r[sweep.load])) for k, v in
            sorted(groups.items(), key=lambda kv: tuple(_sort_key(x) for x in kv[0]))}


def knees(sweep, points: list[dict]) -> list[dict]:
    """Per curve: the knee load (or None), the first load that fails, and the means at the knee."""
    if sweep.load is None or not sweep.objective:
        return []
    others = [f.name for f in sweep.factors if f.name != sweep.load]
    out = []
    for key, recs in curves(sweep, points).items():
        knee = first_fail = None
        for rec in recs:
            if rec["runs"] == rec["failed"] or not meets(sweep, rec):
                first_fail = rec[sweep.load]
                break
            knee = rec
        row = dict(zip(others, key, strict=True))
        row["knee"] = None if knee is None else knee[sweep.load]
        row["first_failing"] = first_fail
        for c in sweep.objective:
            row[f"{c.metric}_at_knee"] = None if knee is None else knee[f"{c.metric}_mean"]
        out.append(row)
    return out


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def knee_table(sweep, table: list[dict]) -> str:
    if not table:
        return ""
    cols = list(table[0])
    widths = {c: max(len(c), *(len(_fmt(r[c])) for r in table)) for c in cols}
    head = "  ".join(c.rjust(widths[c]) for c in cols)
    lines = [f"knee: highest {sweep.load} with {sweep.objective_text}", head, "-" * len(head)]
    lines += ["  ".join(_fmt(r[c]).rjust(widths[c]) for c in cols) for r in table]
    return "\n".join(lines)


def plot_curves(sweep, points: list[dict], table: list[dict], out: Path) -> list[Path]:
    """One PNG per plotted metric: mean vs load, one line per combination of the other factors,
    a 95% band over replications, the objective's threshold and each curve's knee."""
    if sweep.load is None or not points:
        return []
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    others = [f.name for f in sweep.factors if f.name != sweep.load]
    groups = curves(sweep, points)
    knee_by = {tuple(r[n] for n in others): r["knee"] for r in table}
    written = []
    for metric in sweep.plot:
        fig, ax = plt.subplots(figsize=(8, 5))
        for key, recs in groups.items():
            xs = [r[sweep.load] for r in recs if r[f"{metric}_mean"] is not None]
            ys = [r[f"{metric}_mean"] for r in recs if r[f"{metric}_mean"] is not None]
            if not xs:
                continue
            cis = [r[f"{metric}_ci95"] or 0.0 for r in recs if r[f"{metric}_mean"] is not None]
            label = ", ".join(f"{n}={v}" for n, v in zip(others, key, strict=True)) or metric
            (line,) = ax.plot(xs, ys, marker="o", markersize=3, label=label)
            ax.fill_between(xs, [y - c for y, c in zip(ys, cis, strict=True)],
                            [y + c for y, c in zip(ys, cis, strict=True)], color=line.get_color(), alpha=0.18)
            knee = knee_by.get(key)
            if knee is not None:
                ax.axvline(knee, color=line.get_color(), linestyle=":", linewidth=1)
        for c in sweep.objective:
            if c.metric == metric:
                ax.axhline(c.value, color="black", linestyle="--", linewidth=1, label=str(c))
        ax.set_xlabel(sweep.load)
        ax.set_ylabel(metric)
        if metric.endswith("_ms") or metric == "error_ratio":
            positive = [r[f"{metric}_mean"] for r in points if (r[f"{metric}_mean"] or 0) > 0]
            if positive and max(positive) / min(positive) > 50:
                ax.set_yscale("log")
        ax.set_title(f"{sweep.name}: {metric} vs {sweep.load} (mean, 95% band over {sweep.replications} replications)",
                     fontsize="medium")
        ax.legend(fontsize="small")
        ax.grid(alpha=0.3)
        fig.tight_layout()
        p = out / f"capacity_{metric}.png"
        fig.savefig(p, dpi=90)
        plt.close(fig)
        written.append(p)
    return written
