"""``clustersim serve`` writes the run's report into --out when it is stopped."""

from __future__ import annotations

import os

from clustersim.serve_cmd import ROOT, start_serve, stop_serve


def test_serve_writes_report_html_when_it_stops(tmp_path):
    out = tmp_path / "live"
    base = f"127.{200 + os.getpid() % 50}.7.11"  # a range no other live test uses
    proc, info = start_serve(str(ROOT / "scenarios" / "seed-example.yaml"),
                             ["--control-port", "0", "--address-base", base, "--speed", "5", "--out", str(out)])
    assert info["event"] == "serving"
    assert stop_serve(proc) == 0
    text = (out / "report.html").read_text()
    assert "clustersim serve" in text and "seed-example" in text
    assert {"summary.json", "timeseries.csv", "peers.csv", "faults.json"} <= {p.name for p in out.iterdir()}
