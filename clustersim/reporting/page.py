"""The page: one self-contained report.html per run (or per comparison of runs), and the
``clustersim report DIR [DIR2 ...]`` command that rebuilds it from a run's files.

The page inlines plotly.js (read once per process and shared by every report written), the
figures as one JSON document, and a few lines of script: it makes no request to any other
host. Every figure shares the run's time axis (zooming one zooms all) and shows the fault
bands; the timeline on top labels each fault with its action and target. Below come the
traffic, upstream, cache and zone_sync figures and sortable tables of the final API objects.
"""

from __future__ import annotations

import functools
import html
import shlex
import sys
from pathlib import Path

import orjson

from clustersim import plotting
from clustersim.plotting.data import DataError, RunData
from clustersim.reporting.tables import api_tables, node_table, render_table, replication_tables

_STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;color:#222;background:#f4f5f7}
header.top{background:#1f2937;color:#fff;padding:14px 24px}
header.top h1{margin:0;font-size:22px} header.top p{margin:4px 0 0;color:#d1d5db}
nav{position:sticky;top:0;z-index:10;background:#fff;border-bottom:1px solid #ddd;padding:6px 24px;font-size:13px}
nav a{margin-right:14px;color:#1f4e8c;text-decoration:none}
main{padding:12px 24px 40px}
section.report-section{background:#fff;border:1px solid #e2e2e2;border-radius:6px;margin:14px 0;padding:10px 16px}
section.report-section h2{font-size:17px;margin:6px 0 8px} h3{font-size:14px;margin:14px 0 4px}
.note{color:#555;font-size:12.5px;margin:2px 0 6px}
.runs{display:flex;gap:16px;flex-wrap:wrap} .runs>div{flex:1 1 380px;min-width:320px}
dl.facts{display:grid;grid-template-columns:max-content 1fr;gap:2px 12px;margin:4px 0;font-size:13.5px}
dl.facts dt{color:#555} dl.facts dd{margin:0}
code.cmd{background:#f1f1f1;padding:3px 6px;border-radius:3px;font-size:12.5px;word-break:break-all}
table.data{border-collapse:collapse;font-size:12.5px;margin:4px 0 10px}
table.data th,table.data td{border:1px solid #ddd;padding:2px 7px;text-align:right;white-space:nowrap}
table.data th{background:#f0f2f5;cursor:pointer;user-select:none}
table.data th.sorted-asc::after{content:" \\25B2"} table.data th.sorted-desc::after{content:" \\25BC"}
table.data td.text,table.data th.text{text-align:left}
.wrap{overflow-x:auto}
.pass{color:#15803d;font-weight:600} .fail{color:#b91c1c;font-weight:600}
.verdict-pass{background:#ecfdf3} .verdict-fail{background:#fef2f2}
.plot{width:100%}
"""

_SCRIPT = """
(function(){
  var figs = JSON.parse(document.getElementById('figures').textContent);
  var divs = Array.prototype.slice.call(document.querySelectorAll('div.plot'));
  var syncing = false;
  function sync(src, ev){
    if (syncing) return;
    var upd = null;
    if (ev['xaxis.range[0]'] !== undefined) upd = {'xaxis.range': [ev['xaxis.range[0]'], ev['xaxis.range[1]']]};
    else if (ev['xaxis.range']) upd = {'xaxis.range': ev['xaxis.range']};
    else if (ev['xaxis.autorange']) upd = {'xaxis.range': src._initialRange};
    if (!upd) return;
    syncing = true;
    var jobs = divs.filter(function(d){ return d !== src && d.dataset.run === src.dataset.run; })
                   .map(function(d){ return Plotly.relayout(d, upd); });
    Promise.all(jobs).then(function(){ syncing = false; }, function(){ syncing = false; });
  }
  var config = {responsive: true, displaylogo: false, showLink: false, showSendToCloud: false};
  Promise.all(divs.map(function(div){
    var fig = figs[div.dataset.figure];
    div._initialRange = fig.layout.xaxis.range;
    return Plotly.newPlot(div, fig.data, fig.layout, config).then(function(){
      div.on('plotly_relayout', function(ev){ sync(div, ev); });
    });
  })).then(function(){ document.body.dataset.rendered = String(divs.length); },
           function(err){ console.error('a figure failed to draw: ' + err); });
  function key(cell){
    var t = cell.dataset.v !== undefined ? cell.dataset.v : cell.textContent;
    var n = parseFloat(t);
    return (t !== '' && !isNaN(n) && isFinite(t)) ? [0, n] : [1, t.toLowerCase()];
  }
  document.querySelectorAll('table.data.sortable th').forEach(function(th, i){
    th.addEventListener('click', function(){
      var table = th.closest('table'), body = table.tBodies[0], idx = th.cellIndex;
      var asc = !th.classList.contains('sorted-asc');
      table.querySelectorAll('th').forEach(function(h){ h.classList.remove('sorted-asc', 'sorted-desc'); });
      th.classList.add(asc ? 'sorted-asc' : 'sorted-desc');
      var rows = Array.prototype.slice.call(body.rows);
      rows.sort(function(a, b){
        var x = key(a.cells[idx]), y = key(b.cells[idx]);
        var c = x[0] - y[0] || (x[1] < y[1] ? -1 : x[1] > y[1] ? 1 : 0);
        return asc ? c : -c;
      });
      rows.forEach(function(r){ body.appendChild(r); });
    });
  });
})();
"""


@functools.cache
def plotly_js() -> str:
    """plotly.js from the installed plotly package, read once and shared by every report."""
    from plotly.offline import get_plotlyjs

    return get_plotlyjs()


def _esc(v) -> str:
    return html.escape(str(v), quote=True)


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def reproduce_command(run: RunData) -> str:
    if run.command:
        return shlex.join(run.command)
    scenario = (run.summary.get("scenario_file") or f"scenarios/{run.name}.yaml")
    return shlex.join(["clustersim", "run", scenario, "--seed", str(run.seed)])


def _expectations(run: RunData) -> str:
    if not run.expectations:
        return '<p class="note">The scenario states no expectations.</p>'
    rows = []
    for v in run.expectations:
        ok = v.get("passed")
        actual = v.get("actual")
        reason = v.get("reason")
        rows.append([
            (f'<span class="{"pass" if ok else "fail"}">{"PASS" if ok else "FAIL"}</span>', "PASS" if ok else "FAIL"),
            v.get("name", ""), v.get("metric", ""), f"{v.get('op', '')} {_fmt(v.get('expected'))}",
            _fmt(actual) + (f" ({reason})" if reason else ""),
        ])
    return render_table(["verdict", "expectation", "metric", "threshold", "value"], rows, text_columns={0, 1, 2, 3},
                        row_class=["verdict-pass" if v.get("passed") else "verdict-fail" for v in run.expectations],
                        html_columns={0})


def _header(run: RunData) -> str:
    passed = sum(1 for v in run.expectations if v.get("passed"))
    verdict = ("no expectations" if not run.expectations else
               f'<span class="{"pass" if passed == len(run.expectations) else "fail"}">'
               f"{passed} of {len(run.expectations)} expectations held</span>")
    facts = [("scenario", _esc(run.name)), ("description", _esc(run.description or "-")),
             ("seed", _esc(run.seed)), ("simulated", f"{run.duration_s:g} s"),
             ("nodes", _esc(", ".join(run.nodes))), ("API version", _esc(run.summary.get("api_version", "-"))),
             ("faults", str(len(plotting.spans(run)))), ("verdict", verdict),
             ("reproduce", f'<code class="cmd">{_esc(reproduce_command(run))}</code>')]
    dl = "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in facts)
    return (f'<dl class="facts">{dl}</dl><h3>Expectations</h3>{_expectations(run)}'
            f"<h3>Per node</h3>{node_table(run.summary)}")


def _fault_table(spans) -> str:
    if not spans:
        return '<p class="note">No fault was scheduled or injected.</p>'
    rows = [[f"{s.start_s:g}", "-" if s.end_s is None else f"{s.end_s:g}" + (" (run ended)" if s.open_end else ""),
             s.action, s.target, s.note, s.heal_note] for s in spans]
    return render_table(["start (s)", "end (s)", "action", "target", "note", "healed"], rows,
                        text_columns={1, 2, 3, 4, 5}, css="faults")


class _Page:
    """Collects the figures (by id) and the HTML of the sections."""

    def __init__(self):
        self.figures: dict[str, dict] = {}
        self.sections: list[tuple[str, str, str]] = []  # (id, title, html)

    def plot(self, fig_id: str, fig: dict, run_index: int = 0) -> str:
        self.figures[fig_id] = fig
        return f'<div class="plot" id="plot-{_esc(fig_id)}" data-figure="{_esc(fig_id)}" data-run="{run_index}"></div>'

    def section(self, sid: str, title: str, body: str) -> None:
        self.sections.append((sid, title, body))

    def render(self, title: str, subtitle: str) -> str:
        nav = "".join(f'<a href="#{_esc(s)}">{_esc(t)}</a>' for s, t, _ in self.sections)
        body = "".join(f'<section class="report-section" id="{_esc(s)}" data-section="{_esc(s)}">'
                       f"<h2>{_esc(t)}</h2>{b}</section>" for s, t, b in self.sections)
        data = orjson.dumps(self.figures, option=orjson.OPT_SERIALIZE_NUMPY).replace(b"</", b"<\\/").decode()
        return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{_esc(title)}</title>"
                f"<style>{_STYLE}</style><script>{plotly_js()}</script></head><body>"
                f'<header class="top"><h1>{_esc(title)}</h1><p>{_esc(subtitle)}</p></header>'
                f"<nav>{nav}</nav><main>{body}</main>"
                f'<script type="application/json" id="figures">{data}</script><script>{_SCRIPT}</script>'
                "</body></html>\n")


def _section_html(page: _Page, section, spans, end_s: float, left: int, run_index: int = 0) -> str:
    fig = plotting.section_figure(section, spans, end_s, left=left)
    note = f'<p class="note">{_esc(section.note)}</p>' if section.note else ""
    return f"<h3>{_esc(section.title)}</h3>{note}{page.plot(section.key, fig, run_index)}"


def build_html(runs: list[RunData]) -> str:
    if len(runs) == 1:
        return _single(runs[0])
    return _comparison(runs)


def _single(run: RunData) -> str:
    page = _Page()
    spans = plotting.spans(run)
    end = run.duration_s
    sections = plotting.run_sections(run)
    left = plotting.left_margin(["peer state", *(lab for s in sections for p in s.panels if p.strip for lab in p.strip.labels)])
    page.section("overview", "Run", _header(run))
    page.section("timeline", "Fault timeline",
                 '<p class="note">Each fault is a band from when it began to when it healed (a line for an '
                 "instant step); the same bands lie behind every figure below. Zooming one figure zooms all.</p>"
                 + page.plot("timeline", plotting.timeline_figure(spans, end, left=left)) + _fault_table(spans))
    groups = {"traffic": [], "upstreams": [], "caches": [], "zone-sync": []}
    for s in sections:
        group = ("upstreams" if s.key.startswith("upstream-") else "caches" if s.key.startswith("cache-")
                 else "zone-sync" if s.key == "zone-sync" else "traffic")
        groups[group].append(_section_html(page, s, spans, end, left))
    titles = {"traffic": "Traffic: per node and cluster-wide", "upstreams": "Upstreams: peers over time",
              "caches": "Caches", "zone-sync": "keyval and zone_sync"}
    for key, parts in groups.items():
        body = "".join(parts)
        if key == "zone-sync" and run.replication:
            body += "<h3>Replication checker</h3>" + replication_tables(run.replication)
        if body:
            page.section(key, titles[key], body)
    tables = api_tables(run.summary)
    if tables:
        page.section("api", "Final API objects", '<p class="note">As each node\'s NGINX Plus API showed them at the '
                     "end of the run. Click a column to sort.</p>" + tables)
    return page.render(f"clustersim: {run.name}", f"seed {run.seed}, {run.duration_s:g} s simulated, "
                       f"{len(run.nodes)} nodes")


def _comparison(runs: list[RunData]) -> str:
    page = _Page()
    end = max(r.duration_s for r in runs)
    cards = "".join(f"<div><h3>{_esc(r.label)}</h3>{_header(r)}</div>" for r in runs)
    page.section("overview", "Runs side by side", f'<div class="runs">{cards}</div>')
    spans, lanes = [], []
    for r in runs:
        for s in plotting.spans(r):
            spans.append(s)
            lanes.append(r.label)
    left = plotting.left_margin([r.label + ": " for r in runs])
    page.section("timeline", "Fault timelines", page.plot("timeline", plotting.timeline_figure(spans, end, lanes, left=left))
                 + '<p class="note">Each lane is named after its run.</p>')
    body = "".join(_section_html(page, s, spans, end, left) for s in plotting.compare_sections(runs))
    page.section("traffic", "The runs overlaid", body)
    return page.render("clustersim: " + " vs ".join(r.label for r in runs), f"{len(runs)} runs compared")


def write_report(runs: list[RunData], path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(build_html(runs), encoding="utf-8")
    return path


# ---------------------------------------------------------------------------------------------
# clustersim report


def register(subparsers) -> None:
    p = subparsers.add_parser("report", help="rebuild report.html from run directories; two or more are compared")
    p.add_argument("dirs", nargs="+", metavar="DIR", help="output directories of clustersim run (or serve)")
    p.add_argument("--out", default=None, metavar="FILE",
                   help="where to write (default DIR/report.html for one run, ./compare.html for several)")
    p.set_defaults(func=cmd_report)


def cmd_report(args) -> int:
    try:
        runs = [plotting.load_run(d) for d in args.dirs]
    except DataError as e:
        print(f"clustersim: {e}", file=sys.stderr)
        return 2
    labels = [r.label for r in runs]
    for i, r in enumerate(runs):  # two directories of the same name stay apart
        if labels.count(r.label) > 1:
            r.label = f"{r.label} ({i + 1})"
    out = Path(args.out) if args.out else (Path(args.dirs[0]) / "report.html" if len(runs) == 1 else Path("compare.html"))
    write_report(runs, out)
    print(f"wrote {out}")
    return 0
