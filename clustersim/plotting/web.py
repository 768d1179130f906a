"""Plotly figures from panels: JSON-ready dicts for report.html, or plotly Figures for notebooks.

The figures are built as plain dicts in plotly's figure schema (no per-trace validation, so a
report of a long run stays fast) and encoded with orjson. Every panel of a section shares the
section's time axis; the fault spans become shaded bands (or dotted lines for instants) behind
every panel, and the timeline figure draws them labelled, one lane per fault.
"""

from __future__ import annotations

import numpy as np

from clustersim.plotting import series as S
from clustersim.plotting.faults import FaultSpan
from clustersim.plotting.panels import Panel, Section

#: Band colours by action; actions not listed here get the default.
ACTION_COLOURS = {
    "backend_down": "#d62728", "backend_slow": "#ff7f0e", "backend_erroring": "#e377c2", "backend_up": "#2ca02c",
    "partition": "#9467bd", "heal": "#2ca02c", "cut_link": "#8c564b", "restore_link": "#2ca02c",
    "slow_link": "#bcbd22", "crash_node": "#000000", "restart_node": "#2ca02c", "crash_worker": "#7f7f7f",
    "reload": "#1f77b4", "clock_offset": "#17becf", "dns": "#aec7e8", "api": "#98df8a",
}
DEFAULT_ACTION_COLOUR = "#555555"
_DASH = {"solid": "solid", "dash": "dash", "dot": "dot", "dashdot": "dashdot", "longdash": "longdash"}
GAP = 34  # pixels between panels (room for a panel's title)


def action_colour(action: str) -> str:
    return ACTION_COLOURS.get(action.removesuffix(":healed"), DEFAULT_ACTION_COLOUR)


def _list(a) -> list:
    if isinstance(a, np.ndarray):
        if a.dtype == object:
            return [None if (isinstance(v, float) and np.isnan(v)) else v for v in a.tolist()]
        return a  # orjson writes numpy arrays itself (NaN as null)
    return list(a)


def left_margin(labels) -> int:
    """A left margin that fits the longest y label (peer names in state strips), so that every
    figure of a report puts time 0 at the same place."""
    longest = max((len(str(x)) for x in labels), default=0)
    return int(min(340, max(70, 7 * longest + 24)))


def fault_shapes(spans: list[FaultSpan], end_s: float) -> list[dict]:
    """Bands behind every panel of a figure (paper height), one per fault."""
    shapes = []
    for s in spans:
        colour = action_colour(s.action)
        if s.is_instant:
            shapes.append({"type": "line", "xref": "x", "yref": "paper", "x0": s.start_s, "x1": s.start_s,
                           "y0": 0, "y1": 1, "line": {"color": colour, "width": 1.5, "dash": "dot"}, "layer": "below",
                           "name": s.label})
        else:
            shapes.append({"type": "rect", "xref": "x", "yref": "paper", "x0": s.start_s,
                           "x1": s.end_s if s.end_s is not None else end_s, "y0": 0, "y1": 1,
                           "fillcolor": colour, "opacity": 0.12, "line": {"width": 0}, "layer": "below",
                           "name": s.label})
    return shapes


def timeline_figure(spans: list[FaultSpan], end_s: float, lane_prefix: list[str] | None = None, left: int = 70) -> dict:
    """One lane per fault: a labelled band from start to heal, or a marker for an instant."""
    shapes, annotations, traces = [], [], []
    n = len(spans)
    for lane, s in enumerate(spans):
        colour = action_colour(s.action)
        label = (lane_prefix[lane] + ": " if lane_prefix else "") + s.label
        x1 = s.end_s if s.end_s is not None else s.start_s
        detail = f"{label}<br>{s.note}" + (f"<br>healed at {s.end_s:g}s: {s.heal_note}" if s.heal_note else "")
        if s.open_end:
            detail += "<br>(still in force at the end of the run)"
        if s.is_instant:
            shapes.append({"type": "line", "xref": "x", "yref": "y", "x0": s.start_s, "x1": s.start_s,
                           "y0": lane - 0.42, "y1": lane + 0.42, "line": {"color": colour, "width": 3},
                           "name": label})
        else:
            shapes.append({"type": "rect", "xref": "x", "yref": "y", "x0": s.start_s, "x1": x1,
                           "y0": lane - 0.38, "y1": lane + 0.38, "fillcolor": colour, "opacity": 0.35,
                           "line": {"color": colour, "width": 1}, "name": label})
        annotations.append({"x": s.start_s, "y": lane, "xref": "x", "yref": "y", "text": label, "showarrow": False,
                            "xanchor": "left", "xshift": 4, "font": {"size": 12}, "name": "fault"})
        traces.append({"type": "scatter", "x": [s.start_s, x1], "y": [lane, lane], "mode": "markers",
                       "marker": {"color": colour, "size": 9, "symbol": ["diamond", "line-ns-open"]},
                       "hovertext": [detail, detail], "hoverinfo": "text", "showlegend": False, "name": label})
    if not spans:
        annotations.append({"x": 0.5, "y": 0.5, "xref": "paper", "yref": "paper", "text": "no faults in this run",
                            "showarrow": False, "font": {"size": 13, "color": "#666"}})
    layout = {
        "height": 70 + 30 * max(n, 1),
        "margin": {"l": left, "r": 20, "t": 10, "b": 36},
        "xaxis": {"range": [0, end_s], "title": {"text": "simulated time (s)"}, "zeroline": False},
        "yaxis": {"range": [max(n, 1) - 0.5, -0.5], "showticklabels": False, "zeroline": False, "showgrid": False},
        "shapes": shapes, "annotations": annotations, "showlegend": False, "hovermode": "closest",
        "plot_bgcolor": "#fafafa",
    }
    return {"data": traces, "layout": layout}


