"""The DHCP message (RFC 2131 section 2): parse and build, with option overload
(RFC 2131 4.1, option 52), long options split and joined (RFC 3396), and the size a
client can take (option 57; 576 bytes of IP datagram otherwise).

    msg = parse(datagram)                  # MalformedPacket when it is not DHCP
    msg.type, msg.options[50], msg.mac
    build(reply, max_size=msg.max_reply_size())
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass, field

from .options import END, PAD

BOOTREQUEST, BOOTREPLY = 1, 2
MAGIC = b"\x63\x82\x53\x63"
HEADER = struct.Struct("!BBBBIHH4s4s4s4s16s64s128s")  # 236 bytes
BROADCAST_FLAG = 0x8000
MIN_SIZE = 576 - 28  # a DHCP message in the 576-byte IP datagram every host takes
ZERO = "0.0.0.0"


class MalformedPacket(ValueError):
    """Not a DHCP message we can read (counted and dropped by the server)."""


@dataclass(slots=True)
class Message:
    op: int = BOOTREQUEST
    htype: int = 1
    hlen: int = 6
    hops: int = 0
    xid: int = 0
    secs: int = 0
    flags: int = 0
    ciaddr: str = ZERO
    yiaddr: str = ZERO
    siaddr: str = ZERO
    giaddr: str = ZERO
    chaddr: bytes = b"\0" * 16
    sname: bytes = b""
    file: bytes = b""
    options: dict[int, bytes] = field(default_factory=dict)
    """Option code -> value bytes, in order (53 first when built)."""

    @property
    def type(self) -> int:
        value = self.options.get(53, b"")
        return value[0] if len(value) == 1 else 0

    @property
    def mac(self) -> str:
        return self.chaddr[:min(self.hlen, 16)].hex(":")

    @property
    def client_key(self) -> str:
        """Who the client is: its client identifier (option 61) if it sent one, else
        its hardware address (RFC 2131 4.2)."""
        cid = self.options.get(61)
        return "id:" + cid.hex() if cid else "mac:" + self.mac

    @property
    def broadcast(self) -> bool:
        return bool(self.flags & BROADCAST_FLAG)

    def ip_option(self, code: int) -> str | None:
        value = self.options.get(code)
        return socket.inet_ntoa(value) if value and len(value) == 4 else None

    def max_reply_size(self) -> int:
        """The DHCP message size the client says it takes (option 57), within reason."""
        value = self.options.get(57, b"")
        if len(value) == 2:
            return max(MIN_SIZE, min(struct.unpack("!H", value)[0] - 28, 1500 - 28))
        return MIN_SIZE


_ip = socket.inet_ntoa  # (ipaddress is 10x slower, and this is per message)


def ip_int(text: str) -> int:
    """A dotted IPv4 address as an int (ValueError if it is not one)."""
    try:
        return int.from_bytes(socket.inet_pton(socket.AF_INET, text), "big")
    except OSError:
        raise ValueError(f"not an IPv4 address: {text!r}") from None


def ip_text(n: int) -> str:
    return socket.inet_ntoa(n.to_bytes(4, "big"))


def _packed(text: str) -> bytes:
    try:
        return socket.inet_pton(socket.AF_INET, text)
    except OSError:
        raise ValueError(f"not an IPv4 address: {text!r}") from None


def _walk(data: bytes, into: dict[int, bytearray]) -> bool:
    """Options of one field into `into` (repeated codes joined, RFC 3396); True if the
    field ended with END. MalformedPacket when an option runs past the field."""
    i, n = 0, len(data)
    while i < n:
        code = data[i]
        if code == PAD:
            i += 1
            continue
        if code == END:
            return True
        if i + 1 >= n:
            raise MalformedPacket("an option without its length")
        length = data[i + 1]
        if i + 2 + length > n:
            raise MalformedPacket(f"option {code} runs past the end ({length} bytes)")
        into.setdefault(code, bytearray()).extend(data[i + 2:i + 2 + length])
        i += 2 + length
    return False


def parse(data: bytes) -> Message:
    """A DHCP message from a UDP payload."""
    if len(data) < HEADER.size + 4:
        raise MalformedPacket(f"{len(data)} bytes: shorter than a DHCP message")
    (op, htype, hlen, hops, xid, secs, flags, ciaddr, yiaddr, siaddr, giaddr, chaddr,
     sname, file) = HEADER.unpack_from(data)
    if op not in (BOOTREQUEST, BOOTREPLY):
        raise MalformedPacket(f"op {op}")
    if data[HEADER.size:HEADER.size + 4] != MAGIC:
        raise MalformedPacket("no DHCP magic cookie (BOOTP?)")
    if hlen > 16:
        raise MalformedPacket(f"hardware address length {hlen}")
    found: dict[int, bytearray] = {}
    _walk(data[HEADER.size + 4:], found)
    overload = bytes(found.pop(52, b""))
    if overload:
        if overload not in (b"\x01", b"\x02", b"\x03"):
            raise MalformedPacket(f"option overload {overload!r}")
        if overload[0] & 1:
            _walk(file, found)
            file = b""
        if overload[0] & 2:
            _walk(sname, found)
            sname = b""
    return Message(op=op, htype=htype, hlen=hlen, hops=hops, xid=xid, secs=secs,
                   flags=flags, ciaddr=_ip(ciaddr), yiaddr=_ip(yiaddr), siaddr=_ip(siaddr),
                   giaddr=_ip(giaddr), chaddr=chaddr, sname=sname.rstrip(b"\0"),
                   file=file.rstrip(b"\0"), options={k: bytes(v) for k, v in found.items()})


def build(msg: Message, max_size: int = MIN_SIZE) -> bytes:
    """The message's bytes in at most `max_size` (>= 300, as BOOTP's minimum): options
    that do not fit the options field go into `file` and then `sname` (overload); an
    option that does not fit whole is left out (ValueError if it is the message type)."""
    max_size = max(max_size, 300)
    room = {"options": max_size - HEADER.size - 4 - 1 - 3,  # END, and option 52's room
            "file": -1 if msg.file else 128 - 1, "sname": -1 if msg.sname else 64 - 1}
    fields: dict[str, list[bytes]] = {"options": [], "file": [], "sname": []}
    used = dict.fromkeys(fields, 0)
    order = ("options", "file", "sname")
    for code, value in msg.options.items():
        if code in (PAD, END, 52):
            continue
        # RFC 3396: an option may be cut into several, anywhere, joined in the order
        # options, file, sname: fill each field's room before the next
        placed: list[tuple[str, bytes]] = []
        trial = dict(used)
        rest, where = value, 0
        while True:
            free = room[order[where]] - trial[order[where]] - 2
            take = min(len(rest), 255, free)
            if free >= 0 and (take > 0 or not rest) and (take == len(rest) or take >= 1):
                piece = bytes([code, take]) + rest[:take]
                placed.append((order[where], piece))
                trial[order[where]] += len(piece)
                rest = rest[take:]
                if not rest:
                    break
                continue
            where += 1
            if where == len(order):
                placed = []
                break
        if not placed:
            if code == 53:
                raise ValueError("the message type does not fit")
            continue
        for name, piece in placed:
            fields[name].append(piece)
        used = trial
    overload = (1 if fields["file"] else 0) | (2 if fields["sname"] else 0)
    opts = b"".join(fields["options"])
    if overload:
        opts += bytes([52, 1, overload])
    file = msg.file if not overload & 1 else b"".join(fields["file"]) + bytes([END])
    sname = msg.sname if not overload & 2 else b"".join(fields["sname"]) + bytes([END])
    head = HEADER.pack(msg.op, msg.htype, msg.hlen, msg.hops, msg.xid, msg.secs, msg.flags,
                       _packed(msg.ciaddr), _packed(msg.yiaddr), _packed(msg.siaddr),
                       _packed(msg.giaddr),
                       msg.chaddr.ljust(16, b"\0")[:16], sname.ljust(64, b"\0")[:64],
                       file.ljust(128, b"\0")[:128])
    out = head + MAGIC + opts + bytes([END])
    if len(out) < 300:  # RFC 1542: some relays drop shorter BOOTP messages
        out += bytes(300 - len(out))
    return out
