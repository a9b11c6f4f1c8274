"""`python -m netkit.clients.http`: the HTTP client with curl's options and exit codes."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import IO, NoReturn

from ...errors import (
    ConnectError,
    NetkitError,
    NetkitTimeout,
    ReadError,
    RemoteProtocolError,
    TLSError,
    TooManyRedirects,
    WriteError,
)
from .client import Client
from .models import Request, Timeout

USAGE = "python -m netkit.clients.http [options...] <url>"
EPILOG = """exit codes (curl's): 0 any HTTP answer (with -f: below 400), 2 bad option,
3 bad URL, 6 host not resolved, 7 no connection, 22 HTTP error with -f, 23 cannot write
the output, 26 cannot read a -d @file, 28 timed out, 35 TLS failed, 47 too many
redirects, 52 empty reply, 55 send failed, 56 receive failed, 60 certificate not trusted.
"""


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise _UsageError(message)


def _parser() -> _Parser:
    p = _Parser(prog="python -m netkit.clients.http", usage=USAGE, epilog=EPILOG,
                description="Fetch a URL as curl does, with netkit's HTTP client.",
                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("url")
    p.add_argument("-i", "--include", action="store_true",
                   help="include the response head in the output")
    p.add_argument("-I", "--head", action="store_true", help="HEAD: show the head only")
    p.add_argument("-L", "--location", action="store_true", help="follow redirects")
    p.add_argument("--max-redirs", type=int, default=50, metavar="N",
                   help="at most N redirects with -L (default 50)")
    p.add_argument("-f", "--fail", action="store_true",
                   help="fail (exit 22, no body) on an HTTP status of 400 or more")
    p.add_argument("-s", "--silent", action="store_true", help="print no error messages")
    p.add_argument("-S", "--show-error", action="store_true",
                   help="with -s, print error messages still")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="show the request and response heads on stderr")
    p.add_argument("-o", "--output", type=Path, metavar="FILE",
                   help="write the body to FILE instead of stdout")
    p.add_argument("-d", "--data", action="append", metavar="DATA",
                   help="POST DATA as a form (@FILE reads a file); several are joined with &")
    p.add_argument("--data-binary", action="append", metavar="DATA",
                   help="like -d, but @FILE is sent as it is (newlines kept)")
    p.add_argument("--json", action="append", metavar="DATA",
                   help="POST DATA as JSON (@FILE reads a file), sets Content-Type and Accept")
    p.add_argument("-F", "--form", action="append", metavar="NAME=VALUE",
                   help="multipart form field; NAME=@FILE uploads a file, streamed")
    p.add_argument("-H", "--header", action="append", default=[], metavar="'NAME: VALUE'",
                   help="add a request header")
    p.add_argument("-A", "--user-agent", metavar="NAME")
    p.add_argument("-X", "--request", metavar="METHOD", help="the request method")
    p.add_argument("-u", "--user", metavar="USER:PASSWORD", help="Basic authentication")
    p.add_argument("--max-time", type=float, metavar="SECONDS",
                   help="give up on the whole transfer after SECONDS")
    p.add_argument("--connect-timeout", type=float, default=10.0, metavar="SECONDS")
    p.add_argument("--cacert", metavar="FILE", help="CA bundle to verify the server with")
    p.add_argument("-k", "--insecure", action="store_true",
                   help="do not verify the server's certificate")
    p.add_argument("-x", "--proxy", metavar="[http://]HOST:PORT", help="use this HTTP proxy")
    return p


def _read_data(value: str, *, binary: bool) -> bytes:
    if not value.startswith("@"):
        return value.encode()
    raw = sys.stdin.buffer.read() if value == "@-" else Path(value[1:]).read_bytes()
    return raw if binary else raw.replace(b"\r", b"").replace(b"\n", b"")


class _Options:
    """What the command line asks of one transfer."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.headers = []
        for line in args.header:
            name, sep, value = line.partition(":")
            if not sep or not name.strip():
                raise _UsageError(f"header {line!r} is not NAME: VALUE")
            self.headers.append((name.strip(), value.strip()))
        if args.user_agent:
            self.headers.append(("User-Agent", args.user_agent))
        self.content: bytes | None = None
        self.files: list[tuple[str, object]] | None = None
        self.form: list[tuple[str, str]] = []
        names = {n.lower() for n, _ in self.headers}
        if args.json:
            self.content = b"".join(_read_data(d, binary=True) for d in args.json)
            for name, value in (("Content-Type", "application/json"),
                                ("Accept", "application/json")):
                if name.lower() not in names:
                    self.headers.append((name, value))
        elif args.data or args.data_binary:
            parts = [_read_data(d, binary=False) for d in args.data or []] + \
                [_read_data(d, binary=True) for d in args.data_binary or []]
            self.content = b"&".join(parts)
            if "content-type" not in names:
                self.headers.append(("Content-Type", "application/x-www-form-urlencoded"))
        elif args.form:
            self.files = []
            for field in args.form:
                name, sep, value = field.partition("=")
                if not sep:
                    raise _UsageError(f"-F {field!r} is not NAME=VALUE")
                if value.startswith("@"):
                    self.files.append((name, Path(value[1:])))
                else:
                    self.form.append((name, value))
        uploading = self.content is not None or self.files is not None
        self.method = args.request or ("HEAD" if args.head else "POST" if uploading else "GET")


async def _transfer(opts: _Options, out: IO[bytes], err: IO[str]) -> int:
    args = opts.args
    verbose = args.verbose

    def show_request(request: Request) -> None:
        if verbose:
            target = request.url.split("://", 1)[-1].partition("/")[2]
            err.write(f"> {request.method} /{target} HTTP/1.1\n")
            for name, value in request.headers:
                err.write(f"> {name.decode('latin-1')}: {value.decode('latin-1')}\n")
            err.write(">\n")

    def show_response(response: object) -> None:
        if verbose:
            r = response
            err.write(f"< {r.http_version} {r.status} {r.reason_phrase}\n")  # type: ignore
            for name, value in r.headers:  # type: ignore[attr-defined]
                err.write(f"< {name.decode('latin-1')}: {value.decode('latin-1')}\n")
            err.write("<\n")
            if args.location and r.is_redirect:  # type: ignore[attr-defined]
                err.write(f"* Issue another request to this URL: "
                          f"'{r.headers['location']}'\n")  # type: ignore[attr-defined]

    user = tuple(args.user.split(":", 1)) if args.user and ":" in args.user else \
        (args.user, "") if args.user else None
    client = Client(verify=False if args.insecure else args.cacert or True, proxy=args.proxy,
                    follow_redirects=args.location, max_redirects=args.max_redirs,
                    timeout=Timeout(connect=args.connect_timeout, read=None,
                                    total=args.max_time),
                    event_hooks={"request": [show_request], "response": [show_response]})
    async with client, client.stream(opts.method, args.url, headers=opts.headers,
                                     content=opts.content, data=opts.form or None,
                                     files=opts.files, auth=user) as r:
        if args.fail and r.status >= 400:
            raise _HTTPFailure(r.status)
        if args.include or args.head:
            head = [f"{r.http_version} {r.status} {r.reason_phrase}\r\n".encode()]
            head += [n + b": " + v + b"\r\n" for n, v in r.headers]
            out.write(b"".join(head) + b"\r\n")
        if not args.head:
            try:
                sink = args.output.open("wb") if args.output else out
            except OSError as exc:
                raise _WriteFailure(f"cannot write {args.output}: {exc.strerror}") from None
            try:
                async for chunk in r.aiter_bytes():
                    sink.write(chunk)
            finally:
                if sink is not out:
                    sink.close()
        out.flush()
    return 0


class _HTTPFailure(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(f"The requested URL returned error: {status}")


class _WriteFailure(Exception):
    pass


def exit_code(exc: BaseException) -> int:
    """curl's exit code for what went wrong."""
    if isinstance(exc, _HTTPFailure):
        return 22
    if isinstance(exc, _WriteFailure):
        return 23
    if isinstance(exc, NetkitTimeout | TimeoutError):
        return 28
    if isinstance(exc, TLSError):
        return 60 if "certificate" in str(exc) else 35
    if isinstance(exc, TooManyRedirects):
        return 47
    if isinstance(exc, ValueError):
        return 3
    if isinstance(exc, ConnectError):
        return 6 if "cannot resolve" in str(exc) else 7
    if isinstance(exc, ReadError | RemoteProtocolError):
        return 52 if "without a response" in str(exc) else 56
    if isinstance(exc, WriteError):
        return 55
    return 7


def main(argv: list[str] | None = None) -> int:
    try:
        args = _parser().parse_args(argv)
        opts = _Options(args)
    except _UsageError as exc:
        print(f"netkit http: (2) {exc}\nnetkit http: try 'python -m netkit.clients.http --help'",
              file=sys.stderr)
        return 2
    except OSError as exc:  # a -d @FILE that cannot be read
        print(f"netkit http: (26) cannot read {exc.filename}: {exc.strerror}", file=sys.stderr)
        return 26
    try:
        return asyncio.run(_transfer(opts, sys.stdout.buffer, sys.stderr))
    except (NetkitError, OSError, ValueError, TimeoutError, _HTTPFailure,
            _WriteFailure) as exc:
        code = exit_code(exc)
        if not args.silent or args.show_error:
            print(f"netkit http: ({code}) {exc}", file=sys.stderr)
        return code


if __name__ == "__main__":
    sys.exit(main())
