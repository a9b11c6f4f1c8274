"""The cookie jar against RFC 6265's examples (section 3.1) and its rules (5.1-5.4), and
the multipart encoder read back by python-multipart, property-tested."""

from __future__ import annotations

import asyncio
import calendar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netkit.clients.http.multipart import Multipart
from netkit.proto.http.cookies import CookieJar, default_path, domain_match, path_match

NOW = float(calendar.timegm((2021, 1, 1, 0, 0, 0)))


def test_rfc6265_3_1_examples() -> None:
    jar = CookieJar()
    # "the server sends a session identifier to the user agent"
    jar.extract("https://www.example.com/", ["SID=31d4d96e407aad42"], NOW)
    assert jar.header_for("https://www.example.com/", NOW) == "SID=31d4d96e407aad42"
    assert jar.header_for("https://example.com/", NOW) is None  # host-only

    # "the server can use the Path and Domain attributes"
    jar = CookieJar()
    jar.extract("https://example.com/", ["SID=31d4d96e407aad42; Path=/; Domain=example.com"],
                NOW)
    for url in ("https://example.com/", "https://www.example.com/a/b",
                "https://a.b.example.com/"):
        assert jar.header_for(url, NOW) == "SID=31d4d96e407aad42"
    assert jar.header_for("https://notexample.com/", NOW) is None

    # "two cookies ... SID Secure and HttpOnly, lang for the whole domain"
    jar = CookieJar()
    jar.extract("https://example.com/", ["SID=31d4d96e407aad42; Path=/; Secure; HttpOnly",
                                         "lang=en-US; Path=/; Domain=example.com"], NOW)
    assert jar.header_for("https://example.com/", NOW) == "SID=31d4d96e407aad42; lang=en-US"
    assert jar.header_for("http://example.com/", NOW) == "lang=en-US"  # Secure: https only

    # "a persistent cookie, then the server deletes it with an Expires in the past"
    jar.extract("https://example.com/", ["lang=en-US; Expires=Wed, 09 Jun 2021 10:18:14 GMT"],
                NOW)
    assert "lang=en-US" in jar.header_for("https://example.com/", NOW)  # type: ignore
    later = float(calendar.timegm((2021, 6, 9, 10, 18, 15)))
    assert jar.header_for("https://example.com/", later) == "SID=31d4d96e407aad42"
    jar.extract("https://example.com/", ["lang=; Expires=Sun, 06 Nov 1994 08:49:37 GMT"],
                NOW)
    assert jar.get("lang") is None
    assert jar.header_for("https://example.com/", NOW) == "SID=31d4d96e407aad42"


def test_domain_and_path_matching() -> None:
    assert domain_match("foo.bar.com", "bar.com") and domain_match("bar.com", "bar.com")
    assert not domain_match("foobar.com", "bar.com")
    assert not domain_match("1.2.3.4", "3.4")  # an IP address matches only itself
    assert path_match("/docs/a", "/docs") and path_match("/docs/", "/docs/")
    assert path_match("/docs", "/docs") and not path_match("/docsx", "/docs")
    assert default_path("/a/b/c") == "/a/b" and default_path("/a") == "/"
    assert default_path("") == "/" and default_path("/") == "/"


@pytest.mark.parametrize(("url", "line", "stored"), [
    ("https://a.example.com/", "x=1; Domain=other.com", False),  # not our domain
    ("https://a.example.com/", "x=1; Domain=com", False),  # a public suffix
    ("https://localhost/", "x=1; Domain=localhost", True),  # ... unless it is the host
    ("https://a.example.com/", "x=1; Domain=.Example.COM", True),  # dot and case ignored
    ("http://a.example.com/", "x=1; Secure", False),  # plain http cannot set Secure
    ("https://a.example.com/", "no-equals-sign", False),
    ("https://a.example.com/", "=value-without-name", False),
    ("https://a.example.com/", "x=1; Max-Age=0", False),
    ("https://a.example.com/", "x=1; Max-Age=junk", True),  # a bad attribute is skipped
])
def test_storage_rules(url: str, line: str, stored: bool) -> None:
    jar = CookieJar()
    jar.extract(url, [line], NOW)
    assert (len(jar) == 1) is stored


