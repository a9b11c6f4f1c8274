"""OS, ssl and anyio failures become netkit errors in one place, by phase."""

from __future__ import annotations

import errno
import socket
import ssl
import threading

import anyio
import pytest

from netkit.clients.http import Client
from netkit.errors import (
    ConnectError,
    ConnectTimeout,
    NetkitError,
    ReadError,
    ReadTimeout,
    RemoteProtocolError,
    TLSError,
    WriteError,
)
from netkit.transport.errors import map_errors


@pytest.mark.parametrize(("phase", "raised", "expected", "text"), [
    ("connect", ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused"),
     ConnectError, "x: Connection refused"),
    ("connect", TimeoutError(), ConnectTimeout, "x: connect timed out"),
    ("read", ConnectionResetError(errno.ECONNRESET, "Connection reset by peer"),
     ReadError, "x: Connection reset by peer"),
    ("read", anyio.EndOfStream(), ReadError, "x: connection closed"),
    ("read", TimeoutError(), ReadTimeout, "x: read timed out"),
    ("write", BrokenPipeError(errno.EPIPE, "Broken pipe"), WriteError, "x: Broken pipe"),
    ("write", anyio.BrokenResourceError(), WriteError, "x: BrokenResourceError"),
])
def test_each_phase_has_its_error(phase, raised, expected, text):
    with pytest.raises(expected) as caught, map_errors(phase, "x"):
        raise raised
    assert str(caught.value) == text and caught.value.__cause__ is raised
    assert isinstance(caught.value, NetkitError)


def test_tls_errors_say_why_and_netkit_errors_pass_through():
    err = ssl.SSLCertVerificationError(1, "[SSL: CERTIFICATE_VERIFY_FAILED] certificate "
                                          "verify failed: certificate has expired")
    err.verify_message, err.verify_code = "certificate has expired", 10  # as ssl sets them
    err.reason = "CERTIFICATE_VERIFY_FAILED"
    with pytest.raises(TLSError, match=r"^peer: .*expired"), map_errors("read", "peer"):
        raise err
    original = RemoteProtocolError("garbage")
    with pytest.raises(RemoteProtocolError) as caught, map_errors("read", "peer"):
        raise original
    assert caught.value is original
    with pytest.raises(ValueError), map_errors("read", "peer"):
        raise ValueError("a bug is not a transport error")


def test_http_client_read_failure_is_a_read_error_not_a_connect_error():
    # a server that takes the request and closes without a word
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        conn, _ = listener.accept()
        conn.recv(65536)
        conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()

    async def main() -> None:
        async with Client() as client:
            await client.get(f"http://127.0.0.1:{port}/")

    try:
        with pytest.raises(ReadError) as caught:
            anyio.run(main)
        assert not isinstance(caught.value, ConnectError)
        assert "connection closed without a response" in str(caught.value)
    finally:
        thread.join(5)
        listener.close()
