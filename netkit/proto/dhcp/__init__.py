"""DHCPv4, sans-IO: the message codec (packet.py), option types (options.py) and the
lease engine (leases.py) that the server drives."""
