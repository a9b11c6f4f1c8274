"""The HTTP/1.1 server: `python -m netkit.servers.http` (server.py), and the application
interface it serves, native and ASGI (app.py)."""
