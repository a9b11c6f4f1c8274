"""One module per client: a library API plus ``python -m netkit.clients.NAME``."""
