"""The one exception hierarchy of netkit.

Who was wrong decides the class: the operator (ConfigError), our own code
(LocalProtocolError), the peer (RemoteProtocolError), or the network
(TransportError and the timeouts, split by the phase that ran out).
"""

from __future__ import annotations


class NetkitError(Exception):
    """Base of every error netkit raises on purpose."""


class ConfigError(NetkitError):
    """A configuration is invalid; `problems` lists every one, each a full sentence."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class ProtocolError(NetkitError):
    """A protocol rule was broken."""


class TooManyRedirects(ProtocolError):
    """A chain of redirects was longer than the client allows."""


class LocalProtocolError(ProtocolError):
    """We tried to do something the protocol does not allow (a bug on our side)."""


class RemoteProtocolError(ProtocolError):
    """The peer sent something the protocol does not allow.

    `reply_hint` is the protocol's own answer where it has one (an HTTP status,
    a DNS rcode, an SMTP code), so a server can answer before closing.
    """

    def __init__(self, message: str, *, reply_hint: int | None = None) -> None:
        super().__init__(message)
        self.reply_hint = reply_hint


class TransportError(NetkitError):
    """A socket-level failure (refused, reset, unreachable)."""


class ConnectError(TransportError):
    """No connection could be made; `attempts` says what each address did."""

    def __init__(self, message: str, attempts: list[tuple[str, str]] | None = None) -> None:
        self.attempts = attempts or []
        if self.attempts:
            message += ": " + "; ".join(f"{addr}: {why}" for addr, why in self.attempts)
        super().__init__(message)


class ReadError(TransportError):
    """The connection failed while we waited for the peer (reset, closed mid-message)."""


class WriteError(TransportError):
    """The connection failed while we sent (reset, broken pipe)."""


class TLSError(TransportError):
    """A TLS handshake or record failed; the message says why in plain words."""


class NetkitTimeout(NetkitError, TimeoutError):
    """Base of the timeouts, one per phase."""


class ConnectTimeout(NetkitTimeout, ConnectError):
    """Connecting (TCP and TLS handshake) took longer than allowed."""


class ReadTimeout(NetkitTimeout, ReadError):
    """The peer sent nothing for longer than allowed."""


class WriteTimeout(NetkitTimeout, WriteError):
    """The peer took nothing of what we sent for longer than allowed."""


class ResolveTimeout(NetkitTimeout):
    """Name resolution did not finish in time."""


class HTTPStatusError(NetkitError):
    """`raise_for_status()` met a 4xx or 5xx answer; `response` is that answer."""

    def __init__(self, message: str, *, response: object) -> None:
        super().__init__(message)
        self.response = response


class DNSError(NetkitError):
    """A DNS answer that is not the records asked for (the stub client's `resolve`)."""


class NXDOMAIN(DNSError):
    """The name does not exist (every name tried, the search list applied)."""

    def __init__(self, message: str, *, names: list[str] | None = None) -> None:
        super().__init__(message)
        self.names = names or []


class NoAnswer(DNSError):
    """The name exists but has no records of the type asked for (NODATA)."""


class NoNameservers(DNSError):
    """Every server failed the question (SERVFAIL, REFUSED, or a reply that made no sense)."""
