"""The private event loop the synchronous faces of the clients run on.

One daemon thread per process runs an asyncio loop (uvloop where installed) behind
an anyio blocking portal; `portal().call(async_fn, ...)` runs a coroutine there and
waits, from any thread. Callers on several threads share it safely: everything a
client holds (its pool, its cookie jar) is touched by that loop thread only. The
thread starts on first use and stops at interpreter exit; a forked child starts its
own.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import threading
from typing import Any

from anyio.from_thread import BlockingPortal, start_blocking_portal

_lock = threading.Lock()
_portal: BlockingPortal | None = None
_exit: contextlib.AbstractContextManager[Any] | None = None
_pid = 0


def _backend_options() -> dict[str, Any]:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return {}
    return {"use_uvloop": True}


def portal() -> BlockingPortal:
    global _portal, _exit, _pid
    if _portal is not None and _pid == os.getpid():
        return _portal
    with _lock:
        if _portal is None or _pid != os.getpid():
            _exit = start_blocking_portal("asyncio", _backend_options())
            _portal, _pid = _exit.__enter__(), os.getpid()
            atexit.register(_stop)
        return _portal


def _stop() -> None:
    global _portal, _exit
    if _exit is not None and _pid == os.getpid():
        with contextlib.suppress(Exception):
            _exit.__exit__(None, None, None)
    _portal = _exit = None
