"""The HTTP/1.1 codec: framing, strictness, limits, byte-at-a-time, fuzzing, h11 as oracle."""

from __future__ import annotations

import h11
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netkit.errors import LocalProtocolError, RemoteProtocolError
from netkit.proto.http import codec as http
from netkit.proto.http.codec import (
    CLOSED,
    NEED_DATA,
    PAUSED,
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
    encode_response,
    keep_alive,
)


def events(parser: Parser, data: bytes, *, eof: bool = False) -> list[object]:
    parser.feed(data)
    if eof:
        parser.feed_eof()
    out = []
    while True:
        ev = parser.next_event()
        if ev is NEED_DATA or ev is PAUSED or ev is CLOSED:
            out.append(ev)
            return out
        out.append(ev)


def merged(evs: list[object]) -> list[object]:
    """Adjacent Data events joined: how a body is split depends on how bytes arrived."""
    out: list[object] = []
    for ev in evs:
        if isinstance(ev, Data) and out and isinstance(out[-1], Data):
            out[-1] = Data(out[-1].data + ev.data)
        elif ev is not NEED_DATA:
            out.append(ev)
    return out


def byte_at_a_time(role: str, data: bytes, *, eof: bool = False,
                   expect: list[bytes] | None = None) -> list[object]:
    p = Parser(role)
    for method in expect or []:
        p.expect_response_to(method)
    out: list[object] = []
    for i in range(len(data)):
        out += events(p, data[i:i + 1])
    if eof:
        out += events(p, b"", eof=True)
    return merged(out)


def whole(role: str, data: bytes, *, eof: bool = False,
          expect: list[bytes] | None = None) -> list[object]:
    p = Parser(role)
    for method in expect or []:
        p.expect_response_to(method)
    return merged(events(p, data, eof=eof))


GET = b"GET /index.html?q=1 HTTP/1.1\r\nHost: example.test\r\nAccept: */*\r\nX-Dup: a\r\n" \
      b"x-dup: b\r\n\r\n"


def test_request_head_fields_in_order_and_case_insensitive():
    (req, end) = whole("server", GET)
    assert isinstance(req, Request) and isinstance(end, EndOfMessage)
    assert (req.method, req.target, req.version) == (b"GET", b"/index.html?q=1", b"1.1")
    assert [n for n, _ in req.headers] == [b"Host", b"Accept", b"X-Dup", b"x-dup"]
    assert req.headers.get(b"X-DUP") == b"a, b" and req.headers.get_all(b"x-dup") == [b"a", b"b"]


@pytest.mark.parametrize("data", [
    GET + b"POST /f HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello",
    b"POST /u HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Sum: abc\r\n\r\n" + GET,
])
def test_pipelined_bodies_whole_and_byte_at_a_time(data):
    assert byte_at_a_time("server", data) == whole("server", data)
    evs = whole("server", data)
    bodies = b"".join(e.data for e in evs if isinstance(e, Data))
    assert bodies in (b"hello", b"hello world")
    assert sum(isinstance(e, Request) for e in evs) == 2


def test_chunked_trailers():
    data = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"3\r\nabc\r\n0\r\nDigest: x\r\nOther: y\r\n\r\n")
    evs = whole("client", data, expect=[b"GET"])
    assert evs[-1] == EndOfMessage(Headers([(b"Digest", b"x"), (b"Other", b"y")]))


def test_response_framing_head_204_304_and_read_until_close():
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n"
    evs = whole("client", head + head, expect=[b"HEAD", b"HEAD"])
    assert [type(e) for e in evs] == [Response, EndOfMessage, Response, EndOfMessage]
    evs = whole("client", b"HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n",
                expect=[b"GET"])
    assert [type(e) for e in evs] == [Response, EndOfMessage]
    data = b"HTTP/1.0 200 OK\r\n\r\nuntil the end"
    evs = byte_at_a_time("client", data, eof=True, expect=[b"GET"])
    assert evs == whole("client", data, eof=True, expect=[b"GET"])
    assert evs[1] == Data(b"until the end") and isinstance(evs[2], EndOfMessage)


