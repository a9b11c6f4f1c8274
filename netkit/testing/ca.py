"""A development certificate authority for tests: trustme's CA, with its files on disk
(servers read certificates from files) and an `ssl.SSLContext` that trusts it."""

from __future__ import annotations

import ssl
import tempfile
from pathlib import Path

import trustme


class DevCA:
    """A CA made in memory (ECDSA), written under `directory` (a temp dir by default)."""

    def __init__(self, directory: Path | None = None) -> None:
        if directory is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="netkit-ca-")
            directory = Path(self._tmp.name)
        self.directory = directory
        self.ca = trustme.CA(organization_name="netkit test CA")
        self.ca_file = directory / "ca.pem"
        """The CA certificate (PEM): what clients are told to trust."""
        self.ca.cert_pem.write_to_path(str(self.ca_file))
        self._issued = 0

    def issue(self, *names: str) -> tuple[Path, Path]:
        """(certificate chain, private key) files for these DNS names or IP addresses
        (default: localhost, 127.0.0.1 and ::1)."""
        names = names or ("localhost", "127.0.0.1", "::1")
        leaf = self.ca.issue_cert(*names)
        self._issued += 1
        cert = self.directory / f"cert-{self._issued}.pem"
        key = self.directory / f"key-{self._issued}.pem"
        leaf.cert_chain_pems[0].write_to_path(str(cert))
        for extra in leaf.cert_chain_pems[1:]:
            extra.write_to_path(str(cert), append=True)
        leaf.private_key_pem.write_to_path(str(key))
        key.chmod(0o600)
        return cert, key

    def client_context(self) -> ssl.SSLContext:
        """A client context that trusts this CA (and only it), checking host names."""
        return ssl.create_default_context(cafile=str(self.ca_file))

    def server_context(self, *names: str) -> ssl.SSLContext:
        """A server context with a certificate for `names` (for a test's own servers)."""
        cert, key = self.issue(*names)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)
        return context
