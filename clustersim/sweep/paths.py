"""Dotted paths into a scenario (``workloads.0.rate``) and into its nginx.conf (``nginx:...``).

A path is segments joined by dots; a segment holding dots itself goes in brackets
(``backends[backend2.example.com:80].service_time.mean``); a segment of digits indexes a list.

A path starting with ``nginx:`` edits the scenario's nginx.conf instead. Its segments walk the
configuration's blocks by directive name, a bracket selecting blocks by their arguments
(``upstream[backend]``, ``location[/]``; a ``server`` block also matches one of its
``server_name`` values), and the last segment names the directive to set in every matching
block. A level is that directive's arguments (``"least_time header"``), or ``null`` to remove
it. The segment ``balancer`` stands for the balancing method of an upstream: the level
replaces whichever of ``least_conn``, ``least_time``, ``hash``, ``ip_hash`` and ``random`` the
block has, and ``round_robin`` (nginx's default) removes them.
"""

from __future__ import annotations

import copy
import re
import shlex

NGINX_PREFIX = "nginx:"
BALANCERS = ("least_conn", "least_time", "hash", "ip_hash", "random")


class PathError(ValueError):
    """A path that does not parse or does not lead anywhere; the message is the reason."""


_SEGMENT = re.compile(r"([^.\[\]]+)?(?:\[([^\]]*)\])?")


def _tokens(path: str) -> list[tuple[str | None, str | None]]:
    """``a.b[c.d].0`` -> ``[('a', None), ('b', 'c.d'), ('0', None)]``: each name with its bracket."""
    if not isinstance(path, str) or not path.strip():
        raise PathError("a path must be a non-empty string")
    out: list[tuple[str | None, str | None]] = []
    pos = 0
    text = path.strip()
    while pos < len(text):
        m = _SEGMENT.match(text, pos)
        if not m or m.end() == pos:
            raise PathError(f"cannot parse {path!r} at {text[pos:]!r}")
        name, bracket = m.group(1), m.group(2)
        if bracket is not None and not bracket:
            raise PathError(f"empty brackets in {path!r}")
        out.append((name, bracket))
        pos = m.end()
        if pos < len(text):
            if text[pos] == "[":
                continue
            if text[pos] != ".":
                raise PathError(f"expected '.' at {text[pos:]!r} in {path!r}")
            pos += 1
            if pos == len(text):
                raise PathError(f"{path!r} ends with '.'")
    return out


def split(path: str) -> list:
    """``a.b[c.d].0`` -> ``['a', 'b', 'c.d', 0]``: a bracket is a segment of its own, digits index lists."""
    out: list = []
    for name, bracket in _tokens(path):
        if name is not None:
            out.append(int(name) if name.isdigit() else name)
        if bracket is not None:
            out.append(bracket)
    return out


def set_in(data: dict, path: str, value) -> None:
    """Set ``value`` at ``path`` inside the scenario data (mappings on the way are created)."""
    segs = split(path)
    cur = data
    for i, seg in enumerate(segs):
        last = i == len(segs) - 1
        where = ".".join(str(s) for s in segs[: i + 1])
        if isinstance(cur, list):
            if not isinstance(seg, int):
                raise PathError(f"{where}: a list is indexed by a number")
            if seg >= len(cur):
                raise PathError(f"{where}: the list has {len(cur)} items")
            if last:
                cur[seg] = value
            else:
                cur = cur[seg]
        elif isinstance(cur, dict):
            key = seg if seg in cur or not isinstance(seg, int) else str(seg)
            if isinstance(seg, int) and seg not in cur and str(seg) in cur:
                key = str(seg)
            if last:
                cur[key] = value
            else:
                if key not in cur or cur[key] is None:
                    cur[key] = {}
                cur = cur[key]
        else:
            raise PathError(f"{where}: {'.'.join(str(s) for s in segs[:i]) or 'it'} is a {type(cur).__name__}, "
                            "not a mapping or a list")


# --- nginx.conf edits on crossplane's parsed form ---------------------------------------------


def conf_segments(path: str) -> list[tuple[str, str | None]]:
    """``nginx:http.upstream[backend].balancer`` -> ``[('http', None), ('upstream', 'backend'), ('balancer', None)]``."""
    segs = []
    for name, bracket in _tokens(path[len(NGINX_PREFIX):]):
        if name is None:
            raise PathError(f"{path}: a bracket selects the blocks of the directive before it")
        segs.append((name, bracket))
    if len(segs) < 2:
        raise PathError(f"{path}: name at least a block and a directive (nginx:http.upstream[backend].balancer)")
    if segs[-1][1] is not None:
        raise PathError(f"{path}: the last segment is the directive to set, without brackets")
    return segs


def _matches(stmt: dict, name: str, selector: str | None) -> bool:
    if stmt.get("directive") != name:
        return False
    if selector is None:
        return True
    if " ".join(stmt.get("args", [])) == selector:
        return True
    if name == "server":
        for d in stmt.get("block") or []:
            if d.get("directive") == "server_name" and selector in d.get("args", []):
                return True
    return False


def blocks_at(parsed: list, segs: list[tuple[str, str | None]]) -> list[list]:
    """The statement lists of every block the path's block segments select."""
    current = [parsed]
    for name, selector in segs[:-1]:
        nxt = []
        for stmts in current:
            for st in stmts:
                if _matches(st, name, selector) and st.get("block") is not None:
                    nxt.append(st["block"])
        current = nxt
    return current


def edit_conf(parsed: list, path: str, value) -> list:
    """A copy of crossplane's parsed statements with the path's directive set to ``value``."""
    segs = conf_segments(path)
    parsed = copy.deepcopy(parsed)
    blocks = blocks_at(parsed, segs)
    if not blocks:
        where = ".".join(n + (f"[{s}]" if s else "") for n, s in segs[:-1])
        raise PathError(f"{path}: no block matches {where} in the nginx.conf")
    directive = segs[-1][0]
    if value is not None and not isinstance(value, str | int | float) or isinstance(value, bool):
        raise PathError(f"{path}: a level of an nginx.conf directive is a string of arguments or null")
    for block in blocks:
        if directive == "balancer":
            block[:] = [st for st in block if st.get("directive") not in BALANCERS]
            if value is not None and str(value) != "round_robin":
                words = shlex.split(str(value))
                if words[0] not in BALANCERS:
                    raise PathError(f"{path}: {words[0]!r} is not a balancing method "
                                    f"(round_robin, {', '.join(BALANCERS)})")
                block.insert(0, {"directive": words[0], "args": words[1:]})
            continue
        first = next((k for k, st in enumerate(block) if st.get("directive") == directive), None)
        block[:] = [st for st in block if st.get("directive") != directive]
        if value is not None:
            stmt = {"directive": directive, "args": shlex.split(str(value))}
            block.insert(len(block) if first is None else first, stmt)
    return parsed
