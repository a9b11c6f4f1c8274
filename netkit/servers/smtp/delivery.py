"""Delivery to the recipients' MX hosts (or a smarthost), retries, and DSN bounces.

Per domain: the MX records through netkit's DNS client, in preference order, each
host's addresses in turn; no MX: the domain itself (implicit MX, RFC 5321 5.1); a null
MX (RFC 7505) or a domain that does not exist: bounced at once. Per recipient: 2xx
delivered, 4xx and connection failures deferred on `retry_schedule` with the reason
kept, 5xx bounced; past `max_queue_time` a deferral becomes a bounce. A bounce sends
a DSN (RFC 3464, multipart/report) to the sender, from the null sender, so that a bounce
of a bounce cannot happen.
"""

from __future__ import annotations

import contextlib
import email.utils
import logging
import time
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from typing import TYPE_CHECKING, Any

import anyio

from netkit.clients import dns
from netkit.clients.smtp import DeliveryError, Session
from netkit.errors import NetkitError
from netkit.proto.smtp.envelope import Envelope, Recipient, defer, expired

if TYPE_CHECKING:
    from .service import SMTPService

log = logging.getLogger("netkit.smtp")


async def mx_hosts(service: SMTPService, domain: str) -> list[str]:
    """The hosts to try for `domain`, best first; DeliveryError(550) when mail to it can
    never be delivered, DeliveryError(0) when DNS could not tell now."""
    resolver = service.resolver
    try:
        records = await resolver.resolve(domain, "MX")
    except dns.NoAnswer:
        return [domain]  # implicit MX
    except dns.NXDOMAIN:
        raise DeliveryError(f"domain {domain} does not exist", 550) from None
    except (NetkitError, TimeoutError, OSError) as exc:  # unreachable resolvers too
        raise DeliveryError(f"MX lookup for {domain} failed: {exc}") from None
    if any(r.exchange == "." for r in records):
        raise DeliveryError(f"{domain} accepts no mail (null MX, RFC 7505)", 556)
    return [r.exchange.rstrip(".") for r in sorted(records, key=lambda r: r.preference)]


async def addresses_of(service: SMTPService, host: str) -> list[str]:
    found: list[str] = []
    for rdtype in ("A", "AAAA"):
        try:
            found += [r.address for r in await service.resolver.resolve(host, rdtype)]
        except (NetkitError, TimeoutError, OSError):
            continue
    return found


Job = tuple[Envelope, list[Recipient], bytes]


async def deliver_destination(service: SMTPService, domain: str, jobs: list[Job]) -> None:
    """Every due message for one domain: its hosts resolved once, then up to
    `max_connections_per_destination` sessions, each reused for message after message."""
    config = service.config
    now = time.time()
    try:
        if config.smarthost is not None:
            targets = [(config.smarthost.host, config.smarthost.port)]
        else:
            targets = [(a, config.mx_port) for host in await mx_hosts(service, domain)
                       for a in await addresses_of(service, host)]
            if not targets:
                raise DeliveryError(f"no address for the mail hosts of {domain}")
    except DeliveryError as exc:
        for envelope, recipients, _ in jobs:
            for r in recipients:
                _failed(service, envelope, r, exc.code, str(exc), now)
        return
    lanes = max(1, min(config.max_connections_per_destination, len(jobs)))
    async with anyio.create_task_group() as tg:
        for lane in range(lanes):
            tg.start_soon(_session, service, domain, targets, jobs[lane::lanes])


