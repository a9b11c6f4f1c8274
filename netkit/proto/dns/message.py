"""DNS messages for the resolver's own traffic, by hand: parse answers, build queries and
replies, with no dnslib object on the way (dnslib costs ~55 us to parse an authority's
typical answer and ~25 us to build a query; this does both in a few).

A `Record` keeps its owner name in key form (lower case, dot-terminated, the form
names are compared and cached in) and its RDATA in wire form with every name in it
decompressed, so it can be copied into any other message unchanged. Names inside
RDATA are decompressed for the types RFC 3597 section 4 allows compression in (NS,
CNAME, SOA, PTR, MX) and for DNAME and SRV, whose servers sometimes compress anyway;
other types are opaque bytes.

`parse` raises `FormatError` on anything malformed: truncated sections, compression
loops or forward pointers past the end, labels over 63 bytes, names over 255, RDATA
that runs past its length. dnslib stays for everything shown to people (presentation
format) and for the rare messages this module does not build.
"""

from __future__ import annotations

import functools
import re
import socket
import struct

_HEADER = struct.Struct("!HHHHHH")
_RR_FIXED = struct.Struct("!HHIH")
_QUESTION_FIXED = struct.Struct("!HH")

# types and rcodes as plain ints: dnslib's QTYPE.A is a Python-level attribute lookup
# (Bimap.__getattr__), which the cold path paid a dozen times a query
A, NS, CNAME, SOA, PTR, MX, AAAA, SRV, DNAME, OPT, ANY = 1, 2, 5, 6, 12, 15, 28, 33, 39, 41, 255
NOERROR, FORMERR, SERVFAIL, NXDOMAIN, NOTIMP, REFUSED = 0, 1, 2, 3, 4, 5
#: where each name-bearing type keeps its names: (fixed bytes before the name, names)
_NAMES_IN_RDATA = {NS: (0, 1), CNAME: (0, 1), PTR: (0, 1), DNAME: (0, 1), MX: (2, 1),
                   SRV: (6, 1), SOA: (0, 2)}
PLAIN_LABELS = re.compile(rb"[A-Za-z0-9_*-]+(?:\.[A-Za-z0-9_*-]+)*")


class FormatError(ValueError):
    """A message that cannot be parsed (the resolver drops it, the server says FORMERR)."""


class Record:
    """One resource record: owner in key form, RDATA in uncompressed wire form."""

    __slots__ = ("name", "rclass", "rdata", "rtype", "target", "ttl")

    def __init__(self, name: str, rtype: int, rclass: int, ttl: int, rdata: bytes,
                 target: str = "") -> None:
        self.name = name
        self.rtype = rtype
        self.rclass = rclass
        self.ttl = ttl
        self.rdata = rdata
        self.target = target  # NS, CNAME, PTR, DNAME: the name the record points to

    def with_ttl(self, ttl: int) -> Record:
        return Record(self.name, self.rtype, self.rclass, ttl, self.rdata, self.target)

    @property
    def address(self) -> str:
        """A and AAAA: the address as text."""
        return socket.inet_ntop(socket.AF_INET if self.rtype == A else socket.AF_INET6,
                                self.rdata)

    @property
    def soa_minimum(self) -> int:
        """SOA: the MINIMUM field (RFC 2308: the negative-caching TTL)."""
        return struct.unpack_from("!I", self.rdata, len(self.rdata) - 4)[0]

    def rdata_text(self) -> str:
        """RDATA in presentation format (dnslib renders it: for people, not the hot path)."""
        from dnslib import QTYPE, RD, RDMAP, DNSBuffer

        cls = RDMAP.get(QTYPE.get(self.rtype), RD)
        return cls.parse(DNSBuffer(self.rdata), len(self.rdata)).toZone()

    def to_zone(self) -> str:
        from dnslib import CLASS, QTYPE

        return f"{self.name} {self.ttl} {CLASS.get(self.rclass)} {QTYPE.get(self.rtype)} " \
               f"{self.rdata_text()}"

    def wire(self) -> bytes:
        return name_to_wire(self.name) + _RR_FIXED.pack(self.rtype, self.rclass, self.ttl,
                                                         len(self.rdata)) + self.rdata

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Record) and (self.name, self.rtype, self.rclass, self.ttl,
                                              self.rdata) == (other.name, other.rtype,
                                                              other.rclass, other.ttl,
                                                              other.rdata)

    def __repr__(self) -> str:
        return f"Record({self.to_zone()!r})"


