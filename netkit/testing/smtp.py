"""An SMTP sink for tests: it accepts mail on 127.0.0.1 and keeps every message for
assertions; told to, it refuses recipients (550) or defers them (451).

    with SMTPSink() as sink:                  # or the netkit_smtp fixture
        ... send to 127.0.0.1:{sink.port} ...
        sink.messages[0].recipients, sink.messages[0].content
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass
from typing import Any

from netkit.config import Address
from netkit.transport.listeners import bind_socket


@dataclass
class Received:
    sender: str
    recipients: list[str]
    content: bytes
    peer: str


class SMTPSink:
    def __init__(self, port: int = 0) -> None:
        self.messages: list[Received] = []
        self.sessions = 0  # EHLOs seen: one per session
        self.quits = 0  # sessions the client ended with QUIT
        self.refuse: dict[str, int] = {}  # recipient -> code (550, 451...) for RCPT
        self._port = port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: Any = None
        self._ready = threading.Event()
        self._lock = threading.Lock()
        self._sessions: list[Any] = []

    def start(self) -> SMTPSink:
        self._sock = bind_socket("tcp", Address("127.0.0.1", self._port))
        self.port = self._sock.getsockname()[1]
        self._thread = threading.Thread(target=self._run, name="netkit-smtp-sink",
                                        daemon=True)
        self._thread.start()
        self._ready.wait(10)
        return self

    def _run(self) -> None:
        from aiosmtpd.smtp import SMTP
        loop = self._loop = asyncio.new_event_loop()
        sink = self

        class Handler:
            async def handle_EHLO(self, server, session, envelope, hostname, responses):  # type: ignore[no-untyped-def]
                sink.sessions += 1
                session.host_name = hostname
                return responses

            async def handle_QUIT(self, server, session, envelope):  # type: ignore[no-untyped-def]
                sink.quits += 1
                return "221 Bye"

            async def handle_RCPT(self, server, session, envelope, address, options):  # type: ignore[no-untyped-def]
                code = sink.refuse.get(address.lower())
                if code:
                    return f"{code} {'5.1.1 no such user' if code >= 500 else '4.2.0 later'}"
                envelope.rcpt_tos.append(address)
                return "250 2.1.5 OK"

            async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]
                with sink._lock:
                    sink.messages.append(Received(envelope.mail_from, list(envelope.rcpt_tos),
                                                  envelope.original_content or b"",
                                                  session.peer[0]))
                return "250 2.0.0 kept"

        sessions = self._sessions = []

        def session() -> SMTP:
            smtp = SMTP(Handler(), hostname="sink.test", decode_data=False)
            sessions.append(smtp)
            return smtp

        async def main() -> None:
            self._server = await loop.create_server(session, sock=self._sock)
            self._ready.set()

        loop.run_until_complete(main())
        loop.run_forever()
        self._server.close()
        loop.run_until_complete(self._server.wait_closed())
        # a client still connected when the test ends (a relay that has not sent QUIT
        # yet): its session is ended here, not left for the closed loop to complain of
        for smtp in sessions:
            if smtp.transport is not None:
                smtp.transport.close()
        async def finish() -> None:
            pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            await asyncio.sleep(0)  # the transports' close callbacks
        loop.run_until_complete(finish())
        loop.close()

    def drop_sessions(self) -> None:
        """Close every open session from the server's side (as a server's idle timeout
        would), without a word."""
        def drop() -> None:
            for smtp in self._sessions:
                if smtp.transport is not None:
                    smtp.transport.close()
        if self._loop is not None:
            done = threading.Event()
            self._loop.call_soon_threadsafe(lambda: (drop(), done.set()))
            done.wait(10)

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop = self._thread = None

    def __enter__(self) -> SMTPSink:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
