"""The producer side, in every attached process: the handler, attaching, formatting, sending."""
