"""Reading nginx.conf into the typed objects of :mod:`sim.conf.config`.

crossplane (NGINX's own parser) tokenises the files and knows in which contexts each directive
is valid; the statement loop, ``include`` handling and the main context (``worker_processes``,
``events``) live here. The translation into frozen config objects with nginx's defaults,
validation rules and inheritance is done by one builder per context, combined in
:class:`_Builder`: :mod:`sim.conf.build_http`, :mod:`sim.conf.build_server` (servers and
locations), :mod:`sim.conf.build_upstream`, :mod:`sim.conf.build_stream` and
:mod:`sim.conf.build_zones`, on the shared ground of :mod:`sim.conf.directives`. The public entry
points are :func:`load` and :func:`loads`; an invalid configuration raises :class:`ConfigError`.
"""

from __future__ import annotations

import glob
import io
import os
import re
from pathlib import Path

from crossplane.analyzer import (
    DIRECTIVES,
    NGX_CONF_TAKE1,
    NGX_HTTP_MAIN_CONF,
    NGX_HTTP_SRV_CONF,
    analyze,
    enter_block_ctx,
)
from crossplane.errors import NgxParserBaseException
from crossplane.lexer import _balance_braces, _lex_file_object

from sim.conf.build_http import _HttpBuilder
from sim.conf.build_stream import _StreamBuilder
from sim.conf.config import ConfigError, NginxConf, Where
from sim.conf.directives import _FREEFORM_BLOCKS, _parse_int, _Stmt

# directives newer than crossplane's table: where nginx allows them, and how many arguments
# (crossplane's own register_external_directives still calls dict.iteritems)
DIRECTIVES.setdefault("max_headers", [NGX_HTTP_MAIN_CONF | NGX_HTTP_SRV_CONF | NGX_CONF_TAKE1])

# =============================================================================================
# Reading: crossplane's lexer and directive table, driven by a loop of our own
#
# crossplane.parse() reads each included file only once whatever context includes it, cannot
# remap absolute include paths and cannot read a string, so the statement loop lives here; the
# tokens and the validity of each directive in its context still come from crossplane.

_GLOB_MAGIC = re.compile(r"[*?[]")


class _Reader:
    """Turns files into a tree of statements, with included files spliced in where written."""

    def __init__(self, conf_dir: str | None, include_map: dict[str, str] | None):
        self.conf_dir = conf_dir
        # Longest prefix first, so "/etc/nginx/conf.d" wins over "/etc/nginx".
        self.include_map = sorted((include_map or {}).items(), key=lambda kv: -len(kv[0]))
        self.files: list[str] = []
        self._reading: list[str] = []

    def read_file(self, path: str, ctx: tuple[str, ...], where: Where | None = None) -> list[_Stmt]:
        try:
            text = Path(path).read_text(encoding="utf-8", errors="replace")
        except OSError as e:
            raise ConfigError(f'open() "{path}" failed ({e.errno}: {e.strerror})', where) from None
        return self.read_text(text, path, ctx, where)

    def read_text(
        self, text: str, fname: str, ctx: tuple[str, ...], where: Where | None = None
    ) -> list[_Stmt]:
        key = fname if fname.startswith("<") else os.path.realpath(fname)
        if key in self._reading:
            # nginx itself would recurse until it runs out of file descriptors.
            raise ConfigError(f'include of "{fname}" is recursive', where)
        if fname not in self.files:
            self.files.append(fname)
        self._reading.append(key)
        try:
            tokens = _balance_braces(_lex_file_object(io.StringIO(text)), fname)
            return self._block(tokens, fname, ctx, freeform=False)
        except NgxParserBaseException as e:
            raise ConfigError(e.strerror, Where(e.filename or fname, e.lineno or 0)) from None
        finally:
            self._reading.pop()

    def _block(self, tokens, fname: str, ctx: tuple[str, ...], freeform: bool) -> list[_Stmt]:
        stmts: list[_Stmt] = []
        for token, line, quoted in tokens:
            if not quoted:
                if token == "}":
                    return stmts
                if token.startswith("#"):
                    continue
                if token in ("{", ";"):
                    raise ConfigError(f'unexpected "{token}"', Where(fname, line))
            where = Where(fname, line)
            args: list[str] = []
            while True:
                nxt = next(tokens, None)
                if nxt is None:
                    raise ConfigError('unexpected end of file, expecting ";" or "}"', where)
                term, term_line, term_quoted = nxt
                if term_quoted or term not in ("{", ";", "}"):
                    if term_quoted or not term.startswith("#"):
                        args.append(term)
                    continue
                break
            if term == "}":
                raise ConfigError('unexpected "}"', Where(fname, term_line))
            stmt = _Stmt(token, args, where)
            if not freeform:
                analyze(fname, {"directive": token, "line": line, "args": args}, term, ctx, strict=True)
                if token == "include":
                    stmts.extend(self._include(stmt, ctx))
                    continue
            if term == "{":
                inner = enter_block_ctx({"directive": token}, ctx)
                stmt.block = self._block(tokens, fname, inner, freeform or token in _FREEFORM_BLOCKS)
            stmts.append(stmt)
        return stmts

    def _include(self, stmt: _Stmt, ctx: tuple[str, ...]) -> list[_Stmt]:
        pattern = stmt.args[0]
        if os.path.isabs(pattern):
            pattern = self._remap(pattern)
        elif self.conf_dir is None:
            raise ConfigError(
                f'relative include "{pattern}" needs a base directory (pass base_dir)', stmt.where
            )
        else:
            pattern = os.path.join(self.conf_dir, pattern)
        if _GLOB_MAGIC.search(pattern):
            names = sorted(n for n in glob.glob(pattern) if os.path.isfile(n))
        else:
            names = [pattern]
        out: list[_Stmt] = []
        for name in names:
            out.extend(self.read_file(name, ctx, stmt.where))
        return out

    def _remap(self, path: str) -> str:
        for prefix, replacement in self.include_map:
            p = prefix.rstrip("/")
            if path == p or path.startswith(p + "/"):
                return replacement.rstrip("/") + path[len(p) :]
        return path


