"""An SMTP client for scripts, and the relay's delivery: one transaction to one host.

    python -m netkit.clients.smtp --server 127.0.0.1:2525 --from a@x.test --to b@y.test -v

    result = await send(message, sender="a@example.test", recipients=["b@example.net"],
                        host="127.0.0.1", port=2525)
    result.accepted, result.refused      # per recipient: the server's (code, text)

The session's opening is aiosmtplib's (a well-kept async SMTP client): connect, EHLO,
STARTTLS when offered (`starttls=None`: opportunistic, the certificate not verified, as
MTAs do between themselves; True: required and verified; False: never), AUTH when
`auth=(user, password)`. Then MAIL, RCPT for each recipient (each answered on its own)
and DATA for the accepted ones: pipelined (RFC 2920: one write, the replies read in
order) when the server offers PIPELINING, which aiosmtplib does not do; one command at
a time otherwise, and always with `trace` (-v shows the dialogue as a textbook would).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import email.utils
import socket
import ssl
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiosmtplib

from netkit.proto.smtp.replies import Reply, ReplyError, ReplyReader, data_block


@dataclass
class Result:
    host: str
    accepted: dict[str, tuple[int, str]] = field(default_factory=dict)
    refused: dict[str, tuple[int, str]] = field(default_factory=dict)
    tls: bool = False


class DeliveryError(Exception):
    """The transaction failed as a whole: `code` (0 when no server reply said why)."""

    def __init__(self, message: str, code: int = 0) -> None:
        super().__init__(message)
        self.code = code


class _Traced(aiosmtplib.SMTP):
    """aiosmtplib's client, each command and reply also given to `trace` (-v)."""

    def __init__(self, trace: Callable[[str, str], None], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._trace = trace

    async def execute_command(self, *args: bytes, **kwargs: Any) -> Any:
        line = b" ".join(args).decode("utf-8", "replace")
        if line.upper().startswith("AUTH"):
            line = line.split(" ", 2)[0] + " " + line.split(" ", 2)[1] + " ..."  # no secrets
        self._trace("->", line)
        reply = await super().execute_command(*args, **kwargs)
        self._show(reply)
        return reply

    async def data(self, message: Any, *args: Any, **kwargs: Any) -> Any:
        self._trace("->", "DATA")
        try:
            reply = await super().data(message, *args, **kwargs)
        except aiosmtplib.SMTPResponseException as exc:
            self._trace("<-", f"{exc.code} {exc.message}")
            raise
        self._trace("->", f"<the message, {len(message)} bytes>")
        self._trace("->", ".")
        self._show(reply)
        return reply

    def _show(self, reply: Any) -> None:
        for text in (reply.message or "").splitlines() or [""]:
            self._trace("<-", f"{reply.code} {text}")


class _Pipe(asyncio.Protocol):
    """The connection once it is open, when the server pipelines: replies parsed as they
    come (proto/smtp/replies.py) and handed out in order. A reply nobody asked for is a
    protocol error: a server cannot make the client keep replies without end."""

    def __init__(self, transport: asyncio.Transport, timeout: float) -> None:
        self.transport, self.timeout = transport, timeout
        self.reader = ReplyReader()
        self.replies: collections.deque[Reply] = collections.deque()
        self.error: BaseException | None = None
        self.waiter: asyncio.Future[None] | None = None
        self.outstanding = 0  # replies owed for what was sent
        transport.set_protocol(self)

    def data_received(self, data: bytes) -> None:
        try:
            self.replies.extend(self.reader.feed(data))
            if len(self.replies) > self.outstanding:
                raise ReplyError("a reply to no command")
        except ReplyError as exc:
            self.error = exc
            self.transport.close()
        self._wake()

    def eof_received(self) -> bool:
        self.error = self.error or ConnectionError("the server closed the connection")
        self._wake()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.error = self.error or exc or ConnectionError("the connection was closed")
        self._wake()

    def _wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    def send(self, data: bytes, replies: int = 1) -> None:
        """`data` holds `replies` commands (or a message's content: one)."""
        if self.error is not None or self.transport.is_closing():
            raise self.error or ConnectionError("the connection was closed")
        self.outstanding += replies
        self.transport.write(data)

    async def reply(self) -> Reply:
        while not self.replies:
            if self.error is not None:
                raise self.error
            self.waiter = asyncio.get_running_loop().create_future()
            await asyncio.wait_for(self.waiter, self.timeout)
        self.outstanding -= 1
        return self.replies.popleft()


Job = tuple[bytes, str, list[str]]  # message, sender, recipients


def _path(address: str, utf8: bool) -> bytes:
    if any(c in address for c in "\r\n<>"):
        raise ValueError(f"not a mailbox: {address!r}")
    return b"<" + address.encode("utf-8" if utf8 else "ascii") + b">"


class Session:
    """One SMTP connection carrying any number of transactions (the relay reuses one for
    the messages it has for the same host): `await open()`, `transaction()` each, then
    `close()`."""

    def __init__(self, host: str, port: int = 25, *, starttls: bool | None = None,
                 auth: tuple[str, str] | None = None, timeout: float = 60.0,
                 helo: str | None = None, tls_context: ssl.SSLContext | None = None,
                 trace: Callable[[str, str], None] | None = None) -> None:
        self.host, self.port, self.starttls, self.auth = host, port, starttls, auth
        options: dict[str, Any] = dict(hostname=host, port=port, timeout=timeout,
                                       start_tls=False, local_hostname=helo,
                                       validate_certs=starttls is True,
                                       tls_context=tls_context)
        self.smtp = _Traced(trace, **options) if trace is not None else \
            aiosmtplib.SMTP(**options)
        self.tls = False
        self.timeout = timeout
        self.pipe: _Pipe | None = None
        self.opened_at = 0.0  # time.monotonic() once open

    def usable(self) -> bool:
        """Open, owing nothing, and not closed (nor spoken to) by the server since."""
        if self.pipe is not None:
            pipe = self.pipe
            return pipe.error is None and not pipe.transport.is_closing() and \
                not pipe.outstanding and not pipe.replies
        return self.smtp.is_connected

    def _error(self, exc: BaseException) -> DeliveryError:
        if isinstance(exc, aiosmtplib.SMTPResponseException):
            return DeliveryError(f"{self.host}:{self.port}: {exc.code} {exc.message}",
                                 exc.code)
        return DeliveryError(f"{self.host}:{self.port}: {exc}")

    async def open(self) -> None:
        smtp = self.smtp
        try:
            await smtp.connect()
            await smtp.ehlo()
            if self.starttls is not False and smtp.supports_extension("starttls"):
                await smtp.starttls()
                self.tls = True
            elif self.starttls is True:
                raise DeliveryError(f"{self.host}:{self.port} does not offer STARTTLS",
                                    454)  # a policy failure: try again later
            if self.auth is not None:
                await smtp.login(*self.auth)
            transport: Any = smtp.transport  # uvloop's are not asyncio.Transport subclasses
            if not isinstance(smtp, _Traced) and smtp.supports_extension("pipelining") and \
                    transport is not None and hasattr(transport, "set_protocol"):
                self.pipe = _Pipe(transport, self.timeout)
            self.opened_at = time.monotonic()
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            smtp.close()
            raise self._error(exc) from None
        except DeliveryError:
            smtp.close()
            raise

    async def transaction(self, message: bytes, sender: str,
                          recipients: list[str]) -> Result:
        """MAIL, one RCPT per recipient (each answered on its own), DATA for those
        accepted. DeliveryError when the connection fails (it cannot be used again)."""
        async with contextlib.aclosing(self.transactions([(message, sender,
                                                             recipients)])) as results:
            async for result in results:
                return result
        raise AssertionError("a transaction without a result")  # pragma: no cover

    async def transactions(self, jobs: Iterable[Job]) -> AsyncIterator[Result]:
        """The result of each (message, sender, recipients), in order; DeliveryError when
        the connection fails, the results before it already given. Pipelined when the
        server offers it: MAIL, the RCPTs and DATA in one write, and from the second
        message on, that write also carries the previous message's content (RFC 2920 3.1
        lets the content open a group): one write and one wait a message."""
        if self.pipe is None:
            for message, sender, recipients in jobs:
                yield await self._one_by_one(message, sender, recipients)
            return
        pipe = self.pipe
        carry, owed = b"", None  # a content sent with the next group; whose it is
        try:
            for message, sender, recipients in jobs:
                result = Result(self.host, tls=self.tls)
                group = self._envelope(sender, recipients, result)
                if group is None:  # refused before a byte was sent
                    if owed is not None:
                        pipe.send(carry)
                        carry, done, owed = b"", owed, None
                        yield await self._content_reply(done)
                    yield result
                    continue
                pipe.send(carry + group, replies=(owed is not None) + len(recipients) + 2)
                carry = b""
                if owed is not None:
                    done, owed = owed, None
                    yield await self._content_reply(done)
                mail = await pipe.reply()
                rcpts = [await pipe.reply() for _ in recipients]
                data = await pipe.reply()
                if mail.code // 100 != 2:
                    if not 400 <= mail.code < 600:
                        raise DeliveryError(f"{self.host}:{self.port}: {mail.code} "
                                            f"{mail.text}", mail.code)
                    result.refused = dict.fromkeys(recipients, (mail.code, mail.text))
                else:
                    for rcpt, reply in zip(recipients, rcpts, strict=True):
                        (result.accepted if reply.code // 100 == 2 else result.refused)[rcpt] = \
                            (reply.code, reply.text)
                if data.code == 354:  # the content, or "." alone when nobody is to get it
                    carry = data_block(message) if result.accepted else b".\r\n"
                    owed = result
                    continue
                for rcpt in result.accepted:  # DATA refused: the transaction is undone
                    result.refused[rcpt] = (data.code, data.text)
                result.accepted.clear()
                pipe.send(b"RSET\r\n")  # rare: not worth carrying
                await pipe.reply()
                yield result
            if owed is not None:
                pipe.send(carry)
                done, owed = owed, None
                yield await self._content_reply(done)
        except (ReplyError, OSError, TimeoutError) as exc:
            self.smtp.close()
            raise DeliveryError(f"{self.host}:{self.port}: {exc}") from None
        finally:  # left half-way (replies owed, a content unsent): the session is over
            if pipe.outstanding or owed is not None:
                pipe.transport.close()
                self.smtp.close()

    def _envelope(self, sender: str, recipients: list[str], result: Result) -> bytes | None:
        """MAIL, the RCPTs and DATA as one group; None (and `result` says why) when they
        cannot be sent to this server."""
        utf8 = not all(a.isascii() for a in (sender, *recipients))
        if utf8 and not self.smtp.supports_extension("smtputf8"):
            result.refused = dict.fromkeys(recipients, (553, "5.6.7 the server does not "
                                                        "take SMTPUTF8 addresses"))
            return None
        try:
            return (b"MAIL FROM:" + _path(sender, utf8) + (b" SMTPUTF8" if utf8 else b"") +
                    b"\r\n" + b"".join(b"RCPT TO:" + _path(r, utf8) + b"\r\n"
                                        for r in recipients) + b"DATA\r\n")
        except ValueError as exc:
            result.refused = dict.fromkeys(recipients, (501, f"5.1.3 {exc}"))
            return None

    async def _content_reply(self, owed: Result) -> Result:
        """`owed`, done by the reply to its message's content."""
        assert self.pipe is not None
        reply = await self.pipe.reply()
        if owed.accepted and reply.code // 100 == 2:
            owed.accepted = dict.fromkeys(owed.accepted, (reply.code, reply.text))
        else:  # refused at the end of the content: the transaction is over all the same
            for rcpt in owed.accepted:
                owed.refused[rcpt] = (reply.code, reply.text)
            owed.accepted.clear()
        return owed

    async def _one_by_one(self, message: bytes, sender: str, recipients: list[str]) -> Result:
        smtp = self.smtp
        result = Result(self.host, tls=self.tls)
        try:
            await smtp.mail(sender)
            for rcpt in recipients:
                try:
                    reply = await smtp.rcpt(rcpt)
                    result.accepted[rcpt] = (reply.code, reply.message)
                except aiosmtplib.SMTPRecipientRefused as exc:
                    result.refused[rcpt] = (exc.code, exc.message)
            if result.accepted:
                try:
                    reply = await smtp.data(message)
                except aiosmtplib.SMTPDataError as exc:
                    for rcpt in result.accepted:
                        result.refused[rcpt] = (exc.code, exc.message)
                    result.accepted.clear()
                else:
                    result.accepted = dict.fromkeys(result.accepted,
                                                    (reply.code, reply.message))
            else:
                await smtp.rset()
        except aiosmtplib.SMTPSenderRefused as exc:
            if not 400 <= exc.code < 600:
                raise self._error(exc) from None
            with contextlib.suppress(aiosmtplib.SMTPException):
                await smtp.rset()
            result.refused = dict.fromkeys(recipients, (exc.code, exc.message))
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            smtp.close()
            raise self._error(exc) from None
        return result

    async def close(self) -> None:
        if self.pipe is not None:
            with contextlib.suppress(ReplyError, OSError, TimeoutError):
                self.pipe.send(b"QUIT\r\n")
                await self.pipe.reply()
            self.pipe.transport.close()
            self.smtp.close()
            return
        with contextlib.suppress(aiosmtplib.SMTPException, OSError, TimeoutError):
            await self.smtp.quit()
        self.smtp.close()


async def send(message: bytes, *, sender: str, recipients: list[str], host: str,
               port: int = 25, starttls: bool | None = None,
               auth: tuple[str, str] | None = None, timeout: float = 60.0,
               helo: str | None = None, tls_context: ssl.SSLContext | None = None,
               trace: Callable[[str, str], None] | None = None) -> Result:
    """One message in one session."""
    session = Session(host, port, starttls=starttls, auth=auth, timeout=timeout, helo=helo,
                      tls_context=tls_context, trace=trace)
    await session.open()
    try:
        return await session.transaction(message, sender, recipients)
    finally:
        await session.close()


def main(argv: list[str] | None = None) -> int:
    """swaks' habits: one message, the session shown with -v; exit 0 when every
    recipient was accepted, 1 when some were refused, 2 for a failed transaction."""
    p = argparse.ArgumentParser(prog="python -m netkit.clients.smtp",
                                description="Send one message and show the SMTP session.")
    p.add_argument("--server", default="127.0.0.1:25", metavar="HOST[:PORT]")
    p.add_argument("--from", dest="sender", required=True)
    p.add_argument("--to", action="append", required=True, help="comma-separated, repeatable")
    p.add_argument("--header", action="append", default=[], metavar="'Name: value'")
    p.add_argument("--body", default="This is a test message from netkit.",
                   help="the body text, or @FILE")
    p.add_argument("--tls", action="store_true", help="require STARTTLS (verified)")
    p.add_argument("--no-tls", action="store_true", help="never STARTTLS")
    p.add_argument("--auth-user")
    p.add_argument("--auth-password")
    p.add_argument("-v", "--verbose", action="store_true", help="show every command and reply")
    args = p.parse_args(argv)
    host, _, port = args.server.rpartition(":") if ":" in args.server else (args.server, "",
                                                                             "25")
    recipients = [r.strip() for group in args.to for r in group.split(",") if r.strip()]
    body = Path(args.body[1:]).read_text() if args.body.startswith("@") else args.body
    names = {h.split(":", 1)[0].strip().lower() for h in args.header}
    head = list(args.header)
    for name, value in (("From", args.sender), ("To", ", ".join(recipients)),
                        ("Subject", "test " + email.utils.formatdate()),
                        ("Date", email.utils.formatdate()),
                        ("Message-ID", email.utils.make_msgid())):
        if name.lower() not in names:
            head.append(f"{name}: {value}")
    message = ("\r\n".join(head) + "\r\n\r\n" + body.replace("\n", "\r\n") + "\r\n").encode()

    def show(direction: str, line: str) -> None:
        print(f"{direction} {line}")

    auth = (args.auth_user, args.auth_password or "") if args.auth_user else None
    try:
        result = asyncio.run(send(message, sender=args.sender, recipients=recipients,
                                  host=host, port=int(port), auth=auth,
                                  starttls=True if args.tls else False if args.no_tls
                                  else None, helo=socket.gethostname(),
                                  trace=show if args.verbose else None))
    except DeliveryError as exc:
        print(f"smtp: {exc}", file=sys.stderr)
        return 2
    for rcpt, (code, text) in result.refused.items():
        print(f"smtp: <{rcpt}> refused: {code} {text}", file=sys.stderr)
    if result.accepted:
        code, text = next(iter(result.accepted.values()))
        print(f"smtp: accepted for {len(result.accepted)} recipient(s): {code} {text}")
    return 1 if result.refused else 0


if __name__ == "__main__":
    sys.exit(main())
