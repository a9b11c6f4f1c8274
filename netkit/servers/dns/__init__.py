"""The recursive DNS resolver: `python -m netkit.servers.dns` (service.py), the resolver
driver that runs the recursion engine (resolver.py)."""