def test_informational_then_final_and_upgrade_pauses():
    data = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    evs = whole("client", data, expect=[b"POST"])
    assert [e.status for e in evs if isinstance(e, Response)] == [100, 200]
    p = Parser("client")
    p.expect_response_to(b"GET")
    out = events(p, b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: ws\r\n\r\n\x81\x05hello")
    assert out[-1] is PAUSED and p.trailing_data == b"\x81\x05hello"
    s = Parser("server")
    out = events(s, b"CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\n\r\n\x16\x03\x01")
    assert isinstance(out[0], Request) and out[-1] is PAUSED and s.trailing_data == b"\x16\x03\x01"


def test_clean_close_between_messages_and_truncation():
    assert events(Parser("server"), b"", eof=True) == [CLOSED]
    with pytest.raises(RemoteProtocolError, match="middle of a header"):
        events(Parser("server"), b"GET / HTTP/1.1\r\nHost: x\r\n", eof=True)
    with pytest.raises(RemoteProtocolError, match="more body bytes"):
        events(Parser("server"), b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 9\r\n\r\nab",
               eof=True)


@pytest.mark.parametrize("version,headers,alive", [
    (b"1.1", [], True), (b"1.1", [(b"Connection", b"close")], False),
    (b"1.0", [], False), (b"1.0", [(b"Connection", b"Keep-Alive")], True),
    (b"1.1", [(b"Connection", b"upgrade, CLOSE")], False),
])
def test_keep_alive(version, headers, alive):
    assert keep_alive(version, Headers(headers)) is alive


SMUGGLING = [
    (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
     400, "both Content-Length and Transfer-Encoding"),
    (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
     400, "differing Content-Length"),
    (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3, 4\r\n\r\n", 400, "differing"),
    (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: +3\r\n\r\n", 400, "invalid Content-Length"),
    (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\n", 400,
     "invalid chunk size"),
    (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\n", 400,
     "invalid chunk size"),
    (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
     b"11111111111111111\r\n", 400, "invalid chunk size"),
    (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX", 400,
     "not followed by CRLF"),
    (b"GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n b\r\n\r\n", 400, "obs-fold"),
    (b"GET / HTTP/1.1\r\nHost: h\r\nX: a\rb\r\n\r\n", 400, "bare CR"),
    (b"GET / HTTP/1.1\r\nHost: h\nX: a\r\n\r\n", 400, "bare LF"),
    (b"GET / HTTP/1.1\r\nHost : h\r\n\r\n", 400, "invalid field name"),
    (b"GET / HTTP/1.1\r\nHo\x00st: h\r\n\r\n", 400, "invalid field name"),
    (b"GET / HTTP/1.1\r\nHost: h\x01\r\n\r\n", 400, "invalid characters"),
    (b"GET / HTTP/1.x\r\nHost: h\r\n\r\n", 400, "malformed request line"),
    (b"GET  / HTTP/1.1\r\nHost: h\r\n\r\n", 400, "malformed request line"),
    (b"GET / HTTP/2.0\r\nHost: h\r\n\r\n", 505, "not supported"),
    (b"GET / HTTP/1.1\r\n\r\n", 400, "without Host"),
    (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400, "more than one Host"),
    (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\n", 501,
     "without chunked last"),
    (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", 400,
     "without chunked last"),
    # an empty Transfer-Encoding beside a length: nginx answers 501, we too
    (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding:\r\nContent-Length: 3\r\n\r\nabc",
     501, "empty Transfer-Encoding"),
    (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nTransfer-Encoding: ,\r\n\r\nabc",
     501, "empty Transfer-Encoding"),
]


@pytest.mark.parametrize("data,status,message", SMUGGLING,
                         ids=[m for _, _, m in SMUGGLING])
def test_smuggling_shapes_are_rejected_with_their_status(data, status, message):
    for feed in (whole, byte_at_a_time):
        with pytest.raises(RemoteProtocolError, match=message) as info:
            feed("server", data)
        assert info.value.reply_hint == status


def test_limits_give_414_431_413():
    small = Limits(max_request_line=64, max_headers=3, max_header_bytes=256, max_body=10)
    cases = [
        (b"GET /" + b"a" * 100 + b" HTTP/1.1\r\nHost: h\r\n\r\n", 414),
        (b"GET /" + b"a" * 100, 414),  # no CRLF yet, already too long
        (b"GET / HTTP/1.1\r\nHost: h\r\n" + b"A: 1\r\n" * 5 + b"\r\n", 431),
        (b"GET / HTTP/1.1\r\nHost: h\r\nBig: " + b"x" * 300 + b"\r\n\r\n", 431),
        (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\n", 413),
        (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n8\r\n12345678\r\n"
         b"8\r\n", 413),
    ]
    for data, status in cases:
        p = Parser("server", small)
        with pytest.raises(RemoteProtocolError) as info:
            events(p, data)
        assert info.value.reply_hint == status, data


def test_encoders_round_trip_and_refuse_bad_fields():
    req = Request(b"PUT", b"/x", Headers([(b"Host", b"h"), (b"Transfer-Encoding", b"chunked")]))
    wire = encode_request(req) + encode_chunk(b"abc") + encode_chunk(b"") + \
        encode_last_chunk(Headers([(b"T", b"1")]))
    evs = whole("server", wire)
    assert evs == [req, Data(b"abc"), EndOfMessage(Headers([(b"T", b"1")])), ]
    resp = encode_response(Response(404, Headers([(b"Content-Length", b"0")])))
    assert resp.startswith(b"HTTP/1.1 404 Not Found\r\n")
    with pytest.raises(LocalProtocolError):
        encode_request(Request(b"GET", b"/a b", Headers()))
    with pytest.raises(LocalProtocolError):
        encode_response(Response(200, Headers([(b"X", b"a\r\nInjected: 1")])))


@settings(max_examples=300)
@given(st.binary(max_size=400), st.sampled_from(["server", "client"]), st.booleans())
def test_any_input_gives_events_or_our_own_error(data, role, eof):
    p = Parser(role)
    p.expect_response_to(b"GET")
    try:
        for i in range(0, len(data), 7):
            events(p, data[i:i + 7])
        if eof:
            events(p, b"", eof=True)
    except RemoteProtocolError:
        pass


token = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-",
                min_size=1, max_size=12)
value = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789 ;=,/.:", max_size=20)


@settings(max_examples=200)
@given(method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]),
       path=st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789/._-~%?=&", min_size=0,
                    max_size=30),
       fields=st.lists(st.tuples(token, value), max_size=6),
       body=st.binary(max_size=200), chunked=st.booleans(),
       splits=st.lists(st.integers(1, 50), max_size=5))
