"""The compiled hot path (sim/_native.py, setup.py): the compiled and the plain Python modules
give byte-identical results, and an out-of-date build is never used.

Each check runs in a fresh interpreter, since the choice between the two builds is made once,
when ``sim`` is first imported.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import sim
from sim import _native

ROOT = Path(__file__).resolve().parents[2]
SIM_DIR = Path(sim.__file__).resolve().parent
COMPILED = all(_native._has_extension(m) for m in _native.MODULES)
needs_build = pytest.mark.skipif(not COMPILED, reason="the hot path was not compiled at install (CLUSTERSIM_PURE or no compiler)")


def python(code: str, *, pure: bool = False, path: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.pop("CLUSTERSIM_PURE", None)
    if pure:
        env["CLUSTERSIM_PURE"] = "1"
    if path is not None:
        env["PYTHONPATH"] = str(path)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True,
                          cwd=path or ROOT)


def installed_copy(folder: Path) -> Path:
    """A copy of the installed ``sim`` package, extensions and all, importable from ``folder``."""
    copy = folder / "sim"
    shutil.copytree(SIM_DIR, copy, ignore=shutil.ignore_patterns("__pycache__"))
    for lib in ROOT.glob("sim_hot__mypyc*"):
        shutil.copy(lib, folder)
    return copy


REPORT = "import sim._native as n, sim.node.node, sim.workload.clients; print(n.MODE); print(sim.node.node.__file__); print(sim.workload.clients.__file__)"


def test_every_hot_module_exists_as_source_and_the_stamp_names_them_all():
    for m in _native.MODULES:
        assert _native.source_path(m).is_file(), m
    if COMPILED:
        stamp = json.loads((SIM_DIR / _native.STAMP).read_text())
        assert sorted(stamp) == sorted(_native.MODULES)


@needs_build
def test_an_up_to_date_build_is_used_and_the_environment_can_refuse_it():
    mode, node_file, workload_file = python(REPORT).stdout.split()
    assert mode == "compiled"
    assert not node_file.endswith(".py") and not workload_file.endswith(".py")
    out = python(REPORT, pure=True).stdout.splitlines()
    assert out[0] == "pure: CLUSTERSIM_PURE is set"
    assert out[1].endswith("node.py") and out[2].endswith("clients.py")


@needs_build
def test_a_build_older_than_one_source_is_not_used_for_any_module(tmp_path):
    copy = installed_copy(tmp_path)
    cache = copy / "http" / "cache.py"
    cache.write_text(cache.read_text() + "\n# edited after the build\n")
    result = python(REPORT + "; import sim.http.cache; print(sim.http.cache.__file__)", path=tmp_path)
    lines = result.stdout.splitlines()
    assert lines[0] == "pure: compiled copies are older than sim.http.cache"
    assert all(line.endswith(".py") for line in lines[1:])
    assert "reinstall" in result.stderr


@needs_build
def test_compiled_and_plain_python_give_byte_identical_summaries(tmp_path):
    code = (
        "import sys; from clustersim.cli import main;"
        "sys.exit(main(['run', 'scenarios/seed-example.yaml', '--out', sys.argv[1], '--seed', '11']))"
    )
    outs = []
    for pure in (False, True):
        out = tmp_path / ("pure" if pure else "compiled")
        env = dict(os.environ, CLUSTERSIM_PURE="1" if pure else "0")
        subprocess.run([sys.executable, "-c", code, str(out)], cwd=ROOT, env=env, check=True, capture_output=True)
        outs.append((out / "summary.json").read_bytes())
    assert outs[0] == outs[1]
    assert b'"requests"' in outs[0]


@needs_build
def test_a_build_missing_one_module_is_not_used_for_the_others(tmp_path):
    copy = installed_copy(tmp_path)
    for ext in (copy / "zones").glob("status.*"):
        if ext.suffix != ".py":
            ext.unlink()
    lines = python(REPORT, path=tmp_path).stdout.splitlines()
    assert lines[0] == "pure: no compiled copy of sim.zones.status"
    assert all(line.endswith(".py") for line in lines[1:])


@needs_build
def test_an_extension_left_by_an_older_build_for_a_module_not_compiled_now_is_ignored(tmp_path):
    # a module that has left MODULES keeps its extension from the last build that compiled it;
    # the shared library of a newer build lacks its code, so it must load from its source
    copy = installed_copy(tmp_path)
    ext = next(p for p in (copy / "zones").glob("status.*") if p.suffix != ".py")
    shutil.copy(ext, copy / "workload" / ext.name.replace("status", "arrivals", 1))
    code = REPORT + "; import sim.workload.arrivals; print(sim.workload.arrivals.__file__); print(n.leftovers())"
    lines = python(code, path=tmp_path).stdout.splitlines()
    assert lines[0] == "compiled" and not lines[1].endswith(".py")
    assert lines[3].endswith("arrivals.py") and lines[4] == "['sim.workload.arrivals']"
