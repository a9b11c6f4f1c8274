"""Servers run from Python: the one code path the CLI, `netkit.testing` and users share.

    async with netkit.servers.dns.serve({"dns": {"recursion": False}}) as server:
        server.addresses            # [("127.0.0.1", 40123)], bound, port 0 resolved

A config is what a ``--config`` file holds: a `{"dns": {...}}` document, TOML text, or
the section's dataclass; it is checked exactly as the CLI checks a file (a
`ConfigError` lists every problem). `serve` starts the server on the caller's event
loop, yields a `Server`, and on exit drains it (in-flight work finishes, for up to the
section's ``shutdown_timeout``) and closes every socket. Under ``serve()`` listeners
left unset are on 127.0.0.1, port 0; the CLI keeps each server's own defaults.

The servers use asyncio's protocols, so they run on asyncio (uvloop or not). Called
from trio, `serve` runs the server on an asyncio loop in a thread of its own and
yields the same `Server` (`ThreadedServer`, which is also what `serve_in_thread` gives
a synchronous caller).
"""

from __future__ import annotations

import asyncio
import copy
import tomllib
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import anyio
import anyio.abc
from anyio.from_thread import BlockingPortal, start_blocking_portal

from . import config as config_mod
from .contract import ServerSpec, Service, spec_of
from .errors import ConfigError
from .transport.listeners import SocketPresets

T = TypeVar("T")
#: where serve() listens when the config does not say
LOOPBACK_ANY_PORT = "127.0.0.1:0"


def document(config: Mapping[str, Any] | str | None, source: str = "<config>"
             ) -> dict[str, Any]:
    """A config document from a dict or TOML text (copied: the caller's is never changed);
    unknown sections and TOML syntax are ConfigError."""
    if config is None:
        return {}
    if isinstance(config, str):
        try:
            doc = tomllib.loads(config)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError([f"{source}: invalid TOML: {exc}"]) from None
    elif isinstance(config, Mapping):
        doc = copy.deepcopy(dict(config))
    else:
        raise ConfigError([f"{source}: expected a dict or TOML text, got "
                           f"{type(config).__name__}"])
    config_mod.check_sections(doc, source)
    return doc


def load(spec: ServerSpec, config: Any, *, loopback: bool = False,
         base_dir: Path | None = None, source: str = "<config>") -> Any:
    """The server's config dataclass from any form of config (an instance is returned
    as it is). `loopback`: listeners left unset go on 127.0.0.1 port 0."""
    if isinstance(config, spec.config):
        return config
    doc = document(config, source)
    if loopback:
        (spec.loopback_defaults or partial(_listen_default, spec.name))(doc, LOOPBACK_ANY_PORT)
    return config_mod.load_section(spec.config, doc, spec.name, source=source,
                                   base_dir=base_dir)


def _listen_default(section: str, doc: dict[str, Any], address: str) -> None:
    doc.setdefault(section, {}).setdefault("listen", [address])


