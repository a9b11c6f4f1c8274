"""A cookie jar by RFC 6265's rules (sans-IO: the time comes in as `now`).

    jar.extract("https://shop.example/cart", ["id=7; Path=/; Secure"], now)
    jar.header_for("https://shop.example/", now)   # -> "id=7"

Set-Cookie is parsed the lenient way of section 5.2 (a broken attribute is
skipped, not the cookie), stored as 5.3 says (host-only unless Domain= names a
domain the host is in; the default path; Max-Age over Expires; a cookie that
arrives expired deletes its namesake) and sent as 5.4 says (domain-match,
path-match, Secure only over https, longest path first). Two habits of today's
browsers (RFC 6265bis) are kept too: a plain-http answer cannot set or overwrite a
Secure cookie, and Domain= may not be a single label such as "com", which stands
in for the public-suffix list this jar does not carry. The jar is bounded: at most
`max_per_domain` cookies per domain and `max_cookies` in all, the least recently
used going first.
"""

from __future__ import annotations

import itertools
import urllib.parse
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from http.cookiejar import http2time

from ..addresses import is_ip_literal

_FOREVER = float("inf")
_order = itertools.count()


@dataclass(slots=True)
class Cookie:
    name: str
    value: str
    domain: str  # lower case, no leading dot
    path: str
    expires: float = _FOREVER  # seconds since the epoch; inf: until the jar goes
    secure: bool = False
    http_only: bool = False
    host_only: bool = True
    same_site: str | None = None
    created: int = field(default_factory=lambda: next(_order))
    last_access: int = 0


def _split_url(url: str) -> tuple[bool, str, str]:
    parts = urllib.parse.urlsplit(url)
    return parts.scheme == "https", (parts.hostname or "").lower(), parts.path or "/"


def domain_match(host: str, domain: str) -> bool:
    """RFC 6265 5.1.3."""
    return host == domain or (host.endswith("." + domain) and not is_ip_literal(host))


def path_match(request_path: str, cookie_path: str) -> bool:
    """RFC 6265 5.1.4."""
    if request_path == cookie_path:
        return True
    return request_path.startswith(cookie_path) and (
        cookie_path.endswith("/") or request_path[len(cookie_path)] == "/")


def default_path(request_path: str) -> str:
    """RFC 6265 5.1.4: the directory of the request path."""
    if not request_path.startswith("/") or request_path.count("/") == 1:
        return "/"
    return request_path[:request_path.rindex("/")]


def parse_set_cookie(line: str, *, https: bool, host: str, path: str,
                     now: float) -> Cookie | None:
    """One Set-Cookie value as RFC 6265 5.2 and 5.3 read it; None when it is ignored."""
    pair, _, attributes = line.partition(";")
    if "=" not in pair:
        return None
    name, _, value = pair.partition("=")
    name, value = name.strip(" \t"), value.strip(" \t")
    if not name:
        return None
    cookie = Cookie(name, value, host, default_path(path))
    max_age: float | None = None
    expires: float | None = None
    domain = ""
    for attribute in attributes.split(";"):
        key, _, arg = attribute.partition("=")
        key, arg = key.strip(" \t").lower(), arg.strip(" \t")
        if key == "expires":
            when = http2time(arg)
            if when is not None:
                expires = float(when)
        elif key == "max-age":
            if arg[:1].isdigit() or (arg[:1] == "-" and arg[1:].isdigit()):
                delta = int(arg)
                max_age = now + delta if delta > 0 else 0.0
        elif key == "domain" and arg:
            domain = arg.removeprefix(".").lower()
        elif key == "path":
            cookie.path = arg if arg.startswith("/") else default_path(path)
        elif key == "secure":
            cookie.secure = True
        elif key == "httponly":
            cookie.http_only = True
        elif key == "samesite":
            cookie.same_site = arg.lower() or None
    if max_age is not None:
        cookie.expires = max_age
    elif expires is not None:
        cookie.expires = expires
    if domain and "." not in domain:
        # a public suffix such as "com" (no list here: one label stands in for it) is
        # refused, unless it is the host itself, which makes the cookie host-only
        if domain != host:
            return None
        domain = ""
    if domain:
        if not domain_match(host, domain):
            return None
        cookie.domain, cookie.host_only = domain, False
    if cookie.secure and not https:
        return None
    return cookie


