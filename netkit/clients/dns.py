"""A DNS client: `await resolve(...)` for scripts, and a dig-like command.

    python -m netkit.clients.dns [@SERVER] [-p PORT] NAME [TYPE] [+tcp] [+trace]
                                 [--root-hints FILE] [--timeout S]

`resolve` asks a recursive server over UDP (a random ID and source port), moves
to TCP when the answer is truncated, and tries each server in turn. `+trace`
does the iteration itself from the root hints and prints each step: which
server was asked, and the referral or answer it gave.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from dnslib import EDNS0, QTYPE, RCODE, DNSQuestion, DNSRecord

from netkit.proto.dns.cache import Cache
from netkit.proto.dns.classify import Classified, Kind
from netkit.proto.dns.message import name_to_wire
from netkit.proto.dns.names import IANA_ROOT_HINTS, name_key
from netkit.servers.dns.resolver import Resolver
from netkit.transport.dns_exchange import DNSExchange
from netkit.transport.errors import CONNECTION_LOST, describe

from ..config import Address
from ..errors import ConnectError, ResolveTimeout

_rng = random.SystemRandom()


@dataclass(frozen=True, slots=True)
class Record:
    name: str
    type: str
    ttl: int
    data: str


@dataclass(frozen=True, slots=True)
class Answer:
    """A server's answer: rcode name ("NOERROR", "NXDOMAIN" ...), sections, who said it."""

    rcode: str
    records: tuple[Record, ...]
    authority: tuple[Record, ...]
    server: str
    tcp: bool
    message: DNSRecord


def _records(rrs: list) -> tuple[Record, ...]:
    return tuple(Record(str(rr.rname), QTYPE.get(rr.rtype), rr.ttl, rr.rdata.toZone())
                 for rr in rrs)


async def resolve(name: str, rdtype: str = "A", *,
                  server: str | Address | list[str | Address] = "127.0.0.1:53",
                  timeout: float = 2.0, tcp: bool = False) -> Answer:
    """Ask recursive server(s) for NAME/TYPE; raise ResolveTimeout or ConnectError if none
    answers. A server's NXDOMAIN or SERVFAIL is an Answer, not an exception."""
    servers = server if isinstance(server, list) else [server]
    addresses = [s if isinstance(s, Address) else Address.parse(s, default_port=53)
                 for s in servers]
    request = DNSRecord(q=DNSQuestion(name, getattr(QTYPE, rdtype.upper())))
    request.header.id = _rng.randrange(65536)
    request.header.rd = 1
    request.add_ar(EDNS0(udp_len=1232))
    query = request.pack()
    upstream = DNSExchange()
    try:
        return await _ask_each(upstream, addresses, query, timeout, tcp, name, rdtype)
    finally:
        upstream.close()


async def _ask_each(upstream: DNSExchange, addresses: list[Address], query: bytes,
                    timeout: float, tcp: bool, name: str, rdtype: str) -> Answer:
    problems = []
    for address in addresses:
        try:
            used_tcp = tcp
            exchange = upstream.tcp if tcp else upstream.udp
            msg = _parse(await exchange(address.host, address.port, query, timeout))
            if msg.header.tc and not tcp:
                used_tcp = True
                msg = _parse(await upstream.tcp(address.host, address.port, query, timeout))
        except TimeoutError:
            problems.append((str(address), "timed out"))
            continue
        except CONNECTION_LOST as exc:
            problems.append((str(address), describe(exc)))
            continue
        return Answer(RCODE.get(msg.header.rcode), _records(msg.rr), _records(msg.auth),
                      str(address), used_tcp, msg)
    if all(why == "timed out" for _, why in problems):
        raise ResolveTimeout(f"no answer for {name} {rdtype}: " +
                             "; ".join(f"{a}: {w}" for a, w in problems))
    raise ConnectError(f"no answer for {name} {rdtype}", problems)


def _parse(data: bytes) -> DNSRecord:
    try:
        return DNSRecord.parse(data)
    except Exception as exc:  # dnslib raises many kinds on garbage
        raise OSError(f"malformed answer: {exc}") from None