async def _session(service: SMTPService, domain: str, targets: list[tuple[str, int]],
                   jobs: list[Job]) -> None:
    config = service.config
    starttls = True if domain in config.tls_required else None
    errors: list[str] = []
    code = 0  # of the last refusal: 5xx at the greeting bounces, anything else defers
    session = None
    for host, port in targets:  # the first host that takes a connection gets them all
        session, stale = service.session_cache.take((host, port, starttls))
        for dead in stale:
            await dead.close()
        if session is not None:
            service.stats["sessions_reused"] += 1
            break
        candidate = Session(host, port, starttls=starttls, helo=config.hostname, timeout=60)
        try:
            await candidate.open()
        except DeliveryError as exc:
            errors.append(str(exc))
            code = exc.code
            if 500 <= exc.code < 600:
                break
            continue
        session = candidate
        service.stats["sessions_opened"] += 1
        break
    now = time.time()
    if session is None:
        for envelope, recipients, _ in jobs:
            for r in recipients:
                _failed(service, envelope, r, code, "; ".join(errors), now)
        return
    done = 0
    try:
        async with contextlib.aclosing(session.transactions(
                [(content, envelope.sender, [r.address for r in recipients])
                 for envelope, recipients, content in jobs])) as results:
            async for result in results:
                envelope, recipients, _ = jobs[done]
                done += 1
                for r in recipients:
                    if r.address in result.accepted:
                        r.state = "delivered"
                        service.stats["delivered_remote"] += 1
                        log.info("smtp: %s: delivered to <%s> via %s", envelope.id,
                                 r.address, session.host)
                    else:
                        code, text = result.refused.get(r.address, (451, "no reply"))
                        _failed(service, envelope, r, code,
                                f"{session.host} said {code} {text}", time.time())
    except DeliveryError as exc:  # the connection broke: the rest wait their turn
        for env, rs, _ in jobs[done:]:
            for r in rs:
                _failed(service, env, r, exc.code, str(exc), time.time())
    finally:  # kept open for the next pass when it ended cleanly
        if not service.session_cache.give((session.host, session.port, starttls), session):
            await session.close()


def _failed(service: SMTPService, envelope: Envelope, r: Recipient, code: int, why: str,
            now: float) -> None:
    config = service.config
    if 500 <= code < 600:
        r.state, r.last_error = "bounced", why
        log.warning("smtp: %s: <%s> bounced: %s", envelope.id, r.address, why)
        return
    defer(r, why, now, [float(s) for s in config.retry_schedule])
    if expired(envelope, now, config.max_queue_time):
        r.state = "bounced"
        r.last_error = f"gave up after {config.max_queue_time} s in the queue; last: {why}"
        log.warning("smtp: %s: <%s> expired: %s", envelope.id, r.address, why)
        return
    log.info("smtp: %s: <%s> deferred (%s); next attempt in %.0f s", envelope.id, r.address,
             why, r.next_attempt - now)


def dsn(service: SMTPService, envelope: Envelope, failed: list[Recipient],
        content: bytes) -> bytes:
    """A delivery status notification (RFC 3464) for the failed recipients."""
    hostname = service.config.hostname
    report = MIMEMultipart("report", report_type="delivery-status")
    report["From"] = f"Mail Delivery System <MAILER-DAEMON@{hostname}>"
    report["To"] = envelope.sender
    report["Subject"] = "Undelivered Mail Returned to Sender"
    report["Date"] = email.utils.formatdate()
    report["Message-ID"] = email.utils.make_msgid(domain=hostname)
    report["Auto-Submitted"] = "auto-replied"
    lines = "\n".join(f"<{r.address}>: {r.last_error}" for r in failed)
    report.attach(MIMEText(f"Your message could not be delivered to these recipients:\n\n"
                           f"{lines}\n"))
    fields = [f"Reporting-MTA: dns; {hostname}",
              f"Arrival-Date: {email.utils.formatdate(envelope.received_at)}", ""]
    for r in failed:
        code = _status_code(r.last_error)
        fields += [f"Final-Recipient: rfc822; {r.address}", "Action: failed",
                   f"Status: {code}", f"Diagnostic-Code: smtp; {r.last_error}", ""]
    delivery_status: Any = MIMEText("\n".join(fields), "delivery-status")
    report.attach(delivery_status)
    head = content.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
    headers = MIMEText(head.decode("utf-8", "replace") + "\n", "rfc822-headers")
    report.attach(headers)
    return report.as_bytes().replace(b"\n", b"\r\n")


def _status_code(reason: str) -> str:
    """The enhanced status code in a reply text, else one for the reply's class."""
    for word in reason.replace("(", " ").split():
        parts = word.split(".")
        if len(parts) == 3 and parts[0] in ("4", "5") and all(p.isdigit() for p in parts):
            return "5" + word[1:]
    return "5.0.0"

