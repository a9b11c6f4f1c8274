"""SMTP without sockets: the queue's envelopes and their retry arithmetic."""