def _trace_dicts(panel: Panel, axis: int, seen: set[str]) -> list[dict]:
    suffix = "" if axis == 1 else str(axis)
    out = []
    if panel.strip is not None:
        st = panel.strip
        k = len(st.categories)
        scale = []
        for i, c in enumerate(st.colours):
            scale += [[i / k, c], [(i + 1) / k, c]]
        names = np.array(st.categories, dtype=object)
        codes = st.codes
        text = np.where(np.isnan(codes), "", names[np.nan_to_num(codes).astype(int)])
        stride = max(1, len(st.x) // 3000)
        out.append({"type": "heatmap", "x": st.x[::stride], "y": st.labels, "z": codes[:, ::stride],
                    "text": text[:, ::stride].tolist(), "zmin": -0.5, "zmax": k - 0.5, "colorscale": scale,
                    "showscale": False, "hovertemplate": "%{y}<br>%{x}s: %{text}<extra></extra>",
                    "xaxis": "x" + suffix, "yaxis": "y" + suffix, "xgap": 0, "ygap": 2, "name": "peer state"})
        for cat, colour in zip(st.categories, st.colours, strict=True):
            key = "state:" + cat
            if key in seen:
                continue
            seen.add(key)
            out.append({"type": "scatter", "x": [None], "y": [None], "mode": "markers", "name": cat,
                        "marker": {"color": colour, "symbol": "square", "size": 11}, "legendgroup": key,
                        "xaxis": "x" + suffix, "yaxis": "y" + suffix, "hoverinfo": "skip"})
    for tr in panel.traces:
        group = tr.group or tr.name
        show = group not in seen
        seen.add(group)
        if tr.mode == "markers":
            d = {"type": "scatter", "mode": "markers", "x": _list(tr.x), "y": _list(tr.y),
                 "marker": {"color": tr.colour, "symbol": tr.symbol or "circle",
                            "size": _list(tr.size) if tr.size is not None else 7,
                            "line": {"color": "#ffffff", "width": 1}}}
        else:
            x, (y,) = S.thin(tr.x, [tr.y])
            d = {"type": "scatter", "mode": "lines", "x": x, "y": y,
                 "line": {"color": tr.colour, "width": tr.width, "dash": _DASH.get(tr.dash, "solid")}}
            if tr.mode == "step":
                d["line"]["shape"] = "hv"
            elif tr.mode == "area":
                d.update(stackgroup=f"stack{axis}", line={"color": tr.colour, "width": 0.5})
                d["fillcolor"] = tr.colour
        d.update(name=tr.name, legendgroup=group, showlegend=show, xaxis="x" + suffix, yaxis="y" + suffix)
        if tr.hover:
            d["hovertemplate"] = tr.hover
        out.append(d)
    return out


def section_figure(section: Section, spans: list[FaultSpan], end_s: float, left: int = 70) -> dict:
    """One figure: the section's panels stacked on one time axis, fault bands behind them."""
    heights = [p.height for p in section.panels]
    total = sum(heights) + GAP * len(heights)
    layout: dict = {
        "height": total + 70,
        "margin": {"l": left, "r": 20, "t": 24, "b": 40},
        "hovermode": "x unified",
        "legend": {"orientation": "v", "x": 1.01, "y": 1, "font": {"size": 11}},
        "shapes": fault_shapes(spans, end_s),
        "annotations": [],
        "plot_bgcolor": "#ffffff",
    }
    data, seen = [], set()
    top = 1.0
    for i, (panel, h) in enumerate(zip(section.panels, heights, strict=True), start=1):
        suffix = "" if i == 1 else str(i)
        span = h / total
        lo = max(0.0, top - span)
        yaxis = {"domain": [lo, top], "title": {"text": panel.ylabel, "font": {"size": 11}}, "zeroline": False,
                 "gridcolor": "#eee"}
        if panel.strip is not None:
            yaxis.update(type="category", autorange="reversed", showgrid=False)
        if panel.yrange is not None:
            yaxis["range"] = list(panel.yrange)
        if panel.log_y:
            yaxis["type"] = "log"
        xaxis = {"anchor": "y" + suffix, "range": [0, end_s], "gridcolor": "#eee", "showticklabels": i == len(heights)}
        if i > 1:
            xaxis["matches"] = "x"
        if i == len(heights):
            xaxis["title"] = {"text": "simulated time (s)"}
        layout["xaxis" + suffix] = xaxis
        layout["yaxis" + suffix] = yaxis
        layout["annotations"].append({"text": f"<b>{panel.title}</b>", "x": 0, "xref": "paper", "y": top,
                                      "yref": "paper", "yanchor": "bottom", "xanchor": "left",
                                      "showarrow": False, "font": {"size": 12}})
        data += _trace_dicts(panel, i, seen)
        top = lo - GAP / total
    return {"data": data, "layout": layout}


def to_plotly(fig: dict):
    """A :class:`plotly.graph_objects.Figure` of a figure dict (for notebooks)."""
    import orjson
    import plotly.io as pio

    return pio.from_json(orjson.dumps(fig, option=orjson.OPT_SERIALIZE_NUMPY).decode())
