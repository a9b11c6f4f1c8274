"""Sans-IO protocol code: bytes in, events and bytes out; no sockets, no clocks."""
