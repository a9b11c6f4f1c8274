"""SMTP replies from a byte stream (RFC 5321 4.2), for a client that pipelines (RFC 2920).

    reader = ReplyReader()
    replies = reader.feed(data)      # every reply completed by these bytes, in order

A reply is one or more lines `CODE-text` ending with `CODE text` (or `CODE` alone); the
three digits must agree across its lines. Lines are capped (MAX_LINE) and so are lines
per reply (MAX_LINES): a server cannot make the client buffer without end. Anything else
is a ReplyError, after which the connection cannot be trusted.
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_LINE = 4096  # RFC 5321 4.5.3.1.5 says 512; servers write longer ones
MAX_LINES = 200


class ReplyError(Exception):
    pass


@dataclass(frozen=True, slots=True)
class Reply:
    code: int
    text: str  # the lines' texts joined with "\n", as aiosmtplib gives them

    @property
    def positive(self) -> bool:
        return 200 <= self.code < 400


class ReplyReader:
    def __init__(self) -> None:
        self._buffer = bytearray()
        self._code = b""
        self._lines: list[str] = []

    def feed(self, data: bytes) -> list[Reply]:
        self._buffer += data
        replies = []
        start = 0
        while True:
            end = self._buffer.find(b"\n", start)
            if end < 0:
                break
            line = bytes(self._buffer[start:end]).rstrip(b"\r")
            start = end + 1
            reply = self._line(line)
            if reply is not None:
                replies.append(reply)
        del self._buffer[:start]
        if len(self._buffer) > MAX_LINE:
            raise ReplyError(f"a reply line longer than {MAX_LINE} bytes")
        return replies

    def _line(self, line: bytes) -> Reply | None:
        if len(line) > MAX_LINE:
            raise ReplyError(f"a reply line longer than {MAX_LINE} bytes")
        code, sep = line[:3], line[3:4]
        if not (len(code) == 3 and code.isdigit() and b"2" <= code[:1] <= b"5") or \
                sep not in (b"", b" ", b"-") or (self._code and code != self._code):
            raise ReplyError(f"not an SMTP reply line: {line[:80]!r}")
        self._code = code
        self._lines.append(line[4:].strip(b" \t").decode("utf-8", "surrogateescape"))
        if len(self._lines) > MAX_LINES:
            raise ReplyError(f"a reply of more than {MAX_LINES} lines")
        if sep == b"-":
            return None
        reply = Reply(int(code), "\n".join(self._lines))
        self._code, self._lines = b"", []
        return reply


def data_block(message: bytes) -> bytes:
    """The message as DATA sends it: every line ending CRLF (a bare LF or CR made one),
    lines starting with "." doubled (RFC 5321 4.5.2), then the "." line."""
    lines = message.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    return b"".join((b"." + line if line[:1] == b"." else line) + b"\r\n"
                    for line in lines) + b".\r\n"
