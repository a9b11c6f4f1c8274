"""SMTP replies read from a stream for a pipelining client, and DATA's dot-stuffing."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from netkit.proto.smtp.replies import MAX_LINE, Reply, ReplyError, ReplyReader, data_block


def test_single_and_multi_line_replies_in_one_read() -> None:
    replies = ReplyReader().feed(b"250-mx.test\r\n250-PIPELINING\r\n250 SIZE 1000\r\n"
                                 b"550 5.1.1 <b@x>: no such user\r\n354 go ahead\r\n221\r\n")
    assert replies == [Reply(250, "mx.test\nPIPELINING\nSIZE 1000"),
                       Reply(550, "5.1.1 <b@x>: no such user"), Reply(354, "go ahead"),
                       Reply(221, "")]


@pytest.mark.parametrize("bad", [b"hello\r\n", b"25 short\r\n", b"250-a\r\n251 b\r\n",
                                 b"650 no such class\r\n", b"250x\r\n",
                                 b"2" * (MAX_LINE + 10)])
def test_what_is_no_reply_is_an_error(bad: bytes) -> None:
    with pytest.raises(ReplyError):
        ReplyReader().feed(bad)


def test_a_reply_of_endless_lines_is_an_error() -> None:
    reader = ReplyReader()
    with pytest.raises(ReplyError):
        for _ in range(1000):
            reader.feed(b"250-more\r\n")


@given(st.lists(st.tuples(st.sampled_from([220, 250, 354, 421, 550]),
                          st.lists(st.text("abc .-:<>@", max_size=20), min_size=1,
                                   max_size=3)), max_size=6),
       st.lists(st.integers(1, 40), max_size=20))
def test_replies_come_out_the_same_however_the_bytes_are_cut(
        replies: list[tuple[int, list[str]]], cuts: list[int]) -> None:
    stream = b"".join(
        b"".join(f"{code}{'-' if i < len(lines) - 1 else ' '}{line}\r\n".encode()
                 for i, line in enumerate(lines)) for code, lines in replies)
    reader, got, at = ReplyReader(), [], 0
    for n in [*cuts, len(stream)]:
        got += reader.feed(stream[at:at + n])
        at += n
    got += reader.feed(stream[at:])
    assert got == [Reply(code, "\n".join(line.strip(" ") for line in lines))
                   for code, lines in replies]


def test_data_block_doubles_leading_dots_and_ends_every_line_with_crlf() -> None:
    assert data_block(b"Subject: x\r\n\r\n.hidden\nbare lf\rbare cr\r\n..two\r\n") == \
        b"Subject: x\r\n\r\n..hidden\r\nbare lf\r\nbare cr\r\n...two\r\n.\r\n"
    assert data_block(b"no final newline") == b"no final newline\r\n.\r\n"
