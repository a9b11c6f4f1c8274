"""The forwarder's client side: one SSH connection carrying every forward, kept up.

Local (-L) and dynamic (-D) listeners are bound once, on the transport, and stay bound
across reconnects: a client that arrives while the SSH connection is down waits up to
`tunnel_wait` seconds for it, then is closed (never left hanging). Each accepted
connection becomes one direct-tcpip channel, spliced with backpressure both ways
(the channel's window pauses our reading, a slow local peer pauses the channel).
Remote (-R) forwards are asked of the server after every (re)connect, retried while it
still holds the old listener. Keepalives find a dead peer; the connection comes back
with exponential backoff and jitter.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import asyncssh

from netkit.config import Address
from netkit.proto.socks import SocksError, SocksHandshake
from netkit.tasks import TaskSet
from netkit.transport.connection import Handler, Limits
from netkit.transport.listeners import SocketPresets, StreamServer

from .forwards import Forward
from .hostkeys import HostKeyRefused, examine
from .targets import forward_remote_port

log = logging.getLogger("netkit.sshfwd")


class ForwardState:
    """What `netkit ctl status` shows of one forward."""

    def __init__(self, forward: Forward) -> None:
        self.forward = forward
        self.state = "waiting"
        self.connections = 0
        self.failures = 0
        self.bytes_in = 0  # from the local side into the tunnel
        self.bytes_out = 0
        self.last_error = ""
        self.server: StreamServer | None = None

    def view(self) -> dict[str, Any]:
        return {"forward": str(self.forward), "state": self.state,
                "listen": [str(a) for a in self.server.addresses] if self.server else
                [str(self.forward.listen)], "connections": self.connections,
                "failures": self.failures, "bytes_in": self.bytes_in,
                "bytes_out": self.bytes_out, "last_error": self.last_error}


class Target:
    """Where and as whom to connect, with the options asyncssh takes."""

    def __init__(self, alias: str, host: str, port: int, username: str | None,
                 options: dict[str, Any], known_hosts: Path | None,
                 strict: str, timeout: float) -> None:
        # asyncssh is given the name as typed (the ssh config's Host blocks match it);
        # host and port are where that leads, for host keys and logs
        self.alias = alias
        self.host, self.port, self.username, self.options = host, port, username, options
        self.known_hosts, self.strict, self.timeout = known_hosts, strict, timeout

    def __str__(self) -> str:
        return f"{self.username + '@' if self.username else ''}{self.host}:{self.port}"


class SSHForwarder:
    def __init__(self, target: Target, forwards: list[Forward], *, tunnel_wait: float,
                 backoff_min: float, backoff_max: float, exit_on_forward_failure: bool,
                 on_fatal: Callable[[str], None], limits: Limits) -> None:
        self.target = target
        self.limits = limits
        self.states = [ForwardState(f) for f in forwards]
        self.tunnel_wait = tunnel_wait
        self.backoff_min, self.backoff_max = backoff_min, backoff_max
        self.exit_on_forward_failure = exit_on_forward_failure
        self.on_fatal = on_fatal
        self.conn: asyncssh.SSHClientConnection | None = None
        self.up = asyncio.Event()
        self.state = "connecting"
        self.reconnects = 0
        self.closing = False
        self.tasks = TaskSet()

    # --- lifecycle ---

    async def start(self, tg: anyio.abc.TaskGroup, presets: SocketPresets) -> None:
        for st in self.states:
            if st.forward.kind in ("local", "dynamic"):
                st.server = StreamServer(f"sshfwd {st.forward}",
                                         lambda st=st: _LocalSide(self, st),  # type: ignore
                                         limits=self.limits)
                await st.server.listen([st.forward.listen], presets=presets)
                st.state = "listening"
        tg.start_soon(self._run)
        for st in self.states:
            if st.forward.probe_interval > 0 and st.forward.kind != "dynamic":
                tg.start_soon(self._probe, st)

    async def drain(self, timeout: float) -> None:
        self.closing = True
        for st in self.states:
            if st.server is not None:
                await st.server.drain(timeout)
        if self.conn is not None:
            self.conn.close()
            with anyio.move_on_after(timeout):
                await self.conn.wait_closed()
        self.tasks.cancel_all()

    def spawn(self, coro: Any) -> None:
        self.tasks.spawn(coro)

    def _set_state(self, state: str, why: str = "") -> None:
        if state != self.state:
            self.state = state
            log.info("sshfwd: %s: %s%s", self.target, state, f" ({why})" if why else "")

    async def _run(self) -> None:
        """Connect, hold the connection until it drops, and again, with backoff."""
        failures = 0
        while not self.closing:
            try:
                await self._connect_once()
                failures = 0
            except HostKeyRefused as exc:
                self._set_state("refused", str(exc))
                log.error("sshfwd: %s: %s", self.target, exc)
                self.on_fatal(str(exc))
                return
            except (OSError, asyncssh.Error, TimeoutError) as exc:
                failures += 1
                self._set_state("down", _describe(exc))
            finally:
                self.up.clear()
                self.conn = None
            if self.closing:
                return
            delay = min(self.backoff_max, self.backoff_min * 2 ** min(failures, 16))
            delay *= random.uniform(0.5, 1.0)  # jitter: many forwarders do not return at once
            self.reconnects += 1
            log.info("sshfwd: %s: reconnecting in %.1f s", self.target, delay)
            await anyio.sleep(delay)

    async def _connect_once(self) -> None:
        t = self.target
        self._set_state("connecting")
        try:
            conn = await asyncssh.connect(t.alias, t.port, username=t.username, **t.options)
        except asyncssh.HostKeyNotVerifiable:
            if t.known_hosts is None or not await examine(t.host, t.port, t.known_hosts,
                                                          t.strict, t.timeout):
                raise
            log.warning("sshfwd: %s: new host key added to %s (accept-new)", t,
                        t.known_hosts)
            conn = await asyncssh.connect(t.alias, t.port, username=t.username, **t.options)
        self.conn = conn
        self._set_state("up")
        for st in self.states:
            if st.forward.kind == "remote":
                self.spawn(self._remote(conn, st))
            else:
                st.state = "up"
        self.up.set()
        await conn.wait_closed()
        for st in self.states:
            st.state = "waiting" if st.forward.kind == "remote" else "listening"
        self._set_state("down", "connection lost")

    async def _remote(self, conn: asyncssh.SSHClientConnection, st: ForwardState) -> None:
        """-R: ask the server to listen; while it still holds the previous connection's
        listener it says no ("port in use"): ask again, with backoff, for a while."""
        f = st.forward
        assert f.to is not None
        delay = 0.5
        deadline = time.monotonic() + 120
        while not conn.is_closed():
            try:
                await forward_remote_port(conn, f.listen.host, f.listen.port, f.to.host,
                                          f.to.port)
            except asyncssh.Error as exc:
                st.failures += 1
                st.last_error = _describe(exc)
                if time.monotonic() > deadline:
                    st.state = "failed"
                    log.error("sshfwd: %s: %s", f, st.last_error)
                    if self.exit_on_forward_failure:
                        self.on_fatal(f"{f}: {st.last_error}")
                    return
                log.info("sshfwd: %s: the server refused (%s); asking again in %.1f s", f,
                         st.last_error, delay)
                await anyio.sleep(delay)
                delay = min(delay * 2, 10)
                continue
            st.state = "up"
            log.info("sshfwd: %s: up", f)
            return

    async def _probe(self, st: ForwardState) -> None:
        """Through the tunnel, on an interval: -L to its target from the server's side,
        -R to the server's listener (back through us to the target). Two failures in a
        row drop the SSH connection so that it is made again."""
        f = st.forward
        failed = 0
        while not self.closing:
            await anyio.sleep(f.probe_interval)
            conn = self.conn
            if conn is None or not self.up.is_set():
                continue
            try:
                # -L: a channel to the target (our listener is in this process: it
                # cannot die alone); -R: to the server's listener, which comes back here
                host, port = (f.to.host, f.to.port) if f.kind == "local" and f.to else \
                    (f.listen.host, f.listen.port)
                with anyio.fail_after(max(5.0, f.probe_interval)):
                    chan, _ = await conn.create_connection(asyncssh.SSHTCPSession, host, port)
                    chan.close()
            except (OSError, asyncssh.Error, TimeoutError) as exc:
                failed += 1
                st.last_error = f"probe: {_describe(exc)}"
                st.state = "probe failed"
                log.warning("sshfwd: %s: probe failed (%s)", f, _describe(exc))
                if failed >= 2:
                    if self.exit_on_forward_failure:
                        self.on_fatal(f"{f}: {st.last_error}")
                        return
                    log.warning("sshfwd: %s: dropping the SSH connection to make it again", f)
                    conn.close()
                    failed = 0
                continue
            if failed or st.state == "probe failed":
                log.info("sshfwd: %s: probe passes again", f)
            failed = 0
            st.state = "up"

    async def tunnel(self) -> asyncssh.SSHClientConnection | None:
        """The SSH connection, waiting up to `tunnel_wait` for it; None if it stays down."""
        if self.conn is not None and self.up.is_set():
            return self.conn
        with anyio.move_on_after(self.tunnel_wait):
            await self.up.wait()
        return self.conn if self.up.is_set() else None

    def status(self) -> dict[str, Any]:
        return {"target": str(self.target), "state": self.state,
                "reconnects": self.reconnects, "forwards": [s.view() for s in self.states]}


def _describe(exc: BaseException) -> str:
    if isinstance(exc, asyncssh.DisconnectError | asyncssh.ChannelOpenError):
        return exc.reason or type(exc).__name__
    return str(exc) or type(exc).__name__


class _ChannelSide(asyncssh.SSHTCPSession[bytes]):
    """The SSH channel's end of one forwarded connection."""

    def __init__(self, local: _LocalSide) -> None:
        self.local = local

    def data_received(self, data: bytes, datatype: asyncssh.DataType) -> None:
        self.local.state.bytes_out += len(data)
        self.local.conn.write(data)

    def eof_received(self) -> bool:
        self.local.conn.write_eof()
        return True  # half-close: our side may go on sending

    def pause_writing(self) -> None:  # the channel's window is full
        self.local.conn.pause_reading()

    def resume_writing(self) -> None:
        self.local.conn.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.local.conn.close()


