"""Real servers for integration tests: a DNS hierarchy of NSD authorities (`nsd`)."""
