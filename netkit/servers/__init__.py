"""One module per server, each runnable as ``python -m netkit.servers.NAME``."""
