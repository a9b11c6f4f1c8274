"""DKIM signing (RFC 6376), relaxed/relaxed, rsa-sha256 and ed25519-sha256 (RFC 8463),
with `cryptography`; pure functions: the time comes in.

    header = sign(message, domain="example.test", selector="mail", key=private_key,
                  now=time.time())
    message = header + message
"""

from __future__ import annotations

import base64
import hashlib
import re

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

#: signed when present (the last instance of each, as RFC 6376 5.4.2 counts them)
SIGNED = ("from", "to", "cc", "subject", "date", "message-id", "reply-to", "mime-version",
          "content-type", "content-transfer-encoding", "in-reply-to", "references")
_WSP = re.compile(rb"[ \t]+")


def split(message: bytes) -> tuple[list[bytes], bytes]:
    """(header fields, each with its folded continuation lines and CRLF; the body)."""
    message = message.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    head, sep, body = message.partition(b"\r\n\r\n")
    if not sep:
        head, body = message, b""
    fields: list[bytes] = []
    for line in head.split(b"\r\n"):
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1] += line + b"\r\n"
        elif line:
            fields.append(line + b"\r\n")
    return fields, body


def relaxed_header(field: bytes) -> bytes:
    """RFC 6376 3.4.2."""
    name, _, value = field.partition(b":")
    value = value.replace(b"\r\n", b"")
    value = _WSP.sub(b" ", value).strip(b" ")
    return name.strip().lower() + b":" + value + b"\r\n"


def relaxed_body(body: bytes) -> bytes:
    """RFC 6376 3.4.4."""
    lines = body.split(b"\r\n")
    lines = [_WSP.sub(b" ", line).rstrip(b" ") for line in lines]
    while lines and lines[-1] == b"":
        lines.pop()
    return b"".join(line + b"\r\n" for line in lines)


def load_key(pem: bytes) -> rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey:
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey):
        raise ValueError("DKIM keys are RSA or Ed25519")
    return key


def dns_record(key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey) -> str:
    """The TXT record to publish at SELECTOR._domainkey.DOMAIN."""
    public = key.public_key()
    if isinstance(public, ed25519.Ed25519PublicKey):
        raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return f"v=DKIM1; k=ed25519; p={base64.b64encode(raw).decode()}"
    der = public.public_bytes(serialization.Encoding.DER,
                              serialization.PublicFormat.SubjectPublicKeyInfo)
    return f"v=DKIM1; k=rsa; p={base64.b64encode(der).decode()}"


def sign(message: bytes, *, domain: str, selector: str,
         key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey, now: float) -> bytes:
    """The DKIM-Signature field (folded, with CRLF) to put before `message`."""
    fields, body = split(message)
    if body and not body.endswith(b"\r\n"):
        body += b"\r\n"  # as SMTP's DATA will carry it (verifiers differ on a bare end)
    algorithm = "ed25519-sha256" if isinstance(key, ed25519.Ed25519PrivateKey) \
        else "rsa-sha256"
    body_hash = base64.b64encode(hashlib.sha256(relaxed_body(body)).digest()).decode()
    by_name: dict[bytes, list[bytes]] = {}
    for field in fields:
        by_name.setdefault(field.split(b":", 1)[0].strip().lower(), []).append(field)
    names = [n for n in SIGNED if n.encode() in by_name]
    signed = [by_name[n.encode()][-1] for n in names]
    value = (f"v=1; a={algorithm}; c=relaxed/relaxed; d={domain}; s={selector};\r\n"
             f"\tt={int(now)}; h={':'.join(names)};\r\n\tbh={body_hash};\r\n\tb=")
    data = b"".join(relaxed_header(f) for f in signed) + \
        relaxed_header(b"DKIM-Signature: " + value.encode())[:-2]  # no CRLF after it
    if isinstance(key, ed25519.Ed25519PrivateKey):
        signature = key.sign(hashlib.sha256(data).digest())  # RFC 8463: Ed25519 of SHA-256
    else:
        signature = key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    b = base64.b64encode(signature).decode()
    folded = "\r\n\t".join(b[i:i + 72] for i in range(0, len(b), 72))
    return f"DKIM-Signature: {value}{folded}\r\n".encode()
