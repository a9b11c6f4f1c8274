"""PROXY protocol v1/v2 codec: round trips, byte-at-a-time, and fuzzed input."""

from __future__ import annotations

import contextlib
import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from netkit.errors import RemoteProtocolError
from netkit.proto import proxy

ipv4 = st.ip_addresses(v=4).map(str)
ipv6 = st.ip_addresses(v=6).filter(lambda a: a.ipv4_mapped is None).map(str)
port = st.integers(0, 65535)


@given(st.one_of(st.tuples(ipv4, ipv4), st.tuples(ipv6, ipv6)), port, port,
       st.sampled_from([proxy.encode_v1, proxy.encode_v2]), st.binary(max_size=64))
def test_round_trip_whole_and_byte_at_a_time(hosts, sport, dport, encode, rest):
    src, dst = (hosts[0], sport), (hosts[1], dport)
    wire = encode(src, dst)
    header, used = proxy.decode(wire + rest)
    assert used == len(wire)
    assert (header.source, header.destination) == (
        (str(ipaddress.ip_address(src[0])), sport), (str(ipaddress.ip_address(dst[0])), dport))
    for i in range(len(wire)):  # every prefix means "need more", never an error
        assert proxy.decode(wire[:i]) is None


@given(st.binary(max_size=300))
def test_any_input_is_a_header_need_more_or_our_error(data):
    try:
        result = proxy.decode(data)
    except RemoteProtocolError:
        return
    if result is not None:
        header, used = result
        assert 0 < used <= len(data) and header.version in (1, 2)


@given(st.binary(min_size=1, max_size=200))
def test_mutated_v2_headers_never_raise_anything_else(noise):
    wire = bytearray(proxy.encode_v2(("10.1.2.3", 4), ("10.4.5.6", 7), tlvs=((1, b"h2"),)))
    for i, b in enumerate(noise):
        wire[(i * 7) % len(wire)] ^= b
    with contextlib.suppress(RemoteProtocolError):
        proxy.decode(bytes(wire))


def test_v2_tlvs_and_local_command():
    wire = proxy.encode_v2(("10.1.2.3", 4), ("10.4.5.6", 7), tlvs=((1, b"h2"), (2, b"x.example")))
    header, _ = proxy.decode(wire)
    assert header.tlvs == ((1, b"h2"), (2, b"x.example"))
    local, used = proxy.decode(proxy.encode_v2(None, None))
    assert (local.source, used) == (None, 16)


def test_ipv4_mapped_addresses_are_sent_as_ipv4():
    assert proxy.encode_v1(("::ffff:1.2.3.4", 5), ("127.0.0.1", 6)) == \
        b"PROXY TCP4 1.2.3.4 127.0.0.1 5 6\r\n"


@pytest.mark.parametrize("wire,message", [
    (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n", "malformed PROXY v1 header"),
    (b"PROXY TCP4 1.2.3.4 ::1 1 2\r\n", "bad address or port"),
    (b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n", "bad address or port"),
    (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 65536\r\n", "bad address or port"),
    (b"PROXY TCP4 999.2.3.4 5.6.7.8 1 2\r\n", "bad address"),
    (b"PROXY " + b"A" * 120, "longer than 107 bytes"),
    (b"GET / HTTP/1.1\r\n", "expected a PROXY protocol header"),
    (proxy.V2_SIGNATURE + b"\x31\x11\x00\x0c" + bytes(12), "version 3"),
    (proxy.V2_SIGNATURE + b"\x22\x11\x00\x0c" + bytes(12), "unknown command 2"),
    (proxy.V2_SIGNATURE + b"\x21\x11\x00\x04" + bytes(4), "address block of 4 bytes"),
    (proxy.V2_SIGNATURE + b"\x21\x11\xff\xff", "limit 2048"),
    (proxy.V2_SIGNATURE + b"\x21\x11\x00\x0e" + bytes(12) + b"\x01\x00", "truncated TLV"),
])
def test_bad_headers_get_a_reason(wire, message):
    with pytest.raises(RemoteProtocolError, match=message):
        proxy.decode(wire)
