"""The HTTP/1.1 server: static files (`python -m netkit.servers.http`). First part of issue 4.

Serves `http.root` (default: the directory it was started in) on 127.0.0.1:8080
with keep-alive and pipelining, HEAD, single byte ranges (206/416), ETag and
Last-Modified with If-None-Match / If-Modified-Since (304), MIME types and
index.html, an optional directory listing, and no way out of the root ("..",
its percent-encodings, symlinks pointing outside). Slow clients are cut: the
request head must arrive within `header_timeout` (408), idle keep-alive
connections end after the transport's idle timeout. Every request gets a line
in the combined log format, with the duration.

With ``--app module:app`` it serves an ASGI 3 application (or a native
handler, see `httpapp.py`) instead of files. Files over CHUNK bytes go out with
os.sendfile on plain TCP.

Speed notes (bench/http_server.py): a request that arrives whole costs no timer
(the head/body deadline is a float, its timer re-armed only when it fires early),
a request without a body goes straight to its response (an ASGI app gets no
AppRequest at all), the Date line is remade by a timer once a second, and a
response head and a small body leave in one write. Lines already checked are
remembered (bounded): request and field lines in the parser, an application's
response fields as their rendered lines (_FIELD_LINES), split targets in httpapp.
Hot-path checks use int membership (`13 in value`): `b"\r" in value` costs about
thirty times more.
"""

from __future__ import annotations

import asyncio
import email.utils
import html
import logging
import mimetypes
import os
import sys
import time
import urllib.parse
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import anyio.abc

from netkit.cli import server_main
from netkit.config import Address, Duration, Size, field
from netkit.contract import ServerSpec
from netkit.errors import ConfigError, LocalProtocolError, RemoteProtocolError
from netkit.proto.http import codec as h
from netkit.proto.http.connection import HeadLines, HTTPConnection, Role
from netkit.servers.http.app import AppRequest, asgi_scope, load
from netkit.tlsconf import ListenerContext, ListenerTLS
from netkit.transport.connection import Connection, Handler, Limits
from netkit.transport.listeners import SocketPresets, StreamServer

log = logging.getLogger("netkit.http")
access_log = logging.getLogger("netkit.http.access")

SECTION = "http"
CHUNK = 256 * 1024  # file bytes read and written at a time


#: The combined log format (Apache, nginx) with the duration appended.
COMBINED_WITH_DURATION = \
    '{remote} - - [{time}] "{request}" {status} {size} "{referer}" "{agent}" {duration}'
_LOG_FIELDS = ("remote", "time", "request", "method", "path", "status", "size", "referer",
               "agent", "duration")


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    """The ``[http]`` section."""

    listen: tuple[Address, ...] = (Address("127.0.0.1", 8080),)
    root: Path | None = None
    """Directory served; default: the working directory at start."""
    index: str = "index.html"
    listing: bool = False
    """List directories without an index file."""
    server_name: str = "netkit"
    """The Server header."""
    header_timeout: Duration = field(Duration(10), min=0.01)
    """Seconds for a request's head to arrive once it has begun (slowloris; nginx 60 s)."""
    body_timeout: Duration = field(Duration(60), min=0.01)
    """Seconds for a request body to arrive once its head has (a slow upload: 408)."""
    max_header_bytes: Size = field(Size(65536), min=1024)
    max_headers: int = field(100, min=1)
    max_request_line: Size = field(Size(8192), min=256)
    app: str = ""
    """``module:attribute`` of an application to serve instead of files (``--app``)."""
    app_type: Literal["asgi", "native"] = "asgi"
    """asgi: an ASGI 3 app; native: ``async def handler(AppRequest) -> AppResponse``."""
    max_body: Size = field(Size(1 << 20), min=0)
    """Request bodies an application may read (413 beyond; 0 = no limit)."""
    limits: Limits = Limits(idle_timeout=Duration(75))
    """Connections; idle_timeout is the keep-alive timeout (nginx keepalive_timeout 75 s)."""
    access_log_format: str = COMBINED_WITH_DURATION
    """str.format fields: {remote} {time} {request} {method} {path} {status} {size}
    {referer} {agent} {duration} (seconds)."""
    tls: ListenerTLS | None = None
    """``[http.tls]``: serve HTTPS on every listen address (the shared TLS table)."""
    shutdown_timeout: Duration = Duration(10)

    def __post_init__(self) -> None:
        try:
            self.access_log_format.format(**dict.fromkeys(_LOG_FIELDS, ""))
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"access_log_format: unknown or malformed field {exc}") from None


