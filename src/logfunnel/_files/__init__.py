"""The strategies without a collector: a locked shared file; per-process files and merge."""
