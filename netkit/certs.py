"""`netkit cert`: a local CA and leaf certificates for development, like mkcert.

    netkit cert [--dir DIR] [--days N] NAME [NAME ...]

creates DIR/ca.pem and DIR/ca-key.pem once, then DIR/NAME.pem and
DIR/NAME-key.pem for the first NAME, valid for every NAME given: host names
become DNS names, addresses become IP addresses, and ``scheme://...`` becomes a
URI (SPIFFE IDs for mTLS rules). Keys are ECDSA P-256 (fast handshakes, what
Let's Encrypt issues by default) and written with mode 0600.
"""

from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import os
import re
import sys
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_CERT, CA_KEY = "ca.pem", "ca-key.pem"


def default_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share")
    return Path(base) / "netkit" / "dev-ca"


def _write_private(path: Path, data: bytes) -> None:
    # created 0600 from the start: never a moment where the key is world-readable
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(path, 0o600)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def ensure_ca(directory: Path) -> tuple[Path, Path]:
    """The CA in `directory`, created when missing. Returns (cert, key) paths."""
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / CA_CERT, directory / CA_KEY
    if cert_path.exists() and key_path.exists():
        return cert_path, key_path
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "netkit development CA"),
                      x509.NameAttribute(NameOID.COMMON_NAME, "netkit dev CA")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True,
                                         crl_sign=True, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False,
                                         decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .sign(key, hashes.SHA256()))
    _write_private(key_path, _key_pem(key))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path


_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")
_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s]+")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+")


def _san(name: str) -> x509.GeneralName:
    """The subject alternative name for `name`: an IP address, a DNS name (``*.`` allowed
    as the first label), an email address or a URI; ValueError for anything else."""
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        pass
    if _URI.fullmatch(name):
        return x509.UniformResourceIdentifier(name)
    if _EMAIL.fullmatch(name) and _is_dns_name(name.rsplit("@", 1)[1]):
        return x509.RFC822Name(name)
    host = name[2:] if name.startswith("*.") else name
    if _is_dns_name(host):
        return x509.DNSName(name)
    raise ValueError(f"{name!r} is not a DNS name, an IP address, an email address or a URI")


def _is_dns_name(name: str) -> bool:
    name = name.rstrip(".")
    return 0 < len(name) <= 253 and all(_LABEL.fullmatch(label) for label in name.split("."))


def issue(directory: Path, names: list[str], *, days: float = 825,
          not_before: dt.datetime | None = None, not_after: dt.datetime | None = None,
          stem: str | None = None) -> tuple[Path, Path]:
    """A leaf certificate for `names` signed by the CA in `directory` (created if needed).

    Returns (cert, key) paths. `not_before`/`not_after` override `days` (tests use them
    to make expired certificates). 825 days is the longest lifetime browsers accept.
    """
    if not names:
        raise ValueError("at least one name is needed")
    sans = [_san(n) for n in names]  # every name checked before anything is written
    ca_cert_path, ca_key_path = ensure_ca(directory)
    ca_cert = x509.load_pem_x509_certificate(ca_cert_path.read_bytes())
    ca_key = serialization.load_pem_private_key(ca_key_path.read_bytes(), None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    start = not_before or now - dt.timedelta(hours=1)
    end = not_after or now + dt.timedelta(days=days)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
            .issuer_name(ca_cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(end)
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                  ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    stem = stem or names[0].replace("://", "_").replace("/", "_").replace(":", "_").lstrip("*.")
    cert_path, key_path = directory / f"{stem}.pem", directory / f"{stem}-key.pem"
    _write_private(key_path, _key_pem(key))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="netkit cert", description=__doc__.split("\n")[0])
    parser.add_argument("names", nargs="+", metavar="NAME",
                        help="DNS name (*.example.com too), IP address, email address or URI "
                             "the certificate is valid for")
    parser.add_argument("--dir", type=Path, default=None,
                        help=f"where the CA and certificates go (default {default_dir()})")
    parser.add_argument("--days", type=float, default=825, help="validity (default 825)")
    parser.add_argument("--stem", default=None, help="file name stem (default: first NAME)")
    args = parser.parse_args(argv)
    problems = []
    for name in args.names:
        try:
            _san(name)
        except ValueError as exc:
            problems.append(f"netkit cert: {exc}")
    if problems:
        print("\n".join(problems), file=sys.stderr)
        return 2
    directory = args.dir or default_dir()
    ca, _ = ensure_ca(directory)
    cert, key = issue(directory, args.names, days=args.days, stem=args.stem)
    print(f"CA:          {ca}\ncertificate: {cert}\nkey:         {key}")
    return 0
