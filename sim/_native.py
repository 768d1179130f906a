"""Which build of the hot-path modules is in use: compiled by mypyc, or plain Python.

``pip install`` compiles the modules named in :data:`MODULES` with mypyc when it can (see
``setup.py`` and ``docs/performance.md``) and records a hash of each source in
``sim/_compiled.json``. Python imports a compiled extension in preference to the ``.py`` file
beside it, so an extension built from an older source would silently run old code after an
edit or a checkout. :func:`choose` runs when the ``sim`` package is imported, before any of these
modules: it compares the recorded hashes with the sources and, when any differs (or when the
environment sets ``CLUSTERSIM_PURE=1``), makes all of them load from their ``.py`` files. They
are compiled together and call each other directly, so they are used all compiled or all plain.
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import json
import os
import sys
import warnings
from pathlib import Path

#: The modules compiled at install time: the ones a simulated request runs through, and the
#: ones a zone_sync record is stored, shipped and merged by.
MODULES = ("sim.core.eventq", "sim.core.rng", "sim.http.traffic", "sim.zones.status", "sim.http.cache",
           "sim.http.cache_rules", "sim.http.cache_nodes", "sim.node.node", "sim.node.route",
           "sim.node.upstream_cache", "sim.node.variables", "sim.workload.clients",
           "sim.http.proxy", "sim.cluster.backend", "sim.cluster.network",
           "sim.zones.slabs", "sim.zones.keyval_entry", "sim.zones.keyval_store", "sim.zones.keyval",
           "sim.stream.zone_sync", "sim.checks.probe")
#: Written by setup.py next to this file: ``{module: sha256 of its source}``.
STAMP = "_compiled.json"

_HERE = Path(__file__).resolve().parent
#: "compiled", or why the plain Python sources are used; set by :func:`choose`.
MODE = "pure: not compiled"


def source_path(module: str) -> Path:
    """``sim.core.eventq`` -> ``.../sim/core/eventq.py``."""
    return _HERE.joinpath(*module.split(".")[1:]).with_suffix(".py")


def source_hash(module: str) -> str:
    return hashlib.sha256(source_path(module).read_bytes()).hexdigest()


def _has_extension(module: str) -> bool:
    source = source_path(module)
    return any(source.with_name(source.stem + suffix).exists() for suffix in importlib.machinery.EXTENSION_SUFFIXES)


class _SourceFirst:
    """A meta path finder that loads the named ``sim`` modules from their ``.py`` files."""

    def __init__(self, names) -> None:
        self.names = frozenset(names)

    def find_spec(self, fullname, path=None, target=None):
        if fullname in self.names:
            return importlib.util.spec_from_file_location(fullname, source_path(fullname))
        return None


def leftovers() -> list[str]:
    """``sim`` modules with an extension beside them that are not in :data:`MODULES`: left by
    an older build (the module has left the list since), so never to be imported."""
    found = []
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        for ext in _HERE.rglob("*" + suffix):
            parts = ext.relative_to(_HERE).parts
            name = ".".join(("sim", *parts[:-1], parts[-1][: -len(suffix)]))
            if name not in MODULES and source_path(name).is_file():
                found.append(name)
    return sorted(set(found))


def _load_from_source(names) -> None:
    if names and not any(isinstance(f, _SourceFirst) and f.names >= frozenset(names) for f in sys.meta_path):
        sys.meta_path.insert(0, _SourceFirst(names))


def choose() -> str:
    """Decide, once, whether the compiled extensions may be imported; returns :data:`MODE`."""
    global MODE
    _load_from_source(leftovers())
    built = [m for m in MODULES if _has_extension(m)]
    if not built:
        MODE = "pure: not compiled"
        return MODE
    if len(built) < len(MODULES):
        # a build from before a module joined the list: none of its extensions may be used
        MODE = "pure: no compiled copy of " + ", ".join(m for m in MODULES if m not in built)
    elif os.environ.get("CLUSTERSIM_PURE", "") not in ("", "0"):
        MODE = "pure: CLUSTERSIM_PURE is set"
    else:
        try:
            recorded = json.loads((_HERE / STAMP).read_text())
        except (OSError, ValueError):
            recorded = {}
        stale = [m for m in MODULES if recorded.get(m) != source_hash(m)]
        if not stale:
            MODE = "compiled"
            return MODE
        MODE = "pure: compiled copies are older than " + ", ".join(stale)
        warnings.warn(
            f"clustersim: the compiled hot-path modules were built from other sources than "
            f"{', '.join(stale)}; running plain Python (reinstall with `pip install -e .` to recompile)",
            RuntimeWarning,
            stacklevel=2,
        )
    _load_from_source(MODULES + tuple(leftovers()))
    return MODE
