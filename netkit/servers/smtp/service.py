"""The SMTP relay: `python -m netkit.servers.smtp` (receiving, the durable queue, and
the delivery loop; delivery.py talks to the next hop; docs/servers/smtp.md).

    python -m netkit.servers.smtp --set smtp.local_domains='["example.test"]'
    python -m netkit.servers.smtp queue --config conf/smtp.toml     # what is queued

aiosmtpd speaks ESMTP (EHLO with SIZE, 8BITMIME, PIPELINING, SMTPUTF8); this module
decides: recipients for `local_domains` are accepted from anyone, others only from
`relay_networks` (`554 5.7.1 Relay access denied` otherwise, logged); a message is
written to the queue and fsynced (queue.py) before its `250`; local recipients then
get it in their Maildir.
"""

from __future__ import annotations

import asyncio
import email.utils
import heapq
import ipaddress
import logging
import re
import sys
import time
from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import anyio.to_thread

from netkit import running
from netkit.cli import server_main
from netkit.config import Address, Duration, Network, Size, field
from netkit.contract import ServerSpec
from netkit.errors import ConfigError
from netkit.proto.addresses import in_networks
from netkit.proto.smtp import dkim
from netkit.proto.smtp.data import END, find_end, has_long_line, unstuff
from netkit.proto.smtp.envelope import Envelope, Recipient
from netkit.tasks import TaskSet
from netkit.tlsconf import ListenerContext, ListenerTLS
from netkit.transport.listeners import SocketPresets, bind_socket

from ..proxyauth import Credentials, verify_password
from .sessions import IDLE, SessionCache
from .store import Committer, QueueStore, deliver_to_maildir, new_id

log = logging.getLogger("netkit.smtp")
SECTION = "smtp"
HOT_BYTES = 32 << 20  # contents of just-accepted messages kept for their first attempt
LOOPBACK = ("127.0.0.1/32", "::1/128")


@dataclass(frozen=True, slots=True, kw_only=True)
class DKIMKey:
    """One ``[[smtp.dkim]]``: mail from `domain` is signed with `key` (RSA or Ed25519
    PEM) under `selector` (publish `netkit cert`-free: see docs/servers/smtp.md)."""

    domain: str
    selector: str
    key: Path


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    """The ``[smtp]`` section."""

    listen: tuple[Address, ...] = (Address("127.0.0.1", 2525),)
    hostname: str = "localhost"
    """The name in the greeting, EHLO and Received lines."""
    queue_dir: Path = Path("netkit-queue")
    maildir: Path = Path("netkit-mail")
    """Local recipients' Maildirs, one directory per address."""
    local_domains: tuple[str, ...] = ()
    relay_networks: tuple[Network, ...] = tuple(ipaddress.ip_network(n) for n in LOOPBACK)
    """Clients that may send to domains not in local_domains; others get 554 5.7.1."""
    max_message_size: Size = field(Size(10 << 20), min=1024)
    """Larger messages get 552 5.3.4, refused while DATA streams in."""
    max_recipients: int = field(100, min=1)
    """More get 452 4.5.3."""
    tls: ListenerTLS | None = None
    """``[smtp.tls]``: STARTTLS offered on every listener with this certificate."""
    submission: tuple[Address, ...] = ()
    """Submission listeners (port 587 style): AUTH required, and only after STARTTLS."""
    credentials: Path | None = None
    """htpasswd-style users for AUTH PLAIN/LOGIN (bcrypt or SHA-256-crypt lines)."""
    max_connections: int = field(1000, min=1)
    """Sessions at once from everyone; more get 421 4.3.2 and are closed."""
    max_sessions_per_client: int = field(10, min=1)
    """Sessions one client address may hold at once; more get 421 4.7.0."""
    idle_timeout: Duration = field(Duration(300), min=1)
    """Seconds a session may stay silent (RFC 5321 4.5.3.2: at least 5 minutes)."""
    max_commands_before_mail: int = field(20, min=1)
    """Commands a session may send (each kind) before giving up on it (421)."""
    dkim: tuple[DKIMKey, ...] = ()
    """DKIM signing keys by sender domain (relaxed/relaxed, rsa-sha256 or ed25519-sha256)."""
    resolver: tuple[Address, ...] = ()
    """DNS servers for MX lookups (netkit's DNS client); none: /etc/resolv.conf's."""
    mx_port: int = field(25, min=1, max=65535)
    """The port of MX hosts (tests use loopback high ports)."""
    smarthost: Address | None = None
    """Send all remote mail through this host instead of the MX hosts."""
    max_connections_per_destination: int = field(4, min=1)
    """Sessions open at once to one destination domain (each reused for its messages)."""
    tls_required: tuple[str, ...] = ()
    """Destination domains that get mail only over STARTTLS with a verified certificate
    (otherwise TLS is opportunistic: used when offered, not verified)."""
    retry_schedule: tuple[Duration, ...] = (Duration(60), Duration(300), Duration(1800),
                                            Duration(7200))
    """Seconds after each failed attempt before the next; the last repeats."""
    max_queue_time: Duration = Duration(5 * 86400)
    """How long a message may wait; then it bounces with a DSN."""
    shutdown_timeout: Duration = Duration(10)


