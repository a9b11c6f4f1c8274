"""The SSH port forwarder (service.py: config, CLI, contract; client.py: the forwarder;
forwards.py: ssh's -L/-R/-D specifications; hostkeys.py: known_hosts)."""