# ---------------------------------------------------------------------------------------------
# The main context


class _Builder(_HttpBuilder, _StreamBuilder):
    """Walks the statement tree once, validating as nginx does, and builds the frozen objects.

    The main context is read here; each other context's directives by the builder for it.
    """

    def build(self, stmts: list[_Stmt], file: str, files: list[str]) -> NginxConf:
        http = stream = None
        seen: set[str] = set()
        workers: int | None = None
        for st in stmts:
            d = st.directive
            if d in ("http", "stream", "events", "worker_processes"):
                if d in seen:
                    raise ConfigError(f'"{d}" directive is duplicate', st.where)
                seen.add(d)
            if d == "http":
                http = self.http(st)
            elif d == "stream":
                stream = self.stream(st)
            elif d == "worker_processes":
                workers = self.worker_processes(st)
            else:
                self.skip(st)
        return NginxConf(
            file=file,
            worker_processes=workers if workers is not None else 1,
            http=http,
            stream=stream,
            not_simulated=tuple(self.not_simulated),
            files=tuple(files),
        )

    def worker_processes(self, st: _Stmt) -> int:
        if st.args[0] == "auto":
            return 2  # not the host's CPU count: a run must not depend on the machine (docs/config.md)
        n = _parse_int(st.args[0])
        if not n:
            raise ConfigError('"worker_processes" directive invalid value', st.where)
        return n


# ---------------------------------------------------------------------------------------------
# Entry points


def load(path: str | Path, *, include_map: dict[str, str] | None = None) -> NginxConf:
    """Parse an nginx.conf file (and what it includes) into a validated :class:`NginxConf`.

    Relative ``include`` paths are taken from the main file's directory, as nginx takes them
    from its configuration prefix. ``include_map`` remaps absolute include paths by prefix
    (``{"/etc/nginx": "scenarios/configs"}``), so a config written for a real server can be
    read from the repository.
    """
    file = str(path)
    reader = _Reader(os.path.dirname(file), include_map)
    stmts = reader.read_file(file, ())
    return _Builder().build(stmts, file, reader.files)


def loads(
    text: str,
    *,
    filename: str = "<inline>",
    base_dir: str | Path | None = None,
    include_map: dict[str, str] | None = None,
) -> NginxConf:
    """Parse configuration text; relative includes are taken from ``base_dir``."""
    reader = _Reader(None if base_dir is None else str(base_dir), include_map)
    stmts = reader.read_text(text, filename, ())
    return _Builder().build(stmts, filename, reader.files)
