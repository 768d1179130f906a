"""The ``proxy_cache_*`` rules a request is judged by, apart from any one cache zone.

The cache key (``proxy_cache_key``) and the ``proxy_cache_bypass`` / ``proxy_no_cache``
predicates, both built by substituting request variables into a template; how long a response
stays valid (``X-Accel-Expires``, ``Cache-Control``, ``Expires``, then ``proxy_cache_valid``);
and the failure names of ``proxy_cache_use_stale``. Plain functions called once or twice per
request; :mod:`sim.http.cache` re-exports them.
"""

from __future__ import annotations

import re
from functools import lru_cache

from sim.conf.config import ProxyConf

#: Failure kinds ``proxy_cache_use_stale`` can name (besides ``updating``).
STALE_FAILURES = (
    "error",
    "timeout",
    "invalid_header",
    "http_500",
    "http_502",
    "http_503",
    "http_504",
    "http_403",
    "http_404",
    "http_429",
)
_FAILURE_OF_STATUS = {code: f"http_{code}" for code in (500, 502, 503, 504, 403, 404, 429)}
_TIME_ONLY_CODES = (200, 301, 302)


def failure_kind(status_code: int) -> str | None:
    """The ``proxy_cache_use_stale`` name of a backend status (``502`` -> ``"http_502"``), or None."""
    return _FAILURE_OF_STATUS.get(status_code)


# ---------------------------------------------------------------------------------------------
# Variables: cache keys and the bypass / no_cache predicates

_VARIABLE = re.compile(r"\$(?:\{(\w+)\}|(\w+))")


@lru_cache(maxsize=1024)
def _compile(template: str) -> tuple[tuple[str, str | None], ...]:
    """``"$scheme$host/x"`` -> ((literal, variable name or None), ...), parsed once per template."""
    parts: list[tuple[str, str | None]] = []
    pos = 0
    for m in _VARIABLE.finditer(template):
        parts.append((template[pos : m.start()], m.group(1) or m.group(2)))
        pos = m.end()
    if pos < len(template):
        parts.append((template[pos:], None))
    return tuple(parts)


def expand(template: str, request_vars: dict[str, str]) -> str:
    """Substitute ``$name`` / ``${name}`` from ``request_vars`` (names without ``$``; unknown -> "")."""
    parts = _compile(template)
    if len(parts) == 1 and parts[0][1] is None:
        return parts[0][0]
    get = request_vars.get
    return "".join(lit + (get(name, "") if name else "") for lit, name in parts)


def cache_key(template: str, request_vars: dict[str, str]) -> str:
    """The ``proxy_cache_key`` of a request (default template ``$scheme$proxy_host$request_uri``)."""
    return expand(template, request_vars)


def evaluate_bypass(values: tuple[str, ...], request_vars: dict[str, str]) -> bool:
    """nginx's predicate for ``proxy_cache_bypass`` and ``proxy_no_cache``.

    True when at least one value, with its variables substituted (``$cookie_nocache``,
    ``$arg_nocache``, ``$http_pragma`` ... looked up as ``cookie_nocache`` etc.), is neither
    empty nor ``"0"``.
    """
    for value in values:
        v = expand(value, request_vars)
        if v and v != "0":
            return True
    return False


# ---------------------------------------------------------------------------------------------
# Validity


def valid_for(
    proxy: ProxyConf,
    status_code: int,
    max_age_ms: int | None = None,
    *,
    x_accel_expires_ms: int | None = None,
    expires_in_ms: int | None = None,
    no_store: bool = False,
    set_cookie: bool = False,
    vary_star: bool = False,
) -> int | None:
    """How long a response stays fresh in the cache (ms), or None when it must not be cached.

    The backend's headers come first, in nginx's order of priority: ``X-Accel-Expires``
    (seconds; 0 forbids caching), then ``Cache-Control`` (``no-cache``/``no-store``/``private``
    -> ``no_store=True`` forbids caching; ``max-age``/``s-maxage`` -> ``max_age_ms``, 0 forbids
    caching), then ``Expires`` (``expires_in_ms`` from now; in the past forbids caching).
    ``Set-Cookie`` or ``Vary: *`` forbid caching whatever else is said. Without a time from the
    headers, the first ``proxy_cache_valid`` that names the status (or ``any``) gives it; a time
    of 0 or no match means not cached. ``proxy_cache_valid`` with a time only covers 200, 301, 302.
    """
    if set_cookie or vary_star:
        return None
    if x_accel_expires_ms is not None:
        return x_accel_expires_ms if x_accel_expires_ms > 0 else None
    if no_store:
        return None
    if max_age_ms is not None:
        return max_age_ms if max_age_ms > 0 else None
    if expires_in_ms is not None:
        return expires_in_ms if expires_in_ms >= 0 else None
    for cv in proxy.cache_valid:
        codes = cv.codes if (cv.codes or cv.any) else _TIME_ONLY_CODES
        if cv.any or status_code in codes:
            return cv.time_ms if cv.time_ms > 0 else None
    return None

