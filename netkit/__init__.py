"""netkit: small, real network protocol servers and clients on anyio."""

__version__ = "0.1.0"