class _DateServerLines(HeadLines):
    """The Date and Server lines of every response, remade once a second by a timer while
    the server runs: a response only reads `lines` (nginx, too, formats its time once per
    event loop turn, not once per response)."""

    def __init__(self, server_name: str) -> None:
        self.server = b"Server: " + server_name.encode() + b"\r\n"
        self.lines = b""
        self._timer: asyncio.TimerHandle | None = None
        self._remake()

    def rename(self, server_name: str) -> None:
        self.server = b"Server: " + server_name.encode() + b"\r\n"
        self._remake()

    def start(self) -> None:
        self._tick()

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _remake(self) -> float:
        now = time.time()
        self.lines = b"Date: " + email.utils.formatdate(int(now), usegmt=True).encode() + \
            b"\r\n" + self.server
        return now

    def _tick(self) -> None:
        now = self._remake()
        # just after the next whole second (a timer that fires early remakes the same line
        # and comes back a moment later)
        self._timer = asyncio.get_running_loop().call_later(1.001 - now % 1.0, self._tick)


class HTTPService:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.root = Path(os.path.realpath(config.root or Path.cwd()))
        self.codec_limits = h.Limits(max_request_line=config.max_request_line,
                                     max_headers=config.max_headers,
                                     max_header_bytes=config.max_header_bytes)
        self.tls = ListenerContext(config.tls, SECTION) if config.tls else None
        self.scheme = "https" if self.tls else "http"
        self.server = StreamServer("http", lambda: _HTTPConnection(self), limits=config.limits,
                                   tls=self.tls.get if self.tls else None)
        self.handler = _load_handler(config)
        self.date_server = _DateServerLines(config.server_name)
        self.access_logged = access_log.isEnabledFor(logging.INFO)  # checked per request
        self.asgi = config.app_type == "asgi"

    async def start(self, tg: anyio.abc.TaskGroup, presets: SocketPresets) -> None:
        self.date_server.start()
        await self.server.listen(self.config.listen, presets=presets)
        if self.tls is not None:
            tg.start_soon(self.tls.watch_files)
        log.info("http: serving %s", self.root)

    def reload(self, config: Config) -> None:
        handler = _load_handler(config)  # these two raise ConfigError before anything changes
        if (config.tls is None) != (self.tls is None):
            log.warning("http: TLS turned on or off in the config; restart to apply")
        elif self.tls is not None and config.tls is not None:
            self.tls.replace(config.tls)
        self.handler = handler
        self.date_server.rename(config.server_name)
        self.access_logged = access_log.isEnabledFor(logging.INFO)
        self.asgi = config.app_type == "asgi"
        self.config = config
        self.root = Path(os.path.realpath(config.root or Path.cwd()))
        self.server.limits = config.limits

    def status(self) -> dict[str, Any]:
        return {"listen": [str(a) for a in self.server.addresses],
                **self.server.counters.snapshot()}

    async def drain(self, timeout: float) -> None:
        await self.server.drain(timeout)
        self.date_server.stop()

    # --- static files ---

    def resolve(self, target: bytes) -> Path | None:
        """The file a request target names inside the root, or None (never outside)."""
        path = target.split(b"?", 1)[0].split(b"#", 1)[0]
        raw = urllib.parse.unquote_to_bytes(path)
        if not raw.startswith(b"/") or b"\x00" in raw or b"\\" in raw:
            return None
        parts = [p for p in raw.split(b"/") if p not in (b"", b".")]
        if any(p == b".." for p in parts):
            return None
        try:
            candidate = self.root.joinpath(*(p.decode() for p in parts))
        except UnicodeDecodeError:
            return None
        real = Path(os.path.realpath(candidate))
        if real != self.root and self.root not in real.parents:
            return None  # a symlink that leads out of the root
        return real


