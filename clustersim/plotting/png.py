"""PNG figures (matplotlib) of the same panels and fault bands, for people who paste pictures."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from clustersim.plotting.faults import FaultSpan
from clustersim.plotting.panels import Panel
from clustersim.plotting.web import action_colour

_MPL_DASH = {"solid": "-", "dash": "--", "dot": ":", "dashdot": "-.", "longdash": (0, (8, 3))}


def _bands(ax, spans: list[FaultSpan], end_s: float, labels: bool) -> None:
    for s in spans:
        colour = action_colour(s.action)
        if s.is_instant:
            ax.axvline(s.start_s, color=colour, linestyle=":", linewidth=1.2)
        else:
            ax.axvspan(s.start_s, s.end_s if s.end_s is not None else end_s, color=colour, alpha=0.12, linewidth=0)
        if labels:
            ax.annotate(s.label, (s.start_s, 1.0), xycoords=("data", "axes fraction"), xytext=(3, -3),
                        textcoords="offset points", va="top", ha="left", fontsize=7, color=colour)


def draw(panels: list[Panel], spans: list[FaultSpan], end_s: float, path: Path, title: str) -> Path:
    """Write the panels stacked on one time axis, the fault bands on each (labelled on the top one)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(panels), 1, figsize=(9, 1.9 * len(panels) + 0.8), sharex=True, squeeze=False)
    axes = axes[:, 0]
    for i, (ax, panel) in enumerate(zip(axes, panels, strict=True)):
        stacks = None
        for tr in panel.traces:
            x, y = np.asarray(tr.x, dtype=float), np.asarray(tr.y, dtype=float)
            ls = _MPL_DASH.get(tr.dash, "-")
            if tr.mode == "step":
                ax.step(x, y, where="post", color=tr.colour, linestyle=ls, label=tr.name, linewidth=tr.width)
            elif tr.mode == "area":
                base = np.zeros(len(y)) if stacks is None else stacks
                top = base + np.nan_to_num(y)
                ax.fill_between(x, base, top, color=tr.colour, alpha=0.8, label=tr.name, linewidth=0)
                stacks = top
            elif tr.mode == "markers":
                ax.scatter(x, y, color=tr.colour, s=12, label=tr.name)
            else:
                ax.plot(x, y, color=tr.colour, linestyle=ls, label=tr.name, linewidth=tr.width)
        _bands(ax, spans, end_s, labels=i == 0)
        ax.set_ylabel(panel.ylabel, fontsize=9)
        if panel.log_y and any(np.nanmax(np.asarray(t.y, dtype=float), initial=0) > 0 for t in panel.traces):
            ax.set_yscale("log")
        if panel.yrange:
            ax.set_ylim(*panel.yrange)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="upper right", fontsize="x-small", ncol=2)
    axes[-1].set_xlabel("simulated time (s)")
    axes[-1].set_xlim(0, end_s)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