def _header_block(content: bytes) -> bytes:
    end = content.find(b"\r\n\r\n")
    if end < 0:
        end = content.find(b"\n\n")
    return content[:end if end >= 0 else len(content)]


def _has_header(head: bytes, name: bytes) -> bool:
    lowered = b"\n" + head.lower()
    return b"\n" + name.lower() + b":" in lowered


class SMTPService:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.store = QueueStore(config.queue_dir)
        self.servers: list[asyncio.AbstractServer] = []
        self.bound: list[Address] = []
        self.tasks = TaskSet()
        self.wake = asyncio.Event()
        self.stats = dict.fromkeys(("accepted", "refused_relay", "delivered_local",
                                    "delivered_remote", "bounced", "deferred",
                                    "sessions_opened", "sessions_reused"), 0)
        self.session_cache = SessionCache(config.max_connections_per_destination)
        from netkit.clients.dns import Resolver
        self.resolver = Resolver(list(config.resolver) or None, timeout=3.0, attempts=2,
                                 cache=True)
        self.tls = ListenerContext(config.tls, SECTION) if config.tls else None
        if config.submission and (config.tls is None or config.credentials is None):
            raise ConfigError(["smtp.submission needs smtp.tls (AUTH only over TLS) and "
                               "smtp.credentials"])
        self.credentials = Credentials(config.credentials) if config.credentials else None
        self.dkim_keys = _load_dkim(config.dkim)
        self.sessions: dict[str, int] = {}  # open sessions by client address
        self.open_sessions = 0
        self.ready: set[str] = set()  # message ids to try on the next pass
        self.later: list[tuple[float, str]] = []  # (next attempt, id): a heap
        self.committer: Committer | None = None
        # the content of messages accepted and not yet tried, kept for their first attempt
        # (no read of the file just written, no thread hop), up to HOT_BYTES in all
        self.hot: dict[str, bytes] = {}
        self.hot_bytes = 0

    async def start(self, tg: anyio.abc.TaskGroup, presets: SocketPresets) -> None:

        # aiosmtpd logs every command at INFO, AUTH exchanges among them: warnings only
        logging.getLogger("mail.log").setLevel(logging.WARNING)
        dropped = await anyio.to_thread.run_sync(self.store.open)
        if dropped:
            log.info("smtp: removed %d message(s) whose DATA was never acknowledged", dropped)
        loop = asyncio.get_running_loop()
        handler = _Handler(self)
        c = self.config
        listeners = [(a, False) for a in c.listen] + [(a, True) for a in c.submission]
        for address, submission in listeners:
            sock = presets.pop(("tcp", str(address)), None) or bind_socket("tcp", address)

            session = _limited_smtp().factory(
                self, handler=handler, hostname=c.hostname, ident="netkit ESMTP",
                data_size_limit=c.max_message_size, enable_SMTPUTF8=True,
                decode_data=False, timeout=c.idle_timeout,
                tls_context=self.tls.get() if self.tls else None,
                require_starttls=submission, auth_required=submission,
                auth_require_tls=True, authenticator=self._authenticate,
                command_call_limit=c.max_commands_before_mail)
            server = await loop.create_server(session, sock=sock)
            self.servers.append(server)
            bound = Address(*sock.getsockname()[:2])
            self.bound.append(bound)
            log.info("smtp: listening on %s (tcp, %s)", bound,
                     "submission" if submission else "esmtp")
        for envelope in self.store.envelopes():  # what the queue held at start
            self.ready.add(envelope.id)
        tg.start_soon(self._deliver_loop)
        tg.start_soon(self._close_idle_sessions)
        self.wake.set()

    def reload(self, config: Config) -> None:
        """Everything is built first (a broken credentials file, DKIM key or certificate
        raises ConfigError and the running configuration stays); listeners and the queue
        directory need a restart."""
        old = self.config
        if (config.listen, config.submission, config.queue_dir) != \
                (old.listen, old.submission, old.queue_dir):
            raise ConfigError(["smtp: listen, submission or queue_dir changed; restart to "
                               "apply"])
        if (config.tls is None) != (old.tls is None):
            raise ConfigError(["smtp: TLS turned on or off; restart to apply"])
        credentials = Credentials(config.credentials) if config.credentials else None
        dkim_keys = _load_dkim(config.dkim)
        if self.tls is not None and config.tls is not None:
            self.tls.replace(config.tls)
        from netkit.clients.dns import Resolver
        self.resolver = Resolver(list(config.resolver) or None, timeout=3.0, attempts=2,
                                 cache=True)
        self.credentials, self.dkim_keys, self.config = credentials, dkim_keys, config
        self.session_cache.per_key = config.max_connections_per_destination

    async def drain(self, timeout: float) -> None:
        for server in self.servers:
            server.close()
        self.tasks.cancel_all()
        with anyio.move_on_after(min(timeout, 5.0)):
            for session in self.session_cache.clear():
                await session.close()
        if self.committer is not None:
            await anyio.to_thread.run_sync(self.committer.close)

    def status(self) -> dict[str, Any]:
        return {"listen": [str(a) for a in self.bound], **self.counters()}

    def addresses(self) -> list[Address]:
        return list(self.bound)

    def counters(self) -> dict[str, int]:
        return {**self.stats, "queued": len(self.store.envelopes())}

    def labelled(self) -> dict[str, tuple[str, dict[str, int], str]]:
        """For the admin endpoint: queued recipients by state (a gauge)."""
        by = dict.fromkeys(("pending", "delivered", "bounced"), 0)
        for envelope in self.store.envelopes():
            for r in envelope.recipients:
                by[r.state] = by.get(r.state, 0) + 1
        return {"queue_recipients": ("state", by, "gauge")}

    # --- accepting ---

    def _authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str,
                      auth_data: Any) -> Any:
        from aiosmtpd.smtp import AuthResult, LoginPassword
        ok = self.credentials is not None and isinstance(auth_data, LoginPassword) and \
            verify_password(self.credentials,
                            auth_data.login.decode("utf-8", "replace"),
                            auth_data.password.decode("utf-8", "replace"))
        peer = session.peer[0] if session.peer else "?"
        if ok:
            log.info("smtp: %s: authenticated as %s", peer,
                     auth_data.login.decode("utf-8", "replace"))
        else:
            log.warning("smtp: %s: AUTH %s failed", peer, mechanism)  # never the password
        return AuthResult(success=ok, handled=False)

    def may_relay_to(self, address: str, peer_may_relay: bool) -> bool:
        """`peer_may_relay`: the client is authenticated or in relay_networks (known
        once per session)."""
        domain = address.rpartition("@")[2].lower().rstrip(">")
        return peer_may_relay or domain in self.config.local_domains

    async def accept(self, sender: str, recipients: list[str], content: bytes, peer: str,
                     helo: str) -> str:
        """Queue the message durably; the id for the 250 line."""
        message_id = new_id()
        now = time.time()
        date = email.utils.formatdate(now).encode()
        head = _header_block(content)
        added = [b"Received: from %s (%s) by %s (netkit) with ESMTP id %s; %s\r\n" % (
            (helo or "unknown").encode(), peer.encode(), self.config.hostname.encode(),
            message_id.encode(), date)]
        if not _has_header(head, b"message-id"):
            added.append(b"Message-ID: <%s@%s>\r\n" % (message_id.encode(),
                                                        self.config.hostname.encode()))
        if not _has_header(head, b"date"):
            added.append(b"Date: %s\r\n" % date)
        content = b"".join(added) + content
        signer = self.dkim_keys.get(sender.rpartition("@")[2].lower())
        if signer is not None:
            selector, key = signer
            content = dkim.sign(content, domain=sender.rpartition("@")[2].lower(),
                                selector=selector, key=key, now=now) + content
        envelope = Envelope(message_id, sender, [Recipient(r) for r in recipients], now,
                            len(content), peer, helo)
        await self._commit(envelope, content)
        self.stats["accepted"] += 1
        if self.hot_bytes + len(content) <= HOT_BYTES:
            self.hot[message_id] = content
            self.hot_bytes += len(content)
        self.ready.add(message_id)
        if log.isEnabledFor(logging.INFO):
            log.info("smtp: %s: queued %s from <%s> for %s (%d bytes)", peer, message_id,
                     sender, ", ".join(f"<{r}>" for r in recipients), len(content))
        self.wake.set()
        return message_id

    async def _commit(self, envelope: Envelope, content: bytes) -> None:
        """Queued durably when this returns (store.py's Committer, group commit)."""
        loop = asyncio.get_running_loop()
        if self.committer is None:
            self.committer = Committer(self.store.active, loop.call_soon_threadsafe)
        future = loop.create_future()

        def done(exc: BaseException | None) -> None:
            if future.done():
                return
            if exc is None:
                future.set_result(None)
            else:
                future.set_exception(exc)
        self.store.put_soon(envelope, content, self.committer, done)
        await future

    # --- delivering ---

    def make_ready(self, message_id: str) -> None:
        """This message has recipients to try now (just accepted, or flushed)."""
        self.ready.add(message_id)
        self.wake.set()

    async def _deliver_loop(self) -> None:
        """The messages that are ready (new, flushed, or whose next attempt has come, from
        a heap): local deliveries, then remote ones; a message still pending goes back on
        the heap at its next attempt. Work per pass is the ready messages, not the queue."""
        while True:
            self.wake.clear()
            now = time.time()
            while self.later and self.later[0][0] <= now:
                self.ready.add(heapq.heappop(self.later)[1])
            batch, self.ready = self.ready, set()
            envelopes = [e for e in map(self.store.get, sorted(batch)) if e is not None]
            hot = {i: self.hot.pop(i) for i in batch if i in self.hot}
            self.hot_bytes -= sum(map(len, hot.values()))
            if envelopes:
                if any(map(self._has_local, envelopes)):  # else no trip to a thread
                    await anyio.to_thread.run_sync(self._deliver_local, envelopes, hot)
                await self._deliver_remote([e for e in envelopes
                                            if self.store.get(e.id) is not None], hot)
                for e in envelopes:
                    pending = [r.next_attempt for r in e.recipients if r.state == "pending"]
                    if pending and self.store.get(e.id) is not None:
                        heapq.heappush(self.later, (min(pending), e.id))
            if self.ready:
                continue
            wait = max(0.05, self.later[0][0] - time.time()) if self.later else None
            with anyio.move_on_after(wait):
                await self.wake.wait()

    async def _close_idle_sessions(self) -> None:
        """Kept delivery sessions closed (QUIT) once idle for sessions.IDLE seconds."""
        while True:
            await anyio.sleep(IDLE / 2)
            for session in self.session_cache.expired():
                with anyio.move_on_after(5):
                    await session.close()

    async def _deliver_remote(self, envelopes: list[Envelope],
                              hot: Mapping[str, bytes] | None = None) -> None:
        """What is due of these, by destination domain (one task per domain, sessions
        reused within it); then each touched message saved, bounced recipients reported
        (`hot`: contents already in memory)."""
        from .delivery import deliver_destination, dsn
        local = self.config.local_domains
        now = time.time()
        work: dict[str, list[Any]] = {}
        touched = []
        for envelope in envelopes:
            due = [r for r in envelope.pending(now)
                   if r.address.rpartition("@")[2].lower() not in local]
            if not due:
                continue
            content = (hot or {}).get(envelope.id) or \
                await anyio.to_thread.run_sync(self.store.content, envelope.id)
            touched.append((envelope, due, content,
                            {r.address: r.state for r in envelope.recipients}))
            by_domain: dict[str, list[Recipient]] = {}
            for r in due:
                by_domain.setdefault(r.address.rpartition("@")[2].lower(), []).append(r)
            for domain, recipients in by_domain.items():
                work.setdefault(domain, []).append((envelope, recipients, content))
        if not work:
            return
        async with anyio.create_task_group() as tg:
            for domain, jobs in work.items():
                tg.start_soon(self._deliver_safely, deliver_destination, domain, jobs)
        for envelope, due, content, before in touched:
            bounced = [r for r in envelope.recipients
                       if r.state == "bounced" and before[r.address] != "bounced"]
            self.stats["bounced"] += len(bounced)
            self.stats["deferred"] += sum(r.state == "pending" for r in due)
            if bounced and envelope.sender:  # never a bounce to the null sender
                await self.accept("", [envelope.sender], dsn(self, envelope, bounced, content),
                                  "127.0.0.1", self.config.hostname)
        # done messages leave the queue by the committer's thread, nobody waiting; the
        # others' envelopes are rewritten durably, in one trip to a thread
        changed = []
        for envelope, *_ in touched:
            if envelope.done and self.committer is not None:
                self.store.remove(envelope.id, self.committer)
            else:
                changed.append(envelope)
        if changed:
            await anyio.to_thread.run_sync(self._save, changed)

    def _save(self, envelopes: list[Envelope]) -> None:
        for envelope in envelopes:
            if envelope.done:
                self.store.remove(envelope.id)
            else:
                self.store.update(envelope)

    def _has_local(self, envelope: Envelope) -> bool:
        """A recipient for _deliver_local."""
        local = self.config.local_domains
        return any(r.state == "pending" and r.address.rpartition("@")[2].lower() in local
                   for r in envelope.recipients)

    async def _deliver_safely(self, deliver: Any, domain: str, jobs: list[Any]) -> None:
        """One destination's delivery; a failure nobody foresaw defers its recipients
        (logged once) instead of ending the relay with every other delivery."""
        from netkit.proto.smtp.envelope import defer
        try:
            await deliver(self, domain, jobs)
        except Exception as exc:
            log.exception("smtp: delivery to %s failed unexpectedly; deferred", domain)
            now, schedule = time.time(), [float(x) for x in self.config.retry_schedule]
            for _, recipients, _content in jobs:
                for r in recipients:
                    if r.state == "pending":
                        defer(r, f"internal error: {exc}", now, schedule)

    def _deliver_local(self, envelopes: list[Envelope],
                       hot: Mapping[str, bytes] | None = None) -> None:
        """Local recipients into their Maildirs; a message leaves the queue when nothing
        is pending (`hot`: contents already in memory)."""
        local = self.config.local_domains
        for envelope in envelopes:
            changed = False
            content: bytes | None = None
            for r in envelope.recipients:
                if r.state != "pending" or r.address.rpartition("@")[2].lower() not in local:
                    continue
                if content is None:
                    content = (hot or {}).get(envelope.id) or self.store.content(envelope.id)
                deliver_to_maildir(self.config.maildir / r.address.lower(), content)
                r.state = "delivered"
                changed = True
                self.stats["delivered_local"] += 1
                log.info("smtp: %s: delivered to <%s> (maildir)", envelope.id, r.address)
            if envelope.done:
                self.store.remove(envelope.id)
            elif changed:
                self.store.update(envelope)


