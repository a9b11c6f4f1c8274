"""The HTTP/1.1 server: `python -m netkit.servers.http`.

Serves `http.root` (static files: files.py) or, with ``--app module:app``, an ASGI 3
application or a native handler (app.py), on 127.0.0.1:8080, with HTTPS through the
shared ``[http.tls]`` table. Everything HTTP decides (framing, keep-alive, pipelining
order, the head and body deadlines against slowloris, 100-continue) is the engine's
(`proto/http/connection.py`); this driver moves bytes between it and the transport,
arms the engine's deadline on a timer, serves files and calls the application. Every
request gets a line in the combined log format, with the duration.

Speed notes (bench/http_server.py, bench/http_instructions.py): a request that arrives
whole costs no timer and no clock read, a request without a body goes straight to its
response (an ASGI app gets no AppRequest at all), the Date line is remade by a timer
once a second, and a response head and a small body leave in one write.
"""

from __future__ import annotations

import asyncio
import email.utils
import inspect
import logging
import os
import sys
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import anyio.abc

from netkit import running
from netkit.cli import server_main
from netkit.config import Address, Duration, Size, field
from netkit.contract import ServerSpec
from netkit.errors import ConfigError, LocalProtocolError, RemoteProtocolError
from netkit.proto.http import codec as h
from netkit.proto.http.connection import HeadLines, HTTPConnection, Role
from netkit.servers.http import files
from netkit.servers.http.app import AppRequest, asgi_scope, load
from netkit.tlsconf import ListenerContext, ListenerTLS
from netkit.transport.connection import Handler, Limits
from netkit.transport.listeners import SocketPresets, StreamServer, listen_changes

log = logging.getLogger("netkit.http")
access_log = logging.getLogger("netkit.http.access")

SECTION = "http"


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
    """Directory served; none by default: then only a short page saying so (never the
    working directory, which in a clone holds .git/, .venv/ and keys)."""
    hidden_files: bool = False
    """Serve (and list) names that start with a dot."""
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
    app_type: Literal["auto", "asgi", "native"] = "auto"
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
    accept_proxy: bool = False
    """Expect a PROXY v1/v2 header first on every connection (behind the TLS wrapper or a
    load balancer): the client address it names is the one logged and given to apps."""
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


def _codec_limits(config: Config) -> h.Limits:
    # the configured body limit is the one the codec enforces (0: none)
    return h.Limits(max_request_line=config.max_request_line, max_headers=config.max_headers,
                    max_header_bytes=config.max_header_bytes, max_body=config.max_body)


