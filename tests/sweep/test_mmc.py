"""The model against queueing theory: one node and one backend with c slots is an M/M/c queue.

With Poisson arrivals, exponential service, c slots, FIFO, no retries and no network delay, the
mean wait for a backend slot and the slots' utilisation must match Erlang C within the 95%
confidence interval of the replications (the way Ciw tests itself against theory).
"""

from __future__ import annotations

from pathlib import Path

from clustersim.sweep import spec
from clustersim.sweep.runner import run_sweep
from clustersim.sweep.theory import erlang_c, mmc

SWEEPS = Path(__file__).resolve().parents[2] / "scenarios" / "sweeps"


def test_erlang_c_matches_known_values():
    assert abs(erlang_c(1, 0.5) - 0.5) < 1e-12  # M/M/1: P(wait) = rho
    assert abs(erlang_c(2, 1.0) - 1 / 3) < 1e-12
    assert abs(mmc(160 / 1000, 1 / 20, 4)["wq"] - 14.9108) < 1e-3


def test_simulated_mmc_queue_wait_and_utilisation_match_erlang_c(tmp_path):
    sw = spec.load(SWEEPS / "mmc.yaml")
    report = run_sweep(sw, tmp_path, workers=2, progress=False, log=lambda *a: None)
    assert not report["failed"]
    assert len(report["points"]) == 2
    for p in report["points"]:
        theory = mmc(p["rate"] / 1000.0, 1 / 20.0, 4)  # per ms
        wq, wq_ci = p["backend_queue_wait_ms_mean"], p["backend_queue_wait_ms_ci95"]
        util, util_ci = p["backend_utilization_mean"], p["backend_utilization_ci95"]
        assert abs(wq - theory["wq"]) <= wq_ci, (p["rate"], wq, wq_ci, theory["wq"])
        assert abs(util - theory["utilization"]) <= util_ci, (p["rate"], util, util_ci, theory["utilization"])
        assert p["error_ratio_mean"] == 0.0