def _load_dkim(keys: tuple[DKIMKey, ...]) -> dict[str, tuple[str, Any]]:
    loaded, problems = {}, []
    for i, k in enumerate(keys):
        try:
            loaded[k.domain.lower()] = (k.selector, dkim.load_key(k.key.read_bytes()))
        except (OSError, ValueError, TypeError) as exc:
            problems.append(f"smtp.dkim[{i}]: {k.key}: {exc}")
    if problems:
        raise ConfigError(problems)
    return loaded


class _Handler:
    """aiosmtpd's hooks: the relay policy at RCPT, the durable queue at DATA."""

    def __init__(self, service: SMTPService) -> None:
        self.service = service

    async def handle_EHLO(self, server: Any, session: Any, envelope: Any, hostname: str,
                          responses: list[str]) -> list[str]:
        """Every reply here carries an enhanced status code (RFC 3463), and aiosmtpd reads
        commands from a buffered stream, one after the other, so pipelined ones (RFC 2920)
        are answered in order: say both."""
        session.host_name = hostname
        return [*responses[:-1], "250-PIPELINING", "250-ENHANCEDSTATUSCODES", responses[-1]]

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          rcpt_options: list[str]) -> str:
        peer = session.peer[0] if session.peer else ""
        if not self.service.may_relay_to(address, server._netkit_may_relay or
                                         bool(session.authenticated)):
            self.service.stats["refused_relay"] += 1
            log.warning("smtp: %s: relay to <%s> refused (not a local domain, client not "
                        "in relay_networks)", peer, address)
            return "554 5.7.1 Relay access denied"
        if len(envelope.rcpt_tos) >= self.service.config.max_recipients:
            return "452 4.5.3 Too many recipients"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        peer = session.peer[0] if session.peer else ""
        content = envelope.original_content or envelope.content
        if isinstance(content, str):
            content = content.encode("utf-8", "surrogateescape")
        try:
            message_id = await self.service.accept(envelope.mail_from or "",
                                                   envelope.rcpt_tos, content, peer,
                                                   session.host_name or "")
        except OSError as exc:  # the queue cannot take it: the client keeps it and retries
            log.error("smtp: %s: cannot queue a message: %s", peer, exc)
            return "451 4.3.0 Cannot queue the message now; try again later"
        return f"250 2.0.0 Ok: queued as {message_id}"


