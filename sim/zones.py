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


class LocationZone:
    """``/http/location_zones/{name}``."""

    __slots__ = ("name", "requests", "responses", "codes", "discarded", "received", "sent")

    def __init__(self, name: str):
        self.name = name
        self.reset_statistics()

    def reset_statistics(self) -> None:
        self.requests = 0
        self.responses = [0, 0, 0, 0, 0]
        self.codes: dict[int, int] = {}
        self.discarded = 0
        self.received = 0
        self.sent = 0

    def respond(self, status: int, nbytes: int) -> None:
        self.responses[status // 100 - 1] += 1
        codes = self.codes
        codes[status] = codes.get(status, 0) + 1
        self.sent += nbytes

    @property
    def responses_total(self) -> int:
        return sum(self.responses)


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
