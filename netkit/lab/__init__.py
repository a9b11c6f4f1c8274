"""`netkit lab`: a small internet in network namespaces, built from netkit's own servers
(topology.py: what; build.py: making it; net.py: namespaces, processes, state; cli.py:
the command and the exercises). docs/lab.md walks the exercises."""
