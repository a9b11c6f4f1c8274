"""`python -m netkit.clients.dns`: a dig-like command on the stub resolver.

    python -m netkit.clients.dns [@server] [-p port] [-t type] [-c class] [-x addr]
                                 [name] [type] [class] [+short] [+tcp] [+norecurse]
                                 [+time=T] [+tries=N] [+trace] [+tls] [+https]
                                 [+tls-ca=FILE] [+tls-hostname=NAME] [+dnssec] [+cd]
                                 [--trust-anchor FILE]

Without @server it asks the first nameserver of /etc/resolv.conf, as dig does. The
output has dig's sections; `+short` prints only the answers' data. `+trace` does the
iteration itself from the root hints (`--root-hints FILE`, default IANA's) and prints
each step: which server was asked, and the referral or answer it gave. `+tls` asks over
DNS over TLS (port 853), `+https` over DNS over HTTPS (POST to /dns-query, port 443);
as dig, without `+tls-ca` the server's certificate is not checked (opportunistic
privacy, RFC 7858), with it the certificate must be signed by that CA and carry the
server's address (or `+tls-hostname`).
"""

from __future__ import annotations

import asyncio
import ipaddress
import struct
import sys
import time
from pathlib import Path
from typing import Any

from dnslib import CLASS, QTYPE, RCODE

from ...config import Address
from ...errors import ConnectError, ResolveTimeout
from ...proto.dns.cache import Cache
from ...proto.dns.classify import Classified, Kind
from ...proto.dns.dnssec import DS, IANA_ROOT_ANCHORS, parse_trust_anchors
from ...proto.dns.message import name_to_wire
from ...proto.dns.names import IANA_ROOT_HINTS, name_key
from ...servers.dns.resolver import Resolver as IterativeResolver
from . import resolvconf
from .stub import Answer, Record, Resolver, reverse_name

USAGE = """\
Usage:  python -m netkit.clients.dns [@server] [domain] [q-type] [q-class] {q-opt}
                                     {d-opt}
Where:  domain    is in the Domain Name System
        q-class   is one of (in,hs,ch,...) [default: in]
        q-type    is one of (a,any,mx,ns,soa,hinfo,axfr,txt,...) [default: a]
        q-opt     is one of:
                  -x dot-notation     (shortcut for reverse lookups)
                  -p port             (specify port number)
                  -t type             (specify query type)
                  -c class            (specify query class)
                  --root-hints file   (named.root for +trace; default IANA's)
                  --trust-anchor file (the root's DS/DNSKEY for +trace: validate the
                                       chain; default IANA's with IANA's root hints)
        d-opt     is of the form +keyword[=value], where keyword is:
                  +[no]short          (display nothing except short form of answers)
                  +[no]tcp            (TCP mode)
                  +[no]dnssec         (request DNSSEC records: the DO bit)
                  +[no]cdflag         (set checking disabled flag in query)
                  +[no]tls            (DNS over TLS mode)
                  +[no]https[=###]    (DNS over HTTPS mode, POST) [/dns-query]
                  +tls-ca=###         (verify the server's certificate with this CA)
                  +tls-hostname=###   (the name the certificate must carry)
                  +[no]recurse        (recursive mode)
                  +time=###           (set query timeout) [5]
                  +tries=###          (set number of UDP attempts) [3]
                  +retry=###          (set number of UDP retries) [2]
                  +trace              (trace delegation down from root)
        -h                            (print help and exit)
Exit status (dig's): 0 an answer (NXDOMAIN and SERVFAIL too), 1 usage error,
9 no reply from any server, 10 a name that cannot be sent.
"""


class _Usage(Exception):
    pass


