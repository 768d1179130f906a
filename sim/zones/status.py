"""Status zones (``status_zone``) of http servers and locations, and SSL counters.

A server zone counts what the server blocks sharing it received and answered; a location zone
(API 5+) counts the same for locations, without ``processing``. Several blocks may share one
zone, as in nginx. Field names are the API's.
"""

from __future__ import annotations

#: The counters of an ``ssl`` object, in the API's order.
SSL_FIELDS = (
    "handshakes",
    "handshakes_failed",
    "session_reuses",
    "no_common_protocol",
    "no_common_cipher",
    "handshake_timeout",
    "peer_rejected_cert",
    "verify_no_cert",
    "verify_expired_cert",
    "verify_revoked_cert",
    "verify_hostname_mismatch",
    "verify_other",
)


class SslCounters:
    """``/ssl`` and the per-zone ``ssl`` object (API 8 adds the detailed failure counters)."""

    __slots__ = SSL_FIELDS

    def __init__(self) -> None:
        self.handshakes = 0
        self.handshakes_failed = 0
        self.session_reuses = 0
        self.no_common_protocol = 0
        self.no_common_cipher = 0
        self.handshake_timeout = 0
        self.peer_rejected_cert = 0
        self.verify_no_cert = 0
        self.verify_expired_cert = 0
        self.verify_revoked_cert = 0
        self.verify_hostname_mismatch = 0
        self.verify_other = 0

    def reset_statistics(self) -> None:
        for name in SSL_FIELDS:
            setattr(self, name, 0)

    def count_failure(self, reason: str) -> None:
        """A failed handshake, with the reason the detailed counters know."""
        self.handshakes_failed += 1
        if reason in ("no_common_protocol", "no_common_cipher", "handshake_timeout", "peer_rejected_cert") or reason.startswith("verify_"):
            setattr(self, reason, getattr(self, reason) + 1)


class CodeCounts:
    """Counts per HTTP status code, for the request path: the most frequent code so far in a
    native field of its own, the others in a dict. :meth:`as_dict` reads them back."""

    __slots__ = ("_hot_code", "_hot_count", "_others")

    def __init__(self) -> None:
        self._hot_code = 200
        self._hot_count = 0
        self._others: dict[int, int] = {}

    def add(self, status: int) -> None:
        if status == self._hot_code:
            self._hot_count += 1
            return
        others = self._others
        n = others.get(status, 0) + 1
        if n > self._hot_count:  # now the most frequent code: the two swap places
            if self._hot_count:
                others[self._hot_code] = self._hot_count
            others.pop(status, None)
            self._hot_code = status
            self._hot_count = n
        else:
            others[status] = n

    def as_dict(self) -> dict[int, int]:
        """``{status: count}`` of the codes that occurred (a new dict)."""
        out = dict(self._others)
        if self._hot_count:
            out[self._hot_code] = self._hot_count
        return out


class LocationZone:
    """``/http/location_zones/{name}``.

    The counters are native fields (this module is compiled with the hot path); ``responses``
    (1xx..5xx, a list) and ``codes`` (per status, a dict) are built when read.
    """

    __slots__ = ("name", "requests", "discarded", "received", "sent", "_r1", "_r2", "_r3", "_r4", "_r5", "_codes")

    def __init__(self, name: str):
        self.name = name
        self.reset_statistics()

    def reset_statistics(self) -> None:
        self.requests = 0
        self.discarded = 0
        self.received = 0
        self.sent = 0
        self._r1 = self._r2 = self._r3 = self._r4 = self._r5 = 0
        self._codes = CodeCounts()

    def respond(self, status: int, nbytes: int) -> None:
        cls = status // 100
        if cls < 1 or cls > 5:
            raise ValueError(f"status {status} is not an HTTP status (100-599)")
        if cls == 2:
            self._r2 += 1
        elif cls == 3:
            self._r3 += 1
        elif cls == 4:
            self._r4 += 1
        elif cls == 5:
            self._r5 += 1
        else:
            self._r1 += 1
        self._codes.add(status)
        self.sent += nbytes

    @property
    def responses(self) -> list[int]:
        """Responses by class, 1xx..5xx."""
        return [self._r1, self._r2, self._r3, self._r4, self._r5]

    @property
    def codes(self) -> dict[int, int]:
        """Responses by status code (the codes that occurred)."""
        return self._codes.as_dict()

    @property
    def responses_total(self) -> int:
        return self._r1 + self._r2 + self._r3 + self._r4 + self._r5


class ServerZone(LocationZone):
    """``/http/server_zones/{name}``: a location zone plus ``processing`` and ``ssl``."""

    __slots__ = ("processing", "ssl")

    def __init__(self, name: str):
        self.processing = 0
        self.ssl = SslCounters()
        super().__init__(name)

    def reset_statistics(self) -> None:
        super().reset_statistics()
        if hasattr(self, "ssl"):
            self.ssl.reset_statistics()


class StreamServerZone:
    """``/stream/server_zones/{name}``: connections and sessions of stream servers."""

    __slots__ = ("name", "processing", "connections", "sessions", "discarded", "received", "sent", "ssl")

    def __init__(self, name: str):
        self.name = name
        self.processing = 0
        self.ssl = SslCounters()
        self.reset_statistics()

    def reset_statistics(self) -> None:
        self.connections = 0
        self.sessions = {"2xx": 0, "4xx": 0, "5xx": 0}
        self.discarded = 0
        self.received = 0
        self.sent = 0
        self.ssl.reset_statistics()

    def session_done(self, status: int) -> None:
        key = f"{status // 100}xx"
        if key in self.sessions:
            self.sessions[key] += 1

    @property
    def sessions_total(self) -> int:
        return sum(self.sessions.values())
