"""The one place where OS, ssl and anyio exceptions become `netkit.errors`.

Clients and drivers wrap each phase of their I/O in `map_errors(phase, what)`: a
failure while connecting is a ConnectError (ConnectTimeout), while waiting for the
peer a ReadError (ReadTimeout), while sending a WriteError (WriteTimeout), and a TLS
failure in any phase a TLSError that says why in plain words. The original exception
stays as `__cause__`. Errors that are already netkit's pass through unchanged.
(httpcore's `_exceptions.py::map_exceptions` is the model.)
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Literal

import anyio

from ..errors import (
    ConnectError,
    ConnectTimeout,
    NetkitError,
    ReadError,
    ReadTimeout,
    TLSError,
    TransportError,
    WriteError,
    WriteTimeout,
)
from ..proto.tls import describe_handshake_error

Phase = Literal["connect", "read", "write"]

_FAILED: dict[str, type[TransportError]] = {
    "connect": ConnectError, "read": ReadError, "write": WriteError}
_TIMED_OUT: dict[str, type[TransportError]] = {
    "connect": ConnectTimeout, "read": ReadTimeout, "write": WriteTimeout}

#: what a connection failing looks like, whichever layer noticed
CONNECTION_LOST = (OSError, anyio.BrokenResourceError, anyio.ClosedResourceError,
                   anyio.EndOfStream, asyncio.IncompleteReadError)


def describe(exc: BaseException) -> str:
    """A short reason: the OS's words for an OSError, else the message or the type."""
    if isinstance(exc, ssl.SSLError):
        return describe_handshake_error(exc)
    if isinstance(exc, TimeoutError) and not str(exc):
        return "timed out"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    if isinstance(exc, asyncio.IncompleteReadError):
        return "connection closed mid-message"
    if isinstance(exc, anyio.EndOfStream):
        return "connection closed"
    return str(exc) or type(exc).__name__


class map_errors:  # lower case: it reads as the function it replaced
    """Turn OS/ssl/anyio failures inside the block into the netkit error of `phase`,
    with `what` (the peer, the URL) leading the message. A class, not a generator-based
    context manager: clients enter one per read, and this costs a third as much."""

    __slots__ = ("phase", "what")

    def __init__(self, phase: Phase, what: str) -> None:
        self.phase, self.what = phase, what

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: object) -> bool:
        if exc is None or isinstance(exc, NetkitError):
            return False
        what, phase = self.what, self.phase
        if isinstance(exc, ssl.SSLError):  # before OSError: SSLError is one
            raise TLSError(f"{what}: {describe_handshake_error(exc)}") from exc
        if isinstance(exc, TimeoutError):  # before OSError: TimeoutError is one
            raise _TIMED_OUT[phase](f"{what}: {phase} timed out") from exc
        if isinstance(exc, CONNECTION_LOST):
            raise _FAILED[phase](f"{what}: {describe(exc)}") from exc
        return False
