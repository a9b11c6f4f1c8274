"""The servers: `python -m netkit.servers.NAME`, each declared by the `SPEC` (see
netkit/contract.py) of the module named here. A new server is its module and one line."""

#: server name (its TOML section and `netkit NAME`) -> the module that holds its SPEC
REGISTRY = {
    "dhcp": "netkit.servers.dhcp.service",
    "dns": "netkit.servers.dns.service",
    "http": "netkit.servers.http.server",
    "proxy": "netkit.servers.proxy",
    "relay": "netkit.servers.relay.service",
    "smtp": "netkit.servers.smtp.service",
    "sshfwd": "netkit.servers.sshfwd.service",
    "tls": "netkit.servers.tls",
}
