"""Errors of the NGINX Plus API: the one table from error code to HTTP status, and their bodies.

The model raises :class:`sim.core.errors.SimError` subclasses named after NGINX's codes, with nginx's
wording and no HTTP status; the API layer raises :class:`ApiError` for what it checks itself
(unknown version or path, read-only API, bodies that are not JSON ...). Both become the NGINX
error object (``{"error": {"status", "text", "code"}, "request_id", "href"}``, with ``path`` and
``method`` first in API 1-3) through :data:`STATUS`, the single code -> status table, built from
the catalogue in ``api/versions.py`` plus the codes only the model knows.

What nginx itself answers outside the API module (``allow``/``deny``, ``limit_req``,
``limit_conn``, a crash inside a handler) is nginx's HTML error page, as on a real server: see
:func:`html_page` and docs/api-server.md.
"""

from __future__ import annotations

from sim.core.errors import SimError

from . import versions as V

#: Error code -> HTTP status: every code of the API catalogue, then the model's own codes.
STATUS: dict[str, int] = {code: err.status for code, err in V.ERRORS.items()}

#: Model codes shown to clients under another code (nginx documents a code-less 413 for a
#: keyval pair that does not fit; docs/keyval.md).
WIRE_CODE: dict[str, str] = {"KeyvalZoneFull": "RequestEntityTooLarge"}

#: Status of a model error whose code is in neither table (a newer model exception).
UNKNOWN_MODEL_STATUS = 400


#: Codes nginx documents from API 6 on, and what clustersim answers in versions 1-5 instead
#: (docs/api-server.md): a body nginx could not take whole, a duplicate server.
BEFORE_V6: dict[str, str] = {
    "RequestEntityTooLarge": "JsonError",
    "BodyReadError": "JsonError",
    "EntryExists": "UpstreamConfFormatError",
}
#: The same for model codes whose v6+ wire code says too little in 1-5.
MODEL_BEFORE_V6: dict[str, str] = {"KeyvalZoneFull": "KeyvalFormatError"}


class ApiError(Exception):
    """An error answered with the NGINX error object; ``text`` defaults to the catalogue's wording.

    ``model_code`` is the model's own code when the error came from :func:`from_sim`.
    """

    def __init__(self, code: str, text: str | None = None, *, status: int | None = None,
                 model_code: str | None = None):
        self.code = code
        self.status = status if status is not None else STATUS.get(code, UNKNOWN_MODEL_STATUS)
        self.text = text if text is not None else V.ERRORS[code].text
        self.model_code = model_code
        super().__init__(f"{self.status} {self.code}: {self.text}")

    def in_version(self, version: int) -> ApiError:
        """This error as API ``version`` answers it (codes of 6+ have stand-ins in 1-5)."""
        if version >= 6:
            return self
        code = MODEL_BEFORE_V6.get(self.model_code or "") or BEFORE_V6.get(self.code)
        if code is None:
            return self
        own_text = self.code not in V.ERRORS or self.text != V.ERRORS[self.code].text
        return ApiError(code, self.text if own_text else None, model_code=self.model_code)


def from_sim(exc: SimError) -> ApiError:
    """The API error for a model exception (the mapping of DESIGN.md section 2)."""
    code = WIRE_CODE.get(exc.code, exc.code)
    return ApiError(code, exc.text, status=STATUS.get(code, UNKNOWN_MODEL_STATUS), model_code=exc.code)


# --------------------------------------------------------------------------------------------------
# nginx's own error pages

_REASONS = {
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    405: "Not Allowed",
    413: "Request Entity Too Large",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Temporarily Unavailable",
    504: "Gateway Time-out",
}


def html_page(status: int, nginx_version: str) -> bytes:
    """nginx's built-in error page for ``status`` (``server_tokens on``: the version in the tail)."""
    reason = _REASONS.get(status, "Error")
    title = f"{status} {reason}"
    return (
        f"<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n"
        f"<center><h1>{title}</h1></center>\r\n"
        f"<hr><center>nginx/{nginx_version}</center>\r\n</body>\r\n</html>\r\n"
    ).encode()
