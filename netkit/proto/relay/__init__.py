"""The NAT/firewall relay's rules, sans-IO: the firewall (rules.py), the connection
table (conntrack.py), the routing table (routes.py) and the fault decisions
(faults.py). The userspace relay and the packet mode both drive them."""
