"""TLS as a sans-IO engine: ciphertext in, plaintext out, and the other way.

`ssl.SSLObject` over two memory BIOs already is a sans-IO TLS machine; this
wraps it with the three things our drivers need on top: a handshake error
turned into one plain sentence (expired certificate, unknown CA, no shared
cipher, plaintext sent to a TLS port ...), bytes that came before the TLS
(a PROXY header) handled by the driver simply by feeding what follows, and
half-close (close_notify one way while the other keeps flowing; TLS 1.3
defines close_notify as a half-close, RFC 8446 section 6.1).
"""

from __future__ import annotations

import ssl
import threading
from dataclasses import dataclass
from typing import Any

from ..errors import TLSError

#: Plaintext gathered per `read()`: up to 16 records decrypted straight into one
#: buffer, handed on as one bytes object (one write downstream instead of 16).
_SHARED = threading.local()  # the decrypt buffer of this thread's connections
_READ_SIZE = 256 * 1024


@dataclass(frozen=True, slots=True)
class TLSInfo:
    """What the handshake settled, for logs, ACLs and routing."""

    version: str
    cipher: str
    alpn: str | None
    server_name: str | None
    peer_cert: dict[str, Any] | None


class TLSEngine:
    """One TLS connection's state, driven by bytes; no sockets, no clock."""

    def __init__(self, context: ssl.SSLContext, *, server_side: bool,
                 server_hostname: str | None = None) -> None:
        self._in = ssl.MemoryBIO()
        self._out = ssl.MemoryBIO()
        self.server_side = server_side
        self._obj = context.wrap_bio(self._in, self._out, server_side=server_side,
                                     server_hostname=server_hostname)
        self.handshake_done = False
        self.first_bytes = b""
        self.sent_close = False

    @property
    def ssl_object(self) -> ssl.SSLObject:
        return self._obj

    def receive(self, data: bytes) -> None:
        """Ciphertext from the network."""
        if not self.handshake_done and len(self.first_bytes) < 16:
            self.first_bytes += data[: 16 - len(self.first_bytes)]
        self._in.write(data)

    def receive_eof(self) -> None:
        """The network said EOF (no more ciphertext will come)."""
        self._in.write_eof()

    def do_handshake(self) -> bool:
        """Advance the handshake; True once it is complete. Raises TLSError with the reason."""
        try:
            self._obj.do_handshake()
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            return False
        except ssl.SSLError as exc:
            raise TLSError(describe_handshake_error(exc, self)) from exc
        self.handshake_done = True
        return True

    def read(self) -> bytes | None:
        """Plaintext available now: bytes, b"" at the end of the stream, None for "need more".

        Decrypts every whole record in the BIO (up to 256 KiB) into one buffer; an end
        of stream right after some data is reported by the next call.
        """
        # one buffer per thread, not per connection: what read() decrypts into it is
        # copied out before it returns, and an idle or half-open connection then costs
        # only OpenSSL's own state (it cost 256 KiB more each)
        buf = getattr(_SHARED, "buf", None)
        if buf is None:
            buf = _SHARED.buf = memoryview(bytearray(_READ_SIZE))
        obj = self._obj
        n = 0
        while n < _READ_SIZE:
            try:
                k = obj.read(_READ_SIZE - n, buf[n:])
            except ssl.SSLWantReadError:
                break
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                # close_notify, or TCP EOF without it: callers treat both as EOF (truncation
                # is the application's business; HTTP and relays have their own framing)
                k = 0
            except ssl.SSLError as exc:
                raise TLSError(f"TLS record error: {exc.reason or exc}") from exc
            if k == 0:
                return bytes(buf[:n]) if n else b""
            n += k
        return bytes(buf[:n]) if n else None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Encrypt plaintext; fetch the ciphertext with `outgoing()`."""
        try:
            self._obj.write(data)
        except ssl.SSLError as exc:
            raise TLSError(f"TLS write failed: {exc.reason or exc}") from exc

    def close_notify(self) -> None:
        """Send close_notify; reading may go on (half-close)."""
        if self.sent_close:
            return
        self.sent_close = True
        try:
            self._obj.unwrap()
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            pass  # sent; the peer's close_notify is not awaited here
        except ssl.SSLError:
            pass  # the connection is already broken; closing it is all that is left

    def outgoing(self) -> bytes:
        """Ciphertext to send now (possibly empty)."""
        return self._out.read() if self._out.pending else b""

    def info(self, server_name: str | None = None) -> TLSInfo:
        """What the handshake settled. Asked late (a connection's end), the session may be
        mid-renegotiation or torn down: ssl then refuses the certificate ("handshake not
        done yet"), and the rest is still worth logging."""
        cipher = self._obj.cipher()
        try:
            peer_cert = self._obj.getpeercert() or None
        except ValueError:
            peer_cert = None
        return TLSInfo(version=self._obj.version() or "", cipher=cipher[0] if cipher else "",
                       alpn=self._obj.selected_alpn_protocol(),
                       server_name=server_name if self.server_side else self._obj.server_hostname,
                       peer_cert=peer_cert)


_PEER_ALERTS = {
    "TLSV1_ALERT_UNKNOWN_CA": "the peer does not trust our certificate (unknown CA)",
    "SSLV3_ALERT_CERTIFICATE_EXPIRED": "the peer says our certificate has expired",
    "SSLV3_ALERT_BAD_CERTIFICATE": "the peer rejected our certificate (bad certificate)",
    "SSLV3_ALERT_CERTIFICATE_UNKNOWN": "the peer rejected our certificate (certificate unknown)",
    "TLSV1_ALERT_PROTOCOL_VERSION": "the peer supports no TLS version we allow",
    "SSLV3_ALERT_HANDSHAKE_FAILURE": "the peer aborted the handshake (no common parameters)",
    "TLSV13_ALERT_CERTIFICATE_REQUIRED": "the peer requires a client certificate and we sent none",
    "TLSV1_UNRECOGNIZED_NAME": "the peer does not serve the requested server name (SNI)",
    "TLSV1_ALERT_NO_APPLICATION_PROTOCOL": "no ALPN protocol in common with the peer",
}

_LOCAL_REASONS = {
    "NO_SHARED_CIPHER": "no shared cipher (the peer offered none we allow)",
    "UNSUPPORTED_PROTOCOL": "the peer offered only TLS versions below our minimum",
    "PEER_DID_NOT_RETURN_A_CERTIFICATE": "the client sent no certificate, but one is required",
    "WRONG_VERSION_NUMBER": "the peer does not speak TLS (wrong version number)",
    "NO_SUITABLE_SIGNATURE_ALGORITHM": "no signature algorithm in common with the peer",
    "CALLBACK_FAILED": "the requested server name (SNI) is not served here",
    "NO_APPLICATION_PROTOCOL": "no ALPN protocol in common with the peer",
}


def describe_handshake_error(exc: ssl.SSLError, engine: TLSEngine | None = None) -> str:
    """One sentence saying why a handshake failed, in the words an operator searches for."""
    first = engine.first_bytes if engine is not None else b""
    if engine is not None and engine.server_side and first and first[0] != 0x16:
        # a TLS connection always opens with a handshake record (content type 22)
        shown = first[:8].decode("ascii", "replace")
        return f"plaintext sent to a TLS port (first bytes {shown!r}), not a TLS ClientHello"
    if isinstance(exc, ssl.SSLCertVerificationError):
        why = exc.verify_message or "verification failed"
        if exc.verify_code == 20 or "local issuer" in why:
            why += " (unknown CA)"
        whose = "client" if engine is not None and engine.server_side else "server"
        return f"{whose} certificate rejected: {why}"
    if isinstance(exc, ssl.SSLEOFError) or (isinstance(exc, ssl.SSLError)
                                             and exc.reason == "UNEXPECTED_EOF_WHILE_READING"):
        return "the peer closed the connection during the handshake"
    reason = getattr(exc, "reason", None) or ""
    if reason in _PEER_ALERTS:
        return _PEER_ALERTS[reason]
    if reason in _LOCAL_REASONS:
        return _LOCAL_REASONS[reason]
    return f"TLS handshake failed: {reason or exc}"
