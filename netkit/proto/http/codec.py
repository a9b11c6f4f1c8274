"""HTTP/1.1 messages (RFC 9110/9112) as a sans-IO codec: bytes in, events out, and back.

Theory of operation. A `Parser` reads one direction of a connection: requests
(role "server") or responses (role "client"). Feed it bytes with `feed()`, EOF
with `feed_eof()`, and take events with `next_event()` until it returns
`NEED_DATA`: a `Request` or `Response` head, `Data` chunks of the body, then
`EndOfMessage` (with trailers for chunked bodies). After that the next message
on the connection follows (pipelining); `CLOSED` when the peer closed cleanly
between messages. A `Request` asking to upgrade (or a
CONNECT) ends the HTTP part: `next_event()` returns `PAUSED` and
`trailing_data` holds the bytes that followed, for the caller's new protocol.

It is strict where leniency has been a request-smuggling hole: a
Content-Length beside Transfer-Encoding, differing Content-Lengths, chunk sizes
that are not plain hex, obs-fold, bare CR, whitespace before the colon,
invalid field names and values, unknown versions. Every such message raises
`RemoteProtocolError` with the status to answer (400, 413, 414, 431, 501, 505)
in `reply_hint`; nothing else ever escapes from the parser.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from netkit.errors import LocalProtocolError, RemoteProtocolError
from netkit.memo import Memo

NEED_DATA = object()  # feed more bytes (or EOF)
PAUSED = object()  # an upgrade or CONNECT: the rest of the stream is not HTTP
CLOSED = object()  # the peer closed cleanly between messages

# RFC 9110 5.6.2: token characters; 5.5: field values are VCHAR, obs-text, SP and HTAB
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_BAD_VALUE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
_REQUEST_LINE = re.compile(rb"([!#$%&'*+\-.^_`|~0-9A-Za-z]+) ([^ \x00-\x20\x7f]+) HTTP/(\d\.\d)")
_STATUS_LINE = re.compile(rb"HTTP/(\d)\.(\d) ([0-9]{3})(?: ([^\x00-\x08\x0a-\x1f\x7f]*))?")
# a whole field line: token name, colon, value with no CTL but HTAB (stripped afterwards:
# a regex that leaves out the whitespace around the value is three times slower)
_FIELD_LINE = re.compile(rb"([!#$%&'*+\-.^_`|~0-9A-Za-z]+):([^\x00-\x08\x0a-\x1f\x7f]*)")
_CHUNK_SIZE = re.compile(rb"([0-9A-Fa-f]{1,16})(?:[ \t]*;[^\r\n]*)?")
# The fast path for request heads (Parser._whole_request_head) checks bytes with
# bytes.translate and a table that maps the allowed bytes to 0 and the others to 1: one
# lookup per byte in C, then `1 in` (memchr). A regex costs 40-80 instructions a byte,
# which made a browser's 600-byte head cost more than everything else in a request.
_TOKEN_CHARS = b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_TOKEN_MAP = bytes(0 if c in _TOKEN_CHARS else 1 for c in range(256))
#: anywhere in a head: HTAB, CR, LF, SP, visible ASCII and obs-text (no other CTL, no DEL)
_HEAD_MAP = bytes(0 if c in (9, 10, 13) or 0x20 <= c != 0x7F else 1 for c in range(256))
#: request lines already checked -> (method, target, version): "GET / HTTP/1.1" and the
#: like repeat as field lines do
_KNOWN_STARTS = Memo()
#: field lines already checked -> ((name, value), (lower-case name, value), lower-case
#: name, (value,)): an item, a lowered item, an index key and its values. A client sends
#: the same Host, User-Agent, Accept... lines on every request: a hit is one dict lookup
#: instead of partition, strip, lower and the token check.
_KnownField = tuple[tuple[bytes, bytes], tuple[bytes, bytes], bytes, tuple[bytes]]
_KNOWN_LINES = Memo()  # of _KnownField
MAX_EMPTY_LINES = 4  # empty lines skipped before a request line; more is an attack
_COMMON_METHODS = frozenset((b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"PATCH",
                             b"OPTIONS"))
_VERSIONS = {b"HTTP/1.1": b"1.1", b"HTTP/1.0": b"1.0"}


@dataclass(frozen=True, slots=True)
class Limits:
    """Defaults follow nginx (8 KiB header buffers, 1 MiB body) and h11 (64 KiB heads)."""

    max_request_line: int = 8192  # nginx large_client_header_buffers: 8k -> 414
    max_headers: int = 100  # count -> 431
    max_header_bytes: int = 65536  # the whole head -> 431
    max_body: int = 1 << 20  # -> 413; 0 = no limit
    max_chunk_line: int = 4096  # a chunk-size line with its extensions


class Headers:
    """Fields in order, names case-insensitive, repeated names kept (RFC 9110 5.3)."""

    __slots__ = ("_index", "_items", "_lowered")

    def __init__(self, items: list[tuple[bytes, bytes]] | None = None,
                 index: dict[bytes, Sequence[bytes]] | None = None) -> None:
        self._items = items or []
        # lower-case name -> values (a list, or a tuple from the parser's fast path): built
        # on the first lookup, or handed in by the parser
        self._index = index
        # the items with lower-case names: made on first use (the parser's fast path sets it)
        self._lowered: list[tuple[bytes, bytes]] | None = None

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, name: bytes) -> bool:
        return self.has(name.lower())

    def has(self, lower_name: bytes) -> bool:
        """`lower_name in headers`, for a name already in lower case (no lower() per call)."""
        index = self._index
        return lower_name in index if index is not None else bool(self._values(lower_name))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Headers) and self._items == other._items

    def __repr__(self) -> str:
        return f"Headers({self._items!r})"

    def _values(self, name: bytes) -> Sequence[bytes]:
        index = self._index
        if index is None:  # built on the first lookup: a request is asked several times
            index = self._index = {}
            for n, v in self._items:
                index.setdefault(n.lower(), []).append(v)
        return index.get(name.lower(), ())

    def get_all(self, name: bytes) -> list[bytes]:
        return list(self._values(name))

    def get(self, name: bytes, default: bytes | None = None) -> bytes | None:
        values = self._values(name)  # no copy: `get` runs several times per message
        if not values:
            return default
        return values[0] if len(values) == 1 else b", ".join(values)

    def tokens(self, name: bytes) -> list[bytes]:
        """A comma-separated list field as lower-case tokens (Connection, Transfer-Encoding)."""
        out = []
        for value in self._values(name):
            out.extend(t.strip().lower() for t in value.split(b",") if t.strip())
        return out

    def lowered(self) -> list[tuple[bytes, bytes]]:
        """The fields in order with lower-case names (as ASGI and HTTP/2 want them), a new
        list each time."""
        if self._lowered is None:
            self._lowered = [(n.lower(), v) for n, v in self._items]
        return self._lowered.copy()

    def add(self, name: bytes, value: bytes) -> None:
        self._items.append((name, value))
        self._index = self._lowered = None


@dataclass(slots=True)
class Request:
    method: bytes
    target: bytes
    headers: Headers
    version: bytes = b"1.1"


@dataclass(slots=True)
class Response:
    status: int
    headers: Headers
    reason: bytes = b""
    version: bytes = b"1.1"


@dataclass(slots=True)
class Data:
    data: bytes


@dataclass(slots=True)
class EndOfMessage:
    trailers: Headers = field(default_factory=Headers)


def origin_form(target: bytes) -> bytes:
    """The path and query of a request target: an absolute-form target
    (``http://host/path?q``, RFC 9112 3.2.2, which a server must accept) loses its scheme
    and authority; other forms are returned as they are."""
    if target[:1] == b"/" or b"://" not in target[:12]:
        return target
    rest = target.partition(b"://")[2]
    slash = rest.find(b"/")
    query = rest.find(b"?")
    if slash < 0 or (0 <= query < slash):
        return b"/" + rest[query:] if query >= 0 else b"/"
    return rest[slash:]


def keep_alive(version: bytes, headers: Headers) -> bool:
    """RFC 9112 9.3: 1.1 persists unless "close"; 1.0 only with "keep-alive"."""
    if headers._index is not None and b"connection" not in headers._index:
        return version == b"1.1"
    tokens = headers.tokens(b"connection")
    if b"close" in tokens:
        return False
    return version == b"1.1" or b"keep-alive" in tokens


_new = object.__new__

# body framing states
_HEAD, _LENGTH, _CHUNK_SIZE_LINE, _CHUNK_DATA, _CHUNK_CRLF, _TRAILERS, _UNTIL_CLOSE, \
    _DONE, _PAUSED = range(9)


def _checked_start(line: bytes) -> tuple[bytes, bytes, bytes] | None:
    """A request line of the fast path, split and checked (None: not a plain, valid one),
    and remembered in _KNOWN_STARTS. The caller checks its length against the limit."""
    # int membership: far cheaper than b"\r" in line
    if 13 in line or 10 in line or 1 in line.translate(_HEAD_MAP):
        return None
    parts = line.split(b" ")
    if len(parts) != 3:
        return None
    method, target, version = parts
    version = _VERSIONS.get(version)
    if version is None or not target or 9 in target or \
            (method not in _COMMON_METHODS and not _TOKEN.fullmatch(method)):
        return None
    start = (method, target, version)
    _KNOWN_STARTS.remember(line, start, len(line))
    return start


def _checked_field(line: bytes) -> _KnownField | None:
    """A field line of the fast path, split and checked (None: not a plain, valid one),
    and remembered in _KNOWN_LINES."""
    name, colon, value = line.partition(b":")
    if not name or not colon or 13 in line or 10 in line or 1 in line.translate(_HEAD_MAP):
        return None
    key = name.lower()
    if 1 in key.translate(_TOKEN_MAP):
        return None  # not a token
    # strip() takes SP and HTAB only here: the other whitespace bytes are CTLs
    value = value.strip()
    field = ((name, value), (key, value), key, (value,))
    _KNOWN_LINES.remember(line, field, len(line))
    return field


class Parser:
    """Parses requests (role "server") or responses (role "client") from one byte stream."""

    def __init__(self, role: str, limits: Limits | None = None) -> None:
        if role not in ("server", "client"):
            raise LocalProtocolError(f"role must be server or client, not {role!r}")
        self.role = role
        self._server = role == "server"
        self.limits = limits or Limits()
        self._buf = bytearray()
        self._state = _HEAD
        self._left = 0  # bytes of body (or of the current chunk) still to come
        self._body_seen = 0
        self._eof = False
        self._methods: list[bytes] = []  # client: methods of requests sent, oldest first
        self.trailing_data = b""  # after PAUSED: bytes for the upgraded protocol
        self.empty_lines = 0  # skipped before the request being read (a head has begun)

    def expect_response_to(self, method: bytes) -> None:
        """Client: a request with this method was sent (HEAD and CONNECT change framing)."""
        self._methods.append(method.upper())

    def feed(self, data: bytes) -> None:
        if self._eof and data:
            raise LocalProtocolError("data fed after EOF")
        self._buf += data

    def feed_eof(self) -> None:
        self._eof = True

    def end_if_bodiless(self) -> bool:
        """Right after a head: True when the message has no body, which then counts as
        over (no EndOfMessage event follows): the common GET, one event instead of two."""
        if self._state == _LENGTH and self._left == 0:
            self._state = _HEAD
            return True
        return False

    @property
    def idle(self) -> bool:
        """Between messages with nothing buffered and no EOF: next_event() would only
        say NEED_DATA."""
        return not self._buf and not self._eof and self._state == _HEAD

    @property
    def body_length(self) -> int:
        """Bytes of body still to come by Content-Length (0 for chunked or none)."""
        return self._left if self._state == _LENGTH else 0

    @property
    def upgrading(self) -> bool:
        """Right after a CONNECT or Upgrade request (or a 101/2xx-to-CONNECT response):
        the rest of the stream is not HTTP (`trailing_data` holds what came with it)."""
        return self._state == _PAUSED

    @property
    def ended_by_close(self) -> bool:
        """The connection is over: a body ran until it closed, or it closed between
        messages. Nothing can follow."""
        return self._state == _DONE

    @property
    def pending(self) -> int:
        """Bytes received and not yet parsed (part of a head, say)."""
        return len(self._buf)

    def next_event(self) -> object:
        """The next event, NEED_DATA, or PAUSED; raises RemoteProtocolError on bad input."""
        state = self._state
        if state == _HEAD:
            if self._server and self._buf and not self.empty_lines:
                request = self._whole_request_head(self._buf)
                if request is not None:
                    return request
            return self._head()
        if state == _LENGTH:
            if self._left == 0:
                return self._end()
            if not self._buf:
                return self._need(f"{self._left} more body bytes")
            take = bytes(self._buf[:self._left])
            del self._buf[:len(take)]
            self._left -= len(take)
            return Data(take)
        if state == _UNTIL_CLOSE:
            if self._buf:
                data = bytes(self._buf)
                self._buf.clear()
                self._count_body(len(data))
                return Data(data)
            if self._eof:
                self._state = _DONE  # nothing can follow a body that ran until close
                return EndOfMessage(Headers())
            return NEED_DATA
        if state in (_CHUNK_SIZE_LINE, _CHUNK_DATA, _CHUNK_CRLF, _TRAILERS):
            return self._chunked()
        if state == _PAUSED:
            return PAUSED
        return CLOSED

    # --- heads ---

    def _need(self, what: str) -> object:
        if self._eof:
            raise RemoteProtocolError(f"connection closed with {what} missing",
                                      reply_hint=400)
        return NEED_DATA

    def _head(self) -> object:
        buf = self._buf
        if not buf and not self._eof:
            return NEED_DATA  # between messages (keep-alive): the common case
        if self._server:
            # RFC 9112 2.2: ignore at least one empty line before a request; a few, not
            # an endless stream of them (each would keep an idle connection alive)
            while buf.startswith(b"\r\n"):
                del buf[:2]
                self.empty_lines += 1
                if self.empty_lines > MAX_EMPTY_LINES:
                    raise RemoteProtocolError("too many empty lines before a request",
                                              reply_hint=400)
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            line_end = buf.find(b"\r\n")
            if self.role == "server" and (line_end if line_end >= 0 else len(buf)) > \
                    self.limits.max_request_line:
                raise RemoteProtocolError("request line too long", reply_hint=414)
            if len(buf) > self.limits.max_header_bytes:
                raise RemoteProtocolError("header section too large", reply_hint=431)
            if self._eof:
                if not buf:
                    self._state = _DONE
                    return CLOSED  # a clean close between messages
                raise RemoteProtocolError("connection closed in the middle of a header "
                                          "section", reply_hint=400)
            return NEED_DATA
        if end + 4 > self.limits.max_header_bytes:
            raise RemoteProtocolError("header section too large", reply_hint=431)
        head = bytes(buf[:end])
        del buf[:end + 4]
        lines = head.split(b"\r\n")
        start = lines[0]
        if len(lines) - 1 > self.limits.max_headers:
            raise RemoteProtocolError(f"more than {self.limits.max_headers} header fields",
                                      reply_hint=431)
        headers = _parse_fields(lines, 1)
        if self.role == "server":
            return self._request(start, headers)
        return self._response(start, headers)

    def _whole_request_head(self, buf: bytearray) -> Request | None:
        """The fast path: a whole, ordinary request head, checked with C-level bytes
        operations; None sends anything else (not whole yet, leading empty lines, obs-fold,
        any flaw, a limit reached) the line-by-line way, which says what is wrong."""
        end = buf.find(b"\r\n\r\n")
        limits = self.limits
        if end <= 0 or end + 4 > limits.max_header_bytes:
            return None
        head = bytes(buf[:end])
        lines = head.split(b"\r\n")
        line = lines[0]
        if len(lines) - 1 > limits.max_headers or len(line) > limits.max_request_line:
            return None
        start = _KNOWN_STARTS.get(line)
        if start is None:
            start = _checked_start(line)
            if start is None:
                return None
        method, target, version = start
        del lines[0]
        items = []
        lowered = []
        index: dict[bytes, tuple[bytes, ...]] = {}
        known = _KNOWN_LINES
        for line in lines:
            field = known.get(line)
            if field is None:
                field = _checked_field(line)
                if field is None:
                    return None
            item, pair, key, values = field
            items.append(item)
            lowered.append(pair)
            if key in index:
                index[key] += values  # a name repeated: its values in order
            else:
                index[key] = values
        del buf[:end + 4]
        # made without __init__: here a constructor's call costs more than the stores
        headers = _new(Headers)
        headers._items, headers._index, headers._lowered = items, index, lowered
        hosts = index.get(b"host")
        if hosts is None or len(hosts) > 1 or b"content-length" in index or \
                b"transfer-encoding" in index or b"upgrade" in index or method == b"CONNECT":
            return self._request_from(method, target, version, headers)
        # one Host, no body, no upgrade (what nearly every request is): no more to check
        self._state, self._left, self._body_seen = _LENGTH, 0, 0
        request = _new(Request)
        request.method, request.target, request.headers, request.version = \
            method, target, headers, version
        return request

    def _request(self, line: bytes, headers: Headers) -> object:
        if len(line) > self.limits.max_request_line:
            raise RemoteProtocolError("request line too long", reply_hint=414)
        m = _REQUEST_LINE.fullmatch(line)
        if not m:
            raise RemoteProtocolError(f"malformed request line {line[:100]!r}", reply_hint=400)
        return self._request_from(*m.groups(), headers)

    def _request_from(self, method: bytes, target: bytes, version: bytes,
                      headers: Headers) -> Request:
        if version not in (b"1.1", b"1.0"):
            raise RemoteProtocolError(f"HTTP/{version.decode()} is not supported",
                                      reply_hint=505)
        self.empty_lines = 0
        index = headers._index
        assert index is not None  # built by _parse_fields
        hosts = index.get(b"host")
        if hosts is None:
            if version == b"1.1":
                raise RemoteProtocolError("HTTP/1.1 request without Host", reply_hint=400)
        elif len(hosts) > 1:
            raise RemoteProtocolError("more than one Host field", reply_hint=400)
        request = Request(method, target, headers, version)
        if b"transfer-encoding" in index or b"content-length" in index:
            self._body_framing(headers, request=True)
        else:  # no body: the common case, decided without looking further
            self._state, self._left, self._body_seen = _LENGTH, 0, 0
        if (method == b"CONNECT" or b"upgrade" in index) and self._state == _LENGTH \
                and self._left == 0:
            self._state = _PAUSED
            self.trailing_data = bytes(self._buf)
            self._buf.clear()
        return request

    def _response(self, line: bytes, headers: Headers) -> object:
        m = _STATUS_LINE.fullmatch(line)
        if not m:
            raise RemoteProtocolError(f"malformed status line {line[:100]!r}")
        version = m.group(1) + b"." + m.group(2)
        if version not in (b"1.1", b"1.0"):
            raise RemoteProtocolError(f"HTTP/{version.decode()} response")
        status = int(m.group(3))
        response = Response(status, headers, m.group(4) or b"", version)
        if status < 200:
            if status == 101:
                self._state = _PAUSED
                self.trailing_data = bytes(self._buf)
                self._buf.clear()
            return response  # 1xx: informational, the final response still follows
        method = self._methods.pop(0) if self._methods else b"GET"
        if method == b"HEAD" or status in (204, 304):
            self._state, self._left = _LENGTH, 0
        elif method == b"CONNECT" and 200 <= status < 300:
            self._state = _PAUSED
            self.trailing_data = bytes(self._buf)
            self._buf.clear()
        else:
            self._body_framing(headers, request=False)
        return response

    def _body_framing(self, headers: Headers, *, request: bool) -> None:
        """RFC 9112 6.3, strictly: what ends this message's body."""
        te = headers.tokens(b"transfer-encoding")
        cl = headers.get_all(b"content-length")
        self._body_seen = 0
        if not te and headers.has(b"transfer-encoding"):
            # an empty Transfer-Encoding beside a length: framed by which? (nginx: 501)
            raise RemoteProtocolError("empty Transfer-Encoding", reply_hint=501)
        if te:
            if cl:
                raise RemoteProtocolError("both Content-Length and Transfer-Encoding",
                                          reply_hint=400)
            if te[-1] != b"chunked" or te.count(b"chunked") > 1:
                if request:
                    raise RemoteProtocolError("Transfer-Encoding without chunked last",
                                              reply_hint=501 if b"chunked" not in te else 400)
                self._state = _UNTIL_CLOSE
                return
            if len(te) > 1:
                raise RemoteProtocolError(f"unsupported Transfer-Encoding {b', '.join(te)!r}",
                                          reply_hint=501)
            self._state = _CHUNK_SIZE_LINE
            return
        if cl:
            values = {v.strip() for c in cl for v in c.split(b",")}
            if len(values) != 1:
                raise RemoteProtocolError("differing Content-Length values", reply_hint=400)
            value = values.pop()
            if not value.isdigit() or len(value) > 18:
                raise RemoteProtocolError(f"invalid Content-Length {value[:30]!r}",
                                          reply_hint=400)
            self._left = int(value)
            if self.limits.max_body and self._left > self.limits.max_body:
                raise RemoteProtocolError(f"body of {self._left} bytes is over the limit "
                                          f"of {self.limits.max_body}", reply_hint=413)
            self._state = _LENGTH
            return
        self._state = _LENGTH if request else _UNTIL_CLOSE
        self._left = 0

    # --- bodies ---

    def _count_body(self, n: int) -> None:
        self._body_seen += n
        if self.limits.max_body and self._body_seen > self.limits.max_body:
            raise RemoteProtocolError(f"body over the limit of {self.limits.max_body} bytes",
                                      reply_hint=413)

    def _chunked(self) -> object:
        buf = self._buf
        while True:
            state = self._state
            if state == _CHUNK_SIZE_LINE:
                end = buf.find(b"\r\n")
                if end < 0:
                    if len(buf) > self.limits.max_chunk_line:
                        raise RemoteProtocolError("chunk-size line too long", reply_hint=400)
                    return self._need("a chunk size")
                line = bytes(buf[:end])
                m = _CHUNK_SIZE.fullmatch(line)
                if not m or b"\n" in line or b"\r" in line:
                    raise RemoteProtocolError(f"invalid chunk size line {line[:40]!r}",
                                              reply_hint=400)
                del buf[:end + 2]
                size = int(m.group(1), 16)
                if size == 0:
                    self._state = _TRAILERS
                    continue
                self._count_body(size)
                self._left = size
                self._state = _CHUNK_DATA
            elif state == _CHUNK_DATA:
                if not buf:
                    return self._need("chunk data")
                take = bytes(buf[:self._left])
                del buf[:len(take)]
                self._left -= len(take)
                if self._left == 0:
                    self._state = _CHUNK_CRLF
                return Data(take)
            elif state == _CHUNK_CRLF:
                if len(buf) < 2:
                    return self._need("the CRLF after a chunk")
                if buf[:2] != b"\r\n":
                    raise RemoteProtocolError("chunk data not followed by CRLF", reply_hint=400)
                del buf[:2]
                self._state = _CHUNK_SIZE_LINE
            else:  # trailers: field lines up to an empty line
                if buf[:2] == b"\r\n":
                    del buf[:2]
                    return self._end()
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    if len(buf) > self.limits.max_header_bytes:
                        raise RemoteProtocolError("trailer section too large", reply_hint=431)
                    return self._need("the trailer section")
                block = bytes(buf[:end])
                del buf[:end + 4]
                if b"\r" in block.replace(b"\r\n", b"") or b"\n" in block.replace(b"\r\n", b""):
                    raise RemoteProtocolError("bare CR or LF in trailers", reply_hint=400)
                return self._end(_parse_fields(block.split(b"\r\n")))

    def _end(self, trailers: Headers | None = None) -> EndOfMessage:
        self._state = _HEAD
        return EndOfMessage(Headers() if trailers is None else trailers)


def _parse_fields(lines: list[bytes], first: int = 0) -> Headers:
    """Field lines -> Headers with its name index built; RemoteProtocolError names the flaw.

    One regex match per line checks the name, the colon and the value (which also rejects
    a CR or LF left inside a line: bare CR/LF); only a failing line is looked at again to
    say what is wrong with it."""
    items = []
    index: dict[bytes, list[bytes]] = {}
    match = _FIELD_LINE.fullmatch
    for i in range(first, len(lines)):
        m = match(lines[i])
        if m is None:
            if not lines[i]:
                continue
            _field_error(lines[i])
        name, value = m.groups()
        value = value.strip(b" \t")
        items.append((name, value))
        key = name.lower()
        values = index.get(key)
        if values is None:
            index[key] = [value]
        else:
            values.append(value)
    return Headers(items, index)


def _field_error(line: bytes) -> None:
    if b"\r" in line:
        raise RemoteProtocolError("bare CR in the header section", reply_hint=400)
    if b"\n" in line:
        raise RemoteProtocolError("bare LF in the header section", reply_hint=400)
    if line[0] in b" \t":
        raise RemoteProtocolError("obs-fold (a field line starting with whitespace)",
                                  reply_hint=400)
    name, colon, _ = line.partition(b":")
    if not colon:
        raise RemoteProtocolError(f"field line without a colon {line[:40]!r}", reply_hint=400)
    if not _TOKEN.fullmatch(name):
        # includes whitespace before the colon (RFC 9112 5.1: must be rejected)
        raise RemoteProtocolError(f"invalid field name {name[:40]!r}", reply_hint=400)
    raise RemoteProtocolError(f"invalid characters in field {name.decode()!r}", reply_hint=400)


# --- serializing ---------------------------------------------------------------------------

def _fields(headers: Headers | list[tuple[bytes, bytes]]) -> bytes:
    out = []
    for name, value in headers:
        if not _TOKEN.fullmatch(name) or _BAD_VALUE.search(value) or value != value.strip():
            raise LocalProtocolError(f"invalid header field {name!r}: {value!r}")
        out.append(name + b": " + value + b"\r\n")
    return b"".join(out)


def encode_request(request: Request) -> bytes:
    if not _TOKEN.fullmatch(request.method) or not request.target or \
            any(c <= 0x20 or c == 0x7F for c in request.target):
        raise LocalProtocolError(f"invalid request line {request.method!r} {request.target!r}")
    return (request.method + b" " + request.target + b" HTTP/" + request.version + b"\r\n"
            + _fields(request.headers) + b"\r\n")


def encode_response(response: Response) -> bytes:
    if not 100 <= response.status <= 999:
        raise LocalProtocolError(f"invalid status {response.status}")
    reason = response.reason or REASONS.get(response.status, b"")
    return (b"HTTP/" + response.version + b" %d " % response.status + reason + b"\r\n"
            + _fields(response.headers) + b"\r\n")


def encode_chunk(data: bytes) -> bytes:
    """One chunk of a chunked body (empty data writes nothing: b"0" would end the body)."""
    return b"%x\r\n" % len(data) + data + b"\r\n" if data else b""


def encode_last_chunk(trailers: Headers | None = None) -> bytes:
    return b"0\r\n" + (_fields(trailers) if trailers else b"") + b"\r\n"


REASONS = {
    100: b"Continue", 101: b"Switching Protocols", 200: b"OK", 201: b"Created",
    204: b"No Content", 206: b"Partial Content", 301: b"Moved Permanently", 302: b"Found",
    303: b"See Other", 304: b"Not Modified", 307: b"Temporary Redirect",
    308: b"Permanent Redirect", 400: b"Bad Request", 403: b"Forbidden", 404: b"Not Found",
    405: b"Method Not Allowed", 408: b"Request Timeout", 411: b"Length Required",
    413: b"Content Too Large", 414: b"URI Too Long", 416: b"Range Not Satisfiable",
    417: b"Expectation Failed", 431: b"Request Header Fields Too Large",
    500: b"Internal Server Error", 501: b"Not Implemented", 502: b"Bad Gateway",
    503: b"Service Unavailable", 504: b"Gateway Timeout", 505: b"HTTP Version Not Supported",
}
