"""One HTTP/1.1 connection in one role, without sockets or clocks (the h11 shape).

Theory of operation. An `HTTPConnection` is the whole protocol of one connection for
one side: `Role.SERVER` reads requests and writes responses, `Role.CLIENT` writes
requests and reads responses. Bytes come in with `receive_data(data)` and
`receive_eof()`; `next_event()` gives the peer's messages as events (`Request` or
`Response`, `Data`, `EndOfMessage`) or says `NEED_DATA`, `PAUSED` or `CLOSED`; our
messages go out as bytes from `send(event)` (or the fast paths `respond`,
`start_response`, `send_data`, `end_response`, `send_request`). The engine decides
everything HTTP decides about a connection:

- framing both ways: Content-Length, chunked, or (a 1.0 response without a length)
  until close; no body for HEAD, 1xx, 204 and 304; the server's own Date, Server,
  Connection and Transfer-Encoding fields replace an application's;
- keep-alive (RFC 9112 9.3): after each exchange `must_close` says whether the
  connection ends, from either side's Connection field, the versions, a body that ran
  until close, a request body we did not read, or `shutdown()` (draining);
- order: a server answers requests one at a time in the order they came (pipelining):
  once a request is in, `next_event()` says `PAUSED` until its response has ended,
  and the next request is parsed only then;
- deadlines: the rest of a request head must arrive within `head_timeout` of its first
  byte and a body within `body_timeout` (slowloris). When a phase begins the engine
  sets `deadline_due`; the driver hands it the time with `start_deadline(now)` and gets
  the deadline back (so a request that arrives whole never asks for the clock), and
  `expired(now)` says which phase ran out;
- `100 Continue` only when the client asked for it and nothing else was sent;
- a CONNECT or Upgrade request is answered as plain HTTP (the upgrade ignored, as RFC
  9110 7.8 allows) and the connection ends after the answer.

Anything the peer gets wrong raises `RemoteProtocolError` with the status to answer;
anything we get wrong (a CR or LF in a response field, a body where none may go)
raises `LocalProtocolError`. The parser's fast paths (remembered request and field
lines, the translate-table checks) are used unchanged; an ordinary GET costs one
`next_event()` and one `respond()`.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from typing import Any

from ...errors import LocalProtocolError
from ...memo import Memo
from .codec import (
    CLOSED,
    NEED_DATA,
    PAUSED,
    REASONS,
    Data,
    EndOfMessage,
    Headers,
    Limits,
    Parser,
    Request,
    Response,
    encode_chunk,
    encode_last_chunk,
    encode_request,
    keep_alive,
)


class Role(enum.Enum):
    CLIENT = "client"
    SERVER = "server"


class HeadLines:
    """Lines every response carries (Date and Server); the driver keeps `lines` current
    (the Date changes once a second: formatting it per response would cost more)."""

    __slots__ = ("lines",)

    def __init__(self, lines: bytes = b"") -> None:
        self.lines = lines


#: response fields the server writes itself; an application's own are dropped
SERVER_FIELDS = frozenset((b"date", b"server", b"connection", b"transfer-encoding"))

#: an application's response fields already checked, as their lines: (name, value) ->
#: b"name: value\r\n". Applications send the same few fields on every response; a hit
#: skips lower(), the server-field test and the CR/LF test. Content-Length lines are
#: kept apart: they decide the framing.
FIELD_LINES = Memo()
LENGTH_LINES = Memo()
_STATUS_LINES: dict[int, bytes] = {}

_PARSER_HEAD = 0  # the parser's state between messages (see Parser)
_NO_BODY = 0  # framing of the body we are sending
_LENGTH = 1
_CHUNKED = 2
_UNTIL_CLOSE = 3


def status_line(status: int) -> bytes:
    line = _STATUS_LINES.get(status)
    if line is None:
        if not 100 <= status <= 999:
            raise LocalProtocolError(f"invalid status {status}")
        line = b"HTTP/1.1 %d %s\r\n" % (status, REASONS.get(status, b""))
        if len(_STATUS_LINES) < 1000:
            _STATUS_LINES[status] = line
    return line


def field_line(pair: Any) -> tuple[bytes | None, bool]:
    """An application's response field as (its line, is it Content-Length); None for a
    field the server writes itself. Remembered when short."""
    name, value = pair
    key = name.lower()
    if key in SERVER_FIELDS:
        return None, False
    # a CR or LF inside a name or value would split the response (header injection);
    # int membership: `b"\r" in value` costs twenty times more
    if 13 in value or 10 in value or 13 in name or 10 in name:
        raise LocalProtocolError(f"CR or LF in a response header field: {pair!r}")
    line = b"%s: %s\r\n" % (name, value)
    is_length = key == b"content-length"
    if pair.__class__ is tuple and name.__class__ is bytes and value.__class__ is bytes:
        (LENGTH_LINES if is_length else FIELD_LINES).remember(pair, line, len(line))
    return line, is_length


class HTTPConnection:
    """See the module docstring."""

    __slots__ = ("_answering", "_framing", "_parser", "_request_close", "_responding",
                 "_response", "_sent_continue", "_server", "_shutdown", "body_timeout",
                 "deadline", "deadline_due", "deadline_phase", "head_lines", "head_timeout",
                 "must_close", "receive_data", "receive_eof", "request", "request_complete",
                 "response_no_body", "reusable", "role")

    def __init__(self, role: Role, limits: Limits | None = None, *, head_timeout: float = 0.0,
                 body_timeout: float = 0.0, head_lines: HeadLines | None = None) -> None:
        self.role = role
        self._server = role is Role.SERVER
        self._parser = Parser(role.value, limits)
        self.head_timeout = head_timeout
        self.body_timeout = body_timeout
        self.head_lines = head_lines or HeadLines()
        self.deadline = 0.0  # the next deadline (0.0: none) ...
        self.deadline_phase = ""  # ... and what it is for: "head" or "body"
        self.deadline_due = False  # a phase began: `start_deadline(now)` gives its time
        # bytes and EOF go straight to the parser: no call in between on the hot path
        self.receive_data = self._parser.feed
        self.receive_eof = self._parser.feed_eof
        self.request: Request | None = None  # server: the request being read or answered
        self.request_complete = False  # server: its body (if any) has been read whole
        self._answering = False  # server: a request is in and its response not ended
        self._responding = False  # our message's head is out, its end not yet
        self._framing = _NO_BODY
        self.response_no_body = False  # server: the response being sent may have no body
        #: after the exchange that just ended: the connection ends here
        self.must_close = False
        self._request_close = False  # client: our request said Connection: close
        self._shutdown = False
        self._sent_continue = False
        self._response: Response | None = None  # client: the final response being read
        self.reusable = False  # client: the connection may carry another request

    # --- receiving (receive_data(bytes) and receive_eof() are the parser's) -----------

    def next_event(self) -> object:
        """The peer's next event, NEED_DATA, PAUSED (a server whose current request is
        not answered yet) or CLOSED; raises RemoteProtocolError on bad input."""
        if self._answering:
            return PAUSED
        parser = self._parser
        event = parser.next_event()
        cls = event.__class__
        if cls is Request:
            self.deadline, self.deadline_phase, self.deadline_due = 0.0, "", False
            self.request = event  # type: ignore[assignment]
            self._sent_continue = False
            if parser.end_if_bodiless():  # the common GET: the whole request is in
                self.request_complete = self._answering = True
            elif parser.upgrading:
                # CONNECT or Upgrade, which this engine does not switch to (RFC 9110 7.8:
                # an Upgrade may be ignored): answered as plain HTTP, and since nothing
                # after it can be read as HTTP, the connection ends with that answer
                self.request_complete = self._answering = True
                self._shutdown = True
            else:
                self.request_complete = False
        elif cls is EndOfMessage:
            self.deadline, self.deadline_phase, self.deadline_due = 0.0, "", False
            if self._server:
                self.request_complete = True
                # answered already (early, before the body was in): nothing to wait for
                self._answering = self.request is not None
            else:
                self._client_done()
        elif event is NEED_DATA:
            if self._server:
                if self.request is not None and not self.request_complete:
                    self._start_deadline("body", self.body_timeout)
                elif parser.pending or parser.empty_lines:  # a head has begun
                    self._start_deadline("head", self.head_timeout)
        elif cls is Response and event.status >= 200:  # type: ignore[attr-defined]
            self._response = event  # type: ignore[assignment]
        return event

    def _start_deadline(self, phase: str, timeout: float) -> None:
        if timeout and self.deadline_phase != phase:
            self.deadline_phase = phase
            self.deadline = 0.0
            self.deadline_due = True

    def start_deadline(self, now: float) -> float:
        """The phase that began (`deadline_due`) counts from `now`; its deadline."""
        self.deadline_due = False
        self.deadline = now + (self.head_timeout if self.deadline_phase == "head"
                               else self.body_timeout)
        return self.deadline

    def next_deadline(self) -> float | None:
        return self.deadline or None

    def expired(self, now: float) -> str | None:
        """The phase ("head" or "body") whose deadline has passed at `now`, or None."""
        if self.deadline and now >= self.deadline:
            phase = self.deadline_phase
            self.deadline, self.deadline_phase = 0.0, ""
            return phase
        return None

    @property
    def has_pending(self) -> bool:
        """Bytes or EOF not yet turned into events (the parser's `idle`, written out)."""
        parser = self._parser
        return bool(parser._buf) or parser._eof or parser._state != _PARSER_HEAD

    def take_upgraded_bytes(self) -> bytes:
        """After a CONNECT (or Upgrade) request: the bytes that came after its head, which
        belong to the tunnel, not to HTTP (a proxy passes them on). The engine is done."""
        parser = self._parser
        data = bytes(parser.trailing_data) + bytes(parser._buf)
        parser.trailing_data = b""
        parser._buf.clear()
        return data

    @property
    def body_length(self) -> int:
        """Server: bytes of the current request body still to come by Content-Length."""
        return self._parser.body_length

    @property
    def responding(self) -> bool:
        """Our message's head is out and its end is not."""
        return self._responding

    @property
    def idle(self) -> bool:
        """Between exchanges: nothing being read or answered."""
        return self.request is None and not self._answering and not self._responding

    # --- the server's side -----------------------------------------------------------

    def shutdown(self) -> None:
        """Draining: the response in progress (or the next) is the last; Connection:
        close goes with it."""
        self._shutdown = True

    def send_continue(self) -> bytes:
        """`100 Continue` when the current request expects it (RFC 9110 10.1.1) and no
        response has started; b"" otherwise."""
        request = self.request
        if request is None or self._responding or self._sent_continue or \
                request.version != b"1.1" or not request.headers.has(b"expect") or \
                b"100-continue" not in request.headers.tokens(b"expect"):
            return b""
        self._sent_continue = True
        return b"HTTP/1.1 100 Continue\r\n\r\n"

    def start_response(self, status: int, fields: Iterable[Any], *,
                       length: int | None = None, close: bool = False,
                       trusted: bool = False) -> bytes:
        """The response head for the current request, from an application's fields
        (checked; the server's own replace theirs). `length`: the body's size when
        known (a Content-Length is added if the fields have none); otherwise chunked
        for 1.1 and until close for 1.0. `close` ends the connection after it."""
        request = self.request
        if request is None:
            raise LocalProtocolError("a response with no request to answer")
        if self._responding:
            raise LocalProtocolError("a response started twice")
        lines = [_STATUS_LINES.get(status) or status_line(status), self.head_lines.lines]
        has_length = False
        known = FIELD_LINES
        if trusted:  # the server's own fields (files: ETag, Last-Modified): no checks
            lines += [b"%s: %s\r\n" % pair for pair in fields]
            fields = ()
        for pair in fields:
            try:
                line = known.get(pair)
                if line is None:
                    line = LENGTH_LINES.get(pair)
                    if line is not None:
                        has_length = True
            except TypeError:  # unhashable: a list, a bytearray (ASGI allows them)
                line = None
            if line is None:
                line, is_length = field_line(pair)
                if line is None:
                    continue  # a field the server writes itself
                has_length = has_length or is_length
            lines.append(line)
        no_body = request.method == b"HEAD" or status in (204, 304) or status < 200
        framing = _NO_BODY if no_body else _LENGTH
        if not has_length and status not in (204, 304) and status >= 200:
            if length is not None:
                lines.append(b"Content-Length: %d\r\n" % length)
            elif request.version == b"1.1":
                if not no_body:
                    framing = _CHUNKED
                    lines.append(b"Transfer-Encoding: chunked\r\n")
            elif not no_body:
                framing = _UNTIL_CLOSE  # HTTP/1.0 without a length: ends with the connection
        if not close:
            index = request.headers._index  # keep_alive's common case written out
            if index is not None and b"connection" not in index:
                close = request.version != b"1.1"
            else:
                close = not keep_alive(request.version, request.headers)
            close = close or self._shutdown or framing == _UNTIL_CLOSE
        lines.append(b"Connection: close\r\n\r\n" if close else b"\r\n")
        self.must_close = close
        self._framing = framing
        self.response_no_body = no_body
        self._responding = True
        return b"".join(lines)

    def send_data(self, data: bytes) -> bytes:
        """A piece of the response body, framed (b"" where the response has no body).
        A length-framed body may also go around the engine (os.sendfile)."""
        framing = self._framing
        if framing == _CHUNKED:
            return encode_chunk(data)
        if framing == _NO_BODY:
            return b""
        return data

    def send_body(self, data: bytes, end: bool) -> bytes:
        """`send_data(data)`, and with `end` `end_response()` too, in one call (an ASGI
        body message; the one response body of most requests, so written out)."""
        framing = self._framing
        if framing == _LENGTH:
            out = data
        elif framing == _CHUNKED:
            out = encode_chunk(data) if data else b""
            if end:
                out += encode_last_chunk()
        else:
            out = b""
        if end:
            self._responding = False
            self._framing = _NO_BODY
            if not self.request_complete:
                self.must_close = True
            self.request = None
            self._answering = False
        return out

    def end_response(self) -> bytes:
        """The end of the response (the last chunk when chunked). A request whose body
        was not read whole cannot be told from the next one: the connection closes."""
        return self.send_body(b"", True)

    def respond(self, status: int, fields: Iterable[Any], body: bytes = b"", *,
                close: bool = False, trusted: bool = False) -> bytes:
        """A whole response (head and body in one piece, one write)."""
        head = self.start_response(status, fields, length=len(body), close=close,
                                   trusted=trusted)
        return head + self.send_body(body, True)

    def error_response(self, status: int, *, close: bool = False,
                       fields: Iterable[tuple[bytes, bytes]] = ()) -> bytes:
        """The server's own plain-text answer for `status`, to the current request or,
        when the request could not even be read, with Connection: close."""
        if self.request is None:  # a head we could not parse: HTTP/1.1, no method
            self.request = Request(b"", b"", Headers(), b"1.1")
            close = True
        if self._responding:  # mid-response: nothing else can be said on this connection
            raise LocalProtocolError("an error response after the response began")
        body = b"%d %s\n" % (status, REASONS.get(status, b""))
        return self.respond(status, [(b"Content-Type", b"text/plain; charset=utf-8"),
                                     *fields], body, close=close, trusted=True)

    # --- the client's side -----------------------------------------------------------

    def send_request(self, method: bytes, target: bytes, fields: list[tuple[bytes, bytes]],
                     *, version: bytes = b"1.1") -> bytes:
        """A request head; its body's framing comes from its fields (Content-Length or
        Transfer-Encoding: chunked; neither: no body)."""
        if self._responding:
            raise LocalProtocolError("a request started before the last one ended")
        headers = Headers(fields)
        out = encode_request(Request(method, target, headers, version))
        self._parser.expect_response_to(method)
        self._request_close = not keep_alive(version, headers)
        te = headers.tokens(b"transfer-encoding")
        self._framing = _CHUNKED if te and te[-1] == b"chunked" else (
            _LENGTH if headers.has(b"content-length") else _NO_BODY)
        self._responding = self._framing != _NO_BODY
        self.reusable = False
        return out

    def end_request(self) -> bytes:
        out = encode_last_chunk() if self._framing == _CHUNKED else b""
        self._responding = False
        self._framing = _NO_BODY
        return out

    def _client_done(self) -> None:
        head, self._response = self._response, None
        # a body that ran until close, our Connection: close, theirs, or a request body
        # not sent whole: the connection cannot carry another exchange
        self.reusable = head is not None and not self._request_close and \
            keep_alive(head.version, head.headers) and not self._responding and \
            not self._parser.ended_by_close

    # --- either side -----------------------------------------------------------------

    def send(self, event: object) -> bytes:
        """h11's `send`: a Request or Response head, Data, or EndOfMessage, as bytes."""
        if isinstance(event, Response):
            if event.status < 200:
                return status_line(event.status) + b"\r\n"
            return self.start_response(event.status, event.headers)
        if isinstance(event, Request):
            return self.send_request(event.method, event.target, list(event.headers),
                                     version=event.version)
        if isinstance(event, Data):
            return self.send_data(event.data)
        if isinstance(event, EndOfMessage):
            return self.end_response() if self._server else self.end_request()
        raise LocalProtocolError(f"cannot send {event!r}")

    @property
    def trailing_data(self) -> bytes:
        """After PAUSED for an upgrade or CONNECT: the bytes of the new protocol."""
        return self._parser.trailing_data


__all__ = ["CLOSED", "NEED_DATA", "PAUSED", "HTTPConnection", "HeadLines", "Role"]
