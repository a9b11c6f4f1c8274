"""The DHCPv4 server (service.py: config, sockets, contract; store.py: the lease
database). The rules are in netkit/proto/dhcp."""