class _HTTPConnection(Handler):
    """One client connection: the engine (`proto/http/connection.py`) decides framing,
    keep-alive, order and deadlines; this driver moves bytes, serves files and runs the
    application."""

    def __init__(self, service: HTTPService) -> None:
        self.service = service
        config = service.config
        self.http = HTTPConnection(Role.SERVER, service.codec_limits,
                                   head_timeout=config.header_timeout,
                                   body_timeout=config.body_timeout,
                                   head_lines=service.date_server)
        self.closing = False
        # the engine's head/body deadline, on a timer re-armed only when it fires early:
        # a request that arrives whole (nearly all) costs no timer at all
        self.deadline_timer: asyncio.TimerHandle | None = None
        self.started = 0.0
        self.sending: _FileSender | None = None
        self.app_request: AppRequest | None = None
        self.app_task: asyncio.Task[None] | None = None
        self.lost = False  # the connection is gone
        self.gone: asyncio.Event | None = None  # set when it goes (made on first use)
        self.can_write = asyncio.Event()
        self.can_write.set()
        self.body_paused = False

    def data_received(self, data: bytes) -> None:
        self.http.receive_data(data)
        self._process()

    def eof_received(self) -> None:
        self.http.receive_eof()
        self._process()

    def _process(self) -> None:
        http = self.http
        while not self.closing:
            try:
                event = http.next_event()
            except RemoteProtocolError as exc:
                status = exc.reply_hint or 400
                log.info("http: %s: %s (%d)", _peer(self.conn), exc, status)
                self._error(status, close=True)
                return
            cls = event.__class__
            if cls is h.Request:
                service = self.service
                if service.access_logged:  # the duration field
                    self.started = time.monotonic()
                if http.request_complete:  # no body: the common case
                    if service.handler is None:
                        self._respond(event)
                        continue  # answered: a pipelined request may follow
                    self._start_app(event, True)
                    return  # the engine waits for the app's response
                if service.handler is not None:
                    self._start_app(event, False)
            elif cls is h.Data:
                # the static server drops request bodies (so the next pipelined request can
                # be parsed); an application gets them, with backpressure
                if self.app_request is not None:
                    self.app_request.feed(event.data)
                    if self.app_request.buffered >= 8 and not self.body_paused:
                        self.body_paused = True
                        self.conn.pause_reading()
            elif cls is h.EndOfMessage:
                if self.app_request is not None:
                    self.app_request.finish()
                elif self.app_task is None and http.request is not None:
                    self._respond(http.request)
            elif event is h.NEED_DATA:
                if http.deadline_due:  # a head or body began and is not all here
                    self._arm_deadline(http.start_deadline(self.conn.loop.time()))
                return
            elif event is h.PAUSED:  # the response to the current request is not out yet
                return
            else:  # CLOSED
                self._end()
                return

    def _end(self) -> None:
        """No more requests on this connection: close once the queued bytes are out."""
        self.closing = True
        self.conn.close()

    def _arm_deadline(self, deadline: float) -> None:
        timer = self.deadline_timer
        if timer is not None and timer.when() > deadline:
            timer.cancel()
            timer = None
        if timer is None:
            self.deadline_timer = self.conn.loop.call_at(deadline, self._deadline_passed)

    def _deadline_passed(self) -> None:
        self.deadline_timer = None
        if self.closing:
            return
        http = self.http
        phase = http.expired(self.conn.loop.time())
        if phase is None:  # a later deadline than the one this timer was for
            if http.deadline:
                self._arm_deadline(http.deadline)
            return
        config = self.service.config
        if phase == "head":
            log.info("http: %s: request head not received in %s s", _peer(self.conn),
                     config.header_timeout)
            self._error(408, close=True)
            return
        log.info("http: %s: request body not received in %s s", _peer(self.conn),
                 config.body_timeout)
        if self.app_task is None:
            self._error(408, close=True)
        else:  # the application may have answered already: just end the connection
            self.conn.abort()

    def connection_lost(self, exc: BaseException | None) -> None:
        if self.deadline_timer is not None:
            self.deadline_timer.cancel()
            self.deadline_timer = None
        self.can_write.set()
        self.lost = True
        if self.gone is not None:
            self.gone.set()
        if self.app_request is not None:
            self.app_request.disconnect()
        if self.app_task is not None and not self.app_task.done():
            self.app_task.cancel()
        if self.sending is not None:
            self.sending.abandon()

    def pause_writing(self) -> None:
        self.can_write.clear()
        if self.sending is not None:
            self.sending.paused = True

    def resume_writing(self) -> None:
        self.can_write.set()
        if self.sending is not None:
            self.sending.paused = False
            self.sending.pump()

    def timed_out(self, phase: str) -> None:
        self.conn.close()

    def shutdown_requested(self) -> None:
        # draining: idle keep-alive connections close now; a busy one after its response
        self.http.shutdown()
        if self.http.idle and not self.closing:
            self._end()

    # --- responses ---

    def _done(self, request: h.Request | None, status: int, size: int) -> None:
        """A response is out: log it, and close if the engine says the connection ends."""
        if self.service.access_logged:
            self._log(request, status, size)
        if self.http.must_close:
            self._end()

    def _error(self, status: int, *, close: bool = False,
               extra: list[tuple[bytes, bytes]] | None = None) -> None:
        http = self.http
        if http.responding:  # mid-response: nothing more can be said on this connection
            self.conn.abort()
            return
        request = http.request
        data = http.error_response(status, close=close, fields=extra or ())
        self.conn.write(data)
        self._done(request, status, 0 if http.response_no_body else
                   len(b"%d %s\n" % (status, h.REASONS.get(status, b""))))

    def _respond(self, request: h.Request) -> None:
        if request.method not in (b"GET", b"HEAD"):
            self._error(405, extra=[(b"Allow", b"GET, HEAD")])
            return
        service = self.service
        path = service.resolve(request.target)
        if path is None:
            self._error(404)
            return
        if path.is_dir():
            raw_path = request.target.split(b"?", 1)[0]
            if not raw_path.endswith(b"/"):
                self._error(301, extra=[(b"Location", raw_path + b"/")])
                return
            index = path / service.config.index
            if index.is_file():
                path = index
            elif service.config.listing:
                self._listing(request, path)
                return
            else:
                self._error(404)
                return
        try:
            f = open(path, "rb")  # noqa: SIM115 - closed by the sender
            st = os.fstat(f.fileno())
        except OSError:
            self._error(404)
            return
        etag = b'"%x-%x"' % (st.st_size, st.st_mtime_ns)
        last_modified = email.utils.formatdate(st.st_mtime, usegmt=True).encode()
        ctype = (mimetypes.guess_type(path.name)[0] or "application/octet-stream").encode()
        if ctype.startswith(b"text/"):
            ctype += b"; charset=utf-8"
        common = [(b"ETag", etag), (b"Last-Modified", last_modified),
                  (b"Accept-Ranges", b"bytes")]
        http = self.http
        if _not_modified(request.headers, etag, st.st_mtime):
            f.close()
            self.conn.write(http.respond(304, common, trusted=True))
            self._done(request, 304, 0)
            return
        start, end, status = 0, st.st_size, 200
        fields = [(b"Content-Type", ctype), *common]
        range_value = request.headers.get(b"range")
        if range_value is not None and _if_range_ok(request.headers, etag, last_modified):
            span = _byte_range(range_value, st.st_size)
            if span == "unsatisfiable":
                f.close()
                self._error(416, extra=[(b"Content-Range", b"bytes */%d" % st.st_size)])
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
            self.conn.write(http.respond(status, fields, body, trusted=True))
            self._done(request, status, len(body))
            return
        self.conn.write(http.start_response(status, fields, length=end - start, trusted=True))
        if request.method == b"HEAD" or start == end:
            f.close()
            self.conn.write(http.end_response())
            self._done(request, status, 0)
            return
        self.sending = _FileSender(self, f, start, end, request, status)
        self.sending.pump()

    # --- applications ---

    def _start_app(self, request: h.Request, bodiless: bool) -> None:
        conn = self.conn
        service = self.service
        max_body = service.config.max_body
        if max_body and not bodiless and self.http.body_length > max_body:
            # known from Content-Length: answered before the app runs (nginx does the same)
            self._error(413, close=True)
            return
        if service.asgi and bodiless:  # nothing to stream: no AppRequest
            run = _ASGICycle(self, request, None).run(service.handler)
        else:
            app_request = self.app_request = AppRequest(
                request.method, request.target, request.headers, request.version, conn.peer,
                conn.local, on_consumed=self._body_consumed, max_body=max_body,
                send_continue=self._send_continue)
            if bodiless:
                app_request.finish()
            if service.asgi:
                run = _ASGICycle(self, request, app_request).run(service.handler)
            else:
                run = self._run_app(request, app_request)
        self.app_task = conn.loop.create_task(run)

    def client_gone(self) -> asyncio.Event:
        """Set when the connection goes (an ASGI app waiting for http.disconnect)."""
        if self.gone is None:
            self.gone = asyncio.Event()
            if self.lost:
                self.gone.set()
        return self.gone

    def _send_continue(self) -> None:
        data = self.http.send_continue()
        if data:
            self.conn.write(data)

    def _body_consumed(self) -> None:
        if self.body_paused and self.app_request is not None and self.app_request.buffered < 4:
            self.body_paused = False
            self.conn.resume_reading()

    def _app_failed(self, request: h.Request, status: int, started: bool) -> None:
        """The application failed or broke the protocol: 500 (or its error status) if
        nothing was sent yet, else the connection is cut (a short body must not look
        whole)."""
        if started:
            self.conn.abort()
        else:
            self._error(status, close=True)
        self._app_done()

    def _app_finished(self, request: h.Request, status: int, sent: int) -> None:
        if self.service.access_logged:
            self._log(request, status, sent)
        if self.http.must_close:
            self._end()
        self._app_done()

    async def _run_app(self, request: h.Request, app_request: AppRequest) -> None:
        try:
            assert self.service.handler is not None
            response = await self.service.handler(app_request)
        except RemoteProtocolError as exc:
            self._app_failed(request, exc.reply_hint or 400, started=False)
            return
        except Exception:
            log.exception("http: the application failed on %s %s", request.method.decode(),
                          request.target.decode("latin-1"))
            self._app_failed(request, 500, started=False)
            return
        http = self.http
        status, sent, body = response.status, 0, response.body
        whole = isinstance(body, (bytes, bytearray))
        try:
            if whole:
                out = http.respond(status, response.headers, body)
            else:
                out = http.start_response(status, response.headers)
        except LocalProtocolError as exc:
            log.error("http: the application's response to %s is invalid: %s",
                      request.target.decode("latin-1"), exc)
            self._app_failed(request, 500, started=False)
            return
        self.conn.write(out)
        if whole:
            sent = 0 if http.response_no_body else len(body)
        else:
            try:
                async for chunk in body:
                    if http.response_no_body or not chunk:
                        continue
                    self.conn.write(http.send_data(chunk))
                    sent += len(chunk)
                    await self.can_write.wait()  # backpressure: the client reads slowly
                    if self.conn.is_closing():
                        return
            except Exception:
                log.exception("http: the application failed while sending %s",
                              request.target.decode("latin-1"))
                self.conn.abort()  # the head is out: a short body must not look complete
                return
            last = http.end_response()
            if last:
                self.conn.write(last)
        self._app_finished(request, status, sent)

    def _app_done(self) -> None:
        self.app_request = None
        self.app_task = None
        if self.body_paused:
            self.body_paused = False
            self.conn.resume_reading()
        if not self.closing and self.http.has_pending:
            self._process()  # a pipelined request (or EOF) is waiting

    def _listing(self, request: h.Request, path: Path) -> None:
        names = sorted(p.name + ("/" if p.is_dir() else "") for p in path.iterdir())
        rows = "".join(f'<li><a href="{urllib.parse.quote(n)}">{html.escape(n)}</a></li>\n'
                       for n in names)
        title = html.escape(urllib.parse.unquote(request.target.decode("latin-1")))
        body = (f"<!doctype html><title>{title}</title><h1>{title}</h1><ul>\n{rows}</ul>\n"
                ).encode()
        self.conn.write(self.http.respond(200, [(b"Content-Type", b"text/html; charset=utf-8")],
                                          body, trusted=True))
        self._done(request, 200, len(body))

    def finished(self, sender: _FileSender) -> None:
        self.sending = None
        self.conn.write(self.http.end_response())
        if sender.short:
            self._end()  # the file shrank: the client must not take the short body as whole
        self._done(sender.request, sender.status, sender.sent)
        self._process()  # a pipelined request may be waiting

    def _log(self, request: h.Request | None, status: int, size: int) -> None:
        host = self.conn.peer[0] or "-"
        line = "-" if request is None or not request.method else \
            f"{request.method.decode()} {request.target.decode('latin-1')} " \
            f"HTTP/{request.version.decode()}"
        ref = (request.headers.get(b"referer") or b"-").decode("latin-1") if request else "-"
        agent = (request.headers.get(b"user-agent") or b"-").decode("latin-1") \
            if request else "-"
        when = time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime())
        took = time.monotonic() - self.started if request else 0.0
        access_log.info("%s", self.service.config.access_log_format.format(
            remote=host, time=when, request=line, status=status, size=size, referer=ref,
            agent=agent, duration=f"{took:.3f}",
            method=request.method.decode() if request and request.method else "-",
            path=request.target.decode("latin-1") if request and request.method else "-"))