class _Query:
    """The command line read dig's way: options anywhere, a word that is a type or a class
    is one, any other word is the name."""

    def __init__(self, argv: list[str]) -> None:
        self.server: str | None = None
        self.port: int | None = None
        self.tls = False
        self.dnssec = self.cd = False
        self.trust_anchor: Path | None = None
        self.https: str = ""
        self.tls_ca: str | None = None
        self.tls_hostname: str | None = None
        self.name: str | None = None
        self.rdtype: str | None = None
        self.rdclass: str | None = None
        self.short = self.tcp = self.trace = False
        self.recurse = True
        self.time, self.tries = 5.0, 3
        self.root_hints: Path | None = None
        self.help = False
        args = list(argv)
        while args:
            arg = args.pop(0)
            if arg.startswith("@"):
                self.server = arg[1:].strip("[]")
            elif arg.startswith("+"):
                self._plus(arg[1:])
            elif arg in ("-p", "-t", "-c", "-x", "--root-hints", "--timeout",
                         "--trust-anchor"):
                if not args:
                    raise _Usage(f"option {arg} needs a value")
                self._dash(arg, args.pop(0))
            elif arg in ("-h", "--help"):
                self.help = True
            elif arg.startswith("-") and len(arg) > 1:
                raise _Usage(f"invalid option: {arg}")
            elif arg.upper() in QTYPE.reverse and self.rdtype is None:
                self.rdtype = arg.upper()
            elif arg.upper() in CLASS.reverse and self.rdclass is None:
                self.rdclass = arg.upper()
            elif self.name is None:
                self.name = arg
            else:
                raise _Usage(f"{arg!r} is neither a type nor a class, and the name is "
                             f"{self.name!r}")
        if self.name is None and self.rdtype is None:
            self.name, self.rdtype = ".", "NS"  # what a bare `dig` asks
        self.name = self.name or "."
        self.rdtype = self.rdtype or "A"
        self.rdclass = self.rdclass or "IN"

    def _plus(self, option: str) -> None:
        key, _, value = option.partition("=")
        flag = not key.startswith("no")
        word = key.removeprefix("no")
        if word == "short":
            self.short = flag
        elif word in ("tcp", "vc"):
            self.tcp = flag
        elif word == "tls":
            self.tls = flag
        elif word == "dnssec":
            self.dnssec = flag
        elif word in ("cd", "cdflag"):
            self.cd = flag
        elif word in ("https", "https-post"):
            self.https = (value or "/dns-query") if flag else ""
        elif word == "tls-ca" and flag:
            self.tls_ca = value or None
        elif word == "tls-hostname" and flag:
            self.tls_hostname = value or None
        elif word in ("recurse", "rec"):
            self.recurse = flag
        elif word == "trace":
            self.trace = flag
        elif word in ("time", "tries", "retry") and flag:
            try:
                number = int(value)
            except ValueError:
                raise _Usage(f"+{key} needs a number") from None
            if word == "time":
                self.time = float(max(1, number))
            else:
                self.tries = max(1, number + (word == "retry"))
        else:
            raise _Usage(f"invalid option: +{option}")

    def _dash(self, option: str, value: str) -> None:
        if option == "-p":
            if not value.isdigit() or not 0 < int(value) < 65536:
                raise _Usage(f"-p {value}: not a port")
            self.port = int(value)
        elif option == "-t":
            if value.upper() not in QTYPE.reverse:
                raise _Usage(f"-t {value}: unknown type")
            self.rdtype = value.upper()
        elif option == "-c":
            if value.upper() not in CLASS.reverse:
                raise _Usage(f"-c {value}: unknown class")
            self.rdclass = value.upper()
        elif option == "-x":
            try:
                self.name, self.rdtype = reverse_name(value), "PTR"
            except ValueError:
                raise _Usage(f"-x {value}: not an address") from None
        elif option == "--root-hints":
            self.root_hints = Path(value)
        elif option == "--trust-anchor":
            self.trust_anchor = Path(value)
        elif option == "--timeout":
            self.time = float(value)


def _row(r: Record) -> str:
    return f"{r.name}\t\t{r.ttl}\tIN\t{r.type}\t{r.data}"


def print_answer(answer: Answer, argv: list[str], elapsed: float) -> None:
    """dig's output: header, flags and counts, OPT, the sections, the footer."""
    m = answer.message
    h = m.header
    print(f"\n; <<>> netkit dns <<>> {' '.join(argv)}")
    print(";; global options: +cmd\n;; Got answer:")
    print(f";; ->>HEADER<<- opcode: QUERY, status: {answer.rcode}, id: {h.id}")
    order = ["qr", "aa", "tc", "rd", "ra", "ad", "cd"]
    flags = " ".join(f for f in order if f in answer.flags)
    print(f";; flags: {flags}; QUERY: {len(m.questions)}, ANSWER: {len(m.rr)}, "
          f"AUTHORITY: {len(m.auth)}, ADDITIONAL: {len(m.ar)}\n")
    opt = next((rr for rr in m.ar if rr.rtype == 41), None)
    if opt is not None:
        do = " do" if opt.ttl & 0x8000 else ""
        print(f";; OPT PSEUDOSECTION:\n; EDNS: version: {(opt.ttl >> 16) & 0xFF}, "
              f"flags:{do}; udp: {opt.rclass}")
    print(";; QUESTION SECTION:")
    for q in m.questions:
        print(f";{q.qname}\t\t\t{CLASS.get(q.qclass)}\t{QTYPE.get(q.qtype)}")
    print()
    for title, rows in (("ANSWER", answer.records), ("AUTHORITY", answer.authority),
                        ("ADDITIONAL", answer.additional)):
        if rows:
            print(f";; {title} SECTION:")
            for r in rows:
                print(_row(r))
            print()
    host, _, port = answer.server.rpartition(":")
    host = host.strip("[]")
    print(f";; Query time: {elapsed * 1000:.0f} msec")
    print(f";; SERVER: {host}#{port}({host}) ({answer.transport})")
    print(f";; WHEN: {time.strftime('%a %b %d %H:%M:%S %Z %Y')}")
    print(f";; MSG SIZE  rcvd: {answer.size}\n")


