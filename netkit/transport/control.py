"""The control channel's socket: one Unix stream socket per process, mode 0600.

A request is one JSON object on one line, the answer one JSON object on one line,
then the connection closes. Not a hot path, so anyio-free asyncio streams are
enough; what matters is that a stuck or flooding client cannot hold the process:
a request line is capped and must arrive within a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from ..errors import ConnectError, ConnectTimeout

log = logging.getLogger("netkit.control")

MAX_REQUEST = 64 * 1024
REQUEST_TIMEOUT = 5.0

Answer = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


class ControlSocket:
    """Listens on `path` and answers each request with `answer(request)`."""

    def __init__(self, path: Path, answer: Answer, *,
                 timeout: float = REQUEST_TIMEOUT) -> None:
        self.path = path
        self.answer = answer
        self.timeout = timeout
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()  # a stale socket of a process with our PID, long gone
        old = os.umask(0o177)  # the socket is born 0600: no window where others may connect
        try:
            self._server = await asyncio.start_unix_server(self._client, path=str(self.path),
                                                           limit=MAX_REQUEST)
        finally:
            os.umask(old)
        log.info("control: listening on %s", self.path)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            try:
                async with asyncio.timeout(self.timeout):
                    line = await reader.readline()
                request = json.loads(line)
                if not isinstance(request, dict):
                    raise ValueError("expected a JSON object")
            except TimeoutError:
                reply: dict[str, Any] = {"ok": False, "error": "bad request: no request line "
                                                              f"within {self.timeout} s"}
            except (ValueError, asyncio.LimitOverrunError) as exc:
                reply = {"ok": False, "error": f"bad request: {exc}"}
            else:
                reply = await self.answer(request)
            writer.write(json.dumps(reply, default=str).encode() + b"\n")
            await writer.drain()
        except (ConnectionError, OSError):
            pass  # the caller went away
        finally:
            writer.close()

    def close(self) -> None:
        if self._server is not None:
            self._server.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


def request(path: Path, message: dict[str, Any], timeout: float = 10.0) -> dict[str, Any]:
    """Send one request to a control socket and return the answer (for `netkit ctl`)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        try:
            sock.connect(str(path))
        except OSError as exc:
            raise ConnectError(f"cannot connect to {path}: {exc.strerror or exc}") from exc
        sock.sendall(json.dumps(message).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    except TimeoutError:
        raise ConnectTimeout(f"{path}: no answer in {timeout} s") from None
    finally:
        sock.close()
    return json.loads(data)