class _LocalSide(Handler):
    """An accepted local connection of a -L or -D forward."""

    def __init__(self, forwarder: SSHForwarder, state: ForwardState) -> None:
        self.forwarder = forwarder
        self.state = state
        self.chan: asyncssh.SSHTCPChannel[bytes] | None = None
        self.pending: list[bytes] = []
        self.eof = False
        self.socks = SocksHandshake() if state.forward.kind == "dynamic" else None
        self.opening = False

    def connection_made(self, conn: Any) -> None:
        super().connection_made(conn)
        self.state.connections += 1
        if self.socks is None:
            conn.pause_reading()  # nothing is read until the channel is open
            self._open(self.state.forward.to)  # type: ignore[arg-type]

    def _open(self, to: Address | tuple[str, int]) -> None:
        self.opening = True
        host, port = (to.host, to.port) if isinstance(to, Address) else to
        self.forwarder.spawn(self._open_channel(host, port))

    async def _open_channel(self, host: str, port: int) -> None:
        f = self.state.forward
        conn = await self.forwarder.tunnel()
        if conn is None:
            log.info("sshfwd: %s: the SSH connection is down; closing a new client after "
                     "%.0f s", f, self.forwarder.tunnel_wait)
            self._refuse(4)
            return
        try:
            chan, _ = await conn.create_connection(lambda: _ChannelSide(self), host, port)
        except (asyncssh.Error, OSError) as exc:
            self.state.failures += 1
            self.state.last_error = f"{host}:{port}: {_describe(exc)}"
            log.warning("sshfwd: %s: cannot open %s:%d through the tunnel: %s", f, host,
                        port, _describe(exc))
            self._refuse(5)
            return
        if self.conn.is_closing():
            chan.close()
            return
        self.chan = chan
        if self.socks is not None:
            self.conn.write(self.socks.reply(True))
        for data in self.pending:
            chan.write(data)
        self.pending.clear()
        if self.eof:
            chan.write_eof()
        self.conn.resume_reading()

    def _refuse(self, socks_code: int) -> None:
        if self.socks is not None and not self.conn.is_closing():
            self.conn.write(self.socks.reply(False, socks_code))
        self.conn.close()

    def data_received(self, data: bytes) -> None:
        self.state.bytes_in += len(data)
        if self.chan is not None:
            self.chan.write(data)
            return
        if self.socks is not None and not self.opening:
            try:
                out = self.socks.feed(data)
            except SocksError as exc:
                log.info("sshfwd: %s: %s", self.state.forward, exc)
                if exc.reply:
                    self.conn.write(exc.reply)
                self.conn.close()
                return
            if out:
                self.conn.write(out)
            if self.socks.destination is not None:
                self.conn.pause_reading()
                if self.socks.buffer:
                    self.pending.append(self.socks.buffer)
                self._open(self.socks.destination)
            return
        self.pending.append(data)

    def eof_received(self) -> None:
        if self.chan is not None:
            self.chan.write_eof()
        else:
            self.eof = True

    def pause_writing(self) -> None:  # the local peer reads slowly: stop the channel
        if self.chan is not None:
            self.chan.pause_reading()

    def resume_writing(self) -> None:
        if self.chan is not None:
            self.chan.resume_reading()

    def connection_lost(self, exc: BaseException | None) -> None:
        if self.chan is not None:
            self.chan.close()