async def trace(name: str, rdtype: str, hints: str, timeout: float,
                anchors: list[Any] | None = None) -> int:
    """Iterate from the root like `dig +trace`, printing every server's answer; with
    trust `anchors` the DNSSEC chain is validated on the way (the DNSKEY questions and
    each referral's DS show)."""
    def ds_of(outcome: Classified) -> str:
        if anchors is None or outcome.response is None:
            return ""
        tags = [str(struct.unpack_from("!H", rr.rdata)[0]) for rr in outcome.response.authority
                if rr.rtype == DS and rr.name == outcome.zone and len(rr.rdata) >= 2]
        return f", DS {'/'.join(tags)}" if tags else ", no DS (unsigned below)"

    def step(zone: str, server: str, qname: str, qtype: int, outcome: Classified) -> None:
        what = {
            Kind.REFERRAL: lambda: f"referral to {outcome.zone} "
                                   f"({', '.join(outcome.ns_names)})"
                                   f"{'' if outcome.glue else ', no glue'}{ds_of(outcome)}",
            Kind.ANSWER: lambda: "answer: " + "; ".join(
                f"{rr.name} {rr.ttl} {QTYPE.get(rr.rtype)} {rr.rdata_text()}"
                for rr in outcome.answer),
            Kind.CNAME: lambda: f"CNAME {outcome.cname.target}" if outcome.cname else "CNAME",
            Kind.NXDOMAIN: lambda: "NXDOMAIN",
            Kind.NODATA: lambda: "NODATA",
            Kind.LAME: lambda: f"lame ({outcome.why})",
        }[outcome.kind]()
        print(f"{zone:<20} @{server:<16} {qname} {QTYPE.get(qtype)}: {what}")

    resolver = IterativeResolver(root_hints=hints, cache=Cache(max_entries=0),
                                 server_timeout=timeout, total_timeout=timeout * 10,
                                 query_private_authorities=True, on_step=step,
                                 trust_anchors=anchors)
    result = await resolver.resolve(name_key(name), getattr(QTYPE, rdtype.upper()))
    if anchors is not None:
        print(f";; DNSSEC: {'secure' if result.secure else 'insecure or bogus'}")
    print(f";; status: {RCODE.get(result.rcode)}"
          + (f" (EDE {int(result.ede[0])}: {result.ede[1]})" if result.ede else ""))
    return 0 if result.rcode != RCODE.SERVFAIL else 1



def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        q = _Query(argv)
    except _Usage as exc:
        short = USAGE.split("Where:")[0]
        print(f"netkit dns: {exc}\n{short}\nUse \"python -m netkit.clients.dns -h\" for the "
              "complete list of options", file=sys.stderr)
        return 1
    if q.help:
        print(USAGE)
        return 0
    try:
        name_to_wire(q.name if q.name.endswith(".") else q.name + ".")  # type: ignore
    except ValueError as exc:
        print(f"netkit dns: {q.name!r} is not a legal name ({exc})", file=sys.stderr)
        return 10
    if q.trace:
        hints = q.root_hints.read_text() if q.root_hints else IANA_ROOT_HINTS
        anchors = None
        if q.trust_anchor is not None:
            anchors = parse_trust_anchors(q.trust_anchor.read_text())
        elif q.root_hints is None:
            anchors = parse_trust_anchors(IANA_ROOT_ANCHORS)
        return asyncio.run(trace(q.name, q.rdtype, hints, q.time,  # type: ignore[arg-type]
                                 anchors))
    if q.server is not None:
        try:
            ipaddress.ip_address(q.server)
        except ValueError:
            print(f"netkit dns: @{q.server}: give the server as an address",
                  file=sys.stderr)
            return 1
        host = q.server
    else:
        host = resolvconf.load(resolvconf.DEFAULT_PATH).nameservers[0]
    port = q.port if q.port is not None else 443 if q.https else 853 if q.tls else 53
    # dig sends the name as given, without the search list
    resolver = Resolver(Address(host, port), timeout=q.time, attempts=q.tries, tcp=q.tcp,
                        recurse=q.recurse, tls=q.tls, https=q.https or False,
                        verify=q.tls_ca or False, tls_hostname=q.tls_hostname,
                        dnssec=q.dnssec, cd=q.cd)
    started = time.perf_counter()
    try:
        answer = asyncio.run(resolver.lookup(q.name, q.rdtype,  # type: ignore[arg-type]
                                             rdclass=q.rdclass))  # type: ignore[arg-type]
    except (ResolveTimeout, ConnectError) as exc:
        print(f";; communications error: {exc}\n;; no servers could be reached",
              file=sys.stderr)
        return 9
    if q.short:
        for r in answer.records:
            print(r.data)
    else:
        print_answer(answer, argv, time.perf_counter() - started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
