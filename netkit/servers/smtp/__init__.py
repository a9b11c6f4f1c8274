"""The SMTP relay (service.py: config, receiving, contract; store.py: the durable queue
and Maildir delivery)."""
