"""The admin endpoint over HTTP (netkit's own HTTP server, a native handler): what the
control socket offers, for browsers, Prometheus and scripts.

    GET  /metrics                 Prometheus text (metrics.py)
    GET  /status                  servers, listeners, uptime, config file, last reload
    GET  /config                  the effective configuration, secrets redacted
    GET  /views                   each server's read-only views (the page shows them)
    POST /reload                  as SIGHUP; 200 with nothing wrong, 409 with the problems
    GET  /SERVER/COMMAND?k=v      a server's view (`netkit ctl COMMAND`)
    POST /SERVER/COMMAND?k=v      a server's view or action (actions: POST only)
    POST /ctl                     the control socket's protocol, as JSON
    GET  /ui                      a live page (ui.html, ui.js, ui.css: no inline script)

With `admin.token` every request carries `Authorization: Bearer TOKEN` (401 without).
"""

from __future__ import annotations

import dataclasses
import hmac
import json
import urllib.parse
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client import CONTENT_TYPE_LATEST

from netkit.servers.http.app import AppRequest, AppResponse

from . import metrics

if TYPE_CHECKING:
    from netkit.control import Controller

SECRET_WORDS = ("token", "password", "secret", "passphrase")
CSP = (b"default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
       b"img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
STATIC = {"/ui": ("ui.html", b"text/html; charset=utf-8"),
          "/ui.js": ("ui.js", b"text/javascript; charset=utf-8"),
          "/ui.css": ("ui.css", b"text/css; charset=utf-8")}


def redacted(value: Any, key: str = "") -> Any:
    """A config as JSON-able values, with every secret replaced."""
    if any(word in key.lower() for word in SECRET_WORDS) and value:
        return "<redacted>"
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: redacted(getattr(value, f.name), f.name)
                for f in dataclasses.fields(value)}
    if isinstance(value, tuple | list):
        return [redacted(v, key) for v in value]
    if isinstance(value, dict):
        return {k: redacted(v, str(k)) for k, v in value.items()}
    if isinstance(value, int | float | str | bool) or value is None:
        return value
    if isinstance(value, Path):
        return str(value)
    return str(value)


def _json(data: Any, status: int = 200) -> AppResponse:
    return AppResponse(status, [(b"content-type", b"application/json"),
                                (b"cache-control", b"no-store"),
                                (b"content-security-policy", b"default-src 'none'"),
                                (b"x-content-type-options", b"nosniff")],
                       json.dumps(data, indent=2, default=str).encode() + b"\n")


class AdminEndpoint:
    def __init__(self, controller: Controller, token: str = "") -> None:
        self.controller = controller
        self.token = token.encode()

    def _authorized(self, request: AppRequest) -> bool:
        if not self.token:
            return True
        given = request.headers.get(b"authorization") or b""
        return hmac.compare_digest(given, b"Bearer " + self.token)

    async def __call__(self, request: AppRequest) -> AppResponse:
        if not self._authorized(request):
            return AppResponse(401, [(b"www-authenticate", b'Bearer realm="netkit admin"'),
                                     (b"content-type", b"text/plain")],
                               b"a bearer token is needed\n")
        method, path = request.method, request.path.rstrip("/") or "/"
        args = {k: v[-1] for k, v in urllib.parse.parse_qs(
            request.query_string.decode("latin-1")).items()}
        c = self.controller
        if method == "GET" and path == "/metrics":
            return AppResponse(200, [(b"content-type", CONTENT_TYPE_LATEST.encode())],
                               metrics.render(c.servers))
        if method == "GET" and path == "/status":
            return _json(c.status())
        if method == "GET" and path == "/views":  # what the page may GET: no actions
            return _json({s.spec.name: sorted(n for n in s.spec.commands
                                              if n not in s.spec.actions)
                          for s in c.servers})
        if method == "GET" and path == "/favicon.ico":
            return AppResponse(204, [], b"")
        if method == "GET" and path == "/config":
            return _json({s.spec.name: redacted(s.config) for s in c.servers})
        if method == "POST" and path == "/reload":
            problems = c.reload_now()
            return _json({"ok": not problems, "problems": problems},
                         409 if problems else 200)
        if method == "POST" and path == "/ctl":
            try:
                message = json.loads(await request.body() or b"{}")
            except ValueError:
                return _json({"ok": False, "error": "the body is not JSON"}, 400)
            if not isinstance(message, dict):
                return _json({"ok": False, "error": "expected a JSON object"}, 400)
            reply = await c.answer(message)
            return _json(reply, 200 if reply.get("ok") else 400)
        if method == "GET" and path in STATIC:
            name, kind = STATIC[path]
            body = resources.files("netkit.admin").joinpath(name).read_bytes()
            return AppResponse(200, [(b"content-type", kind), (b"cache-control", b"no-store"),
                                     (b"content-security-policy", CSP),
                                     (b"x-content-type-options", b"nosniff"),
                                     (b"referrer-policy", b"no-referrer")], body)
        parts = path.strip("/").split("/")
        if len(parts) == 2 and method in ("GET", "POST"):
            server, command = parts
            spec = next((s.spec for s in c.servers if s.spec.name == server), None)
            if spec is None or command not in spec.commands:
                return _json({"ok": False, "error": f"no view {path}"}, 404)
            if method == "GET" and command in spec.actions:
                return _json({"ok": False, "error": f"{command} changes something: POST it"},
                             405)
            if method == "POST":
                body = await request.body()
                if body:
                    try:
                        extra = json.loads(body)
                    except ValueError:
                        return _json({"ok": False, "error": "the body is not JSON"}, 400)
                    if isinstance(extra, dict):
                        args.update({k: str(v) for k, v in extra.items()})
            reply = await c.answer({"command": command, "args": args, "server": server})
            return _json(reply.get("result") if reply.get("ok") else reply,
                         200 if reply.get("ok") else 400)
        return _json({"ok": False, "error": f"{method} {path}: not here; see /status"}, 404)
