"""Static files: a request target to a file inside the root (never outside), and its
answer: MIME type, index.html, HEAD, a single byte range (206/416), ETag and
Last-Modified with If-None-Match / If-Modified-Since (304), an optional listing.
Files over CHUNK bytes go out with os.sendfile on plain TCP (the kernel copies from
the page cache); smaller ones leave with their head in one write."""

from __future__ import annotations

import email.utils
import html
import logging
import mimetypes
import os
import stat
import urllib.parse
from pathlib import Path
from typing import Any

from netkit.proto.http import codec as h

log = logging.getLogger("netkit.http")

CHUNK = 256 * 1024  # file bytes read and written at a time


def resolve(root: Path, target: bytes, *, hidden: bool = False) -> Path | None:
    """The file a request target names inside the root, or None (never outside; no
    dotfile or dot-directory unless `hidden`)."""
    path = h.origin_form(target).split(b"?", 1)[0].split(b"#", 1)[0]
    raw = urllib.parse.unquote_to_bytes(path)
    if not raw.startswith(b"/") or b"\x00" in raw or b"\\" in raw:
        return None
    parts = [p for p in raw.split(b"/") if p not in (b"", b".")]
    if any(p == b".." or (not hidden and p[:1] == b".") for p in parts):
        return None
    try:
        candidate = root.joinpath(*(p.decode() for p in parts))
    except UnicodeDecodeError:
        return None
    real = Path(os.path.realpath(candidate))
    if real != root and root not in real.parents:
        return None  # a symlink that leads out of the root
    return real


def respond(owner: Any, request: h.Request) -> None:
    """The static answer to one request (the connection `owner` sends it)."""
    if request.method not in (b"GET", b"HEAD"):
        owner.error(405, extra=[(b"Allow", b"GET, HEAD")])
        return
    service = owner.service
    if service.root is None:  # nothing configured: a page that says so, never the cwd
        if h.origin_form(request.target).split(b"?", 1)[0] == b"/":
            owner.conn.write(owner.http.respond(
                200, [(b"Content-Type", b"text/html; charset=utf-8")], NO_ROOT_PAGE,
                trusted=True))
            owner.done(request, 200, len(NO_ROOT_PAGE))
        else:
            owner.error(404)
        return
    opened = _open(owner, request)
    if opened is None:
        return  # answered on the way (404, a redirect, a listing)
    f, st, path = opened
    etag = b'"%x-%x"' % (st.st_size, st.st_mtime_ns)
    last_modified = email.utils.formatdate(st.st_mtime, usegmt=True).encode()
    ctype = (mimetypes.guess_type(path.name)[0] or "application/octet-stream").encode()
    if ctype.startswith(b"text/"):
        ctype += b"; charset=utf-8"
    common = [(b"ETag", etag), (b"Last-Modified", last_modified),
              (b"Accept-Ranges", b"bytes")]
    http = owner.http
    if _not_modified(request.headers, etag, st.st_mtime):
        f.close()
        owner.conn.write(http.respond(304, common, trusted=True))
        owner.done(request, 304, 0)
        return
    start, end, status = 0, st.st_size, 200
    fields = [(b"Content-Type", ctype), *common]
    range_value = request.headers.get(b"range")
    if range_value is not None and _if_range_ok(request.headers, etag, last_modified):
        span = _byte_range(range_value, st.st_size)
        if span == "unsatisfiable":
            f.close()
            owner.error(416, extra=[(b"Content-Range", b"bytes */%d" % st.st_size)])
            return
        if span is not None:
            start, end = span
            status = 206
            fields.append((b"Content-Range", b"bytes %d-%d/%d" % (start, end - 1,
                                                                   st.st_size)))
    if request.method != b"HEAD" and end - start <= CHUNK:
        # small: head and body in one write, one syscall
        f.seek(start)
        body = f.read(end - start)
        f.close()
        owner.conn.write(http.respond(status, fields, body, trusted=True))
        owner.done(request, status, len(body))
        return
    owner.conn.write(http.start_response(status, fields, length=end - start, trusted=True))
    if request.method == b"HEAD" or start == end:
        f.close()
        owner.conn.write(http.end_response())
        owner.done(request, status, 0)
        return
    owner.sending = FileSender(owner, f, start, end, request, status)
    owner.sending.pump()