_LIMITED: Any = None


async def read_data(reader: asyncio.StreamReader, limit: int | None) -> bytes | None:
    """A DATA section from `reader`, up to and without its "." line (consumed; what
    follows stays for the next command); None when more than `limit` bytes came: those
    are read and dropped as they come, so memory holds about `limit`, never the rest.

    Uses StreamReader's internals (its buffer and its wait for data), as readuntil does
    inside: no public call finds a separator that may be the first bytes read."""
    buf: bytearray = reader._buffer  # type: ignore[attr-defined]
    scanned, too_big = 0, False
    while True:
        found = find_end(buf, scanned, at_start=not too_big)
        if found is not None:
            end, consumed = found
            content = None
            if not too_big and not (limit and end > limit):
                with memoryview(buf) as view:
                    content = bytes(view[:end])
            del buf[:consumed]
            reader._maybe_resume_transport()  # type: ignore[attr-defined]
            return content
        if limit and len(buf) > limit:  # too much: keep only what may begin the "." line
            too_big = True
            del buf[:len(buf) - len(END) + 1]
            reader._maybe_resume_transport()  # type: ignore[attr-defined]
        scanned = len(buf)
        if reader.exception() is not None:
            raise reader.exception()  # type: ignore[misc]
        if reader._eof:  # type: ignore[attr-defined]
            raise asyncio.IncompleteReadError(bytes(buf), None)
        await reader._wait_for_data("read_data")  # type: ignore[attr-defined]


