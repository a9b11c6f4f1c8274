"""What the HTTP client's callers hold: Timeout, Retry, Headers, Request and Response."""

from __future__ import annotations

import datetime
import email.utils
import json as jsonlib
import time
import urllib.parse
from collections.abc import AsyncIterable, Iterable, Mapping
from typing import Any

from ...errors import HTTPStatusError
from ...proto.http import codec as h

# str or bytes names and values, as a mapping or as pairs
HeaderTypes = Mapping[Any, Any] | Iterable[tuple[Any, Any]] | None
ParamTypes = Mapping[str, Any] | Iterable[tuple[str, Any]] | str | None


class Timeout:
    """Limits per phase, in seconds (None: no limit). `Timeout(5)` sets connect and read;
    `total` bounds a whole request, redirects and retries included."""

    __slots__ = ("connect", "read", "total")

    def __init__(self, timeout: float | None = ..., *,  # type: ignore[assignment]
                 connect: float | None = 10.0, read: float | None = 30.0,
                 total: float | None = None) -> None:
        if timeout is not ...:
            connect = read = timeout
        self.connect, self.read, self.total = connect, read, total

    @classmethod
    def of(cls, value: Timeout | float | None) -> Timeout:
        return value if isinstance(value, Timeout) else cls(value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Timeout) and \
            (self.connect, self.read, self.total) == (other.connect, other.read, other.total)

    def __hash__(self) -> int:
        return hash((self.connect, self.read, self.total))

    def __repr__(self) -> str:
        return f"Timeout(connect={self.connect}, read={self.read}, total={self.total})"


class Retry:
    """Retrying idempotent requests on connection errors and these statuses, with backoff
    (doubling from `backoff` seconds) or the server's Retry-After, capped at `max_wait`."""

    __slots__ = ("attempts", "backoff", "max_wait", "statuses")

    def __init__(self, attempts: int = 3, backoff: float = 0.5,
                 statuses: Iterable[int] = (429, 502, 503, 504), max_wait: float = 60.0) -> None:
        self.attempts, self.backoff, self.max_wait = attempts, backoff, max_wait
        self.statuses = frozenset(statuses)

    def delay(self, attempt: int, retry_after: bytes | None) -> float:
        if retry_after is not None:
            try:
                return min(self.max_wait, max(0.0, float(retry_after.strip())))
            except ValueError:
                try:  # the HTTP-date form (RFC 9110 10.2.3)
                    when = email.utils.parsedate_to_datetime(retry_after.decode("latin-1"))
                    return min(self.max_wait, max(0.0, when.timestamp() - time.time()))
                except (TypeError, ValueError):
                    pass
        return min(self.max_wait, self.backoff * 2 ** attempt)


class Headers(h.Headers):
    """Fields in order with case-insensitive names, asked for by str or bytes: a str name
    gives str values (latin-1, as RFC 9110 has field values), a bytes name bytes.

        r.headers["Content-Type"]          -> "text/html; charset=utf-8"
        r.headers.get(b"content-type")     -> b"text/html; charset=utf-8"

    Repeated fields are joined with ", " by `get` and `[]`; `get_list` keeps them apart
    (Set-Cookie). Iterating gives the (name, value) byte pairs as they came; `items()`
    gives str pairs.
    """

    __slots__ = ()

    @classmethod
    def of(cls, fields: h.Headers | HeaderTypes) -> Headers:
        if isinstance(fields, cls):
            return fields
        if isinstance(fields, h.Headers):
            new = cls.__new__(cls)
            new._items, new._index, new._lowered = fields._items, fields._index, \
                fields._lowered
            return new
        return cls(_pairs(fields))

    def get(self, name: str | bytes, default: Any = None) -> Any:  # type: ignore[override]
        if isinstance(name, str):
            value = h.Headers.get(self, name.encode("latin-1"))
            return default if value is None else value.decode("latin-1")
        return h.Headers.get(self, name, default)

    def get_list(self, name: str | bytes) -> list[Any]:
        if isinstance(name, str):
            return [v.decode("latin-1") for v in self.get_all(name.encode("latin-1"))]
        return self.get_all(name)

    def __getitem__(self, name: str | bytes) -> Any:
        value = self.get(name)
        if value is None:
            raise KeyError(name)
        return value

    def __contains__(self, name: object) -> bool:
        if isinstance(name, str):
            name = name.encode("latin-1")
        return isinstance(name, bytes) and self.has(name.lower())

    def keys(self) -> list[str]:
        return list(dict.fromkeys(n.decode("latin-1").lower() for n, _ in self))

    def items(self) -> list[tuple[str, str]]:
        return [(n.decode("latin-1"), v.decode("latin-1")) for n, v in self]

    def set(self, name: str | bytes, value: str | bytes) -> None:
        """Replace every field of that name with one (auth hooks use it)."""
        self.remove(_bytes(name))
        self.add(_bytes(name), _bytes(value))

    def remove(self, name: bytes) -> None:
        lower = name.lower()
        self._items[:] = [(n, v) for n, v in self._items if n.lower() != lower]
        self._index = self._lowered = None