def test_same_result_as_h11_where_both_accept(method, path, fields, body, chunked, splits):
    names = {n.lower() for n, _ in fields}
    if names & {"host", "content-length", "transfer-encoding", "connection", "expect",
                "upgrade"}:
        return
    head = [(b"Host", b"example.test")] + [(n.encode(), v.strip().encode()) for n, v in fields]
    framing = [(b"Transfer-Encoding", b"chunked")] if chunked else \
        [(b"Content-Length", str(len(body)).encode())]
    req = Request(method.encode(), b"/" + path.encode(), Headers(head + framing))
    wire = encode_request(req)
    if chunked:
        pieces = [body[a:b] for a, b in zip([0, *splits], [*splits, len(body)], strict=False)
                  if a < b]
        wire += b"".join(encode_chunk(p) for p in pieces) + encode_last_chunk()
    else:
        wire += body
    ours = whole("server", wire)
    oracle = h11.Connection(h11.SERVER)
    oracle.receive_data(wire)
    theirs = []
    while True:
        ev = oracle.next_event()
        if ev is h11.NEED_DATA or isinstance(ev, h11.EndOfMessage):
            theirs.append(ev)
            break
        theirs.append(ev)
    h_req = theirs[0]
    assert isinstance(h_req, h11.Request)
    our_req = ours[0]
    assert (our_req.method, our_req.target) == (h_req.method, h_req.target)
    assert [(n.lower(), v) for n, v in our_req.headers] == list(h_req.headers)
    assert b"".join(e.data for e in ours if isinstance(e, Data)) == \
        b"".join(bytes(e.data) for e in theirs if isinstance(e, h11.Data))


def test_bodiless_requests_can_end_with_their_head():
    p = Parser("server")
    p.feed(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nPOST /b HTTP/1.1\r\nHost: x\r\n"
           b"Content-Length: 2\r\n\r\nhiGET /c HTTP/1.1\r\nHost: x\r\n\r\n")
    assert isinstance(p.next_event(), Request) and p.end_if_bodiless()
    post = p.next_event()
    assert post.target == b"/b" and not p.end_if_bodiless()  # a body follows: events go on
    assert p.next_event() == Data(b"hi") and isinstance(p.next_event(), EndOfMessage)
    assert p.next_event().target == b"/c" and p.end_if_bodiless()
    assert p.idle and p.next_event() is NEED_DATA
    p.feed_eof()
    assert not p.idle and p.next_event() is CLOSED