# a reverse- or forward-path as nearly every client writes it: <dot-atom@domain>
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_PLAIN_PATH = re.compile(rf"<({_ATOM}(?:\.{_ATOM})*)@([A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*)>")


def _limited_smtp() -> Any:
    """aiosmtpd's SMTP with a cap on the sessions one client address holds at once, and
    a cheaper start (the class made once, on first use: aiosmtpd is imported only when
    the relay starts)."""
    global _LIMITED
    if _LIMITED is not None:
        return _LIMITED
    import aiosmtpd.smtp
    from aiosmtpd.smtp import SMTP, _AuthMechAttr

    # aiosmtpd logs every command line twice (debug, info) through sanitized_log, which
    # builds a sanitized copy of the line (a regular expression) before the logger
    # looks at its level: ten a message, for nothing at the relay's level (warnings).
    # The same function, asking the logger first.
    original_log = aiosmtpd.smtp.sanitized_log
    levels = {"debug": logging.DEBUG, "info": logging.INFO}

    def sanitized_log(func: Any, msg: Any, *args: Any, **kwargs: Any) -> None:
        logger = getattr(func, "__self__", None)
        level = levels.get(getattr(func, "__name__", ""))
        if level is not None and isinstance(logger, logging.Logger) and \
                not logger.isEnabledFor(level):
            return
        original_log(func, msg, *args, **kwargs)
    aiosmtpd.smtp.sanitized_log = sanitized_log

    class LimitedSMTP(SMTP):
        def __init__(self, service: SMTPService, **kwargs: Any) -> None:
            self._netkit_service = service
            self._netkit_peer: str | None = None
            self._netkit_may_relay = False
            self._netkit_lines: list[bytes] = []
            self._netkit_when: float | None = None  # when the idle timer is set to fire
            self._netkit_deadline = 0.0  # when the session really times out
            super().__init__(**kwargs)

        @classmethod
        def factory(cls, service: SMTPService, **kwargs: Any) -> Callable[[], Any]:
            """Sessions made like the first one without its introspection.

            aiosmtpd's __init__ looks up every handle_/smtp_/auth_ method with
            inspect.getmembers and dir() for each connection: 40% of a session's setup,
            and smtp-source opens one per message. The first session is made the normal
            way; the next ones get its state, with the methods bound to themselves
            (tests/drivers/test_smtp_session.py checks the two agree)."""
            first = cls(service, **kwargs)
            base = set(vars(asyncio.StreamReaderProtocol(  # what each session has of its own
                asyncio.StreamReader(), client_connected_cb=lambda r, w: None)))
            shared = {k: v for k, v in vars(first).items()
                      if k not in base and k not in ("_smtp_methods", "_auth_methods")}
            smtp_names = list(first._smtp_methods)
            auth = [(name, a.method.__func__.__name__ if a.is_builtin else None, a.method)
                    for name, a in first._auth_methods.items()]
            loop, limit = first.loop, first.line_length_limit
            used = [False]

            def make() -> Any:
                if not used[0]:
                    used[0] = True
                    return first
                session = cls.__new__(cls)
                asyncio.StreamReaderProtocol.__init__(
                    session, asyncio.StreamReader(loop=loop, limit=limit),
                    client_connected_cb=session._cb_client_connected, loop=loop)
                session.__dict__.update(shared)
                session._netkit_lines = []
                session._smtp_methods = {n: getattr(session, "smtp_" + n)
                                         for n in smtp_names}
                session._auth_methods = {
                    n: _AuthMechAttr(getattr(session, own) if own else method, own is not None)
                    for n, own, method in auth}
                return session
            return make

        def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
            """`<local@domain>` as aiosmtpd reads it, without its cost: aiosmtpd defines
            a typing.Protocol class on every call and parses with the email package's
            header parser (a tenth of the CPU of a one-message session). Anything but
            the plain form still goes to aiosmtpd (tests/drivers/test_smtp_session.py
            checks the two agree), and what makes it raise is a syntax error."""
            m = _PLAIN_PATH.match(arg)
            rest = arg[m.end():].lstrip(" \t") if m else ""
            if m is None or rest[:1] == "(" or rest[:1].isspace():  # a comment, odd space
                try:
                    return super()._getaddr(arg)  # type: ignore[no-any-return]
                except Exception:  # the email parser raises IndexError on "<",
                    # AttributeError on "a@[" ...: untrusted input it was not made for
                    return None, None  # "553 5.1.3 malformed address", not a 500 + trace
            local = m.group(1)
            if self.local_part_limit and len(local) > self.local_part_limit:
                return None, None
            return f"{local}@{m.group(2)}", rest

        async def smtp_DATA(self, arg: str) -> None:
            """aiosmtpd's DATA, read as one block instead of a line at a time: its loop
            awaited the reader, logged and joined bytearrays for each line, about half of
            a one-message session's Python. Same replies and limits (the size counted
            while the data comes in, past it nothing kept; a line over 1000 octets: 500
            after the end); tests/drivers/test_smtp_data.py runs both on the same bytes."""
            if self._decode_data or not self.data_size_limit or \
                    "DATA" not in self._handle_hooks:  # not the relay's settings
                await super().smtp_DATA(arg)
                return
            if await self.check_helo_needed() or await self.check_auth_needed("DATA"):
                return
            if not self.envelope.rcpt_tos:
                await self.push("503 Error: need RCPT command")
                return
            if arg:
                await self.push("501 Syntax: DATA")
                return
            await self.push("354 End data with <CR><LF>.<CR><LF>")
            try:
                content = await read_data(self._reader, self.data_size_limit)
            except asyncio.CancelledError:  # the connection went during DATA
                self._writer.close()
                raise
            except asyncio.IncompleteReadError:  # EOF: aiosmtpd's loop ends the same way
                return
            if content is None:
                await self.push("552 Error: Too much mail data")
            elif has_long_line(content, self.line_length_limit):
                await self.push("500 Line too long (see RFC5321 4.5.3.1.6)")
            else:
                self.envelope.content = self.envelope.original_content = unstuff(content)
                status = await self._call_handler_hook("DATA")
                self._set_post_data_state()
                await self.push(status)
                return
            self._set_post_data_state()

        def _reset_timeout(self, duration: float | None = None) -> None:
            """aiosmtpd's idle timeout with one timer a session, moved only when it fires
            (aiosmtpd cancelled it and made a new one for every command, six a message).
            """
            deadline = self.loop.time() + (duration or self._timeout_duration)
            self._netkit_deadline = deadline
            if self._netkit_when is None or self._netkit_when > deadline:
                if self._timeout_handle is not None:
                    self._timeout_handle.cancel()
                self._netkit_when = deadline
                self._timeout_handle = self.loop.call_at(deadline, self._netkit_timer)

        def _netkit_timer(self) -> None:
            self._netkit_when = None
            if self.loop.time() < self._netkit_deadline:  # a command came since: the rest
                self._netkit_when = self._netkit_deadline
                self._timeout_handle = self.loop.call_at(self._netkit_deadline,
                                                         self._netkit_timer)
                return
            self._timeout_cb()

        async def push(self, status: str | bytes) -> None:
            """A reply's lines leave together: aiosmtpd writes each line of a multi-line
            reply (EHLO's nine) on its own, a send() and a TCP segment each."""
            line = status.encode("utf-8" if self.enable_SMTPUTF8 else "ascii") \
                if isinstance(status, str) else status
            self._netkit_lines.append(line + b"\r\n")
            if line[3:4] == b"-":  # more lines of this reply follow (RFC 5321 4.2.1)
                return
            data = b"".join(self._netkit_lines)
            self._netkit_lines.clear()
            self._writer.write(data)
            await self._writer.drain()

        def connection_made(self, transport: Any) -> None:
            service = self._netkit_service
            peer = (transport.get_extra_info("peername") or ("?",))[0]
            if self._netkit_peer is not None:  # STARTTLS: the same session goes on
                super().connection_made(transport)
                return
            if service.open_sessions >= service.config.max_connections:
                transport.write(b"421 4.3.2 Too many connections; try again later\r\n")
                transport.close()
                return
            count = service.sessions.get(peer, 0)
            if count >= service.config.max_sessions_per_client:
                transport.write(b"421 4.7.0 Too many sessions from your address\r\n")
                transport.close()
                return
            service.sessions[peer] = count + 1
            service.open_sessions += 1
            self._netkit_peer = peer
            self._netkit_may_relay = in_networks(peer, service.config.relay_networks)
            super().connection_made(transport)

        def connection_lost(self, exc: Exception | None) -> None:
            peer, self._netkit_peer = self._netkit_peer, None
            if peer is None:
                return
            self._netkit_service.open_sessions -= 1
            sessions = self._netkit_service.sessions
            left = sessions.get(peer, 1) - 1
            if left > 0:
                sessions[peer] = left
            else:
                sessions.pop(peer, None)
            super().connection_lost(exc)

    _LIMITED = LimitedSMTP
    return _LIMITED