class Message:
    """A parsed message. The authority and additional sections are parsed when first
    looked at (`parse` has checked that they are there): an answer that settles the
    question never needs them."""

    __slots__ = ("_additional", "_authority", "_data", "_edns_size", "_rest", "answer",
                 "flags", "id", "qclass", "qname", "qtype", "question")

    def __init__(self, ident: int, flags: int, qname: str, qtype: int, qclass: int,
                 question: bytes) -> None:
        self.id = ident
        self.flags = flags
        self.qname = qname  # key form
        self.qtype = qtype
        self.qclass = qclass
        self.question = question  # as sent (letter case kept: 0x20 checks it)
        self.answer: list[Record] = []
        self._authority: list[Record] | None = None
        self._additional: list[Record] = []  # OPT not included
        self._edns_size = 0
        self._data = b""
        self._rest = (0, 0, 0)  # offset of the authority section, and the two counts

    @property
    def authority(self) -> list[Record]:
        if self._authority is None:
            self._parse_rest()
        assert self._authority is not None
        return self._authority

    @property
    def additional(self) -> list[Record]:
        if self._authority is None:
            self._parse_rest()
        return self._additional

    @property
    def edns_size(self) -> int:
        """The OPT record's UDP size; 0 when there was none."""
        if self._authority is None:
            self._parse_rest()
        return self._edns_size

    def _parse_rest(self) -> None:
        i, ns, ar = self._rest
        authority: list[Record] = []
        for _ in range(ns):
            i = _read_record(self._data, i, authority, self)
        for _ in range(ar):
            i = _read_record(self._data, i, self._additional, self)
        self._authority = authority
        self._data = b""

    @property
    def rcode(self) -> int:
        return self.flags & 0x000F

    @property
    def aa(self) -> bool:
        return bool(self.flags & 0x0400)

    @property
    def tc(self) -> bool:
        return bool(self.flags & 0x0200)


# --- names ---------------------------------------------------------------------------------

def read_name(data: bytes, i: int) -> tuple[str, int]:
    """The name at offset i in key form, and the offset just after it where it is written
    (after its first compression pointer, if any)."""
    labels: list[bytes] = []
    after = -1
    hops = 0
    size = 0
    end = len(data)
    while True:
        if i >= end:
            raise FormatError("name runs past the end of the message")
        n = data[i]
        if n == 0:
            i += 1
            break
        if n >= 0xC0:
            if i + 1 >= end:
                raise FormatError("truncated compression pointer")
            if after < 0:
                after = i + 2
            hops += 1
            if hops > 127:
                raise FormatError("compression pointer loop")
            i = ((n & 0x3F) << 8) | data[i + 1]
            continue
        if n > 63:
            raise FormatError(f"label type {n >> 6} is not supported")
        size += n + 1
        if size > 254 or i + 1 + n > end:
            raise FormatError("name longer than 255 bytes or past the end")
        labels.append(data[i + 1:i + 1 + n])
        i += 1 + n
    if not labels:
        return ".", (after if after >= 0 else i)
    joined = b".".join(labels)
    if PLAIN_LABELS.fullmatch(joined):
        name = joined.decode("ascii").lower() + "."
    else:
        name = ".".join(escape_label(label) for label in labels).lower() + "."
    return name, (after if after >= 0 else i)


def escape_label(label: bytes) -> str:
    # RFC 1035 5.1 presentation: \. and \\ for those two, \DDD for the unprintable
    out = []
    for b in label:
        if b in b".\\\"();@$ ":
            out.append("\\" + chr(b))
        elif 0x21 <= b <= 0x7E:
            out.append(chr(b))
        else:
            out.append(f"\\{b:03d}")
    return "".join(out)


