"""Sortable HTML tables of a run's final API objects, its nodes and its replication verdicts.

Each table takes one kind of API object from every node of the summary (server zones,
location zones, upstream peers, caches, keyval zones, stream zones and peers, zone_sync), one
row per object with a ``node`` column, so nodes compare at a glance. Tables with no rows are
left out: a scenario without caches shows no cache table.
"""

from __future__ import annotations

import html

_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx")
_CACHE_STATUSES = ("hit", "stale", "updating", "revalidated", "miss", "expired", "bypass")


def _esc(v) -> str:
    return html.escape(str(v), quote=True)


def _cell(v) -> tuple[str, str]:
    """(shown text, sort key) of a value."""
    if v is None:
        return "-", ""
    if isinstance(v, bool):
        return ("yes" if v else "no"), ("1" if v else "0")
    if isinstance(v, float):
        return f"{v:.6g}", repr(v)
    if isinstance(v, list | tuple):
        return ", ".join(str(x) for x in v[:20]) + (" ..." if len(v) > 20 else ""), str(len(v))
    return str(v), str(v)


def render_table(headers: list[str], rows: list[list], *, text_columns=frozenset(), css: str = "",
                 row_class: list[str] | None = None, html_columns=frozenset()) -> str:
    """A sortable table. A cell is a value, or (html, sort key) in an ``html_columns`` column."""
    head = "".join(f'<th class="{"text" if i in text_columns else "num"}">{_esc(h)}</th>' for i, h in enumerate(headers))
    body = []
    for r, row in enumerate(rows):
        cells = []
        for i, v in enumerate(row):
            cls = "text" if i in text_columns else "num"
            if i in html_columns and isinstance(v, tuple):
                shown, key = v
            else:
                shown, key = _cell(v)
                shown = _esc(shown)
            cells.append(f'<td class="{cls}" data-v="{_esc(key)}">{shown}</td>')
        rc = f' class="{row_class[r]}"' if row_class else ""
        body.append(f"<tr{rc}>{''.join(cells)}</tr>")
    return (f'<div class="wrap"><table class="data sortable {css}"><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(body)}</tbody></table></div>")


def _get(obj, path: str):
    for part in path.split("."):
        if not isinstance(obj, dict) or part not in obj:
            return None
        obj = obj[part]
    return obj


def _nodes(summary: dict):
    for name, n in (summary.get("nodes") or {}).items():
        yield name, (n.get("api") or {})


def node_table(summary: dict) -> str:
    """One row per node: up, requests, rates, responses by class, latency percentiles."""
    rows = []
    for name, n in (summary.get("nodes") or {}).items():
        api = n.get("api") or {}
        classes = [0] * 5
        for z in (_get(api, "http.server_zones") or {}).values():
            for i, k in enumerate(_CLASSES):
                classes[i] += _get(z, "responses." + k) or 0
        lat = n.get("latency") or {}
        rows.append([name, n.get("up"), _get(api, "http.requests.total"), n.get("requests_per_s"), *classes[1:],
                     lat.get("p50_ms"), lat.get("p90_ms"), lat.get("p99_ms"), lat.get("p999_ms")])
    if not rows:
        return ""
    return render_table(["node", "up", "requests", "req/s", "2xx", "3xx", "4xx", "5xx", "p50 ms", "p90 ms", "p99 ms",
                         "p99.9 ms"], rows, text_columns={0})


def _zone_rows(summary: dict, path: str, fields: list[str]) -> list[list]:
    rows = []
    for node, api in _nodes(summary):
        for zname, z in (_get(api, path) or {}).items():
            rows.append([node, zname, *(_get(z, f) for f in fields)])
    return rows


_TABLES = [
    ("HTTP server zones", "http.server_zones",
     ["requests", "processing", "discarded", *(f"responses.{k}" for k in _CLASSES), "received", "sent"]),
    ("HTTP location zones", "http.location_zones",
     ["requests", "discarded", *(f"responses.{k}" for k in _CLASSES), "received", "sent"]),
    ("caches", "http.caches",
     ["size", "max_size", "cold", *(f"{s}.responses" for s in _CACHE_STATUSES)]),
    ("limit_req zones", "http.limit_reqs", ["passed", "delayed", "rejected", "delayed_dry_run", "rejected_dry_run"]),
    ("limit_conn zones", "http.limit_conns", ["passed", "rejected", "rejected_dry_run"]),
    ("stream server zones", "stream.server_zones",
     ["connections", "processing", "discarded", "sessions.2xx", "sessions.4xx", "sessions.5xx", "received", "sent"]),
    ("zone_sync zones", "stream.zone_sync.zones", ["records_pending", "records_total"]),
]

_PEER_FIELDS = ["id", "server", "backup", "weight", "state", "active", "requests", *(f"responses.{k}" for k in _CLASSES),
                "fails", "unavail", "health_checks.checks", "health_checks.fails", "health_checks.unhealthy",
                "health_checks.last_passed", "downtime", "selected"]
_STREAM_PEER_FIELDS = ["id", "server", "backup", "weight", "state", "active", "connections", "fails", "unavail",
                       "health_checks.checks", "health_checks.fails", "health_checks.unhealthy",
                       "health_checks.last_passed", "downtime", "selected"]


def _peer_rows(summary: dict, path: str, fields: list[str]) -> list[list]:
    rows = []
    for node, api in _nodes(summary):
        for uname, up in (_get(api, path) or {}).items():
            for p in up.get("peers", []):
                rows.append([node, uname, *(_get(p, f) for f in fields)])
    return rows


def _keyval_rows(summary: dict) -> list[list]:
    rows = []
    for node, api in _nodes(summary):
        for side in ("http", "stream"):
            for zname, z in (_get(api, side + ".keyvals") or {}).items():
                keys = sorted(z) if isinstance(z, dict) else []
                rows.append([node, side, zname, len(keys), keys[:5]])
    return rows


def api_tables(summary: dict) -> str:
    parts = []
    for title, path, fields in _TABLES[:2]:
        rows = _zone_rows(summary, path, fields)
        if rows:
            parts.append(f"<h3>{_esc(title)}</h3>" + render_table(["node", "zone", *fields], rows, text_columns={0, 1}))
    for title, path, fields in (("HTTP upstream peers", "http.upstreams", _PEER_FIELDS),
                                ("stream upstream peers", "stream.upstreams", _STREAM_PEER_FIELDS)):
        rows = _peer_rows(summary, path, fields)
        if rows:
            parts.append(f"<h3>{_esc(title)}</h3>" + render_table(["node", "upstream", *fields], rows,
                                                                   text_columns={0, 1, 3, 6}))
    for title, path, fields in _TABLES[2:]:
        rows = _zone_rows(summary, path, fields)
        if rows:
            parts.append(f"<h3>{_esc(title)}</h3>" + render_table(["node", "zone", *fields], rows, text_columns={0, 1}))
    status = [[node, *(_get(api, "stream.zone_sync.status." + f) for f in ("nodes_online", "msgs_in", "msgs_out",
                                                                             "bytes_in", "bytes_out"))]
              for node, api in _nodes(summary) if _get(api, "stream.zone_sync.status")]
    if status:
        parts.append("<h3>zone_sync status</h3>" + render_table(
            ["node", "nodes_online", "msgs_in", "msgs_out", "bytes_in", "bytes_out"], status, text_columns={0}))
    kv = _keyval_rows(summary)
    if kv:
        parts.append("<h3>keyval zones</h3>" + render_table(["node", "side", "zone", "keys", "first keys"], kv,
                                                           text_columns={0, 1, 2, 4}))
    return "".join(parts)


def _flat(prefix: str, v, out: list) -> None:
    if isinstance(v, dict):
        for k, x in v.items():
            _flat(f"{prefix}.{k}" if prefix else str(k), x, out)
    else:
        out.append([prefix, v])


def replication_tables(replication: dict) -> str:
    """The replication checker's verdict per zone: every field it reports, causes included."""
    parts = []
    for zone, report in sorted(replication.items()):
        ok = report.get("ok")
        verdict = "ok" if ok else "NOT ok"
        rows: list = []
        _flat("", report, rows)
        parts.append(f'<h3>zone {_esc(zone)}: <span class="{"pass" if ok else "fail"}">{verdict}</span></h3>'
                     + render_table(["field", "value"], rows, text_columns={0, 1}))
    return "".join(parts)