def test_max_age_wins_over_expires_and_deletes() -> None:
    jar = CookieJar()
    jar.extract("https://e.com/", ["a=1; Max-Age=10; Expires=Wed, 09 Jun 2100 10:18:14 GMT"],
                NOW)
    assert jar.header_for("https://e.com/", NOW + 9) == "a=1"
    assert jar.header_for("https://e.com/", NOW + 11) is None
    jar.extract("https://e.com/", ["b=1"], NOW)
    jar.extract("https://e.com/", ["b=gone; Max-Age=0"], NOW)
    assert len(jar) == 0


def test_order_path_and_replacement() -> None:
    jar = CookieJar()
    jar.extract("https://e.com/shop/cart", ["a=1; Path=/", "b=2", "c=3; Path=/shop/cart"], NOW)
    assert jar.header_for("https://e.com/shop/cart", NOW) == "c=3; b=2; a=1"
    assert jar.header_for("https://e.com/", NOW) == "a=1"  # b's default path is /shop
    jar.extract("https://e.com/", ["a=new; Path=/"], NOW)
    assert jar.header_for("https://e.com/", NOW) == "a=new" and len(jar) == 3
    # a Secure cookie cannot be overwritten from plain http
    jar.extract("https://e.com/", ["s=1; Secure"], NOW)
    jar.extract("http://e.com/", ["s=2"], NOW)
    assert jar.get("s") == "1"


def test_the_jar_is_bounded() -> None:
    jar = CookieJar(max_cookies=100, max_per_domain=10)
    for i in range(50):
        jar.extract(f"https://h{i % 20}.example/", [f"c{i}=v"], NOW)
    assert len(jar) <= 100
    jar.extract("https://one.example/", [f"k{i}=v" for i in range(30)], NOW)
    assert sum(c.domain == "one.example" for c in jar) == 10
    assert jar.get("k29") == "v" and jar.get("k0") is None  # oldest first out


@given(st.text(max_size=200))
@settings(max_examples=300, deadline=None)
def test_any_set_cookie_text_is_stored_or_ignored_never_an_error(line: str) -> None:
    jar = CookieJar()
    jar.extract("https://example.com/a/b", [line], NOW)
    assert len(jar) <= 1
    header = jar.header_for("https://example.com/a/b", NOW)
    assert header is None or "=" in header


field_names = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1,
                      max_size=20)


@given(st.lists(st.tuples(field_names, st.text(max_size=50)), max_size=4),
       st.lists(st.tuples(field_names, st.text(st.characters(codec="utf-8",
                                                              exclude_characters="\x00/\\"),
                                               min_size=1, max_size=20),
                          st.binary(max_size=3000)), min_size=1, max_size=3))
@settings(max_examples=150, deadline=None)
def test_multipart_round_trips_through_python_multipart(
        fields: list[tuple[str, str]], files: list[tuple[str, str, bytes]]) -> None:
    from python_multipart.multipart import MultipartParser

    form = Multipart(fields, [(n, (fname, data)) for n, fname, data in files])

    async def body() -> bytes:
        return b"".join([chunk async for chunk in form.stream()])

    raw = asyncio.run(body())
    assert form.length == len(raw)
    parts: list[bytes] = []
    current: list[bytes] = []
    parser = MultipartParser(form.boundary, callbacks={
        "on_part_begin": lambda: current.clear(),
        "on_part_data": lambda data, start, end: current.append(data[start:end]),
        "on_part_end": lambda: parts.append(b"".join(current))})
    parser.write(raw)
    parser.finalize()
    expected = [v.encode() for _, v in fields] + [data for _, _, data in files]
    assert parts == expected