@functools.lru_cache(maxsize=65536)
def name_to_wire(name: str) -> bytes:
    """Key-form (or any dotted) name -> uncompressed wire form; escapes understood."""
    if name in (".", ""):
        return b"\x00"
    text = name[:-1] if name.endswith(".") and not name.endswith("\\.") else name
    if "\\" not in text:
        labels = [label.encode("ascii") for label in text.split(".")]
    else:
        labels = _unescape_labels(text)
    out = bytearray()
    for label in labels:
        if not 0 < len(label) <= 63:
            raise FormatError(f"bad label in {name!r}")
        out.append(len(label))
        out += label
    out.append(0)
    if len(out) > 255:
        raise FormatError(f"name too long: {name[:40]!r}")
    return bytes(out)


def _unescape_labels(text: str) -> list[bytes]:
    labels, current, i = [], bytearray(), 0
    while i < len(text):
        c = text[i]
        if c == "\\":
            if text[i + 1:i + 4].isdigit() and len(text[i + 1:i + 4]) == 3:
                current.append(int(text[i + 1:i + 4]))
                i += 4
                continue
            current += text[i + 1].encode()
            i += 2
            continue
        if c == ".":
            labels.append(bytes(current))
            current = bytearray()
        else:
            current += c.encode()
        i += 1
    labels.append(bytes(current))
    return labels


# --- parsing -------------------------------------------------------------------------------

def parse(data: bytes) -> Message:
    """A whole message with exactly one question (what every answer to us has). The
    authority and additional sections are walked here (so a malformed message fails
    now, not later) but turned into records only when asked for."""
    try:
        ident, flags, qd, an, ns, ar = _HEADER.unpack_from(data)
    except struct.error:
        raise FormatError("shorter than a DNS header") from None
    if qd != 1:
        raise FormatError(f"{qd} questions")
    qname, i = read_name(data, 12)
    if i + 4 > len(data):
        raise FormatError("truncated question")
    qtype, qclass = _QUESTION_FIXED.unpack_from(data, i)
    msg = Message(ident, flags, qname, qtype, qclass, data[12:i + 4])
    i += 4
    # answers nearly always name their owner by a bare pointer to the question's name
    pointer = b"\xc0\x0c"
    for _ in range(an):
        if data[i:i + 2] == pointer:
            i = _read_record(data, i, msg.answer, msg, qname)
        else:
            i = _read_record(data, i, msg.answer, msg)
    msg._data, msg._rest = data, (i, ns, ar)
    for _ in range(ns + ar):
        i = _skip_record(data, i)
    if i != len(data):
        raise FormatError("bytes after the last record")
    return msg


def skip_name(data: bytes, i: int) -> int:
    """The offset after the name written at i (its labels, up to a root or a pointer)."""
    end = len(data)
    while True:
        if i >= end:
            raise FormatError("name runs past the end of the message")
        n = data[i]
        if n == 0:
            return i + 1
        if n >= 0xC0:
            return i + 2
        if n > 63:
            raise FormatError(f"label type {n >> 6} is not supported")
        i += 1 + n


def _skip_record(data: bytes, i: int) -> int:
    """The offset after the record at i, checking only its framing (names inside RDATA
    are checked when the record is parsed)."""
    i = skip_name(data, i)
    if i + 10 > len(data):
        raise FormatError("truncated record")
    i += 10 + int.from_bytes(data[i + 8:i + 10], "big")
    if i > len(data):
        raise FormatError("RDATA runs past the end")
    return i


