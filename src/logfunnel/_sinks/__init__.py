"""The sinks: which handler gets what, written in batches, guarded against failure and slowness."""
