"""What a forward proxy decides about a message, without sockets: where a request goes
(absolute-form or CONNECT's authority-form), which fields travel on (hop-by-hop ones
do not, RFC 9110 7.6.1), and the Via it adds (7.6.3)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from .codec import Headers, Request

#: fields that concern one connection only; each is removed, as is every field that a
#: Connection field names
HOP_BY_HOP = frozenset((b"connection", b"keep-alive", b"proxy-connection",
                        b"proxy-authorization", b"proxy-authenticate", b"te", b"trailer",
                        b"transfer-encoding", b"upgrade"))


class Refusal(Exception):
    """A request the proxy answers itself: `status` and a short reason for the body."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


@dataclass(frozen=True, slots=True)
class Target:
    """Where a request goes: `connect` for a tunnel, else an http:// origin and the
    origin-form target to send it."""

    host: str
    port: int
    connect: bool
    path: bytes = b"/"

    @property
    def authority(self) -> bytes:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return (host if self.port == 80 and not self.connect else
                f"{host}:{self.port}").encode("idna")


def _host_port(authority: bytes, default: int | None) -> tuple[str, int]:
    text = authority.decode("ascii", "replace")
    if "@" in text:
        raise Refusal(400, "credentials in the request target are not accepted")
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port_text = rest.removeprefix(":") if rest.startswith(":") else ""
        if rest and not rest.startswith(":"):
            raise Refusal(400, f"bad authority {text!r}")
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep:
            host, port_text = text, ""
    if not host:
        raise Refusal(400, f"no host in {text!r}")
    if not port_text:
        if default is None:
            raise Refusal(400, f"CONNECT needs host:port, got {text!r}")
        return host.lower(), default
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise Refusal(400, f"bad port in {text!r}")
    return host.lower(), int(port_text)


def target_of(request: Request) -> Target:
    """The destination of a request made to a proxy; Refusal(400) for one that is not
    for a proxy (origin-form: `GET / HTTP/1.1`) or that it cannot use."""
    target = request.target
    if request.method == b"CONNECT":
        host, port = _host_port(target, None)
        return Target(host, port, True)
    lowered = target[:8].lower()
    if lowered.startswith(b"https://"):
        raise Refusal(400, "https:// URLs go through CONNECT")
    if not lowered.startswith(b"http://"):
        raise Refusal(400, "this is a proxy: the request target must be an absolute "
                           "http:// URL")
    rest = target[7:]
    cut = min((i for i in (rest.find(b"/"), rest.find(b"?"), rest.find(b"#")) if i >= 0),
              default=len(rest))
    authority, path = rest[:cut], rest[cut:].split(b"#", 1)[0]
    host, port = _host_port(authority, 80)
    if not path.startswith(b"/"):
        path = b"/" + path
    return Target(host, port, False, path)


def connection_tokens(headers: Headers) -> frozenset[bytes]:
    return frozenset(headers.tokens(b"connection"))


def forwarded_fields(headers: Headers, *, drop: Iterable[bytes] = ()) -> list[tuple[bytes,
                                                                                    bytes]]:
    """The fields that travel on: no hop-by-hop field, none named in Connection, none in
    `drop` (lower case), and no Content-Length (the engine frames each side itself)."""
    skip = HOP_BY_HOP | connection_tokens(headers) | {b"content-length", *drop}
    return [(n, v) for n, v in headers if n.lower() not in skip]


def via_value(version: bytes, pseudonym: str) -> bytes:
    """Our Via entry: "1.1 netkit" (the protocol version of the message received)."""
    return version + b" " + pseudonym.encode()


def has_our_via(headers: Headers, pseudonym: str) -> bool:
    """The message already passed through a proxy that calls itself `pseudonym`: a
    loop (RFC 9110 7.6.3 lets a proxy detect one by its Via)."""
    token = pseudonym.encode().lower()
    for value in headers.get_all(b"via"):
        for entry in value.split(b","):
            words = entry.strip().split()
            if len(words) >= 2 and words[1].lower() == token:
                return True
    return False