def _bytes(s: str | bytes) -> bytes:
    return s if isinstance(s, bytes) else s.encode("latin-1")


def _pairs(fields: HeaderTypes) -> list[tuple[bytes, bytes]]:
    if not fields:
        return []
    items = fields.items() if isinstance(fields, Mapping) else fields
    return [(_bytes(n), _bytes(v)) for n, v in items]


def _param(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _encode_pairs(data: Mapping[str, Any] | Iterable[tuple[str, Any]]) -> list[tuple[str, str]]:
    items = data.items() if isinstance(data, Mapping) else data
    out = []
    for name, value in items:
        values = value if isinstance(value, list | tuple) else [value]
        out.extend((str(name), _param(v)) for v in values)
    return out


def merge_params(url: str, params: ParamTypes) -> str:
    """The URL with `params` appended to its query (repeated names kept, as httpx does)."""
    if not params:
        return url
    query = params if isinstance(params, str) else urllib.parse.urlencode(_encode_pairs(params))
    base, hash_, fragment = url.partition("#")
    base += ("&" if "?" in base and not base.endswith(("?", "&")) else
             "" if base.endswith("?") else "?") + query
    return base + hash_ + fragment


def form_body(data: Mapping[str, Any] | Iterable[tuple[str, Any]]) -> bytes:
    return urllib.parse.urlencode(_encode_pairs(data)).encode()


def json_body(obj: Any) -> bytes:
    return jsonlib.dumps(obj, ensure_ascii=False, separators=(",", ":"),
                         allow_nan=False).encode()


Content = bytes | AsyncIterable[bytes] | None


class Request:
    """One request as it will be sent (auth hooks may change `headers`)."""

    __slots__ = ("content", "content_length", "extensions", "headers", "method", "url")

    def __init__(self, method: str, url: str, headers: Headers, content: Content = None,
                 content_length: int | None = None) -> None:
        self.method, self.url, self.headers, self.content = method, url, headers, content
        # a streamed body whose size is known ahead (files) is sent with Content-Length
        self.content_length = content_length
        self.extensions: dict[str, Any] = {}

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.url}>"


class ResponseHead:
    """What a response has before its body: shared by Response and StreamingResponse."""

    status: int
    reason: bytes
    headers: Headers
    url: str
    request: Request | None
    elapsed: datetime.timedelta
    http_version: str
    history: list[Response]

    @property
    def status_code(self) -> int:
        return self.status

    @property
    def reason_phrase(self) -> str:
        return self.reason.decode("latin-1")

    @property
    def is_success(self) -> bool:
        return 200 <= self.status < 300

    @property
    def ok(self) -> bool:
        return self.status < 400

    @property
    def is_redirect(self) -> bool:
        return self.status in (301, 302, 303, 307, 308) and b"location" in self.headers

    @property
    def encoding(self) -> str | None:
        """The charset named in Content-Type, if any."""
        ctype = self.headers.get("content-type") or ""
        for param in ctype.split(";")[1:]:
            key, _, value = param.partition("=")
            if key.strip().lower() == "charset":
                return value.strip().strip('"') or None
        return None

    def raise_for_status(self):  # type: ignore[no-untyped-def]
        """Raise HTTPStatusError for a 4xx or 5xx answer; return the response otherwise."""
        if self.status >= 400:
            kind = "client error" if self.status < 500 else "server error"
            method = self.request.method if self.request else "GET"
            raise HTTPStatusError(f"{kind} {self.status} {self.reason_phrase} for "
                                  f"{method} {self.url}", response=self)
        return self


class Response(ResponseHead):
    """A response read whole. `text` decodes with the charset of Content-Type, or UTF-8
    when it names none (bytes that are not UTF-8 become U+FFFD, never an exception)."""

    def __init__(self, status: int, reason: bytes, headers: h.Headers | HeaderTypes,
                 url: str, content: bytes, history: list[Response] | None = None, *,
                 request: Request | None = None,
                 elapsed: datetime.timedelta = datetime.timedelta(0),
                 http_version: str = "HTTP/1.1") -> None:
        self.status, self.reason, self.url, self.content = status, reason, url, content
        self.headers = Headers.of(headers)
        self.history = history if history is not None else []
        self.request, self.elapsed, self.http_version = request, elapsed, http_version

    def __repr__(self) -> str:
        return f"<Response [{self.status} {self.reason_phrase}]>"

    @property
    def text(self) -> str:
        encoding = self.encoding or "utf-8"
        try:
            return self.content.decode(encoding, "replace")
        except LookupError:  # a charset Python does not know
            return self.content.decode("utf-8", "replace")

    def json(self, **kwargs: Any) -> Any:
        """The body as JSON (UTF-8, -16 or -32, as RFC 8259 allows)."""
        return jsonlib.loads(self.content, **kwargs)
