"""The NAT/firewall relay (service.py: config, the contract; tcp.py and udp.py: the
forwards). The rules are in netkit/proto/relay."""
