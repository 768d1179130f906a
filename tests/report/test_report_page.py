"""report.html as written after a run, and ``clustersim report DIR [DIR2 ...]``."""

from __future__ import annotations

import re
import shutil

from clustersim.cli import main

_EXTERNAL = re.compile(r"<(?:script|link|img|iframe|source)\b[^>]*\b(?:src|href)\s*=\s*[\"']?(?:https?:)?//", re.I)


def test_a_run_writes_a_self_contained_report(fault_run):
    text = (fault_run / "report.html").read_text()
    assert _EXTERNAL.search(text) is None
    assert "<script src" not in text and "<link " not in text
    assert text.count('<div class="plot"') >= 10
    assert '"type":"heatmap"' in text  # the peer-state strips


def test_the_header_names_the_scenario_seed_verdicts_and_the_command(fault_run):
    text = (fault_run / "report.html").read_text()
    head = text[text.index('<section class="report-section" id="overview"'):text.index('id="timeline"')]
    assert "report-chaos" in head and "faults of five kinds" in head and "<dd>5</dd>" in head
    assert "1 of 2 expectations held" in head
    assert head.count(">PASS<") == 1 and head.count(">FAIL<") == 1 and "&lt; 0.001" in head
    assert f"clustersim run {fault_run.parent / 'report-chaos.yaml'} --seed 5 --out {fault_run}" in head


def test_report_rebuilds_the_same_page_from_the_run_directory(fault_run, tmp_path, capsys):
    d = tmp_path / "out"
    shutil.copytree(fault_run, d)
    (d / "report.html").unlink()
    assert main(["report", str(d)]) == 0
    assert (d / "report.html").read_bytes() == (fault_run / "report.html").read_bytes()
    assert capsys.readouterr().out.strip() == f"wrote {d / 'report.html'}"


def test_report_of_two_runs_draws_them_overlaid_with_both_timelines(fault_run, tmp_path):
    before, after = tmp_path / "before", tmp_path / "after"
    shutil.copytree(fault_run, before)
    shutil.copytree(fault_run, after)
    out = tmp_path / "compare.html"
    assert main(["report", str(before), str(after), "--out", str(out)]) == 0
    text = out.read_text()
    assert "before vs after" in text
    assert 'data-figure="compare"' in text and 'data-figure="timeline"' in text
    assert "before: backend_down backend2.example.com:80" in text and "after: partition node1 | node2,node3" in text


def test_an_older_run_directory_without_the_new_files_still_reports(fault_run, tmp_path):
    d = tmp_path / "old"
    shutil.copytree(fault_run, d)
    for name in ("peers.csv", "caches.csv", "faults.json", "run.json", "report.html"):
        (d / name).unlink()
    assert main(["report", str(d)]) == 0
    text = (d / "report.html").read_text()
    assert "backend_down backend2.example.com:80" in text  # faults from the summary and the resolved scenario
    assert 'data-figure="requests"' in text and "upstream-node1" not in text


def test_report_of_a_directory_that_is_no_run_fails_with_one_line(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err == f"clustersim: {tmp_path / 'summary.json'}: missing (is {tmp_path} the output directory of a run?)\n"
    assert main(["report", str(tmp_path / "nowhere")]) == 2
    assert capsys.readouterr().err == f"clustersim: {tmp_path / 'nowhere'}: not a directory\n"
