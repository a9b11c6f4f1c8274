"""The control channel: one per process, the way operators look inside a running server.

Every process (one server, or several with `netkit run`) listens on a Unix socket,
mode 0600, in the runtime directory, named after its servers and its PID
(``dns-4242.sock``, ``dns+http-4243.sock``) so two instances never collide.
`netkit ctl` finds it and sends one command:

    netkit ctl status                  every server's counters and addresses
    netkit ctl reload                  as SIGHUP; answers with the problems, if any
    netkit ctl commands                what this process offers
    netkit ctl [--server dns] cache    a server's own view or action (its spec's commands)

No server invents its own channel or signal: a server offers views and actions by
naming them in its `ServerSpec.commands`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import NetkitError
from .transport.control import ControlSocket, request

if TYPE_CHECKING:
    from .cli import Running

log = logging.getLogger("netkit.control")


def runtime_dir() -> Path:
    """Where control sockets live: $XDG_RUNTIME_DIR/netkit, /run/netkit for root, else a
    per-user directory under the temp directory."""
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg:
        return Path(xdg) / "netkit"
    if os.geteuid() == 0:
        return Path("/run/netkit")
    return Path(tempfile.gettempdir()) / f"netkit-{os.getuid()}"


def default_path(names: list[str], pid: int) -> Path:
    return runtime_dir() / f"{'+'.join(names)}-{pid}.sock"


class Controller:
    """Answers control requests for the servers of this process."""

    def __init__(self, servers: list[Running], reload: Callable[[], list[str]],
                 path: Path | None, config_file: Path | None = None) -> None:
        self.servers = servers
        self.reload = reload
        self.config_file = config_file
        self.loaded_at = time.time()
        self.last_reload: dict[str, Any] | None = None
        names = [s.spec.name for s in servers]
        self.label = "+".join(names)
        self.started = time.monotonic()
        self.path = default_path(names, os.getpid()) if path is None else path
        self.socket: ControlSocket | None = None

    async def start(self) -> None:
        if str(self.path) == "none":
            return
        if self.path.parent == runtime_dir():
            remove_stale_sockets()  # of processes that died without removing theirs
        self.socket = ControlSocket(self.path, self.answer)
        try:
            await self.socket.start()
        except OSError as exc:  # the servers run on; only the channel is missing
            self.socket = None
            log.warning("control: cannot listen on %s: %s", self.path, exc)

    def close(self) -> None:
        if self.socket is not None:
            self.socket.close()

    async def answer(self, req: dict[str, Any]) -> dict[str, Any]:
        command = req.get("command")
        args = req.get("args") or {}
        if not isinstance(args, dict):
            return {"ok": False, "error": "args: expected an object"}
        if command == "status":
            return {"ok": True, "result": self.status()}
        if command == "reload":
            problems = self.reload_now()
            return {"ok": not problems, "result": {"problems": problems}}
        if command == "commands":
            return {"ok": True, "result": self.commands()}
        if command == "metrics":
            from .admin import metrics
            return {"ok": True, "result": metrics.render(self.servers).decode()}
        wanted = req.get("server")
        offering = [s for s in self.servers if command in s.spec.commands
                    and (wanted is None or s.spec.name == wanted)]
        if not offering:
            return {"ok": False, "error": f"unknown command {command!r}; this process "
                                          f"offers {', '.join(sorted(self.commands()))}"}
        if len(offering) > 1:
            return {"ok": False, "error": f"{command!r} is offered by "
                                          f"{', '.join(s.spec.name for s in offering)}: "
                                          "name one with --server"}
        s = offering[0]
        try:
            result = s.spec.commands[command](s.service, args)
        except (KeyError, ValueError, TypeError, NetkitError) as exc:
            return {"ok": False, "error": f"{s.spec.name} {command}: {exc}"}
        except Exception as exc:  # a bug in one view: the caller hears of it, the server lives
            log.exception("control: %s %s failed", s.spec.name, command)
            return {"ok": False, "error": f"{s.spec.name} {command}: internal error: {exc}"}
        return {"ok": True, "result": result}

    def reload_now(self) -> list[str]:
        """As SIGHUP: the problems (none: every server took its new config); kept for
        `status`."""
        problems = self.reload()
        now = time.time()
        self.last_reload = {"at": _iso(now), "ok": not problems, "problems": problems}
        if not problems:
            self.loaded_at = now
        return problems

    def status(self) -> dict[str, Any]:
        return {
            "pid": os.getpid(),
            "uptime": round(time.monotonic() - self.started, 3),
            "config_file": str(self.config_file) if self.config_file else None,
            "loaded_at": _iso(self.loaded_at),
            "last_reload": self.last_reload,
            "servers": {s.spec.name: {"listen": [str(a) for a in s.service.addresses()],
                                      **s.service.status()} if s.service else {}
                        for s in self.servers},
        }

    def commands(self) -> dict[str, list[str]]:
        offered = {"status": ["*"], "reload": ["*"], "commands": ["*"], "metrics": ["*"]}
        for s in self.servers:
            for name in s.spec.commands:
                offered.setdefault(name, []).append(s.spec.name)
        return offered


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def _pid_alive(path: Path) -> bool | None:
    """Whether the process a socket is named after lives (None: not one of ours)."""
    pid = path.stem.rsplit("-", 1)[-1]
    if not pid.isdigit():
        return None
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, another user's
    return True


def remove_stale_sockets() -> None:
    """Remove the control sockets of processes that are gone (killed, crashed)."""
    for path in runtime_dir().glob("*-*.sock"):
        if _pid_alive(path) is False:
            with contextlib.suppress(OSError):
                path.unlink()


def find_sockets() -> list[Path]:
    """Control sockets of live processes in the runtime directory."""
    return [path for path in sorted(runtime_dir().glob("*-*.sock")) if _pid_alive(path)]


def ctl_main(argv: list[str] | None = None) -> int:
    """`netkit ctl [--socket PATH] [--server NAME] COMMAND [KEY=VALUE]...`"""
    p = argparse.ArgumentParser(prog="netkit ctl")
    p.add_argument("--socket", type=Path, help="the control socket (default: the only one "
                                               "of a running process in the runtime directory)")
    p.add_argument("--server", help="the server a command is for, when several offer it")
    p.add_argument("--url", help="an admin endpoint's address (http[s]://HOST:PORT) instead "
                                 "of a socket; the token from NETKIT_ADMIN_TOKEN")
    p.add_argument("--json", action="store_true", help="JSON even for a table of rows")
    p.add_argument("command")
    p.add_argument("args", nargs="*", metavar="KEY=VALUE")
    args = p.parse_args(argv)
    path = args.socket
    if path is None and args.url is None:
        sockets = find_sockets()
        if len(sockets) != 1:
            where = runtime_dir()
            listed = "".join(f"\n  {s}" for s in sockets)
            print(f"netkit ctl: {len(sockets)} running processes in {where}; choose one "
                  f"with --socket{listed}", file=sys.stderr)
            return 2
        path = sockets[0]
    extra: dict[str, str] = {}
    for item in args.args:
        key, sep, value = item.partition("=")
        if not sep:
            print(f"netkit ctl: {item!r}: expected KEY=VALUE", file=sys.stderr)
            return 2
        extra[key] = value
    message: dict[str, Any] = {"command": args.command, "args": extra}
    if args.server:
        message["server"] = args.server
    try:
        reply = request(path, message) if args.url is None else _over_http(args.url, message)
    except (NetkitError, ValueError) as exc:
        print(f"netkit ctl: {exc}", file=sys.stderr)
        return 1
    if not reply.get("ok"):
        print(f"netkit ctl: {reply.get('error') or json.dumps(reply.get('result'))}",
              file=sys.stderr)
        return 1
    result = reply.get("result")
    if isinstance(result, str):  # metrics: the exposition text as it is
        print(result, end="" if result.endswith("\n") else "\n")
    elif not args.json and _is_table(result):
        print(_table(result))
    else:
        print(json.dumps(result, indent=2, default=str))
    return 0


def _over_http(url: str, message: dict[str, Any]) -> dict[str, Any]:
    """The control protocol through an admin endpoint (POST /ctl)."""
    from .clients.http import post
    token = os.environ.get("NETKIT_ADMIN_TOKEN", "")
    headers = {"authorization": f"Bearer {token}"} if token else {}
    response = post(url.rstrip("/") + "/ctl", json=message, headers=headers, timeout=10)
    if response.status_code == 401:
        raise ValueError(f"{url}: 401: set NETKIT_ADMIN_TOKEN to the endpoint's token")
    try:
        reply = response.json()
    except ValueError:
        raise ValueError(f"{url}: {response.status_code}: not the admin endpoint") from None
    if not isinstance(reply, dict):
        raise ValueError(f"{url}: an unexpected answer")
    return reply


def _is_table(result: Any) -> bool:
    return isinstance(result, list) and bool(result) and all(
        isinstance(row, dict) and all(not isinstance(v, dict | list) for v in row.values())
        for row in result)


def _table(rows: list[dict[str, Any]]) -> str:
    """Rows (a relay's connections, DHCP leases, an SMTP queue...) as aligned columns."""
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    cells = [[str(row.get(c, "")) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip()]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip()
              for r in cells]
    return "\n".join(lines)
