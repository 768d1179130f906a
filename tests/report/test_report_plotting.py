"""clustersim.plotting: fault spans, derived series, the sampler's new tables, and reading a
run's directory back (the same data as in memory, and one-line errors for broken files)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import FAULT_LABELS

from clustersim import plotting
from clustersim.plotting import series as S
from clustersim.plotting.data import DataError, Table, load_run
from clustersim.plotting.faults import fault_spans
from sim.checks.metrics import PEER_COLUMNS


def test_a_fault_with_a_duration_is_a_band_from_its_start_to_its_heal():
    log = [(5.0, "backend_down", "backend b down"), (13.0, "backend_down:healed", "backend b up")]
    sched = [{"at_s": 5.0, "action": "backend_down", "target": "b:80", "duration_s": 8.0}]
    (span,) = fault_spans(log, sched, 30.0)
    assert (span.start_s, span.end_s, span.label, span.heal_note, span.open_end) == (5.0, 13.0, "backend_down b:80",
                                                                                    "backend b up", False)


def test_a_fault_still_in_force_at_the_end_reaches_the_end_of_the_run():
    sched = [{"at_s": 20.0, "action": "partition", "nodes": ["n3"], "other": ["n1", "n2"], "duration_s": 60.0}]
    (span,) = fault_spans([(20.0, "partition", "partitioned")], sched, 30.0)
    assert span.end_s == 30.0 and span.open_end and span.label == "partition n3 | n1,n2"


def test_a_step_without_a_duration_is_an_instant():
    sched = [{"at_s": 3.0, "action": "reload", "target": ["node1", "node2"]}]
    (span,) = fault_spans([(3.0, "reload", "node1 reloaded")], sched, 10.0)
    assert span.is_instant and span.label == "reload node1,node2"


def test_actions_it_does_not_know_are_labelled_with_their_action_and_note():
    log = [(2.0, "solar_flare", "every node blinded"), (4.0, "solar_flare:healed", "sight restored"),
           (6.0, "cosmic_ray", "a bit flipped")]
    spans = fault_spans(log, [], 10.0)
    assert [(s.label, s.start_s, s.end_s) for s in spans] == [
        ("solar_flare every node blinded", 2.0, 4.0), ("cosmic_ray a bit flipped", 6.0, None)]


def test_two_faults_of_one_action_at_one_time_keep_their_own_targets():
    sched = [{"at_s": 1.0, "action": "backend_down", "target": t, "duration_s": d} for t, d in (("a", 2.0), ("b", 4.0))]
    log = [(1.0, "backend_down", "a down"), (1.0, "backend_down", "b down"), (3.0, "backend_down:healed", "a up"),
           (5.0, "backend_down:healed", "b up")]
    spans = fault_spans(log, sched, 10.0)
    assert [(s.target, s.end_s) for s in spans] == [("a", 3.0), ("b", 5.0)]


def test_a_rate_counts_a_restarted_counter_from_zero():
    t = np.array([1.0, 2.0, 3.0, 4.0])
    v = np.array([10.0, 30.0, 5.0, 15.0])  # restarted between 2 s and 3 s
    assert S.rate(t, v).tolist() == [10.0, 20.0, 5.0, 10.0]


def test_a_sum_over_nodes_keeps_times_where_no_node_had_a_value_empty():
    t = np.array([1.0, 1.0, 2.0, 2.0])
    v = np.array([1.0, 2.0, np.nan, np.nan])
    times, total = S.sum_by_time(t, v)
    assert times.tolist() == [1.0, 2.0] and total[0] == 3.0 and np.isnan(total[1])


def test_peer_shares_add_up_to_one_wherever_the_upstream_had_requests():
    rows = []
    for t, (a, b) in enumerate([(10, 0), (30, 10), (30, 10), (60, 40)], start=1):
        for name, req in (("a", a), ("b", b)):
            rows.append((float(t), "n1", "http", "u", name, name, False, "up", req, 0, 0, 0, 0, 0, None))
    ps = S.PeerSeries(Table.from_tuples(rows, PEER_COLUMNS))
    share = ps.share()
    assert ps.labels == ["a", "b"]
    assert share[:, 0].tolist() == [1.0, 0.0] and share[:, 1].tolist() == [2 / 3, 1 / 3]
    assert np.isnan(share[:, 2]).all()  # no request in that second
    assert np.allclose(np.nansum(share, axis=0)[[0, 1, 3]], 1.0)


def test_the_sampler_records_offered_served_and_p95_per_node(fault_run):
    run = load_run(fault_run)
    rows = run.rows
    assert np.nansum(rows["offered_per_s"]) >= np.nansum(rows["served_per_s"]) > 0
    ok = ~np.isnan(rows["latency_p95_ms"])
    assert ok.any()
    assert (rows["latency_p50_ms"][ok] <= rows["latency_p95_ms"][ok]).all()
    assert (rows["latency_p95_ms"][ok] <= rows["latency_p99_ms"][ok]).all()
    # node3 was down from 10 s to 15 s: its clients were refused, nothing was served
    n3 = run.node_rows("node3")
    down = (n3["time_s"] > 10) & (n3["time_s"] <= 15)
    assert (n3["served_per_s"][down] == 0).all() and (n3["offered_per_s"][down] > 0).all()


def test_peer_rows_show_the_outage_as_unhealthy_with_failed_health_checks(fault_run):
    run = load_run(fault_run)
    peers = run.peers.where(node="node1", kind="http", upstream="backend")
    ps = S.PeerSeries(peers)
    b2 = ps.labels.index("backend2.example.com:80")
    states = [S.PEER_STATES[int(c)] for c in ps.states[b2]]
    during = (ps.times > 7) & (ps.times <= 13)
    assert {states[i] for i in np.nonzero(during)[0]} == {"unhealthy"}
    assert states[0] == "up" and states[-1] == "up"
    passed, failed = ps.health_marks()
    assert failed[b2][ps.times <= 14].sum() > 0 and passed[b2].sum() > 0


def test_cache_rows_count_every_status_and_the_size(fault_run):
    run = load_run(fault_run)
    tab = run.caches.where(node="node1", cache="cache_backend")
    assert len(tab) == 30
    assert tab["hit"][-1] > 0 and tab["miss"][-1] > 0 and tab["size"][-1] > 0
    assert (np.diff(tab["hit"]) >= 0).all()


def test_the_directory_gives_the_same_data_as_the_cluster_in_memory(tmp_path):
    from conftest import FAULT_SCENARIO

    from clustersim.report import build_summary, check_expectations, write_outputs
    from sim.cluster import scenario
    from sim.cluster.cluster import Cluster

    sc = scenario.loads(FAULT_SCENARIO.replace("duration: 30s", "duration: 8s"), filename="chaos.yaml")
    cluster = Cluster(sc)
    cluster.run()
    cluster.sampler.sample()
    summary = build_summary(cluster)
    verdicts = check_expectations(summary, sc.model.expectations)
    write_outputs(cluster, tmp_path, summary, verdicts, html=False)
    mem, disk = plotting.run_data(cluster, summary, verdicts), load_run(tmp_path)
    for name in ("rows", "peers", "caches"):
        a, b = getattr(mem, name), getattr(disk, name)
        assert a.columns.keys() == b.columns.keys()
        for col in a.columns:
            if a[col].dtype == object:
                assert a[col].tolist() == b[col].tolist(), (name, col)
            else:
                assert np.array_equal(a[col], b[col], equal_nan=True), (name, col)
    assert mem.fault_log == disk.fault_log
    assert [s.label for s in plotting.spans(mem)] == [s.label for s in plotting.spans(disk)]


def test_every_scheduled_fault_of_the_run_has_its_labelled_span(fault_run):
    spans = plotting.spans(load_run(fault_run))
    assert [(s.action, s.label) for s in spans] == FAULT_LABELS
    assert [(s.start_s, s.end_s) for s in spans] == [(5.0, 13.0), (10.0, 15.0), (18.0, None), (20.0, 24.0), (22.0, 26.0)]


@pytest.mark.parametrize("name, text, message", [
    ("timeseries.csv", "time_s,node,requests_total\n1.0,node1,abc\n", "timeseries.csv:2: requests_total: not a number: 'abc'"),
    ("timeseries.csv", "time_s,node\n1.0\n", "timeseries.csv:2: expected 2 fields, found 1"),
    ("timeseries.csv", "node,requests_total\n", "timeseries.csv:1: time_s: missing column"),
    ("peers.csv", ",".join(PEER_COLUMNS) + "\n" + "1.0,n,http,u,p,p,maybe" + ",0" * 8 + "\n",
     "peers.csv:2: backup: expected True or False, got 'maybe'"),
    ("summary.json", '{"scenario": "x",\n "seed": ', "summary.json:2: not valid JSON"),
])
def test_a_broken_file_is_reported_with_its_name_line_and_field(fault_run, tmp_path, name, text, message):
    import shutil

    d = tmp_path / "run"
    shutil.copytree(fault_run, d)
    (d / name).write_text(text)
    with pytest.raises(DataError) as e:
        load_run(d)
    assert str(e.value).startswith(str(d / name).removesuffix(name)) and message in str(e.value)
    assert "\n" not in str(e.value)


def test_the_png_draws_a_band_per_fault_with_a_duration_and_a_line_per_instant(fault_run):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from clustersim.plotting import png

    run = load_run(fault_run)
    spans = plotting.spans(run)
    fig, ax = plt.subplots()
    png._bands(ax, spans, run.duration_s, labels=True)
    assert len(ax.patches) == sum(1 for s in spans if not s.is_instant) == 4
    assert len(ax.lines) == 1  # the reload
    assert [t.get_text() for t in ax.texts] == [label for _a, label in FAULT_LABELS]
    plt.close(fig)
    assert (fault_run / "traffic.png").stat().st_size > 20_000


def test_a_notebook_figure_is_a_plotly_figure_with_the_bands(fault_run):
    run = load_run(fault_run)
    fig = plotting.figure(run, "requests")
    assert len(fig.layout.shapes) == len(FAULT_LABELS)
    assert {t.name for t in fig.data} >= {"offered", "served"}
    tl = plotting.timeline(run)
    assert [a.text for a in tl.layout.annotations] == [label for _a, label in FAULT_LABELS]
