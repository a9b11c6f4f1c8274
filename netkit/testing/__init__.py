"""Real servers and peers' pieces for integration tests: a DNS hierarchy of NSD
authorities (`nsd`), a TLS ClientHello made in memory (`tls`)."""