@dataclass
class Server:
    """A server running in this process."""

    spec: ServerSpec
    config: Any
    service: Service

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def addresses(self) -> list[tuple[str, int]]:
        """Where it listens, as bound (port 0 resolved)."""
        return [(a.host, a.port) for a in self.service.addresses()]

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` (https with TLS) for servers that have URLs."""
        url = getattr(self.service, "url", None)
        if url is None:
            raise AttributeError(f"a {self.name} server has no URL; use .addresses")
        return url

    @property
    def counters(self) -> dict[str, int]:
        """Connections, datagrams and bytes, and the server's own counts."""
        return self.service.counters()

    def status(self) -> dict[str, Any]:
        return self.service.status()

    def reload(self, config: Any) -> None:
        """As SIGHUP with a new config; ConfigError keeps the running one."""
        new = load(self.spec, config, loopback=True)
        self.service.reload(new)
        self.config = new


@dataclass
class Running:
    """One server of a process: its spec, its config, and (once created) its service."""

    spec: ServerSpec
    config: Any
    service: Service | None = None


@asynccontextmanager
async def running(servers: list[Running], presets: SocketPresets
                  ) -> AsyncIterator[anyio.abc.TaskGroup]:
    """Start every created service; on leaving, drain them all (each for its
    shutdown_timeout) and cancel what is left. An error in the body comes out as it
    was raised, not wrapped in a task group's ExceptionGroup."""
    failure: BaseException | None = None
    async with anyio.create_task_group() as tg:
        try:
            for s in servers:
                assert s.service is not None
                await s.service.start(tg, presets)
            yield tg
        except BaseException as exc:
            failure = exc
        finally:
            with anyio.CancelScope(shield=True):
                async with anyio.create_task_group() as drains:
                    for s in servers:
                        if s.service is not None:
                            timeout = s.config.shutdown_timeout if failure is None else 0
                            drains.start_soon(s.service.drain, timeout)
            tg.cancel_scope.cancel()
    if failure is not None:
        raise failure


@asynccontextmanager
async def serve(spec: ServerSpec | str, config: Any = None, **objects: Any
                ) -> AsyncIterator[Server]:
    """Run a server on the caller's event loop until the block ends (see the module
    docstring); on trio, in a thread of its own."""
    spec = spec_of(spec) if isinstance(spec, str) else spec
    if not _on_asyncio():
        threaded = ThreadedServer(spec, config, objects)
        await anyio.to_thread.run_sync(threaded.start)
        try:
            yield threaded
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(threaded.stop)
        return
    loaded = load(spec, config, loopback=True)
    server = Server(spec, loaded, spec.create(loaded, **objects))
    async with running([Running(spec, loaded, server.service)], {}):
        yield server


class ThreadedServer(Server):
    """A server on an asyncio loop in a thread of its own (uvloop when installed), for
    synchronous callers and trio. Reading its attributes is safe from any thread; to
    change the server, `call` a function in its thread."""

    def __init__(self, spec: ServerSpec, config: Any, objects: dict[str, Any]) -> None:
        self.spec = spec
        self._args = config, objects
        self._portal_cm: Any = None
        self._serving: Any = None
        self.portal: BlockingPortal | None = None

    def start(self) -> ThreadedServer:
        config, objects = self._args
        self._portal_cm = start_blocking_portal("asyncio", {"use_uvloop": _have_uvloop()})
        self.portal = self._portal_cm.__enter__()
        try:
            self._serving = self.portal.wrap_async_context_manager(
                serve(self.spec, config, **objects))
            inner = self._serving.__enter__()
        except BaseException:
            self._serving = None
            self._close_portal()
            raise
        self.config, self.service = inner.config, inner.service
        return self

    def stop(self) -> None:
        """Drain and stop the server, then end its thread."""
        try:
            if self._serving is not None:
                serving, self._serving = self._serving, None
                serving.__exit__(None, None, None)
        finally:
            self._close_portal()

    def _close_portal(self) -> None:
        if self._portal_cm is not None:
            cm, self._portal_cm = self._portal_cm, None
            cm.__exit__(None, None, None)

    def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn(*args)` in the server's thread (sync or async `fn`) and return what it
        returned."""
        assert self.portal is not None, "the server is not running"
        return self.portal.call(fn, *args)

    def reload(self, config: Any) -> None:
        self.call(Server.reload, self, config)

    def __enter__(self) -> ThreadedServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve_in_thread(spec: ServerSpec | str, config: Any = None, **objects: Any
                    ) -> ThreadedServer:
    """`serve` for synchronous code: the server runs in a background thread, already
    listening when this returns, until `stop()` (or the end of a ``with`` block) drains
    it and ends the thread."""
    spec = spec_of(spec) if isinstance(spec, str) else spec
    return ThreadedServer(spec, config, objects).start()


def _on_asyncio() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:  # trio (anyio runs asyncio code on a running asyncio loop)
        return False
    return True


def _have_uvloop() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True
