"""The control socket against bad callers: garbage, a line too long, silence."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import stat
import time

from netkit.transport.control import MAX_REQUEST, ControlSocket


async def _answer(request: dict) -> dict:  # type: ignore[type-arg]
    return {"ok": True, "result": request}


def _ask(path: str, data: bytes, *, shut: bool = True) -> dict:  # type: ignore[type-arg]
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(5)
        s.connect(path)
        s.sendall(data)
        if shut:
            s.shutdown(socket.SHUT_WR)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    return json.loads(out)


def test_control_socket_answers_good_and_bad_callers(tmp_path):
    path = tmp_path / "run" / "c.sock"

    async def main() -> None:
        server = ControlSocket(path, _answer, timeout=0.3)
        await server.start()
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        loop = asyncio.get_running_loop()

        async def ask(data: bytes, **kw: bool) -> dict:  # type: ignore[type-arg]
            return await loop.run_in_executor(None, lambda: _ask(str(path), data, **kw))

        assert await ask(b'{"command": "status"}\n') == {"ok": True,
                                                         "result": {"command": "status"}}
        bad = await ask(b"not json\n")
        assert not bad["ok"] and bad["error"].startswith("bad request:")
        bad = await ask(b"[1, 2]\n")
        assert bad == {"ok": False, "error": "bad request: expected a JSON object"}
        bad = await ask(b"x" * (MAX_REQUEST + 10))  # no newline, over the cap
        assert not bad["ok"] and bad["error"].startswith("bad request:")
        t0 = time.monotonic()
        bad = await ask(b'{"comm', shut=False)  # a caller that stops mid-line
        assert bad == {"ok": False, "error": "bad request: no request line within 0.3 s"}
        assert time.monotonic() - t0 < 3
        server.close()
        assert not path.exists()

    asyncio.run(main())
