"""The relay's DATA, read as one block (service.py's smtp_DATA and read_data), against
aiosmtpd's own line-by-line DATA: the same bytes, cut at random places, get the same
replies and the same message; the block functions of proto/smtp/data.py on their own."""

from __future__ import annotations

import asyncio
from typing import Any

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from netkit.proto.smtp.data import find_end, has_long_line, unstuff
from netkit.servers.smtp.service import Config, SMTPService, _limited_smtp

LIMIT = 2000  # data_size_limit of both sessions


class Transport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.out = bytearray()
        self.closed = False

    def write(self, data: Any) -> None:
        self.out += data

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 40000), "sockname": ("127.0.0.1", 25)}.get(
            name, default)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0


class Keeper:
    def __init__(self) -> None:
        self.messages: list[bytes] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(envelope.original_content)
        return "250 OK kept"


async def _session(ours: bool, chunks: list[bytes], tmp: Any) -> tuple[bytes, list[bytes]]:
    from aiosmtpd.smtp import SMTP
    keeper = Keeper()
    kwargs = dict(handler=keeper, hostname="relay.test", data_size_limit=LIMIT,
                  decode_data=False, enable_SMTPUTF8=True)
    if ours:
        proto = _limited_smtp()(SMTPService(Config(queue_dir=tmp)), **kwargs)
    else:
        proto = SMTP(**kwargs)
    transport = Transport()
    proto.connection_made(transport)
    for _ in range(20):
        await asyncio.sleep(0)
    for chunk in chunks:
        proto.data_received(chunk)
        for _ in range(20):
            await asyncio.sleep(0)
    for _ in range(50):
        await asyncio.sleep(0)
    proto.connection_lost(None)
    await asyncio.sleep(0)
    return bytes(transport.out), keeper.messages


_LINES = st.lists(st.sampled_from([b"", b".", b"..", b".x", b"x.", b"abc", b"a" * 70,
                                   b"b" * 1100, b"c\nd", b"e\rf", b" .", b"\r", b"\n"]),
                  max_size=40)


@settings(max_examples=300, deadline=None)
@given(_LINES, st.booleans(), st.lists(st.integers(1, 400), max_size=12))
def test_block_data_answers_as_aiosmtpd_does(lines: list[bytes], pipelined: bool,
                                             cuts: list[int]) -> None:
    raw = b"".join(line + b"\r\n" for line in lines)
    # aiosmtpd says 500 for a long line that came before the size ran out, ours 552
    # (the block is dropped unread once too big): the one known difference
    assume(not (len(raw) > LIMIT and any(len(line) + 2 > 1001 for line in lines)))
    stream = (b"EHLO c.test\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\nDATA\r\n" +
              raw + b".\r\n" +
              (b"MAIL FROM:<e@f.test>\r\nRCPT TO:<g@h.test>\r\nDATA\r\nlast\r\n.\r\n"
               if pipelined else b"") + b"QUIT\r\n")
    chunks, at = [], 0
    for n in cuts:
        chunks.append(stream[at:at + n])
        at += n
    chunks.append(stream[at:])
    chunks = [c for c in chunks if c]
    import tempfile
    from pathlib import Path
    with tempfile.TemporaryDirectory() as tmp:
        theirs = asyncio.run(_session(False, chunks, Path(tmp) / "a"))
        ours = asyncio.run(_session(True, chunks, Path(tmp) / "b"))
    assert ours == theirs
    assert theirs[0].endswith(b"221 Bye\r\n")


def test_the_block_functions() -> None:
    assert find_end(b".\r\nQUIT\r\n") == (0, 3)  # an empty message
    assert find_end(b".\r\n", at_start=False) is None  # after dropped bytes: mid-line
    assert find_end(b"a\r\n.\r\nQUIT") == (3, 6)
    assert find_end(b"a\r\n.\r") is None
    assert find_end(b"xx\r\n.\r\n", scanned=3) == (4, 7)  # the END straddles the last look
    assert unstuff(b"..a\r\n..\r\n.b\r\nc.\r\n") == b".a\r\n.\r\nb\r\nc.\r\n"
    assert not has_long_line(b"a" * 998 + b"\r\n", 1000)
    assert has_long_line(b"b\r\n" + b"a" * 999 + b"\r\n", 1000)