class _ASGICycle:
    """One request through an ASGI 3 application, in the request's own task: `send` writes
    straight to the connection (no queue, no second task), the head coalesced with the
    first body part."""

    __slots__ = ("body", "body_done", "chunks", "cut", "done", "head", "owner", "request",
                 "sent", "started", "status")

    def __init__(self, owner: _HTTPConnection, request: h.Request,
                 app_request: AppRequest | None) -> None:
        self.owner, self.request = owner, request
        self.body = app_request  # None: the request has no body
        self.chunks: AsyncIterator[bytes] | None = None  # the body, once the app reads it
        self.head: bytes | None = None
        self.started = self.done = self.body_done = False
        self.cut = False  # the server answered for the app (413): its sends are dropped
        self.status, self.sent = 500, 0

    async def run(self, app: Any) -> None:
        owner, request = self.owner, self.request
        try:
            conn = owner.conn
            await app(asgi_scope(request, conn.peer, conn.local, owner.service.scheme),
                      self.receive, self.send)
        except Exception:
            where = f"{request.method.decode()} {request.target.decode('latin-1')}"
            if not self.done:
                log.exception("http: the application failed on %s", where)
                owner._app_failed(request, 500, self.started)
                return
            # e.g. Starlette sends its 500 page, then re-raises
            log.exception("http: the application failed on %s (after its response)", where)
        if not self.done:
            log.error("http: the application sent no complete response to %s",
                      request.target.decode("latin-1"))
            owner._app_failed(request, 500, self.started)
            return
        if self.cut:  # the 413 is out and the connection closing
            owner._app_done()
            return
        owner._app_finished(request, self.status, self.sent)

    async def receive(self) -> dict[str, Any]:
        if self.body_done:
            await self.owner.client_gone().wait()
            return {"type": "http.disconnect"}
        if self.chunks is None:
            body = self.body
            if body is None or (body.complete and body.buffered == 1):  # no body
                self.body_done = True
                return {"type": "http.request", "body": b"", "more_body": False}
            self.chunks = body.stream()
        try:
            chunk = await self.chunks.__anext__()
        except StopAsyncIteration:
            self.body_done = True
            return {"type": "http.request", "body": b"", "more_body": False}
        except RemoteProtocolError as exc:  # a body over http.max_body
            if self.started:
                raise
            # answered here, not by the app (which would make it a 500); the app is told
            # the client left, and whatever it sends after that is dropped
            self.started = self.done = self.cut = self.body_done = True
            self.status = exc.reply_hint or 400
            self.owner._error(self.status, close=True)
            return {"type": "http.disconnect"}
        return {"type": "http.request", "body": chunk, "more_body": True}

    async def send(self, message: dict[str, Any]) -> None:
        if self.cut:
            return
        kind = message["type"]
        if kind == "http.response.body":
            if not self.started or self.done:
                raise RuntimeError("http.response.body outside a response")
            data = message.get("body", b"")
            more = message.get("more_body", False)
            owner = self.owner
            http = owner.http
            if data and not http.response_no_body:
                self.sent += len(data)
            out = http.send_body(data, not more)
            if self.head is not None:
                out = self.head + out
                self.head = None
            if not more:
                self.done = True
            if out:
                owner.conn.write(out)
            if more:
                await owner.can_write.wait()  # backpressure: the client reads slowly
        elif kind == "http.response.start":
            if self.started:
                raise RuntimeError("http.response.start sent twice")
            status = message["status"]
            self.head = self.owner.http.start_response(status, message.get("headers", ()))
            self.started, self.status = True, status