class CookieJar:
    """Cookies kept by (domain, path, name), as a browser keeps them."""

    def __init__(self, *, max_cookies: int = 3000, max_per_domain: int = 50) -> None:
        self.max_cookies = max_cookies
        self.max_per_domain = max_per_domain
        self._cookies: dict[tuple[str, str, str], Cookie] = {}
        self._access = itertools.count(1)

    def __len__(self) -> int:
        return len(self._cookies)

    def __iter__(self) -> Iterator[Cookie]:
        return iter(list(self._cookies.values()))

    def __bool__(self) -> bool:
        return bool(self._cookies)

    def get(self, name: str, domain: str | None = None) -> str | None:
        for cookie in self._cookies.values():
            if cookie.name == name and (domain is None or cookie.domain == domain):
                return cookie.value
        return None

    def set(self, name: str, value: str, *, domain: str, path: str = "/",
            secure: bool = False, expires: float = _FOREVER) -> None:
        """A cookie set by the script, for `domain` and its subdomains."""
        self._store(Cookie(name, value, domain.lower().removeprefix("."), path, expires,
                           secure, host_only=False), https=True, now=0.0)

    def clear(self, domain: str | None = None) -> None:
        if domain is None:
            self._cookies.clear()
        else:
            for key in [k for k in self._cookies if k[0] == domain]:
                del self._cookies[key]

    def extract(self, url: str, set_cookie_lines: Iterable[str], now: float) -> None:
        """Store what an answer from `url` set (its Set-Cookie values)."""
        https, host, path = _split_url(url)
        for line in set_cookie_lines:
            cookie = parse_set_cookie(line, https=https, host=host, path=path, now=now)
            if cookie is not None:
                self._store(cookie, https=https, now=now)

    def header_for(self, url: str, now: float) -> str | None:
        """The Cookie field for a request to `url` (RFC 6265 5.4), or None."""
        if not self._cookies:
            return None
        https, host, path = _split_url(url)
        chosen = []
        for key, cookie in list(self._cookies.items()):
            if cookie.expires <= now:
                del self._cookies[key]
                continue
            if (cookie.domain == host if cookie.host_only else domain_match(host, cookie.domain)) \
                    and path_match(path, cookie.path) and (https or not cookie.secure):
                chosen.append(cookie)
        if not chosen:
            return None
        chosen.sort(key=lambda c: (-len(c.path), c.created))
        for cookie in chosen:
            cookie.last_access = next(self._access)
        return "; ".join(f"{c.name}={c.value}" for c in chosen)

    def _store(self, cookie: Cookie, *, https: bool, now: float) -> None:
        key = (cookie.domain, cookie.path, cookie.name)
        old = self._cookies.get(key)
        if old is not None:
            if old.secure and not https:
                return  # plain http cannot overwrite a Secure cookie (RFC 6265bis 5.7)
            cookie.created = old.created
            del self._cookies[key]
        if cookie.expires <= now:
            return  # an expired cookie only deletes its namesake (RFC 6265 5.3 step 11)
        cookie.last_access = next(self._access)
        self._cookies[key] = cookie
        same_domain = [k for k in self._cookies if k[0] == cookie.domain]
        self._evict(same_domain, len(same_domain) - self.max_per_domain)
        self._evict(list(self._cookies), len(self._cookies) - self.max_cookies)

    def _evict(self, keys: list[tuple[str, str, str]], excess: int) -> None:
        if excess > 0:
            keys.sort(key=lambda k: self._cookies[k].last_access)
            for k in keys[:excess]:
                del self._cookies[k]