NO_ROOT_PAGE = (b"<!doctype html><title>netkit</title><h1>netkit HTTP server</h1>\n"
                b"<p>No <code>http.root</code> is configured, so no files are served. "
                b"Set one: <code>--set http.root=/srv/www</code>.</p>\n")


def _open(owner: Any, request: h.Request) -> tuple[Any, os.stat_result, Path] | None:
    """The regular file a request names, opened: (file, its stat, its path); None when
    the request was answered on the way. A directory redirects, lists or serves its
    index; anything but a regular file (a FIFO, a device, a socket) is not found, and
    files are opened without blocking, so a FIFO cannot hang the server."""
    service = owner.service
    config = service.config
    path = resolve(service.root, request.target, hidden=config.hidden_files)
    try:
        if path is not None and path.is_dir():
            raw_path = h.origin_form(request.target).split(b"?", 1)[0]
            if not raw_path.endswith(b"/"):
                # never a scheme-relative Location: //host/ would name another host
                owner.error(301, extra=[(b"Location", b"/" + raw_path.lstrip(b"/") + b"/")])
                return None
            index = path / config.index
            if index.is_file():
                path = index
            elif config.listing:
                listing(owner, request, path)
                return None
            else:
                path = None
        if path is not None:
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            st = os.fstat(fd)
            if stat.S_ISREG(st.st_mode):
                return os.fdopen(fd, "rb"), st, path
            os.close(fd)
    except OSError:  # a name too long (ENAMETOOLONG), a loop of links, no permission
        pass
    owner.error(404)
    return None


def listing(owner: Any, request: h.Request, path: Path) -> None:
    """An HTML list of a directory's entries (http.listing)."""
    hidden = owner.service.config.hidden_files
    names = sorted(p.name + ("/" if p.is_dir() else "") for p in path.iterdir()
                   if hidden or not p.name.startswith("."))
    rows = "".join(f'<li><a href="{urllib.parse.quote(n)}">{html.escape(n)}</a></li>\n'
                   for n in names)
    title = html.escape(urllib.parse.unquote(request.target.decode("latin-1")))
    body = (f"<!doctype html><title>{title}</title><h1>{title}</h1><ul>\n{rows}</ul>\n"
            ).encode()
    owner.conn.write(owner.http.respond(200, [(b"Content-Type", b"text/html; charset=utf-8")],
                                      body, trusted=True))
    owner.done(request, 200, len(body))


