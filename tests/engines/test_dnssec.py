"""DNSSEC's pure checks: known vectors (IANA's root key, RFC 5155's NSEC3 hashes), and
hypothesis feeding malformed DNSKEY, RRSIG, DS, NSEC and NSEC3 records to the parsers and
the validator: a verdict or BadRecord/Bogus, never another exception."""

from __future__ import annotations

import base64
import contextlib
import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from netkit.proto.dns import validate
from netkit.proto.dns.dnssec import (
    IANA_ROOT_ANCHORS,
    BadRecord,
    Dnskey,
    Ds,
    Nsec,
    Nsec3,
    Rrsig,
    Verdict,
    ds_matches,
    nsec3_hash,
    parse_trust_anchors,
    type_bitmap,
    verify_dnskeys,
    verify_rrset,
)
from netkit.proto.dns.message import Message, Record

ROOT_KSK_2017 = (
    "AwEAAaz/tAm8yTn4Mfeh5eyI96WSVexTBAvkMgJzkKTOiW1vkIbzxeF3+/4RgWOq7HrxRixHlFlExOLAJr5em"
    "LvN7SWXgnLh4+B5xQlNVz8Og8kvArMtNROxVQuCaSnIDdD5LKyWbRd2n9WGe2R8PzgCmr3EgVLrjyBxWezF0jL"
    "HwVN8efS3rCj/EWgvIWgb9tarpVUDK/b58Da+sqqls3eNbuv7pr+eoZG+SrDK6nWeL3c6H5Apxz7LjVc1uTIds"
    "IXxuOLYA4/ilBmSVIzuDWfdRUfhHdY6+cn8HFRm+2hM8AnXGXws9555KrUB5qihylGa8subX2Nn6UwNR1AkUTV"
    "74bU=")


def test_the_root_key_has_its_tag_and_matches_ianas_ds() -> None:
    key = Dnskey.parse(struct.pack("!HBB", 257, 3, 8) + base64.b64decode(ROOT_KSK_2017))
    assert key.key_tag == 20326 and key.zone_key
    anchors = parse_trust_anchors(IANA_ROOT_ANCHORS)
    assert ds_matches(".", key, anchors[0]) and not ds_matches(".", key, anchors[1])


def test_nsec3_hashes_of_rfc_5155_appendix_a() -> None:
    salt = bytes.fromhex("aabbccdd")
    assert base64.b32hexencode(nsec3_hash("example.", salt, 12)).decode().lower() == \
        "0p9mhaveqvm6t7vbl5lop2u3t2rp3tom"
    assert base64.b32hexencode(nsec3_hash("a.example.", salt, 12)).decode().lower() == \
        "35mthgpgcu1qg68fab165klnsnk3dpvl"


def test_type_bitmaps() -> None:
    # A (1), MX (15), RRSIG (46), NSEC (47), TYPE1234 (window 4)
    bitmap = bytes([0, 6, 0x40, 0x01, 0, 0, 0, 0x03, 4, 27]) + bytes(26) + bytes([0x20])
    assert type_bitmap(bitmap) == {1, 15, 46, 47, 1234}


def test_signature_windows_use_serial_arithmetic() -> None:
    from netkit.proto.dns.dnssec import _serial_lt
    assert _serial_lt(1, 2) and not _serial_lt(2, 1)
    assert _serial_lt(0xFFFFFFF0, 5)  # across the 2106 wrap


def _record(name: str, rtype: int, rdata: bytes, ttl: int = 300) -> Record:
    return Record(name, rtype, 1, ttl, rdata)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300))
def test_malformed_rdata_only_ever_raises_badrecord(data: bytes) -> None:
    for parse in (Rrsig.parse, Dnskey.parse, Ds.parse, type_bitmap):
        with contextlib.suppress(BadRecord):
            parse(data)
    for parse_owned in (Nsec.parse, Nsec3.parse):
        with contextlib.suppress(BadRecord):
            parse_owned("abc.example.", data)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200), st.binary(max_size=200),
       st.sampled_from([5, 7, 8, 10, 13, 14, 15, 16, 3, 253]))
def test_the_validator_gives_a_verdict_for_any_key_and_signature(sig: bytes, key: bytes,
                                                                 algorithm: int) -> None:
    dnskey = Dnskey(256, 3, algorithm, key, struct.pack("!HBB", 256, 3, algorithm) + key)
    tag = dnskey.key_tag
    rrsig = _record("www.example.", 46,
                    struct.pack("!HBBIIIH", 1, algorithm, 2, 300, 0xFFFFFFF0, 0, tag) +
                    b"\x07example\x00" + sig)
    checked = verify_rrset([_record("www.example.", 1, b"\xc0\x00\x02\x01")], [rrsig],
                           [dnskey], "example.", 1_000_000)
    assert checked.verdict in set(Verdict)
    keys = [_record("example.", 48, dnskey.rdata)]
    checked, trusted = verify_dnskeys("example.", keys, [rrsig], [Ds(tag, algorithm, 2,
                                                                     bytes(32))], 1.0)
    assert checked.verdict is not Verdict.SECURE and trusted == []


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([47, 50, 46, 6]), st.binary(max_size=80)),
                max_size=6),
       st.booleans())
def test_denial_proofs_of_garbage_are_bogus_never_a_crash(records, nxdomain: bool) -> None:
    msg = Message(1, 0x8403, "nope.example.", 1, 1, b"")
    owners = ["example.", "abcd.example.", "0p9mhaveqvm6t7vbl5lop2u3t2rp3tom.example."]
    msg._authority = [_record(owners[i % 3], rtype, data)
                      for i, (rtype, data) in enumerate(records)]
    key = Dnskey(257, 3, 13, bytes(64), struct.pack("!HBB", 257, 3, 13) + bytes(64))
    try:
        state = validate.check_negative(msg, "nope.example.", 1, "example.", [key], 1.0,
                                        nxdomain)
    except validate.Bogus:
        return
    assert state in (validate.SECURE, validate.INSECURE)
    assert records  # nothing proven from no records at all


def test_signature_windows_allow_clock_skew_as_unbound_does() -> None:
    from netkit.proto.dns.dnssec import clock_skew

    def sig(inception: int, expiration: int) -> Rrsig:
        return Rrsig(1, 13, 2, 300, expiration, inception, 1, "example.", b"", b"")
    assert clock_skew(sig(0, 30 * 86400)) == 86400  # a tenth, at most a day
    assert clock_skew(sig(0, 5 * 86400)) == 43200
    assert clock_skew(sig(0, 600)) == 3600  # at least an hour
