"""A DATA section as one block (RFC 5321 4.1.1.4, 4.5.2), for a server that reads it
whole instead of line by line: where it ends, the dots taken off, the lines too long.

The section runs to the first line that is "." alone. It starts at the start of a line,
so that line is either the very first one (an empty message) or follows a CRLF."""

from __future__ import annotations

END = b"\r\n.\r\n"


def find_end(buf: bytes | bytearray, scanned: int = 0,
             at_start: bool = True) -> tuple[int, int] | None:
    """(end of the content, end of the "." line) in `buf`; None when the "." line has
    not come yet. `at_start`: `buf` starts where the section does (not after bytes
    dropped); `scanned`: how far an earlier call looked (a later call with more bytes
    starts a little before it, not from the start)."""
    if at_start and buf[:3] == b".\r\n":
        return 0, 3
    i = buf.find(END, max(0, scanned - len(END) + 1))
    if i < 0:
        return None
    return i + 2, i + len(END)


def unstuff(content: bytes) -> bytes:
    """The content with the "." that starts a line taken off (the sender doubled it)."""
    if content[:1] == b".":
        content = content[1:]
    return content.replace(b"\r\n.", b"\r\n")


def has_long_line(content: bytes, limit: int) -> bool:
    """A line of `content` longer than `limit` octets with its CRLF (RFC 5321 4.5.3.1.6:
    1000)."""
    if len(content) <= limit:
        return False
    return any(len(line) + 2 > limit for line in content.split(b"\r\n"))
