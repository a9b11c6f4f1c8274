"""The SOCKS handshake engine: every request form, fed whole and a byte at a time, and
any bytes at all give a destination, a SocksError or a wait, never another exception."""

from __future__ import annotations

import ipaddress
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netkit.proto.socks import MAX_HANDSHAKE, SocksError, SocksHandshake


def v5(atyp: int, addr: bytes, port: int) -> bytes:
    return b"\x05\x02\x00\x02" + b"\x05\x01\x00" + bytes([atyp]) + addr + struct.pack("!H", port)


CASES = [
    (v5(1, bytes([192, 0, 2, 1]), 80), ("192.0.2.1", 80), b"\x05\x00"),
    (v5(4, ipaddress.IPv6Address("2001:db8::1").packed, 443), ("2001:db8::1", 443),
     b"\x05\x00"),
    (v5(3, b"\x0bexample.com", 8080), ("example.com", 8080), b"\x05\x00"),
    (b"\x04\x01\x00\x50\xc0\x00\x02\x01user\x00", ("192.0.2.1", 80), b""),  # SOCKS4
    (b"\x04\x01\x01\xbb\x00\x00\x00\x01\x00example.org\x00", ("example.org", 443), b""),
]


@pytest.mark.parametrize(("wire", "destination", "first_reply"), CASES)
def test_requests_whole_and_byte_by_byte(wire: bytes, destination: tuple[str, int],
                                         first_reply: bytes) -> None:
    whole = SocksHandshake()
    assert whole.feed(wire + b"early data") == first_reply
    assert whole.destination == destination and whole.buffer == b"early data"
    trickled = SocksHandshake()
    out = b"".join(trickled.feed(bytes([b])) for b in wire)
    assert out == first_reply and trickled.destination == destination
    ok = whole.reply(True)
    assert ok[:2] == (b"\x05\x00" if wire[0] == 5 else b"\x00\x5a")


@pytest.mark.parametrize(("wire", "reply"), [
    (b"\x05\x01\x02", b"\x05\xff"),  # only username/password offered
    (b"\x05\x01\x00\x05\x02\x00\x01\x7f\x00\x00\x01\x00\x50", b"\x05\x07"),  # BIND
    (b"\x05\x01\x00\x05\x01\x00\x09", b"\x05\x08"),  # address type 9
    (b"\x04\x02\x00\x50\x7f\x00\x00\x01\x00", b"\x00\x5b"),  # SOCKS4 BIND
])
def test_refusals_carry_the_protocols_answer(wire: bytes, reply: bytes) -> None:
    hs = SocksHandshake()
    with pytest.raises(SocksError) as caught:
        hs.feed(wire)
    assert caught.value.reply[:2] == reply


def test_not_socks_and_too_long() -> None:
    with pytest.raises(SocksError, match="not SOCKS"):
        SocksHandshake().feed(b"GET / HTTP/1.1\r\n")
    with pytest.raises(SocksError, match="too long"):
        SocksHandshake().feed(b"\x04\x01\x00\x50\x00\x00\x00\x01" + b"u" * MAX_HANDSHAKE)


@given(st.binary(max_size=700))
@settings(max_examples=500, deadline=None)
def test_any_bytes_give_a_destination_an_error_or_a_wait(data: bytes) -> None:
    hs = SocksHandshake()
    try:
        hs.feed(data)
    except SocksError:
        return
    if hs.destination is not None:
        host, port = hs.destination
        assert isinstance(host, str) and 0 <= port < 65536
