"""The errors of keyval zones, named after the NGINX Plus API error codes they become.

They live apart from :mod:`sim.zones.keyval` and :mod:`sim.zones.keyval_store` (which re-export
them) because those two are compiled by mypyc, and an exception class compiled there would not
keep the ``code`` class attribute that ``api/`` maps to an HTTP status.
"""

from __future__ import annotations

from sim.core.errors import SimError


class KeyvalFormatError(SimError):
    """A request body the keyval API rejects: ``text`` is nginx's wording."""

    code = "KeyvalFormatError"


class KeyvalKeyExists(SimError):
    """POST of a key that is already in the zone."""

    code = "KeyvalKeyExists"

    def __init__(self, key: str):
        self.key = key
        super().__init__(f'key "{key}" already exists')


class KeyvalKeyNotFound(SimError):
    """PATCH or GET ``?key=`` of a key that is not in the zone."""

    code = "KeyvalKeyNotFound"

    def __init__(self, key: str):
        self.key = key
        super().__init__("keyval key not found")


class KeyvalZoneFull(SimError):
    """The zone's shared memory cannot hold the new pair (docs/keyval.md: the API answers 413)."""

    code = "KeyvalZoneFull"

    def __init__(self, zone: str, needed: int):
        self.zone = zone
        self.needed = needed
        super().__init__(f'not enough memory in keyval zone "{zone}"')


class KeyvalStateError(ValueError):
    """A state file that clustersim did not write (or wrote with another format version)."""


__all__ = ["KeyvalFormatError", "KeyvalKeyExists", "KeyvalKeyNotFound", "KeyvalStateError", "KeyvalZoneFull"]
