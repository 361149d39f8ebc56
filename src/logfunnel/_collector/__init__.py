"""The collector: one loop reading every producer, in the parent or a process of its own."""
