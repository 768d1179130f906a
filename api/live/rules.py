"""nginx's rules for a request's head, applied around the HTTP parser (httptools).

The parser says what a request means; these say what nginx accepts:

* :class:`HeadBudget`: the header buffers. nginx reads a request's head into a buffer of
  ``client_header_buffer_size``; when it fills up before the head is complete, the line being
  read moves to one of ``large_client_header_buffers`` (number, size). A line that does not fit
  in one large buffer, or a head that needs more large buffers than there are, is refused: 414
  while the request line is being read, 494 (sent as 400 "Request Header Or Cookie Too Large")
  during the header lines. The budget counts the bytes of each line as they arrive, before they
  reach the parser, so a client cannot make the server hold more than those buffers.
* :func:`normalize_path`: the URI as nginx matches locations against it: percent-decoded, with
  ``.`` and ``..`` segments resolved and, with ``merge_slashes on``, runs of slashes made one.
  A ``..`` above the root, a bad escape or an encoded NUL make the request invalid (400).
* :func:`valid_host`: the ``Host`` header (or the request line's host) as nginx validates it.
* :class:`RequestLine`: the two places where llhttp is stricter than nginx about the request
  line, smoothed over before the parser sees it (see the class).
"""

from __future__ import annotations

from sim.conf.config import ClientConf


class HeadTooLarge(Exception):
    """The head does not fit in nginx's header buffers: 414 or 494."""

    def __init__(self, status: int, at: int):
        super().__init__(status)
        self.status = status
        self.at = at  # how many bytes of the data given were taken before the limit was hit


class HeadBudget:
    """The header buffers of one request, as nginx fills them (see the module docstring)."""

    __slots__ = ("first", "default_large", "large_number", "large_size", "cap", "used", "line", "line_start",
                 "busy", "request_line", "lines", "prev")

    def __init__(self, conf: ClientConf):
        self.first = conf.header_buffer_size
        self.default_large = conf.large_header_buffers
        self.reset()

    def use_large_buffers(self, large: tuple[int, int]) -> None:
        """From now on in this head, large buffers are ``(number, size)``: nginx takes them from
        the server ``Host`` chose once it has read that line (the buffers already taken stay)."""
        self.large_number, self.large_size = large

    def reset(self) -> None:
        self.large_number, self.large_size = self.default_large  # the default server's
        self.cap = self.first  # the buffer being filled
        self.used = 0  # bytes in it
        self.line = 0  # bytes of the line being read (in that buffer)
        self.line_start = b""  # its first byte, to know an empty line
        self.busy = 0  # large buffers taken
        self.request_line = True
        self.lines = 0  # non-empty lines read
        self.prev = b""

    def _fill(self, n: int, data: bytes | bytearray, pos: int) -> None:
        """Put ``n`` bytes (of a line that goes on) into the buffers, taking a new one when full."""
        while n > 0:
            room = self.cap - self.used
            if room == 0:
                self._next_buffer(pos)
                continue
            take = n if n < room else room
            self.used += take
            self.line += take
            n -= take
            pos += take

    def _next_buffer(self, pos: int) -> None:
        if self.request_line and self.lines == 0 and self.line == 0:
            self.used = 0  # only empty lines so far: nginx starts the buffer again
            return
        if self.line >= self.large_size or self.busy >= self.large_number:
            raise HeadTooLarge(414 if self.request_line else 494, pos)
        self.busy += 1
        self.cap = self.large_size
        self.used = self.line  # the line read so far moves to the new buffer

    def feed(self, data: bytes | bytearray, start: int = 0) -> int:
        """Account ``data[start:]``; the offset just past the head's end, or -1 if it goes on.
        Raises :class:`HeadTooLarge` when the head outgrows the buffers."""
        pos = start
        end = len(data)
        while pos < end:
            nl = data.find(b"\n", pos)
            stop = end if nl < 0 else nl + 1
            if self.line == 0:
                self.line_start = data[pos : pos + 1]
            # the whole piece, newline included, has to fit: fill up to its last byte, then check
            # there is room for it in the buffer the line ends in
            self._fill(stop - pos, data, pos)
            if nl < 0:
                return -1
            empty = self.line == 1 or (self.line == 2 and self.line_start == b"\r")
            self.line = 0
            pos = stop
            if empty:
                if self.lines:
                    return pos
                continue  # nginx skips empty lines before the request line
            self.lines += 1
            self.request_line = False
        return -1


# ---------------------------------------------------------------------------------------------
# the request line

#: Methods llhttp is handed as they are; any other method token nginx takes reaches it as GET.
PARSER_METHODS = frozenset((b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"OPTIONS", b"PATCH", b"TRACE",
                            b"CONNECT"))
_METHOD_BYTES = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ_-")
_MAX_METHOD = 64