class _FileSender:
    """Writes a file range (over CHUNK bytes: smaller ones go out with their head in one
    write) while the socket keeps up: with os.sendfile on plain TCP (the kernel copies
    from the page cache to the socket), else in CHUNK reads and writes (TLS)."""

    def __init__(self, conn: _HTTPConnection, f: Any, start: int, end: int,
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
                log.debug("http: %s: sendfile: %s", _peer(conn), exc)
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


def _peer(conn: Connection) -> str:
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
        n = int(last)
        if n == 0:
            return "unsatisfiable"
        return max(0, size - n), size
    start = int(first)
    end = min(size, int(last) + 1) if last else size
    if start >= size or (last and int(last) < start):
        return "unsatisfiable"
    return start, end


def _load_handler(config: Config) -> Any:
    if not config.app:
        return None
    try:
        obj = load(config.app)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ConfigError([f"http.app: cannot load {config.app!r}: {exc}"]) from None
    return obj


def add_arguments(parser: Any) -> None:
    parser.add_argument("--app", metavar="MODULE:ATTR",
                        help="serve this application (ASGI 3 unless http.app_type = native)")


def apply_arguments(doc: dict[str, Any], args: Any) -> None:
    if args.app:
        doc.setdefault(SECTION, {})["app"] = args.app


def listen_specs(config: Config) -> list[tuple[str, Address]]:
    return [("tcp", a) for a in config.listen]


SPEC = ServerSpec(
    name=SECTION, summary="HTTP/1.1 server: static files, ASGI and native applications",
    config=Config, create=HTTPService, listen_specs=listen_specs,
    add_arguments=add_arguments, apply_arguments=apply_arguments)


def main(argv: list[str] | None = None) -> int:
    return server_main(SECTION, argv)


if __name__ == "__main__":
    sys.exit(main())
