"""Line numbers of a YAML document's fields, for error messages that name ``file:line: field``.

The scenario reader (:mod:`sim.cluster.scenario`) maps pydantic's error locations back to the
line of the field that failed.
"""

from __future__ import annotations

import yaml


def _line_map(node, path=(), out=None) -> dict[tuple, int]:
    """Map every field path in the YAML document to its 1-based line."""
    if out is None:
        out = {}
    out.setdefault(path, node.start_mark.line + 1)  # a key's own line wins over its value's
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            key = k.value
            try:
                key = int(key)
            except (TypeError, ValueError):
                pass
            out[(*path, key)] = k.start_mark.line + 1
            _line_map(v, (*path, key), out)
            if isinstance(key, int):
                out.setdefault((*path, str(key)), k.start_mark.line + 1)
    elif isinstance(node, yaml.SequenceNode):
        for i, v in enumerate(node.value):
            _line_map(v, (*path, i), out)
    return out


_TYPE_LABELS = ("int", "str", "float", "bool", "none")


def _clean_loc(loc) -> tuple:
    """Drop pydantic's type labels (``'int'``, ``'list[NodeModel]'``...) from an error location."""
    return tuple(
        p for p in loc
        if not (isinstance(p, str) and (p in _TYPE_LABELS or "[" in p or p.startswith("function-")))
    )


def _line_for(lines: dict[tuple, int], loc: tuple) -> int:
    loc = tuple(loc)
    while loc:
        if loc in lines:
            return lines[loc]
        loc = loc[:-1]
    return lines.get((), 1)


def _field(loc: tuple) -> str:
    parts = []
    for p in loc:
        if isinstance(p, int):
            parts.append(f"[{p}]")
        elif p in ("int", "list[NodeModel]", "list[str]", "function-before[_duration(), float]") or str(p).startswith(("function-", "literal[")):
            continue
        else:
            parts.append(("." if parts else "") + str(p))
    return "".join(parts) or "(top level)"


def read_mapping(text: str, filename: str, what: str, error: type[Exception]):
    """Parse a YAML document that must be a mapping: ``(node tree, data)``, or ``error`` with
    ``file:line`` for a syntax error and ``file:1`` when the top level is not a mapping of
    ``what`` fields (the scenario and sweep readers)."""
    try:
        root = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = mark.line + 1 if mark else 1
        raise error(f"{filename}:{line}: YAML syntax: {getattr(e, 'problem', e)}") from None
    if root is None or not isinstance(data, dict):
        raise error(f"{filename}:1: (top level): expected a mapping of {what} fields")
    return root, data
