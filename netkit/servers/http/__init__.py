"""The HTTP/1.1 server: `python -m netkit.servers.http` (server.py: the driver of the
engine in proto/http/connection.py), static files (files.py) and the application
interface it serves, native and ASGI (app.py). From Python: `create(config, app=)` and
`serve(config, app=)` (server.py)."""

from typing import Any

_PUBLIC = ("create", "serve", "Config", "HTTPService")


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:  # imported on first use: `import netkit.servers.http.app` stays light
        from . import server
        return getattr(server, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
