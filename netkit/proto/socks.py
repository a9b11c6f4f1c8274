"""The server side of a SOCKS handshake (RFC 1928 SOCKS5 CONNECT, no authentication;
SOCKS4 and SOCKS4a CONNECT), without sockets: bytes in, the destination or a refusal
out, and the reply bytes to send.

    hs = SocksHandshake()
    out = hs.feed(data)          # bytes to send back now (the method choice)
    if hs.destination: ...       # (host, port): open the tunnel, then send hs.reply(ok)
"""

from __future__ import annotations

import ipaddress
import struct

MAX_HANDSHAKE = 600  # SOCKS5's longest request is 262 bytes; SOCKS4a's user id + name


class SocksError(ValueError):
    """A handshake this server refuses; `reply` is what to send before closing."""

    def __init__(self, message: str, reply: bytes = b"") -> None:
        super().__init__(message)
        self.reply = reply


class SocksHandshake:
    def __init__(self) -> None:
        self.buffer = b""
        self.version = 0
        self.destination: tuple[str, int] | None = None
        self._methods_done = False

    def feed(self, data: bytes) -> bytes:
        """Take bytes; return bytes to send now. Sets `destination` once the request is
        whole; raises SocksError for anything else."""
        self.buffer += data
        if len(self.buffer) > MAX_HANDSHAKE:
            raise SocksError("SOCKS handshake too long")
        buf = self.buffer
        if not buf:
            return b""
        if self.version == 0:
            if buf[0] not in (4, 5):
                raise SocksError(f"not SOCKS (first byte {buf[0]})")
            self.version = buf[0]
        return self._v5(buf) if self.version == 5 else self._v4(buf)

    def _v5(self, buf: bytes) -> bytes:
        out = b""
        if not self._methods_done:
            if len(buf) < 2 or len(buf) < 2 + buf[1]:
                return b""
            methods = buf[2:2 + buf[1]]
            buf = self.buffer = buf[2 + buf[1]:]
            self._methods_done = True
            if 0 not in methods:  # only "no authentication" is offered here
                raise SocksError("no acceptable SOCKS5 method", b"\x05\xff")
            out = b"\x05\x00"
        if len(buf) < 4:
            return out
        ver, cmd, _, atyp = buf[:4]
        if ver != 5:
            raise SocksError("bad SOCKS5 request", self.reply_v5(1))
        if atyp not in (1, 3, 4):
            raise SocksError(f"SOCKS5 address type {atyp} unknown", self.reply_v5(8))
        if len(buf) < 5:
            return out
        if atyp == 1:
            end, host = 8, str(ipaddress.IPv4Address(buf[4:8])) if len(buf) >= 8 else ""
        elif atyp == 4:
            end, host = 20, str(ipaddress.IPv6Address(buf[4:20])) if len(buf) >= 20 else ""
        else:
            end = 5 + buf[4]
            host = buf[5:end].decode("ascii", "replace") if len(buf) >= end else ""
        if len(buf) < end + 2:
            return out
        if cmd != 1:
            raise SocksError(f"SOCKS5 command {cmd} not supported (CONNECT only)",
                             self.reply_v5(7))
        (port,) = struct.unpack("!H", buf[end:end + 2])
        self.buffer = buf[end + 2:]
        self.destination = (host, port)
        return out

    def _v4(self, buf: bytes) -> bytes:
        end = buf.find(b"\x00", 8)
        if len(buf) < 9 or end < 0:
            return b""
        cmd = buf[1]
        (port,) = struct.unpack("!H", buf[2:4])
        ip = buf[4:8]
        host = str(ipaddress.IPv4Address(ip))
        rest = end + 1
        if ip[:3] == b"\x00\x00\x00" and ip[3] != 0:  # SOCKS4a: the name follows the user
            name_end = buf.find(b"\x00", rest)
            if name_end < 0:
                return b""
            host = buf[rest:name_end].decode("ascii", "replace")
            rest = name_end + 1
        if cmd != 1:
            raise SocksError("SOCKS4 BIND is not supported", self.reply_v4(False))
        self.buffer = buf[rest:]
        self.destination = (host, port)
        return b""

    def reply(self, ok: bool, code: int = 5) -> bytes:
        """The answer to the request: success, or `code` (SOCKS5: 5 refused, 4 host
        unreachable, 2 not allowed)."""
        if self.version == 4:
            return self.reply_v4(ok)
        return self.reply_v5(0 if ok else code)

    @staticmethod
    def reply_v5(code: int) -> bytes:
        return bytes([5, code, 0, 1]) + b"\x00\x00\x00\x00\x00\x00"

    @staticmethod
    def reply_v4(ok: bool) -> bytes:
        return bytes([0, 90 if ok else 91]) + b"\x00" * 6