def listen_specs(config: Config) -> list[tuple[str, Address]]:
    return [("tcp", a) for a in (*config.listen, *config.submission)]


def queue_listing(config: Config) -> list[dict[str, Any]]:
    """What `python -m netkit.servers.smtp queue` prints: from the directory, running or
    not."""
    now = time.time()
    return [{"id": e.id, "age": round(now - e.received_at), "sender": e.sender,
             "size": e.size, "recipients": [{"address": r.address, "state": r.state,
                                             "attempts": r.attempts,
                                             "last_error": r.last_error}
                                            for r in e.recipients]}
            for e in QueueStore(config.queue_dir).envelopes()]


def queue_view(service: SMTPService, args: dict[str, Any]) -> list[dict[str, Any]]:
    """`netkit ctl queue`: the running relay's queue."""
    return queue_listing(service.config)


def flush(store: QueueStore) -> int:
    """Every pending recipient due now; how many."""
    count = 0
    for envelope in store.envelopes():
        due = [r for r in envelope.recipients if r.state == "pending"]
        for r in due:
            r.next_attempt = 0.0
        if due:
            store.update(envelope)
            count += len(due)
    return count


def delete(store: QueueStore, message_id: str) -> bool:
    if not any(e.id == message_id for e in store.envelopes()):
        return False
    store.remove(message_id)
    return True


