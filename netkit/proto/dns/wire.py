"""The cache-hit fast path: answers in wire form, found and patched without dnslib.

dnslib's parse and pack cost ~110 us a query; a resolver answering from cache
must not pay that. `parse_question` reads the header and the one question by
hand; `AnswerCache` keeps each answer as bytes after the question plus the
offsets of its TTLs, so a hit is: copy the client's header and question, patch
the ID, flags and TTLs (counted down), send. Compression pointers in the stored
bytes point into the question, which the client's copy keeps at the same
offsets (same name, same length, whatever its letter case).
"""

from __future__ import annotations

import struct
from collections import OrderedDict
from dataclasses import dataclass

from netkit.proto.dns.message import PLAIN_LABELS, FormatError, escape_label, skip_name

_HEADER = struct.Struct("!HHHHHH")
#: Prefetch (Unbound: prefetch) an answer hit at least twice once it is in the last
#: tenth of its lifetime, so popular names never expire in front of a client.
PREFETCH_MIN_HITS = 2
PREFETCH_FRACTION = 0.1


def wire_to_name(wire: bytes) -> str:
    """``\\x03www\\x07example\\x03com\\x00`` -> ``www.example.com.``; any octet is legal
    in a label (RFC 2181 11): the unprintable ones, dots and backslashes come out
    escaped (``\\255``, ``\\.``), so the name goes back to the same wire form."""
    labels, i = [], 0
    while i < len(wire) and wire[i]:
        labels.append(wire[i + 1:i + 1 + wire[i]])
        i += 1 + wire[i]
    joined = b".".join(labels)
    if PLAIN_LABELS.fullmatch(joined):
        return joined.decode("ascii") + "."
    return ".".join(escape_label(label) for label in labels) + "."


def parse_question(data: bytes) -> tuple[bytes, int, int, int] | None:
    """(lower-case qname in wire form, qtype, end of question, EDNS: 0 no OPT, 1 an OPT,
    2 an OPT with the DO bit, whose answers carry DNSSEC records) for a plain query
    (QR=0, opcode QUERY, one question, class IN, no answer/authority, at most an OPT);
    None for anything else, which then takes the slow path."""
    if len(data) < 17:
        return None
    _, flags, qd, an, ns, ar = _HEADER.unpack_from(data)
    if flags & 0xF800 or qd != 1 or an or ns or ar > 1:
        return None  # a response, another opcode, or more sections than a plain query has
    i = 12
    end = len(data)
    while True:
        if i >= end:
            return None
        n = data[i]
        if n == 0:
            break
        if n > 63:
            return None  # compression or extended labels in a question: slow path
        i += 1 + n
        if i > 12 + 255:
            return None
    qname = bytes(data[12:i + 1]).lower()
    i += 1
    if i + 4 > end:
        return None
    qtype, qclass = struct.unpack_from("!HH", data, i)
    if qclass != 1:
        return None
    i += 4
    has_opt = 0
    if ar:
        # the one additional record must be an OPT with the root name
        if i + 11 > end or data[i] != 0 or struct.unpack_from("!H", data, i + 1)[0] != 41:
            return None
        if data[i + 6]:
            return None  # an EDNS version we do not speak: the slow path says BADVERS
        has_opt = 2 if data[i + 7] & 0x80 else 1
    return qname, qtype, i, has_opt


def ttl_offsets(message: bytes, question_end: int) -> list[int] | None:
    """Offsets of every TTL in the answer, authority and additional sections, OPT excluded."""
    try:
        _, _, _, an, ns, ar = _HEADER.unpack_from(message)
        i = question_end
        out = []
        for _ in range(an + ns + ar):
            i = skip_name(message, i)  # the owner name
            rtype, _, _, rdlength = struct.unpack_from("!HHIH", message, i)
            if rtype != 41:
                out.append(i + 4)
            i += 10 + rdlength
        return out if i == len(message) else None
    except (FormatError, struct.error):
        return None


def smallest_ttl(message: bytes) -> int:
    """The smallest TTL of the answer and authority sections (a negative answer's is its
    SOA's): how long an HTTP cache may keep the message (RFC 8484 5.1); 0 when there is
    none or the message does not parse."""
    try:
        _, _, qd, an, ns, _ = _HEADER.unpack_from(message)
        i = 12
        for _ in range(qd):
            i = skip_name(message, i) + 4
        smallest = None
        for _ in range(an + ns):
            i = skip_name(message, i)
            ttl, rdlength = struct.unpack_from("!4xIH", message, i)
            smallest = ttl if smallest is None else min(smallest, ttl)
            i += 10 + rdlength
        return smallest or 0
    except (FormatError, struct.error):
        return 0


@dataclass(slots=True)
class WireAnswer:
    expires: float
    stored: float
    flags: int  # the response's flags, RD taken from each query
    counts: bytes  # qd/an/ns/ar counts, 8 bytes
    body: bytes  # everything after the question
    ttls: list[tuple[int, int]]  # (offset in body, TTL when stored)
    hits: int = 0
    prefetching: bool = False
    secure: bool = False  # DNSSEC-validated: AD for clients that set DO or AD