def _print_answer(answer: Answer) -> None:
    m = answer.message
    print(f";; ->>HEADER<<- opcode: QUERY, status: {answer.rcode}, id: {m.header.id}")
    print(f";; QUESTION SECTION:\n;{m.q.qname}\t\tIN\t{QTYPE.get(m.q.qtype)}\n")
    for title, rows in (("ANSWER", answer.records), ("AUTHORITY", answer.authority)):
        if rows:
            print(f";; {title} SECTION:")
            for r in rows:
                print(f"{r.name}\t{r.ttl}\tIN\t{r.type}\t{r.data}")
            print()
    print(f";; SERVER: {answer.server} ({'TCP' if answer.tcp else 'UDP'})")


async def trace(name: str, rdtype: str, hints: str, timeout: float) -> int:
    """Iterate from the root like `dig +trace`, printing every server's answer."""
    def step(zone: str, server: str, qname: str, qtype: int, outcome: Classified) -> None:
        what = {
            Kind.REFERRAL: lambda: f"referral to {outcome.zone} "
                                   f"({', '.join(outcome.ns_names)})"
                                   f"{'' if outcome.glue else ', no glue'}",
            Kind.ANSWER: lambda: "answer: " + "; ".join(
                f"{rr.name} {rr.ttl} {QTYPE.get(rr.rtype)} {rr.rdata_text()}"
                for rr in outcome.answer),
            Kind.CNAME: lambda: f"CNAME {outcome.cname.target}" if outcome.cname else "CNAME",
            Kind.NXDOMAIN: lambda: "NXDOMAIN",
            Kind.NODATA: lambda: "NODATA",
            Kind.LAME: lambda: f"lame ({outcome.why})",
        }[outcome.kind]()
        print(f"{zone:<20} @{server:<16} {qname} {QTYPE.get(qtype)}: {what}")

    resolver = Resolver(root_hints=hints, cache=Cache(max_entries=0), server_timeout=timeout,
                        total_timeout=timeout * 10, query_private_authorities=True,
                        on_step=step)
    result = await resolver.resolve(name_key(name), getattr(QTYPE, rdtype.upper()))
    print(f";; status: {RCODE.get(result.rcode)}"
          + (f" (EDE {int(result.ede[0])}: {result.ede[1]})" if result.ede else ""))
    return 0 if result.rcode != RCODE.SERVFAIL else 1


def main(argv: list[str] | None = None) -> int:
    """dig's exit codes: 0 with any answer (SERVFAIL and NXDOMAIN too), 1 for a usage
    error, 9 when no server replied, 10 for a name that cannot be sent; every error is
    one line."""
    argv = list(sys.argv[1:] if argv is None else argv)
    server = "127.0.0.1"
    plus = {a[1:] for a in argv if a.startswith("+")}
    for a in argv:
        if a.startswith("@"):
            server = a[1:]
    rest = [a for a in argv if not a.startswith(("@", "+"))]
    p = _Parser(prog="python -m netkit.clients.dns", description=__doc__)
    p.add_argument("name")
    p.add_argument("type", nargs="?", default="A")
    p.add_argument("-p", "--port", type=int, default=53)
    p.add_argument("--timeout", type=float, default=2.0)
    p.add_argument("--root-hints", type=Path, help="named.root for +trace (default: IANA)")
    try:
        args = p.parse_args(rest)
    except _UsageError as exc:
        print(f"netkit dns: {exc}", file=sys.stderr)
        return 1
    unknown = plus - {"tcp", "trace"}
    if unknown:
        print(f"netkit dns: unknown option +{', +'.join(sorted(unknown))}", file=sys.stderr)
        return 1
    if args.type.upper() not in QTYPE.reverse:
        print(f"netkit dns: unknown type {args.type!r}", file=sys.stderr)
        return 1
    try:
        name_to_wire(args.name if args.name.endswith(".") else args.name + ".")
    except ValueError as exc:
        print(f"netkit dns: {args.name!r} is not a legal name ({exc})", file=sys.stderr)
        return 10
    if "trace" in plus:
        hints = args.root_hints.read_text() if args.root_hints else IANA_ROOT_HINTS
        return asyncio.run(trace(args.name, args.type, hints, args.timeout))
    address = Address(server.strip("[]"), args.port)
    try:
        answer = asyncio.run(resolve(args.name, args.type, server=[address],
                                     timeout=args.timeout, tcp="tcp" in plus))
    except (ResolveTimeout, ConnectError) as exc:
        print(f";; {exc}", file=sys.stderr)
        return 9  # dig's status when no server answered
    _print_answer(answer)
    return 0


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line and dig's exit code (1), not argparse's 2."""

    def error(self, message: str) -> NoReturn:
        raise _UsageError(message)


if __name__ == "__main__":
    sys.exit(main())