def queue_flush_view(service: SMTPService, args: dict[str, Any]) -> dict[str, int]:
    """`netkit ctl queue_flush`: try every deferred recipient now."""
    count = flush(service.store)
    for envelope in service.store.envelopes():
        if any(r.state == "pending" for r in envelope.recipients):
            service.make_ready(envelope.id)
    return {"recipients_due": count}


def queue_delete_view(service: SMTPService, args: dict[str, Any]) -> dict[str, Any]:
    """`netkit ctl queue_delete id=ID`: drop a message, delivered to nobody more."""
    message_id = str(args.get("id", ""))
    return {"id": message_id, "deleted": delete(service.store, message_id)}


def create(config: Config | Mapping[str, Any] | str | None = None) -> SMTPService:
    return SMTPService(running.load(SPEC, config))


def serve(config: Config | Mapping[str, Any] | str | None = None
          ) -> AbstractAsyncContextManager[running.Server]:
    return running.serve(SPEC, config)


SPEC = ServerSpec(
    name=SECTION, summary="SMTP relay: ESMTP in, a durable queue, Maildir delivery",
    config=Config, create=create, listen_specs=listen_specs,
    commands={"queue": queue_view, "queue_flush": queue_flush_view,
              "queue_delete": queue_delete_view},
    single_process="one queue directory per relay",
    gauges=frozenset({"active", "queued"}), actions=frozenset({"queue_flush", "queue_delete"}))


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["queue"]:
        return _queue_command(argv[1:])
    return server_main(SECTION, argv)