class RequestLine:
    """Where nginx's request line is wider than llhttp's, before the bytes reach the parser.

    * **Methods.** nginx takes any method made of upper-case letters, ``_`` and ``-`` (an
      unknown one is then for the location to answer: ``return`` and ``proxy_pass`` take it,
      a static file gets 405); llhttp knows a fixed list and refuses the rest. The method token
      is therefore held until its space arrives, and a valid token outside
      :data:`PARSER_METHODS` is handed to llhttp as ``GET``, which parses the rest of the
      request the same way (llhttp decides a request's body by its headers, whatever the
      method); :attr:`method` keeps the token as sent. A token nginx would refuse is passed
      through for llhttp to refuse (400, as nginx). Only the method is looked at: the rest of
      the line is llhttp's to parse.
    * **A bare LF** ending the request line (``GET / HTTP/1.1\\n``): nginx takes it, llhttp's
      leniency for a missing CR does not cover that line, so the CR is added. After the
      request line, llhttp's ``lenient_optional_cr_before_lf`` does the same for the headers.

    :meth:`feed` takes the bytes of one request, as they come, and returns what to give the
    parser; :meth:`reset` starts the next request.
    """

    __slots__ = ("held", "line_done", "last_cr", "method")

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.held: bytes | None = b""  # the method token so far; None once it has been passed on
        self.line_done = False
        self.last_cr = False
        self.method: str | None = None  # the method as sent, when llhttp was handed GET for it

    def feed(self, data: bytes) -> bytes:
        if self.line_done:
            return data
        out = b""
        i, n = 0, len(data)
        if self.held is not None:
            if not self.held:
                while i < n and data[i] in (13, 10):  # empty lines before the request line
                    i += 1
                out, data, i, n = data[:i], data[i:], 0, n - i
            j = data.find(b" ")
            token = self.held + (data if j < 0 else data[:j])
            valid = len(token) <= _MAX_METHOD and all(c in _METHOD_BYTES for c in token)
            if valid and j < 0:
                self.held = token  # the method goes on in the next bytes
                return out
            self.held = None
            if valid and token not in PARSER_METHODS:
                self.method = token.decode("ascii")
                token = b"GET"
            out += token
            if j < 0:
                return out
            data, i, n = data[j:], 0, n - j
        k = data.find(b"\n", i)
        if k < 0:
            if n:
                self.last_cr = data[n - 1] == 13
            return out + data
        cr = data[k - 1] == 13 if k > 0 else self.last_cr
        self.line_done = True
        return out + data[:k] + (b"\n" if cr else b"\r\n") + data[k + 1:]


# ---------------------------------------------------------------------------------------------
# the URI


def _hex(c: str) -> int:
    return int(c, 16) if c in "0123456789abcdefABCDEF" else -1


def normalize_path(raw: str, merge_slashes: bool = True) -> tuple[str, str | None] | None:
    """``(path, args)`` of a request target's origin form as nginx matches it, or None (400).

    Escapes are decoded and the decoded character then counts as if it had been written (an
    encoded ``/`` separates segments, an encoded ``.`` makes a dot segment), except ``%``,
    ``#`` and ``?``, which stay ordinary characters. ``args`` is what follows the first ``?``
    (None without one); a ``#`` ends the path.
    """
    out: list[str] = []
    state = "text"  # "slash": after a "/"; "dot": "/."; "dots": "/.."
    i, n = 0, len(raw)
    args = None
    while True:
        if i >= n:
            break
        c = raw[i]
        i += 1
        literal = False
        if c == "%":
            hi = _hex(raw[i]) if i < n else -1
            lo = _hex(raw[i + 1]) if i + 1 < n else -1
            if hi < 0 or lo < 0:
                return None
            c = chr(hi * 16 + lo)
            i += 2
            if c == "\0":
                return None
            literal = c in "%#?"
        elif c == "?":
            args = raw[i:].split("#", 1)[0]
            break
        elif c == "#":
            break
        if literal or (c != "/" and c != "."):
            out.append(c)
            state = "text"
        elif c == "/":
            if state == "slash":
                if not merge_slashes:
                    out.append("/")
            elif state == "dot":
                out.pop()  # "/./": the "." goes
                state = "slash"
            elif state == "dots":
                if not _up(out):
                    return None
                state = "slash"
            else:
                out.append("/")
                state = "slash"
        else:  # "."
            out.append(".")
            state = {"slash": "dot", "dot": "dots"}.get(state, "text")
    if state == "dot":
        out.pop()
    elif state == "dots" and not _up(out):
        return None
    return "".join(out), args


def _up(out: list[str]) -> bool:
    """``out`` ends with "/..": drop it and the segment before it; False above the root."""
    del out[-3:]
    while out and out[-1] != "/":
        out.pop()
    return bool(out)


_HOST_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~!$&'()*+,;=%")


def valid_host(host: str) -> str | None:
    """The host nginx takes from a ``Host`` value (lower case, port and a final dot dropped), or
    None when nginx refuses it (400): no "..", no characters outside a host name or an IP
    literal in brackets, no empty host after the port is dropped."""
    if host.startswith("["):
        end = host.find("]")
        if end < 0:
            return None
        name, rest = host[: end + 1], host[end + 1 :]
        if any(ch not in _HOST_CHARS and ch != ":" for ch in name[1:-1]):
            return None
    else:
        name, sep, rest = host.partition(":")
        rest = sep + rest
        if any(ch not in _HOST_CHARS for ch in name):
            return None
    if rest and (rest[0] != ":" or not rest[1:].isdigit()):
        return None
    if ".." in name:
        return None
    if name.endswith("."):
        name = name[:-1]
    if not name:
        return None
    return name.lower()


def absolute_host(target: bytes | bytearray) -> str | None:
    """The host of an absolute-form request target (``http://host/...``), which nginx takes over
    ``Host``; None for any other target or an invalid host."""
    url = bytes(target[:300])
    if not url.lower().startswith((b"http://", b"https://")):
        return None
    rest = url.split(b"://", 1)[1]
    for sep in (b"/", b"?"):
        rest = rest.split(sep, 1)[0]
    return valid_host(rest.decode("latin-1"))