class FileSender:
    """Writes a file range (over CHUNK bytes: smaller ones go out with their head in one
    write) while the socket keeps up: with os.sendfile on plain TCP (the kernel copies
    from the page cache to the socket), else in CHUNK reads and writes (TLS)."""

    def __init__(self, conn: Any, f: Any, start: int, end: int,
                 request: h.Request, status: int) -> None:
        self.owner, self.f, self.pos, self.end = conn, f, start, end
        self.request, self.status = request, status
        self.short = False  # the file ended before `end`: the connection must close
        self.sent = 0
        self.paused = False
        self.done = False
        self.watch_fd = -1  # a dup of the socket, watched for writability during sendfile
        self.zero_copy = hasattr(os, "sendfile")
        if not self.zero_copy:
            f.seek(start)

    def pump(self) -> None:
        if self.zero_copy:
            fd = self.owner.conn.raw_fd()
            if fd is not None or self.watch_fd >= 0:
                self._sendfile(fd)
                return
            self.zero_copy = False  # TLS, or the head is still queued: copy instead
            self.f.seek(self.pos)
        conn = self.owner.conn
        while not self.paused and not self.done:
            chunk = self.f.read(min(CHUNK, self.end - self.pos))
            if not chunk:  # the file shrank under us: the client sees a short body
                self._short()
            else:
                self.pos += len(chunk)
                self.sent += len(chunk)
                conn.write(chunk)  # may call pause_writing, which stops this loop
            if not chunk or self.pos >= self.end:
                self._finish()

    def _sendfile(self, fd: int | None) -> None:
        conn = self.owner.conn
        if fd is None:
            fd = conn.raw_fd()
            if fd is None:  # closed meanwhile
                self.abandon()
                return
        while not self.done:
            try:
                n = os.sendfile(fd, self.f.fileno(), self.pos, self.end - self.pos)
            except BlockingIOError:
                self._wait_writable(fd)
                return
            except OSError as exc:  # the client went away (EPIPE, ECONNRESET)
                log.debug("http: %s: sendfile: %s", peer(conn), exc)
                self.abandon()
                conn.abort()
                return
            self.pos += n
            self.sent += n
            conn.sent_around(n)
            if n == 0:
                self._short()
            if n == 0 or self.pos >= self.end:
                self._finish()

    def _wait_writable(self, fd: int) -> None:
        # the transport owns the socket's own descriptor in the loop; a duplicate can be
        # watched beside it (epoll keys on the descriptor), and is closed at the end
        if self.watch_fd < 0:
            self.watch_fd = os.dup(fd)
            self.owner.conn.loop.add_writer(self.watch_fd, self._writable)

    def _writable(self) -> None:
        if not self.done:
            self._sendfile(None)

    def _unwatch(self) -> None:
        if self.watch_fd >= 0:
            self.owner.conn.loop.remove_writer(self.watch_fd)
            os.close(self.watch_fd)
            self.watch_fd = -1

    def _short(self) -> None:
        self.short = True

    def _finish(self) -> None:
        self.done = True
        self._unwatch()
        self.f.close()
        self.owner.finished(self)

    def abandon(self) -> None:
        """The connection went away mid-response."""
        if not self.done:
            self.done = True
            self._unwatch()
            self.f.close()


def peer(conn: Any) -> str:
    host, port = conn.peer
    return f"{host}:{port}"


def _not_modified(headers: h.Headers, etag: bytes, mtime: float) -> bool:
    """RFC 9110 13.1.2 and 13.1.3 (If-None-Match wins over If-Modified-Since)."""
    inm = headers.get(b"if-none-match")
    if inm is not None:
        tags = [t.strip() for t in inm.split(b",")]
        return b"*" in tags or etag in tags or b"W/" + etag in tags
    ims = headers.get(b"if-modified-since")
    if ims is not None:
        try:
            since = email.utils.parsedate_to_datetime(ims.decode("latin-1")).timestamp()
        except (TypeError, ValueError):
            return False
        return int(mtime) <= since
    return False


def _if_range_ok(headers: h.Headers, etag: bytes, last_modified: bytes) -> bool:
    value = headers.get(b"if-range")
    return value is None or value.strip() in (etag, last_modified)


def _position(digits: bytes) -> int:
    # a byte position past any file stays past it without int() on thousands of digits
    # (which raises past Python's digit limit)
    return int(digits) if len(digits) <= 18 else 1 << 62


def _byte_range(value: bytes, size: int) -> tuple[int, int] | str | None:
    """One range of RFC 9110 14.1.2 as [start, end); "unsatisfiable"; None to ignore it."""
    unit, _, spec = value.partition(b"=")
    if unit.strip().lower() != b"bytes" or b"," in spec:
        return None  # other units, and several ranges: answered with the whole file
    first, dash, last = spec.strip().partition(b"-")
    if not dash or not (first.isdigit() or (not first and last.isdigit())):
        return None
    if last and not last.isdigit():
        return None
    if not first:  # a suffix: the last N bytes
        n = _position(last)
        if n == 0:
            return "unsatisfiable"
        return max(0, size - n), size
    start = _position(first)
    end = min(size, _position(last) + 1) if last else size
    if start >= size or (last and _position(last) < start):
        return "unsatisfiable"
    return start, end
