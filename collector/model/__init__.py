"""The estimation model: pure functions over numpy arrays (no I/O)."""
