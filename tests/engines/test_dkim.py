"""DKIM signatures checked by an independent verifier (dkimpy), RSA and Ed25519, for
bodies and headers hypothesis makes up; and the canonicalisations on RFC 6376's
own example (3.4.5)."""

from __future__ import annotations

import dkim as dkimpy
import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from hypothesis import given, settings
from hypothesis import strategies as st

from netkit.proto.smtp import dkim

RSA_KEY = rsa.generate_private_key(65537, 2048)
ED_KEY = ed25519.Ed25519PrivateKey.generate()


def verified(message: bytes, key: object) -> bool:
    record = dkim.dns_record(key).encode()  # type: ignore[arg-type]

    def dnsfunc(name: bytes, timeout: int = 5) -> bytes:
        assert name == b"sel._domainkey.example.test."
        return record
    return bool(dkimpy.verify(message, dnsfunc=dnsfunc))


def test_rfc6376_3_4_5_example() -> None:
    fields, body = dkim.split(b"A: X\r\nB : Y\t\r\n\tZ  \r\n\r\n C \r\nD \t E\r\n\r\n\r\n")
    assert [dkim.relaxed_header(f) for f in fields] == [b"a:X\r\n", b"b:Y Z\r\n"]
    assert dkim.relaxed_body(body) == b" C\r\nD E\r\n"


@pytest.mark.parametrize("key", [RSA_KEY, ED_KEY], ids=["rsa-sha256", "ed25519-sha256"])
def test_signed_mail_verifies_and_tampering_does_not(key: object) -> None:
    message = (b"From: Ann <ann@example.test>\r\nTo: bob@far.test\r\nSubject:  hi\r\n"
               b"\tthere\r\n\r\nHello  Bob \r\n\r\n\r\n")
    signed = dkim.sign(message, domain="example.test", selector="sel", key=key,  # type: ignore
                       now=1_700_000_000) + message
    assert verified(signed, key)
    assert not verified(signed.replace(b"Hello", b"Jello"), key)
    assert not verified(signed.replace(b"Subject:  hi", b"Subject:  ho"), key)


text = st.text(st.characters(codec="ascii", exclude_categories=("Cc",)), max_size=60)


@given(st.lists(text, max_size=8), text)
@settings(max_examples=60, deadline=None)
def test_any_body_and_subject_verify(lines: list[str], subject: str) -> None:
    body = "\r\n".join(lines).encode() + b"\r\n"  # SMTP's DATA always ends a line
    message = b"From: a@example.test\r\nSubject: " + subject.encode() + b"\r\n\r\n" + body
    for key in (RSA_KEY, ED_KEY):
        signed = dkim.sign(message, domain="example.test", selector="sel", key=key,
                           now=1_700_000_000) + message
        assert verified(signed, key)
