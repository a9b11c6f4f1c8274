"""Every socket netkit opens, and the one place OS and ssl errors become netkit errors.

- `connection`: one TCP connection as an asyncio protocol, with limits, counters, the
  PROXY header and TLS stages in front of a server's `Handler`.
- `listeners`: TCP and UDP listening sockets (`StreamServer`, `DatagramServer`).
- `connect`: outgoing connections (`open_connection`, `connect_stream`).
- `splice`: two connections relayed byte for byte with half-close and backpressure.
- `dns_exchange`: one DNS question and its answer over UDP or TCP.
- `control`: the per-process control channel's Unix socket.
- `errors`: `map_errors`, the translation of OS, ssl and anyio errors.

See docs/architecture.md for which layer uses asyncio protocols and which anyio streams.
"""