def slow_path_only(parser: Parser) -> Parser:
    parser._whole_request_head = lambda buf: None  # type: ignore[method-assign]
    return parser


def outcome(parser: Parser, data: bytes) -> object:
    try:
        return merged(events(parser, data, eof=True))
    except RemoteProtocolError as exc:
        return ("error", str(exc), exc.reply_hint)


# pieces of request heads, the odd ones included: whitespace around values, obs-text,
# control bytes, bare CR/LF, a space before the colon, obs-fold, empty lines, bad versions
head_piece = st.sampled_from([
    b"GET", b"POST", b"G T", b" ", b"/", b"/a?b=c", b"/\x80", b"HTTP/1.1", b"HTTP/1.0",
    b"HTTP/2.0", b"HTTP/1.1x", b"\r\n", b"\n", b"\r", b"Host", b"host", b"X-A", b"X A",
    b":", b": ", b" :", b"v", b"v ", b" v\t", b"\tv", b"\x80\xff", b"\x01", b"\x7f",
    b"Content-Length", b"Transfer-Encoding", b"chunked", b"0", b"12", b"\r\n\r\n",
    b"\r\n ", b"Upgrade", b"Connection", b"close",
])


@settings(max_examples=500)
@given(st.lists(head_piece, max_size=25), st.booleans())
def test_fast_head_path_agrees_with_line_by_line_path(pieces, host):
    data = b"".join(pieces)
    if host:  # a well-formed start, so that many examples get past the request line
        data = b"GET /x HTTP/1.1\r\nHost: h\r\n" + data + b"\r\n\r\n"
    limits = Limits(max_request_line=256, max_headers=5, max_header_bytes=1024)
    fast = outcome(Parser("server", limits), data)
    slow = outcome(slow_path_only(Parser("server", limits)), data)
    assert fast == slow


@settings(max_examples=300)
@given(st.sampled_from([b"GET", b"POST", b"PURGE", b"G\x01T", b"G(T", b""]),
       st.sampled_from([b" ", b"  ", b"\t"]),
       st.sampled_from([b"/", b"/a?q=1", b"*", b"/%20", b"/\x80", b"/\x7f", b"/a b", b"",
                        b"/" + b"a" * 30]),
       st.sampled_from([b" ", b"  "]),
       st.sampled_from([b"HTTP/1.1", b"HTTP/1.0", b"HTTP/1.2", b"http/1.1", b"HTTP/11", b""]))
def test_remembered_request_lines_agree_with_line_by_line_path(method, sp1, target, sp2,
                                                               version):
    data = method + sp1 + target + sp2 + version + b"\r\nHost: h\r\nX-A: 1\r\n\r\n"
    slow = outcome(slow_path_only(Parser("server", Limits(max_request_line=40))), data)
    for _ in range(2):  # the second time from memory, where the first was remembered
        assert outcome(Parser("server", Limits(max_request_line=40)), data) == slow


@pytest.mark.parametrize("data", [
    b"GET / HTTP/1.1\r\nHost: h  \r\nX-A:\tv \t\r\nX-B:  \r\n\r\n",  # OWS stripped
    b"GET / HTTP/1.1\r\nHost: h\r\nX-A: v\r\n" + b"X-B: w\r\n" * 5 + b"\r\n",  # 431
    b"GET / HTTP/1.1\r\nHost: h\r\n" + b"X-C: w\r\n" * 4 + b"\r\n",  # 5 fields: the limit
    b"GET / HTTP/1.1\r\nHost: h\r\n" + b"X-C: w\r\n" * 5 + b"\r\n",  # 6: one too many
    b"GET /" + b"a" * 242 + b" HTTP/1.1\r\nHost: h\r\n\r\n",  # a 256-byte request line
    b"GET /" + b"a" * 243 + b" HTTP/1.1\r\nHost: h\r\n\r\n",  # 257
    b"GET /" + b"a" * 300 + b" HTTP/1.1\r\nHost: h\r\n\r\n",  # 414
    b"GET / HTTP/1.1\r\nHost: h\r\nX: " + b"v" * 1100 + b"\r\n\r\n",  # 431 by size
])
def test_fast_head_path_limits_and_whitespace(data):
    limits = Limits(max_request_line=256, max_headers=5, max_header_bytes=1024)
    fast = outcome(Parser("server", limits), data)
    assert fast == outcome(slow_path_only(Parser("server", limits)), data)
    if data.count(b"X-B") == 1:
        assert fast[0].headers._items == [(b"Host", b"h"), (b"X-A", b"v"), (b"X-B", b"")]
    if data.count(b"X-C") == 5 or b"a" * 243 in data:
        assert fast[0] == "error" and fast[2] in (414, 431)
    elif data.count(b"X-C") == 4 or (b"a" * 242 in data and b"a" * 243 not in data):
        assert isinstance(fast[0], Request)


