"""The relay's SMTP sessions made from a template (service.py's LimitedSMTP.factory)
are the same as sessions made by aiosmtpd's own __init__: if an aiosmtpd upgrade adds
state, this fails here rather than in a session."""

from __future__ import annotations

import asyncio
import inspect
import weakref
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from netkit.servers.smtp.service import Config, SMTPService, _Handler, _limited_smtp


def _same(a: Any, b: Any, owner_a: Any, owner_b: Any) -> bool:
    if inspect.ismethod(a):
        return inspect.ismethod(b) and a.__func__ is b.__func__ and (
            (a.__self__ is owner_a and b.__self__ is owner_b) or a.__self__ is b.__self__)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(
            _same(a[k], b[k], owner_a, owner_b) for k in a)
    if isinstance(a, tuple):
        return type(a) is type(b) and len(a) == len(b) and all(
            _same(x, y, owner_a, owner_b) for x, y in zip(a, b, strict=True))
    if isinstance(a, weakref.ref):
        return isinstance(b, weakref.ref) and _same(a(), b(), owner_a, owner_b)
    if isinstance(a, asyncio.StreamReader | asyncio.Future):
        return type(a) is type(b) and a is not b
    return bool(a == b)


def test_a_session_from_the_template_equals_one_made_by_aiosmtpd(tmp_path) -> None:
    async def main() -> None:
        service = SMTPService(Config(queue_dir=tmp_path / "q"))
        cls = _limited_smtp()
        kwargs = dict(handler=_Handler(service), hostname="relay.test", ident="netkit",
                      data_size_limit=1 << 20, enable_SMTPUTF8=True, decode_data=False,
                      timeout=30, tls_context=None, require_starttls=False,
                      auth_required=False, auth_require_tls=True,
                      authenticator=service._authenticate, command_call_limit=20)
        make = cls.factory(service, **kwargs)
        first, cloned = make(), make()
        normal = cls(service, **kwargs)
        assert cloned is not first and type(cloned) is cls
        assert vars(cloned).keys() == vars(normal).keys()
        for key, value in vars(normal).items():
            assert _same(value, vars(cloned)[key], normal, cloned), key
        assert cloned._stream_reader is not first._stream_reader
        for key, value in vars(cloned).items():  # nothing a session changes is shared
            if isinstance(value, list | set | bytearray):
                assert value is not vars(first)[key], key

    asyncio.run(main())


_ATOMS = st.text("abcXYZ019!#$%&'*+/=?^_`{|}~-", min_size=1, max_size=6)


@settings(max_examples=600, deadline=None)
@given(st.one_of(
    st.text("<>@.aZ09!#\"()\\ ,:;[]=-_\t\u00e9", max_size=30),
    st.builds(lambda local, domain, rest: f"<{local}@{domain}>{rest}",
              st.lists(_ATOMS, min_size=1, max_size=3).map(".".join),
              st.lists(st.text("abc019-", min_size=1, max_size=5), min_size=1,
                       max_size=3).map(".".join),
              st.text(" \t\r\n\x0b()xS=1<>@", max_size=8)),
    st.builds(lambda local: f"<{local}@example.test>", st.text("ab.", min_size=1, max_size=70)),
), st.sampled_from([0, 64]))
def test_the_fast_path_parser_agrees_with_aiosmtpd(arg: str, limit: int) -> None:
    from aiosmtpd.smtp import SMTP

    cls = _limited_smtp()
    ours, theirs = cls.__new__(cls), SMTP.__new__(SMTP)
    ours.local_part_limit = theirs.local_part_limit = limit
    try:
        expected = SMTP._getaddr(theirs, arg)
    except Exception:  # aiosmtpd: a 500 with a traceback ("MAIL FROM:<"); ours: a 553
        expected = (None, None)
    assert ours._getaddr(arg) == expected


def test_contents_kept_for_the_first_attempt_are_capped(tmp_path, monkeypatch) -> None:
    """The relay keeps just-accepted contents in memory for their first delivery attempt,
    never more than HOT_BYTES in all; past it, delivery reads the queue file."""
    from netkit.servers.smtp import service as smtp

    monkeypatch.setattr(smtp, "HOT_BYTES", 5000)

    async def main() -> None:
        service = SMTPService(Config(queue_dir=tmp_path / "q"))
        service.store.open()
        body = b"Subject: x\r\n\r\n" + b"y" * 1500 + b"\r\n"
        ids = [await service.accept("a@s.test", ["b@r.test"], body, "127.0.0.1", "s.test")
               for _ in range(4)]
        assert service.hot_bytes <= 5000 and list(service.hot) == ids[:len(service.hot)]
        assert 2 <= len(service.hot) < 4
        for i in ids:  # what is kept is what the file holds
            assert service.hot.get(i, service.store.content(i)) == service.store.content(i)
        service.committer.close()

    asyncio.run(main())


def test_aiosmtpd_still_logs_commands_when_its_logger_asks(caplog) -> None:
    """The relay makes aiosmtpd's sanitized_log ask the logger's level first: at INFO
    the command lines are logged as before, AUTH's secret hidden; at WARNING nothing."""
    import logging

    import aiosmtpd.smtp

    _limited_smtp()
    log = logging.getLogger("mail.log")
    with caplog.at_level(logging.INFO, logger="mail.log"):
        aiosmtpd.smtp.sanitized_log(log.info, "%r >> %r", "peer", b"AUTH PLAIN c2VjcmV0\r\n")
    assert "AUTH PLAIN ********" in caplog.text and "c2VjcmV0" not in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="mail.log"):
        aiosmtpd.smtp.sanitized_log(log.info, "%r >> %r", "peer", b"NOOP\r\n")
    assert caplog.text == ""
