"""The SMTP client's pipelined transactions (RFC 2920) against a scripted server: which
recipient got what, refusals at MAIL, RCPT and DATA, the dot-stuffed content, a server
that breaks the protocol or the connection, and one that does not pipeline; several
messages in one session, each content sent with the next message's commands."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from netkit.clients.smtp import DeliveryError, Session

Script = Callable[[str], str]  # a command line -> the reply ("" : no reply, close)


async def _serve(script: Script, pipelining: bool, seen: list[bytes],
                 dots: list[str] | None = None) -> asyncio.Server:
    """With `pipelining`, the replies to MAIL and RCPT are held until DATA has come: a
    client that waits for each reply would wait for ever (and time out). With `dots`,
    the reply to a content's "." waits 0.3 s for the next line, noted there as "carried"
    (the client sent it without waiting for that reply) or "waited"."""
    async def session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 scripted.test ESMTP\r\n")
        in_data, held, early = False, b"", None
        while True:
            line, early = early or await reader.readline(), None
            if not line:
                break
            seen.append(line)
            if in_data:
                if line == b".\r\n":
                    in_data = False
                    reply = script(".").encode() + b"\r\n"
                    if dots is not None:
                        try:
                            early = await asyncio.wait_for(reader.readline(), 0.3)
                            dots.append("carried")
                            held += reply  # goes before the replies to what came with it
                            continue
                        except TimeoutError:
                            dots.append("waited")
                    writer.write(reply)
                continue
            command = line.decode().strip()
            if command.upper().startswith("EHLO"):
                writer.write(b"250-scripted.test\r\n" +
                             (b"250-PIPELINING\r\n" if pipelining else b"") +
                             b"250 8BITMIME\r\n")
                continue
            reply = script(command)
            if not reply:
                writer.close()
                return
            held += reply.encode() + b"\r\n"
            if pipelining and command.split(":")[0] in ("MAIL FROM", "RCPT TO"):
                continue
            writer.write(held)
            held = b""
            in_data = reply.startswith("354")
            if command == "QUIT":
                break
        writer.close()
    return await asyncio.start_server(session, "127.0.0.1", 0)


def _run(script: Script, message: bytes, recipients: list[str], *,
         pipelining: bool = True, loop: str = "asyncio") -> tuple[object, list[bytes], bool]:
    seen: list[bytes] = []

    async def main() -> tuple[object, bool]:
        server = await _serve(script, pipelining, seen)
        port = server.sockets[0].getsockname()[1]
        session = Session("127.0.0.1", port, starttls=False, timeout=5)
        await session.open()
        piped = session.pipe is not None
        try:
            return await session.transaction(message, "a@src.test", recipients), piped
        except DeliveryError as exc:
            return exc, piped
        finally:
            await session.close()
            server.close()
    if loop == "uvloop":  # the servers' loop: its transports are no asyncio.Transport
        import uvloop
        result, piped = uvloop.run(main())
    else:
        result, piped = asyncio.run(main())
    return result, seen, piped


Job = tuple[bytes, list[str]]


def _run_many(script: Script, jobs: list[Job], *, dots: bool = False,
              utf8_server: bool = False) -> tuple[list, DeliveryError | None, list[bytes],
                                                  list[str]]:
    """`jobs` through one session's transactions(): the results given before an error,
    the error, the lines the server read, how each "." was answered (with `dots`)."""
    seen: list[bytes] = []
    notes: list[str] = []
    results: list = []

    async def main() -> DeliveryError | None:
        server = await _serve(script, True, seen, notes if dots else None)
        port = server.sockets[0].getsockname()[1]
        session = Session("127.0.0.1", port, starttls=False, timeout=5)
        await session.open()
        assert session.pipe is not None
        try:
            async for result in session.transactions(
                    [(m, "a@src.test", rcpts) for m, rcpts in jobs]):
                results.append(result)
        except DeliveryError as exc:
            return exc
        finally:
            await session.close()
            server.close()
        return None
    error = asyncio.run(main())
    return results, error, seen, notes


def _usual(command: str) -> str:
    if command.startswith("RCPT") and "nobody" in command:
        return "550 5.1.1 no such user"
    return {"DATA": "354 go on", ".": "250 2.0.0 queued as X1", "QUIT": "221 bye",
            "RSET": "250 ok"}.get(command.split(":")[0].split(" ")[0], "250 ok")


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_pipelined_mail_rcpts_and_data_go_together_each_recipient_gets_its_reply(
        loop: str) -> None:
    result, seen, piped = _run(_usual, b"Subject: x\r\n\r\n.dot\r\n",
                               ["b@dst.test", "nobody@dst.test", "c@dst.test"], loop=loop)
    assert piped
    assert result.accepted == {"b@dst.test": (250, "2.0.0 queued as X1"),
                               "c@dst.test": (250, "2.0.0 queued as X1")}
    assert result.refused == {"nobody@dst.test": (550, "5.1.1 no such user")}
    assert b"..dot\r\n" in seen and seen[-1] == b"QUIT\r\n"


@pytest.mark.parametrize(("refuse", "code"), [("MAIL", 451), ("DATA", 554), (".", 552)])
def test_a_refusal_at_mail_data_or_the_content_refuses_every_recipient(refuse: str,
                                                                         code: int) -> None:
    """... of that message only: the next one in the session goes through."""
    refused: list[str] = []

    def script(command: str) -> str:
        if command.split(":")[0].split(" ")[0] == refuse and not refused:
            refused.append(command)
            return f"{code} no"
        return _usual(command)
    results, error, seen, _ = _run_many(script, [(b"hello\r\n", ["b@dst.test", "c@dst.test"]),
                                                  (b"again\r\n", ["d@dst.test"])])
    assert error is None
    assert results[0].accepted == {}
    assert results[0].refused == {"b@dst.test": (code, "no"), "c@dst.test": (code, "no")}
    assert results[1].accepted == {"d@dst.test": (250, "2.0.0 queued as X1")}
    if refuse == "DATA":  # the transaction MAIL opened is undone before the next
        assert seen.index(b"RSET\r\n") < seen.index(b"RCPT TO:<d@dst.test>\r\n")


def test_nobody_accepted_then_data_gets_a_lone_dot_never_the_content() -> None:
    def script(command: str) -> str:
        return "550 no" if command.startswith("RCPT") else _usual(command)
    result, seen, _ = _run(script, b"secret content\r\n", ["b@dst.test"])
    assert result.refused == {"b@dst.test": (550, "no")} and result.accepted == {}
    assert not any(b"secret" in line for line in seen)


@pytest.mark.parametrize("reply", ["hello there", ""])
def test_a_broken_reply_or_connection_is_a_delivery_error(reply: str) -> None:
    def script(command: str) -> str:
        return reply if command.startswith("RCPT") else _usual(command)
    result, _, _ = _run(script, b"x\r\n", ["b@dst.test"])
    assert isinstance(result, DeliveryError)


def test_a_server_without_pipelining_gets_one_command_at_a_time() -> None:
    result, _, piped = _run(_usual, b"x\r\n", ["b@dst.test", "nobody@dst.test"],
                            pipelining=False)
    assert not piped
    assert result.accepted == {"b@dst.test": (250, "2.0.0 queued as X1")}
    assert result.refused == {"nobody@dst.test": (550, "5.1.1 no such user")}


def test_replies_nobody_asked_for_end_the_session() -> None:
    """A server that answers more than was asked (here: a flood after MAIL) cannot make
    the client keep replies: the transaction fails, nothing is held."""
    def script(command: str) -> str:
        return "\r\n".join(["250 ok"] * 500) if command.startswith("MAIL") else \
            _usual(command)
    result, _, _ = _run(script, b"x\r\n", ["b@dst.test"])
    assert isinstance(result, DeliveryError) and "a reply to no command" in str(result)


def test_several_messages_each_content_goes_with_the_next_messages_commands() -> None:
    """One write and one wait a message: the server answers a "." only once the next
    MAIL has come with it (the last one, with nothing after it, waits)."""
    jobs = [(f"Subject: {i}\r\n\r\nbody {i}\r\n".encode(), [f"r{i}@dst.test"])
            for i in range(3)]
    results, error, seen, dots = _run_many(_usual, jobs, dots=True)
    assert error is None
    assert [r.accepted for r in results] == \
        [{f"r{i}@dst.test": (250, "2.0.0 queued as X1")} for i in range(3)]
    assert dots == ["carried", "carried", "waited"]
    first_dot = seen.index(b".\r\n")
    assert seen[first_dot + 1] == b"MAIL FROM:<a@src.test>\r\n"
    assert seen[-1] == b"QUIT\r\n" and b"RSET\r\n" not in seen


def test_a_message_that_cannot_be_sent_is_refused_alone_the_others_delivered() -> None:
    """A UTF-8 address to a server without SMTPUTF8: refused (553) before a byte of it
    is sent, in its place among the results; the messages around it delivered."""
    jobs = [(b"one\r\n", ["a@dst.test"]), (b"two\r\n", ["\u00e9@dst.test"]),
            (b"three\r\n", ["c@dst.test"])]
    results, error, seen, _ = _run_many(_usual, jobs)
    assert error is None
    assert results[0].accepted and results[2].accepted
    assert results[1].refused == {"\u00e9@dst.test": (553, "5.6.7 the server does not take "
                                                        "SMTPUTF8 addresses")}
    assert not any(b"two" in line or "\u00e9".encode() in line for line in seen)


def test_a_connection_lost_mid_batch_keeps_the_results_already_known() -> None:
    """The server takes the first message, then drops the connection at the second's
    RCPT: the first is reported delivered, then the error for the rest."""
    def script(command: str) -> str:
        return "" if command == "RCPT TO:<b@dst.test>" else _usual(command)
    jobs = [(b"one\r\n", ["a@dst.test"]), (b"two\r\n", ["b@dst.test"]),
            (b"three\r\n", ["c@dst.test"])]
    results, error, _, _ = _run_many(script, jobs)
    assert [r.accepted for r in results] == [{"a@dst.test": (250, "2.0.0 queued as X1")}]
    assert isinstance(error, DeliveryError)
