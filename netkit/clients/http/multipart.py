"""multipart/form-data bodies (RFC 7578) whose files are read from disk as they are sent.

    files={"report": open("r.pdf", "rb")}                 # name from the file
    files={"report": ("r.pdf", fileobj, "application/pdf")}
    files={"report": Path("r.pdf")}                        # opened when sent, then closed
    files={"note": ("note.txt", b"inline bytes")}

Form fields (`data=`) become text parts before the files. When every file's size is
known (a path, or a seekable file) the body's length is too, and it goes out with
Content-Length, as servers that refuse chunked uploads want; otherwise chunked.
"""

from __future__ import annotations

import mimetypes
import os
import secrets
from collections.abc import AsyncIterator, Iterable, Mapping
from pathlib import Path
from typing import IO, Any

CHUNK = 64 * 1024


def _quote(name: str) -> str:
    # the HTML standard's escaping of names in Content-Disposition
    return name.replace("\\", "\\\\").replace('"', "%22").replace("\r", "%0D") \
        .replace("\n", "%0A")


class _File:
    def __init__(self, field: str, value: Any) -> None:
        filename: str | None = None
        ctype: str | None = None
        if isinstance(value, tuple):
            filename, value, *rest = value
            ctype = rest[0] if rest else None
        if isinstance(value, str | os.PathLike) and not isinstance(value, bytes):
            value = Path(value)
            filename = filename if filename is not None else value.name
        elif filename is None:
            filename = Path(getattr(value, "name", field) or field).name
        self.source: Path | bytes | IO[bytes] = value
        ctype = ctype or mimetypes.guess_type(filename)[0] or "application/octet-stream"
        self.head = (f'Content-Disposition: form-data; name="{_quote(field)}"; '
                     f'filename="{_quote(filename)}"\r\nContent-Type: {ctype}\r\n\r\n'
                     ).encode()

    def size(self) -> int | None:
        src = self.source
        if isinstance(src, bytes):
            return len(src)
        if isinstance(src, Path):
            return src.stat().st_size
        try:
            return os.fstat(src.fileno()).st_size - src.tell()
        except (AttributeError, OSError, ValueError):
            return None  # a pipe or a file-like object: chunked

    async def chunks(self) -> AsyncIterator[bytes]:
        src = self.source
        if isinstance(src, bytes):
            yield src
            return
        # local disk reads of 64 KiB are short enough to make on the event loop
        f = src.open("rb") if isinstance(src, Path) else src
        try:
            while chunk := f.read(CHUNK):
                yield chunk
        finally:
            if isinstance(src, Path):
                f.close()


class Multipart:
    """A multipart/form-data body: `content_type`, `length` (or None) and `stream()`."""

    def __init__(self, data: Mapping[str, Any] | Iterable[tuple[str, Any]] | None,
                 files: Mapping[str, Any] | Iterable[tuple[str, Any]]) -> None:
        self.boundary = secrets.token_hex(16)
        self.content_type = f"multipart/form-data; boundary={self.boundary}"
        fields = data.items() if isinstance(data, Mapping) else (data or [])
        self._text = []
        for name, value in fields:
            for v in value if isinstance(value, list | tuple) else [value]:
                body = v if isinstance(v, bytes) else str(v).encode()
                self._text.append(self._delimiter() + (
                    f'Content-Disposition: form-data; name="{_quote(str(name))}"\r\n\r\n'
                ).encode() + body + b"\r\n")
        pairs = files.items() if isinstance(files, Mapping) else files
        self._files = [_File(str(name), value) for name, value in pairs]
        self._end = f"--{self.boundary}--\r\n".encode()

    def _delimiter(self) -> bytes:
        return f"--{self.boundary}\r\n".encode()

    @property
    def length(self) -> int | None:
        total = sum(map(len, self._text)) + len(self._end)
        for f in self._files:
            size = f.size()
            if size is None:
                return None
            total += len(self._delimiter()) + len(f.head) + size + 2
        return total

    async def stream(self) -> AsyncIterator[bytes]:
        if self._text:
            yield b"".join(self._text)
        for f in self._files:
            yield self._delimiter() + f.head
            async for chunk in f.chunks():
                yield chunk
            yield b"\r\n"
        yield self._end
