"""`--workers N`: N processes sharing the listening ports, and a parent that minds them.

The parent binds every listening socket itself, N times per address with
SO_REUSEPORT (the first bind resolves port 0, the others take the same port),
so the kernel spreads connections and datagrams over the N sockets. Worker i
is forked with socket i of each address and listens on it. When a worker
dies the parent still holds its sockets: connections that the kernel sent
there wait in the backlog (datagrams in the receive buffer) until the
replacement, forked with the same sockets, picks them up. Nothing is lost
and no port is ever re-bound.

The parent runs no event loop: it waits for signals with sigtimedwait, so
that fork is safe. SIGHUP is passed to every worker (each reloads itself);
SIGINT/SIGTERM become SIGTERM to every worker, which drains; the parent
waits for them (SIGKILL after the drain deadline plus a grace) and exits 0.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from collections.abc import Callable

from netkit.transport.listeners import SocketPresets, bind_socket, bind_udp_tcp

from .config import Address

log = logging.getLogger("netkit.workers")

_SIGNALS = {signal.SIGCHLD, signal.SIGINT, signal.SIGTERM, signal.SIGHUP}
#: A worker that dies sooner than this after its start is restarted only after a pause,
#: so a crash loop costs a core a second instead of all of it.
_MIN_LIFETIME = 1.0


def bind_all(n: int, specs: list[tuple[str, Address]]) -> list[SocketPresets]:
    """N socket sets, one per worker, all in one SO_REUSEPORT group per address."""
    sets: list[SocketPresets] = [{} for _ in range(n)]
    chosen: dict[str, int] = {}  # port 0 resolves once per address: UDP and TCP share it
    kinds: dict[str, set[str]] = {}
    for kind, address in specs:
        kinds.setdefault(str(address), set()).add(kind)
    for kind, address in specs:
        key = str(address)
        if key not in chosen and kinds[key] == {"udp", "tcp"}:
            udp, tcp = bind_udp_tcp(address, reuse_port=True)
            chosen[key] = udp.getsockname()[1]
            sets[0][("udp", key)], sets[0][("tcp", key)] = udp, tcp
        if (kind, key) in sets[0]:
            first = sets[0][(kind, key)]
        else:
            first = bind_socket(kind, Address(address.host, chosen.get(key, address.port)),
                                reuse_port=True)
        port = chosen.setdefault(key, first.getsockname()[1])
        sets[0][(kind, str(address))] = first
        for i in range(1, n):
            sets[i][(kind, str(address))] = bind_socket(
                kind, Address(address.host, port), reuse_port=True)
        log.info("workers: %s %s bound as %s for %d workers", kind, address,
                 Address(address.host, port), n)
    return sets


def _close_others(sets: list[SocketPresets], keep: int) -> None:
    for i, presets in enumerate(sets):
        if i != keep:
            for sock in presets.values():
                sock.close()


def supervise(n: int, specs: list[tuple[str, Address]],
              run_worker: Callable[[SocketPresets], int], shutdown_timeout: float) -> int:
    sets = bind_all(n, specs)
    # TCP sockets must be listening before a worker dies, or the kernel would refuse the
    # connections hashed to its socket instead of queueing them for the replacement
    for presets in sets:
        for (kind, _), sock in presets.items():
            if kind == "tcp":
                sock.listen(1024)
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
    children: dict[int, tuple[int, float]] = {}  # pid -> (worker index, started)

    def spawn(index: int) -> None:
        pid = os.fork()
        if pid == 0:  # the worker
            code = 1
            try:
                signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
                _close_others(sets, index)
                code = run_worker(dict(sets[index]))
            except BaseException:
                log.exception("worker %d failed", index)
            finally:
                os._exit(code)
        children[pid] = (index, time.monotonic())
        log.info("workers: worker %d started as pid %d", index, pid)

    for i in range(n):
        spawn(i)
    stopping = False
    deadline = 0.0
    restart_at: dict[int, float] = {}  # worker index -> when to restart it
    while children or (restart_at and not stopping):
        info = signal.sigtimedwait(_SIGNALS, 0.5)
        if info is not None and info.si_signo in (signal.SIGINT, signal.SIGTERM) and not stopping:
            stopping = True
            deadline = time.monotonic() + shutdown_timeout + 5.0
            log.info("workers: stopping %d workers", len(children))
            _signal_all(children, signal.SIGTERM)
        elif info is not None and info.si_signo == signal.SIGHUP:
            _signal_all(children, signal.SIGHUP)
        # reap every child that has exited (several SIGCHLDs may have merged into one)
        while children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            index, started = children.pop(pid)
            if stopping:
                continue
            code = os.waitstatus_to_exitcode(status)
            log.warning("workers: worker %d (pid %d) exited with %s; restarting it", index,
                        pid, code)
            lived = time.monotonic() - started
            restart_at[index] = time.monotonic() + (0 if lived >= _MIN_LIFETIME else 1.0)
        for index, when in list(restart_at.items()):
            if not stopping and time.monotonic() >= when:
                del restart_at[index]
                spawn(index)
        if stopping and time.monotonic() > deadline and children:
            log.warning("workers: %d workers still running after the deadline; killing them",
                        len(children))
            _signal_all(children, signal.SIGKILL)
            deadline = float("inf")
    for presets in sets:
        for sock in presets.values():
            sock.close()
    signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
    log.info("workers: stopped")
    return 0


def _signal_all(children: dict[int, tuple[int, float]], signum: int) -> None:
    for pid in children:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)

