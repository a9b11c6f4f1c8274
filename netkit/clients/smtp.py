"""An SMTP client for scripts, and the relay's delivery: one transaction to one host.

    result = await send(message, sender="a@example.test", recipients=["b@example.net"],
                        host="127.0.0.1", port=2525)
    result.accepted, result.refused      # per recipient: the server's (code, text)

On aiosmtplib (a well-kept async SMTP client: the protocol work, pipelining and
STARTTLS are its). EHLO, STARTTLS when offered (`starttls=None`: opportunistic, the
certificate not verified, as MTAs do between themselves; True: required and verified;
False: never), AUTH when `auth=(user, password)`, then MAIL, RCPT for each recipient
(each answered on its own) and DATA for the accepted ones.
"""

from __future__ import annotations

import contextlib
import ssl
from dataclasses import dataclass, field

import aiosmtplib


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


async def send(message: bytes, *, sender: str, recipients: list[str], host: str,
               port: int = 25, starttls: bool | None = None,
               auth: tuple[str, str] | None = None, timeout: float = 60.0,
               helo: str | None = None, tls_context: ssl.SSLContext | None = None) -> Result:
    result = Result(host)
    smtp = aiosmtplib.SMTP(hostname=host, port=port, timeout=timeout, start_tls=False,
                           local_hostname=helo, validate_certs=starttls is True,
                           tls_context=tls_context)
    try:
        await smtp.connect()
        await smtp.ehlo()
        if starttls is not False and smtp.supports_extension("starttls"):
            await smtp.starttls()
            result.tls = True
        elif starttls is True:
            raise DeliveryError(f"{host}:{port} does not offer STARTTLS", 454)  # try later
        if auth is not None:
            await smtp.login(*auth)
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
                result.accepted = dict.fromkeys(result.accepted, (reply.code, reply.message))
        with contextlib.suppress(aiosmtplib.SMTPException):
            await smtp.quit()
    except aiosmtplib.SMTPResponseException as exc:
        raise DeliveryError(f"{host}:{port}: {exc.code} {exc.message}", exc.code) from None
    except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
        raise DeliveryError(f"{host}:{port}: {exc}") from None
    finally:
        smtp.close()
    return result
