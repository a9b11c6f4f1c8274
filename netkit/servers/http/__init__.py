"""The HTTP/1.1 server: `python -m netkit.servers.http` (server.py: the driver of the
engine in proto/http/connection.py), static files (files.py) and the application
interface it serves, native and ASGI (app.py)."""
