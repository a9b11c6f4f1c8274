"""An HTTP origin for tests: it answers what it is told to expect, records every request,
and says at the end what went wrong.

    origin.expect("GET", "/users", query={"page": "2"}).respond(json=[{"id": 1}])
    origin.expect("POST", "/users", json={"name": "ann"}).respond(201)
    ... the code under test calls origin.url ...
    origin.check()   # AssertionError: requests nothing expected, expectations never met

An expectation is met `times` times (once by default; None: at least once, any
number). Unordered (the default), a request takes the first expectation that matches
and still has uses; ordered, it must match the next one. A request that matches
nothing gets 500 with the reason in the body, and is reported by `check()`.
"""

from __future__ import annotations

import json as jsonlib
import re
import threading
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

from netkit.servers.http.app import AppRequest, AppResponse

_UNSET: Any = object()


@dataclass
class Recorded:
    """A request the origin received."""

    method: str
    path: str
    query_string: str
    headers: dict[str, str]
    """Lower-case names; a repeated field's values joined with ", "."""
    body: bytes
    matched: bool = False

    @property
    def query(self) -> dict[str, list[str]]:
        return urllib.parse.parse_qs(self.query_string, keep_blank_values=True)

    def json(self) -> Any:
        return jsonlib.loads(self.body)

    def __str__(self) -> str:
        query = f"?{self.query_string}" if self.query_string else ""
        return f"{self.method} {self.path}{query}"


@dataclass
class Expectation:
    """One expected request and the response it gets (`respond`)."""

    method: str
    path: str | re.Pattern[str]
    headers: dict[str, str] = field(default_factory=dict)
    query: dict[str, str | list[str]] | str | None = None
    body: bytes | None = None
    json: Any = _UNSET
    times: int | None = 1
    calls: int = 0
    response: AppResponse = field(default_factory=lambda: AppResponse(200))

    def respond(self, status: int = 200, *, body: bytes | str = b"", json: Any = _UNSET,
                headers: dict[str, str] | None = None) -> Expectation:
        """What the matching requests get: `body` (bytes or text), or `json` (sent with
        Content-Type: application/json), with `headers`."""
        out = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()]
        if json is not _UNSET:
            body = jsonlib.dumps(json).encode()
            if not any(k.lower() == b"content-type" for k, _ in out):
                out.append((b"content-type", b"application/json"))
        elif isinstance(body, str):
            body = body.encode()
            if not any(k.lower() == b"content-type" for k, _ in out):
                out.append((b"content-type", b"text/plain; charset=utf-8"))
        self.response = AppResponse(status, out, body)
        return self

    @property
    def exhausted(self) -> bool:
        return self.times is not None and self.calls >= self.times

    @property
    def unmet(self) -> bool:
        return self.calls < (self.times if self.times is not None else 1)

    def mismatch(self, request: Recorded) -> str | None:
        """Why `request` does not match (None: it does)."""
        if request.method != self.method:
            return f"method {request.method} is not {self.method}"
        if isinstance(self.path, re.Pattern):
            if not self.path.fullmatch(request.path):
                return f"path {request.path} does not match {self.path.pattern!r}"
        elif request.path != self.path:
            return f"path {request.path} is not {self.path}"
        for name, value in self.headers.items():
            got = request.headers.get(name.lower())
            if got != value:
                return f"header {name}: {got!r} is not {value!r}"
        if isinstance(self.query, str):
            if request.query_string != self.query:
                return f"query {request.query_string!r} is not {self.query!r}"
        elif self.query is not None:
            query = request.query
            for name, value in self.query.items():
                want = [value] if isinstance(value, str) else list(value)
                if query.get(name) != want:
                    return f"query {name}: {query.get(name)!r} is not {want!r}"
        if self.body is not None and request.body != self.body:
            return f"body {request.body[:60]!r} is not {self.body[:60]!r}"
        if self.json is not _UNSET:
            try:
                got_json = request.json()
            except ValueError:
                return "body is not JSON"
            if got_json != self.json:
                return f"JSON body {got_json!r} is not {self.json!r}"
        return None

    def __str__(self) -> str:
        path = self.path.pattern if isinstance(self.path, re.Pattern) else self.path
        times = {None: "at least once", 1: "once"}.get(self.times, f"{self.times} times")
        return f"{self.method} {path} (expected {times}, got {self.calls})"


class HTTPOrigin:
    """The expectations and the record; `handler` is the native application the HTTP
    server runs. Safe to use from the test's thread while the server runs in its own."""

    def __init__(self, *, ordered: bool = False) -> None:
        self.ordered = ordered
        self.expectations: list[Expectation] = []
        self.requests: list[Recorded] = []
        """Every request received, in order."""
        self.url = ""
        """Set by whoever starts the server (the fixture): ``http://127.0.0.1:PORT``."""
        self.addresses: list[tuple[str, int]] = []
        self._lock = threading.Lock()

    def expect(self, method: str, path: str | re.Pattern[str], *,
               headers: dict[str, str] | None = None,
               query: dict[str, str | list[str]] | str | None = None,
               body: bytes | str | None = None, json: Any = _UNSET,
               times: int | None = 1) -> Expectation:
        """Expect a request; `.respond(...)` on the result says what it gets (200 and no
        body unless told). `headers` and `query` must be present with these values
        (others may be too); `query` as a string must be the whole query string."""
        if isinstance(body, str):
            body = body.encode()
        e = Expectation(method.upper(), path, dict(headers or {}), query, body, json, times)
        with self._lock:
            self.expectations.append(e)
        return e

    def url_for(self, path: str) -> str:
        return self.url + path

    @property
    def unmatched(self) -> list[Recorded]:
        return [r for r in self.requests if not r.matched]

    def clear(self) -> None:
        """Forget expectations and requests (between phases of one test)."""
        with self._lock:
            self.expectations.clear()
            self.requests.clear()

    def check(self) -> None:
        """AssertionError naming every request nothing expected and every expectation
        not met as often as it should have been."""
        with self._lock:
            problems = [f"unexpected request: {r}" for r in self.requests if not r.matched]
            problems += [f"unmet expectation: {e}" for e in self.expectations if e.unmet]
        if problems:
            raise AssertionError("netkit_http:\n  " + "\n  ".join(problems))

    async def handler(self, request: AppRequest) -> AppResponse:
        body = await request.body()
        headers: dict[str, str] = {}
        for name, value in request.headers:
            key = name.decode("latin-1").lower()
            text = value.decode("latin-1")
            headers[key] = f"{headers[key]}, {text}" if key in headers else text
        recorded = Recorded(request.method, request.path,
                            request.query_string.decode("latin-1"), headers, body)
        with self._lock:
            self.requests.append(recorded)
            found, why = self._match(recorded)
            if found is not None:
                found.calls += 1
                recorded.matched = True
                response = found.response
                return AppResponse(response.status, list(response.headers), response.body)
        return AppResponse(500, [(b"content-type", b"text/plain; charset=utf-8")],
                           f"netkit_http: no expectation for {recorded}: {why}\n".encode())

    def _match(self, request: Recorded) -> tuple[Expectation | None, str]:
        live = [e for e in self.expectations if not e.exhausted]
        if not live:
            return None, "no expectation left"
        if self.ordered:
            why = live[0].mismatch(request)
            return (live[0], "") if why is None else (None, f"the next one, {live[0]}: {why}")
        reasons = []
        for e in live:
            why = e.mismatch(request)
            if why is None:
                return e, ""
            reasons.append(f"{e}: {why}")
        return None, "; ".join(reasons)
