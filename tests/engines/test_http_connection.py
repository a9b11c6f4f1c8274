"""The HTTP connection engine, both roles, without sockets or clocks: framing,
keep-alive, pipelining order, deadlines, 100-continue, and a client engine wired to a
server engine (h11's ConnectionPair), whole and one byte at a time."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netkit.errors import LocalProtocolError, RemoteProtocolError
from netkit.proto.http import connection as c
from netkit.proto.http.codec import (
    CLOSED,
    NEED_DATA,
    PAUSED,
    Data,
    EndOfMessage,
    Request,
    Response,
)
from netkit.proto.http.connection import FIELD_LINES, HeadLines, HTTPConnection, Role


def server(**kw) -> HTTPConnection:  # type: ignore[no-untyped-def]
    return HTTPConnection(Role.SERVER, head_lines=HeadLines(b"Date: x\r\n"), **kw)


def events(conn: HTTPConnection) -> list[object]:
    out = []
    while True:
        ev = conn.next_event()
        out.append(ev)
        if ev is NEED_DATA or ev is PAUSED or ev is CLOSED:
            return out


def test_pipelined_requests_are_answered_one_at_a_time_in_order():
    s = server()
    s.receive_data(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n")
    first = s.next_event()
    assert isinstance(first, Request) and first.target == b"/a" and s.request_complete
    assert s.next_event() is PAUSED  # /b waits for /a's response
    assert s.next_event() is PAUSED
    out = s.respond(200, [(b"content-type", b"text/plain")], b"A")
    assert out == (b"HTTP/1.1 200 OK\r\nDate: x\r\ncontent-type: text/plain\r\n"
                   b"Content-Length: 1\r\n\r\nA")
    assert not s.must_close
    second = s.next_event()
    assert isinstance(second, Request) and second.target == b"/b"
    s.respond(200, [], b"B")
    assert s.next_event() is NEED_DATA and s.idle


@pytest.mark.parametrize(("head", "close"), [
    (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", False),
    (b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", True),
    (b"GET / HTTP/1.1\r\nHost: x\r\nConnection: Keep-Alive, CLOSE\r\n\r\n", True),
    (b"GET / HTTP/1.0\r\n\r\n", True),
    (b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", False),
])
def test_keep_alive_follows_rfc_9112(head, close):
    s = server()
    s.receive_data(head)
    s.next_event()
    out = s.respond(200, [], b"x")
    assert s.must_close is close
    assert out.endswith(b"Connection: close\r\n\r\nx") is close


def test_draining_makes_the_next_response_the_last():
    s = server()
    assert s.idle
    s.receive_data(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    s.next_event()
    assert not s.idle  # a request is being answered
    s.shutdown()
    assert b"Connection: close\r\n" in s.respond(200, [], b"") and s.must_close


def test_framing_head_204_304_chunked_and_until_close():
    s = server()
    s.receive_data(b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n")
    s.next_event()
    out = s.respond(200, [], b"0123456789")  # HEAD: the length of the body, not the body
    assert out.endswith(b"Content-Length: 10\r\n\r\n")
    for status in (204, 304):
        s.receive_data(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        s.next_event()
        out = s.respond(status, [], b"")
        assert b"Content-Length" not in out and b"Transfer-Encoding" not in out
    s.receive_data(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    s.next_event()
    head = s.start_response(200, [(b"x-a", b"1")])
    assert head.endswith(b"x-a: 1\r\nTransfer-Encoding: chunked\r\n\r\n")
    assert s.send_data(b"abc") == b"3\r\nabc\r\n" and s.send_data(b"") == b""
    assert s.end_response() == b"0\r\n\r\n" and not s.must_close
    s.receive_data(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    s.next_event()
    head = s.start_response(200, [])  # 1.0, no length: the body ends with the connection
    assert b"Transfer-Encoding" not in head and head.endswith(b"Connection: close\r\n\r\n")
    assert s.send_data(b"abc") == b"abc"
    s.end_response()
    assert s.must_close


def test_an_answer_before_the_body_is_read_closes_the_connection():
    s = server()
    s.receive_data(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n01234")
    assert isinstance(s.next_event(), Request) and not s.request_complete
    assert s.next_event() == Data(b"01234")
    s.respond(413, [], b"too big")
    assert s.must_close  # the rest of the body cannot be told from a next request


def test_a_body_read_whole_keeps_the_connection():
    s = server()
    s.receive_data(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc")
    assert [type(e) for e in events(s)] == [Request, Data, EndOfMessage, type(PAUSED)]
    s.respond(200, [], b"ok")
    assert not s.must_close and s.next_event() is NEED_DATA


@pytest.mark.parametrize("fields", [
    [(b"x-note", b"a\r\nSet-Cookie: stolen=1")],
    [(b"x-note", b"a\rb")],  # a bare CR: some clients end the line there
    [(b"x-note", b"a\nb")],
    [(b"x-a", b"fine"), (b"x-no\r\nte", b"b")],
])
def test_response_fields_with_cr_or_lf_are_refused(fields):
    s = server()
    s.receive_data(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    s.next_event()
    with pytest.raises(LocalProtocolError, match="CR or LF in a response header"):
        s.start_response(200, fields)
    assert not s.responding  # nothing was started: a 500 can still be sent
    head = s.start_response(200, [(b"x-a", b"fine\tvalue")], length=4)
    assert head.endswith(b"\r\nx-a: fine\tvalue\r\nContent-Length: 4\r\n\r\n")


def test_remembered_response_fields_keep_the_framing_and_the_checks():
    s = server()

    def head(fields, length=None):  # type: ignore[no-untyped-def]
        s.receive_data(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        s.next_event()
        out = s.start_response(200, fields, length=length)
        s.end_response()
        return out

    fields = [(b"content-type", b"text/plain"), (b"content-length", b"4")]
    for _ in range(2):  # the second time from FIELD_LINES / LENGTH_LINES
        out = head(fields)
        assert out.endswith(b"\r\ncontent-type: text/plain\r\ncontent-length: 4\r\n\r\n")
        assert b"Content-Length" not in out and b"chunked" not in out
    for _ in range(2):  # lists are pairs too (ASGI); no length: chunked
        assert head([[b"x-a", b"1"]]).endswith(b"\r\nx-a: 1\r\nTransfer-Encoding: chunked\r\n\r\n")
    for _ in range(2):  # unhashable bytearrays, a length among them
        out = head([(b"x-b", bytearray(b"2")), (b"Content-Length", bytearray(b"3"))])
        assert out.endswith(b"\r\nx-b: 2\r\nContent-Length: 3\r\n\r\n")
    for _ in range(2):  # the server's own fields are dropped every time
        out = head([(b"Server", b"evil"), (b"date", b"y")], 0)
        assert b"evil" not in out and b"date: y" not in out and out.count(b"Date: ") == 1
    s.receive_data(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    s.next_event()
    with pytest.raises(LocalProtocolError, match="CR or LF"):  # a name known with a good value
        s.start_response(200, [(b"content-type", b"text/plain\r\nX: y")], length=0)
    s.end_response()
    for i in range(FIELD_LINES.max_entries + 10):
        out = head([(b"x-n", b"%d" % i)], 0)
        assert out.endswith(b"\r\nx-n: %d\r\nContent-Length: 0\r\n\r\n" % i)
    assert 0 < len(FIELD_LINES) <= FIELD_LINES.max_entries
    out = head([(b"x-long", b"v" * 300)], 0)
    assert b"v" * 300 in out and (b"x-long", b"v" * 300) not in FIELD_LINES


def test_head_and_body_deadlines_take_the_time_from_the_driver():
    s = server(head_timeout=10.0, body_timeout=60.0)
    s.receive_data(b"GET / HTT")
    assert s.next_event() is NEED_DATA and s.deadline_due and s.deadline_phase == "head"
    assert s.start_deadline(100.0) == 110.0 and not s.deadline_due
    s.receive_data(b"P/1.1\r\nHo")  # more of the same head: the clock runs on
    assert s.next_event() is NEED_DATA and not s.deadline_due and s.deadline == 110.0
    assert s.expired(109.9) is None and s.expired(110.0) == "head"
    s = server(head_timeout=10.0, body_timeout=60.0)
    s.receive_data(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nab")
    evs = events(s)
    assert evs[-1] is NEED_DATA and s.deadline_phase == "body" and s.deadline_due
    assert s.start_deadline(5.0) == 65.0 and s.next_deadline() == 65.0
    s.receive_data(b"cde")
    assert [type(e) for e in events(s)] == [Data, EndOfMessage, type(PAUSED)]
    assert s.next_deadline() is None  # the request is in: no deadline
    s = server()  # no timeouts configured: no deadlines at all
    s.receive_data(b"GET / HTT")
    assert s.next_event() is NEED_DATA and not s.deadline_due


def test_100_continue_only_when_asked_and_only_once():
    s = server()
    s.receive_data(b"PUT / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                   b"Content-Length: 3\r\n\r\n")
    s.next_event()
    assert s.send_continue() == b"HTTP/1.1 100 Continue\r\n\r\n"
    assert s.send_continue() == b""
    s = server()
    s.receive_data(b"PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\n")
    s.next_event()
    assert s.send_continue() == b""


def test_a_head_that_cannot_be_read_gets_its_status_and_a_close():
    s = server()
    s.receive_data(b"GET / HTTP/1.1\r\nHost : x\r\n\r\n")
    with pytest.raises(RemoteProtocolError) as caught:
        s.next_event()
    out = s.error_response(caught.value.reply_hint or 400)
    assert out.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert b"Connection: close\r\n" in out and out.endswith(b"400 Bad Request\n")
    assert s.must_close


def test_nothing_is_sent_without_a_request_and_nothing_twice():
    s = server()
    with pytest.raises(LocalProtocolError):
        s.start_response(200, [])
    s.receive_data(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    s.next_event()
    s.start_response(200, [])
    with pytest.raises(LocalProtocolError):
        s.start_response(200, [])


def test_client_reuse_follows_both_sides():
    cl = HTTPConnection(Role.CLIENT)
    wire = cl.send_request(b"GET", b"/", [(b"Host", b"x")])
    assert wire == b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    cl.receive_data(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    assert [type(e) for e in events(cl)] == [Response, Data, EndOfMessage, type(NEED_DATA)]
    assert cl.reusable
    cl.send_request(b"HEAD", b"/", [(b"Host", b"x")])
    cl.receive_data(b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n")  # HEAD: no body
    assert [type(e) for e in events(cl)][:2] == [Response, EndOfMessage] and cl.reusable
    cl.send_request(b"GET", b"/", [(b"Host", b"x"), (b"Connection", b"close")])
    cl.receive_data(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    events(cl)
    assert not cl.reusable  # we said close
    cl = HTTPConnection(Role.CLIENT)
    cl.send_request(b"GET", b"/", [(b"Host", b"x")])
    cl.receive_data(b"HTTP/1.0 200 OK\r\n\r\nuntil close")
    cl.receive_eof()
    assert [type(e) for e in events(cl)] == [Response, Data, EndOfMessage, type(CLOSED)]
    assert not cl.reusable


def test_client_request_body_framing():
    cl = HTTPConnection(Role.CLIENT)
    head = cl.send_request(b"POST", b"/up", [(b"Host", b"x"), (b"Transfer-Encoding",
                                                                b"chunked")])
    assert head.endswith(b"Transfer-Encoding: chunked\r\n\r\n")
    assert cl.send_data(b"ab") == b"2\r\nab\r\n" and cl.end_request() == b"0\r\n\r\n"
    with pytest.raises(LocalProtocolError):
        cl.send_request(b"GET", b"bad target", [])


# --- a client engine wired to a server engine ---------------------------------------

_requests = st.lists(st.tuples(
    st.sampled_from([b"GET", b"POST", b"HEAD"]),
    st.binary(max_size=40),  # request body (sent only with POST)
    st.binary(max_size=40),  # response body
    st.booleans(),  # the response length known (else chunked)
), min_size=1, max_size=5)


def _exchange(reqs, byte_by_byte: bool) -> None:  # type: ignore[no-untyped-def]
    client, srv = HTTPConnection(Role.CLIENT), server()
    wire = b""
    for method, body, _, _ in reqs:
        fields = [(b"Host", b"x")]
        if method == b"POST":
            fields.append((b"Content-Length", b"%d" % len(body)))
        wire += client.send_request(method, b"/", fields)
        if method == b"POST":
            wire += client.send_data(body) + client.end_request()
    pieces = [wire[i:i + 1] for i in range(len(wire))] if byte_by_byte else [wire]
    answers = b""
    got: list[tuple[bytes, bytes]] = []
    body = b""
    answered = 0
    for piece in [*pieces, b""]:
        if piece:
            srv.receive_data(piece)
        while True:
            ev = srv.next_event()
            if isinstance(ev, Request):
                current, body = ev, b""
                if srv.request_complete:
                    ev = EndOfMessage()
            if isinstance(ev, Data):
                body += ev.data
            elif isinstance(ev, EndOfMessage):
                got.append((current.method, body))
                _, _, reply, known = reqs[answered]
                answered += 1
                if known:
                    answers += srv.respond(200, [(b"x-n", b"%d" % answered)], reply)
                else:
                    answers += srv.start_response(200, []) + srv.send_data(reply) + \
                        srv.end_response()
            elif ev is NEED_DATA or ev is PAUSED:
                break
    assert got == [(m, b if m == b"POST" else b"") for m, b, _, _ in reqs]
    client.receive_data(answers)
    replies = []
    for _ in reqs:
        ev = client.next_event()
        assert isinstance(ev, Response) and ev.status == 200
        data = b""
        while not isinstance(ev := client.next_event(), EndOfMessage):
            data += ev.data  # type: ignore[attr-defined]
        replies.append(data)
        assert client.reusable
    assert replies == [b"" if m == b"HEAD" else r for m, _, r, _ in reqs]
    assert client.next_event() is NEED_DATA and srv.idle


@settings(max_examples=150, deadline=None)
@given(_requests)
def test_client_and_server_engines_agree(reqs):  # type: ignore[no-untyped-def]
    _exchange(reqs, byte_by_byte=False)


@settings(max_examples=40, deadline=None)
@given(_requests)
def test_client_and_server_engines_agree_one_byte_at_a_time(reqs):  # type: ignore[no-untyped-def]
    _exchange(reqs, byte_by_byte=True)


def test_send_takes_h11_style_events():
    s = server()
    s.receive_data(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    s.next_event()
    from netkit.proto.http.codec import Headers
    out = s.send(Response(200, Headers([(b"x-a", b"1")])))
    out += s.send(Data(b"hi")) + s.send(EndOfMessage())
    assert out.endswith(b"x-a: 1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n")
    with pytest.raises(LocalProtocolError):
        s.send(object())
    assert c.status_line(299) == b"HTTP/1.1 299 \r\n"


def test_upgrade_and_connect_are_answered_as_http_and_end_the_connection():
    s = server()
    s.receive_data(b"GET /chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                   b"Connection: Upgrade\r\n\r\n\x81\x05hello")  # a frame right behind it
    req = s.next_event()
    assert isinstance(req, Request) and s.request_complete
    assert s.next_event() is PAUSED
    out = s.respond(200, [], b"no websockets here")
    assert b"Connection: close\r\n" in out and s.must_close
    s = server()
    s.receive_data(b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n")
    assert isinstance(s.next_event(), Request) and s.request_complete
    assert b"Connection: close" in s.error_response(405) and s.must_close
