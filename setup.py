"""Build hook: compile the model's hot-path modules with mypyc when this machine can.

Everything else about the package is in pyproject.toml. The modules named in
``sim/_native.py`` are compiled to C extensions (mypyc is a build requirement); a hash of each
source goes into ``sim/_compiled.json`` so that an out-of-date build is noticed at import time
and the sources are used instead. Set ``CLUSTERSIM_PURE=1`` to install without compiling. If
compiling fails (no C compiler, say), the install goes on with plain Python and says so.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent


def hot_modules() -> tuple[str, ...]:
    tree = ast.parse((ROOT / "sim" / "_native.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "MODULES" for t in node.targets):
            return tuple(ast.literal_eval(node.value))
    raise SystemExit("setup.py: sim/_native.py defines no MODULES")


def say(message: str) -> None:
    print(f"clustersim setup: {message}", file=sys.stderr)


class OptionalBuildExt(build_ext):
    """Compiling is an optimisation: a failure leaves the plain Python modules in charge."""

    def run(self):
        try:
            super().run()
        except Exception as exc:  # noqa: BLE001 - any compiler failure
            say(f"compiling the hot path failed ({exc}); using plain Python")
            (ROOT / "sim" / "_compiled.json").unlink(missing_ok=True)


def ext_modules() -> list:
    stamp = ROOT / "sim" / "_compiled.json"
    stamp.unlink(missing_ok=True)
    if os.environ.get("CLUSTERSIM_PURE", "") not in ("", "0"):
        say("CLUSTERSIM_PURE is set: not compiling")
        return []
    try:
        from mypyc.build import mypycify
    except ImportError:
        say("mypyc is not available: not compiling")
        return []
    modules = hot_modules()
    paths = [m.replace(".", "/") + ".py" for m in modules]
    flags = ["--ignore-missing-imports", "--follow-imports=silent", "--disable-error-code=annotation-unchecked"]
    try:
        exts = mypycify([*flags, *paths], opt_level="3", group_name="sim_hot")
    except (SystemExit, Exception) as exc:  # mypyc reports type errors by exiting
        say(f"mypyc could not compile the hot path ({exc}); using plain Python")
        return []
    hashes = {m: hashlib.sha256((ROOT / p).read_bytes()).hexdigest() for m, p in zip(modules, paths, strict=True)}
    stamp.write_text(json.dumps(hashes, indent=1, sort_keys=True) + "\n")
    return exts


setup(ext_modules=ext_modules(), cmdclass={"build_ext": OptionalBuildExt})