def _queue_command(argv: list[str]) -> int:
    import argparse
    import json


    p = argparse.ArgumentParser(
        prog="python -m netkit.servers.smtp queue",
        description="List the queue, try every deferred recipient now (flush), or drop a "
                    "message (delete ID): through a running relay's control socket "
                    "(--socket), else on the queue directory itself.")
    p.add_argument("action", nargs="?", default="list", choices=["list", "flush", "delete"])
    p.add_argument("id", nargs="?")
    p.add_argument("--config", type=Path)
    p.add_argument("--set", action="append", default=[])
    p.add_argument("--socket", type=Path, help="a running relay's control socket")
    args = p.parse_args(argv)
    if args.action == "delete" and not args.id:
        p.error("delete needs the message id")
    if args.socket is not None:
        from netkit.control import request
        command = {"list": "queue", "flush": "queue_flush", "delete": "queue_delete"}
        reply = request(args.socket, {"command": command[args.action],
                                      "args": {"id": args.id} if args.id else {}})
        if not reply.get("ok"):
            print(f"queue: {reply.get('error')}", file=sys.stderr)
            return 1
        print(json.dumps(reply.get("result"), indent=2))
        return 0
    from netkit.cli import subcommand_config
    try:
        config = subcommand_config(SPEC, args.config, args.set)
    except ConfigError as exc:
        print("\n".join(exc.problems), file=sys.stderr)
        return 2
    store = QueueStore(config.queue_dir)
    if args.action == "flush":
        print(json.dumps({"recipients_due": flush(store)}))
    elif args.action == "delete":
        found = delete(store, args.id)
        print(json.dumps({"id": args.id, "deleted": found}))
        return 0 if found else 1
    else:
        print(json.dumps(queue_listing(config), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
