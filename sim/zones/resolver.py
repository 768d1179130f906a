"""nginx's DNS resolver (``resolver``) and its status zone (``/resolvers/{zone}``, API v5).

There is no DNS on the wire. A :class:`Resolver` answers from the scenario's host map, caches
good answers the way nginx does, and counts every query it would have sent in its
:class:`ResolverZone` (``resolver ... status_zone=name``).

Host map: a dict from a name to what the name server answers.

* a list of addresses, ``["10.0.0.1", "10.0.0.2"]`` -- NOERROR with those records. For an SRV
  query the entries are the records' ``"target:port"`` strings and come back as written. An
  empty list is NOERROR without records, which nginx treats as "host not found".
* an error word, bare or as a one-element list: ``"nxdomain"``, ``"servfail"``, ``"refused"``,
  ``"formerr"``, ``"notimp"``, or ``"timeout"`` (no answer at all).
* a name missing from the map is NXDOMAIN.

Names are compared without case and without a trailing dot. A query type ``"A"`` counts under
``requests.name`` (with ``ipv6=on`` nginx asks A and AAAA together; that counts once), ``"SRV"``
under ``requests.srv``, ``"PTR"`` (address to name) under ``requests.addr``. Each query sent
counts one response by its result; ``timedout`` when the name server never answers.

Good answers are cached for ``valid=`` when set, else for the records' TTL, which this model
takes as :data:`DEFAULT_TTL_MS` (30 s); a query answered from the cache counts nothing. Errors
are not cached by the resolver (nginx drops the node); the caller is told to come back after
``valid=`` or 10 s, as nginx tells its clients.
"""

from __future__ import annotations

from dataclasses import dataclass

from sim.conf.config import ResolverConf

#: The TTL this model gives every record in the host map.
DEFAULT_TTL_MS = 30_000
#: How long nginx tells a client to wait before asking again after an error, unless ``valid=``.
ERROR_VALID_MS = 10_000

RCODES = ("noerror", "formerr", "servfail", "nxdomain", "notimp", "refused", "timedout", "unknown")
_ERROR_WORDS = {
    "nxdomain": "nxdomain",
    "servfail": "servfail",
    "refused": "refused",
    "formerr": "formerr",
    "notimp": "notimp",
    "timeout": "timedout",
    "timedout": "timedout",
}
_REQUEST_KIND = {"A": "name", "AAAA": "name", "SRV": "srv", "PTR": "addr"}

HostMapValue = list[str] | str


class ResolverZone:
    """The counters of one resolver ``status_zone`` (shared by every resolver naming it)."""

    def __init__(self, name: str):
        self.name = name
        self.requests = {"name": 0, "srv": 0, "addr": 0}
        self.responses = dict.fromkeys(RCODES, 0)

    def reset_statistics(self) -> None:
        """DELETE ``/resolvers/{zone}``."""
        for k in self.requests:
            self.requests[k] = 0
        for k in self.responses:
            self.responses[k] = 0


@dataclass(frozen=True, slots=True)
class Answer:
    """What a lookup gives its caller.

    ``rcode`` is one of :data:`RCODES`; ``addrs`` the records (empty unless NOERROR);
    ``delay_ms`` how long the caller waits for it (the resolver timeout when no answer comes,
    else 0); ``valid_until_ms`` when the caller should ask again; ``cached`` whether it came
    from the cache without a query.
    """

    rcode: str
    addrs: tuple[str, ...]
    delay_ms: float
    valid_until_ms: float
    cached: bool

    @property
    def ok(self) -> bool:
        return self.rcode == "noerror" and bool(self.addrs)


def _normalize(name: str) -> str:
    return name.lower().rstrip(".")


def _parse_value(value: HostMapValue) -> tuple[str, tuple[str, ...]]:
    """A host map value as ``(rcode, records)``."""
    if isinstance(value, str):
        word = value.lower()
        if word not in _ERROR_WORDS:
            raise ValueError(f'unknown resolver answer "{value}"')
        return _ERROR_WORDS[word], ()
    items = list(value)
    if len(items) == 1 and items[0].lower() in _ERROR_WORDS:
        return _ERROR_WORDS[items[0].lower()], ()
    return "noerror", tuple(items)


class Resolver:
    """One ``resolver`` directive: answers from a host map, a cache, and the zone's counters."""

    def __init__(self, conf: ResolverConf, host_map: dict[str, HostMapValue], zone: ResolverZone | None = None):
        self.conf = conf
        self.zone = zone
        self.valid_ms = conf.valid_ms if conf.valid_ms is not None else DEFAULT_TTL_MS
        # (qtype, name) -> (records, expires at)
        self._cache: dict[tuple[str, str], tuple[tuple[str, ...], float]] = {}
        self._map: dict[str, tuple[str, tuple[str, ...]]] = {}
        for name, value in host_map.items():
            self.set_answer(name, value)

    def set_answer(self, name: str, answer: HostMapValue) -> None:
        """Change what the name server answers for ``name`` from now on (a DNS change or fault).

        Answers already cached stay until they expire, as they would in nginx.
        """
        self._map[_normalize(name)] = _parse_value(answer)

    def query(self, name: str, now_ms: float, qtype: str = "A") -> Answer:
        """Look ``name`` up as nginx would, counting the query if one is sent."""
        kind = _REQUEST_KIND.get(qtype)
        if kind is None:
            raise ValueError(f'unsupported query type "{qtype}"')
        if qtype == "AAAA":
            qtype = "A"
        name = _normalize(name)
        hit = self._cache.get((qtype, name))
        if hit is not None and now_ms < hit[1]:
            return Answer("noerror", hit[0], 0.0, hit[1], True)
        rcode, records = self._map.get(name, ("nxdomain", ()))
        if qtype == "A" and not self.conf.ipv6:
            records = tuple(a for a in records if ":" not in a)
        if self.zone is not None:
            self.zone.requests[kind] += 1
            self.zone.responses[rcode] += 1
        if rcode == "noerror" and records:
            expires = now_ms + self.valid_ms
            self._cache[(qtype, name)] = (records, expires)
            return Answer(rcode, records, 0.0, expires, False)
        self._cache.pop((qtype, name), None)
        delay = float(self.conf.timeout_ms) if rcode == "timedout" else 0.0
        retry_after = self.conf.valid_ms if self.conf.valid_ms is not None else ERROR_VALID_MS
        return Answer(rcode, (), delay, now_ms + delay + retry_after, False)

    def resolve(self, name: str, now_ms: float, qtype: str = "A") -> list[str] | None:
        """The records for ``name``, or None when the lookup fails (any error, or no records)."""
        answer = self.query(name, now_ms, qtype)
        return list(answer.addrs) if answer.ok else None