def _read_record(data: bytes, i: int, section: list[Record], msg: Message,
                 owner: str = "") -> int:
    if owner:  # the caller saw a pointer to a name it already has
        name, i = owner, i + 2
    else:
        name, i = read_name(data, i)
    if i + 10 > len(data):
        raise FormatError("truncated record")
    rtype, rclass, ttl, length = _RR_FIXED.unpack_from(data, i)
    i += 10
    end = i + length
    if end > len(data):
        raise FormatError("RDATA runs past the end")
    if rtype == OPT:
        msg._edns_size = rclass
        return end
    if ttl > 0x7FFFFFFF:
        ttl = 0  # RFC 2181 8: a TTL with the top bit set is zero
    layout = _NAMES_IN_RDATA.get(rtype)
    if layout is None:
        if (rtype == A and length != 4) or (rtype == AAAA and length != 16):
            raise FormatError("an address record of the wrong size")
        section.append(Record(name, rtype, rclass, ttl, data[i:end]))
        return end
    fixed, count = layout
    j = i + fixed
    rdata = bytearray(data[i:j])
    target = ""
    for _ in range(count):
        target, j = read_name(data, j)
        if j > end:
            raise FormatError("a name runs past its RDATA")
        rdata += name_to_wire(target)
    rdata += data[j:end]  # SOA's five numbers; nothing for the others
    if rtype == SOA and end - j != 20:
        raise FormatError("SOA RDATA of the wrong size")
    section.append(Record(name, rtype, rclass, ttl, bytes(rdata),
                          target if count == 1 else ""))
    return end


# --- building ------------------------------------------------------------------------------

def encode_query(ident: int, name: str, qtype: int, *, rd: bool = False,
                 edns_size: int = 1232, dnssec_ok: bool = False) -> bytes:
    """A query with one question (the name's letter case kept) and an OPT record (the DO
    bit set with `dnssec_ok`: signatures wanted, RFC 3225)."""
    header = _HEADER.pack(ident, 0x0100 if rd else 0, 1, 0, 0, 1 if edns_size else 0)
    opt = b"\x00" + _RR_FIXED.pack(OPT, edns_size, 0x8000 if dnssec_ok else 0, 0) \
        if edns_size else b""
    return header + name_to_wire(name) + _QUESTION_FIXED.pack(qtype, 1) + opt


def question_of(query: bytes) -> bytes:
    """The question section of a query built here (for matching the answer's)."""
    _, i = read_name(query, 12)
    return query[12:i + 4]


def encode_reply(ident: int, flags: int, question: bytes, rcode: int,
                 answer: list[Record], authority: list[Record], *, edns: bool = False,
                 ede: tuple[int, str] | None = None, max_size: int = 65535,
                 ttls: list[tuple[int, int]] | None = None, ad: bool = False) -> bytes:
    """A reply: `flags` are the query's (RD and CD are kept), QR and RA set; an OPT when
    the query had one (`edns`), carrying the Extended DNS Error if any. Over
    `max_size` the sections are dropped and TC set (the client retries over TCP).
    `ttls`, when given, receives (offset after the question, TTL) for each record: what
    the answer cache patches on a hit. `ad`: the answer is DNSSEC-validated and the
    client asked to know."""
    flags = 0x8080 | (flags & 0x0110) | (rcode & 0x0F) | (0x0020 if ad else 0)
    opt = b""
    if edns:
        options = b""
        if ede is not None:
            text = ede[1].encode()[:200]
            options = struct.pack("!HHH", 15, 2 + len(text), int(ede[0])) + text
        opt = b"\x00" + _RR_FIXED.pack(OPT, 1232, 0, len(options)) + options
    parts = [_HEADER.pack(ident, flags, 1, len(answer), len(authority), 1 if opt else 0),
             question]
    at = 0  # after the question
    for rr in answer + authority:
        owner = name_to_wire(rr.name)
        if ttls is not None:
            ttls.append((at + len(owner) + 4, rr.ttl))
        parts += (owner, _RR_FIXED.pack(rr.rtype, rr.rclass, rr.ttl, len(rr.rdata)),
                  rr.rdata)
        at += len(owner) + 10 + len(rr.rdata)
    parts.append(opt)
    out = b"".join(parts)
    if len(out) > max_size:
        if ttls is not None:
            ttls.clear()
        out = _HEADER.pack(ident, flags | 0x0200, 1, 0, 0, 1 if opt else 0) + question + opt
    return out