class AnswerCache:
    """Whole answers by (qname, qtype, EDNS or not), LRU-bounded."""

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self.entries: OrderedDict[tuple[bytes, int, int], WireAnswer] = OrderedDict()
        self.hits = 0
        self.due: list[tuple[bytes, int, int]] = []  # popular answers near expiry: refresh

    def store(self, key: tuple[bytes, int, int], message: bytes, question_end: int,
              now: float, ttls: list[tuple[int, int]] | None = None, *,
              secure: bool = False) -> None:
        """Keep `message` (a whole answer) for `key`. `ttls`: (offset after the question,
        TTL) of each record when the caller built the message and knows them; else they
        are read here."""
        if self.max_entries <= 0:
            return
        if ttls is None:
            offsets = ttl_offsets(message, question_end)
            if offsets is None:
                return
            ttls = [(off - question_end, struct.unpack_from("!I", message, off)[0])
                    for off in offsets]
        lifetime = min([t for _, t in ttls], default=0)
        if lifetime <= 0:
            return
        flags = struct.unpack_from("!H", message, 2)[0] & ~0x0130  # RD, AD, CD: per query
        self.entries[key] = WireAnswer(now + lifetime, now, flags, message[4:12],
                                       message[question_end:], ttls, secure=secure)
        self.entries.move_to_end(key)
        while len(self.entries) > self.max_entries:
            self.entries.popitem(last=False)

    def export(self, key: tuple[bytes, int, int], wall: float, now: float
               ) -> tuple[bytes, int] | None:
        """An entry as bytes for a cache shared between resolvers, and the seconds it
        has left; None if it is not here. `wall`: the wall clock (resolvers share it,
        not their monotonic clocks); `now`: this cache's clock."""
        entry = self.entries.get(key)
        if entry is None or entry.expires <= now:
            return None
        stored_wall = wall - (now - entry.stored)
        head = struct.pack("!dH8sH", stored_wall, entry.flags, entry.counts, len(entry.ttls))
        ttls = b"".join(struct.pack("!HI", off, ttl) for off, ttl in entry.ttls)
        return head + ttls + entry.body, int(entry.expires - now)

    def adopt(self, key: tuple[bytes, int, int], blob: bytes, wall: float,
              now: float) -> bool:
        """Take an entry another resolver exported; False when it is malformed or has
        expired meanwhile (a shared cache is data from elsewhere: checked, not trusted
        to be well formed)."""
        try:
            stored_wall, flags, counts, n = struct.unpack_from("!dH8sH", blob)
            at = struct.calcsize("!dH8sH")
            ttls = [struct.unpack_from("!HI", blob, at + 6 * i) for i in range(n)]
        except struct.error:
            return False
        body = blob[at + 6 * n:]
        if any(off + 4 > len(body) for off, _ in ttls) or not ttls:
            return False
        age = max(0.0, wall - stored_wall)
        lifetime = min(t for _, t in ttls)
        if age >= lifetime:
            return False
        stored = now - age
        self.entries[key] = WireAnswer(stored + lifetime, stored, flags, counts, body,
                                       list(ttls))
        self.entries.move_to_end(key)
        while len(self.entries) > self.max_entries:
            self.entries.popitem(last=False)
        return True

    def answer(self, query: bytes, key: tuple[bytes, int, int], question_end: int,
               now: float) -> bytes | None:
        entry = self.entries.get(key)
        if entry is None:
            return None
        if entry.expires <= now:
            del self.entries[key]
            return None
        self.hits += 1
        entry.hits += 1
        if (not entry.prefetching and entry.hits >= PREFETCH_MIN_HITS
                and entry.expires - now < PREFETCH_FRACTION * (entry.expires - entry.stored)):
            entry.prefetching = True
            self.due.append(key)
        body = bytearray(entry.body)
        elapsed = int(now - entry.stored)
        if elapsed:
            for off, ttl in entry.ttls:
                struct.pack_into("!I", body, off, ttl - elapsed)
        asked = struct.unpack_from("!H", query, 2)[0]
        flags = entry.flags | (asked & 0x0110)  # RD and CD echoed
        # AD only for a validated answer, to a client that said it understands it (set
        # AD, or DO in its OPT record: RFC 6840 5.7)
        if entry.secure and (asked & 0x0020 or key[2] == 2):
            flags |= 0x0020
        return query[:2] + struct.pack("!H", flags) + entry.counts + \
            query[12:question_end] + body


# --- matching an answer to its question (anti-spoofing, RFC 5452) ---

def matches(query: bytes, answer: bytes, question_end: int, exact_case: bool = False) -> bool:
    """`answer` answers `query`: same ID, QR set, one question equal to the query's
    (letter case ignored unless `exact_case`, the 0x20 check)."""
    if len(answer) < question_end or answer[:2] != query[:2] or not answer[2] & 0x80 \
            or answer[4:6] != b"\x00\x01":
        return False  # a spoofing attempt, a late reply to an earlier question, garbage
    theirs, ours = answer[12:question_end], query[12:question_end]
    return theirs == ours if exact_case else theirs.lower() == ours.lower()


def question_end(query: bytes) -> int:
    """Offset just after the question of a query with an uncompressed name."""
    i = 12
    while query[i]:
        i += 1 + query[i]
    return i + 5
