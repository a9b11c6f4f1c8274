"""HTTP/1.1 without sockets or clocks: the message codec (`codec`)."""