class HTTPService:
    def __init__(self, config: Config, *, app: Any = None) -> None:
        self.config = config
        self.app = app  # an application object given from Python (serve(..., app=))
        self.root = Path(os.path.realpath(config.root)) if config.root else None
        self.codec_limits = _codec_limits(config)
        self.tls = ListenerContext(config.tls, SECTION) if config.tls else None
        self.scheme = "https" if self.tls else "http"
        self.statuses = [0] * 6  # responses by status class (index 1: 1xx ... 5: 5xx)
        self.server = StreamServer("http", lambda: _HTTPConnection(self), limits=config.limits,
                                   tls=self.tls.get if self.tls else None,
                                   accept_proxy=config.accept_proxy)
        self.handler, self.asgi = _load_handler(config, app)
        self.date_server = _DateServerLines(config.server_name)
        self.access_logged = access_log.isEnabledFor(logging.INFO)  # checked per request

    async def start(self, tg: anyio.abc.TaskGroup, presets: SocketPresets) -> None:
        self.worker = bool(presets)  # sockets bound by a --workers parent
        self.tg = tg
        self.date_server.start()
        await self.server.listen(self.config.listen, presets=presets)
        if self.tls is not None:
            tg.start_soon(self.tls.watch_files)
        if self.handler is None:
            log.info("http: serving %s", self.root or "no files (http.root is not set)")

    def reload(self, config: Config) -> None:
        handler, asgi = _load_handler(config, self.app)  # ConfigError before any change
        presets = listen_changes(self.server, self.config.listen, config.listen, SECTION,
                                 self.worker)
        try:
            if (config.tls is None) != (self.tls is None):
                log.warning("http: TLS turned on or off in the config; restart to apply")
            elif self.tls is not None and config.tls is not None:
                self.tls.replace(config.tls)
        except ConfigError:
            for sock in (presets or {}).values():
                sock.close()
            raise
        if presets is not None:
            self.tg.start_soon(self.server.relisten, config.listen, presets)
        self.handler = handler
        self.date_server.rename(config.server_name)
        self.access_logged = access_log.isEnabledFor(logging.INFO)
        self.asgi = asgi
        self.config = config
        self.root = Path(os.path.realpath(config.root)) if config.root else None
        self.server.limits = config.limits
        self.server.accept_proxy = config.accept_proxy
        self.codec_limits = _codec_limits(config)

    def status(self) -> dict[str, Any]:
        return {"listen": [str(a) for a in self.server.addresses], **self.counters()}

    def addresses(self) -> list[Address]:
        return list(self.server.addresses)

    def counters(self) -> dict[str, int]:
        return self.server.counters.snapshot()

    def labelled(self) -> dict[str, tuple[str, dict[str, int]]]:
        """For the admin endpoint: responses by status class
        (netkit_http_responses_total{code="2xx"})."""
        return {"responses": ("code", {f"{i}xx": self.statuses[i] for i in range(1, 6)})}

    @property
    def url(self) -> str:
        """The first listen address as a URL, e.g. ``http://127.0.0.1:8080``."""
        return f"{self.scheme}://{self.server.addresses[0]}"

    async def drain(self, timeout: float) -> None:
        await self.server.drain(timeout)
        self.date_server.stop()



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
        self.sending: files.FileSender | None = None
        self.app_request: AppRequest | None = None
        self.app_task: asyncio.Task[None] | None = None
        self.lost = False  # the connection is gone
        self.gone: asyncio.Event | None = None  # set when it goes (made on first use)
        self.can_write = asyncio.Event()
        self.can_write.set()
        self.body_paused = False  # an app's unread request body is at its cap
        self.write_paused = False  # the client is not reading our responses

    def data_received(self, data: bytes) -> None:
        self.http.receive_data(data)
        self._process()

    def eof_received(self) -> None:
        self.http.receive_eof()
        self._process()

    def _process(self) -> None:
        http = self.http
        # a client that does not read our answers gets no more of them (and we read
        # nothing from it) until it does: pipelining cannot fill memory
        while not self.closing and not self.write_paused:
            try:
                event = http.next_event()
            except RemoteProtocolError as exc:
                status = exc.reply_hint or 400
                log.info("http: %s: %s (%d)", files.peer(self.conn), exc, status)
                self.error(status, close=True)
                return
            cls = event.__class__
            if cls is h.Request:
                service = self.service
                if service.access_logged:  # the duration field
                    self.started = time.monotonic()
                if http.request_complete:  # no body: the common case
                    if service.handler is None:
                        files.respond(self, event)
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
                        self._update_reading()
            elif cls is h.EndOfMessage:
                if self.app_request is not None:
                    self.app_request.finish()
                elif self.app_task is None and http.request is not None:
                    files.respond(self, http.request)
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
            log.info("http: %s: request head not received in %s s", files.peer(self.conn),
                     config.header_timeout)
            self.error(408, close=True)
            return
        log.info("http: %s: request body not received in %s s", files.peer(self.conn),
                 config.body_timeout)
        if self.app_task is None:
            self.error(408, close=True)
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
        self.write_paused = True
        self._update_reading()
        if self.sending is not None:
            self.sending.paused = True

    def resume_writing(self) -> None:
        self.can_write.set()
        self.write_paused = False
        self._update_reading()
        if self.sending is not None:
            self.sending.paused = False
            self.sending.pump()
        elif self.app_task is None and not self.closing and self.http.has_pending:
            self._process()  # pipelined requests waited for the client to read

    def _update_reading(self) -> None:
        """Read from the client only while it reads our answers and an app's body is
        not at its cap: the transport's buffer then bounds what a connection holds."""
        if self.write_paused or self.body_paused:
            self.conn.pause_reading()
        else:
            self.conn.resume_reading()

    def timed_out(self, phase: str) -> None:
        self.conn.close()

    def shutdown_requested(self) -> None:
        # draining: idle keep-alive connections close now; a busy one after its response
        self.http.shutdown()
        if self.http.idle and not self.closing:
            self._end()

    # --- responses ---

    def done(self, request: h.Request | None, status: int, size: int) -> None:
        """A response is out: log it, and close if the engine says the connection ends."""
        self.service.statuses[status // 100 % 6] += 1
        if self.service.access_logged:
            self._log(request, status, size)
        if self.http.must_close:
            self._end()

    def error(self, status: int, *, close: bool = False,
               extra: list[tuple[bytes, bytes]] | None = None) -> None:
        http = self.http
        if http.responding:  # mid-response: nothing more can be said on this connection
            self.conn.abort()
            return
        request = http.request
        data = http.error_response(status, close=close, fields=extra or ())
        self.conn.write(data)
        self.done(request, status, 0 if http.response_no_body else
                   len(b"%d %s\n" % (status, h.REASONS.get(status, b""))))

    # --- applications ---

    def _start_app(self, request: h.Request, bodiless: bool) -> None:
        conn = self.conn
        service = self.service
        max_body = service.config.max_body
        if max_body and not bodiless and self.http.body_length > max_body:
            # known from Content-Length: answered before the app runs (nginx does the same)
            self.error(413, close=True)
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
            self._update_reading()

    def _app_failed(self, request: h.Request, status: int, started: bool) -> None:
        """The application failed or broke the protocol: 500 (or its error status) if
        nothing was sent yet, else the connection is cut (a short body must not look
        whole)."""
        if started:
            self.conn.abort()
        else:
            self.error(status, close=True)
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
            self._update_reading()
        if not self.closing and self.http.has_pending:
            self._process()  # a pipelined request (or EOF) is waiting

    def finished(self, sender: files.FileSender) -> None:
        self.sending = None
        self.conn.write(self.http.end_response())
        if sender.short:
            self._end()  # the file shrank: the client must not take the short body as whole
        self.done(sender.request, sender.status, sender.sent)
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
            self.owner.error(self.status, close=True)
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


def _load_handler(config: Config, app: Any = None) -> tuple[Any, bool]:
    """(the application, is it ASGI); (None, False) when none is configured. `app` is an
    object given from Python, which `http.app` cannot be beside. With app_type "auto"
    the calling convention is read from the signature: ASGI 3 takes (scope, receive,
    send), a native handler (request)."""
    if app is not None:
        if config.app:
            raise ConfigError(["http.app: an application was also given from Python; "
                               "one or the other"])
        obj = app
    elif not config.app:
        return None, False
    else:
        try:
            obj = load(config.app)
        except Exception as exc:  # any error in the app's module (SyntaxError too)
            raise ConfigError([f"http.app: cannot load {config.app!r}: "
                               f"{type(exc).__name__}: {exc}"]) from None
    if config.app_type != "auto":
        return obj, config.app_type == "asgi"
    arity = _positional_arity(obj)
    if arity == 3:
        return obj, True
    if arity == 1:
        return obj, False
    raise ConfigError([f"http.app: {config.app or obj!r} is neither an ASGI 3 application "
                       f"(scope, receive, send) nor a native handler (request); "
                       f"set http.app_type = \"asgi\" or \"native\" if it is one"])


def _positional_arity(obj: Any) -> int | None:
    """How many positional arguments `obj` takes when called (None: not callable)."""
    if not callable(obj):
        return None
    try:
        params = inspect.signature(obj).parameters.values()
    except (TypeError, ValueError):
        return None
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    if any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in params):
        return 3  # *args: an ASGI wrapper, most likely (middleware stacks are)
    return sum(1 for p in params if p.kind in kinds and p.default is inspect.Parameter.empty)


