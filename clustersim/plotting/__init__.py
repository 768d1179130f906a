"""Every figure of a run, built in one place: report.html, the PNGs and the notebooks use it.

``run_data(cluster)`` (after a run) or ``load_run(DIR)`` (a run's output directory) gives a
:class:`RunData`; :func:`sections` turns it into renderer-neutral panels; :func:`figure` and
:func:`timeline` give plotly figures for a notebook, :func:`write_png` a matplotlib PNG, and
:mod:`clustersim.report_html` the whole report. Fault bands come with every figure.
"""

from __future__ import annotations

from clustersim.plotting.compare import compare_sections
from clustersim.plotting.data import DataError, RunData, Table, load_run, run_data
from clustersim.plotting.faults import FaultSpan, fault_spans
from clustersim.plotting.panels import (
    Panel,
    Section,
    Trace,
    png_traffic_panels,
    run_sections,
    zone_sync_section,
)
from clustersim.plotting.web import left_margin, section_figure, timeline_figure, to_plotly

__all__ = [
    "DataError", "FaultSpan", "Panel", "RunData", "Section", "Table", "Trace", "bars", "compare_sections", "curves",
    "fault_spans",
    "figure", "load_run", "png_traffic_panels", "run_data", "run_sections", "section_figure", "sections", "spans",
    "left_margin", "scatter", "timeline", "timeline_figure", "to_plotly", "write_png", "zone_sync_section",
]


def spans(run: RunData) -> list[FaultSpan]:
    """The run's faults as bands (start, heal, label)."""
    return fault_spans(run.fault_log, run.scheduled, run.duration_s)


def sections(run: RunData) -> dict[str, Section]:
    """Every time-series figure of the run by key: ``requests``, ``status``, ``latency``,
    ``connections``, ``upstream-NODE-KIND-NAME``, ``cache-NODE-NAME``, ``zone-sync``."""
    return {s.key: s for s in run_sections(run)}


def figure(run: RunData | list[RunData], key: str | Section = "requests", *, spans_from: RunData | None = None,
           only: list[str] | None = None):
    """A plotly Figure of one section (by key, or a :class:`Section` you built), with the
    run's fault bands. A list of runs gives the comparison figure (``key`` is then ignored;
    ``only`` keeps the panels with those titles, e.g. ``["5xx responses"]``)."""
    if isinstance(run, list):
        section = compare_sections(run)[0]
        if only is not None:
            section.panels = [p for p in section.panels if p.title in only]
        bands, seen = [], set()
        for r in run:  # the same fault in several runs is one band
            for s in spans(r):
                if (s.start_s, s.end_s, s.label) not in seen:
                    seen.add((s.start_s, s.end_s, s.label))
                    bands.append(s)
        end = max(r.duration_s for r in run)
    else:
        section = key if isinstance(key, Section) else sections(run)[key]
        bands = spans(spans_from or run)
        end = run.duration_s
    return to_plotly(section_figure(section, bands, end, left=left_margin(_labels(section))))


def _labels(section: Section) -> list[str]:
    return [lab for p in section.panels if p.strip is not None for lab in p.strip.labels]


def timeline(run: RunData):
    """The plotly fault timeline of a run: one labelled lane per fault."""
    return to_plotly(timeline_figure(spans(run), run.duration_s))


def write_png(run: RunData, panels: list[Panel], path, title: str):
    from clustersim.plotting import png

    return png.draw(panels, spans(run), run.duration_s, path, title)


def curves(lines: dict, *, xlabel: str, ylabel: str, title: str = "", log_x: bool = False, run: RunData | None = None,
           mode: str = "line"):
    """A plotly Figure of named (x, y) series: a sweep's result, or a series of your own over
    simulated time (pass ``run`` to draw its fault bands behind it)."""
    import numpy as np

    from clustersim.plotting.panels import PALETTE

    panel = Panel(title, ylabel, height=260)
    for i, (name, (x, y)) in enumerate(lines.items()):
        panel.traces.append(Trace(name, np.asarray(x, dtype=float), np.asarray(y, dtype=float), mode=mode,
                                  colour=PALETTE[i % len(PALETTE)]))
    xs = [v for x, _y in lines.values() for v in x]
    end = run.duration_s if run is not None else (max(xs) if xs else 1.0)
    fig = section_figure(Section("curves", title, [panel]), spans(run) if run is not None else [], end)
    fig["layout"]["xaxis"]["title"] = {"text": xlabel}
    if run is None:
        fig["layout"]["xaxis"].pop("range", None)
        fig["layout"]["xaxis"]["type"] = "log" if log_x else "linear"
    fig["layout"]["hovermode"] = "closest"
    return to_plotly(fig)


def bars(categories: list[str], groups: dict[str, list[float]], *, xlabel: str, ylabel: str, title: str = ""):
    """A plotly Figure of grouped bars (one group per name, one bar per category)."""
    from clustersim.plotting.panels import PALETTE

    data = [{"type": "bar", "name": name, "x": list(categories), "y": list(values),
             "marker": {"color": PALETTE[i % len(PALETTE)]}} for i, (name, values) in enumerate(groups.items())]
    layout = {"barmode": "group", "height": 320, "title": {"text": title}, "margin": {"l": 70, "r": 20, "t": 40, "b": 50},
              "xaxis": {"title": {"text": xlabel}, "type": "category"}, "yaxis": {"title": {"text": ylabel}}}
    return to_plotly({"data": data, "layout": layout})


def scatter(groups: dict, *, xlabel: str, ylabel: str, title: str = "", lines: dict[str, float] | None = None):
    """A plotly Figure of named point sets, one colour each: ``{name: (x, y)}``, or
    ``{name: (x, y, texts)}`` with one hover text per point (which run or schedule it is).
    ``lines`` draws labelled horizontal reference lines (``{label: y}``), dashed."""
    from clustersim.plotting.panels import PALETTE

    data = []
    for i, (name, points) in enumerate(groups.items()):
        x, y, *texts = points
        trace = {"type": "scatter", "mode": "markers", "name": name, "x": [float(v) for v in x],
                 "y": [float(v) for v in y],
                 "marker": {"color": PALETTE[i % len(PALETTE)], "size": 8, "line": {"color": "#ffffff", "width": 1}}}
        if texts:
            trace["text"] = [str(t) for t in texts[0]]
            trace["hovertemplate"] = "%{text}<br>%{x:g}, %{y:g}<extra>" + name + "</extra>"
        data.append(trace)
    shapes, notes = [], []
    for label, y in (lines or {}).items():
        shapes.append({"type": "line", "xref": "paper", "x0": 0, "x1": 1, "yref": "y", "y0": y, "y1": y,
                       "line": {"color": "#7f7f7f", "width": 1, "dash": "dash"}})
        notes.append({"text": label, "xref": "paper", "x": 1, "xanchor": "right", "yref": "y", "y": y,
                      "yanchor": "bottom", "showarrow": False, "font": {"size": 11, "color": "#555"}})
    layout = {"height": 340, "title": {"text": title}, "margin": {"l": 70, "r": 20, "t": 40, "b": 50},
              "hovermode": "closest", "shapes": shapes, "annotations": notes, "plot_bgcolor": "#ffffff",
              "xaxis": {"title": {"text": xlabel}, "gridcolor": "#eee", "zeroline": False},
              "yaxis": {"title": {"text": ylabel}, "gridcolor": "#eee", "zeroline": False}}
    return to_plotly({"data": data, "layout": layout})