def test_remembered_lines_are_checked_against_each_parsers_limits():
    data = b"GET /" + b"a" * 100 + b" HTTP/1.1\r\nHost: h\r\n\r\n"
    assert outcome(Parser("server", Limits()), data)[0].target == b"/" + b"a" * 100
    assert b"GET /" + b"a" * 100 + b" HTTP/1.1" in http._KNOWN_STARTS  # remembered
    assert outcome(Parser("server", Limits(max_request_line=50)), data)[2] == 414
    # a known field line does not excuse the line after it
    bad = b"GET / HTTP/1.1\r\nHost: h\r\nX-A : v\r\n\r\n"
    assert outcome(Parser("server"), bad) == outcome(slow_path_only(Parser("server")), bad)
    assert outcome(Parser("server"), bad)[0] == "error"


@pytest.mark.parametrize("line", [b"X-A: a\x01b", b"X-A: a\x7fb", b"X A: v", b"GET /\x00 HTTP/1.1"])
def test_bad_lines_are_refused_every_time_and_never_remembered(line):
    data = (line + b"\r\nHost: h\r\n\r\n" if line.startswith(b"GET")
            else b"GET / HTTP/1.1\r\nHost: h\r\n" + line + b"\r\n\r\n")
    for _ in range(2):
        assert outcome(Parser("server"), data)[0] == "error"
    assert line not in http._KNOWN_LINES and line not in http._KNOWN_STARTS


def test_remembered_lines_are_bounded():
    p = Parser("server")
    for i in range(http._KNOWN_LINES.max_entries + 10):
        p.feed(b"GET /%d HTTP/1.1\r\nHost: h\r\nX-N: %d\r\n\r\n" % (i, i))
        assert p.next_event().headers.get(b"x-n") == b"%d" % i and p.end_if_bodiless()
    assert 0 < len(http._KNOWN_LINES) <= http._KNOWN_LINES.max_entries
    assert 0 < len(http._KNOWN_STARTS) <= http._KNOWN_LINES.max_entries
    p.feed(b"GET / HTTP/1.1\r\nHost: h\r\nX-" + b"v" * 300 + b": long\r\n\r\n")
    assert p.next_event().headers.get(b"x-" + b"v" * 300) == b"long"  # parsed, not kept
    assert not any(len(line) > http._KNOWN_LINES.max_size for line in http._KNOWN_LINES)


def test_repeated_fields_from_remembered_lines_keep_every_value_in_order():
    data = b"GET / HTTP/1.1\r\nHost: h\r\nX-A: 1\r\nx-a: 2\r\nX-B: 3\r\nX-A: 1\r\n\r\n"
    for _ in range(3):  # the first time checked, then from _KNOWN_LINES
        request = outcome(Parser("server"), data)[0]
        assert request.headers.get_all(b"X-A") == [b"1", b"2", b"1"]
        assert request.headers.get(b"x-a") == b"1, 2, 1" and request.headers.get(b"x-b") == b"3"
        assert request.headers.lowered() == [(b"host", b"h"), (b"x-a", b"1"), (b"x-a", b"2"),
                                             (b"x-b", b"3"), (b"x-a", b"1")]
    # a caller's list from get_all is its own: changing it changes nothing remembered
    request.headers.get_all(b"x-a").append(b"9")
    assert outcome(Parser("server"), data)[0].headers.get_all(b"x-a") == [b"1", b"2", b"1"]
