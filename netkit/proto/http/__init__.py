"""HTTP/1.1 without sockets or clocks: the message codec (`codec`: one direction's bytes
to events, strict against request smuggling) and the connection engine per role
(`connection`: framing, keep-alive, pipelining order, deadlines), which the server,
the client and the proxy drive."""