def add_arguments(parser: Any) -> None:
    parser.add_argument("--app", metavar="MODULE:ATTR",
                        help="serve this application: ASGI 3 or a native handler, told apart "
                             "by its signature (http.app_type to say which)")


def apply_arguments(doc: dict[str, Any], args: Any) -> None:
    if args.app:
        doc.setdefault(SECTION, {})["app"] = args.app


def listen_specs(config: Config) -> list[tuple[str, Address]]:
    return [("tcp", a) for a in config.listen]


def create(config: Config | Mapping[str, Any] | str | None = None, *,
           app: Any = None) -> HTTPService:
    """The HTTP server for `config` (a `{"http": {...}}` document, TOML text or `Config`),
    checked as the CLI does; `app` an ASGI 3 application or native handler object (what
    ``--app`` names by import path). Binds nothing."""
    return HTTPService(running.load(SPEC, config), app=app)


def serve(config: Config | Mapping[str, Any] | str | None = None, *,
          app: Any = None) -> AbstractAsyncContextManager[running.Server]:
    """`async with serve(config, app=app) as server:` runs the HTTP server on this event
    loop (on 127.0.0.1, port 0 unless the config says); `server.url` is its URL."""
    return running.serve(SPEC, config, app=app)


def connections_view(service: Any, args: dict[str, Any]) -> list[dict[str, object]]:
    """`netkit ctl connections`: the open connections, oldest first."""
    return service.server.view()


SPEC = ServerSpec(
    name=SECTION, summary="HTTP/1.1 server: static files, ASGI and native applications",
    config=Config, create=create, listen_specs=listen_specs,
    add_arguments=add_arguments, apply_arguments=apply_arguments,
    commands={"connections": connections_view})


def main(argv: list[str] | None = None) -> int:
    return server_main(SECTION, argv)


if __name__ == "__main__":
    sys.exit(main())
