"""The scraper, the exporter's metrics, and the files a real Prometheus can load."""

import shutil
import subprocess
from pathlib import Path

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families as parse_prometheus

from api.inprocess import attach as attach_api
from api.render import node_state
from clustersim.monitoring import attach
from clustersim.monitoring.exporter import FAMILIES, samples
from sim.cluster import scenario
from sim.cluster.cluster import Cluster

ROOT = Path(__file__).resolve().parents[2]
MONITORING = ROOT / "scenarios" / "monitoring"


def _run(name: str, interval_ms: float = 15_000, **kw):
    sc = scenario.load(MONITORING / f"{name}.yaml")
    cl = Cluster(sc, sample=False)
    attach_api(cl)
    scraper = attach(cl, interval_ms, **kw)
    cl.run()
    return cl, scraper


@pytest.fixture(scope="module")
def reset_run(tmp_path_factory):
    cl, scraper = _run("stats-reset")
    out = tmp_path_factory.mktemp("scrapes")
    files = scraper.write(out)
    return cl, scraper, {p.name: p.read_text() for p in files}


def test_the_scraper_takes_one_scrape_per_node_per_interval(reset_run):
    _cl, scraper, _files = reset_run
    times = sorted({s.sim_ms for s in scraper.scrapes})
    assert times == [0, 15_000, 30_000, 45_000, 60_000, 75_000]
    assert len(scraper.scrapes) == 2 * len(times)


def test_the_prometheus_file_parses_with_timestamps_and_the_exporters_names(reset_run):
    cl, scraper, files = reset_run
    # (prometheus_client names a counter family without its _total, as OpenMetrics does)
    families = {f.name: f for f in parse_prometheus(files["scrapes.prom"])}
    assert set(families) <= {name.removesuffix("_total") for name in FAMILIES}
    written = {line.split("{")[0].split(" ")[0] for line in files["scrapes.prom"].splitlines() if not line.startswith("#")}
    assert written <= set(FAMILIES) and "nginxplus_http_requests_total" in written
    assert families["nginxplus_server_zone_requests"].type == "counter"
    assert families["nginxplus_upstream_server_state"].type == "gauge"
    reqs = [s for s in families["nginxplus_server_zone_requests"].samples if s.labels["instance"] == "node1"]
    assert [s.timestamp for s in reqs] == [(cl.epoch_ms + t) / 1000 for t in range(0, 90_000, 15_000)]
    values = [s.value for s in reqs]
    assert values[2] > values[3]  # DELETE at 40 s: the counter went backwards between 30 s and 45 s
    assert reqs[0].labels == {"instance": "node1", "job": "clustersim", "server_zone": "www"}
    peer = families["nginxplus_upstream_server_requests"].samples[0]
    assert set(peer.labels) == {"instance", "job", "upstream", "server"} and peer.labels["server"] == "10.0.2.1:8080"
    codes = {s.labels["code"] for s in families["nginxplus_server_zone_responses"].samples}
    assert codes == {"1xx", "2xx", "3xx", "4xx", "5xx"}


def test_the_openmetrics_file_is_strict_openmetrics_with_the_same_samples(reset_run):
    _cl, _scraper, files = reset_run
    assert files["scrapes.om.txt"].endswith("# EOF\n")
    om = list(parse_openmetrics(files["scrapes.om.txt"]))
    prom = list(parse_prometheus(files["scrapes.prom"]))
    def flat(fams):
        return sorted((s.name.removesuffix("_total"), tuple(sorted(s.labels.items())), s.value, float(s.timestamp))
                      for f in fams for s in f.samples)

    assert flat(om) == flat(prom) and len(flat(om)) > 1000
    om_names = {s.name for f in om for s in f.samples}
    assert "nginxplus_server_zone_requests" in om_names and "nginxplus_http_requests_total" in om_names
    kinds = {f.name: f.type for f in om}
    assert kinds["nginxplus_http_requests"] == "counter"  # samples nginxplus_http_requests_total
    assert kinds["nginxplus_server_zone_requests"] == "unknown"  # keeps the exporter's sample name
    assert kinds["nginxplus_upstream_server_state"] == "gauge"


def test_the_summary_counts_resets_only_on_the_node_whose_statistics_were_reset(reset_run):
    _cl, scraper, _files = reset_run
    summary = scraper.summary()
    assert summary["nodes"]["node2"]["resets"] == 0
    assert summary["nodes"]["node1"]["resets"] > 0
    fam = summary["families"]["nginxplus_server_zone_requests"]
    assert fam == {**fam, "series": 2, "resets": 1, "appeared": 0, "vanished": 0}


def test_samples_of_a_node_follow_its_api_objects():
    sc = scenario.load(MONITORING / "health-check-flapping.yaml")
    cl = Cluster(sc, sample=False)
    cl.run(20_000)
    node = cl.nodes["node1"]
    state = node_state(node, 9)
    got = {(n, labels): v for n, labels, v in samples(state)}
    assert got[("nginxplus_up", ())] == 1
    assert got[("nginxplus_http_requests_total", ())] == state["http"]["requests"]["total"]
    peer = state["http"]["upstreams"]["app"]["peers"][1]
    lab = (("upstream", "app"), ("server", peer["server"]))
    assert got[("nginxplus_upstream_server_state", lab)] == {"up": 1, "unhealthy": 6, "checking": 5}[peer["state"]]
    assert got[("nginxplus_upstream_server_health_checks_checks", lab)] == peer["health_checks"]["checks"]
    assert got[("nginxplus_upstream_server_responses_codes", (*lab, ("code", "200")))] == peer["responses"]["codes"].get("200", 0)
    assert list(samples(None)) == [("nginxplus_up", (), 0.0)]


def test_a_crashed_node_fails_its_scrapes():
    sc = scenario.loads(
        (MONITORING / "stats-reset.yaml").read_text().split("faults:")[0]
        + "faults:\n  - {at: 20s, action: crash_node, target: node2, duration: 30s}\n",
        filename="crash.yaml", base_dir=MONITORING)
    cl = Cluster(sc, sample=False)
    scraper = attach(cl, 15_000)
    cl.run()
    down = [s.sim_ms for s in scraper.scrapes if s.node == "node2" and not s.up]
    assert down == [30_000, 45_000]
    assert scraper.summary()["nodes"]["node2"]["failed"] == 2
    assert scraper.points("nginxplus_up", node="node2") == [(0.0, 1.0), (15.0, 1.0), (30.0, 0.0), (45.0, 0.0), (60.0, 1.0), (75.0, 1.0)]


def test_scraping_does_not_change_the_run():
    def final(with_scraper: bool):
        sc = scenario.load(MONITORING / "reload-renamed-zones.yaml")
        cl = Cluster(sc, sample=False)
        if with_scraper:
            attach(cl, 5_000)
        cl.run()
        return [node_state(n, 9)["http"] for n in cl.nodes.values()]

    assert final(True) == final(False)


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool (Debian package prometheus) is not installed")
def test_promtool_builds_tsdb_blocks_from_the_openmetrics_file(reset_run, tmp_path):
    _cl, scraper, files = reset_run
    src = tmp_path / "scrapes.om.txt"
    src.write_text(files["scrapes.om.txt"])
    done = subprocess.run(["promtool", "tsdb", "create-blocks-from", "openmetrics", str(src), str(tmp_path / "data")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    # one block whose time range is the scrapes' (ms since the epoch)
    times = sorted({s.sim_ms for s in scraper.scrapes})
    assert str(int(_cl.epoch_ms + times[0])) in done.stdout
